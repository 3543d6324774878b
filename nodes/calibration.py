"""Calibration nodes: master bias, master dark, master flat, calibrate lights.

The arithmetic of calibration is ccdproc's (``subtract_bias``, ``subtract_dark`` with exposure
scaling, ``flat_correct``), following the ccdproc guide "CCD Data Reduction Guide" (Craig et al.,
https://www.astropy.org/ccd-reduction-and-photometry-guide/). Combining frames uses Starloom's
band-wise combine (``FrameSeries.reduce``), which agrees with ``ccdproc.combine`` in the tests.
"""
from __future__ import annotations

from typing import Literal

import astropy.units as u
import ccdproc
import numpy as np
from astropy.nddata import CCDData
from pydantic import Field

from starloom.astro.errors import StarloomError
from starloom.astro.frames import FrameSeries
from starloom.graph_runtime.node import Node, Params, Port, Quantity

from ._common import CombineParams, pick_by_exposure, pick_by_filter, renamed_params


def _check_type(ctx, series: FrameSeries, wanted: str):
    """Warn (not fail) when frames say they are another type: headers are often wrong."""
    other = [r.name for r in series.refs if r.meta.get("IMAGETYP") not in (None, wanted)]
    if other:
        ctx.warn(f"{len(other)} frame(s) are not marked '{wanted}' (e.g. {other[0]})")


def _check_shape(frame: CCDData, master: CCDData, what: str, name: str):
    if frame.shape != master.shape:
        raise StarloomError(f"frame '{name}' has shape {frame.shape} but the {what} has shape "
                            f"{master.shape}")


def _float32(ccd: CCDData) -> CCDData:
    ccd.data = ccd.data.astype(np.float32, copy=False)
    if ccd.uncertainty is not None:
        ccd.uncertainty.array = ccd.uncertainty.array.astype(np.float32, copy=False)
    return ccd


class MasterBias(Node):
    type_id = "calibration.master_bias"
    title = "Master bias"
    category = "calibration"
    description = "Combine bias frames into a master bias (sigma-clipped average by default)."

    class Params(CombineParams):
        method: Literal["average", "median", "sum"] = Field("average", description="Combination along the frame axis")

    inputs = {"frames": Port("FrameSeries", "bias frames")}
    outputs = {"master_bias": Port("Image", "master bias, ADU")}

    def run(self, ctx, params, frames):
        _check_type(ctx, frames, "bias")
        master = params.combine(frames, ctx)
        master.header["IMAGETYP"] = "Master Bias"
        ctx.diagnostics.update(n_frames=len(frames), median=float(np.median(master.data)),
                               std=float(np.std(master.data)))
        ctx.history(f"combined {len(frames)} bias frames")
        return {"master_bias": _float32(master)}


class MasterDark(Node):
    type_id = "calibration.master_dark"
    title = "Master dark"
    category = "calibration"
    description = """
    Combine dark frames into bias-subtracted master darks, one per exposure time (EXPTIME), so
    that lights can use the closest one scaled by exposure. Subtracting the same master bias
    from every frame commutes with median, average and sigma clipping, so the frames are combined
    first and the bias subtracted once (ccdproc.subtract_bias, propagating uncertainty).
    """

    class Params(CombineParams):
        exposure_tolerance: Quantity("s", ge=0, description="Exposures closer than this are grouped together") = 0.5

    inputs = {"frames": Port("FrameSeries", "dark frames"),
              "bias": Port("Image", "master bias", optional=True)}
    outputs = {"darks": Port("FrameSeries", "one master dark per exposure time")}

    def run(self, ctx, params, frames, bias=None):
        _check_type(ctx, frames, "dark")
        missing = [r.name for r in frames.refs if r.meta.get("EXPTIME") is None]
        if missing:
            raise StarloomError(f"dark frame '{missing[0]}' has no EXPTIME header key")
        groups: list[list[int]] = []
        for i in np.argsort([r.meta["EXPTIME"] for r in frames.refs], kind="stable"):
            t = frames.refs[i].meta["EXPTIME"]
            if groups and abs(frames.refs[groups[-1][0]].meta["EXPTIME"] - t) <= params.exposure_tolerance:
                groups[-1].append(int(i))
            else:
                groups.append([int(i)])
        masters, names, info = [], [], []
        for idx in groups:
            sub = frames.subset(idx)
            exptime = float(np.mean([r.meta["EXPTIME"] for r in sub.refs]))
            master = params.combine(sub, ctx)
            if bias is not None:
                _check_shape(master, bias, "master bias", sub.refs[0].name)
                master = ccdproc.subtract_bias(master, bias)
            else:
                ctx.warn("no master bias connected: master darks still contain the bias level")
            master.header["EXPTIME"] = exptime
            master.header["IMAGETYP"] = "Master Dark"
            ctx.history(f"combined {len(sub)} darks of {exptime:g} s", image=_float32(master))
            masters.append(master)
            names.append(f"master_dark_{exptime:g}s")
            info.append({"exptime": exptime, "n_frames": len(sub),
                         "median": float(np.median(master.data))})
        ctx.diagnostics["darks"] = info
        return {"darks": FrameSeries.from_frames(masters, names)}


