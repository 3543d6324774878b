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


_METHODS = ("interp", "adaptive", "exact")


def _reproject_fn(method, order):
    from reproject import reproject_adaptive, reproject_exact, reproject_interp

    if method == "interp":
        return lambda inp, w, s: reproject_interp(inp, w, shape_out=s, order=order)
    if method == "adaptive":
        return lambda inp, w, s: reproject_adaptive(inp, w, shape_out=s, conserve_flux=False)
    if method == "exact":
        return lambda inp, w, s: reproject_exact(inp, w, shape_out=s)
    raise ParamError("method", f"unknown reprojection method {method!r}; choose one of {', '.join(_METHODS)}")


def reproject_frames(
    frames,
    wcs_out: WCS,
    shape_out,
    *,
    method: str = "interp",
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
    method : {'interp', 'adaptive', 'exact'}
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
    """
    fn = _reproject_fn(method, order)
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
    method: str = "interp",
    combine: str = "mean",
    reject: str | None = None,
    sigma: float = 3.0,
    maxiters: int = 5,
    weights: Sequence[float] | None = None,
    band_rows: int = 128,
    order: str = "bilinear",
) -> CoaddResult:
    """Reproject frames to a common grid and combine them, band by band.

    Output rows are processed in bands of ``band_rows`` so that only ``n_frames x band_rows x
    nx`` pixels are held at once (about 10 MB for ten 752x581 frames). Within a band the frames
    are reprojected (`reproject_frames`), optionally sigma-clipped across the stack
    (``astropy.stats.sigma_clip``, median centre, std spread, per output pixel) and combined.

    Parameters
    ----------
    frames : sequence of (array (ny, nx), WCS)
    wcs_out, shape_out : astropy.wcs.WCS, (int, int), optional
        Output grid; default `optimal_wcs` of the inputs.
    method : {'interp', 'adaptive', 'exact'}
        Reprojection method (see `reproject_frames`).
    combine : {'mean', 'median', 'sum'}
        Combination of the kept samples (``'mean'`` honours ``weights``; ``'sum'`` is the mean
        times the number of frames covering, i.e. a coverage-corrected sum).
    reject : {None, 'sigma_clip'}
        Outlier rejection across the stack.
    sigma, maxiters : float, int
        Sigma-clipping parameters.
    weights : sequence of float, optional
        Per-frame weights for ``'mean'``.
    band_rows : int, optional
        Output rows per band.
    order : str, optional
        Interpolation order for ``method='interp'``.

    Returns
    -------
    CoaddResult

    Raises
    ------
    ParamError
        Unknown method/combine/reject, or weights of the wrong length.
    """
    from astropy.stats import sigma_clip

    if method not in _METHODS:
        raise ParamError(
            "method", f"unknown reprojection method {method!r}; choose one of {', '.join(_METHODS)}"
        )
    if combine not in ("mean", "median", "sum"):
        raise ParamError("combine", f"unknown combine {combine!r}; choose mean, median or sum")
    if reject not in (None, "none", "sigma_clip"):
        raise ParamError("reject", f"unknown rejection {reject!r}; choose None or 'sigma_clip'")
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
            frames, wcs_out, (ny, nx), method=method, order=order, rows=slice(r0, r1)
        )
        cov[r0:r1] = foot.sum(axis=0)
        valid = np.isfinite(stack)
        if reject == "sigma_clip" and len(frames) >= 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", (AstropyUserWarning, RuntimeWarning))
                clipped = sigma_clip(
                    stack,
                    sigma=sigma,
                    maxiters=maxiters,
                    axis=0,
                    masked=True,
                    cenfunc="median",
                    stdfunc="mad_std",
                )
            keep = ~np.ma.getmaskarray(clipped)
            n_rej += int(np.count_nonzero(valid & ~keep))
            valid &= keep
        n = valid.sum(axis=0)
        used[r0:r1] = n
        vals = np.where(valid, stack, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if combine == "median":
                band = np.nanmedian(vals, axis=0)
            else:
                w = (wts[:, None, None] if wts is not None else np.ones((len(frames), 1, 1))) * valid
                band = np.nansum(np.where(valid, stack, 0.0) * w, axis=0) / w.sum(axis=0)
                if combine == "sum":
                    band = band * cov[r0:r1]
        band[n == 0] = np.nan
        out[r0:r1] = band
    return CoaddResult(data=out, coverage=cov, n_used=used, wcs=wcs_out, shape=(ny, nx), n_rejected=n_rej)


