"""WCS refinement against a catalogue: ``SkyCoord.match_to_catalog_sky`` and astropy's
``fit_wcs_from_points`` (TAN-SIP, Shupe et al. 2005, ASP Conf. Ser. 347, 491).
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import fit_wcs_from_points

from .errors import ParamError, StarloomError


class WCSFitError(StarloomError):
    """A WCS could not be fitted (too few catalogue matches)."""


def n_sip_terms(degree):
    """SIP coefficients per axis for a polynomial degree (terms with 2 <= i + j <= degree)."""
    return 0 if not degree or degree < 2 else (degree + 1) * (degree + 2) // 2 - 3


def min_sip_pairs(degree):
    """Matched stars needed to fit a TAN(-SIP) WCS: half the parameter count plus 3."""
    return (6 + 2 * n_sip_terms(degree)) // 2 + 3


def refine_wcs(
    stars_table: Table,
    wcs: WCS,
    catalog: Table,
    *,
    match_radius_arcsec: float | None = None,
    sip_degree: int | None = 2,
    min_matches: int | None = None,
    n_iter: int = 3,
    clip_sigma: float = 3.0,
) -> tuple[WCS, Table, dict]:
    """Refit a WCS on detected stars matched to catalogue stars.

    Detected stars are projected with ``wcs``, matched to the catalogue with
    ``SkyCoord.match_to_catalog_sky`` (one detection per catalogue star, the closest), and a
    TAN (``sip_degree`` 0/None) or TAN-SIP WCS is fitted with
    ``astropy.wcs.utils.fit_wcs_from_points``. Matching and fitting are iterated ``n_iter``
    times; pairs off by more than ``clip_sigma`` times the rms (and more than 1 px) are
    dropped before the last fit.

    Parameters
    ----------
    stars_table : astropy.table.Table
        Columns ``x``, ``y`` (0-based pixels).
    wcs : astropy.wcs.WCS
        Starting WCS (e.g. `SolveResult.wcs`).
    catalog : astropy.table.Table
        Columns ``ra``, ``dec`` (deg), optionally ``mag``.
    match_radius_arcsec : float, optional
        Match radius; default 3 pixels (at least 2 arcsec).
    sip_degree : int or None, optional
        SIP polynomial degree (0 or None for a pure TAN fit).
    min_matches : int, optional
        Minimum matched pairs; default the fitted parameter count / 2 + 3 (6 for TAN, 9 for
        SIP degree 2).
    n_iter : int, optional
        Match-and-fit iterations.
    clip_sigma : float, optional
        Outlier clip before the final fit.

    Returns
    -------
    wcs : astropy.wcs.WCS
        Refined WCS (``pixel_shape`` copied from the input).
    residuals : astropy.table.Table
        Per matched star: ``x``, ``y``, ``ra``, ``dec`` (catalogue), ``mag``, ``dra_arcsec``,
        ``ddec_arcsec`` (fitted minus catalogue position, east and north), ``total_arcsec``,
        ``dx_px``, ``dy_px`` (catalogue star projected with the refined WCS minus the detected
        position).
    stats : dict
        ``n_matched``, ``rms_arcsec`` (refined), ``rms_before_arcsec`` (input WCS on the same
        pairs), ``median_arcsec``, ``max_arcsec``, ``match_radius_arcsec``, ``sip_degree``,
        ``n_clipped``.

    Raises
    ------
    WCSFitError
        Fewer matches than ``min_matches``.
    """
    if not {"x", "y"} <= set(stars_table.colnames):
        raise ParamError("stars_table", f"needs columns x, y (has {stars_table.colnames})")
    if not {"ra", "dec"} <= set(catalog.colnames):
        raise ParamError("catalog", f"needs columns ra, dec (has {catalog.colnames})")
    degree = int(sip_degree) if sip_degree and int(sip_degree) >= 2 else 0
    need = int(min_matches) if min_matches is not None else min_sip_pairs(degree)
    x = np.asarray(stars_table["x"], dtype=float)
    y = np.asarray(stars_table["y"], dtype=float)
    cat = SkyCoord(
        np.asarray(catalog["ra"], dtype=float) * u.deg, np.asarray(catalog["dec"], dtype=float) * u.deg
    )
    mag = np.asarray(catalog["mag"], dtype=float) if "mag" in catalog.colnames else np.full(len(cat), np.nan)
    scale = float(np.sqrt(np.abs(np.linalg.det(wcs.celestial.pixel_scale_matrix)))) * 3600.0
    radius = float(match_radius_arcsec) if match_radius_arcsec else max(2.0, 3.0 * scale)

    def match(w):
        if len(x) == 0 or len(cat) == 0:
            return np.zeros(0, int), np.zeros(0, int)
        sky = w.pixel_to_world(x, y)
        idx, d2d, _ = sky.match_to_catalog_sky(cat)
        d = d2d.arcsec
        ok = np.nonzero(d <= radius)[0]
        # one detection per catalogue star: keep the closest
        order = ok[np.argsort(d[ok])]
        _, first = np.unique(idx[order], return_index=True)
        sel = np.sort(order[first])
        return sel, idx[sel]

    def fail(n):
        raise WCSFitError(
            f"only {n} detected stars matched catalogue stars within {radius:.1f} arcsec; a "
            f"{'TAN-SIP degree %d' % degree if degree else 'TAN'} fit needs at least {need}. "
            "Use a deeper catalogue, a larger match_radius_arcsec, or a lower sip_degree."
        )

    def fit(si, ci):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FITSFixedWarning, AstropyUserWarning))
            return fit_wcs_from_points(
                (x[si], y[si]), cat[ci], projection="TAN", sip_degree=degree if degree else None
            )

    current = wcs
    si, ci = match(current)
    n_clipped = 0
    for _ in range(max(1, int(n_iter))):
        if len(si) < need:
            fail(len(si))
        new = fit(si, ci)
        si2, ci2 = match(new)
        if len(si2) >= need:
            si, ci, current = si2, ci2, new
        else:
            current = new
            break
    sep = current.pixel_to_world(x[si], y[si]).separation(cat[ci]).arcsec
    rms = np.sqrt(np.mean(sep**2))
    bad = (sep > clip_sigma * rms) & (sep > scale)
    if bad.any() and len(si) - bad.sum() >= need:
        n_clipped = int(bad.sum())
        si, ci = si[~bad], ci[~bad]
        current = fit(si, ci)
    current.pixel_shape = wcs.pixel_shape
    fit_sky = current.pixel_to_world(x[si], y[si])
    dra, ddec = cat[ci].spherical_offsets_to(fit_sky)
    total = fit_sky.separation(cat[ci]).arcsec
    px, py = current.world_to_pixel(cat[ci])
    before = wcs.pixel_to_world(x[si], y[si]).separation(cat[ci]).arcsec
    res = Table(
        {
            "x": x[si],
            "y": y[si],
            "ra": cat[ci].ra.deg,
            "dec": cat[ci].dec.deg,
            "mag": mag[ci],
            "dra_arcsec": dra.to_value(u.arcsec),
            "ddec_arcsec": ddec.to_value(u.arcsec),
            "total_arcsec": total,
            "dx_px": np.asarray(px) - x[si],
            "dy_px": np.asarray(py) - y[si],
        }
    )
    stats = {
        "n_matched": len(si),
        "rms_arcsec": float(np.sqrt(np.mean(total**2))),
        "rms_before_arcsec": float(np.sqrt(np.mean(before**2))),
        "median_arcsec": float(np.median(total)),
        "max_arcsec": float(np.max(total)),
        "match_radius_arcsec": radius,
        "sip_degree": degree,
        "n_clipped": n_clipped,
    }
    return current, res, stats


