"""Reprojection and co-addition with the ``reproject`` package (``reproject_interp``,
``reproject_adaptive``, ``reproject_exact``, ``find_optimal_celestial_wcs``;
https://reproject.readthedocs.io).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from astropy import units as u
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS

from .errors import ParamError



def _wcs_shape(item):
    a, b = item
    if isinstance(a, WCS) or hasattr(a, "pixel_to_world"):
        return a, tuple(np.shape(b)) if isinstance(b, np.ndarray) else tuple(b)
    return b, tuple(np.shape(a)) if isinstance(a, np.ndarray) else tuple(a)


def optimal_wcs(
    wcs_shape_pairs,
    *,
    resolution_arcsec: float | None = None,
    projection: str = "TAN",
    auto_rotate: bool = False,
) -> tuple[WCS, tuple[int, int]]:
    """Output WCS and shape covering all inputs (``reproject.mosaicking.find_optimal_celestial_wcs``).

    Parameters
    ----------
    wcs_shape_pairs : iterable of (WCS, shape) or (WCS, array)
        Input frames; ``shape`` is ``(ny, nx)``. The order inside a pair may also be reversed.
    resolution_arcsec : float, optional
        Output pixel size; default the finest input resolution.
    projection : str, optional
        Three-letter projection code.
    auto_rotate : bool, optional
        Rotate to minimise the area (needs shapely).

    Returns
    -------
    (astropy.wcs.WCS, (int, int))
        Output WCS and shape ``(ny, nx)``.
    """
    from reproject.mosaicking import find_optimal_celestial_wcs

    items = [(_wcs_shape(p)[1], _wcs_shape(p)[0]) for p in wcs_shape_pairs]
    if not items:
        raise ParamError("wcs_shape_pairs", "at least one (wcs, shape) pair is needed")
    kw = {"resolution": resolution_arcsec * u.arcsec} if resolution_arcsec else {}
    w, shape = find_optimal_celestial_wcs(items, projection=projection, auto_rotate=auto_rotate, **kw)
    return w, (int(shape[0]), int(shape[1]))


REPROJECTIONS = ("interp", "adaptive", "exact")
#: Combinations of `coadd`, named as in the stacking engine (`starloom.astro.combiner`).
METHODS = ("average", "median", "sum")
REJECTIONS = ("none", "sigma_clip")


def _unknown_reprojection(reprojection) -> ParamError:
    return ParamError(
        "reprojection",
        f"unknown reprojection method {reprojection!r}; choose one of {', '.join(REPROJECTIONS)}",
    )


def _reproject_fn(reprojection, order):
    from reproject import reproject_adaptive, reproject_exact, reproject_interp

    if reprojection == "interp":
        return lambda inp, w, s: reproject_interp(inp, w, shape_out=s, order=order)
    if reprojection == "adaptive":
        return lambda inp, w, s: reproject_adaptive(inp, w, shape_out=s, conserve_flux=False)
    if reprojection == "exact":
        return lambda inp, w, s: reproject_exact(inp, w, shape_out=s)
    raise _unknown_reprojection(reprojection)


def reproject_frames(
    frames,
    wcs_out: WCS,
    shape_out,
    *,
    reprojection: str = "interp",
    order: str = "bilinear",
    rows: slice | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reproject frames onto one output grid with the ``reproject`` package.

    Parameters
    ----------
    frames : sequence of (array (ny, nx), WCS)
        Input images and their celestial WCS.
    wcs_out : astropy.wcs.WCS
        Output WCS (e.g. from `optimal_wcs`).
    shape_out : (int, int)
        Output shape ``(ny, nx)``.
    reprojection : {'interp', 'adaptive', 'exact'}
        ``reproject_interp`` (fast; ``order`` applies), ``reproject_adaptive`` (anti-aliased,
        DeForest 2004) or ``reproject_exact`` (spherical-polygon overlap, flux conserving).
    order : str, optional
        Interpolation order for ``'interp'``.
    rows : slice, optional
        Only these output rows (for band-wise processing).

    Returns
    -------
    stack : numpy.ndarray, shape (n, ny_rows, nx), float32
        Reprojected frames, NaN where a frame does not cover.
    footprint : numpy.ndarray, shape (n, ny_rows, nx), float32
        Fractional coverage of each output pixel by each frame (0..1).

    Raises
    ------
    ParamError
        Unknown ``reprojection``.
    """
    fn = _reproject_fn(reprojection, order)
    ny, nx = int(shape_out[0]), int(shape_out[1])
    if rows is not None:
        r0, r1, _ = rows.indices(ny)
        w = wcs_out.slice((slice(r0, r1), slice(None)))
        shape = (r1 - r0, nx)
    else:
        w, shape = wcs_out, (ny, nx)
    stack = np.full((len(frames),) + shape, np.nan, dtype=np.float32)
    foot = np.zeros((len(frames),) + shape, dtype=np.float32)
    for i, item in enumerate(frames):
        data, fw = item
        if not isinstance(fw, WCS) and isinstance(data, WCS):
            data, fw = fw, data
        arr, fp = fn((np.asarray(data, dtype=np.float64), fw), w, shape)
        stack[i] = np.where(fp > 0, arr, np.nan)
        foot[i] = fp
    return stack, foot


