"""The flat-field model node: per-pixel factors with uncertainty, exclusions, split-half test.

Method and summary: :mod:`starloom.astro.flatmodel` and :mod:`starloom.astro.flatsummary`.
"""
from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from starloom.graph_runtime.node import Node, Params, Port, Quantity

from ._common import SIGMA_HIGH, SIGMA_LOW, SigmaBound


class FlatFieldModel(Node):
    type_id = "calibration.flat_model"
    libraries = ("astropy", "numpy")
    title = "Flat-field model"
    category = "calibration"
    description = """
    A flat-field model from many flats (or mean sky images): per-pixel factors normalised to
    mean 1 per CFA channel, their standard error, and masks of what was excluded (saturated,
    low-response and noisy pixels; dark, saturated or odd frames). Split-half validation builds
    the model from a random half and divides the mean of the other half by it: the standard
    deviation of the mean-relative intensities before and after, per channel, says how much
    illumination variation it removes. Summary page (HTML with plots, and PDF), the frames used
    (CSV), a metadata summary (JSON) and the exclusion masks (FITS) in artifacts/<node>/.
    """

    class Params(Params):
        saturation: Quantity("adu", gt=0, description="Raw values at or above this are saturated") = 60000.0
        max_saturated: float = Field(0.01, ge=0, le=1, description="Largest fraction of saturated pixels in a usable frame")
        min_level: Quantity("adu", ge=0, description="Smallest median level of a usable frame after bias/dark subtraction") = 100.0
        min_factor: float = Field(0.3, ge=0, lt=1, description="Pixels of a lower relative response are masked")
        noisy_factor: float = Field(5.0, gt=1, description="Pixels whose uncertainty exceeds this many times their channel's median are masked")
        sigma_low: SigmaBound = Field(3.0, description=SIGMA_LOW)
        sigma_high: SigmaBound = Field(3.0, description=SIGMA_HIGH)
        outlier_sigma: float = Field(5.0, gt=0, description="Frames whose illumination pattern departs by more robust sigmas (and 1 %) are excluded")
        pattern: Literal["auto", "none", "RGGB", "GRBG", "GBRG", "BGGR"] = Field(
            "auto", description="CFA channels: 'auto' from BAYERPAT (mono without it), 'none', or a pattern")
        flicker_rows: bool = Field(False, description="Remove per-frame horizontal bands (a flickering light read out by a rolling shutter): each frame's rows are divided by their ratio to the median row profile")
        validate_split: bool = Field(True, description="Run the split-half validation (needs 4 usable flats)")
        seed: int = Field(0, ge=0, description="Random seed of the split into halves")

    inputs = {"flats": Port("FrameSeries", "flat frames (raw ADU) or mean sky images"),
              "bias": Port("Image", "master bias", optional=True),
              "darks": Port("FrameSeries", "master darks (bias-subtracted)", optional=True)}
    outputs = {"factors": Port("Image", "flat-field factors with uncertainty and mask"),
               "statistics": Port("Table", "per-channel statistics and validation")}

    def run(self, ctx, params, flats, bias=None, darks=None):
        import numpy as np
        from astropy.table import hstack
        from starloom.astro.flatmodel import (FlatModelOptions, build_flat_model,
                                              channel_statistics, split_half_validation)
        options = FlatModelOptions(
            saturation=params.saturation, max_saturated=params.max_saturated,
            min_level=params.min_level, min_factor=params.min_factor,
            noisy_factor=params.noisy_factor, sigma_low=params.sigma_low,
            sigma_high=params.sigma_high,
            outlier_sigma=params.outlier_sigma, pattern=params.pattern,
            flicker_rows=params.flicker_rows)
        model = build_flat_model(flats, bias=bias, darks=darks, options=options,
                                 progress=ctx.progress)
        for row in model.frames:
            if not row["used"]:
                ctx.warn(f"flat '{row['name']}' excluded: {row['reason']}")
        flicker = float(np.nanmedian(model.frames["row_flicker"][model.used]))
        if flicker > 0.02 and not params.flicker_rows:
            ctx.warn(f"the flats have horizontal bands of {100 * flicker:.1f} % RMS (a "
                     f"flickering light read out by a rolling shutter?): set flicker_rows")
        stats, images = channel_statistics(model), None
        if params.validate_split and len(model.used) >= 4:
            val, images = split_half_validation(flats, model, params.seed, options)
            stats = hstack([stats, val[[c for c in val.colnames if c != "channel"]]])
        elif params.validate_split:
            ctx.warn(f"split-half validation skipped: {len(model.used)} usable flats, needs 4")
        summary = _summary(model, stats, images, params)
        ctx.diagnostics.update(summary)
        _write_artifacts(ctx, model, stats, images, summary)
        ctx.history(f"flat-field model of {len(model.used)} of {len(model.frames)} flats")
        return {"factors": _image(flats, model), "statistics": stats}


