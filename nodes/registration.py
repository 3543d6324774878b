"""Registration nodes: choose a reference frame, align frames to it by their stars
(:mod:`starloom.astro.registration`: sep star counts, astroalign asterism matching).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from starloom.astro.errors import StarloomError
from starloom.astro.registration import count_stars, detection_image, star_align
from starloom.graph_runtime.node import Node, Params, Port


class SelectReference(Node):
    type_id = "registration.select_reference"
    title = "Select reference frame"
    category = "registration"
    description = """
    Pick the frame the others are aligned to: a given index, or the 'best' frame, the one with
    the most stars detected at 5 sigma (sep), ties broken by the smaller median half-light radius.
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
        else:
            scores = []
            for i, ccd in enumerate(frames):
                n, r = count_stars(detection_image(ccd))
                scores.append((n, -r if np.isfinite(r) else -np.inf))
                ctx.diagnostics.setdefault("scores", {})[frames.refs[i].name] = {
                    "stars": n, "half_light_radius_px": r}
                ctx.progress(i + 1, len(frames))
            best = max(range(len(frames)), key=lambda i: scores[i])
        ctx.diagnostics["reference"] = frames.refs[best].name
        ref = frames[best]
        ref.header["REFFRAME"] = (frames.refs[best].name, "registration reference frame")
        return {"reference": ref}


class StarAlign(Node):
    type_id = "registration.star_align"
    title = "Register (star alignment)"
    category = "registration"
    per_frame = "frames"
    description = """
    Align each frame to the reference by matching star asterisms (astroalign) and resampling
    it onto the reference's pixel grid. Pixels with no data after the shift are masked. The
    transform of each frame (matrix, shift, rotation, scale, matched stars) is recorded in the
    node's artifacts and in the frame header.
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