class MasterFlat(Node):
    type_id = "calibration.master_flat"
    title = "Master flat"
    category = "calibration"
    description = """
    Combine flat frames into master flats, one per filter (FILTER), normalised to a median (or
    average) of 1. Each flat is bias- and dark-subtracted and divided by its own median as it is
    read, so flats of different brightness combine correctly without writing copies.
    """

    version = 2  # 2: 'normalize' (median/mean) became 'normalization' (median/average)

    class Params(CombineParams):
        normalization: Literal["median", "average"] = Field(
            "median", description="Statistic of each flat scaled to 1")

    inputs = {"frames": Port("FrameSeries", "flat frames"),
              "bias": Port("Image", "master bias", optional=True),
              "darks": Port("FrameSeries", "master darks (bias-subtracted)", optional=True)}
    outputs = {"flats": Port("FrameSeries", "one normalised master flat per filter")}

    @classmethod
    def upgrade(cls, params, from_version):
        return renamed_params(params, {"normalize": "normalization"},
                              {"normalization": {"mean": "average"}})

    def run(self, ctx, params, frames, bias=None, darks=None):
        _check_type(ctx, frames, "flat")
        stat = np.nanmedian if params.normalization == "median" else np.nanmean
        masters, names, info = [], [], []
        zero = np.zeros(frames.shape, np.float32)
        bias_data = bias.data.astype(np.float32) if bias is not None else zero
        dark_cache: dict[int, np.ndarray] = {}
        for (filt,), sub in frames.group_by(("FILTER",)).items():
            # Per flat: which master dark, its exposure ratio, and the flat's level after
            # subtraction; the transform then calibrates each band as it is read.
            darks_used, ratios, levels = [], [], []
            for ref in sub.refs:
                j, ratio = None, 0.0
                if darks is not None and len(darks):
                    j = pick_by_exposure(darks, ref.meta.get("EXPTIME"))
                    if j not in dark_cache:
                        dark_cache[j] = darks[j].data.astype(np.float32)
                    t_dark, t_flat = darks.refs[j].meta.get("EXPTIME"), ref.meta.get("EXPTIME")
                    ratio = t_flat / t_dark if t_dark and t_flat else 1.0
                frame = ref.read()
                if frame.shape != bias_data.shape:
                    raise StarloomError(f"flat frame '{ref.name}' has shape {frame.shape}, "
                                        f"master bias/dark {bias_data.shape}")
                dark = dark_cache[j] if j is not None else zero
                level = float(stat(frame.data - bias_data - ratio * dark))
                if not level > 0:
                    raise StarloomError(f"flat frame '{ref.name}' has non-positive level {level:g} "
                                        f"after bias/dark subtraction")
                darks_used.append(dark)
                ratios.append(ratio)
                levels.append(level)

            def calibrate(i, y0, y1, d, darks_used=darks_used, ratios=ratios, levels=levels):
                rows = slice(y0, y1)
                return (d - bias_data[..., rows, :] - ratios[i] * darks_used[i][..., rows, :]) / levels[i]

            master = params.combine(sub, ctx, transform=calibrate)
            norm = float(stat(master.data))
            master.data = master.data / norm
            if master.uncertainty is not None:
                master.uncertainty.array = master.uncertainty.array / norm
            master.header["IMAGETYP"] = "Master Flat"
            if filt is not None:
                master.header["FILTER"] = filt
            ctx.history(f"combined {len(sub)} flats", image=_float32(master))
            masters.append(master)
            names.append(f"master_flat_{filt}" if filt is not None else "master_flat")
            info.append({"filter": filt, "n_frames": len(sub), "levels": levels,
                         "min": float(np.nanmin(master.data)), "max": float(np.nanmax(master.data))})
        ctx.diagnostics["flats"] = info
        return {"flats": FrameSeries.from_frames(masters, names)}


class CalibrateLights(Node):
    type_id = "calibration.calibrate_lights"
    title = "Calibrate lights"
    category = "calibration"
    per_frame = "lights"
    description = """
    Calibrate each light frame: subtract the master bias, subtract the master dark of the
    closest exposure scaled by EXPTIME (ccdproc.subtract_dark, scale=True), and divide by the
    master flat of the frame's FILTER (ccdproc.flat_correct). Each frame is cached on its own:
    adding a light calibrates only that light.
    """

    class Params(Params):
        min_flat: float = Field(0.05, gt=0, lt=1, description="Flat values below this (relative) are masked instead of divided by")

    inputs = {"lights": Port("FrameSeries", "light frames"),
              "bias": Port("Image", "master bias", optional=True),
              "darks": Port("FrameSeries", "master darks", optional=True),
              "flats": Port("FrameSeries", "master flats", optional=True)}
    outputs = {"lights": Port("FrameSeries", "calibrated light frames")}

    def run(self, ctx, params, frame, bias=None, darks=None, flats=None):
        ccd, name, steps = frame, ctx.frame, []
        if bias is not None:
            _check_shape(ccd, bias, "master bias", name)
            ccd = ccdproc.subtract_bias(ccd, bias)
            steps.append("bias")
        if darks is not None and len(darks):
            dark = darks[pick_by_exposure(darks, ccd.header.get("EXPTIME"))]
            _check_shape(ccd, dark, "master dark", name)
            if ccd.header.get("EXPTIME") is None:
                raise StarloomError(f"light frame '{name}' has no EXPTIME header key: cannot scale the dark")
            ccd = ccdproc.subtract_dark(ccd, dark, exposure_time="EXPTIME", exposure_unit=u.s,
                                        scale=True)
            steps.append(f"dark {dark.header['EXPTIME']:g}s")
        if flats is not None and len(flats):
            i = pick_by_filter(flats, ccd.header.get("FILTER"))
            if i is None:
                raise StarloomError(f"light frame '{name}': no master flat for FILTER "
                                    f"{ccd.header.get('FILTER')!r}")
            flat = flats[i]
            _check_shape(ccd, flat, "master flat", name)
            ccd = ccdproc.flat_correct(ccd, flat, min_value=params.min_flat)
            steps.append("flat")
        ctx.diagnostics["steps"] = steps
        ctx.history("calibrated: " + ", ".join(steps))
        return {"lights": _float32(ccd)}


NODES = [MasterBias, MasterDark, MasterFlat, CalibrateLights]
