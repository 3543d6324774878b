"""Optics nodes: the focus sweep's V-curve and the vignetting of a flat (issue 14).

The measurements are :mod:`starloom.astro.focus` and :mod:`starloom.astro.vignetting`
(photutils segmentation, curve of growth and radial profiles; scipy and astropy fits).
"""
from __future__ import annotations

from pydantic import Field
from starloom.graph_runtime.node import Node, Params, Port

from ._common import single_image


class FocusSweep(Node):
    type_id = "optics.focus_sweep"
    libraries = ("astropy", "photutils", "scipy", "matplotlib")
    title = "Focus sweep (V-curve)"
    category = "optics"
    description = """
    Measure the half-flux radius (HFR) and FWHM of the stars of each frame of a focus run and
    fit the V-curve (a hyperbola of HFR against focuser position, one width per arm) to find
    the best focus and its uncertainty. The focuser position is FOCPOS/FOCUSPOS, else the last
    number in the file name, else the frame order. Donuts (out-of-focus stars brighter in a
    ring) have an HFR but no FWHM. Writes the curve as a plot in artifacts.
    """

    class Params(Params):
        detection_sigma: float = Field(3.0, gt=0, le=1000, description="Source detection "
                                       "threshold, in background sigma (on the smoothed frame)")
        min_area: int = Field(20, ge=1, le=100_000, description="Minimum source area, px")
        smoothing: float = Field(2.0, ge=0.5, le=50, description="Sigma of the detection "
                                 "smoothing, px (about a tenth of the largest donut)")
        fit_range: float = Field(3.0, ge=0, le=1000, description="Fit only frames whose HFR is "
                                 "at most this times the smallest (0: all)")

    inputs = {"frames": Port("FrameSeries", "frames of a focus run (one or more stars)")}
    outputs = {"table": Port("Table", "one row per frame: name, position, hfr, fwhm (px), "
                                      "n_stars, donut, fitted; meta best_focus, best_focus_err")}

    def run(self, ctx, params, frames):
        import numpy as np
        from starloom.astro.focus import (fit_vcurve, focus_position, frame_focus_metrics,
                                          plot_focus_curve, star_sizes)
        from starloom.astro.frames import as_header
        from astropy.table import Table

        rows = []
        for i, (ref, ccd) in enumerate(zip(frames.refs, frames)):
            stars = star_sizes(ccd.data, detection_sigma=params.detection_sigma,
                               min_area=params.min_area, smoothing=params.smoothing)
            position, source = focus_position(as_header(ccd.meta), ref.name, i)
            rows.append({"name": ref.name, "position": position, "position_from": source,
                         **frame_focus_metrics(stars),
                         "donut": bool(stars and stars[0]["donut"])})
            ctx.progress(i + 1, len(frames))
        table = Table(rows=rows)
        table.sort("position")
        fit = fit_vcurve(table["position"], table["hfr"], fit_range=params.fit_range)
        table["fitted"] = fit.used
        table.meta.update(best_focus=fit.best, best_focus_err=fit.best_err, hfr_at_best=fit.a,
                          fit_rms=fit.rms, model="hyperbola per arm (Kleijn; Weber & Brady)")
        plot_focus_curve(ctx.artifact_path("focus_curve.png"), table["position"], table["hfr"],
                         table["fwhm"], fit)
        ctx.diagnostics.update(best_focus=fit.best, best_focus_err=fit.best_err,
                               hfr_at_best=fit.a, fit_rms=fit.rms, n_frames=len(table),
                               n_donuts=int(np.sum(table["donut"])),
                               positions_from=sorted(set(table["position_from"])))
        return {"table": table}