def _summary(model, stats, images, params) -> dict:
    """The metadata summary (JSON-able), also the node's diagnostics."""
    out = {"n_frames": len(model.frames), "n_used": len(model.used),
           "excluded_frames": {r["name"]: r["reason"] for r in model.frames if not r["used"]},
           "pattern": model.pattern, "channels": list(model.channels),
           "excluded_pixels": int((model.flags != 0).sum()),
           "statistics": [{c: (row[c].item() if hasattr(row[c], "item") else row[c])
                           for c in stats.colnames} for row in stats]}
    if images is not None:
        out["validation"] = {"seed": params.seed, "half_a": [model.frames["name"][i]
                                                              for i in images["half_a"]],
                             "half_b": [model.frames["name"][i] for i in images["half_b"]]}
    return out


def _write_artifacts(ctx, model, stats, images, summary):
    from astropy.io import fits

    from starloom.astro.fileio import atomic_write, write_text_atomic
    from starloom.astro.flatsummary import (png_bytes, summary_figures, write_summary_html,
                                            write_summary_pdf)

    model.frames.write(ctx.artifact_path("frames_used.csv"), format="ascii.csv",
                       overwrite=True)
    write_text_atomic(ctx.artifact_path("metadata_summary.json"),
                      json.dumps(summary, indent=1, default=str))
    hdus = fits.HDUList([fits.PrimaryHDU(model.flags),
                         fits.ImageHDU(model.rejected, name="REJECTED")])
    hdus[0].header["COMMENT"] = "1 saturated, 2 low response, 4 noisy, 8 no data (bits)"
    with atomic_write(ctx.artifact_path("excluded_pixels.fits")) as f:
        hdus.writeto(f)
    figures = summary_figures(model, images)
    pngs = png_bytes(figures)
    for name, data in pngs.items():
        ctx.artifact_path(name).write_bytes(data)
    notes = [f"{summary['n_used']} of {summary['n_frames']} flats used; channels "
             f"{', '.join(model.channels)} (pattern {model.pattern or 'mono'})",
             f"{summary['excluded_pixels']} pixels excluded"]
    notes += [f"excluded {k}: {v}" for k, v in summary["excluded_frames"].items()]
    if images is not None:
        notes.append(f"validation: model from {len(images['half_a'])} flats applied to the "
                     f"mean of the other {len(images['half_b'])} (seed {summary['validation']['seed']})")
    tables = {"Statistics per channel": stats, "Frames": model.frames}
    write_summary_html(ctx.artifact_path("summary.html"), pngs, tables, notes)
    write_summary_pdf(ctx.artifact_path("summary.pdf"), figures, tables, notes)


def _image(flats, model) -> CCDData:
    import astropy.units as u
    import numpy as np
    from astropy.nddata import CCDData, StdDevUncertainty
    header = flats.refs[model.used[0]].header()
    for key in list(header):
        if key.startswith(("BZERO", "BSCALE", "BLANK")):
            del header[key]
    header["IMAGETYP"] = "Master Flat"
    header["NCOMBINE"] = (len(model.used), "number of flats in the model")
    return CCDData(model.factors.astype(np.float32), unit=u.dimensionless_unscaled,
                   uncertainty=StdDevUncertainty(model.uncertainty.astype(np.float32)),
                   mask=model.flags != 0, meta=header)


NODES = [FlatFieldModel]
