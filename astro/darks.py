"""Dark frames done right: scaling by exposure, dark optimization, bimodal dark series.

- **Scaling by exposure.** Dark current accumulates linearly with time, so a bias-subtracted
  master dark of exposure ``t_d`` stands for one of ``t_l`` once multiplied by ``t_l / t_d``
  (Howell, *Handbook of CCD Astronomy*, 2006, sec. 4.4; ``ccdproc.subtract_dark(scale=True)``
  does the same, and the tests hold the two to agree).
- **Dark optimization.** When the exposure (or the sensor temperature) of the dark does not
  match, the factor ``k`` that minimises the noise of ``light - k * dark`` is found by a
  bounded scalar search, as Siril's ``calibrate -opt`` does (Siril, ``src/core/preprocess.c``:
  ``darkOptimization`` runs a golden-section search for ``k`` in [0, 2] to a tolerance of
  0.001, minimising the standard deviation of the calibrated image in a central 512x512
  square). Here the same search is ``scipy.optimize.minimize_scalar(method='bounded')``
  (Brent's method), and the noise is made robust to what the dark cannot explain: pixels
  that are bright in the light but not in the dark (stars, cosmic rays) are left out; hot
  pixels, bright in both, stay in because they are what the factor must cancel.
- **Bimodal dark series.** Some cameras deliver darks at two levels from frame to frame (the
  ZWO ASI120MC alternates: in every other frame the rows from 782 down carry no dark signal,
  so the frame means differ by ~16 ADU at 10 s and ~200 ADU at 100 s). A pixel-wise median of
  5 such frames takes the incomplete value wherever 3 of 5 are incomplete.
  :func:`bimodal_split` finds the two clusters of frame levels (the optimal two-class split of
  the sorted levels, Fisher 1958 / Jenks natural breaks for k=2).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.nddata import CCDData

from .errors import StarloomError

__all__ = [
    "BimodalSplit",
    "bimodal_split",
    "dark_scaling_residual",
    "frame_levels",
    "optimize_dark_scale",
    "scaled_dark",
]

#: Siril's search interval for the dark factor and its tolerance (src/core/preprocess.c).
OPTIMIZE_BOUNDS = (0.0, 2.0)
OPTIMIZE_TOLERANCE = 1e-3
#: Side of the central square the noise is measured in (Siril: 512).
OPTIMIZE_REGION = 512


def _exptime(ccd: CCDData, what: str) -> float:
    t = ccd.header.get("EXPTIME")
    if t is None or not float(t) > 0:
        raise StarloomError(f"{what} has no positive EXPTIME header key ({t!r}): cannot scale "
                            f"the dark by exposure")
    return float(t)


def scaled_dark(dark: CCDData, exposure: float) -> CCDData:
    """A bias-subtracted master dark scaled to another exposure time.

    Parameters
    ----------
    dark : CCDData
        Bias-subtracted master dark, ADU, with EXPTIME (s) in its header; its uncertainty, if
        any, is scaled too.
    exposure : float
        Target exposure time, s.

    Returns
    -------
    CCDData
        ``dark * exposure / EXPTIME`` (float32), header EXPTIME set to ``exposure``. The same
        scaling as ``ccdproc.subtract_dark(..., scale=True)`` (Howell 2006, sec. 4.4).

    Raises
    ------
    StarloomError
        The dark has no positive EXPTIME.
    """
    ratio = float(exposure) / _exptime(dark, "master dark")
    out = dark.multiply(ratio, handle_meta="first_found")
    out.data = out.data.astype(np.float32)
    out.header["EXPTIME"] = (float(exposure), "[s] scaled from the master dark")
    return out


def _central(data: np.ndarray, size: int) -> tuple[slice, slice]:
    ny, nx = data.shape[-2:]
    sy, sx = min(size, ny), min(size, nx)
    return slice((ny - sy) // 2, (ny - sy) // 2 + sy), slice((nx - sx) // 2, (nx - sx) // 2 + sx)


def optimize_dark_scale(light: np.ndarray, dark: np.ndarray, *, bounds=OPTIMIZE_BOUNDS,
                        tolerance: float = OPTIMIZE_TOLERANCE,
                        region: int = OPTIMIZE_REGION) -> tuple[float, dict]:
    """The factor ``k`` minimising the noise of ``light - k * dark`` (Siril's dark optimization).

    Parameters
    ----------
    light : ndarray, shape (ny, nx)
        Bias-subtracted light frame, ADU.
    dark : ndarray, shape (ny, nx)
        Bias-subtracted master dark, ADU.
    bounds : (float, float)
        Search interval for ``k`` (Siril: 0 to 2).
    tolerance : float
        Absolute tolerance on ``k`` (Siril: 0.001).
    region : int
        Side of the central square, px, the noise is measured in (Siril: 512).

    Returns
    -------
    k : float
        The optimal factor.
    info : dict
        ``noise`` at ``k`` and ``noise_unscaled`` at ``k = 1`` (standard deviation, ADU),
        ``pixels_used`` and ``evaluations``.

    Notes
    -----
    Method of Siril (``src/core/preprocess.c``, ``darkOptimization`` and
    ``goldenSectionSearch``): a bounded one-dimensional minimisation of the standard deviation
    of the calibrated image; here Brent's bounded method (``scipy.optimize.minimize_scalar``).
    Siril measures a plain standard deviation, which stars and cosmic rays inflate; here
    pixels more than 5 robust sigma (``astropy.stats.mad_std``) above the light's median but
    not above the dark's are excluded first, so only what the dark can explain is weighed.

    Raises
    ------
    StarloomError
        Shapes differ, or fewer than 100 finite pixels are left to measure.
    """
    from astropy.stats import mad_std
    from scipy.optimize import minimize_scalar

    if np.shape(light) != np.shape(dark):
        raise StarloomError(f"dark optimization: light {np.shape(light)} and master dark "
                            f"{np.shape(dark)} differ in shape")
    rows, cols = _central(light, region)
    lt = np.asarray(light, np.float64)[rows, cols]
    dk = np.asarray(dark, np.float64)[rows, cols]
    ok = np.isfinite(lt) & np.isfinite(dk)
    lm, dm = np.median(lt[ok]), np.median(dk[ok])
    bright_light = lt - lm > 5 * mad_std(lt[ok])
    bright_dark = dk - dm > 5 * mad_std(dk[ok])
    ok &= ~(bright_light & ~bright_dark)
    if ok.sum() < 100:
        raise StarloomError(f"dark optimization: only {int(ok.sum())} usable pixels in the "
                            f"central {region}x{region} region")
    lt, dk = lt[ok], dk[ok]
    res = minimize_scalar(lambda k: float(np.std(lt - k * dk)), bounds=tuple(bounds),
                          method="bounded", options={"xatol": tolerance})
    k = float(res.x)
    return k, {"noise": float(np.std(lt - k * dk)), "noise_unscaled": float(np.std(lt - dk)),
               "pixels_used": int(ok.sum()), "evaluations": int(res.nfev)}


def frame_levels(frames) -> np.ndarray:
    """Mean level (ADU) of every frame of a series, shape (n_frames,), float64.

    The mean, not the median: on cameras whose 12-bit data are scaled by 16 the medians of
    dark frames sit on 16-ADU steps and hide differences the means show.
    """
    return np.array([float(np.nanmean(ccd.data)) for ccd in frames])


@dataclass
class BimodalSplit:
    """Two clusters of frame levels: frame indices and mean level of each, and how clearly
    they separate (``separation``: gap between the cluster means in pooled within-cluster
    standard deviations)."""

    low: list[int]
    high: list[int]
    low_level: float
    high_level: float
    separation: float


def bimodal_split(levels, min_separation: float = 20.0, min_size: int = 2) -> BimodalSplit | None:
    """Whether frame levels fall into two clusters, and which.

    Parameters
    ----------
    levels : array_like, shape (n,)
        One level per frame (e.g. :func:`frame_levels`), ADU.
    min_separation : float
        The gap between the two cluster means must exceed this many pooled within-cluster
        standard deviations (and 1e-4 of the mean level, so identical frames are not split).
    min_size : int
        Each cluster needs at least this many frames: a single odd frame is an outlier that
        pixel rejection handles, not a second mode.

    Returns
    -------
    BimodalSplit or None
        None when the levels are unimodal.

    Notes
    -----
    The split is the two-class optimum of Fisher (1958, "On grouping for maximum
    homogeneity", JASA 53, 789), i.e. Jenks natural breaks for two classes: over the sorted
    levels, the cut minimising the summed within-cluster squared deviations.
    """
    x = np.asarray(levels, np.float64)
    n = x.size
    if n < 2 * min_size:
        return None
    order = np.argsort(x, kind="stable")
    s = x[order]
    best = min(range(min_size, n - min_size + 1),
               key=lambda c: s[:c].var() * c + s[c:].var() * (n - c))
    lo, hi = s[:best], s[best:]
    pooled = np.sqrt((lo.var() * lo.size + hi.var() * hi.size) / max(n - 2, 1))
    gap = hi.mean() - lo.mean()
    if gap <= 1e-4 * abs(s.mean()) or gap <= min_separation * pooled:
        return None
    return BimodalSplit(low=sorted(int(i) for i in order[:best]),
                        high=sorted(int(i) for i in order[best:]),
                        low_level=float(lo.mean()), high_level=float(hi.mean()),
                        separation=float(gap / pooled) if pooled > 0 else float("inf"))


def dark_scaling_residual(long_dark: CCDData, short_dark: CCDData) -> dict:
    """How well a long master dark scaled by exposure reproduces a short one.

    Parameters
    ----------
    long_dark, short_dark : CCDData
        Bias-subtracted master darks with EXPTIME (s), same shape.

    Returns
    -------
    dict
        ``ratio`` (exposure ratio used), ``best_scale`` (least-squares factor of the short
        dark on the long one, to compare with ``ratio``), ``residual_median`` and
        ``residual_std`` (robust, ``mad_std``) of ``short - scaled long`` in ADU,
        ``short_std`` (robust spread of the short dark itself), and the same residual median
        per band of rows, ``row_band_medians`` (8 bands, top to bottom).

    Raises
    ------
    StarloomError
        Missing EXPTIME or different shapes.
    """
    from astropy.stats import mad_std

    if long_dark.shape != short_dark.shape:
        raise StarloomError(f"master darks differ in shape: {long_dark.shape} and "
                            f"{short_dark.shape}")
    t_short = _exptime(short_dark, "short master dark")
    scaled = scaled_dark(long_dark, t_short)
    ratio = t_short / _exptime(long_dark, "long master dark")
    res = np.asarray(short_dark.data, np.float64) - scaled.data
    lng = np.asarray(long_dark.data, np.float64).ravel()
    sht = np.asarray(short_dark.data, np.float64).ravel()
    ok = np.isfinite(lng) & np.isfinite(sht)
    best = float(np.dot(lng[ok], sht[ok]) / np.dot(lng[ok], lng[ok]))
    bands = np.array_split(res, 8, axis=-2)
    return {"ratio": ratio, "best_scale": best,
            "residual_median": float(np.nanmedian(res)),
            "residual_std": float(mad_std(res, ignore_nan=True)),
            "short_std": float(mad_std(short_dark.data, ignore_nan=True)),
            "row_band_medians": [float(np.nanmedian(b)) for b in bands]}
