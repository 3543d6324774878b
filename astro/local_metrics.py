"""Local quality of every tile in every frame, and the local weights of the reconstruction.

Method: tile_compile's local tile metrics (J. Amon, "Tile-Based Quality Reconstruction for DSO",
methodology v3.3.9, sections 5.5-5.6, github.com/jeamy/tile_compile):

- star metrics of a tile: FWHM, roundness ``R`` and contrast ``C`` of its stars, scored
  ``Q_star = 0.6 (-z(FWHM)) + 0.2 z(R) + 0.2 z(C)``;
- structure metrics: gradient energy over noise ``E/sigma`` and background ``B``, scored
  ``Q_struct = 0.7 z(E/sigma) - 0.3 z(B)``;
- the two blended by the tile's star support ``eta = clip(n_stars / star_min_count, 0, 1)``
  (no hard star/structure switch), clipped to [-3, 3], ``L = exp(k_local Q)``, and the
  effective weight ``W = G L`` with the frame's global weight ``G``.

``z`` is the robust z-score of a tile's metric over the frames, ``(x - median) / (1.4826 MAD)``
(tile_compile 5.3.1). tile_compile's optional neighbourhood pooling and spatial regularisation
of the scores (5.5.4-5.5.5) are not applied. The stars are detected once, on a reference frame,
and measured in every frame at the same positions (a fixed star set, as tile_compile's
photometric scale does), with adaptive second moments (Bernstein & Jarvis 2002, AJ 123, 583).
"""
from __future__ import annotations

import warnings

import numpy as np
from astropy.table import Table

from .tile_grid import valid_pixels

__all__ = ["reference_stars", "frame_tile_metrics", "robust_z", "local_weights",
           "local_metrics_table", "METRICS"]

#: Per-tile metric columns of :func:`frame_tile_metrics`, in order.
METRICS = ("fwhm", "roundness", "contrast", "star_count", "background", "noise", "gradient")
EPS_MAD = 1e-6
MIN_VALID_PX = 16


def reference_stars(ccd, fwhm: float, threshold_sigma: float = 5.0, max_stars: int = 2000):
    """Positions ``(x, y)`` (ndarray, shape (n, 2), px) of the unsaturated stars of a frame,
    found by :func:`starloom.astro.stars.detect_stars` (photutils DAOStarFinder)."""
    from .stars import detect_stars

    fwhm = fwhm if np.isfinite(fwhm) and fwhm > 0 else 3.0
    stars, _ = detect_stars(ccd.data, fwhm=fwhm, threshold_sigma=threshold_sigma,
                            mask=~valid_pixels(ccd), max_stars=max_stars)
    keep = ~np.asarray(stars["saturated"], dtype=bool)
    return np.column_stack([np.asarray(stars["x"], float)[keep], np.asarray(stars["y"], float)[keep]])


def sky_map(data, valid, box: int):
    """The sky under the sources: photutils ``Background2D`` (median in ``box`` px boxes, 3x3
    median filter of the boxes), or the median of the valid pixels when the image is too small
    or too masked for boxes.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
    valid : ndarray of bool, shape (ny, nx)
        Pixels to use.
    box : int
        Box size, px.

    Returns
    -------
    ndarray, shape (ny, nx), float64
    """
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.background import Background2D, MedianBackground

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            bkg = Background2D(np.where(valid, data, 0.0), box, mask=~valid, filter_size=3,
                               bkg_estimator=MedianBackground())
        return np.asarray(bkg.background)
    except ValueError:
        return np.full(data.shape, np.median(data[valid]) if valid.any() else 0.0)


