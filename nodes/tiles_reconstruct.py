"""Tile pipeline, second half: tile grid and common overlap, local metrics, tile
reconstruction, state clustering and synthetic frames (tile_compile's phases 5-9; the method
and its sources are in :mod:`starloom.astro.tile_grid`, :mod:`~starloom.astro.local_metrics`,
:mod:`~starloom.astro.tile_reconstruct` and :mod:`~starloom.astro.clustering`).

They consume the first half's interface (:mod:`starloom.nodes.tiles_prep`): frames on one
canvas with masks (True = no data) and GLOBWT/FWHM cards, the global metrics table, the scan's
``mode``.
"""
from __future__ import annotations

import warnings
from typing import Literal

from pydantic import Field
from starloom.astro.errors import StarloomError
from starloom.graph_runtime.node import Node, Params, Port, Quantity

from ._common import SIGMA_HIGH, SIGMA_LOW, ClipIterations, SigmaBound

_FIGURES = ("astropy", "matplotlib", "numpy")


def _global_weight(frames, metrics, exponent: float):
    from starloom.astro.tile_pipeline import global_weights_of

    return global_weights_of(frames, metrics) ** exponent


class TileGrid(Node):
    type_id = "tiles.tile_grid"
    libraries = ("astropy", "photutils", "numpy")
    title = "Tile grid"
    category = "tiles"
    description = """
    Lay a grid of overlapping square tiles over the registered frames, the side a multiple of
    the seeing FWHM (from the global metrics, the FWHM cards, or measured), within bounds in
    pixels (tile_compile's tile geometry). Common overlap: each tile's valid fraction (mean
    coverage of the frames' masks); tiles below 'min_valid_fraction' (empty warp borders) are
    not used. Heatmap of the coverage per tile in the artifacts.
    """

    class Params(Params):
        fwhm: Quantity("pix", ge=0, le=100, description="Seeing FWHM; 0: from the metrics "
                       "table, the FWHM cards or measured") = 0.0
        size_factor: float = Field(16.0, gt=1, le=200, description="Tile side in FWHMs")
        min_size: int = Field(32, ge=8, le=4096, description="Smallest tile side, px")
        max_size: int = Field(256, ge=8, le=8192, description="Largest tile side, px")
        overlap: float = Field(0.25, ge=0, le=0.5,
                               description="Overlap of neighbouring tiles, fraction of the side")
        min_valid_fraction: float = Field(0.5, ge=0, le=1,
                                          description="Tiles whose mean coverage is lower are not used")

    inputs = {"frames": Port("FrameSeries", "registered frames on one canvas (mask = no data)"),
              "metrics": Port("Table", "global metrics (its 'fwhm' column gives the seeing)",
                              optional=True)}
    outputs = {"grid": Port("Table", "tiles: x0, y0, x1, y1, valid_fraction, common_fraction, used")}

    def run(self, ctx, params, frames, metrics=None):
        import numpy as np
        from starloom.astro import tile_grid as tg
        from starloom.astro.tile_plots import plot_tile_values

        if len(frames) == 0:
            raise StarloomError("no frames to lay a tile grid over")
        fwhm, source = params.fwhm, "parameter"
        if not fwhm:
            col = metrics["fwhm"] if metrics is not None and "fwhm" in metrics.colnames else None
            fwhm, source = tg.series_fwhm(frames, col)
        shape = tuple(frames.shape)[-2:]
        side, ov, step = tg.tile_size(fwhm, shape, size_factor=params.size_factor,
                                      min_size=params.min_size, max_size=params.max_size,
                                      overlap=params.overlap)
        coverage, common = tg.coverage_maps(frames, progress=ctx.progress)
        grid = tg.grid_table(tg.make_tiles(shape, side, step), coverage, common,
                             min_valid_fraction=params.min_valid_fraction, fwhm=fwhm,
                             side=side, overlap_px=ov)
        grid.meta["FWHMSRC"] = source
        n_used = int(np.count_nonzero(grid["used"]))
        if n_used == 0:
            raise StarloomError(f"no tile reaches min_valid_fraction {params.min_valid_fraction}")
        plot_tile_values(ctx.artifact_path("tile_grid.png"), grid, grid["valid_fraction"],
                         title=f"{len(grid)} tiles of {side} px ({n_used} used), overlap {ov} px",
                         label="valid fraction", outlines=True)
        ctx.diagnostics.update(fwhm_px=None if not np.isfinite(fwhm) else round(float(fwhm), 3),
                               fwhm_source=source, tile_size_px=side, overlap_px=ov,
                               n_tiles=len(grid), n_used=n_used,
                               excluded=[int(t) for t in grid["tile"][~grid["used"]]])
        return {"grid": grid}


