"""Input and output nodes: load frames, save FITS, save PNG."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from starloom.astro.errors import StarloomError
from starloom.astro.keywords import FRAME_KEYWORDS
from starloom.graph_runtime.embedded import embed_graph
from starloom.graph_runtime.node import (Node, Params, PathParam, Port, expand_paths,
                                         file_fingerprints)

FITS_PATTERNS = "*.fit,*.fits,*.fts,*.FIT,*.FITS,*.FTS,*.fit.fz,*.fits.fz,*.fits.gz"


class LoadFrames(Node):
    type_id = "io.load_frames"
    implementation = 2  # 2: frame names keep the dots of the file name (Light_10.0s_1)
    libraries = ("astropy", "pillow")
    title = "Load frames"
    category = "io"
    description = """
    Read the FITS frames (or JPEG/PNG/TIFF pictures, named explicitly or by ``pattern``) in
    folders, globs or a comma-separated list of them, without loading
    pixels: the output is a lazy FrameSeries. Frames can be selected by header values as
    ccdproc's ImageFileCollection does (``where``), and their frame type (IMAGETYP) taken from the
    header, inferred from folder and file names when the header lacks it, or set by the user.
    Input files are never modified; repaired header values are reported as warnings.
    """

    class Params(Params):
        path: str = PathParam("", description="Folder, glob or file; several separated by commas")
        pattern: str = Field(FITS_PATTERNS, description="File patterns used inside folders, comma separated")
        imagetyp: Literal["any", "light", "bias", "dark", "flat"] = Field(
            "any", description="Keep only frames of this type (after frame_type is applied)")
        frame_type: Literal["header", "light", "bias", "dark", "flat"] = Field(
            "header", description="'header': IMAGETYP from the header, or inferred from folder/file "
                                  "name when missing; otherwise set IMAGETYP of every frame to this")
        where: dict[str, str | float] = Field(
            default_factory=dict, description="Header values to select on, e.g. {\"FILTER\": \"Ha\", "
                                              "\"EXPTIME\": 300}; '*' means the key is present")
        sort_by: str = Field("", description="Header keyword to order frames by (default: file name)")
        group_by: list[str] = Field(
            default_factory=list, description="Header keywords to group frames by, e.g. [\"FILTER\", "
                                              "\"EXPTIME\"]: frames are ordered group by group and "
                                              "the groups listed in the metadata and artifacts")

        @field_validator("group_by")
        @classmethod
        def _known_keywords(cls, v):
            v = [k.upper() for k in v]
            unknown = [k for k in v if k not in FRAME_KEYWORDS]
            if unknown:
                raise ValueError(f"{unknown} not among the keywords read: {', '.join(FRAME_KEYWORDS)}")
            return v

    outputs = {"frames": Port("FrameSeries", "the selected frames"),
               "metadata": Port("Table", "one row of header values per frame")}

    @classmethod
    def _files(cls, params) -> list[str]:
        if not params.path:
            raise StarloomError("parameter 'path' is empty: give a folder, glob or file")
        files = expand_paths(params.path, tuple(p.strip() for p in params.pattern.split(",")))
        if not files:
            raise StarloomError(f"parameter 'path': no files match '{params.path}' "
                                f"(patterns {params.pattern})")
        return files

    @classmethod
    def fingerprint(cls, params, hash_file):
        return file_fingerprints(cls._files(params), hash_file)

    def run(self, ctx, params):
        from starloom.astro.collection import collect_frames
        found = collect_frames(self._files(params), hash_file=ctx.hash_file,
                               frame_type=params.frame_type, imagetyp=params.imagetyp,
                               where=params.where, sort_by=params.sort_by,
                               group_by=params.group_by)
        for what, paths in found.repairs.items():
            ctx.warn(f"{what} in {len(paths)} file(s), e.g. {paths[0]}")
        if not len(found.series):
            raise StarloomError(f"no frames left in '{params.path}' after selecting "
                                f"imagetyp={params.imagetyp!r}, where={params.where}")
        if found.groups:
            ctx.diagnostics["groups"] = found.groups
        ctx.diagnostics.update(n_frames=len(found.series), by_type=found.by_type(),
                               frames=found.series.names)
        return {"frames": found.series, "metadata": found.metadata()}


def _template(template: str, ccd, name: str, index: int) -> str:
    from starloom.astro import fits as fitsio
    fields = {k: v for k, v in fitsio.frame_metadata(ccd.header).items() if v is not None}
    fields.update(name=name, index=index)
    try:
        return template.format(**{k.replace("-", "_"): v for k, v in fields.items()})
    except (KeyError, ValueError, IndexError) as e:
        raise StarloomError(f"parameter 'filename': cannot fill '{template}' for frame '{name}': "
                            f"{e!r} (available: {', '.join(sorted(fields))})") from None


def _embed_graph(ctx, path):
    # Share a result, get its workflow: the image carries the graph that made it, so that
    # `starloom edit image.png` (or a drop on the editor) gives the graph back.
    text = ctx.graph_json() if hasattr(ctx, "graph_json") else None
    if text is not None:
        embed_graph(path, text)


class SaveFits(Node):
    type_id = "io.save_fits"
    libraries = ("astropy",)
    title = "Save FITS"
    category = "io"
    description = """
    Write an image, or every frame of a series, to FITS in the run's outputs/ folder (written to
    a temporary name, then renamed). For a series the file name is a template filled from each
    frame's header: {name}, {index}, {EXPTIME}, {FILTER}, {IMAGETYP}, ... (e.g.
    'master_dark_{EXPTIME:g}s.fits'). A HISTORY card records the node.
    """

    class Params(Params):
        filename: str = Field("image.fits", min_length=1, description="File name, or template for a series")
        dtype: Literal["float32", "float64", "uint16"] = Field("float32", description="Pixel type on disk")

    inputs = {"image": Port(("Image", "FrameSeries"), "image or frames to write")}
    outputs = {"path": Port("Path", "written file(s), comma separated")}

    def run(self, ctx, params, image):
        from astropy.nddata import CCDData
        from starloom.astro import fits as fitsio
        items = ([(image, "image", 0)] if isinstance(image, CCDData)
                 else [(image[i], r.name, i) for i, r in enumerate(image.refs)])
        paths = []
        for ccd, name, i in items:
            filename = _template(params.filename, ccd, name, i)
            if filename in {p.name for p in paths}:
                raise StarloomError(f"parameter 'filename': '{params.filename}' gives the same name "
                                    f"'{filename}' to several frames; add {{name}} or {{index}}")
            path = ctx.output_path(filename)
            fitsio.write_frame(ccd, path, dtype=params.dtype,
                               history=[f"starloom io.save_fits by node '{ctx.node_id}'"])
            _embed_graph(ctx, path)
            paths.append(path)
        return {"path": ",".join(str(p) for p in paths)}


class SavePng(Node):
    type_id = "io.save_png"
    libraries = ("astropy", "pypng", "scikit-image")
    title = "Save PNG"
    category = "io"
    description = """
    Write a display-stretched PNG of an image to outputs/. Stretches: linear and asinh over a
    percentile interval, zscale (IRAF's algorithm, astropy ZScaleInterval), histogram
    equalization; 8 or 16 bits per channel. FITS row 0 is drawn at the bottom.
    """

    class Params(Params):
        filename: str = Field("image.png", min_length=1, description="File name")
        stretch: Literal["linear", "asinh", "zscale", "histeq"] = Field("asinh", description="Display stretch")
        bit_depth: Literal[8, 16] = Field(8, description="Bits per channel")
        percentile_low: float = Field(0.25, ge=0, lt=100, description="Lower percentile of the interval")
        percentile_high: float = Field(99.75, gt=0, le=100, description="Upper percentile of the interval")
        colour: Literal["linked", "unlinked", "lupton", "lupton_unlinked"] = Field(
            "linked", description="RGB (3, ny, nx) images: one interval for all bands (linked), "
                                  "one per band (unlinked), or Lupton et al. 2004's colour-"
                                  "preserving arcsinh with one or per-band black levels")

    inputs = {"image": Port("Image", "image to draw")}
    outputs = {"path": Port("Path", "written PNG")}

    def run(self, ctx, params, image):
        if params.percentile_low >= params.percentile_high:
            raise StarloomError("parameter 'percentile_low' must be below 'percentile_high'")
        from starloom.astro import stretch as stretching
        if image.data.ndim == 3 and params.colour != "linked":
            from starloom.astro.colour import colour_stretch
            img = colour_stretch(image.data, params.colour, stretch=params.stretch, mask=image.mask,
                                 percentile_low=params.percentile_low,
                                 percentile_high=params.percentile_high)
        else:
            img = stretching.stretch(image.data, params.stretch, percentile_low=params.percentile_low,
                                     percentile_high=params.percentile_high, mask=image.mask)
        path = stretching.write_png(ctx.output_path(params.filename), img, params.bit_depth)
        _embed_graph(ctx, path)
        return {"path": str(path)}


class SaveTable(Node):
    type_id = "io.save_table"
    libraries = ("astropy",)
    title = "Save table"
    category = "io"
    description = """
    Write a table to the run's outputs/ folder: ECSV (keeps units and metadata), CSV or FITS,
    by the file name's suffix.
    """

    class Params(Params):
        filename: str = Field("table.ecsv", pattern=r"(?i)^[^/\\]+\.(ecsv|csv|fits)$",
                              description="Output file name (.ecsv, .csv or .fits)")

    inputs = {"table": Port("Table", "table to write")}
    outputs = {"path": Port("Path", "written file")}

    def run(self, ctx, params, table):
        path = ctx.output_path(params.filename)
        fmt = {"ecsv": "ascii.ecsv", "csv": "ascii.csv", "fits": "fits"}[
            params.filename.rsplit(".", 1)[1].lower()]
        table.write(path, format=fmt, overwrite=True)
        ctx.diagnostics.update(rows=len(table), columns=list(table.colnames))
        return {"path": str(path)}


NODES = [LoadFrames, SaveFits, SavePng, SaveTable]