def frame_tile_metrics(ccd, tiles: np.ndarray, stars: np.ndarray, fwhm: float) -> np.ndarray:
    """Quality metrics of every tile of one registered frame.

    Parameters
    ----------
    ccd : CCDData
        Registered frame, shape ``(ny, nx)``; masked and non-finite pixels are left out of every
        metric (tile_compile 5.5 canvas exclusion).
    tiles : ndarray, shape (n_tiles, 4), int
        ``(x0, y0, x1, y1)`` of the tiles.
    stars : ndarray, shape (n_stars, 2)
        Star positions on the canvas (:func:`reference_stars`).
    fwhm : float
        Typical FWHM, px (start of the adaptive moments' window).

    Returns
    -------
    ndarray, shape (n_tiles, len(METRICS)), float64
        Per tile, in :data:`METRICS` order: median star FWHM (px), median roundness (minor over
        major axis of the adaptive moments, 1 = round), median star contrast (star peak above
        the background over the tile noise), number of stars measured, median background,
        noise (1.4826 MAD of the background-subtracted pixels), and ``E/sigma``: the root mean
        square Sobel gradient (scipy.ndimage) of the background-subtracted tile over its noise.
        NaN where a tile has fewer than 16 valid pixels, and star metrics NaN without stars.
    """
    from scipy import ndimage

    from .stars import adaptive_moments

    valid = valid_pixels(ccd)
    data = np.where(valid, np.asarray(ccd.data, dtype=np.float64), 0.0)
    side = int(np.median(tiles[:, 2] - tiles[:, 0]))
    bkg = sky_map(data, valid, max(8, side // 2))
    sub = np.where(valid, data - bkg, 0.0)
    grad = np.hypot(ndimage.sobel(sub, axis=0), ndimage.sobel(sub, axis=1))
    fw, ecc = np.full(len(stars), np.nan), np.full(len(stars), np.nan)
    peak = np.full(len(stars), np.nan)
    if len(stars):
        _, _, fw, ecc = adaptive_moments(sub, stars[:, 0], stars[:, 1], fwhm, valid)
        yi = np.clip(np.rint(stars[:, 1]).astype(int), 0, sub.shape[0] - 1)
        xi = np.clip(np.rint(stars[:, 0]).astype(int), 0, sub.shape[1] - 1)
        peak = ndimage.maximum_filter(sub, size=3)[yi, xi]
    out = np.full((len(tiles), len(METRICS)), np.nan)
    for t, (x0, y0, x1, y1) in enumerate(tiles):
        v = valid[y0:y1, x0:x1]
        if np.count_nonzero(v) < MIN_VALID_PX:
            continue
        pix = sub[y0:y1, x0:x1][v]
        noise = max(1.4826 * np.median(np.abs(pix - np.median(pix))), EPS_MAD)
        inside = ((stars[:, 0] >= x0) & (stars[:, 0] < x1) & (stars[:, 1] >= y0)
                  & (stars[:, 1] < y1) & np.isfinite(fw)) if len(stars) else np.zeros(0, bool)
        row = [np.nan, np.nan, np.nan, float(inside.sum()), float(np.median(bkg[y0:y1, x0:x1][v])),
               noise, float(np.sqrt(np.mean(grad[y0:y1, x0:x1][v] ** 2))) / noise]
        if inside.any():
            row[0] = float(np.median(fw[inside]))
            row[1] = float(np.median(np.sqrt(1.0 - ecc[inside] ** 2)))
            row[2] = float(np.median(peak[inside])) / noise
        out[t] = row
    return out


def robust_z(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Robust z-score ``(x - median) / max(1.4826 MAD, 1e-6)`` along ``axis``, NaN-aware
    (tile_compile methodology v3.3.9, 5.3.1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a tile without stars: all NaN
        med = np.nanmedian(values, axis=axis, keepdims=True)
        mad = np.nanmedian(np.abs(values - med), axis=axis, keepdims=True)
    return (values - med) / np.maximum(1.4826 * mad, EPS_MAD)


def local_weights(metrics: np.ndarray, global_weight: np.ndarray, *, star_min_count: int = 3,
                  k_local: float = 1.0) -> dict:
    """Local quality scores and weights of every frame and tile.

    Parameters
    ----------
    metrics : ndarray, shape (n_frames, n_tiles, len(METRICS))
        From :func:`frame_tile_metrics`, stacked over frames.
    global_weight : ndarray, shape (n_frames,)
        Global weight ``G`` of each frame (1 when unknown).
    star_min_count : int
        Stars a tile needs to be scored fully as a star tile (``eta = 1``).
    k_local : float
        Sharpness of the exponential local weight.

    Returns
    -------
    dict of ndarray, each shape (n_frames, n_tiles)
        ``q_star``, ``q_struct``, ``eta``, ``q_local`` (clipped to [-3, 3]), ``local_weight``
        ``L = exp(k_local q_local)``, ``weight`` ``W = G L`` (0 where the tile has no valid
        pixels in that frame).
    """
    m = {name: metrics[..., i] for i, name in enumerate(METRICS)}
    q_star = 0.6 * -robust_z(m["fwhm"]) + 0.2 * robust_z(m["roundness"]) + 0.2 * robust_z(m["contrast"])
    q_struct = 0.7 * robust_z(m["gradient"]) - 0.3 * robust_z(m["background"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        count = np.nanmedian(m["star_count"], axis=0, keepdims=True)
    eta = np.clip(count / max(star_min_count, 1), 0, 1)
    eta = np.broadcast_to(np.nan_to_num(eta), q_star.shape)
    blend = np.where(np.isfinite(q_star), eta * q_star + (1 - eta) * np.nan_to_num(q_struct),
                     q_struct)
    q_local = np.clip(np.nan_to_num(blend), -3.0, 3.0)
    local = np.exp(k_local * q_local)
    usable = np.isfinite(m["noise"])
    weight = np.where(usable, np.asarray(global_weight, float)[:, None] * local, 0.0)
    return {"q_star": q_star, "q_struct": q_struct, "eta": np.array(eta), "q_local": q_local,
            "local_weight": local, "weight": weight}


def local_metrics_table(names, metrics: np.ndarray, scores: dict, global_weight) -> Table:
    """One row per frame and tile: ``frame``, ``frame_index``, ``tile``, the :data:`METRICS`,
    the scores of :func:`local_weights`, ``global_weight`` and ``weight``."""
    n_frames, n_tiles = metrics.shape[:2]
    fi, ti = np.meshgrid(np.arange(n_frames), np.arange(n_tiles), indexing="ij")
    cols = {"frame": np.asarray(names, dtype=str)[fi.ravel()], "frame_index": fi.ravel(),
            "tile": ti.ravel()}
    cols.update({name: metrics[..., i].ravel() for i, name in enumerate(METRICS)})
    cols.update({k: np.asarray(v, float).ravel() for k, v in scores.items()})
    cols["global_weight"] = np.repeat(np.asarray(global_weight, float), n_tiles)
    return Table(cols)
