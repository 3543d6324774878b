"""Registration nodes: choose a reference frame, align frames to it by their stars
(:mod:`starloom.astro.registration`: sep star counts, astroalign asterism matching).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from starloom.astro.errors import FrameRejected, StarloomError
from starloom.graph_runtime.node import Node, Params, Port


# starloom.astro.registration imports astroalign, sep, scikit-image and scipy (~0.3 s): imported
# when a registration node runs, not when the registry is built (`starloom nodes`, `validate`).
def reference_score(*args, **kwargs):
    from starloom.astro.registration import reference_score as score
    return score(*args, **kwargs)


def star_align(*args, **kwargs):
    from starloom.astro.registration import star_align as align
    return align(*args, **kwargs)


def too_nonfinite(*args, **kwargs):
    from starloom.astro.registration import too_nonfinite as check
    return check(*args, **kwargs)


class SelectReference(Node):
    type_id = "registration.select_reference"
    implementation = 2  # 2: scores finite pixels only, never picks a mostly NaN/inf frame
    libraries = ("astropy", "sep", "scikit-image", "scipy")
    title = "Select reference frame"
    category = "registration"
    description = """
    Pick the frame the others are aligned to: a given index, or the 'best' frame, the one with
    the most stars detected at 5 sigma (sep) in its finite pixels, ties broken by the smaller
    median half-light radius. A frame more than half NaN or infinite is never the 'best'; the
    reason is in the node's diagnostics.
    """

    class Params(Params):
        method: Literal["index", "best"] = Field("best", description="How the reference is chosen")
        index: int = Field(0, ge=0, description="Frame index when method is 'index'")

    inputs = {"frames": Port("FrameSeries", "frames to choose from")}
    outputs = {"reference": Port("Image", "the reference frame")}

    def run(self, ctx, params, frames):
        if len(frames) == 0:
            raise StarloomError("no frames to choose a reference from")
        if params.method == "index":
            if params.index >= len(frames):
                raise StarloomError(f"parameter 'index': {params.index} but the series has "
                                    f"{len(frames)} frames")
            best = params.index
            reason = too_nonfinite(frames[best], frames.refs[best].name)
            if reason:
                ctx.warn(f"the chosen reference is a poor one: {reason}")
        else:
            best = self._best(ctx, frames)
        ctx.diagnostics["reference"] = frames.refs[best].name
        ref = frames[best]
        ref.header["REFFRAME"] = (frames.refs[best].name, "registration reference frame")
        return {"reference": ref}

    @staticmethod
    def _best(ctx, frames) -> int:
        """Index of the frame with most stars (then smallest radius) among the usable ones."""
        scores = {}
        for i, ccd in enumerate(frames):
            name = frames.refs[i].name
            score = reference_score(ccd, name)
            ctx.diagnostics.setdefault("scores", {})[name] = score
            if score["rejected"] is None:
                r = score["half_light_radius_px"]
                scores[i] = (score["stars"], -r if np.isfinite(r) else -np.inf)
            ctx.progress(i + 1, len(frames))
        if not scores:
            first = ctx.diagnostics["scores"][frames.refs[0].name]["rejected"]
            raise StarloomError(f"no frame can be the reference: each is mostly NaN or "
                                f"infinite (e.g. {first})")
        return max(scores, key=lambda i: scores[i])


class StarAlign(Node):
    type_id = "registration.star_align"
    implementation = 2  # 2: rejects a frame more than half NaN/inf
    libraries = ("astroalign", "astropy", "sep", "scikit-image", "scipy")
    title = "Register (star alignment)"
    category = "registration"
    per_frame = "frames"
    description = """
    Align each frame to the reference by matching star asterisms (astroalign) and resampling
    it onto the reference's pixel grid. Pixels with no data after the shift are masked. The
    transform of each frame (matrix, shift, rotation, scale, matched stars) is recorded in the
    node's artifacts and in the frame header. A frame more than half NaN or infinite is
    rejected (left out of the output), with the reason in the artifacts.
    """

    class Params(Params):
        max_control_points: int = Field(50, ge=3, le=500, description="Brightest stars used for matching")
        detection_sigma: float = Field(5.0, gt=0, description="Star detection threshold, in background sigma")
        min_area: int = Field(5, ge=1, description="Minimum star area, pixels")
        interpolation: Literal["bilinear", "bicubic", "quintic"] = Field(
            "bicubic", description="Resampling (spline order 1, 3 or 5; scikit-image warp)")

    inputs = {"frames": Port("FrameSeries", "frames to align"),
              "reference": Port("Image", "frame to align to")}
    outputs = {"frames": Port("FrameSeries", "aligned frames, on the reference's pixel grid")}

    def run(self, ctx, params, frame, reference):
        reason = too_nonfinite(frame, ctx.frame or "frame")
        if reason:  # its stars would describe less than half the field: drop it, say why
            raise FrameRejected(reason)
        aligned = star_align(frame, reference, name=ctx.frame,
                             max_control_points=params.max_control_points,
                             detection_sigma=params.detection_sigma, min_area=params.min_area,
                             interpolation=params.interpolation)
        info = {**aligned.info, "reference": reference.header.get("REFFRAME")}
        ctx.diagnostics.update(info)
        result = aligned.frame
        result.header["REG-DX"] = (info["dx"], "x shift to reference, px")
        result.header["REG-DY"] = (info["dy"], "y shift to reference, px")
        result.header["REG-ROT"] = (info["rotation_deg"], "rotation to reference, deg")
        ctx.history(f"aligned to {info['reference']} with {info['matched_stars']} stars")
        return {"frames": result}


NODES = [SelectReference, StarAlign]
