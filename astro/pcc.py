"""Photometric colour calibration (PCC) of a planar RGB image with a celestial WCS.

Steps (the approach of Siril's ``photometric_cc.c`` and PixInsight's PhotometricColorCalibration;
colour model and fit in :mod:`.pcc_fit`):

1. stars are detected on the mean of the channels (`starloom.astro.stars.detect_stars`) and
   matched one to one, through the image's WCS, to catalogue stars with a B-V (KStars
   stars.dat, Hipparcos; ``Table`` columns ``ra``, ``dec``, ``bv``) within ``match_radius``
   pixels (`starloom.astro.photometry.match_to_catalog`);
2. aperture photometry per channel (`starloom.astro.photometry.aperture_photometry`: photutils
   aperture sum in a circle of ``aperture`` x the median FWHM, minus the sigma-clipped median
   of a local annulus at 1.5-2.5 radii); saturated, non-positive or crowded stars are dropped;
3. per-channel factors fitted robustly so that the measured R/G and B/G follow the catalogue's
   (relative to the white reference), G fixed at 1;
4. guard rails: too few matched stars or too large a residual fail with a clear message;
5. applied to the image: ``(channel - sky) * factor + common sky`` when the background is
   neutralised (each channel's sky, measured in the darkest quarter of star-free sample
   boxes by `sky_levels`, becomes the same grey level, as PixInsight's
   BackgroundNeutralization with a background reference), else ``channel * factor``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from .errors import ParamError, StarloomError
from .pcc_fit import WHITE_REFERENCES, expected_ratios, fit_factors

__all__ = ["PCCError", "PCCResult", "photometric_colour_calibration", "sky_levels",
           "star_average_calibration"]


class PCCError(StarloomError):
    """PCC cannot calibrate this image (too few stars, too large a residual, no colour)."""


@dataclass
class PCCResult:
    """What `photometric_colour_calibration` returns.

    Attributes
    ----------
    image : numpy.ndarray (3, ny, nx) float32
        Calibrated image.
    factors : numpy.ndarray (3,)
        R, G, B multipliers (G = 1).
    stars : astropy.table.Table
        Matched stars: ``ra``, ``dec``, ``mag``, ``bv``, ``x``, ``y``, ``separation``
        (arcsec), ``flux_r/g/b``, ``noise_r/g/b`` (the photometry's ``flux_err``),
        ``rg_measured``, ``bg_measured``, ``rg_expected``, ``bg_expected``, ``used``.
    stats : dict
        ``n_matched``, ``n_used``, ``residual_mag``, ``slopes``, ``white_bv``, ``background``.
    """

    image: np.ndarray
    factors: np.ndarray
    stars: Table
    stats: dict


def _catalog_stars(stars: Table, catalog: Table, wcs, radius_px: float) -> Table:
    """Detections matched one to one with catalogue stars that have a B-V.

    `starloom.astro.photometry.match_to_catalog` within ``radius_px`` (converted to arcsec by
    the WCS's mean pixel scale). Returns the detection columns plus the catalogue's ``ra``,
    ``dec``, ``bv``, ``mag`` (NaN when absent) and ``separation`` (arcsec).
    """
    from .photometry import match_to_catalog
    from .wcsutil import pixel_scale_arcsec

    if len(stars) == 0:
        return Table()
    cat = catalog[np.isfinite(np.asarray(catalog["bv"], dtype=float))]
    idx, sep = match_to_catalog(stars["x"], stars["y"], wcs, cat,
                                max_separation_arcsec=radius_px * pixel_scale_arcsec(wcs))
    hit = idx >= 0
    if not hit.any():
        return Table()
    out = Table(stars[hit], copy=True)
    for col in ("ra", "dec", "bv"):
        out[col] = np.asarray(cat[col], float)[idx[hit]]
    out["mag"] = np.asarray(cat["mag"], float)[idx[hit]] if "mag" in cat.colnames else np.nan
    out["separation"] = sep[hit]
    return out


def _channel_photometry(planes, x, y, radius):
    """`starloom.astro.photometry.aperture_photometry` of each channel, sky annulus 1.5-2.5
    radii: ``flux``, ``flux_err``, ``peak`` and flat-topped (see `_flat_topped`) arrays of
    shape (n_stars, n_channels)."""
    from photutils.aperture import CircularAperture

    from .photometry import aperture_photometry

    masks = CircularAperture(np.column_stack([x, y]), r=radius).to_mask(method="center")
    cols = {"flux": [], "flux_err": [], "peak": [], "flat": []}
    for plane in planes:
        t = aperture_photometry(plane, x, y, radius=radius, annulus=(1.5 * radius, 2.5 * radius))
        for name in ("flux", "flux_err", "peak"):
            cols[name].append(np.asarray(t[name], float))
        cols["flat"].append(_flat_topped(plane, masks, t))
    return {name: np.column_stack(v) for name, v in cols.items()}


def _flat_topped(plane, masks, phot, tolerance=0.03, min_pixels=4):
    """Stars whose core is a plateau: at least ``min_pixels`` pixels within ``tolerance`` of the
    peak (above sky). An unclipped PSF has one or two such pixels; a star clipped at the
    sensor's full well keeps a flat top through calibration, stacking and debayering, where a
    single saturation level no longer exists."""
    sky, sigma = np.asarray(phot["background"]), np.asarray(phot["background_std"])
    height = np.asarray(phot["peak"]) - sky
    out = np.zeros(len(phot), dtype=bool)
    for i, mask in enumerate(masks):
        if height[i] > 20 * sigma[i]:  # only bright stars can be clipped
            values = mask.get_values(plane)
            out[i] = np.count_nonzero(values - sky[i] >= (1 - tolerance) * height[i]) >= min_pixels
    return out


def _checked(data, white_reference, min_stars, max_residual):
    planes = np.asarray(data, dtype=np.float64)
    if planes.ndim != 3 or planes.shape[0] != 3:
        raise PCCError(f"PCC needs a planar RGB image (3, ny, nx), got shape {planes.shape}; "
                       f"debayer the CFA image first")
    if isinstance(white_reference, str):
        if white_reference not in WHITE_REFERENCES:
            raise ParamError("white_reference", f"one of {', '.join(WHITE_REFERENCES)} or a "
                                                f"B-V value, got {white_reference!r}")
        white_bv = WHITE_REFERENCES[white_reference]
    else:
        white_bv = float(white_reference)
    if min_stars < 3:
        raise ParamError("min_stars", f"must be >= 3, got {min_stars}")
    if not max_residual > 0:
        raise ParamError("max_residual", f"must be > 0, got {max_residual}")
    return planes, white_bv


def _photometry(planes, matched, fwhm, aperture, saturation):
    """Aperture fluxes of the matched stars; drops saturated, faint and crowded ones."""
    radius = max(2.0, aperture * fwhm)
    x, y = np.asarray(matched["x"], float), np.asarray(matched["y"], float)
    ny, nx = planes.shape[1:]
    inside = (x > 2.5 * radius) & (x < nx - 1 - 2.5 * radius) & (y > 2.5 * radius) & (y < ny - 1 - 2.5 * radius)
    matched = matched[inside]
    if len(matched) == 0:
        return matched, radius
    x, y = x[inside], y[inside]
    m = _channel_photometry(planes, x, y, radius)
    fluxes, peaks, noise, flat = m["flux"], m["peak"], m["flux_err"], m["flat"]
    if saturation is None:  # auto: near the maximum, or a flat top (clipped before processing)
        saturation = 0.98 * np.nanmax(planes)
    else:
        flat[:] = False
    # a neighbour at least a tenth as bright inside 2 radii adds its light to the aperture
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    g = fluxes[:, 1]
    crowded = ((d < 2.0 * radius) & (g[None, :] > 0.1 * g[:, None])).sum(axis=1) > 1
    clipped = np.any(peaks >= saturation, axis=1) | np.any(flat, axis=1)
    keep = np.all(fluxes > 0, axis=1) & ~clipped & ~crowded
    for c, name in enumerate("rgb"):
        matched[f"flux_{name}"] = fluxes[:, c]
        matched[f"noise_{name}"] = noise[:, c]
    matched["saturated_px"] = clipped
    return matched[keep], radius


def photometric_colour_calibration(data, wcs, catalog: Table, *, white_reference="G2V",
                                   min_stars=10, max_residual=0.3, match_radius=3.0,
                                   aperture=2.0, fwhm=3.0, threshold_sigma=5.0,
                                   saturation=None, neutralize_background=True,
                                   max_stars=500) -> PCCResult:
    """Calibrate the colour of a planar RGB image on catalogue star colours.

    Parameters
    ----------
    data : array_like (3, ny, nx)
        Linear RGB image (R, G, B planes), background-subtracted or not.
    wcs : astropy.wcs.WCS
        Celestial WCS of the image.
    catalog : astropy.table.Table
        Reference stars: ``ra``, ``dec`` (deg), ``bv`` (B-V, mag), optional ``mag``.
    white_reference : {'G2V', 'average_spiral'} or float
        The colour that comes out grey (see `starloom.astro.pcc_fit.WHITE_REFERENCES`), or a B-V.
    min_stars : int
        Fewest usable matched stars (guard rail).
    max_residual : float
        Largest robust colour residual after the fit, mag (guard rail).
    match_radius : float
        Detection-catalogue match radius, px.
    aperture : float
        Aperture radius in units of the measured median FWHM (at least 2 px); the sky
        annulus spans 1.5 to 2.5 aperture radii.
    fwhm, threshold_sigma : float
        Star detection (DAOFIND kernel FWHM in px, threshold in noise sigma).
    saturation : float, optional
        Pixel value from which a star counts as saturated. Default: a star within 2 % of the
        image maximum, or with a flat-topped core (clipped at full well before calibration
        and stacking, see `_flat_topped`), counts as saturated.
    neutralize_background : bool
        Make the sky the same grey in every channel (see module docstring).
    max_stars : int
        Brightest detections considered.

    Returns
    -------
    PCCResult

    Raises
    ------
    PCCError
        Not a (3, ny, nx) image, fewer than ``min_stars`` usable matches, or a residual above
        ``max_residual`` (the message gives the numbers and what to try).
    ParamError
        A parameter out of range.
    """
    from .stars import detect_stars

    planes, white_bv = _checked(data, white_reference, min_stars, max_residual)
    stars, metrics = detect_stars(planes.mean(axis=0), fwhm=fwhm, threshold_sigma=threshold_sigma,
                                  max_stars=max_stars)
    matched = _catalog_stars(stars[~np.asarray(stars["saturated"], bool)] if len(stars) else stars,
                             catalog, wcs, match_radius)
    n_matched = len(matched)
    fwhm_px = metrics.get("median_fwhm_px") or fwhm
    matched, radius = _photometry(planes, matched, fwhm_px, aperture, saturation)
    if len(matched) < min_stars:
        raise PCCError(f"PCC: {len(matched)} usable catalogue stars with B-V ({n_matched} matched "
                       f"of {len(stars)} detected, {len(catalog)} in the catalogue); at least "
                       f"{min_stars} needed (parameter 'min_stars'): check the WCS, use a deeper "
                       f"catalogue or a larger match_radius")
    f = np.column_stack([matched["flux_r"], matched["flux_g"], matched["flux_b"]])
    matched["rg_measured"], matched["bg_measured"] = f[:, 0] / f[:, 1], f[:, 2] / f[:, 1]
    matched["rg_expected"], matched["bg_expected"] = expected_ratios(matched["bv"], white_bv)
    snr = f / np.column_stack([matched["noise_r"], matched["noise_g"], matched["noise_b"]])
    factors, used, residual, slopes = fit_factors(matched["rg_measured"], matched["bg_measured"],
                                                  matched["rg_expected"], matched["bg_expected"],
                                                  snr=snr)
    matched["used"] = used
    if used.sum() < min_stars:
        raise PCCError(f"PCC: only {int(used.sum())} stars left after outlier clipping, at "
                       f"least {min_stars} needed (parameter 'min_stars')")
    if residual > max_residual:
        raise PCCError(f"PCC: colour residual {residual:.3f} mag over {int(used.sum())} stars "
                       f"exceeds max_residual {max_residual} mag (factors R {factors[0]:.3f}, "
                       f"B {factors[2]:.3f}): wrong WCS, non-linear image, or a camera far "
                       f"from the model's RGB bands")
    out, bkg = _apply(planes, factors, neutralize_background)
    stats = {"n_detected": len(stars), "n_matched": n_matched, "n_measured": len(matched),
             "n_used": int(used.sum()), "residual_mag": float(residual), "slopes": list(slopes),
             "white_bv": white_bv, "aperture_radius_px": radius,
             "background": [float(b) for b in bkg], "factors": [float(k) for k in factors]}
    return PCCResult(out, factors, matched, stats)


def star_average_calibration(data, *, fwhm=3.0, threshold_sigma=5.0, aperture=2.0,
                             neutralize_background=True, max_stars=300) -> PCCResult:
    """White balance that makes the average detected star grey (no catalogue needed).

    The fallback when too few catalogue stars are known (PixInsight's ColorCalibration with
    stars as the white reference): the factors are the inverse sigma-clipped medians of the
    stars' R/G and B/G. Same photometry and application as `photometric_colour_calibration`.

    Raises
    ------
    PCCError
        Not a (3, ny, nx) image, or fewer than 3 measurable stars.
    """
    from astropy.stats import sigma_clipped_stats

    from .stars import detect_stars

    planes, _ = _checked(data, "G2V", 3, 1.0)
    stars, metrics = detect_stars(planes.mean(axis=0), fwhm=fwhm, threshold_sigma=threshold_sigma,
                                  max_stars=max_stars)
    stars = stars[~np.asarray(stars["saturated"], bool)] if len(stars) else stars
    measured, radius = _photometry(planes, Table(stars), metrics.get("median_fwhm_px") or fwhm,
                                   aperture, None)
    if len(measured) < 3:
        raise PCCError(f"colour calibration: only {len(measured)} measurable stars")
    rg = np.asarray(measured["flux_r"]) / np.asarray(measured["flux_g"])
    bg = np.asarray(measured["flux_b"]) / np.asarray(measured["flux_g"])
    factors = np.array([1.0 / sigma_clipped_stats(rg)[1], 1.0, 1.0 / sigma_clipped_stats(bg)[1]])
    measured["rg_measured"], measured["bg_measured"] = rg, bg
    measured["used"] = np.ones(len(measured), bool)
    out, bkg = _apply(planes, factors, neutralize_background)
    stats = {"n_detected": len(stars), "n_matched": 0, "n_measured": len(measured),
             "n_used": len(measured), "residual_mag": None, "aperture_radius_px": radius,
             "background": [float(b) for b in bkg], "factors": [float(k) for k in factors]}
    return PCCResult(out, factors, measured, stats)


def sky_levels(planes, n_boxes=16, quantile=0.25) -> np.ndarray:
    """Per-channel sky level of the darkest part of the sky, (n,).

    The sky is sampled in a grid of boxes with stars masked (`starloom.astro.background`);
    the level of each channel is the median of its box values over the boxes whose mean over
    the channels is in the darkest ``quantile``. A whole-image median would take a nebula or a
    galaxy filling the field for sky, and neutralising it would tint the true sky.
    """
    from .background import background_samples, sky_mask

    n, ny, nx = planes.shape
    box = max(8, max(ny, nx) // n_boxes)
    lum = planes.mean(axis=0)
    samples = background_samples(planes, sky_mask(lum, box_size=2 * box), box)
    values = np.array([np.asarray(samples[f"value_{c}"], float) for c in range(n)])
    ok = np.asarray(samples["used"], bool) & np.all(np.isfinite(values), axis=0)
    if ok.sum() < 4:
        return np.nanmedian(planes.reshape(n, -1), axis=1)
    mean = values[:, ok].mean(axis=0)
    dark = mean <= np.quantile(mean, quantile)
    return np.median(values[:, ok][:, dark], axis=1)


def _apply(planes, factors, neutralize_background):
    """Multiply the channels by ``factors``; with neutralisation, one common sky level."""
    bkg = sky_levels(planes)
    if neutralize_background:
        level = float(np.mean(bkg * factors))
        out = (planes - bkg[:, None, None]) * factors[:, None, None] + level
    else:
        out = planes * factors[:, None, None]
    return out.astype(np.float32), bkg