class VignettingMap(Node):
    type_id = "optics.vignetting"
    libraries = ("astropy", "photutils", "scipy", "matplotlib")
    title = "Vignetting"
    category = "optics"
    description = """
    Measure the vignetting of a (master) flat: the optical centre (maximum of a fitted
    quadratic surface), the radial illumination profile from it, and the fall-off of each
    corner in percent. Bin 2 for a colour (Bayer) flat. Writes a contour map and the profile
    to artifacts.
    """

    class Params(Params):
        binning: int = Field(1, ge=1, le=16, description="Block-average binning first "
                                                         "(2 for a Bayer flat)")
        smoothing: float = Field(2.0, ge=0, le=100, description="Gaussian smoothing sigma, "
                                                                "binned px")

    inputs = {"flat": Port(("Image", "FrameSeries"), "master flat (of a series: the first)")}
    outputs = {"profile": Port("Table", "radius (px) and relative illumination; meta: centre, "
                                        "corner fall-off (percent)")}

    def run(self, ctx, params, flat):
        from astropy.table import Table
        from starloom.astro.arrays import plane
        from starloom.astro.vignetting import measure_vignetting, plot_vignetting

        flat = single_image(flat, "flat", ctx)  # master flats by filter: the first
        v = measure_vignetting(plane(flat.data, "node input 'flat'"), binning=params.binning,
                               smoothing=params.smoothing)
        table = Table({"radius": v.radius, "illumination": v.profile})
        table.meta.update(centre_x=v.centre[0], centre_y=v.centre[1],
                          centre_from=v.centre_source,
                          **{f"falloff_{k}": f for k, f in v.corner_falloff.items()})
        plot_vignetting(ctx.artifact_path("vignetting.png"), v)
        ctx.diagnostics.update(centre=list(v.centre), centre_from=v.centre_source,
                               corner_falloff_percent=v.corner_falloff)
        return {"profile": table}


class FocalPlaneView(Node):
    type_id = "optics.focal_plane"
    libraries = ("astropy", "photutils", "numpy", "matplotlib")
    title = "Focal-plane view"
    category = "optics"
    description = """
    Star FWHM, eccentricity and orientation across the field (image moments of photutils'
    deblended segmentation), as medians per tile: a 3-D surface of FWHM and an ellipse map in
    artifacts. A plane fitted to the stars' FWHM estimates sensor tilt (how much and towards
    where focus worsens across the field), a radial term the field curvature.
    """

    class Params(Params):
        detection_sigma: float = Field(5.0, gt=0, le=1000, description="Source detection "
                                       "threshold, in background sigma")
        tiles_x: int = Field(4, ge=1, le=50, description="Tiles across x")
        tiles_y: int = Field(4, ge=1, le=50, description="Tiles across y")
        min_stars: int = Field(3, ge=1, le=1000, description="Fewer stars leave a tile empty")
        min_fwhm: float = Field(1.5, ge=0, le=100, description="Smaller sources (hot pixels, "
                                                               "cosmic rays) are left out, px")
        max_fwhm: float = Field(30.0, gt=0, le=1000, description="Larger sources (galaxies) "
                                                                 "are left out, px")

    inputs = {"image": Port(("Image", "FrameSeries"), "an image with stars (a light frame or a stack; of frames: the first)")}
    outputs = {"tiles": Port("Table", "per tile: centre, n_stars, fwhm (px), eccentricity, "
                                      "orientation (deg); meta: tilt and curvature"),
               "stars": Port("Table", "per star: x, y, flux, fwhm, eccentricity, orientation")}

    def run(self, ctx, params, image):
        from starloom.astro.focal_plane import focal_plane, measure_sources, plot_focal_plane
        image = single_image(image, "image", ctx)
        stars = measure_sources(image.data, detection_sigma=params.detection_sigma,
                                min_fwhm=params.min_fwhm, max_fwhm=params.max_fwhm)
        fp = focal_plane(stars, image.data.shape[-2:], n_tiles=(params.tiles_y, params.tiles_x),
                         min_stars=params.min_stars)
        fp.tiles.meta.update({f"tilt_{k}": v for k, v in fp.tilt.items()},
                             curvature=fp.curvature)
        plot_focal_plane(ctx.artifact_path("focal_plane.png"), fp)
        ctx.diagnostics.update(n_stars=len(stars), tilt=fp.tilt, curvature=fp.curvature)
        return {"tiles": fp.tiles, "stars": stars}


