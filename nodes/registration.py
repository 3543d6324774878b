"""Registration nodes: choose a reference frame, align frames to it by their stars
(:mod:`starloom.astro.registration`: sep star counts, astroalign asterism matching).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from starloom.astro.errors import FrameRejected, StarloomError
from starloom.graph_runtime.node import Node, Params, Port


# starloom.astro.registration imports astroalign, sep, scikit-image and scipy (~0.3 s): imported
# when a registration node runs, not when the registry is built (`starloom nodes`, `validate`).
def reference_score(*args, **kwargs):
    from starloom.astro.registration import reference_score as score
    return score(*args, **kwargs)


def align_with_fallback(*args, **kwargs):
    from starloom.astro.registration_fallback import align_with_fallback as align
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
        import numpy as np
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
    # 2: rejects a frame more than half NaN/inf; 3: phase-correlation fallback, a frame no
    # method registers is rejected (was: the node failed), transform matrix in the header
    implementation = 3
    libraries = ("astroalign", "astropy", "sep", "scikit-image", "scipy")
    title = "Register (star alignment)"
    category = "registration"
    per_frame = "frames"
    description = """
    Align each frame to the reference by matching star asterisms (astroalign) and resampling
    it onto the reference's pixel grid. When the match fails or is unreliable (fewer than
    'min_matches' stars, residual over 'max_residual'), the translation is found by phase
    correlation (scikit-image) instead. A frame no method registers is rejected with its
    reason. Pixels with no data after the shift are masked. Per frame the method, matched
    stars, residual, drift and rotation are in the node's artifacts; the transform is in the
    frame header (REG-A00..REG-A12, REG-DX/DY/ROT, REGMETH). With resample off, frames keep
    their pixels and only carry the transform, for 'tiles.prewarp' to apply once. A frame
    more than half NaN or infinite is rejected.
    """

    class Params(Params):
        max_control_points: int = Field(50, ge=3, le=500, description="Brightest stars used for matching")
        detection_sigma: float = Field(5.0, gt=0, description="Star detection threshold, in background sigma")
        min_area: int = Field(5, ge=1, description="Minimum star area, pixels")
        interpolation: Literal["bilinear", "bicubic", "quintic"] = Field(
            "bicubic", description="Resampling (spline order 1, 3 or 5; scikit-image warp)")
        fallback: Literal["phase_correlation", "none"] = Field(
            "phase_correlation", description="When star matching fails or is unreliable: "
            "phase correlation (translation only), or none (reject only failed matches)")
        min_matches: int = Field(6, ge=3, description="Fewest matched stars of a reliable star match")
        max_residual: float = Field(1.0, gt=0, description="Largest RMS residual of the matched "
                                                           "stars of a reliable match, px")
        min_correlation: float = Field(0.3, gt=0, lt=1, description="Smallest correlation of "
                                       "a phase-correlation shift to accept it")
        resample: bool = Field(True, description="Resample onto the reference grid; off: only "
                                                 "record the transform (for tiles.prewarp)")

    inputs = {"frames": Port("FrameSeries", "frames to align"),
              "reference": Port("Image", "frame to align to")}
    outputs = {"frames": Port("FrameSeries", "aligned frames, on the reference's pixel grid")}

    def run(self, ctx, params, frame, reference):
        reason = too_nonfinite(frame, ctx.frame or "frame")
        if reason:  # its stars would describe less than half the field: drop it, say why
            raise FrameRejected(reason)
        aligned = align_with_fallback(
            frame, reference, name=ctx.frame or "frame", interpolation=params.interpolation,
            resample=params.resample, fallback=params.fallback, min_matches=params.min_matches,
            max_residual=params.max_residual, min_correlation=params.min_correlation,
            max_control_points=params.max_control_points,
            detection_sigma=params.detection_sigma, min_area=params.min_area)
        info = {**aligned.info, "reference": reference.header.get("REFFRAME")}
        ctx.diagnostics.update(info)
        if info.get("unreliable"):
            ctx.warn(f"unreliable star match kept (fallback 'none'): {info['unreliable']}")
        result = aligned.frame
        result.header["REG-DX"] = (info["dx"], "x shift to reference, px")
        result.header["REG-DY"] = (info["dy"], "y shift to reference, px")
        result.header["REG-ROT"] = (info["rotation_deg"], "rotation to reference, deg")
        how = (f"{info['matched_stars']} stars" if info["method"] == "star_match"
               else f"phase correlation ({info['fallback_reason']})")
        ctx.history(f"aligned to {info['reference']} with {how}")
        return {"frames": result}


NODES = [SelectReference, StarAlign]
