"""Sky analysis nodes (issue 14): photometry against a catalogue, colour-magnitude diagram,
segmentation, deconvolution, overlays and annotation of named objects.

The numerics are photutils' (apertures, segmentation), astropy's (matching, fitting) and
scikit-image's (Richardson-Lucy), through :mod:`starloom.astro.photometry`,
:mod:`starloom.astro.sources` and :mod:`starloom.astro.sky_objects`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from starloom.astro.errors import StarloomError
from starloom.graph_runtime.node import Node, Params, Port

from ._common import single_image


def _plane(image, name: str):
    import numpy as np
    from starloom.astro.arrays import plane

    data = plane(image.data, f"node input '{name}'")
    if image.mask is not None:
        data = np.where(image.mask, np.nan, data)
    return data


def _find_stars(data, fwhm: float, sigma: float):
    from starloom.astro.stars import detect_stars

    stars, info = detect_stars(data, fwhm=fwhm, threshold_sigma=sigma)
    return stars, info


class ApertureParams(Params):
    aperture: float = Field(0.0, ge=0, le=200, description="Aperture radius, px; 0: 2 x the "
                                                           "median star FWHM")
    annulus: tuple[float, float] = Field((1.5, 2.5), description="Background annulus radii, "
                                         "in aperture radii")
    detection_sigma: float = Field(5.0, gt=0, le=1000, description="Star detection threshold, "
                                   "in background sigma")

    def radii(self, fwhm) -> tuple[float, tuple[float, float]]:
        import numpy as np
        r = self.aperture or 2.0 * float(fwhm if np.isfinite(fwhm) else 3.0)
        lo, hi = self.annulus
        if not 1 < lo < hi:
            raise StarloomError(f"parameter 'annulus': need 1 < inner < outer, got {self.annulus}")
        return r, (lo * r, hi * r)


class Photometry(Node):
    type_id = "sky.photometry"
    libraries = ("astropy", "photutils")
    title = "Photometry vs catalogue"
    category = "sky"
    description = """
    Aperture photometry of the image's stars (photutils, local background annulus), matched
    through the WCS to a catalogue's stars (one to one: of several detections near one
    catalogue star, the closest keeps it); the zero point (and colour term, where the
    catalogue has B-V) fitted with 3-sigma outlier rejection (variables, blends and mismatches
    flagged). Residuals against magnitude and colour are plotted in artifacts.
    """
    implementation = 2  # 2: one detection per catalogue star; peak and background_std columns

    class Params(ApertureParams):
        match_radius: float = Field(5.0, gt=0, le=3600, description="Largest star-catalogue "
                                                                    "separation, arcsec")
        colour_term: bool = Field(True, description="Fit a colour term (needs a 'bv' column)")
        outlier_sigma: float = Field(3.0, gt=0, le=100, description="Outlier clipping, in sigma")

    inputs = {"image": Port(("Image", "FrameSeries"), "plate-solved image (of frames: the "
                                                      "first)"),
              "catalog": Port("Table", "catalogue stars: ra, dec (deg), mag[, bv]")}
    outputs = {"table": Port("Table", "matched stars: x, y, flux, mag_inst, mag_cat, colour, "
                                      "mag, residual, outlier; meta: zero_point, colour_term")}

    def run(self, ctx, params, image, catalog):
        import numpy as np
        from starloom.astro.wcsutil import require_wcs
        from starloom.astro.photometry import (aperture_photometry, fit_zero_point,
                                               match_to_catalog, plot_zero_point)

        image = single_image(image, "image", ctx)
        data, wcs = _plane(image, "image"), require_wcs(image, "image")
        stars, info = _find_stars(data, 3.0, params.detection_sigma)
        n_saturated = int(np.sum(stars["saturated"]))
        stars = stars[~stars["saturated"]]  # clipped stars have no magnitude
        r, ann = params.radii(info.get("median_fwhm_px") or np.nan)
        phot = aperture_photometry(data, stars["x"], stars["y"], radius=r, annulus=ann)
        idx, sep = match_to_catalog(phot["x"], phot["y"], wcs, catalog,
                                    max_separation_arcsec=params.match_radius)
        t = phot[idx >= 0]
        m = catalog[idx[idx >= 0]]
        t["separation"] = sep[idx >= 0]
        t["mag_cat"] = np.asarray(m["mag"], float)
        use_colour = params.colour_term and "bv" in catalog.colnames
        t["colour"] = np.asarray(m["bv"], float) if "bv" in catalog.colnames else np.nan
        zp = fit_zero_point(t["mag_inst"], t["mag_cat"], t["colour"] if use_colour else None,
                            sigma=params.outlier_sigma)
        colour = np.nan_to_num(np.asarray(t["colour"], float)) if use_colour else 0.0
        t["mag"] = t["mag_inst"] + zp.zero_point + zp.colour_term * colour
        t["residual"] = t["mag_cat"] - t["mag"]
        t["outlier"] = zp.outlier
        t.meta.update(zero_point=zp.zero_point, zero_point_err=zp.zero_point_err,
                      colour_term=zp.colour_term, colour_term_err=zp.colour_term_err,
                      rms=zp.rms, n_used=zp.n_used, aperture=r,
                      band=catalog.meta.get("mag_band", ""))
        plot_zero_point(ctx.artifact_path("photometry.png"), t["mag_cat"], t["residual"],
                        t["colour"] if use_colour else None, t["outlier"], zp)
        ctx.diagnostics.update({k: v for k, v in t.meta.items() if k != "band"},
                               n_detected=len(stars), n_saturated=n_saturated,
                               n_matched=len(t))
        return {"table": t}


class ColourMagnitude(Node):
    type_id = "sky.colour_magnitude"
    libraries = ("astropy", "photutils", "matplotlib")
    title = "Colour-magnitude diagram"
    category = "sky"
    description = """
    A colour-magnitude (H-R) diagram from two filter images of one field: stars detected on
    the red image, measured with the same apertures on both (positions carried through the
    WCS when the grids differ), calibrated with each band's zero point, and plotted as
    colour (blue - red) against the red magnitude, with catalogue stars overplotted when a
    catalogue is connected (its mag and B-V). Zero point 22.5 for SDSS nanomaggies.
    """

    class Params(ApertureParams):
        zero_point_blue: float = Field(22.5, ge=-50, le=50, description="Zero point of the blue "
                                       "image, mag (22.5: SDSS nanomaggy)")
        zero_point_red: float = Field(22.5, ge=-50, le=50, description="Zero point of the red "
                                      "image, mag")
        blue_band: str = Field("g", max_length=20, description="Name of the blue band (labels)")
        red_band: str = Field("r", max_length=20, description="Name of the red band (labels)")

    inputs = {"blue": Port(("Image", "FrameSeries"), "image in the bluer filter"),
              "red": Port(("Image", "FrameSeries"), "image in the redder filter"),
              "catalog": Port("Table", "catalogue stars: ra, dec, mag, bv", optional=True)}
    outputs = {"table": Port("Table", "stars: x, y, mag_blue, mag_red, colour")}

    def run(self, ctx, params, blue, red, catalog=None):
        import numpy as np
        from starloom.astro.wcsutil import celestial_wcs
        from starloom.astro.cmd import colour_magnitude, plot_colour_magnitude

        red, blue = single_image(red, "red", ctx), single_image(blue, "blue", ctx)
        rdata, bdata = _plane(red, "red"), _plane(blue, "blue")
        stars, info = _find_stars(rdata, 3.0, params.detection_sigma)
        r, ann = params.radii(info.get("median_fwhm_px") or np.nan)
        t = colour_magnitude(bdata, rdata, stars, celestial_wcs(blue), celestial_wcs(red),
                             radius=r, annulus=ann, zero_points=(params.zero_point_blue,
                                                                 params.zero_point_red))
        plot_colour_magnitude(ctx.artifact_path("colour_magnitude.png"), t,
                              bands=(params.blue_band, params.red_band), catalog=catalog)
        ctx.diagnostics.update(n_stars=len(t), aperture=r)
        return {"table": t}


class Segmentation(Node):
    type_id = "sky.segmentation"
    libraries = ("astropy", "photutils")
    title = "Segmentation"
    category = "sky"
    description = """
    Detect sources (photutils detect_sources on a smoothed image) and split blends
    (deblend_sources); output the segmentation image (0 background, 1..n sources) and a source
    table: centroid, flux, area, ellipticity, orientation, FWHM.
    """

    class Params(Params):
        detection_sigma: float = Field(3.0, gt=0, le=1000, description="Threshold, in "
                                       "background sigma of the smoothed image")
        min_area: int = Field(10, ge=1, le=1_000_000, description="Minimum source area, px")
        deblend: bool = Field(True, description="Split overlapping sources")
        smoothing: float = Field(1.5, ge=0, le=50, description="Gaussian smoothing sigma, px")

    inputs = {"image": Port(("Image", "FrameSeries"), "image (of frames: the first)")}
    outputs = {"segmentation": Port("Image", "labels, int32: 0 background, 1..n sources"),
               "sources": Port("Table", "label, x, y, flux, area, ellipticity, orientation, fwhm")}

    def run(self, ctx, params, image):
        from starloom.astro.wcsutil import celestial_wcs
        from astropy.nddata import CCDData
        from starloom.astro.sources import segment

        image = single_image(image, "image", ctx)
        labels, table = segment(_plane(image, "image"), detection_sigma=params.detection_sigma,
                                min_area=params.min_area, deblend=params.deblend,
                                smoothing=params.smoothing)
        ctx.diagnostics.update(n_sources=len(table))
        out = CCDData(labels, unit="", meta={"BUNIT": "label"}, wcs=celestial_wcs(image))
        return {"segmentation": out, "sources": table}


class Deconvolve(Node):
    type_id = "sky.deconvolve"
    libraries = ("astropy", "photutils", "scikit-image", "matplotlib")
    title = "Deconvolve (Richardson-Lucy)"
    category = "sky"
    description = """
    Richardson-Lucy deconvolution with a connected PSF image, or a PSF measured on the image's
    own stars (photutils ePSF), or a Gaussian of a given FWHM. By default the sky is a known
    term of the model (no dark rings around bright stars; the sky comes out smooth, as the
    deconvolved light cannot go below it). A before/after plot goes to artifacts.
    """
    implementation = 2  # 2: the sky as a background term by default

    class Params(Params):
        iterations: int = Field(20, ge=1, le=1000, description="Richardson-Lucy iterations")
        psf: Literal["measured", "gaussian"] = Field(
            "measured", description="Without a PSF input: an ePSF of the image's stars, or a "
                                    "Gaussian of psf_fwhm")
        psf_fwhm: float = Field(3.0, gt=0, le=100, description="FWHM of the Gaussian PSF, px")
        background: Literal["sky", "none"] = Field(
            "sky", description="sky: the sky (photutils Background2D) is a known term of the "
                               "image model and only the light above it is deconvolved, so no "
                               "dark rings form around bright stars (Snyder et al. 1993); "
                               "none: scikit-image's plain Richardson-Lucy of the whole image")
        sky_box: int = Field(64, ge=8, le=1024, description="Box of the sky map, px")

    inputs = {"image": Port(("Image", "FrameSeries"), "image (of frames: the first)"),
              "psf": Port("Image", "point-spread function image", optional=True)}
    outputs = {"image": Port("Image", "deconvolved image")}

    def run(self, ctx, params, image, psf=None):
        import numpy as np
        from starloom.astro.sources import (gaussian_psf, measured_psf, plot_before_after,
                                            richardson_lucy)

        image = single_image(image, "image", ctx)
        data = _plane(image, "image")
        if psf is not None:
            kernel, source = np.asarray(psf.data, float), "input"
        elif params.psf == "measured":
            kernel, source = measured_psf(data), "ePSF of the image's stars"
        else:
            kernel, source = gaussian_psf(params.psf_fwhm), f"Gaussian, FWHM {params.psf_fwhm} px"
        sky = None
        if params.background == "sky":
            from starloom.astro.local_metrics import sky_map
            sky = sky_map(data, np.isfinite(data), params.sky_box)
        out = richardson_lucy(data, kernel, iterations=params.iterations, background=sky)
        plot_before_after(ctx.artifact_path("deconvolution.png"), data, out,
                          title=f"Richardson-Lucy, {params.iterations} iterations, PSF: {source}")
        result = image.copy()
        result.data = out.astype(np.float32)
        ctx.history(f"Richardson-Lucy deconvolution, {params.iterations} iterations, {source}")
        ctx.diagnostics.update(psf=source, psf_shape=list(kernel.shape),
                               background=params.background)
        return {"image": result}


class Overlay(Node):
    type_id = "sky.overlay"
    libraries = ("astropy", "matplotlib")
    title = "Overlay positions"
    category = "sky"
    description = """
    Draw a table of positions on an image, with labels: pixel positions (x, y) as circles, sky
    positions (ra, dec, through the image's WCS) as crosses; a label column's text beside each.
    Written to outputs/ (PNG, PDF or SVG).
    """

    class Params(Params):
        filename: str = Field("overlay.png", pattern=r"(?i)^[^/\\]+\.(png|pdf|svg)$",
                              description="Output file name")
        label_column: str = Field("", max_length=100, description="Column written beside "
                                  "each position (e.g. name); empty: none")
        title: str = Field("", max_length=200, description="Plot title")

    inputs = {"image": Port(("Image", "FrameSeries"), "image (of frames: the first)"),
              "table": Port("Table", "positions: x, y (px) or ra, dec (deg)")}
    outputs = {"path": Port("Path", "written figure")}

    def run(self, ctx, params, image, table):
        from starloom.astro.wcsutil import celestial_wcs, require_wcs
        from starloom.astro.plots import plot_annotated

        image = single_image(image, "image", ctx)
        label = params.label_column or None
        if label and label not in table.colnames:
            raise StarloomError(f"parameter 'label_column': no column '{label}' in the table "
                                f"(columns: {', '.join(table.colnames)})")
        pixel = {"x", "y"} <= set(table.colnames)
        if not pixel and not {"ra", "dec"} <= set(table.colnames):
            raise StarloomError("node input 'table': needs columns x, y or ra, dec")
        wcs = celestial_wcs(image) if pixel else require_wcs(image, "image")
        path = plot_annotated(ctx.output_path(params.filename), _plane(image, "image"), wcs,
                              stars=table if pixel else None, catalog=None if pixel else table,
                              title=params.title or None, label_column=label)
        ctx.diagnostics.update(n_positions=len(table))
        return {"path": str(path)}


class Annotate(Node):
    type_id = "sky.annotate"
    libraries = ("astropy", "matplotlib")
    title = "Annotate named objects"
    category = "sky"
    description = """
    Name the catalogued objects in a plate-solved image: deep-sky objects from OpenNGC (NGC, IC,
    Messier; offline, from Debian's kstars-data) and named bright stars (KStars stars.dat),
    drawn on the image in outputs/ and listed in a table.
    """

    class Params(Params):
        filename: str = Field("annotated_objects.png", pattern=r"(?i)^[^/\\]+\.(png|pdf|svg)$",
                              description="Output file name")
        mag_limit: float = Field(16.0, ge=-30, le=30, description="Faintest deep-sky objects "
                                                                  "named (unknown magnitude: kept)")
        star_mag_limit: float = Field(6.0, ge=-30, le=30, description="Faintest named stars")

    inputs = {"image": Port(("Image", "FrameSeries"), "plate-solved image (of frames: the "
                                                      "first)")}
    outputs = {"objects": Port("Table", "name, type, ra, dec, mag, x, y of named objects in the "
                                        "image"),
               "path": Port("Path", "written figure")}

    def run(self, ctx, params, image):
        from starloom.astro.wcsutil import require_wcs
        from starloom.astro.sky_objects import named_objects
        from starloom.astro.plots import plot_annotated

        image = single_image(image, "image", ctx)
        data, wcs = _plane(image, "image"), require_wcs(image, "image")
        objects = named_objects(wcs, data.shape, mag_limit=params.mag_limit,
                                star_mag_limit=params.star_mag_limit)
        path = plot_annotated(ctx.output_path(params.filename), data, wcs, catalog=objects,
                              label_column="name", max_catalog=200)
        ctx.diagnostics.update(n_objects=len(objects), names=list(objects["name"][:30]))
        return {"objects": objects, "path": str(path)}


NODES = [Photometry, ColourMagnitude, Segmentation, Deconvolve, Overlay, Annotate]