class DistortionMapNode(Node):
    type_id = "optics.distortion_map"
    libraries = ("astropy", "numpy", "matplotlib")
    title = "Distortion map"
    category = "optics"
    description = """
    The optical distortion of a camera and telescope from the SIP terms of plate-solved frames:
    the pixel displacement the SIP polynomials describe, on a grid over the field, averaged over
    the frames with its scatter, drawn as a quiver plot in artifacts.
    """

    class Params(Params):
        grid: int = Field(12, ge=2, le=200, description="Grid points along the longer side")

    inputs = {"frames": Port(("FrameSeries", "Image"), "plate-solved frames with SIP terms")}
    outputs = {"map": Port("Table", "grid x, y (px) and mean dx, dy and scatter (px); meta: "
                                    "max_displacement, n_solutions")}

    def run(self, ctx, params, frames):
        from starloom.astro.distortion import distortion_map, plot_distortion
        from astropy.table import Table
        from starloom.astro.wcsutil import require_wcs

        images = [frames] if hasattr(frames, "data") else list(frames)
        wcs = [require_wcs(im, f"frame {i}") for i, im in enumerate(images)]
        shape = images[0].data.shape[-2:]
        dm = distortion_map(wcs, shape, grid=params.grid)
        table = Table({"x": dm.x.ravel(), "y": dm.y.ravel(), "dx": dm.dx.ravel(),
                       "dy": dm.dy.ravel(), "scatter": dm.scatter.ravel()})
        table.meta.update(max_displacement=dm.max_displacement, n_solutions=dm.n_solutions)
        if dm.n_solutions < len(images):
            ctx.warn(f"{len(images) - dm.n_solutions} frame(s) without SIP terms left out")
        plot_distortion(ctx.artifact_path("distortion.png"), dm, shape)
        ctx.diagnostics.update(max_displacement_px=dm.max_displacement,
                               n_solutions=dm.n_solutions)
        return {"map": table}


class PSFMap(Node):
    type_id = "optics.psf_map"
    libraries = ("astropy", "photutils", "matplotlib")
    title = "PSF map"
    category = "optics"
    description = """
    An effective PSF (photutils EPSFBuilder, Anderson & King 2000) per region of the field,
    from the isolated stars of each region, drawn as a grid of PSF images laid out as on the
    sensor; the table gives each region's PSF FWHM (Gaussian fit).
    """

    class Params(Params):
        tiles_x: int = Field(3, ge=1, le=20, description="Regions across x")
        tiles_y: int = Field(3, ge=1, le=20, description="Regions across y")
        size: int = Field(25, ge=7, le=201, description="Star cutout side, px")
        oversampling: int = Field(1, ge=1, le=4, description="ePSF oversampling (needs many "
                                                             "stars per region above 1)")
        min_stars: int = Field(5, ge=1, le=1000, description="Fewer isolated stars leave a "
                                                             "region without PSF")
        detection_sigma: float = Field(5.0, gt=0, le=1000, description="Star detection "
                                       "threshold, in background sigma")

    inputs = {"image": Port(("Image", "FrameSeries"), "an image with stars (of frames: the first)")}
    outputs = {"regions": Port("Table", "per region: ix, iy, bounds, n_stars, fwhm (px)")}

    def run(self, ctx, params, image):
        from starloom.astro.psfmap import image_psf_map, plot_psf_map
        from astropy.table import Table

        image = single_image(image, "image", ctx)
        regions, n_stars = image_psf_map(
            image.data, detection_sigma=params.detection_sigma,
            grid=(params.tiles_y, params.tiles_x), size=params.size,
            oversampling=params.oversampling, min_stars=params.min_stars)
        table = Table(rows=[{"ix": r.ix, "iy": r.iy, "x0": r.bounds[0], "x1": r.bounds[1],
                             "y0": r.bounds[2], "y1": r.bounds[3], "n_stars": r.n_stars,
                             "fwhm": r.fwhm} for r in regions])
        plot_psf_map(ctx.artifact_path("psf_map.png"), regions)
        empty = sum(r.psf is None for r in regions)
        if empty:
            ctx.warn(f"{empty} of {len(regions)} region(s) have fewer than "
                     f"{params.min_stars} isolated stars: no PSF there")
        ctx.diagnostics.update(fwhm=[r.fwhm for r in regions], n_stars=n_stars)
        return {"regions": table}


NODES = [FocusSweep, VignettingMap, FocalPlaneView, DistortionMapNode, PSFMap]
