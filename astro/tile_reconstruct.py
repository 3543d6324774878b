"""Tile reconstruction: a weighted fusion of the frames per tile, blended by overlap-add.

Method: tile_compile's tile reconstruction (J. Amon, "Tile-Based Quality Reconstruction for
DSO", methodology v3.3.9, section 5.7, github.com/jeamy/tile_compile). Per tile ``t`` and pixel
``p``, ``R_t(p) = sum_f W_ft I_f(p) / sum_f W_ft`` over the frames valid at ``p`` (masked and
non-finite pixels never enter), optionally after sigma clipping of the samples; the tiles are
then blended by window-weighted overlap-add, ``I = sum_t w_t M_t R_t / sum_t w_t M_t`` with a
separable Hann window ``w_t`` and the support ``M_t`` (1 where the tile has data), which is
exact for a constant image and has no step at tile borders.

Differences from tile_compile, each a parameter: the rejection uses astropy's ``sigma_clip``
(centre median, spread standard deviation) and can grow each frame's rejected pixels by a few
pixels, which removes the faint wings of satellite trails (PixInsight ImageIntegration's
"large-scale pixel rejection" grows rejected structures the same way); ``best_fraction`` keeps
only the best-weighted frames of each tile (tile_compile forbids frame selection; 1.0 keeps all).

Frames are read in bands of one tile row at a time, so memory holds ``n_frames x tile side x
width`` pixels, whatever the number of rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.nddata import CCDData

from .errors import ParamError
from .frames import unit_of
from .tile_grid import hann_window

__all__ = ["Reconstruction", "fuse_tile", "reconstruct_tiles"]


@dataclass
class Reconstruction:
    """Result of :func:`reconstruct_tiles`: ``image`` (CCDData, mask where nothing contributed),
    ``usage`` (float32, frames used per pixel, window-blended), ``weight`` (float32, summed
    weight of the frames used per pixel), ``rejected`` (float32, samples rejected per pixel)."""

    image: CCDData
    usage: np.ndarray
    weight: np.ndarray
    rejected: np.ndarray


def _keep_best(weights: np.ndarray, fraction: float) -> np.ndarray:
    """Weights with all but the best ``ceil(fraction * n)`` positive ones set to 0."""
    w = np.asarray(weights, dtype=np.float64).copy()
    n_keep = max(1, int(np.ceil(fraction * np.count_nonzero(w > 0))))
    if n_keep < np.count_nonzero(w > 0):
        w[np.argsort(-w)[n_keep:]] = 0.0
    return w


def fuse_tile(stack: np.ndarray, weights: np.ndarray, *, rejection: str = "sigma_clip",
              sigma_low: float = 3.0, sigma_high: float = 3.0, maxiters: int = 3, grow: int = 1):
    """Weighted mean of one tile's samples, with outlier rejection.

    Parameters
    ----------
    stack : ndarray, shape (n_frames, h, w), float
        The tile in every frame, NaN where a frame has no data.
    weights : ndarray, shape (n_frames,)
        Weights ``W_ft`` (>= 0) of the frames in this tile.
    rejection : {'none', 'sigma_clip'}
        'sigma_clip': astropy ``sigma_clip`` along the frame axis (centre median, spread
        standard deviation, ``maxiters``), over all frames with data (also the zero-weight ones,
        for a robust spread); a pixel keeps at least half of its samples (tile_compile's keep
        floor) or is not clipped.
    sigma_low, sigma_high : float
        Clipping bounds in standard deviations.
    grow : int
        Rejected pixels of each frame grow by this many pixels (binary dilation), 0 for none.

    Returns
    -------
    value, usage, weight, rejected : ndarray, shape (h, w)
        The fused tile (NaN where no sample with weight is left), the number of samples with
        weight used, their summed weight and the number of samples rejected.
    """
    data = np.asarray(stack, dtype=np.float64)
    valid = np.isfinite(data)
    keep = valid.copy()
    if rejection == "sigma_clip" and data.shape[0] >= 3:
        from astropy.stats import sigma_clip

        clipped = sigma_clip(np.ma.masked_invalid(data), sigma_lower=sigma_low,
                             sigma_upper=sigma_high, maxiters=maxiters, axis=0, masked=True)
        out = np.ma.getmaskarray(clipped) & valid
        if grow > 0:
            from scipy.ndimage import binary_dilation

            se = np.ones((1, 2 * grow + 1, 2 * grow + 1), bool)
            out = binary_dilation(out, structure=se) & valid
        floor = np.ceil(0.5 * valid.sum(axis=0))
        out &= ((valid & ~out).sum(axis=0) >= floor)[None]
        keep &= ~out
    elif rejection not in ("none", "sigma_clip"):
        raise ParamError("rejection", f"must be 'none' or 'sigma_clip', got {rejection!r}")
    w = np.asarray(weights, dtype=np.float64)[:, None, None] * keep
    wsum = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(wsum > 0, (w * np.where(keep, data, 0.0)).sum(axis=0) / wsum, np.nan)
    return value, (w > 0).sum(axis=0), wsum, (valid & ~keep).sum(axis=0)


def reconstruct_tiles(frames, tiles: np.ndarray, weights: np.ndarray, *, used=None,
                      best_fraction: float = 1.0, rejection: str = "sigma_clip",
                      sigma_low: float = 3.0, sigma_high: float = 3.0, maxiters: int = 3,
                      grow: int = 1, progress=None) -> Reconstruction:
    """Reconstruct the image tile by tile and blend the tiles by Hann-window overlap-add.

    Parameters
    ----------
    frames : FrameSeries
        Registered (and normalised) frames on one canvas, shape ``(ny, nx)``; masks mark
        pixels without data. Read band by band (one tile row of every frame at a time).
    tiles : ndarray, shape (n_tiles, 4), int
        ``(x0, y0, x1, y1)`` of the tiles (:func:`starloom.astro.tile_grid.make_tiles`).
    weights : ndarray, shape (n_frames, n_tiles)
        Effective weight ``W`` of each frame in each tile (>= 0).
    used : ndarray of bool, shape (n_tiles,), optional
        Tiles taking part (the common overlap); all by default.
    best_fraction : float
        Per tile, only the best-weighted ``ceil(best_fraction * n)`` frames are averaged
        (0 < best_fraction <= 1).
    rejection, sigma_low, sigma_high, maxiters, grow :
        See :func:`fuse_tile`.
    progress : callable(done, total), optional
        Called after each tile row.

    Returns
    -------
    Reconstruction

    Raises
    ------
    ParamError
        ``best_fraction`` outside (0, 1], weights of the wrong shape, or frames not 2-D.
    """
    n, shape = len(frames), tuple(frames.shape)
    if len(shape) != 2:
        raise ParamError("frames", f"shape {shape}: the tile reconstruction takes mono or CFA "
                                   f"frames (one plane)")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n, len(tiles)):
        raise ParamError("weights", f"expected shape {(n, len(tiles))} (frames, tiles), got {weights.shape}")
    if not 0 < best_fraction <= 1:
        raise ParamError("best_fraction", f"must be within (0, 1], got {best_fraction}")
    used = np.ones(len(tiles), bool) if used is None else np.asarray(used, bool)
    acc = {k: np.zeros(shape) for k in ("num", "den", "usage", "weight", "rejected")}
    read_band = frames.band_reader()  # rows of every frame, masked pixels as NaN below
    rows = sorted({(int(y0), int(y1)) for (_, y0, _, y1) in tiles[used]})
    for r, (y0, y1) in enumerate(rows):
        band = np.empty((n, y1 - y0, shape[-1]), np.float32)
        for i in range(n):
            d, m = read_band(i, y0, y1)
            band[i] = d if m is None else np.where(m, np.nan, d)
        for t in np.flatnonzero(used & (tiles[:, 1] == y0) & (tiles[:, 3] == y1)):
            x0, x1 = int(tiles[t, 0]), int(tiles[t, 2])
            w = _keep_best(weights[:, t], best_fraction)
            if not (w > 0).any():  # tile_compile's fallback: equal weights
                w = np.ones(n)
            value, usage, wsum, rej = fuse_tile(band[:, :, x0:x1], w, rejection=rejection,
                                                sigma_low=sigma_low, sigma_high=sigma_high,
                                                maxiters=maxiters, grow=grow)
            win = hann_window(y1 - y0, x1 - x0) * np.isfinite(value)
            sl = (slice(y0, y1), slice(x0, x1))
            acc["num"][sl] += win * np.nan_to_num(value)
            acc["den"][sl] += win
            for key, v in (("usage", usage), ("weight", wsum), ("rejected", rej)):
                acc[key][sl] += win * v
        if progress is not None:
            progress(r + 1, len(rows))
    return _finish(acc, frames, n)


def _finish(acc: dict, frames, n: int) -> Reconstruction:
    den = acc["den"]
    covered = den > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        maps = {k: np.where(covered, acc[k] / den, 0.0).astype(np.float32)
                for k in ("num", "usage", "weight", "rejected")}
    header = frames.refs[0].header()
    for key in list(header):
        if key.startswith(("BZERO", "BSCALE", "BLANK")):
            del header[key]
    header["NCOMBINE"] = (n, "number of frames combined")
    header["TILERECO"] = (True, "tile-based quality-weighted reconstruction")
    image = CCDData(np.where(covered, maps["num"], np.nan).astype(np.float32), unit=unit_of(frames.refs[0]),
                    mask=None if covered.all() else ~covered, meta=header)
    return Reconstruction(image, maps["usage"], maps["weight"], maps["rejected"])