class LocalMetrics(Node):
    type_id = "tiles.local_metrics"
    libraries = ("astropy", "photutils", "scipy", "numpy")
    title = "Local tile metrics"
    category = "tiles"
    description = """
    Measure every tile of every frame: star FWHM, roundness and contrast at the stars of the
    reference frame (the one of highest global weight), background, noise and gradient energy
    over noise. Robust z-scores over the frames give a star score and a structure score,
    blended by the tile's star count; the local weight L = exp(k_local Q) times the global
    weight G^k_global is the tile's effective weight (tile_compile). Heatmaps in the artifacts.
    """

    class Params(Params):
        star_min_count: int = Field(3, ge=1, le=1000,
                                    description="Stars a tile needs to be scored as a star tile")
        k_local: float = Field(0.5, gt=0, le=5, description="Sharpness of the local weight exp(k_local Q) "
                                                              "(tile_compile: 1; 0.5 keeps the noise lower)")
        k_global: float = Field(0.5, ge=0, le=5, description="Exponent applied to the global weight G "
                                                               "(G = exp(Q): exp(k_global Q)); 0 ignores G")
        detection_sigma: float = Field(5.0, gt=0, le=100,
                                       description="Star detection threshold on the reference, sigma")

    inputs = {"frames": Port("FrameSeries", "registered, normalised frames (mask = no data)"),
              "grid": Port("Table", "tile grid"),
              "metrics": Port("Table", "global metrics (its 'weight' is G); else GLOBWT cards",
                              optional=True)}
    outputs = {"table": Port("Table", "one row per frame and tile: metrics, scores, weights")}

    def run(self, ctx, params, frames, grid, metrics=None):
        from starloom.astro.tile_pipeline import measure_local

        if len(frames) < 2:
            raise StarloomError(f"local metrics need at least 2 frames, got {len(frames)}")
        g = _global_weight(frames, metrics, params.k_global)
        table, weights = measure_local(frames, grid, g, star_min_count=params.star_min_count,
                                       k_local=params.k_local, threshold_sigma=params.detection_sigma,
                                       progress=ctx.progress)
        self._figures(ctx, grid, table, weights, len(frames))
        per_frame = weights.sum(axis=1)
        ctx.diagnostics.update(
            reference=table.meta["REFFRAME"], n_stars=int(table.meta["NSTARS"]),
            k_local=params.k_local, k_global=params.k_global,
            frames={n: {"global_weight": round(float(gw), 5), "mean_tile_weight":
                        round(float(w) / max(len(grid), 1), 5)}
                    for n, gw, w in zip(frames.names, g, per_frame)})
        return {"table": table}

    @staticmethod
    def _figures(ctx, grid, table, weights, n_frames):
        import numpy as np
        from starloom.astro.tile_plots import plot_tile_values

        n_tiles = len(grid)
        def col(name):
            import numpy as np
            return np.asarray(table[name], float).reshape(n_frames, n_tiles)

        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN tiles (no stars)
            fwhm = np.nanmedian(col("fwhm"), axis=0)
            spread = np.nanstd(col("q_local"), axis=0)
            wn = weights / np.maximum(weights.sum(axis=0, keepdims=True), 1e-300)
            neff = 1.0 / np.maximum((wn ** 2).sum(axis=0), 1e-300) / n_frames
        plot_tile_values(ctx.artifact_path("tile_fwhm.png"), grid, fwhm,
                         title="median star FWHM per tile (grey: no stars)", label="FWHM (px)",
                         cmap="viridis_r")
        plot_tile_values(ctx.artifact_path("tile_quality_spread.png"), grid, spread,
                         title="spread of local quality Q over the frames", label="std of Q")
        plot_tile_values(ctx.artifact_path("tile_effective_frames.png"), grid, neff,
                         title="effective fraction of frames per tile", label="N_eff / N")
        plot_tile_values(ctx.artifact_path("tile_stars.png"), grid, col("star_count")[0],
                         title="stars per tile (reference star set)", label="stars")


