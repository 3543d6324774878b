"""The tile grid of the tile-based reconstruction and its common overlap.

Method: tile_compile's tile geometry (J. Amon, "Tile-Based Quality Reconstruction for DSO",
methodology v3.3.9, section 5.4, github.com/jeamy/tile_compile): the tile side is a multiple of
the measured seeing FWHM, ``T = floor(clip(s * F, T_min, T_max))``, tiles overlap by
``O = floor(o * T)`` and step by ``S = T - O``. Starloom bounds ``T`` by a maximum size in
pixels (and by the image) instead of tile_compile's ``min(W, H) / D``, and places the last tile
of a row or column flush with the image edge so that every pixel is covered. The common overlap
is tile_compile's canvas-validity rule: a tile whose pixels are mostly not covered by the
registered frames (an empty warp border) takes no part in the reconstruction.
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from .errors import ParamError, StarloomError

__all__ = ["tile_size", "tile_starts", "make_tiles", "coverage_maps", "grid_table",
           "series_fwhm", "hann_window", "valid_pixels", "check_plane"]

#: FWHM (px) assumed when none can be measured (tile_compile section 5.4, rule 1).
DEFAULT_FWHM = 3.0


def tile_size(fwhm: float, shape, *, size_factor: float = 16.0, min_size: int = 32,
              max_size: int = 256, overlap: float = 0.25) -> tuple[int, int, int]:
    """Tile side, overlap and step, in pixels, from the seeing.

    Parameters
    ----------
    fwhm : float
        Robust seeing FWHM of the series, px; ``<= 0`` or NaN means :data:`DEFAULT_FWHM`.
    shape : (int, int)
        ``(ny, nx)`` of the frames.
    size_factor : float
        Tile side in FWHMs (tile_compile's ``s``).
    min_size, max_size : int
        Bounds of the tile side, px; the side never exceeds the image's smaller side.
    overlap : float
        Overlap fraction of the side, 0 to 0.5.

    Returns
    -------
    (side, overlap_px, step) : tuple of int

    Raises
    ------
    ParamError
        ``min_size`` below 8 or above ``max_size``, or ``overlap`` outside 0..0.5.
    """
    if min_size < 8 or max_size < min_size:
        raise ParamError("min_size", f"needs 8 <= min_size <= max_size, got {min_size}, {max_size}")
    if not 0.0 <= overlap <= 0.5:
        raise ParamError("overlap", f"must be within 0..0.5, got {overlap}")
    f = float(fwhm) if fwhm is not None and np.isfinite(fwhm) and fwhm > 0 else DEFAULT_FWHM
    hi = min(int(max_size), int(min(shape)))
    side = int(np.floor(np.clip(size_factor * f, min(min_size, hi), hi)))
    ov = int(np.floor(overlap * side))
    return side, ov, max(side - ov, 1)


def tile_starts(length: int, side: int, step: int) -> list[int]:
    """Start offsets of tiles of ``side`` px every ``step`` px along ``length`` px, the last one
    flush with the end (so the tiles cover ``0..length`` exactly)."""
    if side >= length:
        return [0]
    starts = list(range(0, length - side + 1, step))
    if starts[-1] != length - side:
        starts.append(length - side)
    return starts


def make_tiles(shape, side: int, step: int) -> np.ndarray:
    """Tile rectangles ``(x0, y0, x1, y1)`` (int, shape ``(n_tiles, 4)``), row by row, covering
    an image of ``shape = (ny, nx)``; ``x1``, ``y1`` exclusive."""
    ny, nx = shape[-2:]
    rows = [(x, y, min(x + side, nx), min(y + side, ny))
            for y in tile_starts(ny, side, step) for x in tile_starts(nx, side, step)]
    return np.array(rows, dtype=int)


def check_plane(ccd, name: str, shape=None) -> None:
    """Raise a one-line StarloomError unless ``ccd`` is one 2-D plane (mono or a CFA mosaic) of
    ``shape`` (when given): the tile pipeline weighs whole tiles, not colour planes."""
    if np.ndim(ccd.data) != 2:
        raise StarloomError(f"frame '{name}' has shape {np.shape(ccd.data)}: the tile pipeline "
                            f"takes mono or CFA frames (one plane); stack RGB planes separately")
    if shape is not None and tuple(np.shape(ccd.data)) != tuple(shape):
        raise StarloomError(f"frame '{name}' has shape {np.shape(ccd.data)}, expected {tuple(shape)}: "
                            f"frames must share one canvas (tiles.prewarp)")


def valid_pixels(ccd) -> np.ndarray:
    """Boolean map of a frame's usable pixels: finite and not masked (True = valid)."""
    valid = np.isfinite(ccd.data)
    if ccd.mask is not None:
        valid &= ~np.asarray(ccd.mask, dtype=bool)
    return valid


def coverage_maps(frames, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of frames covering each pixel, and where every frame covers it.

    Parameters
    ----------
    frames : FrameSeries or sequence of CCDData
        Registered frames on one canvas; a pixel is covered when it is finite and not masked
        (the coverage mask of a warp). Read one at a time.
    progress : callable(done, total), optional

    Returns
    -------
    coverage : ndarray, shape (ny, nx), float32
        Fraction of frames valid at each pixel, 0..1.
    common : ndarray, shape (ny, nx), bool
        True where all frames are valid.

    Raises
    ------
    StarloomError
        A frame is not 2-D or its shape differs from the first frame's (names the frame).
    """
    total, n = None, len(frames)
    names = getattr(frames, "names", [f"frame {i}" for i in range(n)])
    for i, ccd in enumerate(frames):
        check_plane(ccd, names[i], None if total is None else total.shape)
        valid = valid_pixels(ccd)
        total = valid.astype(np.int32) if total is None else total + valid
        if progress is not None:
            progress(i + 1, n)
    return (total / n).astype(np.float32), total == n


def grid_table(tiles: np.ndarray, coverage: np.ndarray, common: np.ndarray, *,
               min_valid_fraction: float = 0.5, fwhm: float = np.nan, side: int = 0,
               overlap_px: int = 0) -> Table:
    """The tile grid as a table, each tile's coverage and whether it is used.

    Parameters
    ----------
    tiles : ndarray, shape (n_tiles, 4), int
        ``(x0, y0, x1, y1)`` from :func:`make_tiles`.
    coverage, common : ndarray, shape (ny, nx)
        From :func:`coverage_maps`.
    min_valid_fraction : float
        A tile is used when its mean coverage (the fraction of its pixel-frame samples that
        hold data) is at least this.
    fwhm, side, overlap_px :
        Recorded in the table's ``meta`` (``FWHM``, ``TILESIZE``, ``OVERLAP``).

    Returns
    -------
    Table
        Columns ``tile`` (index), ``x0``, ``y0``, ``x1``, ``y1`` (px), ``valid_fraction``
        (mean coverage), ``common_fraction`` (fraction of pixels covered by every frame),
        ``used`` (bool).
    """
    vf = np.array([coverage[y0:y1, x0:x1].mean() for x0, y0, x1, y1 in tiles])
    cf = np.array([common[y0:y1, x0:x1].mean() for x0, y0, x1, y1 in tiles])
    table = Table({"tile": np.arange(len(tiles)), "x0": tiles[:, 0], "y0": tiles[:, 1],
                   "x1": tiles[:, 2], "y1": tiles[:, 3], "valid_fraction": vf,
                   "common_fraction": cf, "used": vf >= min_valid_fraction})
    table.meta.update(FWHM=float(fwhm), TILESIZE=int(side), OVERLAP=int(overlap_px),
                      NY=int(coverage.shape[0]), NX=int(coverage.shape[1]))
    return table


def series_fwhm(frames, fwhm_column=None) -> tuple[float, str]:
    """Robust seeing of a series: the median FWHM, px, and where it came from.

    Taken from ``fwhm_column`` (e.g. a global-metrics table's ``fwhm``) when given, else from
    the frames' ``FWHM`` header cards, else measured with
    :func:`starloom.astro.stars.detect_stars` on the middle frame. NaN when nothing is found.
    """
    if fwhm_column is not None:
        values = np.asarray(fwhm_column, dtype=float)
        values = values[np.isfinite(values) & (values > 0)]
        if values.size:
            return float(np.median(values)), "metrics table"
    cards = [r.header().get("FWHM") for r in frames.refs] if hasattr(frames, "refs") else []
    cards = [float(v) for v in cards if isinstance(v, (int, float)) and v > 0]
    if cards:
        return float(np.median(cards)), "FWHM header cards"
    from .stars import detect_stars

    ccd = frames[len(frames) // 2]
    _, metrics = detect_stars(ccd.data, mask=~valid_pixels(ccd), threshold_sigma=5.0)
    fwhm = metrics.get("median_fwhm_px")
    return (float(fwhm), "stars of the middle frame") if fwhm else (np.nan, "none")


def hann_window(height: int, width: int) -> np.ndarray:
    """Separable Hann window ``sin^2(pi (i + 0.5) / n)`` of a tile, float64, never zero.

    Overlap-add with these windows, divided by the summed windows at each pixel, is exact for
    any overlap (a constant image stays constant), and reaches the tile borders smoothly, so
    no seam shows (Harris 1978, Proc. IEEE 66, 51, for the window; the normalisation is
    tile_compile's support-aware OLA, methodology v3.3.9 section 5.7.1).
    """
    wy = np.sin(np.pi * (np.arange(height) + 0.5) / height) ** 2
    wx = np.sin(np.pi * (np.arange(width) + 0.5) / width) ** 2
    return np.outer(wy, wx)
