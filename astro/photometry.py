"""Aperture photometry, catalogue matching through a WCS, and the photometric zero point and
colour term.

`aperture_photometry` is the one aperture-minus-annulus measurement of the library (the sky
photometry and colour-magnitude nodes, and PCC per colour channel); `match_to_catalog` the one
match of detected stars to catalogue stars (sky photometry and PCC).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import plane
from .errors import StarloomError


def aperture_photometry(data, x, y, *, radius: float, annulus: tuple[float, float],
                        mask=None):
    """Background-subtracted aperture photometry at given positions.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image, ADU (or any linear flux unit).
    x, y : array_like, shape (n,)
        Positions, px, 0-based.
    radius : float
        Aperture radius, px.
    annulus : (float, float)
        Inner and outer radius of the local background annulus, px.
    mask : ndarray of bool, optional
        True for pixels to ignore (NaN pixels are always ignored).

    Returns
    -------
    astropy.table.Table
        One row per position: ``x``, ``y``; ``flux`` (aperture sum minus ``background`` times
        the aperture's overlap area); ``flux_err`` (Poisson-free: the annulus scatter over the
        aperture, ``background_std * sqrt(area) * sqrt(1 + area / n_annulus)``, the second
        factor for the error of the background estimate); ``background`` and
        ``background_std`` (the annulus' sigma-clipped median and standard deviation, per px);
        ``peak`` (the largest pixel in the aperture, for saturation tests); ``mag_inst``
        (``-2.5 log10(flux)``, NaN for non-positive flux).

    Raises
    ------
    StarloomError
        When the image is not 2-D or the radii are not ``0 < radius < inner < outer``.

    Notes
    -----
    The local background subtraction of the photutils documentation (Aperture Photometry,
    "Local Background Subtraction"): ``aperture_photometry`` in a ``CircularAperture``, minus
    the median of the ``CircularAnnulus`` pixels sigma-clipped by ``ApertureStats`` (3 sigma,
    at most 10 iterations, as there: the clipping stops once no pixel is rejected, so more
    iterations only matter where a neighbour's wing lies in the annulus) times
    ``CircularAperture.area_overlap``. The overlap area, not the analytic ``area``, is the
    area the aperture sum was taken over (pixels off the image and masked pixels excluded),
    so a star near the edge or beside a masked pixel loses no more background than it sums;
    for an aperture wholly on unmasked pixels the two are equal.
    """
    from astropy.stats import SigmaClip
    from astropy.table import Table
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture
    from photutils.aperture import aperture_photometry as phot

    img = plane(data, "photometry")
    if not 0 < radius < annulus[0] < annulus[1]:
        raise StarloomError(f"photometry: need 0 < radius < annulus inner < annulus outer, got "
                            f"{radius}, {annulus}")
    bad = ~np.isfinite(img) if mask is None else (np.asarray(mask, bool) | ~np.isfinite(img))
    pos = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    ap = CircularAperture(pos, r=radius)
    ann = CircularAnnulus(pos, r_in=annulus[0], r_out=annulus[1])
    stats = ApertureStats(img, ann, mask=bad, sigma_clip=SigmaClip(sigma=3.0, maxiters=10))
    raw = phot(img, ap, mask=bad)
    area = ap.area_overlap(img, mask=bad)
    bkg, std = np.asarray(stats.median), np.asarray(stats.std)
    flux = np.asarray(raw["aperture_sum"]) - bkg * area
    n_ann = np.maximum(np.asarray(stats.sum_aper_area.value), 1.0)
    err = std * np.sqrt(area) * np.sqrt(1 + area / n_ann)
    peak = np.asarray(ApertureStats(img, ap, mask=bad).max)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = np.where(flux > 0, -2.5 * np.log10(flux), np.nan)
    return Table({"x": pos[:, 0], "y": pos[:, 1], "flux": flux, "flux_err": err,
                  "background": bkg, "background_std": std, "peak": peak, "mag_inst": mag})


def match_to_catalog(x, y, wcs, catalog, *, max_separation_arcsec: float):
    """Match detected stars to catalogue stars through a WCS, one to one.

    Each detection takes its nearest catalogue star on the sky (astropy
    ``SkyCoord.match_to_catalog_sky``) within ``max_separation_arcsec``; when several
    detections take the same catalogue star (a star split into two detections, a pair the
    catalogue does not resolve), only the closest keeps it, so no catalogue star is measured
    twice.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Detected positions, px, 0-based.
    wcs : astropy.wcs.WCS
        Celestial WCS of the image.
    catalog : astropy.table.Table or astropy.coordinates.SkyCoord
        Catalogue stars: a Table with ``ra``, ``dec`` (deg), or their coordinates.
    max_separation_arcsec : float
        Largest detection-catalogue separation, arcsec (a radius in px times
        `starloom.astro.wcsutil.pixel_scale_arcsec`).

    Returns
    -------
    index : numpy.ndarray of int, shape (n,)
        Catalogue row matched to each detection, -1 for none.
    separation_arcsec : numpy.ndarray of float, shape (n,)
        Distance to the nearest catalogue star (also where unmatched), arcsec; NaN without
        catalogue stars.
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    if len(catalog) == 0 or len(x) == 0:
        return np.full(len(x), -1), np.full(len(x), np.nan)
    sky = wcs.pixel_to_world(np.asarray(x, float), np.asarray(y, float))
    cat = catalog if isinstance(catalog, SkyCoord) else SkyCoord(
        np.asarray(catalog["ra"], float) * u.deg, np.asarray(catalog["dec"], float) * u.deg)
    idx, sep, _ = sky.match_to_catalog_sky(cat)
    sep = sep.to_value(u.arcsec)
    near = np.flatnonzero(sep <= max_separation_arcsec)
    closest_first = near[np.argsort(sep[near], kind="stable")]
    _, first = np.unique(idx[closest_first], return_index=True)
    keep = np.zeros(len(sep), bool)
    keep[closest_first[first]] = True
    return np.where(keep, idx, -1), sep


@dataclass
class ZeroPoint:
    """``m_catalogue = m_inst + zero_point + colour_term * colour``, fitted robustly.

    ``zero_point`` and ``colour_term`` with their 1-sigma errors (mag), ``rms`` (mag, of the
    kept stars), ``outlier`` (bool per star: rejected by the sigma clipping), ``n_used``.
    """

    zero_point: float
    zero_point_err: float
    colour_term: float
    colour_term_err: float
    rms: float
    outlier: np.ndarray
    n_used: int


def fit_zero_point(mag_inst, mag_cat, colour=None, *, sigma: float = 3.0,
                   min_stars: int = 3) -> ZeroPoint:
    """Fit the photometric zero point (and colour term) with outlier rejection.

    The transformation ``m_cat - m_inst = ZP + CT * colour`` is the standard one of
    photometric calibration against a reference catalogue (e.g. Harris, FitzGerald & Reed
    1981, PASP 93, 507). Fitted by ``astropy.modeling`` linear least squares inside
    ``FittingWithOutlierRemoval`` with 3-sigma clipping (variables, blends and mismatches are
    flagged as outliers). Without ``colour`` only the zero point is fitted.

    Raises
    ------
    StarloomError
        Fewer than ``min_stars`` finite pairs.
    """
    from astropy.modeling import fitting, models
    from astropy.stats import sigma_clip

    mi, mc = np.asarray(mag_inst, float), np.asarray(mag_cat, float)
    c = np.zeros_like(mi) if colour is None else np.asarray(colour, float)
    ok = np.isfinite(mi) & np.isfinite(mc) & np.isfinite(c)
    if ok.sum() < min_stars:
        raise StarloomError(f"photometry: {int(ok.sum())} star(s) matched with a catalogue "
                            f"magnitude; at least {min_stars} are needed for a zero point")
    delta = mc - mi
    fitter = fitting.FittingWithOutlierRemoval(fitting.LinearLSQFitter(calc_uncertainties=True),
                                               sigma_clip, niter=5, sigma=sigma)
    model = models.Polynomial1D(1 if colour is not None else 0)
    fit, rejected = fitter(model, c[ok], delta[ok])
    outlier = np.ones_like(ok)
    outlier[ok] = np.asarray(rejected, bool)
    kept = ok & ~outlier
    resid = delta[kept] - fit(c[kept])
    errs = fit.stds.stds if fit.stds is not None else [np.nan, np.nan]
    return ZeroPoint(zero_point=float(fit.c0.value), zero_point_err=float(errs[0]),
                     colour_term=float(fit.c1.value) if colour is not None else 0.0,
                     colour_term_err=float(errs[1]) if colour is not None else 0.0,
                     rms=float(np.std(resid)), outlier=outlier & ok, n_used=int(kept.sum()))


def plot_zero_point(path, mag_cat, residual, colour, outlier, zp: ZeroPoint, *, dpi=100):
    """Residuals (catalogue minus calibrated) against catalogue magnitude and colour."""
    from .plots import _figure

    fig = _figure((10, 4))
    out = np.asarray(outlier, bool)
    for k, (xv, label) in enumerate(((mag_cat, "catalogue magnitude"), (colour, "colour"))):
        ax = fig.add_subplot(1, 2, k + 1)
        if xv is None:
            ax.set_visible(False)
            continue
        xv = np.asarray(xv, float)
        ax.plot(xv[~out], residual[~out], "o", ms=4, label="used")
        ax.plot(xv[out], residual[out], "x", color="red", label="outlier (variable, blend)")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("catalogue - calibrated, mag")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"zero point {zp.zero_point:.3f} +- {zp.zero_point_err:.3f}, colour term "
                 f"{zp.colour_term:+.3f}, rms {zp.rms:.3f} mag, {zp.n_used} stars", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
