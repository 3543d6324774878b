"""Calibration library nodes: store masters in a library, choose masters for lights from it.

The library (folder, catalogue, matching rules) is :mod:`starloom.astro.library` and
:mod:`starloom.astro.library_match`; ``starloom library list|show|remove`` manages it.
"""
from __future__ import annotations

from pydantic import Field

from starloom.astro.errors import StarloomError
from starloom.graph_runtime.node import Node, Params, PathParam, Port, Quantity

LIBRARY_HELP = ("Library folder; empty: $STARLOOM_LIBRARY, else 'library' in the user data "
                "folder")


def _masters(value) -> list[CCDData]:
    from astropy.nddata import CCDData
    if value is None:
        return []
    return [value] if isinstance(value, CCDData) else list(value)


class SaveToLibrary(Node):
    type_id = "library.save_masters"
    libraries = ("astropy",)
    title = "Save to library"
    category = "library"
    description = """
    Store master bias, darks and flats in the calibration library with the metadata they are
    matched on (instrument, binning, gain, offset, temperatures, exposure, filter, date,
    number of frames) and their content key; a master already stored is not stored twice.
    Runs every time (writing outside the run is its purpose), so a removed library is refilled.
    """
    cacheable = False

    class Params(Params):
        # Not a PathParam: those name inputs, which `starloom validate` requires to exist,
        # and this folder is created by the first save. Relative to the current folder.
        library: str = Field("", description=LIBRARY_HELP + " (created when missing; "
                                                           "relative to the current folder)")

    inputs = {"bias": Port("Image", "master bias", optional=True),
              "darks": Port("FrameSeries", "master darks (one per exposure)", optional=True),
              "flats": Port(("FrameSeries", "Image"), "master flats", optional=True)}
    outputs = {"masters": Port("Table", "the masters stored: id, type, file, metadata")}

    def run(self, ctx, params, bias=None, darks=None, flats=None):
        from astropy.table import Table
        from starloom.astro.library import Library
        lib = Library(params.library or None)
        rows = []
        for kind, value in (("bias", bias), ("dark", darks), ("flat", flats)):
            for ccd in _masters(value):
                master, added = lib.add(ccd, kind, history=[
                    f"starloom library.save_masters by node '{ctx.node_id}'"])
                rows.append({"id": master.id, "type": kind, "new": added,
                             "file": master.file, "describe": master.describe()})
                ctx.history(f"{'stored' if added else 'already in'} library {lib.root} as "
                            f"{master.id}")
        if not rows:
            ctx.warn("no master connected: nothing stored")
        ctx.diagnostics.update(library=str(lib.root), stored=rows)
        names = ["id", "type", "new", "file", "describe"]
        return {"masters": Table(rows=[[r[k] for k in names] for r in rows] or None,
                                 names=names) if rows else Table(names=names)}


class SelectFromLibrary(Node):
    type_id = "library.select_masters"
    libraries = ("astropy",)
    title = "Select from library"
    category = "library"
    description = """
    Choose the master bias, darks and flats for a series of lights from the calibration library:
    exact match on instrument, binning, gain, offset, image size (and filter for flats);
    nearest in sensor temperature and date within tolerances; the dark of the lights' exposure,
    or the nearest one scaled by exposure (with the bias) when none has it. Each choice and its
    reason are in the diagnostics and HISTORY; when nothing fits, the error lists every near
    miss and the key that failed. The outputs plug into calibration.calibrate_lights.
    """

    class Params(Params):
        library: str = PathParam("", description=LIBRARY_HELP)
        bias: bool = Field(True, description="Choose a master bias")
        darks: bool = Field(True, description="Choose a master dark per exposure")
        flats: bool = Field(True, description="Choose a master flat per filter")
        temperature_tolerance: Quantity("deg_C", ge=0, description="Largest sensor temperature difference for bias and darks") = 2.0
        max_days: Quantity("day", ge=0, description="Largest date difference for bias and darks") = 365.0
        max_days_flat: Quantity("day", ge=0, description="Largest date difference for flats") = 30.0
        exposure_tolerance: Quantity("s", ge=0, description="Exposures closer than this are equal; otherwise the dark is scaled") = 0.5

    inputs = {"lights": Port("FrameSeries", "light frames")}
    outputs = {"bias": Port("Image", "master bias (None when not chosen)"),
               "darks": Port("FrameSeries", "master darks, one per light exposure"),
               "flats": Port("FrameSeries", "master flats, one per light filter"),
               "selection": Port("Table", "what was chosen and why")}

    @classmethod
    def fingerprint(cls, params, hash_file):
        # The choice depends on the library's content, which is not an input: its catalogue
        # (every master's id) enters the key, so saving or removing a master re-selects.
        from starloom.astro.library import Library
        return [m.key for m in Library(params.library or None).masters()]

    def run(self, ctx, params, lights):
        from astropy.table import Table
        from starloom.astro.frames import FrameSeries
        from starloom.astro.library import Library
        from starloom.astro.library_match import Tolerances, light_settings, select_masters
        if not len(lights):
            raise StarloomError("input 'lights' is empty: no light frames to choose masters for")
        lib = Library(params.library or None)
        settings = light_settings([r.meta for r in lights.refs], lights.shape)
        tol = Tolerances(temperature=params.temperature_tolerance, days_bias_dark=params.max_days,
                         days_flat=params.max_days_flat, exposure=params.exposure_tolerance)
        sel = select_masters(lib.masters(), settings, tol, bias=params.bias,
                             darks=params.darks, flats=params.flats)
        for c in sel.choices():
            ctx.history(f"{c.master.type} {c.master.id} from library: {c.reason}")
        ctx.diagnostics.update(library=str(lib.root), lights=settings.describe(),
                               chosen=[c.to_json() for c in sel.choices()])
        names = ["type", "id", "target", "scaled", "reason", "file"]
        rows = [[c.to_json()[k] for k in names] for c in sel.choices()]
        series = {kind: FrameSeries.from_frames([lib.read(c.master) for c in choices],
                                                [f"master_{kind}_{c.master.id}" for c in choices])
                  for kind, choices in (("dark", sel.darks), ("flat", sel.flats))}
        return {"bias": lib.read(sel.bias.master) if sel.bias else None,
                "darks": series["dark"], "flats": series["flat"],
                "selection": Table(rows=rows or None, names=names) if rows else Table(names=names)}


NODES = [SaveToLibrary, SelectFromLibrary]
