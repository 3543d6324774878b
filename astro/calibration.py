"""Calibration arithmetic around ccdproc: choosing masters, grouping darks, calibrating flats
as they are read, calibrating a light frame.

The arithmetic is ccdproc's (``subtract_bias``, ``subtract_dark`` with exposure scaling,
``flat_correct``), following the "CCD Data Reduction Guide" (Craig et al.,
https://www.astropy.org/ccd-reduction-and-photometry-guide/). What ccdproc does not do is here:
picking the master dark of the closest exposure and the master flat of the frame's filter, and
calibrating each flat band by band while it is being combined, so flats of different
brightness combine without writing calibrated copies; and the dark scaled by the factor that
minimises the calibrated frame's noise (:mod:`starloom.astro.darks`).
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.nddata import CCDData

from .errors import StarloomError
from .frames import FrameSeries

#: Statistic a master flat is normalised by, by its name.
FLAT_STATISTICS = {"median": np.nanmedian, "average": np.nanmean}


def as_float32(ccd: CCDData) -> CCDData:
    """``ccd`` with float32 data and uncertainty (in place; masters are stored as float32)."""
    ccd.data = ccd.data.astype(np.float32, copy=False)
    if ccd.uncertainty is not None:
        ccd.uncertainty.array = ccd.uncertainty.array.astype(np.float32, copy=False)
    return ccd


def check_shape(frame: CCDData, master: CCDData, what: str, name: str) -> None:
    """Raise a StarloomError naming the frame when ``frame`` and ``master`` differ in shape."""
    if frame.shape != master.shape:
        raise StarloomError(f"frame '{name}' has shape {frame.shape} but the {what} has shape "
                            f"{master.shape}")


def pick_by_exposure(darks: FrameSeries, exptime: float | None) -> int:
    """Index of the master dark whose EXPTIME (s) is closest to ``exptime`` (the longest when
    ``exptime`` is unknown)."""
    times = [r.meta.get("EXPTIME") for r in darks.refs]
    if exptime is None:
        return int(np.argmax([t or 0 for t in times]))
    return int(np.argmin([abs((t if t is not None else np.inf) - exptime) for t in times]))


def pick_by_filter(flats: FrameSeries, filt) -> int | None:
    """Index of the master flat taken through ``filt`` (the only flat when just one exists),
    or None."""
    for i, r in enumerate(flats.refs):
        if r.meta.get("FILTER") == filt:
            return i
    return 0 if len(flats) == 1 else None


def group_by_exposure(frames: FrameSeries, tolerance: float) -> list[list[int]]:
    """Indices of frames grouped by EXPTIME, shortest first; exposures within ``tolerance``
    seconds of a group's first frame join it.

    Raises
    ------
    StarloomError
        A frame has no EXPTIME (names the frame).
    """
    missing = [r.name for r in frames.refs if r.meta.get("EXPTIME") is None]
    if missing:
        raise StarloomError(f"dark frame '{missing[0]}' has no EXPTIME header key")
    groups: list[list[int]] = []
    for i in np.argsort([r.meta["EXPTIME"] for r in frames.refs], kind="stable"):
        t = frames.refs[i].meta["EXPTIME"]
        if groups and abs(frames.refs[groups[-1][0]].meta["EXPTIME"] - t) <= tolerance:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    return groups


class FlatCalibration:
    """Bias and scaled dark subtraction and level normalisation of each flat of a series, as a
    band transform for ``FrameSeries.reduce`` (``transform(i, y0, y1, band)``).

    Parameters
    ----------
    flats : FrameSeries
        Flat frames of one filter.
    bias : ndarray or None
        Master bias data (ADU), or None.
    darks : FrameSeries or None
        Bias-subtracted master darks; each flat uses the one of the closest EXPTIME, scaled by
        the exposure ratio.
    statistic : {"median", "average"}
        Each calibrated flat is divided by this statistic of itself (its level).
    dark_cache : dict, optional
        Master dark data by index, shared between filters so each dark is read once.

    Attributes
    ----------
    levels : list of float
        Each flat's level after subtraction, ADU.

    Raises
    ------
    StarloomError
        A flat's shape differs from the bias/dark, or its level is not positive (names it).
    """

    def __init__(self, flats: FrameSeries, bias: np.ndarray | None, darks: FrameSeries | None,
                 statistic: str = "median", dark_cache: dict | None = None):
        stat = FLAT_STATISTICS[statistic]
        zero = np.zeros(flats.shape, np.float32)
        self.bias = bias if bias is not None else zero
        self.darks, self.ratios, self.levels = [], [], []
        cache = {} if dark_cache is None else dark_cache
        for ref in flats.refs:
            j, ratio = None, 0.0
            if darks is not None and len(darks):
                j = pick_by_exposure(darks, ref.meta.get("EXPTIME"))
                if j not in cache:
                    cache[j] = darks[j].data.astype(np.float32)
                t_dark, t_flat = darks.refs[j].meta.get("EXPTIME"), ref.meta.get("EXPTIME")
                ratio = t_flat / t_dark if t_dark and t_flat else 1.0
            frame = ref.read()
            if frame.shape != self.bias.shape:
                raise StarloomError(f"flat frame '{ref.name}' has shape {frame.shape}, "
                                    f"master bias/dark {self.bias.shape}")
            dark = cache[j] if j is not None else zero
            level = float(stat(frame.data - self.bias - ratio * dark))
            if not level > 0:
                raise StarloomError(f"flat frame '{ref.name}' has non-positive level {level:g} "
                                    f"after bias/dark subtraction")
            self.darks.append(dark)
            self.ratios.append(ratio)
            self.levels.append(level)

    def __call__(self, i: int, y0: int, y1: int, band: np.ndarray) -> np.ndarray:
        rows = slice(y0, y1)
        return (band - self.bias[..., rows, :]
                - self.ratios[i] * self.darks[i][..., rows, :]) / self.levels[i]


def normalise(master: CCDData, statistic: str = "median") -> CCDData:
    """Divide a master flat (and its uncertainty) by its own median or average (in place)."""
    norm = float(FLAT_STATISTICS[statistic](master.data))
    master.data = master.data / norm
    if master.uncertainty is not None:
        master.uncertainty.array = master.uncertainty.array / norm
    return master


def calibrate_light(ccd: CCDData, *, bias: CCDData | None = None,
                    darks: FrameSeries | None = None, flats: FrameSeries | None = None,
                    min_flat: float = 0.05, name: str = "frame",
                    dark_scaling: str = "exposure") -> tuple[CCDData, list[str]]:
    """Calibrate one light frame: bias, scaled dark, flat (ccdproc).

    Parameters
    ----------
    ccd : CCDData
        Light frame, ADU, with EXPTIME (s) when darks are given and FILTER when flats of
        several filters are.
    bias : CCDData, optional
        Master bias, subtracted with ``ccdproc.subtract_bias``.
    darks : FrameSeries, optional
        Bias-subtracted master darks: the one of the closest EXPTIME is scaled to the light's
        exposure (``ccdproc.subtract_dark(scale=True)``), or as ``dark_scaling`` says.
    flats : FrameSeries, optional
        Normalised master flats: the one of the light's FILTER divides it
        (``ccdproc.flat_correct``, which rescales the flat to a mean of 1 first; flat values
        below ``min_flat`` are masked instead).
    min_flat : float
        Relative flat level below which pixels are not divided.
    name : str
        The frame's name, for messages.
    dark_scaling : {"exposure", "optimize", "none"}
        "exposure": the dark times the exposure ratio; "optimize": the dark times the factor
        minimising the calibrated frame's noise (Siril's dark optimization,
        :func:`starloom.astro.darks.optimize_dark_scale`; needs the master bias subtracted
        from the light first, so give ``bias``); "none": the dark as it is.

    Returns
    -------
    ccd : CCDData
        Calibrated frame, float32.
    steps : list of str
        What was applied (``"bias"``, ``"dark 300s"``, ``"flat"``).

    Raises
    ------
    StarloomError
        A master's shape differs, the light has no EXPTIME for the dark, or no master flat
        matches its FILTER (names the frame).
    """
    import ccdproc  # imported where used: ccdproc costs ~0.2 s of every command's startup

    steps = []
    if bias is not None:
        check_shape(ccd, bias, "master bias", name)
        ccd = ccdproc.subtract_bias(ccd, bias)
        steps.append("bias")
    if darks is not None and len(darks):
        dark = darks[pick_by_exposure(darks, ccd.header.get("EXPTIME"))]
        check_shape(ccd, dark, "master dark", name)
        ccd, step = _subtract_dark(ccd, dark, dark_scaling, name)
        steps.append(step)
    if flats is not None and len(flats):
        i = pick_by_filter(flats, ccd.header.get("FILTER"))
        if i is None:
            raise StarloomError(f"light frame '{name}': no master flat for FILTER "
                                f"{ccd.header.get('FILTER')!r}")
        check_shape(ccd, flats[i], "master flat", name)
        ccd = ccdproc.flat_correct(ccd, flats[i], min_value=min_flat)
        steps.append("flat")
    return as_float32(ccd), steps


def _subtract_dark(ccd: CCDData, dark: CCDData, scaling: str, name: str) -> tuple[CCDData, str]:
    """``ccd`` minus the master dark scaled as ``scaling`` says (ccdproc.subtract_dark, which
    scales by ``data_exposure / dark_exposure``: a factor k is passed as k s over 1 s)."""
    import ccdproc  # imported where used: ~0.2 s of every command's startup

    label = f"dark {dark.header.get('EXPTIME', 0):g}s"
    if scaling == "exposure":
        if ccd.header.get("EXPTIME") is None:
            raise StarloomError(f"light frame '{name}' has no EXPTIME header key: cannot scale "
                                f"the dark")
        out = ccdproc.subtract_dark(ccd, dark, exposure_time="EXPTIME", exposure_unit=u.s,
                                    scale=True)
        k = float(ccd.header["EXPTIME"]) / float(dark.header["EXPTIME"])
        out.header["DARKSCAL"] = k  # the factor the master dark was multiplied by
        return out, label
    if scaling == "optimize":
        from .darks import optimize_dark_scale

        k, _ = optimize_dark_scale(ccd.data, dark.data)
        label += f" x{k:.4f} (optimized)"
    elif scaling == "none":
        k = 1.0
    else:
        raise StarloomError(f"parameter 'dark_scaling': unknown value {scaling!r}")
    out = ccdproc.subtract_dark(ccd, dark, dark_exposure=1 * u.s, data_exposure=k * u.s,
                                scale=True)
    out.header["DARKSCAL"] = k  # the factor the master dark was multiplied by
    return out, label
