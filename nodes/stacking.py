"""Stacking: combine registered light frames into one image."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from starloom.graph_runtime.node import Knob, Node, Port

from ._common import CombineParams


class Stack(Node):
    type_id = "stacking.combine"
    libraries = ("astropy", "numpy", "scipy")  # scipy: the GESD critical values
    title = "Stack"
    category = "stacking"
    description = """
    Combine registered frames pixel by pixel, band by band so any number of frames fits in
    memory: average, median or sum, with sigma clipping, winsorized sigma clipping, min/max,
    linear-fit clipping, percentile clipping or the generalized ESD test (masked pixels never
    enter the rejection; weights apply to the kept values). The rejection map counts the values
    each pixel lost: trails and hot pixels light up in it (artifact rejection_map.png: red =
    rejected high, blue = rejected low). Frames can be normalised (additive: each frame's sky
    level shifted to the first frame's) and weighted by exposure time or by inverse noise
    variance, the noise being the sigma-clipped standard deviation of each frame (astropy
    sigma_clipped_stats).
    """

    class Params(CombineParams):
        method: Literal["average", "median", "sum"] = Field("average", description="Combination along the frame axis")
        normalization: Literal["none", "additive"] = Field(
            "additive", description="Match each frame's background (sigma-clipped median) to the first's")
        weights: Literal["none", "exposure", "noise"] = Field(
            "noise", description="Per-frame weights of the average: EXPTIME, or 1/sigma^2 of the background")
        # A knob: every value gives bit-identical results (tests/test_combine.py), so it stays
        # out of the cache key.
        memory_limit: int = Knob(
            128, ge=8, le=1 << 20, json_schema_extra={"unit": "MiB"},
            description="MiB for the frames being combined (two bands of rows of every frame, "
                        "half each); the output images come on top. Does not change the result")

    inputs = {"frames": Port("FrameSeries", "registered frames")}
    outputs = {"image": Port("Image", "stacked image"),
               "rejection_map": Port("Image", "values rejected per pixel (uint16 counts)")}

    def run(self, ctx, params, frames):
        import numpy as np
        from starloom.astro.stacking import (frame_statistics, noise_weights, rejection_map_image,
                                             rejection_map_rgb, rejection_summary)
        from starloom.astro.stretch import write_png
        n = len(frames)
        med, std = np.zeros(n, np.float32), np.ones(n, np.float32)
        if params.normalization != "none" or params.weights == "noise":
            med, std = frame_statistics(frames)
        shift = (med - med[0]) if params.normalization == "additive" else np.zeros(n, np.float32)
        weights = None
        if params.weights == "exposure":
            weights = np.array([r.meta.get("EXPTIME") or 1.0 for r in frames.refs], np.float64)
        elif params.weights == "noise":
            weights = noise_weights(std)
        # no transform without normalization: frames are then read as stored (faster)
        transform = (None if params.normalization == "none"
                     else lambda i, y0, y1, d: d - shift[i])
        rejected = np.zeros((2,) + tuple(frames.shape), np.uint16)  # low, high
        image = params.combine(frames, ctx, weights=weights, transform=transform,
                               band_bytes=params.memory_limit * 2**20 // 2,
                               rejection_map=rejected,
                               # on a Dask cluster, row bands are tasks on its workers
                               band_map=ctx.band_map, band_tasks=ctx.band_tasks)
        write_png(ctx.artifact_path("rejection_map.png"), rejection_map_rgb(rejected))
        ctx.diagnostics.update(
            n_frames=n, frames=frames.names, background=med.tolist(), noise=std.tolist(),
            weights=None if weights is None else (weights / weights.sum()).tolist(),
            rejection=rejection_summary(rejected, n))
        ctx.history(f"stacked {n} frames")
        return {"image": image,
                "rejection_map": rejection_map_image(rejected, n, params.rejection)}


NODES = [Stack]
