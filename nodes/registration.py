"""Registration nodes: choose a reference frame, align frames to it by their stars.

Alignment uses astroalign (Beroiz, Cabral & Sanchez 2020, Astronomy and Computing 32, 100384):
asterism (star-triangle) matching gives a similarity transform (rotation, scale, translation),
applied with scikit-image's warp (spline interpolation of chosen order).
"""
from __future__ import annotations

from typing import Literal

import astroalign
import numpy as np
import sep
from astropy.nddata import CCDData
from pydantic import Field
from scipy.ndimage import median_filter
from skimage.transform import warp as warp_image

from starloom.astro.errors import StarloomError
from starloom.graph_runtime.node import Node, Params, Port

_ORDER = {"bilinear": 1, "bicubic": 3, "quintic": 5}


def detection_image(ccd: CCDData) -> np.ndarray:
    """2-D float32 image for star finding: luminance of RGB, single hot pixels removed.

    A 3x3 median filter removes isolated hot pixels and cosmic rays, which would otherwise be
    taken for stars on uncalibrated frames, while leaving stars (several pixels wide) in place.
    """
    data = np.asarray(ccd.data, dtype=np.float32)
    if data.ndim == 3:
        data = data.mean(axis=0)
    data = np.where(np.isfinite(data), data, np.nanmedian(data))
    if ccd.mask is not None:
        data = np.where(ccd.mask if ccd.mask.ndim == 2 else ccd.mask.any(axis=0), np.median(data), data)
    return median_filter(data, size=3)


def count_stars(image: np.ndarray, threshold: float = 5.0) -> tuple[int, float]:
    """Number of sources above ``threshold`` sigma (sep, SExtractor's algorithm) and their
    median half-light radius in pixels."""
    img = np.ascontiguousarray(image, dtype=np.float64)
    bkg = sep.Background(img)
    objs = sep.extract(img - bkg.back(), threshold, err=bkg.globalrms, minarea=5)
    if len(objs) == 0:
        return 0, float("nan")
    r, _ = sep.flux_radius(img - bkg.back(), objs["x"], objs["y"], 6.0 * objs["a"], 0.5,
                           subpix=5)
    return len(objs), float(np.nanmedian(r))


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
        ccd = frame
        if ccd.shape[-2:] != reference.shape[-2:]:
            raise StarloomError(f"frame '{ctx.frame}' has shape {ccd.shape}, reference {reference.shape}")
        try:
            tf, (src, dst) = astroalign.find_transform(
                detection_image(ccd), detection_image(reference),
                max_control_points=params.max_control_points,
                detection_sigma=params.detection_sigma, min_area=params.min_area)
        except (astroalign.MaxIterError, ValueError) as e:
            raise StarloomError(f"frame '{ctx.frame}': no star match with the reference ({e})") from None
        planes = ccd.data[None] if ccd.data.ndim == 2 else ccd.data
        shape = reference.shape[-2:]
        # skimage's warp, as astroalign.apply_transform uses, called directly so the
        # interpolation order is a parameter (astroalign's is fixed).
        warp = dict(inverse_map=tf.inverse, output_shape=shape, order=_ORDER[params.interpolation],
                    mode="constant", cval=np.nan, preserve_range=True)
        data = np.stack([warp_image(np.asarray(p, np.float64), **warp) for p in planes]).astype(np.float32)
        footprint = ~np.isfinite(data).all(axis=0)
        if ccd.mask is not None:
            m2d = ccd.mask if ccd.mask.ndim == 2 else ccd.mask.any(0)
            footprint |= warp_image(m2d.astype(np.float64), **{**warp, "order": 1, "cval": 1.0}) > 0.01
        data = data[0] if ccd.data.ndim == 2 else data
        mask = np.broadcast_to(footprint, data.shape).copy()
        data = np.where(mask, 0.0, data).astype(np.float32)
        result = CCDData(data, unit=ccd.unit, mask=mask, meta=ccd.header.copy(), wcs=reference.wcs)
        rot = float(np.degrees(tf.rotation))
        info = {"matrix": tf.params.tolist(), "dx": float(tf.translation[0]),
                "dy": float(tf.translation[1]), "rotation_deg": rot, "scale": float(tf.scale),
                "matched_stars": int(len(src)),
                "reference": reference.header.get("REFFRAME")}
        ctx.diagnostics.update(info)
        result.header["REG-DX"] = (info["dx"], "x shift to reference, px")
        result.header["REG-DY"] = (info["dy"], "y shift to reference, px")
        result.header["REG-ROT"] = (rot, "rotation to reference, deg")
        ctx.history(f"aligned to {info['reference']} with {len(src)} stars")
        return {"frames": result}


NODES = [SelectReference, StarAlign]