class TileReconstruct(Node):
    type_id = "tiles.reconstruct"
    libraries = ("astropy", "scipy", "numpy")
    title = "Tile reconstruction"
    category = "tiles"
    description = """
    Reconstruct the image tile by tile: per tile the weighted mean of the frames with their
    local weights (optionally only the best fraction of frames), masked pixels left out, after
    sigma clipping whose rejected pixels grow by a few pixels (trails, hot pixels); the tiles
    blended by Hann-window overlap-add normalised by the summed window, so no seam shows.
    Reads one tile row of every frame at a time. Outputs the image, the usage map (frames used
    per pixel) and the weight map; PNGs of both and of the rejection map in the artifacts.
    """

    class Params(Params):
        best_fraction: float = Field(1.0, gt=0, le=1, description="Per tile, average only the "
                                                                  "best-weighted fraction of frames")
        rejection: Literal["none", "sigma_clip"] = Field(
            "sigma_clip", description="Outlier rejection per tile (astropy sigma_clip)")
        sigma_low: SigmaBound = Field(3.0, description=SIGMA_LOW)
        sigma_high: SigmaBound = Field(3.0, description=SIGMA_HIGH)
        maxiters: ClipIterations = 3
        grow: int = Field(1, ge=0, le=10, description="Rejected pixels of a frame grow by this "
                                                     "many pixels (trail wings), px")

    inputs = {"frames": Port("FrameSeries", "registered, normalised frames (mask = no data)"),
              "grid": Port("Table", "tile grid"),
              "weights": Port("Table", "local metrics table (its 'weight' column)")}
    outputs = {"image": Port("Image", "reconstructed image"),
               "usage": Port("Image", "frames used per pixel"),
               "weight": Port("Image", "summed weight of the frames used per pixel")}

    def run(self, ctx, params, frames, grid, weights):
        import numpy as np
        from astropy.nddata import CCDData
        from starloom.astro.tile_pipeline import tiles_of, weights_from_table
        from starloom.astro.tile_plots import plot_map
        from starloom.astro.tile_reconstruct import reconstruct_tiles

        tiles = tiles_of(grid)
        w = weights_from_table(weights, len(frames), len(tiles))
        rec = reconstruct_tiles(frames, tiles, w, used=np.asarray(grid["used"], bool),
                                best_fraction=params.best_fraction, rejection=params.rejection,
                                sigma_low=params.sigma_low, sigma_high=params.sigma_high,
                                maxiters=params.maxiters, grow=params.grow, progress=ctx.progress)
        plot_map(ctx.artifact_path("usage.png"), rec.usage, title="frames used per pixel",
                 label="frames", cmap="viridis")
        plot_map(ctx.artifact_path("weight.png"), rec.weight, title="summed weight per pixel",
                 label="weight", cmap="viridis", percentile=99.5)
        plot_map(ctx.artifact_path("rejected.png"), rec.rejected, title="samples rejected per pixel",
                 label="samples", percentile=99.9)
        covered = rec.usage > 0
        ctx.diagnostics.update(
            n_frames=len(frames), n_tiles_used=int(np.count_nonzero(grid["used"])),
            usage_median=float(np.median(rec.usage[covered])) if covered.any() else 0.0,
            rejected_fraction=float(rec.rejected[covered].sum() / max(len(frames) * covered.sum(), 1)),
            uncovered_pixels=int((~covered).sum()))
        ctx.history(f"tile reconstruction of {len(frames)} frames, {len(tiles)} tiles")
        return {"image": rec.image, "usage": CCDData(rec.usage, unit=""),
                "weight": CCDData(rec.weight, unit="")}


