"""Reproject and co-add: frames with a celestial WCS onto one grid (the reproject package)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from starloom.astro.errors import StarloomError
from starloom.graph_runtime.node import Node, Params, Port, Quantity

from ._common import SIGMA_HIGH, SIGMA_LOW, ClipIterations, SigmaBound, renamed_params
from .astrometry import PIXEL_SCALE


class ReprojectCoadd(Node):
    type_id = "astrometry.reproject_coadd"
    libraries = ("astropy", "reproject")
    version = 2  # 2: 'method' became 'reprojection', 'combine' (mean) 'method' (average), 'sigma' 'sigma_low'/'sigma_high'
    title = "Reproject and co-add"
    category = "astrometry"
    description = """
    Put every frame onto one celestial pixel grid with the reproject package and combine them:
    interpolation (reproject_interp), adaptive anti-aliased resampling (reproject_adaptive) or
    exact flux-conserving overlap (reproject_exact). The grid is the optimal celestial WCS for
    the frames (reproject's find_optimal_celestial_wcs, TAN, finest input resolution unless
    'resolution' is given), or the WCS and shape of the 'reference' image when connected.
    Samples are optionally sigma-clipped across frames (removing hot pixels and satellite
    trails) and combined by average, median or coverage-corrected sum, in bands of output rows;
    frames are read again for each band, so only one frame and one band stack are in memory.
    Outputs: the co-add (NaN and masked where no frame covers) and a coverage map (sum of the
    frames' footprints, i.e. the effective number of frames per pixel), both with the WCS.
    """

    class Params(Params):
        reprojection: Literal["interp", "adaptive", "exact"] = Field(
            "interp", description="Reprojection: interpolation, adaptive (DeForest 2004) or "
                                  "exact spherical-polygon overlap")
        interpolation: Literal["nearest-neighbor", "bilinear", "biquadratic", "bicubic"] = Field(
            "bilinear", description="Interpolation order of reprojection 'interp'")
        method: Literal["average", "median", "sum"] = Field(
            "average", description="Combination of the kept samples ('sum': average times "
                                   "coverage)")
        rejection: Literal["none", "sigma_clip"] = Field(
            "sigma_clip", description="Outlier rejection across frames: sigma clipping (centre: "
                                      "median, spread: MAD standard deviation); needs at least "
                                      "3 frames")
        sigma_low: SigmaBound = Field(3.0, description=SIGMA_LOW)
        sigma_high: SigmaBound = Field(3.0, description=SIGMA_HIGH)
        maxiters: ClipIterations = 5
        resolution: Quantity(PIXEL_SCALE, gt=0, le=36000) | None = Field(
            None, json_schema_extra={"unit": PIXEL_SCALE},
            description="Output pixel scale of the optimal WCS; empty: the finest input scale")
        # Not a Knob: with reprojection 'exact' the result depends on the band (reproject_exact
        # of a band differs from the same rows of the whole grid by up to ~0.1).
        band_rows: int = Field(128, ge=8, le=65536, description="Output rows processed at once "
                                                                "(memory: frames x rows x width)")

    inputs = {"frames": Port("FrameSeries", "frames with a celestial WCS"),
              "reference": Port("Image", "image whose WCS and shape define the output grid "
                                         "(default: optimal WCS of the frames)", optional=True)}
    outputs = {"image": Port("Image", "co-added image, with the output WCS"),
               "coverage": Port("Image", "frames covering each output pixel (footprint sum)")}

    @classmethod
    def upgrade(cls, params, from_version):
        return renamed_params(params, {"method": "reprojection", "combine": "method",
                                       "sigma": ("sigma_low", "sigma_high")},
                              {"method": {"mean": "average"}})

    def run(self, ctx, params, frames, reference=None):
        import numpy as np
        from astropy import units as u
        from astropy.io import fits
        from astropy.nddata import CCDData
        from starloom.astro.coadd import LazyPlane, coadd, optimal_wcs
        from starloom.astro.frames import as_header
        from starloom.astro.wcsutil import pixel_scale_arcsec, require_wcs, strip_wcs, wcs_shapes
        if len(frames) == 0:
            raise StarloomError("no frames to co-add")
        found = wcs_shapes(frames)
        missing = [name for name, w, _ in found if w is None]
        if missing:
            raise StarloomError(f"{len(missing)} frame(s) have no celestial WCS (e.g. "
                                f"'{missing[0]}'); plate-solve the frames first")
        if reference is not None:
            wcs_out, shape = require_wcs(reference, "reference"), tuple(reference.shape[-2:])
        else:
            wcs_out, shape = optimal_wcs([(w, s) for _, w, s in found],
                                            resolution_arcsec=params.resolution)
        first = frames[0]
        n_planes = first.data.shape[0] if first.data.ndim == 3 else 1
        results = []
        for k in range(n_planes):
            items = [(LazyPlane(frames, i, k if n_planes > 1 else None), w)
                     for i, (_, w, _) in enumerate(found)]
            results.append(coadd(
                items, wcs_out, shape, reprojection=params.reprojection, method=params.method,
                rejection=params.rejection, sigma_low=params.sigma_low,
                sigma_high=params.sigma_high,
                maxiters=params.maxiters, band_rows=params.band_rows,
                order=params.interpolation))
            ctx.progress(k + 1, n_planes)
        data = results[0].data if n_planes == 1 else np.stack([r.data for r in results])
        cov = results[0].coverage
        header = strip_wcs(as_header(first.meta).copy())
        header["NCOMBINE"] = (len(frames), "number of frames co-added")
        header["COADDMTH"] = (f"{params.reprojection}/{params.method}/{params.rejection}",
                              "reprojection / combination / rejection")
        empty = ~np.isfinite(data)
        image = CCDData(data.astype(np.float32), unit=first.unit, wcs=wcs_out, meta=header,
                        mask=empty if empty.any() else None)
        cov_header = fits.Header([("IMAGETYP", "coverage", "frames covering each pixel"),
                                  ("NCOMBINE", len(frames), "number of frames co-added")])
        coverage = CCDData(cov.astype(np.float32), unit=u.dimensionless_unscaled, wcs=wcs_out,
                           meta=cov_header)
        note = f"co-added {len(frames)} frames onto a {shape[1]}x{shape[0]} grid"
        centre = wcs_out.pixel_to_world((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0).icrs
        ctx.diagnostics.update(
            n_frames=len(frames), frames=frames.names, shape=list(shape),
            pixel_scale_arcsec=pixel_scale_arcsec(wcs_out),
            center=centre.to_string("hmsdms", sep=":", precision=1),
            n_rejected=int(sum(r.n_rejected for r in results)),
            coverage_max=float(cov.max()), covered_fraction=float(np.mean(cov > 0)),
            full_coverage_fraction=float(np.mean(cov > len(frames) - 0.01)),
            target="reference" if reference is not None else "optimal")
        ctx.history(note)
        return {"image": image, "coverage": coverage}


NODES = [ReprojectCoadd]
