"""The tile-based reconstruction in one call: tile grid, local metrics, weights, reconstruction.

The graph runs these steps as separate nodes (``nodes/tiles_reconstruct.py``); this module
chains the same library functions for notebooks, the benchmark and the tests. The method is
tile_compile's (J. Amon, methodology v3.3.9, sections 5.4-5.7, github.com/jeamy/tile_compile);
see :mod:`starloom.astro.tile_grid`, :mod:`starloom.astro.local_metrics` and
:mod:`starloom.astro.tile_reconstruct`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from . import local_metrics as lm
from . import tile_grid as tg
from .tile_reconstruct import Reconstruction, reconstruct_tiles

__all__ = ["TileResult", "global_weights_of", "build_grid", "measure_local", "run_tile_pipeline"]


@dataclass
class TileResult:
    """What :func:`run_tile_pipeline` returns: the ``grid`` table, the ``local`` table (one row
    per frame and tile), the ``weights`` array ``(n_frames, n_tiles)`` and the
    :class:`~starloom.astro.tile_reconstruct.Reconstruction`."""

    grid: Table
    local: Table
    weights: np.ndarray
    reconstruction: Reconstruction


def global_weights_of(frames, table: Table | None = None) -> np.ndarray:
    """Each frame's global weight ``G``: a metrics table's ``weight`` column (matched by
    ``name`` when it has one), else the frames' ``GLOBWT`` header cards, else 1."""
    names = frames.names
    if table is not None and "weight" in table.colnames:
        if "name" in table.colnames:
            by_name = {str(n): float(w) for n, w in zip(table["name"], table["weight"])}
            return np.array([by_name.get(n, 1.0) for n in names])
        if len(table) == len(names):
            return np.asarray(table["weight"], float)
    cards = [r.header().get("GLOBWT") for r in frames.refs]
    return np.array([float(c) if isinstance(c, (int, float)) else 1.0 for c in cards])


def build_grid(frames, *, fwhm: float | None = None, size_factor: float = 16.0,
               min_size: int = 32, max_size: int = 256, overlap: float = 0.25,
               min_valid_fraction: float = 0.5, progress=None) -> Table:
    """The tile grid table of a registered series (:func:`starloom.astro.tile_grid.grid_table`);
    ``fwhm`` None or 0: :func:`~starloom.astro.tile_grid.series_fwhm`."""
    source = "parameter"
    if not fwhm:
        fwhm, source = tg.series_fwhm(frames)
    shape = tuple(frames.shape)[-2:]
    side, ov, step = tg.tile_size(fwhm, shape, size_factor=size_factor, min_size=min_size,
                                  max_size=max_size, overlap=overlap)
    coverage, common = tg.coverage_maps(frames, progress=progress)
    table = tg.grid_table(tg.make_tiles(shape, side, step), coverage, common,
                          min_valid_fraction=min_valid_fraction, fwhm=fwhm, side=side,
                          overlap_px=ov)
    table.meta["FWHMSRC"] = source
    return table


def tiles_of(grid: Table) -> np.ndarray:
    """``(x0, y0, x1, y1)`` of a grid table's tiles, int array of shape (n_tiles, 4)."""
    return np.column_stack([np.asarray(grid[c], int) for c in ("x0", "y0", "x1", "y1")])


def measure_local(frames, grid: Table, global_weight: np.ndarray, *, reference: int | None = None,
                  star_min_count: int = 3, k_local: float = 1.0, threshold_sigma: float = 5.0,
                  progress=None) -> tuple[Table, np.ndarray]:
    """Local metrics of every frame and tile and the weights ``W = G L``.

    Stars are detected on frame ``reference`` (default: the frame of highest global weight).
    Returns the table of :func:`starloom.astro.local_metrics.local_metrics_table` and the
    weights, shape ``(n_frames, n_tiles)``, 0 for tiles not ``used``.
    """
    tiles = tiles_of(grid)
    fwhm = float(grid.meta.get("FWHM", np.nan))
    fwhm = fwhm if np.isfinite(fwhm) and fwhm > 0 else tg.DEFAULT_FWHM
    ref = int(np.argmax(global_weight)) if reference is None else int(reference)
    stars = lm.reference_stars(frames[ref], fwhm, threshold_sigma)
    metrics = []
    canvas = (int(grid.meta["NY"]), int(grid.meta["NX"])) if "NY" in grid.meta else None
    for i, ccd in enumerate(frames):
        tg.check_plane(ccd, frames.names[i], canvas)
        metrics.append(lm.frame_tile_metrics(ccd, tiles, stars, fwhm))
        if progress is not None:
            progress(i + 1, len(frames))
    metrics = np.stack(metrics)
    scores = lm.local_weights(metrics, global_weight, star_min_count=star_min_count,
                              k_local=k_local)
    table = lm.local_metrics_table(frames.names, metrics, scores, global_weight)
    table.meta.update(REFFRAME=frames.names[ref], NSTARS=len(stars))
    weights = scores["weight"] * np.asarray(grid["used"], bool)[None, :]
    return table, weights


def weights_from_table(table: Table, n_frames: int, n_tiles: int) -> np.ndarray:
    """The ``weight`` column of a local-metrics table as an array ``(n_frames, n_tiles)``."""
    w = np.zeros((n_frames, n_tiles))
    rows, cols = np.asarray(table["frame_index"], int), np.asarray(table["tile"], int)
    w[rows, cols] = np.asarray(table["weight"], float)
    return w


def run_tile_pipeline(frames, *, global_weight=None, grid_kw=None, local_kw=None,
                      reconstruct_kw=None) -> TileResult:
    """Grid, local metrics and reconstruction of a registered, normalised series.

    ``global_weight`` defaults to :func:`global_weights_of`; the ``*_kw`` dicts go to
    :func:`build_grid`, :func:`measure_local` and
    :func:`starloom.astro.tile_reconstruct.reconstruct_tiles`.
    """
    g = global_weights_of(frames) if global_weight is None else np.asarray(global_weight, float)
    grid = build_grid(frames, **(grid_kw or {}))
    local, weights = measure_local(frames, grid, g, **(local_kw or {}))
    rec = reconstruct_tiles(frames, tiles_of(grid), weights, used=np.asarray(grid["used"], bool),
                            **(reconstruct_kw or {}))
    return TileResult(grid, local, weights, rec)