class StateClustering(Node):
    type_id = "tiles.state_clustering"
    libraries = ("scikit-learn", "numpy")
    title = "State clustering"
    category = "tiles"
    description = """
    Group the frames by their state vector (global weight, mean and variance of the local
    quality, background, noise), standardised, with scikit-learn KMeans or a Gaussian mixture;
    the number of clusters given or chosen by the silhouette score. In reduced mode (from the
    scan input) every frame is its own cluster and nothing is fitted (tile_compile skips this
    phase).
    """

    class Params(Params):
        method: Literal["kmeans", "gmm"] = Field("kmeans",
                                                 description="scikit-learn KMeans or GaussianMixture")
        n_clusters: int = Field(0, ge=0, le=100,
                                description="Number of clusters; 0: best silhouette score")
        max_clusters: int = Field(8, ge=2, le=100,
                                  description="Largest number tried when n_clusters is 0")

    inputs = {"weights": Port("Table", "local metrics table"),
              "metrics": Port("Table", "global metrics (background, noise per frame)", optional=True),
              "mode": Port("String", "'full' or 'reduced' (from the scan input)", optional=True)}
    outputs = {"clusters": Port("Table", "frame, frame_index, cluster and the state vector")}

    def run(self, ctx, params, weights, metrics=None, mode=None):
        import numpy as np
        from astropy.table import Table
        from starloom.astro.clustering import STATE_COLUMNS, cluster_states, state_vectors
        from starloom.astro.tile_plots import plot_clusters

        names, vec = state_vectors(weights, metrics)
        if mode == "reduced":
            labels = np.arange(len(names))
            ctx.warn("reduced mode: state clustering skipped, each frame is its own cluster")
            info = {"n_clusters": len(names), "skipped": "reduced mode"}
        else:
            labels, info = cluster_states(vec, method=params.method, n_clusters=params.n_clusters,
                                          max_clusters=params.max_clusters)
            plot_clusters(ctx.artifact_path("clusters.png"), vec[:, :2], labels, names,
                          title=f"{info['n_clusters']} state clusters ({params.method})")
        table = Table({"frame": names, "frame_index": np.arange(len(names)), "cluster": labels})
        for i, c in enumerate(STATE_COLUMNS):
            table[c] = vec[:, i]
        ctx.diagnostics.update(info, sizes={int(k): int((labels == k).sum()) for k in set(labels.tolist())})
        return {"clusters": table}


class SyntheticFrames(Node):
    type_id = "tiles.synthetic_frames"
    libraries = ("astropy", "numpy")
    title = "Synthetic frames"
    category = "tiles"
    description = """
    One synthetic frame per state cluster: the average of its frames weighted by their global
    weight G (tile_compile). In reduced mode (from the scan input) the frames pass through
    unchanged.
    """

    class Params(Params):
        pass

    inputs = {"frames": Port("FrameSeries", "registered, normalised frames"),
              "clusters": Port("Table", "state clusters"),
              "metrics": Port("Table", "global metrics (weight G); else GLOBWT cards", optional=True),
              "mode": Port("String", "'full' or 'reduced' (from the scan input)", optional=True)}
    outputs = {"frames": Port("FrameSeries", "one synthetic frame per cluster")}

    def run(self, ctx, params, frames, clusters, metrics=None, mode=None):
        import numpy as np
        from starloom.astro.frames import FrameSeries
        from starloom.astro.clustering import synthetic_frames

        if mode == "reduced":
            ctx.warn("reduced mode: synthetic frames skipped, the frames pass through")
            return {"frames": frames}
        labels = np.zeros(len(frames), int)
        labels[np.asarray(clusters["frame_index"], int)] = np.asarray(clusters["cluster"], int)
        g = _global_weight(frames, metrics, 1.0)
        made = synthetic_frames(frames, labels, g, progress=ctx.progress)
        ctx.diagnostics.update(clusters={str(k): int(ccd.header["NCOMBINE"]) for k, ccd in made})
        return {"frames": FrameSeries.from_frames([c for _, c in made],
                                                  [f"cluster_{k:02d}" for k, _ in made])}


NODES = [TileGrid, LocalMetrics, TileReconstruct, StateClustering, SyntheticFrames]