@dataclass
class CoaddResult:
    """Output of `coadd`.

    Attributes
    ----------
    data : numpy.ndarray (ny, nx) float32
        Combined image, NaN where no frame contributes.
    coverage : numpy.ndarray (ny, nx) float32
        Sum of the input footprints (effective number of frames covering each pixel).
    n_used : numpy.ndarray (ny, nx) int16
        Samples kept per pixel after rejection.
    wcs : astropy.wcs.WCS
    shape : (int, int)
    n_rejected : int
        Samples removed by the rejection.
    """

    data: np.ndarray
    coverage: np.ndarray
    n_used: np.ndarray
    wcs: WCS
    shape: tuple
    n_rejected: int = 0


def coadd(
    frames,
    wcs_out: WCS | None = None,
    shape_out=None,
    *,
    reprojection: str = "interp",
    method: str = "average",
    rejection: str | None = "none",
    sigma_low: float = 3.0,
    sigma_high: float = 3.0,
    maxiters: int = 5,
    weights: Sequence[float] | None = None,
    band_rows: int = 128,
    order: str = "bilinear",
) -> CoaddResult:
    """Reproject frames to a common grid and combine them, band by band.

    Output rows are processed in bands of ``band_rows`` so that only ``n_frames x band_rows x
    nx`` pixels are held at once (about 10 MB for ten 752x581 frames). Within a band the frames
    are reprojected (`reproject_frames`), optionally sigma-clipped across the stack and
    combined, per output pixel.

    Parameters
    ----------
    frames : sequence of (array (ny, nx), WCS)
        Input images (any real dtype, or objects numpy converts, read once per band) and their
        celestial WCS; the order inside a pair may be reversed.
    wcs_out, shape_out : astropy.wcs.WCS, (int, int), optional
        Output grid, shape ``(ny, nx)``; default `optimal_wcs` of the inputs.
    reprojection : {'interp', 'adaptive', 'exact'}
        Reprojection method (see `reproject_frames`).
    method : {'average', 'median', 'sum'}
        Combination of the kept samples: ``'average'`` is their mean, weighted by ``weights``;
        ``'sum'`` is that mean times the coverage (the footprint sum), i.e. a
        coverage-corrected sum; ``'median'`` ignores ``weights``.
    rejection : {'none', 'sigma_clip'}
        Outlier rejection across the stack (None is taken as ``'none'``). ``'sigma_clip'`` is
        ``astropy.stats.sigma_clip(stack, axis=0, cenfunc='median', stdfunc='mad_std',
        sigma_lower=sigma_low, sigma_upper=sigma_high, maxiters=maxiters)``: samples below
        ``median - sigma_low * mad_std`` or above ``median + sigma_high * mad_std`` of the
        samples still kept are rejected, repeated until nothing changes or ``maxiters``
        rounds. The spread is ``mad_std`` (1.4826 x the median absolute deviation), which a
        hot pixel in one of few frames cannot inflate. Needs at least 3 frames; with fewer,
        nothing is rejected.
    sigma_low, sigma_high : float
        Lower and upper clipping bounds, in units of the spread.
    maxiters : int
        Maximum clipping rounds.
    weights : sequence of float, optional
        Per-frame weights for ``'average'`` and ``'sum'``.
    band_rows : int, optional
        Output rows per band.
    order : str, optional
        Interpolation order for ``reprojection='interp'``.

    Returns
    -------
    CoaddResult

    Raises
    ------
    ParamError
        Unknown ``reprojection``, ``method`` or ``rejection``, no frames, or weights of the
        wrong length.
    """
    _check_coadd_args(reprojection, method, rejection)
    frames = list(frames)
    if not frames:
        raise ParamError("frames", "no frames to co-add")
    if wcs_out is None or shape_out is None:
        pairs = []
        for item in frames:
            d, w = item if isinstance(item[1], WCS) else (item[1], item[0])
            pairs.append((w, np.shape(d)))
        wcs_out, shape_out = optimal_wcs(pairs)
    ny, nx = int(shape_out[0]), int(shape_out[1])
    wts = None
    if weights is not None:
        wts = np.asarray(weights, dtype=np.float64)
        if wts.shape != (len(frames),):
            raise ParamError("weights", f"expected {len(frames)} weights, got {wts.shape}")
    out = np.full((ny, nx), np.nan, dtype=np.float32)
    cov = np.zeros((ny, nx), dtype=np.float32)
    used = np.zeros((ny, nx), dtype=np.int16)
    n_rej = 0
    step = max(1, int(band_rows))
    for r0 in range(0, ny, step):
        r1 = min(ny, r0 + step)
        stack, foot = reproject_frames(
            frames, wcs_out, (ny, nx), reprojection=reprojection, order=order, rows=slice(r0, r1)
        )
        cov[r0:r1] = foot.sum(axis=0)
        valid = np.isfinite(stack)
        if rejection == "sigma_clip" and len(frames) >= 3:
            keep = _sigma_clip_keep(stack, sigma_low, sigma_high, maxiters)
            n_rej += int(np.count_nonzero(valid & ~keep))
            valid &= keep
        used[r0:r1] = valid.sum(axis=0)
        out[r0:r1] = _combine_band(stack, valid, method, wts, cov[r0:r1])
    return CoaddResult(data=out, coverage=cov, n_used=used, wcs=wcs_out, shape=(ny, nx), n_rejected=n_rej)


