"""Calibration nodes: master bias, master dark, master flat, calibrate lights.

The arithmetic is :mod:`starloom.astro.calibration`'s (ccdproc's ``subtract_bias``,
``subtract_dark`` with exposure scaling, ``flat_correct``). Combining frames uses Starloom's
band-wise combine (``FrameSeries.reduce``), which agrees with ``ccdproc.combine`` in the tests.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from starloom.graph_runtime.node import Node, Params, Port, Quantity

from ._common import CombineParams, renamed_params


def _check_type(ctx, series: FrameSeries, wanted: str):
    """Warn (not fail) when frames say they are another type: headers are often wrong."""
    other = [r.name for r in series.refs if r.meta.get("IMAGETYP") not in (None, wanted)]
    if other:
        ctx.warn(f"{len(other)} frame(s) are not marked '{wanted}' (e.g. {other[0]})")


def _bimodal_choice(ctx, darks: FrameSeries, exptime: float, choice: str) -> FrameSeries:
    """The darks to combine when their levels fall into two clusters (with a warning)."""
    from starloom.astro.darks import bimodal_split, frame_levels
    split = bimodal_split(frame_levels(darks))
    if split is None:
        return darks
    names = darks.names
    ctx.diagnostics.setdefault("bimodal", {})[f"{exptime:g}s"] = {
        "low": [names[i] for i in split.low], "high": [names[i] for i in split.high],
        "low_level": split.low_level, "high_level": split.high_level,
        "separation_sigma": split.separation}
    used = "only the brighter" if choice == "brighter" else "all"
    ctx.warn(f"the {exptime:g} s darks are bimodal: {len(split.low)} frame(s) at mean "
             f"{split.low_level:.1f} ADU (e.g. {names[split.low[0]]}), {len(split.high)} at "
             f"{split.high_level:.1f} ADU (e.g. {names[split.high[0]]}); combining {used}")
    return darks.subset(split.high) if choice == "brighter" else darks


class MasterBias(Node):
    type_id = "calibration.master_bias"
    libraries = ("astropy", "ccdproc", "scipy")  # scipy: GESD rejection, dark optimization
    title = "Master bias"
    category = "calibration"
    description = "Combine bias frames into a master bias (sigma-clipped average by default)."

    class Params(CombineParams):
        method: Literal["average", "median", "sum"] = Field("average", description="Combination along the frame axis")

    inputs = {"frames": Port("FrameSeries", "bias frames")}
    outputs = {"master_bias": Port("Image", "master bias, ADU")}

    def run(self, ctx, params, frames):
        import numpy as np
        from starloom.astro.calibration import as_float32
        _check_type(ctx, frames, "bias")
        master = params.combine(frames, ctx)
        master.header["IMAGETYP"] = "Master Bias"
        ctx.diagnostics.update(n_frames=len(frames), median=float(np.median(master.data)),
                               std=float(np.std(master.data)))
        ctx.history(f"combined {len(frames)} bias frames")
        return {"master_bias": as_float32(master)}


class MasterDark(Node):
    type_id = "calibration.master_dark"
    implementation = 2  # 2: a bimodal dark series combines its brighter cluster by default
    libraries = ("astropy", "ccdproc", "scipy")  # scipy: GESD rejection, dark optimization
    title = "Master dark"
    category = "calibration"
    description = """
    Combine dark frames into bias-subtracted master darks, one per exposure time (EXPTIME), so
    that lights can use the closest one scaled by exposure. Subtracting the same master bias
    from every frame commutes with median, average and sigma clipping, so the frames are combined
    first and the bias subtracted once (ccdproc.subtract_bias, propagating uncertainty). A dark
    series whose frame levels fall into two clusters (a camera quirk: the ASI120 loses the dark
    signal of its bottom rows in every other frame) is reported, and by default only its
    brighter cluster is combined, since dark current does not vanish but can fail to be read.
    """

    class Params(CombineParams):
        exposure_tolerance: Quantity("s", ge=0, description="Exposures closer than this are grouped together") = 0.5
        bimodal: Literal["brighter", "all"] = Field(
            "brighter", description="When the darks of one exposure fall into two clusters of "
                                    "level (at least 2 frames each, e.g. the ASI120's alternate "
                                    "frames that lose the dark signal in their bottom rows): "
                                    "combine only the brighter cluster, or all frames (a "
                                    "warning is given either way)")

    inputs = {"frames": Port("FrameSeries", "dark frames"),
              "bias": Port("Image", "master bias", optional=True)}
    outputs = {"darks": Port("FrameSeries", "one master dark per exposure time")}

    def run(self, ctx, params, frames, bias=None):
        import numpy as np
        from starloom.astro.calibration import as_float32, check_shape, group_by_exposure
        from starloom.astro.darks import dark_scaling_residual
        from starloom.astro.frames import FrameSeries
        _check_type(ctx, frames, "dark")
        groups = group_by_exposure(frames, params.exposure_tolerance)
        masters, names, info = [], [], []
        for idx in groups:
            sub = frames.subset(idx)
            exptime = float(np.mean([r.meta["EXPTIME"] for r in sub.refs]))
            sub = _bimodal_choice(ctx, sub, exptime, params.bimodal)
            master = params.combine(sub, ctx)
            if bias is not None:
                import ccdproc  # imported where used: ~0.2 s of every command's startup

                check_shape(master, bias, "master bias", sub.refs[0].name)
                master = ccdproc.subtract_bias(master, bias)
            else:
                ctx.warn("no master bias connected: master darks still contain the bias level")
            master.header["EXPTIME"] = exptime
            master.header["IMAGETYP"] = "Master Dark"
            ctx.history(f"combined {len(sub)} darks of {exptime:g} s", image=as_float32(master))
            masters.append(master)
            names.append(f"master_dark_{exptime:g}s")
            info.append({"exptime": exptime, "n_frames": len(sub), "frames": sub.names,
                         "median": float(np.median(master.data))})
        ctx.diagnostics["darks"] = info
        if bias is not None and len(masters) > 1:
            # How well the longest dark scaled by exposure stands for each shorter one.
            longest = masters[-1]
            ctx.diagnostics["scaled_from_longest"] = {
                name: dark_scaling_residual(longest, m) for name, m in zip(names[:-1], masters)}
        return {"darks": FrameSeries.from_frames(masters, names)}


class MasterFlat(Node):
    type_id = "calibration.master_flat"
    libraries = ("astropy", "ccdproc", "scipy")  # scipy: GESD rejection, dark optimization
    title = "Master flat"
    category = "calibration"
    description = """
    Combine flat frames into master flats, one per filter (FILTER), normalised to a median (or
    average) of 1. Each flat is bias- and dark-subtracted and divided by its own median as it is
    read, so flats of different brightness combine correctly without writing copies.
    """

    version = 2  # 2: 'normalize' (median/mean) became 'normalization' (median/average)
    implementation = 2  # 2: colour (BAYERPAT) flats normalised per CFA sub-plane

    class Params(CombineParams):
        normalization: Literal["median", "average"] = Field(
            "median", description="Statistic of each flat scaled to 1")
        cfa: Literal["auto", "none"] = Field(
            "auto", description="'auto': a one-shot-colour flat (BAYERPAT) is scaled to 1 in each "
                                "CFA sub-plane (R, G1, G2, B) separately; 'none': one level")

    inputs = {"frames": Port("FrameSeries", "flat frames"),
              "bias": Port("Image", "master bias", optional=True),
              "darks": Port("FrameSeries", "master darks (bias-subtracted)", optional=True)}
    outputs = {"flats": Port("FrameSeries", "one normalised master flat per filter")}

    @classmethod
    def upgrade(cls, params, from_version):
        return renamed_params(params, {"normalize": "normalization"},
                              {"normalization": {"mean": "average"}})

    def run(self, ctx, params, frames, bias=None, darks=None):
        import numpy as np
        from starloom.astro.calibration import FlatCalibration, as_float32, normalise
        from starloom.astro.frames import FrameSeries
        _check_type(ctx, frames, "flat")
        masters, names, info = [], [], []
        bias_data = bias.data.astype(np.float32) if bias is not None else None
        dark_cache: dict[int, np.ndarray] = {}
        for (filt,), sub in frames.group_by(("FILTER",)).items():
            calibration = FlatCalibration(sub, bias_data, darks, params.normalization, dark_cache)
            master = normalise(params.combine(sub, ctx, transform=calibration),
                               params.normalization)
            master.header["IMAGETYP"] = "Master Flat"
            cfa = None
            if params.cfa == "auto" and master.header.get("BAYERPAT") is not None:
                from starloom.astro.cfa import cfa_pattern, normalise_cfa
                cfa = normalise_cfa(master, cfa_pattern(master.header, shape=master.shape),
                                    params.normalization)
            if filt is not None:
                master.header["FILTER"] = filt
            ctx.history(f"combined {len(sub)} flats", image=as_float32(master))
            masters.append(master)
            names.append(f"master_flat_{filt}" if filt is not None else "master_flat")
            info.append({"filter": filt, "n_frames": len(sub), "levels": calibration.levels,
                         "cfa_levels": cfa,
                         "min": float(np.nanmin(master.data)), "max": float(np.nanmax(master.data))})
        ctx.diagnostics["flats"] = info
        return {"flats": FrameSeries.from_frames(masters, names)}


class CalibrateLights(Node):
    type_id = "calibration.calibrate_lights"
    implementation = 2  # 2: DARKSCAL header card
    libraries = ("astropy", "ccdproc", "scipy")  # scipy: GESD rejection, dark optimization
    title = "Calibrate lights"
    category = "calibration"
    per_frame = "lights"
    description = """
    Calibrate each light frame: subtract the master bias, subtract the master dark of the
    closest exposure scaled by EXPTIME (ccdproc.subtract_dark, scale=True) or by the factor
    that minimises the frame's noise (dark optimization, as Siril's -opt), and divide by the
    master flat of the frame's FILTER (ccdproc.flat_correct). Each frame is cached on its own:
    adding a light calibrates only that light.
    """

    class Params(Params):
        min_flat: float = Field(0.05, gt=0, lt=1, description="Flat values below this (relative) are masked instead of divided by")
        dark_scaling: Literal["exposure", "optimize", "none"] = Field(
            "exposure", description="How the master dark is scaled: by the exposure ratio, by "
                                    "the factor that minimises the calibrated frame's noise "
                                    "(Siril's dark optimization; needs the master bias), or "
                                    "not at all")

    inputs = {"lights": Port("FrameSeries", "light frames"),
              "bias": Port("Image", "master bias", optional=True),
              "darks": Port("FrameSeries", "master darks", optional=True),
              "flats": Port("FrameSeries", "master flats", optional=True)}
    outputs = {"lights": Port("FrameSeries", "calibrated light frames")}

    def run(self, ctx, params, frame, bias=None, darks=None, flats=None):
        from starloom.astro.calibration import calibrate_light
        if params.dark_scaling == "optimize" and bias is None and darks is not None:
            ctx.warn("dark optimization without a master bias: the factor also scales the "
                     "bias level left in the light")
        ccd, steps = calibrate_light(frame, bias=bias, darks=darks, flats=flats,
                                     min_flat=params.min_flat, name=ctx.frame,
                                     dark_scaling=params.dark_scaling)
        ctx.diagnostics["steps"] = steps
        if "DARKSCAL" in ccd.header:
            ctx.diagnostics["dark_scale"] = float(ccd.header["DARKSCAL"])
        ctx.history("calibrated: " + ", ".join(steps))
        return {"lights": ccd}


NODES = [MasterBias, MasterDark, MasterFlat, CalibrateLights]
