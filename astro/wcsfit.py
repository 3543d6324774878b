"""WCS refinement against a catalogue: ``SkyCoord.match_to_catalog_sky`` and astropy's
``fit_wcs_from_points`` (TAN-SIP, Shupe et al. 2005, ASP Conf. Ser. 347, 491).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

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
    cat = SkyCoord(
        np.asarray(catalog["ra"], dtype=float) * u.deg, np.asarray(catalog["dec"], dtype=float) * u.deg
    )
    mag = np.asarray(catalog["mag"], dtype=float) if "mag" in catalog.colnames else np.full(len(cat), np.nan)
    scale = float(np.sqrt(np.abs(np.linalg.det(wcs.celestial.pixel_scale_matrix)))) * 3600.0
    radius = float(match_radius_arcsec) if match_radius_arcsec else max(2.0, 3.0 * scale)
    pairing = _Pairing(
        np.asarray(stars_table["x"], dtype=float), np.asarray(stars_table["y"], dtype=float),
        cat, radius, degree,
    )
    si, ci, current = _fit_iteratively(pairing, wcs, need, n_iter)
    si, ci, current, n_clipped = _clip_outliers(pairing, si, ci, current, clip_sigma, scale, need)
    current.pixel_shape = wcs.pixel_shape
    residuals, stats = _residuals(pairing, mag, si, ci, current, wcs)
    stats.update(match_radius_arcsec=radius, sip_degree=degree, n_clipped=n_clipped)
    return current, residuals, stats


@dataclass
class _Pairing:
    """Detected stars (0-based pixels), catalogue, match radius and fit degree of a refit."""

    x: np.ndarray
    y: np.ndarray
    cat: SkyCoord
    radius: float  # arcsec
    degree: int  # SIP degree, 0 for TAN

    def match(self, w):
        """Indices ``(stars, catalogue)`` of the pairs within the radius under WCS ``w``
        (`starloom.astro.photometry.match_to_catalog`: one detection per catalogue star)."""
        from .photometry import match_to_catalog

        idx, _ = match_to_catalog(self.x, self.y, w, self.cat, max_separation_arcsec=self.radius)
        sel = np.flatnonzero(idx >= 0)
        return sel, idx[sel]

    def fit(self, si, ci):
        """TAN(-SIP) WCS fitted to the pairs ``(si, ci)``."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FITSFixedWarning, AstropyUserWarning))
            return fit_wcs_from_points(
                (self.x[si], self.y[si]), self.cat[ci], projection="TAN",
                sip_degree=self.degree if self.degree else None,
            )

    def too_few(self, n, need) -> WCSFitError:
        return WCSFitError(
            f"only {n} detected stars matched catalogue stars within {self.radius:.1f} arcsec; a "
            f"{'TAN-SIP degree %d' % self.degree if self.degree else 'TAN'} fit needs at least "
            f"{need}. Use a deeper catalogue, a larger match_radius_arcsec, or a lower sip_degree."
        )


def _fit_iteratively(p: _Pairing, wcs, need, n_iter):
    """Match and fit ``n_iter`` times; stop early when the new fit matches fewer than ``need``.

    Returns ``(si, ci, wcs)``: the pairs and the last fit.
    """
    current = wcs
    si, ci = p.match(current)
    for _ in range(max(1, int(n_iter))):
        if len(si) < need:
            raise p.too_few(len(si), need)
        new = p.fit(si, ci)
        si2, ci2 = p.match(new)
        if len(si2) >= need:
            si, ci, current = si2, ci2, new
        else:
            current = new
            break
    return si, ci, current


def _clip_outliers(p: _Pairing, si, ci, current, clip_sigma, scale, need):
    """Drop pairs off by more than ``clip_sigma`` rms and 1 px (``scale`` arcsec) and refit,
    unless fewer than ``need`` would remain. Returns ``(si, ci, wcs, n_clipped)``."""
    sep = current.pixel_to_world(p.x[si], p.y[si]).separation(p.cat[ci]).arcsec
    rms = np.sqrt(np.mean(sep**2))
    bad = (sep > clip_sigma * rms) & (sep > scale)
    if bad.any() and len(si) - bad.sum() >= need:
        n_clipped = int(bad.sum())
        si, ci = si[~bad], ci[~bad]
        return si, ci, p.fit(si, ci), n_clipped
    return si, ci, current, 0


def _residuals(p: _Pairing, mag, si, ci, fitted, before_wcs):
    """Per-pair residuals under the refined WCS, and their statistics (before and after)."""
    x, y, cat = p.x[si], p.y[si], p.cat[ci]
    fit_sky = fitted.pixel_to_world(x, y)
    dra, ddec = cat.spherical_offsets_to(fit_sky)
    total = fit_sky.separation(cat).arcsec
    px, py = fitted.world_to_pixel(cat)
    before = before_wcs.pixel_to_world(x, y).separation(cat).arcsec
    res = Table(
        {
            "x": x,
            "y": y,
            "ra": cat.ra.deg,
            "dec": cat.dec.deg,
            "mag": mag[ci],
            "dra_arcsec": dra.to_value(u.arcsec),
            "ddec_arcsec": ddec.to_value(u.arcsec),
            "total_arcsec": total,
            "dx_px": np.asarray(px) - x,
            "dy_px": np.asarray(py) - y,
        }
    )
    stats = {
        "n_matched": len(si),
        "rms_arcsec": float(np.sqrt(np.mean(total**2))),
        "rms_before_arcsec": float(np.sqrt(np.mean(before**2))),
        "median_arcsec": float(np.median(total)),
        "max_arcsec": float(np.max(total)),
    }
    return res, stats