def _check_coadd_args(reprojection, method, rejection) -> None:
    if reprojection not in REPROJECTIONS:
        raise _unknown_reprojection(reprojection)
    if method not in METHODS:
        raise ParamError("method", f"unknown combination method {method!r}; choose average, median or sum")
    if rejection not in (None, *REJECTIONS):
        raise ParamError("rejection", f"unknown rejection {rejection!r}; choose 'none' or 'sigma_clip'")


def _sigma_clip_keep(stack, sigma_low, sigma_high, maxiters) -> np.ndarray:
    """Samples of ``stack`` (n, rows, nx) kept by sigma clipping along the frame axis."""
    from astropy.stats import sigma_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (AstropyUserWarning, RuntimeWarning))
        clipped = sigma_clip(
            stack,
            sigma_lower=sigma_low,
            sigma_upper=sigma_high,
            maxiters=maxiters,
            axis=0,
            masked=True,
            cenfunc="median",
            stdfunc="mad_std",
        )
    return ~np.ma.getmaskarray(clipped)


def _combine_band(stack, valid, method, wts, coverage) -> np.ndarray:
    """Combine the ``valid`` samples of one band; NaN where none is left."""
    n = valid.sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if method == "median":
            band = np.nanmedian(np.where(valid, stack, np.nan), axis=0)
        else:
            w = (wts[:, None, None] if wts is not None else np.ones((len(stack), 1, 1))) * valid
            band = np.nansum(np.where(valid, stack, 0.0) * w, axis=0) / w.sum(axis=0)
            if method == "sum":
                band = band * coverage
    band[n == 0] = np.nan
    return band


class LazyPlane:
    """One plane of frame ``i`` of a series (any sequence of CCDData), read only when numpy
    asks for it.

    :func:`coadd` calls ``np.asarray`` on each frame once per output band, so frames are read
    from disk as needed instead of all being held in memory. Masked pixels become NaN (no data).
    """

    def __init__(self, series, i: int, plane: int | None):
        self.series, self.i, self.plane = series, i, plane

    def __array__(self, dtype=None, copy=None):
        ccd = self.series[self.i]
        data = np.array(ccd.data, dtype=np.float64)
        if ccd.mask is not None:
            data[np.broadcast_to(ccd.mask, data.shape)] = np.nan
        data = data if self.plane is None else data[self.plane]
        return data if dtype is None else data.astype(dtype, copy=False)
