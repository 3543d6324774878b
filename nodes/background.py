"""Background gradient extraction (BGE) node: :mod:`starloom.astro.background`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from starloom.graph_runtime.node import Node, Params, Port


class BackgroundExtract(Node):
    type_id = "background.extract"
    libraries = ("astropy", "photutils", "scipy", "matplotlib")
    title = "Background extraction (BGE)"
    category = "background"
    description = """
    Remove a smooth background gradient (light pollution, moon, residual vignetting) from a mono
    or planar RGB image, channel by channel, as Siril's background extraction and GraXpert do:
    stars and bright structure are masked (photutils detect_sources, dilated), the sky is
    sampled in a regular grid of boxes (sigma-clipped medians), samples on residual structure
    are rejected by a robust fit, and a smooth model is fitted through the samples: a 2-D
    polynomial (astropy, least squares with outlier removal) or a thin-plate spline (scipy
    RBFInterpolator with smoothing). The model is subtracted (additive gradients) or divided
    (vignetting-like ones). Artifacts: bge.png (samples on the image, the model, the result)
    and the per-channel flatness before and after in the diagnostics.
    """

    class Params(Params):
        method: Literal["polynomial", "rbf"] = Field(
            "polynomial", description="Background model: 2-D polynomial, or thin-plate-spline RBF")
        degree: int = Field(2, ge=0, le=6, description="Polynomial degree (Siril offers 1-4)")
        smoothing: float = Field(0.1, ge=0, le=100, description="RBF smoothing, in units of "
                                 "the sample values' variance (0: through every sample)")
        box_size: int = Field(0, ge=0, le=2048, description="Sample box side, px (0: the "
                              "longer image side / samples_per_line)")
        samples_per_line: int = Field(20, ge=3, le=200, description="Sample boxes along the "
                                      "longer side when box_size is 0")
        correction: Literal["subtract", "divide"] = Field(
            "subtract", description="Subtract the model (additive gradient) or divide by it "
                                    "(multiplicative, vignetting-like)")
        pedestal: Literal["common", "per_channel", "zero"] = Field(
            "common", description="Level kept after correction: one grey level for all channels "
                                  "(neutral background), each channel's own level, or none")
        mask_sigma: float = Field(3.0, gt=0, le=100, description="Stars and structure above "
                                  "this many noise sigma are masked before sampling")
        dilate: int = Field(5, ge=0, le=100, description="Radius (px) the source mask is grown by")

    inputs = {"image": Port("Image", "linear image, mono (ny, nx) or planar RGB (3, ny, nx)")}
    outputs = {"image": Port("Image", "image with the background model removed"),
               "model": Port("Image", "background model, same shape"),
               "samples": Port("Table", "sample boxes: x, y, used, sky_fraction, value_<c>, "
                                        "model_<c> per channel")}

    def run(self, ctx, params, image):
        from astropy.nddata import CCDData
        from starloom.astro.frames import as_header
        from starloom.astro.background import extract_background, plot_bge

        p = params
        res = extract_background(image.data, image.mask, method=p.method, degree=p.degree,
                                 smoothing=p.smoothing, box_size=p.box_size or None,
                                 samples_per_line=p.samples_per_line, correction=p.correction,
                                 pedestal=p.pedestal, mask_sigma=p.mask_sigma, dilate=p.dilate)
        label = f"{p.method}" + (f" degree {p.degree}" if p.method == "polynomial" else "")
        plot_bge(ctx.artifact_path("bge.png"), image.data, res.model, res.image, res.samples,
                 title=f"BGE ({label}, {p.correction}): {res.stats['n_used']} of "
                       f"{res.stats['n_samples']} samples used")
        ctx.diagnostics.update(res.stats, method=p.method, artifacts=["bge.png"])
        header = as_header(image.meta).copy()
        header["BGE"] = (f"{label}, {p.correction}", "background gradient extraction")
        ctx.history(f"BGE {label} ({p.correction}) on {res.stats['n_used']} samples")
        out = CCDData(res.image, unit=image.unit, mask=image.mask, meta=header, wcs=image.wcs)
        model = CCDData(res.model, unit=image.unit, meta=as_header(image.meta).copy(),
                        wcs=image.wcs)
        return {"image": out, "model": model, "samples": res.samples}


NODES = [BackgroundExtract]
