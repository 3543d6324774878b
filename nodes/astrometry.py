"""Astrometry core of Starloom: star detection, plate solving, WCS refinement, reprojection, plots.

Pure functions (no node machinery) that the astrometry nodes wrap. The heavy lifting is done by
the field's tools:

* star detection: photutils ``Background2D`` and ``DAOStarFinder`` (DAOFIND, Stetson 1987,
  PASP 99, 191);
* plate solving: astrometry.net's ``solve-field`` and ``build-astrometry-index`` run offline as
  subprocesses (Lang, Hogg, Mierle, Blanton & Roweis 2010, AJ 139, 1782), TAN-SIP solutions
  (Shupe et al. 2005, ASP Conf. Ser. 347, 491);
* WCS refinement: ``astropy.coordinates.SkyCoord.match_to_catalog_sky`` and
  ``astropy.wcs.utils.fit_wcs_from_points``;
* reprojection: the ``reproject`` package (``reproject_interp``, ``reproject_adaptive``,
  ``reproject_exact``, ``find_optimal_celestial_wcs``; https://reproject.readthedocs.io).

Reference catalogues (Tycho-2 from the astrometry.net index files, KStars, Hipparcos, Gaia) live
in `starloom.nodes.astrometry_catalogs` and are re-exported here.

Pixel convention: every pixel coordinate in and out of this module is 0-based (numpy/astropy,
centre of the first pixel is (0, 0)); astrometry.net's 1-based convention is converted at the
subprocess boundary only. Images are ``(ny, nx)`` arrays; x is the column index.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import fit_wcs_from_points, proj_plane_pixel_scales
from scipy.spatial import cKDTree

from starloom.graph_runtime.errors import ParamError, StarloomError
from starloom.nodes.astrometry_catalogs import (  # noqa: F401  (re-exported API)
    CATALOG_SOURCES,
    CatalogError,
    default_cache_dir,
    default_index_dirs,
    find_index_files,
    footprint_cone,
    load_catalog,
    read_index_stars,
)

__all__ = [
    "CatalogError",
    "CoaddResult",
    "PlateSolveError",
    "SolveResult",
    "WCSFitError",
    "build_field_indexes",
    "coadd",
    "detect_stars",
    "footprint_cone",
    "hints_from_header",
    "load_catalog",
    "optimal_wcs",
    "plate_solve",
    "plot_annotated",
    "plot_residuals",
    "refine_wcs",
    "reproject_frames",
]

#: Fields narrower than this (arcmin) take the small-field path when a position hint is given.
SMALL_FIELD_ARCMIN = 30.0


class PlateSolveError(StarloomError):
    """Plate solving failed: no solution within the time bound, or the solver is unavailable."""


class WCSFitError(StarloomError):
    """A WCS could not be fitted (too few catalogue matches)."""


# ============================================================================================
# star detection


def _adaptive_moments(img, x, y, fwhm0, valid_mask=None, niter=8):
    """Windowed centroids, FWHM and eccentricity from adaptive second moments.

    The weight is an elliptical Gaussian iterated to match the star (adaptive moments,
    Bernstein & Jarvis 2002, AJ 123, 583; the centroid update is SExtractor's windowed
    position, Bertin & Arnouts 1996). For a matched window the star covariance is twice the
    weighted covariance, so the result is exact for Gaussian stars. Vectorised over stars.

    Returns ``(x, y, fwhm_px, eccentricity)``; NaN where the moments fail. Stars are processed
    in chunks so that memory stays bounded (about 2000 cutout pixels x 4000 per chunk).
    """
    n = len(x)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    half = int(np.clip(np.ceil(3.0 * fwhm0), 5, 25))
    chunk = max(64, int(4e6 // (2 * half + 1) ** 2))
    if n > chunk:
        parts = [
            _adaptive_moments(img, x[i : i + chunk], y[i : i + chunk], fwhm0, valid_mask, niter)
            for i in range(0, n, chunk)
        ]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))
    ny, nx = img.shape
    s0 = max(fwhm0, 1.0) / 2.3548
    off = np.arange(-half, half + 1)
    xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
    X = xi[:, None, None] + off[None, None, :]
    Y = yi[:, None, None] + off[None, :, None]
    inside = (X >= 0) & (X < nx) & (Y >= 0) & (Y < ny)
    Xc, Yc = np.clip(X, 0, nx - 1), np.clip(Y, 0, ny - 1)
    if valid_mask is not None:
        inside &= valid_mask[Yc, Xc]
    cut = np.where(inside, img[Yc, Xc], 0.0)
    cx, cy = np.asarray(x, dtype=float).copy(), np.asarray(y, dtype=float).copy()
    cxx, cyy, cxy = np.full(n, s0**2), np.full(n, s0**2), np.zeros(n)
    cmax = float(half) ** 2
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for _ in range(niter):
            dx, dy = X - cx[:, None, None], Y - cy[:, None, None]
            det = cxx * cyy - cxy**2
            q = (
                cyy[:, None, None] * dx**2 + cxx[:, None, None] * dy**2 - 2 * cxy[:, None, None] * dx * dy
            ) / det[:, None, None]
            w = np.exp(-0.5 * q) * cut
            f = w.sum(axis=(1, 2))
            mx = (w * dx).sum(axis=(1, 2)) / f
            my = (w * dy).sum(axis=(1, 2)) / f
            mxx = (w * dx**2).sum(axis=(1, 2)) / f - mx**2
            myy = (w * dy**2).sum(axis=(1, 2)) / f - my**2
            mxy = (w * dx * dy).sum(axis=(1, 2)) / f - mx * my
            # windowed centroid step (factor 2: matched Gaussian window), bounded to the cutout
            cx = np.clip(cx + 2 * np.nan_to_num(mx), xi - half / 2, xi + half / 2)
            cy = np.clip(cy + 2 * np.nan_to_num(my), yi - half / 2, yi + half / 2)
            cxx, cyy = np.clip(2 * mxx, 0.01, cmax), np.clip(2 * myy, 0.01, cmax)
            cxy = np.clip(2 * mxy, -np.sqrt(cxx * cyy) * 0.99, np.sqrt(cxx * cyy) * 0.99)
        det = cxx * cyy - cxy**2
        tr = cxx + cyy
        disc = np.sqrt(np.maximum(tr**2 / 4 - det, 0))
        lmax, lmin = tr / 2 + disc, tr / 2 - disc
        fwhm = 2.3548 * det**0.25
        ecc = np.sqrt(np.clip(1 - lmin / lmax, 0, 1))
    bad = ~(f > 0) | ~np.isfinite(fwhm) | ~np.isfinite(cx) | ~np.isfinite(cy)
    for a in (cx, cy, fwhm, ecc):
        a[bad] = np.nan
    return cx, cy, fwhm, ecc


def _background(img, mask, box_size):
    """Background and rms maps: photutils Background2D, global sigma-clipped stats as fallback."""
    from photutils.background import Background2D, MedianBackground

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            bkg = Background2D(img, box_size, mask=mask, filter_size=(3, 3), bkg_estimator=MedianBackground())
        return np.asarray(bkg.background), np.asarray(bkg.background_rms)
    except ValueError:
        from astropy.stats import sigma_clipped_stats

        _, med, std = sigma_clipped_stats(img, mask=mask, sigma=3.0)
        return np.full(img.shape, med), np.full(img.shape, std)


def _dao_measure(sub, thr, bad, fwhm, sharpness_range, roundness_range, max_move):
    """One DAOStarFinder pass plus adaptive-moment measurements; returns a Table."""
    from photutils.detection import DAOStarFinder

    finder = DAOStarFinder(
        threshold=thr,
        fwhm=float(fwhm),
        exclude_border=True,
        sharpness_range=tuple(sharpness_range),
        roundness_range=tuple(roundness_range),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        found = finder(sub, mask=bad if bad.any() else None)
    cols = ("x", "y", "flux", "peak", "npix", "fwhm", "eccentricity", "roundness", "roundness2", "sharpness")
    if found is None or len(found) == 0:
        return Table({c: np.zeros(0) for c in cols})
    x_dao = np.asarray(found["x_centroid"], dtype=float)
    y_dao = np.asarray(found["y_centroid"], dtype=float)
    xw, yw, fw, ecc = _adaptive_moments(sub, x_dao, y_dao, float(fwhm), valid_mask=~bad)
    # windowed centroid where it converged near the DAOFIND one (better on saturated stars)
    moved = np.hypot(xw - x_dao, yw - y_dao)
    use_w = np.isfinite(moved) & (moved < max_move)
    npix = (
        np.asarray(found["n_pixels"], dtype=float)
        if "n_pixels" in found.colnames
        else np.full(len(x_dao), np.pi * fwhm**2)
    )
    return Table(
        {
            "x": np.where(use_w, xw, x_dao),
            "y": np.where(use_w, yw, y_dao),
            "flux": np.asarray(found["flux"], dtype=float),
            "peak": np.asarray(found["peak"], dtype=float),
            "npix": npix,
            "fwhm": fw,
            "eccentricity": ecc,
            "roundness": np.asarray(found["roundness1"], dtype=float),
            "roundness2": np.asarray(found["roundness2"], dtype=float),
            "sharpness": np.asarray(found["sharpness"], dtype=float),
        }
    )


def detect_stars(
    data,
    *,
    fwhm: float = 3.0,
    threshold_sigma: float = 5.0,
    mask=None,
    max_stars: int | None = None,
    pixel_scale: float | None = None,
    box_size: int | None = None,
    fwhm_range: tuple[float, float] | None = None,
    sharpness_range: tuple[float, float] = (0.15, 1.0),
    roundness_range: tuple[float, float] = (-1.5, 1.5),
    saturation: float | None = None,
    large_stars: bool = True,
) -> tuple[Table, dict]:
    """Detect stars on a background-subtracted image and measure them.

    The background and its rms are estimated with photutils ``Background2D`` (median in boxes,
    3x3 median filter); stars are found with photutils ``DAOStarFinder`` (DAOFIND, Stetson 1987)
    on ``data - background`` with a per-pixel threshold of ``threshold_sigma * rms``.
    Single-pixel spikes (hot pixels, cosmic rays) are rejected twice: by DAOFIND's sharpness
    bounds (a spike has sharpness > 1) and by the measured FWHM (below ``fwhm_range[0]``),
    which also removes 2-3 pixel hot clusters. Per-star FWHM, eccentricity and a windowed
    centroid come from adaptive (Gaussian-weighted) second moments, exact for Gaussian stars.
    Multiple DAOFIND peaks on one large (saturated) star are merged into the brightest, and big
    stars are centred by a second, wider-kernel pass (``large_stars``).

    Parameters
    ----------
    data : array_like, shape (ny, nx)
        Image, any real dtype (converted to float64). NaN/inf pixels are masked.
    fwhm : float, optional
        Expected stellar FWHM in pixels (DAOFIND kernel and moment window start).
    threshold_sigma : float, optional
        Detection threshold in units of the background rms.
    mask : array_like of bool, shape (ny, nx), optional
        True for pixels to ignore.
    max_stars : int, optional
        Keep only the brightest ``max_stars`` (by flux).
    pixel_scale : float, optional
        Pixel scale in arcsec/px; enables ``median_fwhm_arcsec``.
    box_size : int, optional
        Background box size in pixels (default: min(ny, nx)/10 clipped to 16..128).
    fwhm_range : (float, float), optional
        Accepted measured FWHM in pixels; default ``(max(0.8, 0.4*fwhm), 6*fwhm)``.
    sharpness_range, roundness_range : (float, float), optional
        DAOFIND bounds. Wider than photutils' defaults (0.2..1, -1..1) so that saturated,
        flat-topped stars (low sharpness, extreme roundness1) are kept; the upper sharpness
        bound of 1 is what rejects single hot pixels.
    saturation : float, optional
        Pixel value (in ``data`` units) at or above which a star is flagged ``saturated``;
        default: the image maximum when at least 5 pixels sit at it (clipped stars), else none.
    large_stars : bool, optional
        Run a second DAOFIND pass with a 3x wider kernel and take the centres of stars measured
        wider than 2x ``fwhm`` from it (bright, saturated or haloed stars, on which the first
        pass finds off-centre peaks); first-pass detections inside them are dropped.

    Returns
    -------
    stars : astropy.table.Table
        One row per star, sorted by ``flux`` descending, columns: ``x``, ``y`` (0-based pixel
        centroid, float64: the windowed centroid, or DAOFIND's when that did not converge
        within 2 px), ``flux`` (background-subtracted sum in the DAOFIND footprint, data
        units), ``peak`` (peak above background), ``snr`` (flux over background noise in the
        footprint, background-limited), ``fwhm`` (px), ``eccentricity``, ``roundness``
        (DAOFIND roundness1), ``roundness2``, ``sharpness``, ``saturated`` (bool).
    metrics : dict
        ``n_stars``, ``n_rejected`` (DAOFIND peaks dropped by the FWHM bounds or merged),
        ``median_fwhm_px``, ``median_fwhm_arcsec`` (None without ``pixel_scale``),
        ``median_eccentricity``, ``background``, ``background_rms`` (medians of the maps).
        Medians use the non-saturated stars when there are at least 3.

    Raises
    ------
    ParamError
        ``data`` is not 2-D or a parameter is out of range.
    """
    img = np.asarray(data, dtype=np.float64)
    if img.ndim != 2:
        raise ParamError("data", f"expected a 2-D image, got shape {img.shape}")
    if not fwhm > 0:
        raise ParamError("fwhm", f"must be > 0, got {fwhm}")
    if not threshold_sigma > 0:
        raise ParamError("threshold_sigma", f"must be > 0, got {threshold_sigma}")
    bad = ~np.isfinite(img)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != img.shape:
            raise ParamError("mask", f"shape {mask.shape} differs from the image {img.shape}")
        bad |= mask
    work = np.where(bad, np.nanmedian(img[~bad]) if (~bad).any() else 0.0, img)
    if box_size is None:
        box_size = int(np.clip(min(img.shape) // 10, 16, 128))
    bkg, rms = _background(work, bad if bad.any() else None, box_size)
    sub = work - bkg
    rms = np.where(rms > 0, rms, np.nanmedian(rms[rms > 0]) if (rms > 0).any() else 1.0)

    thr = threshold_sigma * rms
    lo, hi = fwhm_range if fwhm_range is not None else (max(0.8, 0.4 * fwhm), 6.0 * fwhm)
    stars = _dao_measure(sub, thr, bad, float(fwhm), sharpness_range, roundness_range, 2.0)
    n_found = len(stars)
    stars = stars[np.isfinite(stars["fwhm"]) & (stars["fwhm"] >= lo) & (stars["fwhm"] <= hi)]
    if large_stars:
        # second DAOFIND pass with a 3x wider kernel: centres of big (saturated, haloed) stars,
        # on which the first pass finds off-centre peaks or nothing
        big = _dao_measure(sub, thr, bad, 3.0 * fwhm, (0.0, 1.0), (-2.0, 2.0), float(fwhm))
        big = big[np.isfinite(big["fwhm"]) & (big["fwhm"] >= 2.0 * fwhm) & (big["fwhm"] <= 20.0 * fwhm)]
        n_found += len(big)
        if len(big) and len(stars):
            tree = cKDTree(np.c_[stars["x"], stars["y"]])
            covered = np.zeros(len(stars), dtype=bool)
            radii = np.maximum(np.asarray(big["fwhm"]), 2.0 * fwhm)
            for hits in tree.query_ball_point(np.c_[big["x"], big["y"]], radii):
                covered[hits] = True
            stars = stars[~covered]
        if len(big):
            stars = vstack([stars, big]) if len(stars) else big
    names = (
        "x",
        "y",
        "flux",
        "peak",
        "snr",
        "fwhm",
        "eccentricity",
        "roundness",
        "roundness2",
        "sharpness",
        "saturated",
    )
    if len(stars) == 0:
        empty = Table({n: np.zeros(0, dtype=bool if n == "saturated" else float) for n in names})
        return empty, {
            "n_stars": 0,
            "n_rejected": n_found,
            "median_fwhm_px": None,
            "median_fwhm_arcsec": None,
            "median_eccentricity": None,
            "background": float(np.median(bkg)),
            "background_rms": float(np.median(rms)),
        }
    stars.sort("flux", reverse=True)
    # DAOFIND splits large (saturated, flat-topped) stars into several peaks: keep the brightest
    # detection within max(fwhm, FWHM/2 of the brighter star)
    xy = np.c_[stars["x"], stars["y"]]
    tree = cKDTree(xy)
    radii = np.maximum(float(fwhm), 0.5 * np.nan_to_num(np.asarray(stars["fwhm"], dtype=float)))
    alive = np.ones(len(stars), dtype=bool)
    for i, hits in enumerate(tree.query_ball_point(xy, radii)):
        if alive[i]:
            later = [j for j in hits if j > i]
            alive[later] = False
    stars = stars[alive]
    n_rejected = n_found - len(stars)
    xi = np.clip(np.rint(np.asarray(stars["x"])).astype(int), 0, img.shape[1] - 1)
    yi = np.clip(np.rint(np.asarray(stars["y"])).astype(int), 0, img.shape[0] - 1)
    snr = np.asarray(stars["flux"]) / (rms[yi, xi] * np.sqrt(np.maximum(np.asarray(stars["npix"]), 1.0)))
    if saturation is None:
        top = np.nanmax(work)
        saturation = top if np.count_nonzero(work >= top) >= 5 else np.inf
    from scipy.ndimage import maximum_filter

    local_max = maximum_filter(work, size=3)[yi, xi]
    stars = Table(
        {
            "x": stars["x"],
            "y": stars["y"],
            "flux": stars["flux"],
            "peak": stars["peak"],
            "snr": snr,
            "fwhm": stars["fwhm"],
            "eccentricity": stars["eccentricity"],
            "roundness": stars["roundness"],
            "roundness2": stars["roundness2"],
            "sharpness": stars["sharpness"],
            "saturated": local_max >= float(saturation),
        }
    )
    if max_stars is not None:
        stars = stars[: int(max_stars)]
    stars["x"].unit = stars["y"].unit = stars["fwhm"].unit = u.pix
    ref = stars[~stars["saturated"]] if np.count_nonzero(~stars["saturated"]) >= 3 else stars
    med_fwhm = float(np.nanmedian(ref["fwhm"])) if len(ref) else None
    metrics = {
        "n_stars": len(stars),
        "n_rejected": n_rejected,
        "median_fwhm_px": med_fwhm,
        "median_fwhm_arcsec": (med_fwhm * float(pixel_scale))
        if (med_fwhm is not None and pixel_scale)
        else None,
        "median_eccentricity": float(np.nanmedian(ref["eccentricity"])) if len(ref) else None,
        "background": float(np.median(bkg)),
        "background_rms": float(np.median(rms)),
    }
    return stars, metrics


# ============================================================================================
# hints from FITS headers


def _parse_angle(value, unit) -> float:
    """Degrees from a number (degrees) or a sexagesimal string in ``unit`` (hourangle for RA)."""
    if isinstance(value, (int, float, np.floating, np.integer)):
        return float(value)
    s = str(value).strip()
    try:
        return float(s)
    except ValueError:
        return float(Angle(s.replace(" ", ":") if " " in s and ":" not in s else s, unit=unit).deg)


def _parse_ra(value) -> float:
    """RA in degrees from a number (degrees) or a sexagesimal string (hours)."""
    return _parse_angle(value, u.hourangle)


def _parse_dec(value) -> float:
    """Dec in degrees from a number or a sexagesimal string (degrees)."""
    return _parse_angle(value, u.deg)


def hints_from_header(header) -> dict:
    """Position and pixel-scale hints for `plate_solve` from a FITS header.

    Position, first found wins: ``CRVAL1``/``CRVAL2`` (when ``CTYPE1`` is RA-like or absent),
    ``RA``/``DEC`` (numbers in degrees, strings sexagesimal: RA in hours, Dec in degrees),
    ``OBJCTRA``/``OBJCTDEC`` (sexagesimal, RA in hours). Pixel scale: 206.265 * pixel size (um)
    / ``FOCALLEN`` (mm), pixel size from ``XPIXSZ``/``YPIXSZ`` (already binned, SBIG/MaxIm/INDI
    convention; the geometric mean of x and y) or ``PIXSIZE1``/``PIXSIZE2`` times
    ``XBINNING``/``YBINNING``; else ``SCALE``, ``PIXSCALE`` or ``SECPIX1`` (arcsec/px).

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping

    Returns
    -------
    dict
        Only the keys found: ``ra_hint``, ``dec_hint`` (deg), ``pixel_scale_arcsec``,
        ``scale_low``/``scale_high`` (+-10 %, arcsec/px) and ``scale_units``
        (``'arcsecperpix'``), and ``sources`` naming the keywords used. Pass it as
        ``plate_solve(..., hints=...)``.
    """
    h = header
    out: dict = {}
    sources: dict = {}

    def get(key):
        try:
            v = h.get(key)
        except Exception:  # noqa: BLE001  (odd header objects)
            return None
        return None if v is None or (isinstance(v, str) and not v.strip()) else v

    ctype = str(get("CTYPE1") or "RA")
    pairs = []
    if ctype.upper().startswith("RA"):
        pairs.append(("CRVAL1", "CRVAL2"))
    pairs += [("RA", "DEC"), ("OBJCTRA", "OBJCTDEC")]
    for kra, kdec in pairs:
        vra, vdec = get(kra), get(kdec)
        if vra is None or vdec is None:
            continue
        try:
            if kra == "OBJCTRA":
                ra = float(Angle(str(vra).strip().replace(" ", ":"), unit=u.hourangle).deg)
                dec = float(Angle(str(vdec).strip().replace(" ", ":"), unit=u.deg).deg)
            else:
                ra, dec = _parse_ra(vra), _parse_dec(vdec)
        except (ValueError, TypeError):
            continue
        if 0 <= ra < 360 and -90 <= dec <= 90:
            out["ra_hint"], out["dec_hint"] = ra % 360.0, dec
            sources["position"] = f"{kra}/{kdec}"
            break

    scale = None
    focal = get("FOCALLEN")
    try:
        focal = float(focal) if focal is not None else None
    except (TypeError, ValueError):
        focal = None
    if focal and focal > 0:
        px, py = get("XPIXSZ"), get("YPIXSZ")
        binned = True
        if px is None:
            px, py, binned = get("PIXSIZE1"), get("PIXSIZE2"), False
        try:
            if px is not None:
                px = float(px)
                py = float(py) if py is not None else px
                if not binned:
                    px *= float(get("XBINNING") or 1)
                    py *= float(get("YBINNING") or 1)
                scale = float(206.264806 * np.sqrt(px * py) / focal)
                sources["scale"] = "FOCALLEN+" + ("XPIXSZ" if binned else "PIXSIZE1*XBINNING")
        except (TypeError, ValueError):
            scale = None
    if scale is None:
        for key in ("SCALE", "PIXSCALE", "SECPIX1"):
            v = get(key)
            try:
                if v is not None and float(v) > 0:
                    scale, sources["scale"] = float(v), key
                    break
            except (TypeError, ValueError):
                continue
    if scale is not None and np.isfinite(scale) and scale > 0:
        out.update(
            pixel_scale_arcsec=float(scale),
            scale_low=0.9 * scale,
            scale_high=1.1 * scale,
            scale_units="arcsecperpix",
        )
    out["sources"] = sources
    return out


# ============================================================================================
# plate solving with astrometry.net


@dataclass
class SolveResult:
    """Outcome of `plate_solve`.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        Solved celestial WCS (TAN-SIP when astrometry.net tweaked the fit), 0-based pixels via
        the astropy API; ``pixel_shape`` set to ``(nx, ny)``.
    n_matched : int
        Catalogue (index) stars matched to image stars (rows of astrometry.net's corr file).
    rms_arcsec : float
        RMS sky separation of the matched pairs under ``wcs``.
    pixel_scale_arcsec : float
        Mean pixel scale, arcsec/px (sqrt of the CD determinant).
    ra_deg, dec_deg : float
        Sky position of the image centre pixel.
    field_width_arcmin, field_height_arcmin : float
        Field size along x and y.
    rotation_deg : float or None
        astrometry.net's "up is N degrees E of N".
    parity : str or None
        ``'pos'`` or ``'neg'`` (astrometry.net).
    solve_time_s : float
        Wall time of the whole call (detection excluded, index building included).
    index : str
        Index file that solved the field.
    path : str
        ``'stock'`` (installed index series) or ``'small-field'`` (index built around the hint).
    matches : astropy.table.Table
        ``x``, ``y`` (0-based), ``ra``, ``dec`` (index star), ``sep_arcsec``.
    log_odds : float or None
        astrometry.net's log-odds of the accepted match.
    attempts : list of str
        What was tried, in order, with outcome and duration.
    index_cache_hit : bool or None
        Small-field path: True when the field indexes came from the on-disk cache.
    """

    wcs: WCS
    n_matched: int
    rms_arcsec: float
    pixel_scale_arcsec: float
    ra_deg: float
    dec_deg: float
    field_width_arcmin: float
    field_height_arcmin: float
    rotation_deg: float | None
    parity: str | None
    solve_time_s: float
    index: str
    path: str
    matches: Table
    log_odds: float | None = None
    attempts: list = field(default_factory=list)
    index_cache_hit: bool | None = None

    @property
    def center(self) -> SkyCoord:
        """Image centre as a SkyCoord (ICRS)."""
        return SkyCoord(self.ra_deg * u.deg, self.dec_deg * u.deg, frame="icrs")


def _star_list(obj, image_shape, detect_kwargs, max_stars):
    """Return (x, y, flux) arrays (0-based, brightest first) and the image shape."""
    if isinstance(obj, Table):
        if not {"x", "y"} <= set(obj.colnames):
            raise ParamError("data_or_star_table", f"star table needs columns x, y (has {obj.colnames})")
        if image_shape is None:
            raise ParamError("image_shape", "required when a star table is given")
        t = obj
        flux = np.asarray(t["flux"], dtype=float) if "flux" in t.colnames else np.arange(len(t), 0, -1.0)
        x, y = np.asarray(t["x"], dtype=float), np.asarray(t["y"], dtype=float)
    else:
        img = np.asarray(obj)
        if img.ndim != 2:
            raise ParamError(
                "data_or_star_table", f"expected a 2-D image or a star Table, got shape {img.shape}"
            )
        image_shape = img.shape
        t, _ = detect_stars(img, **(detect_kwargs or {}))
        x, y, flux = (np.asarray(t[c], dtype=float) for c in ("x", "y", "flux"))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux)
    x, y, flux = x[ok], y[ok], flux[ok]
    order = np.argsort(-flux, kind="stable")[: int(max_stars)]
    return x[order], y[order], flux[order], (int(image_shape[0]), int(image_shape[1]))


def _scale_arcsec(value, units, nx):
    """Convert a solve-field scale bound to arcsec/px when possible (None otherwise)."""
    if value is None:
        return None
    units = (units or "arcsecperpix").lower()
    v = float(value)
    if units in ("arcsecperpix", "app"):
        return v
    if units in ("degwidth", "degw", "dw"):
        return v * 3600.0 / nx
    if units in ("arcminwidth", "amw", "aw"):
        return v * 60.0 / nx
    return None


def _n_sip_terms(degree):
    """SIP coefficients per axis for a polynomial degree (terms with 2 <= i + j <= degree)."""
    return 0 if not degree or degree < 2 else (degree + 1) * (degree + 2) // 2 - 3


def _min_pairs(degree):
    """Matched stars needed to fit a TAN(-SIP) WCS: half the parameter count plus 3."""
    return (6 + 2 * _n_sip_terms(degree)) // 2 + 3


def _position_args(ra_deg, dec_deg, radius_deg) -> list[str]:
    """solve-field's position hint: search only within ``radius_deg`` of (ra, dec)."""
    return ["--ra", f"{ra_deg:.6f}", "--dec", f"{dec_deg:.6f}", "--radius", f"{float(radius_deg):.4f}"]


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run(cmd, timeout_s, cwd=None):
    """Run a command in its own process group; kill the whole group on timeout.

    Returns ``(returncode or None on timeout, combined output)``.
    """
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=max(0.1, timeout_s))
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        return None, out or ""
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise


def _quad_bands(min_dim_arcmin, diag_arcmin):
    """build-astrometry-index preset scale numbers P whose quad band overlaps the field.

    Preset P builds quads of 2*sqrt(2)**P .. 2*sqrt(2)**(P+1) arcmin (astrometry.net presets).
    Quads from 0.1 of the field's smaller side to its diagonal are useful.
    """
    lo, hi = 0.1 * min_dim_arcmin, diag_arcmin
    bands = [p for p in range(0, 20) if 2 * np.sqrt(2) ** (p + 1) >= lo and 2 * np.sqrt(2) ** p <= hi]
    return bands or [0]


#: build-astrometry-index presets built for the small-field path: quads of 2 to 45 arcmin.
FIELD_BANDS = tuple(range(0, 9))


def build_field_indexes(
    ra_deg: float,
    dec_deg: float,
    radius_deg: float,
    *,
    bands: Sequence[int] = FIELD_BANDS,
    cache_dir=None,
    index_dirs=None,
    timeout_s: float = 60.0,
) -> tuple[dict, bool]:
    """Build (or fetch from cache) astrometry.net indexes for one small sky region.

    Tycho-2 stars around the (snapped) centre are read from the installed index files
    (`read_index_stars`) and written as a FITS table (RA, DEC, MAG) from which
    ``build-astrometry-index -P <band> -S MAG -E -I <id>`` builds one index per preset in
    ``bands`` (preset P holds quads of 2*sqrt(2)**P to 2*sqrt(2)**(P+1) arcmin; bands where the
    catalogue is too sparse to form quads are skipped). The set is cached under
    ``cache_dir/field-<hash>``: the centre is snapped to a 0.05 deg grid and the radius rounded
    up to 0.25 deg, so nearby hints and different scale hints reuse the same build.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Region centre (deg).
    radius_deg : float
        Minimum star cone radius (deg).
    bands : sequence of int, optional
        build-astrometry-index presets ``-P``; default `FIELD_BANDS` (0..8).
    cache_dir : path-like, optional
        Default `default_cache_dir`.
    index_dirs : sequence of path-like, optional
        Where the source Tycho-2 index files are.
    timeout_s : float
        Time bound for all builds together.

    Returns
    -------
    (dict, bool)
        ``{preset: index path}`` of the bands that could be built, and whether the set came
        from the cache.

    Raises
    ------
    PlateSolveError
        ``build-astrometry-index`` missing, too few catalogue stars, or no index could be built.
    """
    exe = shutil.which("build-astrometry-index")
    if exe is None:
        raise PlateSolveError(
            "build-astrometry-index not found on PATH; install the Debian package "
            "'astrometry.net' (apt-get install astrometry.net)"
        )
    ra0 = round(float(ra_deg) / 0.05) * 0.05 % 360.0
    dec0 = float(np.clip(round(float(dec_deg) / 0.05) * 0.05, -90, 90))
    rad = float(np.ceil((float(radius_deg) + 0.05) / 0.25) * 0.25)
    stars = read_index_stars((ra0, dec0), rad, index_dirs=index_dirs)
    src = stars.meta.get("index_file", "")
    bands = sorted(set(int(b) for b in bands))
    key = json.dumps(
        [2, src, os.path.getmtime(src) if src else 0, f"{ra0:.2f}", f"{dec0:.2f}", f"{rad:.2f}", bands]
    )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / f"field-{hashlib.sha1(key.encode()).hexdigest()[:16]}"

    def load(folder):
        info = json.loads((folder / "manifest.json").read_text())
        files = {int(k): folder / v for k, v in info["indexes"].items()}
        return files if files and all(f.exists() for f in files.values()) else None

    if (final / "manifest.json").exists():
        files = load(final)
        if files:
            return files, True
    if len(stars) < 4:
        raise PlateSolveError(
            f"only {len(stars)} catalogue stars within {rad:.2f} deg of "
            f"({ra0:.2f}, {dec0:.2f}); cannot build a field index"
        )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        Table(
            {
                "RA": np.asarray(stars["ra"]),
                "DEC": np.asarray(stars["dec"]),
                "MAG": np.asarray(stars["mag"], dtype=np.float32),
            }
        ).write(tmp / "stars.fits", format="fits")
        deadline = time.monotonic() + timeout_s
        built, logs = {}, []
        for p in bands:
            name = f"index-starloom-{p:02d}.fits"
            rc, out = _run(
                [exe, "-i", "stars.fits", "-o", name, "-P", p, "-S", "MAG", "-E", "-I", 7000 + p],
                deadline - time.monotonic(),
                cwd=tmp,
            )
            if rc == 0 and (tmp / name).exists():
                built[p] = name
            else:
                last = out.strip().splitlines()[-1] if out.strip() else f"rc={rc}"
                logs.append(f"P={p}: " + ("timed out" if rc is None else last))
        if not built:
            raise PlateSolveError(
                "build-astrometry-index built no index for the field "
                f"({len(stars)} stars): " + "; ".join(logs)
            )
        (tmp / "manifest.json").write_text(
            json.dumps(
                {
                    "indexes": {str(k): v for k, v in built.items()},
                    "n_stars": len(stars),
                    "center": [ra0, dec0],
                    "radius_deg": rad,
                    "skipped": logs,
                }
            )
        )
        try:
            os.replace(tmp, final)
        except OSError:  # another process built it meanwhile: use theirs when complete
            files = load(final) if (final / "manifest.json").exists() else None
            if files:
                shutil.rmtree(tmp, ignore_errors=True)
                return files, True
            return {k: tmp / v for k, v in built.items()}, False
        return {k: final / v for k, v in built.items()}, False
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_solution(workdir: Path, log: str, shape):
    """Build the WCS and the matched-star table from solve-field's outputs."""
    ny, nx = shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        hdr = fits.getheader(workdir / "field.wcs", 0)
        wcs = WCS(hdr, relax=True)
    wcs.pixel_shape = (nx, ny)
    corr_path = workdir / "field.corr"
    if corr_path.exists():
        corr = fits.getdata(corr_path, 1)
        x = np.asarray(corr["field_x"], dtype=float) - 1.0  # astrometry.net is 1-based
        y = np.asarray(corr["field_y"], dtype=float) - 1.0
        ra = np.asarray(corr["index_ra"], dtype=float)
        dec = np.asarray(corr["index_dec"], dtype=float)
    else:
        x = y = ra = dec = np.zeros(0)
    sky = wcs.pixel_to_world(x, y)
    sep = sky.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec if len(x) else np.zeros(0)
    matches = Table({"x": x, "y": y, "ra": ra, "dec": dec, "sep_arcsec": sep})
    m = re.search(r"solved with index (\S+?)\.?$", log, re.M)
    lo = re.findall(r"log-odds ratio ([-\d.eE+]+)", log)
    rot = re.search(r"up is ([-\d.]+) degrees E of N", log)
    par = re.search(r"Field parity: (\w+)", log)
    return (
        wcs,
        matches,
        (m.group(1) if m else "?"),
        (float(lo[-1]) if lo else None),
        (float(rot.group(1)) if rot else None),
        (par.group(1) if par else None),
    )


def plate_solve(
    data_or_star_table,
    *,
    image_shape=None,
    ra_hint=None,
    dec_hint=None,
    radius_deg: float | None = None,
    scale_low: float | None = None,
    scale_high: float | None = None,
    scale_units: str = "arcsecperpix",
    index_dirs: Sequence[str | os.PathLike] | None = None,
    timeout_s: float = 60,
    small_field: bool = True,
    cache_dir=None,
    hints: Mapping | None = None,
    max_stars: int = 300,
    tweak_order: int = 2,
    detect_kwargs: Mapping | None = None,
    odds_to_solve: float | None = None,
    min_matched: int = 5,
) -> SolveResult:
    """Plate-solve an image or a star list offline with astrometry.net's ``solve-field``.

    The stars (detected with `detect_stars` when an image is given) are written as an xylist
    (FITS table X, Y, FLUX in astrometry.net's 1-based pixels, brightest first) and solved with
    ``solve-field --no-plots --overwrite --crpix-center --tweak-order <n> --cpulimit <t>`` using
    the installed index files (Debian ``astrometry-data-tycho2``, series 4107-4119) or
    ``index_dirs``. With a position hint and a field narrower than ~30 arcmin (the stock
    Tycho-2 indexes hold no quads that small), the small-field path builds indexes from the
    Tycho-2 stars around the hint (`build_field_indexes`, cached on disk) and solves with them
    (``--odds-to-solve 1e6``, as the catalogue is sparse). When the field size is unknown both
    paths are tried, stock first. The whole call is bounded by ``timeout_s``: solver processes
    are killed (whole process group) when it runs out.

    Parameters
    ----------
    data_or_star_table : array_like (ny, nx) or astropy.table.Table
        Image, or a star table with ``x``, ``y`` (0-based) and preferably ``flux``.
    image_shape : (int, int), optional
        ``(ny, nx)``; required with a star table.
    ra_hint, dec_hint : float or str, optional
        Approximate field centre: degrees, or sexagesimal strings (RA in hours).
    radius_deg : float, optional
        Search radius around the hint: default 2 deg (stock path) and 1 deg (small-field path,
        where the built index covers this radius plus the field's half diagonal).
    scale_low, scale_high : float, optional
        Pixel-scale (or field-width) bounds in ``scale_units``.
    scale_units : str, optional
        solve-field units: ``'arcsecperpix'`` (default), ``'degwidth'``, ``'arcminwidth'``,
        ``'focalmm'``.
    index_dirs : sequence of path-like, optional
        Index directories (default `default_index_dirs`, i.e. ``/usr/share/astrometry``).
    timeout_s : float, optional
        Hard wall-time bound in seconds for all solver runs of this call.
    small_field : bool, optional
        Allow the small-field path (needs a position hint).
    cache_dir : path-like, optional
        Where small-field indexes are cached (default `default_cache_dir`).
    hints : mapping, optional
        Output of `hints_from_header`; fills hint/scale arguments left as None.
    max_stars : int, optional
        Brightest stars passed to the solver.
    tweak_order : int, optional
        SIP polynomial order of astrometry.net's tweak (0 disables SIP). When fewer stars are
        matched than a SIP fit of that order supports (9 for order 2, see `refine_wcs`), the
        matched pairs are refitted with ``fit_wcs_from_points`` at the highest supported degree
        or as pure TAN: a SIP tweak from a handful of stars extrapolates by tens of arcsec at
        the corners (measured on the Stargate frames, 8 matches).
    detect_kwargs : mapping, optional
        Passed to `detect_stars` when an image is given.
    odds_to_solve : float, optional
        Override astrometry.net's acceptance odds (default 1e9 stock, 1e6 small-field).
    min_matched : int, optional
        Solutions with fewer matched catalogue stars are rejected as unreliable.

    Returns
    -------
    SolveResult

    Raises
    ------
    PlateSolveError
        ``solve-field`` is not installed, no index files, too few stars, or no solution within
        ``timeout_s`` (the message lists every attempt and the bound).
    ParamError
        Bad arguments.
    """
    t_start = time.monotonic()
    hints = dict(hints or {})
    ra_hint = hints.get("ra_hint") if ra_hint is None else ra_hint
    dec_hint = hints.get("dec_hint") if dec_hint is None else dec_hint
    if scale_low is None and scale_high is None and "scale_low" in hints:
        scale_low, scale_high = hints.get("scale_low"), hints.get("scale_high")
        scale_units = hints.get("scale_units", scale_units)
    if (ra_hint is None) != (dec_hint is None):
        raise ParamError(
            "ra_hint" if ra_hint is None else "dec_hint", "give both ra_hint and dec_hint, or neither"
        )
    if ra_hint is not None:
        try:
            ra_hint, dec_hint = _parse_ra(ra_hint) % 360.0, _parse_dec(dec_hint)
        except (ValueError, TypeError) as exc:
            raise ParamError("ra_hint", f"cannot read the position hint ({exc})") from exc
    if not timeout_s or timeout_s <= 0:
        raise ParamError("timeout_s", f"must be > 0, got {timeout_s}")
    solver = shutil.which("solve-field")
    if solver is None:
        raise PlateSolveError(
            "solve-field not found on PATH; install astrometry.net "
            "(apt-get install astrometry.net astrometry-data-tycho2)"
        )

    x, y, flux, shape = _star_list(data_or_star_table, image_shape, detect_kwargs, max_stars)
    t_start = time.monotonic() if not isinstance(data_or_star_table, Table) else t_start
    ny, nx = shape
    if len(x) < 4:
        raise PlateSolveError(
            f"only {len(x)} stars available; plate solving needs at least 4 "
            "(lower threshold_sigma or check the image)"
        )
    s_lo = _scale_arcsec(scale_low, scale_units, nx)
    s_hi = _scale_arcsec(scale_high, scale_units, nx)
    if s_lo is not None and s_hi is None:
        s_hi = s_lo
    if s_hi is not None and s_lo is None:
        s_lo = s_hi
    # field width (arcmin) from the scale bounds: decides between the stock and small-field path
    if s_hi is None:
        is_small = None
    elif s_hi * max(nx, ny) / 60.0 < SMALL_FIELD_ARCMIN:
        is_small = True
    elif s_lo * max(nx, ny) / 60.0 >= SMALL_FIELD_ARCMIN:
        is_small = False
    else:
        is_small = None
    if ra_hint is None or not small_field or is_small is False:
        plan = ["stock"]
    else:
        plan = ["small-field", "stock"] if is_small else ["stock", "small-field"]
    stock = find_index_files(index_dirs)
    if not stock:  # both paths need them (the small-field path reads its stars from them)
        where = (
            ", ".join(map(str, index_dirs))
            if index_dirs
            else ", ".join(str(d) for d in (default_index_dirs() or ["/usr/share/astrometry"]))
        )
        raise PlateSolveError(
            f"no astrometry.net index files found in {where}; install the Debian "
            "package astrometry-data-tycho2 or pass index_dirs"
        )
    deadline = t_start + float(timeout_s)
    attempts: list[str] = []
    common_scale = []
    if scale_low is not None or scale_high is not None:
        lo = scale_low if scale_low is not None else scale_high
        hi = scale_high if scale_high is not None else scale_low
        common_scale = [
            "--scale-low",
            f"{float(lo):.6g}",
            "--scale-high",
            f"{float(hi):.6g}",
            "--scale-units",
            scale_units,
        ]

    with tempfile.TemporaryDirectory(prefix="starloom-solve-") as td:
        work = Path(td)
        Table(
            {
                "X": (x + 1.0).astype(np.float64),
                "Y": (y + 1.0).astype(np.float64),
                "FLUX": flux.astype(np.float64),
            }
        ).write(work / "field.xyls", format="fits")
        for kind in plan:
            left = deadline - time.monotonic()
            if left < 0.5:
                attempts.append(f"{kind}: skipped, time bound used up")
                continue
            t0 = time.monotonic()
            cache_hit = None
            if kind == "stock":
                indexes = stock
                extra = []
                if ra_hint is not None:
                    extra = _position_args(ra_hint, dec_hint,
                                           radius_deg if radius_deg is not None else 2.0)
                if odds_to_solve is not None:
                    extra += ["--odds-to-solve", f"{odds_to_solve:g}"]
            else:
                if s_lo is not None:
                    min_dim = s_lo * min(nx, ny) / 60.0
                    diag = s_hi * float(np.hypot(nx, ny)) / 60.0
                else:  # unknown scale: every band of a field narrower than SMALL_FIELD_ARCMIN
                    min_dim, diag = 2.0, SMALL_FIELD_ARCMIN * 1.25
                rad = float(radius_deg if radius_deg is not None else 1.0)
                try:
                    built, cache_hit = build_field_indexes(
                        ra_hint,
                        dec_hint,
                        rad + diag / 120.0,
                        cache_dir=cache_dir,
                        index_dirs=index_dirs,
                        timeout_s=left,
                    )
                except (PlateSolveError, CatalogError) as exc:
                    attempts.append(f"small-field: index build failed ({exc})")
                    continue
                indexes = [built[b] for b in _quad_bands(min_dim, diag) if b in built]
                if not indexes:
                    attempts.append(
                        f"small-field: no index of the needed quad sizes could be built "
                        f"(built presets {sorted(built)})"
                    )
                    continue
                extra = _position_args(ra_hint, dec_hint, rad) + [
                    "--odds-to-solve",
                    f"{(odds_to_solve or 1e6):g}",
                ]
            left = deadline - time.monotonic()
            if left < 0.5:
                attempts.append(f"{kind}: no time left after preparing indexes")
                continue
            cfg = work / f"{kind}.cfg"
            cfg.write_text(
                f"cpulimit {max(1, int(left))}\n" + "".join(f"index {Path(p).resolve()}\n" for p in indexes)
            )
            out_dir = work / kind
            out_dir.mkdir(exist_ok=True)
            cmd = [
                solver,
                work / "field.xyls",
                "--width",
                nx,
                "--height",
                ny,
                "--x-column",
                "X",
                "--y-column",
                "Y",
                "--sort-column",
                "FLUX",
                "--no-plots",
                "--overwrite",
                "--crpix-center",
                *(["--tweak-order", int(tweak_order)] if tweak_order else ["--no-tweak"]),
                "--cpulimit",
                max(1, int(left)),
                "--config",
                cfg,
                "--dir",
                out_dir,
                "--out",
                "field",
                "--new-fits",
                "none",
                "--index-xyls",
                "none",
                "--rdls",
                "none",
                "--match",
                "none",
                "--temp-dir",
                work,
                *common_scale,
                *extra,
            ]
            rc, log = _run(cmd, left, cwd=work)
            dt = time.monotonic() - t0
            if rc is None:
                attempts.append(f"{kind} ({len(indexes)} indexes): killed at the time bound after {dt:.1f} s")
                continue
            if not (out_dir / "field.solved").exists() or not (out_dir / "field.wcs").exists():
                tail = " ".join(log.strip().splitlines()[-1:]) if rc else "no solution"
                attempts.append(f"{kind} ({len(indexes)} indexes): no solution in {dt:.1f} s ({tail})")
                continue
            wcs, matches, index, log_odds, rot, parity = _read_solution(out_dir, log, shape)
            if len(matches) < min_matched:
                attempts.append(
                    f"{kind}: rejected a solution with only {len(matches)} matched stars "
                    f"(min_matched={min_matched})"
                )
                continue
            attempts.append(f"{kind} ({len(indexes)} indexes): solved with {index} in {dt:.1f} s")
            if wcs.sip is not None and len(matches) < _min_pairs(tweak_order):
                # too few matches for the SIP tweak (it extrapolates wildly at the corners):
                # refit the matched pairs with the highest SIP degree they support, else TAN
                degree = max(
                    [d for d in range(2, int(tweak_order) + 1) if len(matches) >= _min_pairs(d)] or [0]
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", (FITSFixedWarning, AstropyUserWarning))
                    wcs = fit_wcs_from_points(
                        (np.asarray(matches["x"]), np.asarray(matches["y"])),
                        SkyCoord(matches["ra"] * u.deg, matches["dec"] * u.deg),
                        projection="TAN",
                        sip_degree=degree or None,
                    )
                wcs.pixel_shape = (nx, ny)
                sky = wcs.pixel_to_world(np.asarray(matches["x"]), np.asarray(matches["y"]))
                matches["sep_arcsec"] = sky.separation(
                    SkyCoord(matches["ra"] * u.deg, matches["dec"] * u.deg)
                ).arcsec
                attempts.append(
                    f"SIP order {tweak_order} needs >= {_min_pairs(tweak_order)} matches, got "
                    f"{len(matches)}: refitted the matches as "
                    + (f"TAN-SIP degree {degree}" if degree else "TAN")
                )
            scales = proj_plane_pixel_scales(wcs.celestial) * 3600.0
            center = wcs.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
            rms = float(np.sqrt(np.mean(matches["sep_arcsec"] ** 2))) if len(matches) else float("nan")
            return SolveResult(
                wcs=wcs,
                n_matched=len(matches),
                rms_arcsec=rms,
                pixel_scale_arcsec=float(np.sqrt(scales[0] * scales[1])),
                ra_deg=float(center.icrs.ra.deg),
                dec_deg=float(center.icrs.dec.deg),
                field_width_arcmin=float(nx * scales[0] / 60.0),
                field_height_arcmin=float(ny * scales[1] / 60.0),
                rotation_deg=rot,
                parity=parity,
                solve_time_s=time.monotonic() - t_start,
                index=index,
                path=kind,
                matches=matches,
                log_odds=log_odds,
                attempts=attempts,
                index_cache_hit=cache_hit,
            )
    hint = (
        f"hint RA {ra_hint:.4f}, Dec {dec_hint:.4f} deg"
        if ra_hint is not None
        else "no position hint (blind)"
    )
    scale_txt = f"scale {s_lo:.3g}-{s_hi:.3g} arcsec/px" if s_lo else "no scale hint"
    raise PlateSolveError(
        f"no plate solution within the time bound of {float(timeout_s):g} s (used "
        f"{time.monotonic() - t_start:.1f} s; {len(x)} stars, "
        f"{nx}x{ny} px, {hint}, {scale_txt}). Tried: "
        + "; ".join(attempts)
        + ". Give a position hint (RA/Dec) and pixel scale, raise timeout_s, or check the star list."
    )


# ============================================================================================
# WCS refinement against a catalogue


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
    need = int(min_matches) if min_matches is not None else _min_pairs(degree)
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


# ============================================================================================
# reprojection and co-addition


def _wcs_shape(item):
    a, b = item
    if isinstance(a, WCS) or hasattr(a, "pixel_to_world"):
        return a, tuple(np.shape(b)) if isinstance(b, np.ndarray) else tuple(b)
    return b, tuple(np.shape(a)) if isinstance(a, np.ndarray) else tuple(a)


def optimal_wcs(
    wcs_shape_pairs,
    *,
    resolution_arcsec: float | None = None,
    projection: str = "TAN",
    auto_rotate: bool = False,
) -> tuple[WCS, tuple[int, int]]:
    """Output WCS and shape covering all inputs (``reproject.mosaicking.find_optimal_celestial_wcs``).

    Parameters
    ----------
    wcs_shape_pairs : iterable of (WCS, shape) or (WCS, array)
        Input frames; ``shape`` is ``(ny, nx)``. The order inside a pair may also be reversed.
    resolution_arcsec : float, optional
        Output pixel size; default the finest input resolution.
    projection : str, optional
        Three-letter projection code.
    auto_rotate : bool, optional
        Rotate to minimise the area (needs shapely).

    Returns
    -------
    (astropy.wcs.WCS, (int, int))
        Output WCS and shape ``(ny, nx)``.
    """
    from reproject.mosaicking import find_optimal_celestial_wcs

    items = [(_wcs_shape(p)[1], _wcs_shape(p)[0]) for p in wcs_shape_pairs]
    if not items:
        raise ParamError("wcs_shape_pairs", "at least one (wcs, shape) pair is needed")
    kw = {"resolution": resolution_arcsec * u.arcsec} if resolution_arcsec else {}
    w, shape = find_optimal_celestial_wcs(items, projection=projection, auto_rotate=auto_rotate, **kw)
    return w, (int(shape[0]), int(shape[1]))


_METHODS = ("interp", "adaptive", "exact")


def _reproject_fn(method, order):
    from reproject import reproject_adaptive, reproject_exact, reproject_interp

    if method == "interp":
        return lambda inp, w, s: reproject_interp(inp, w, shape_out=s, order=order)
    if method == "adaptive":
        return lambda inp, w, s: reproject_adaptive(inp, w, shape_out=s, conserve_flux=False)
    if method == "exact":
        return lambda inp, w, s: reproject_exact(inp, w, shape_out=s)
    raise ParamError("method", f"unknown reprojection method {method!r}; choose one of {', '.join(_METHODS)}")


def reproject_frames(
    frames,
    wcs_out: WCS,
    shape_out,
    *,
    method: str = "interp",
    order: str = "bilinear",
    rows: slice | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reproject frames onto one output grid with the ``reproject`` package.

    Parameters
    ----------
    frames : sequence of (array (ny, nx), WCS)
        Input images and their celestial WCS.
    wcs_out : astropy.wcs.WCS
        Output WCS (e.g. from `optimal_wcs`).
    shape_out : (int, int)
        Output shape ``(ny, nx)``.
    method : {'interp', 'adaptive', 'exact'}
        ``reproject_interp`` (fast; ``order`` applies), ``reproject_adaptive`` (anti-aliased,
        DeForest 2004) or ``reproject_exact`` (spherical-polygon overlap, flux conserving).
    order : str, optional
        Interpolation order for ``'interp'``.
    rows : slice, optional
        Only these output rows (for band-wise processing).

    Returns
    -------
    stack : numpy.ndarray, shape (n, ny_rows, nx), float32
        Reprojected frames, NaN where a frame does not cover.
    footprint : numpy.ndarray, shape (n, ny_rows, nx), float32
        Fractional coverage of each output pixel by each frame (0..1).
    """
    fn = _reproject_fn(method, order)
    ny, nx = int(shape_out[0]), int(shape_out[1])
    if rows is not None:
        r0, r1, _ = rows.indices(ny)
        w = wcs_out.slice((slice(r0, r1), slice(None)))
        shape = (r1 - r0, nx)
    else:
        w, shape = wcs_out, (ny, nx)
    stack = np.full((len(frames),) + shape, np.nan, dtype=np.float32)
    foot = np.zeros((len(frames),) + shape, dtype=np.float32)
    for i, item in enumerate(frames):
        data, fw = item
        if not isinstance(fw, WCS) and isinstance(data, WCS):
            data, fw = fw, data
        arr, fp = fn((np.asarray(data, dtype=np.float64), fw), w, shape)
        stack[i] = np.where(fp > 0, arr, np.nan)
        foot[i] = fp
    return stack, foot


@dataclass
class CoaddResult:
    """Output of `coadd`.

    Attributes
    ----------
    data : numpy.ndarray (ny, nx) float32
        Combined image, NaN where no frame contributes.
    coverage : numpy.ndarray (ny, nx) float32
        Sum of the input footprints (effective number of frames covering each pixel).
    n_used : numpy.ndarray (ny, nx) int16
        Samples kept per pixel after rejection.
    wcs : astropy.wcs.WCS
    shape : (int, int)
    n_rejected : int
        Samples removed by the rejection.
    """

    data: np.ndarray
    coverage: np.ndarray
    n_used: np.ndarray
    wcs: WCS
    shape: tuple
    n_rejected: int = 0


def coadd(
    frames,
    wcs_out: WCS | None = None,
    shape_out=None,
    *,
    method: str = "interp",
    combine: str = "mean",
    reject: str | None = None,
    sigma: float = 3.0,
    maxiters: int = 5,
    weights: Sequence[float] | None = None,
    band_rows: int = 128,
    order: str = "bilinear",
) -> CoaddResult:
    """Reproject frames to a common grid and combine them, band by band.

    Output rows are processed in bands of ``band_rows`` so that only ``n_frames x band_rows x
    nx`` pixels are held at once (about 10 MB for ten 752x581 frames). Within a band the frames
    are reprojected (`reproject_frames`), optionally sigma-clipped across the stack
    (``astropy.stats.sigma_clip``, median centre, std spread, per output pixel) and combined.

    Parameters
    ----------
    frames : sequence of (array (ny, nx), WCS)
    wcs_out, shape_out : astropy.wcs.WCS, (int, int), optional
        Output grid; default `optimal_wcs` of the inputs.
    method : {'interp', 'adaptive', 'exact'}
        Reprojection method (see `reproject_frames`).
    combine : {'mean', 'median', 'sum'}
        Combination of the kept samples (``'mean'`` honours ``weights``; ``'sum'`` is the mean
        times the number of frames covering, i.e. a coverage-corrected sum).
    reject : {None, 'sigma_clip'}
        Outlier rejection across the stack.
    sigma, maxiters : float, int
        Sigma-clipping parameters.
    weights : sequence of float, optional
        Per-frame weights for ``'mean'``.
    band_rows : int, optional
        Output rows per band.
    order : str, optional
        Interpolation order for ``method='interp'``.

    Returns
    -------
    CoaddResult

    Raises
    ------
    ParamError
        Unknown method/combine/reject, or weights of the wrong length.
    """
    from astropy.stats import sigma_clip

    if method not in _METHODS:
        raise ParamError(
            "method", f"unknown reprojection method {method!r}; choose one of {', '.join(_METHODS)}"
        )
    if combine not in ("mean", "median", "sum"):
        raise ParamError("combine", f"unknown combine {combine!r}; choose mean, median or sum")
    if reject not in (None, "none", "sigma_clip"):
        raise ParamError("reject", f"unknown rejection {reject!r}; choose None or 'sigma_clip'")
    frames = list(frames)
    if not frames:
        raise ParamError("frames", "no frames to co-add")
    if wcs_out is None or shape_out is None:
        pairs = []
        for item in frames:
            d, w = item if isinstance(item[1], WCS) else (item[1], item[0])
            pairs.append((w, np.shape(d)))
        wcs_out, shape_out = optimal_wcs(pairs)
    ny, nx = int(shape_out[0]), int(shape_out[1])
    wts = None
    if weights is not None:
        wts = np.asarray(weights, dtype=np.float64)
        if wts.shape != (len(frames),):
            raise ParamError("weights", f"expected {len(frames)} weights, got {wts.shape}")
    out = np.full((ny, nx), np.nan, dtype=np.float32)
    cov = np.zeros((ny, nx), dtype=np.float32)
    used = np.zeros((ny, nx), dtype=np.int16)
    n_rej = 0
    step = max(1, int(band_rows))
    for r0 in range(0, ny, step):
        r1 = min(ny, r0 + step)
        stack, foot = reproject_frames(
            frames, wcs_out, (ny, nx), method=method, order=order, rows=slice(r0, r1)
        )
        cov[r0:r1] = foot.sum(axis=0)
        valid = np.isfinite(stack)
        if reject == "sigma_clip" and len(frames) >= 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", (AstropyUserWarning, RuntimeWarning))
                clipped = sigma_clip(
                    stack,
                    sigma=sigma,
                    maxiters=maxiters,
                    axis=0,
                    masked=True,
                    cenfunc="median",
                    stdfunc="mad_std",
                )
            keep = ~np.ma.getmaskarray(clipped)
            n_rej += int(np.count_nonzero(valid & ~keep))
            valid &= keep
        n = valid.sum(axis=0)
        used[r0:r1] = n
        vals = np.where(valid, stack, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if combine == "median":
                band = np.nanmedian(vals, axis=0)
            else:
                w = (wts[:, None, None] if wts is not None else np.ones((len(frames), 1, 1))) * valid
                band = np.nansum(np.where(valid, stack, 0.0) * w, axis=0) / w.sum(axis=0)
                if combine == "sum":
                    band = band * cov[r0:r1]
        band[n == 0] = np.nan
        out[r0:r1] = band
    return CoaddResult(data=out, coverage=cov, n_used=used, wcs=wcs_out, shape=(ny, nx), n_rejected=n_rej)


# ============================================================================================
# plots (matplotlib, Agg, WCSAxes)


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def plot_annotated(
    path,
    data,
    wcs: WCS,
    stars: Table | None = None,
    catalog: Table | None = None,
    *,
    title: str | None = None,
    max_catalog: int = 300,
    percent: float = 99.5,
    dpi: int = 100,
    label_mag: float | None = None,
):
    """Save a stretched image with a celestial grid, detected stars and catalogue stars.

    Uses astropy's WCSAxes (``projection=wcs``) on a matplotlib Agg figure and an
    ``ImageNormalize`` with a percentile interval and an asinh stretch.

    Parameters
    ----------
    path : path-like
        Output file (format from the suffix: png, pdf, svg, ...).
    data : array_like (ny, nx)
        Image.
    wcs : astropy.wcs.WCS
        Celestial WCS of ``data``.
    stars : astropy.table.Table, optional
        Detected stars (``x``, ``y`` 0-based): green circles of radius 1.5 FWHM (3..30 px).
    catalog : astropy.table.Table, optional
        Catalogue stars (``ra``, ``dec``, optional ``mag``): red crosses, the brightest
        ``max_catalog`` inside the image.
    title : str, optional
    max_catalog : int, optional
    percent : float, optional
        Percentile interval of the display stretch.
    dpi : int, optional
    label_mag : float, optional
        Write the magnitude next to catalogue stars brighter than this.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval

    img = np.asarray(data, dtype=float)
    ny, nx = img.shape
    fig = _figure((8.0, 8.0 * ny / nx + 0.6))
    ax = fig.add_subplot(1, 1, 1, projection=wcs.celestial)
    finite = img[np.isfinite(img)]
    norm = ImageNormalize(
        finite if finite.size else np.zeros(1),
        interval=PercentileInterval(percent),
        stretch=AsinhStretch(0.1),
    )
    ax.imshow(img, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
    ax.coords.grid(True, color="cyan", alpha=0.45, linestyle=":")
    ax.coords[0].set_axislabel("RA")
    ax.coords[1].set_axislabel("Dec")
    handles = []
    if stars is not None and len(stars):
        from matplotlib.collections import PatchCollection
        from matplotlib.lines import Line2D
        from matplotlib.patches import Circle

        size = (
            np.asarray(stars["fwhm"], dtype=float) if "fwhm" in stars.colnames else np.full(len(stars), 3.0)
        )
        radius = np.clip(np.where(np.isfinite(size), 1.5 * size, 4.5), 3.0, 30.0)
        circles = [
            Circle((float(a), float(b)), float(r))
            for a, b, r in zip(stars["x"], stars["y"], radius, strict=True)
        ]
        ax.add_collection(PatchCollection(circles, facecolors="none", edgecolors="lime", linewidths=0.8))
        handles.append(
            Line2D([], [], marker="o", ls="none", mfc="none", mec="lime", label=f"detected ({len(stars)})")
        )
    if catalog is not None and len(catalog):
        sky = SkyCoord(np.asarray(catalog["ra"]) * u.deg, np.asarray(catalog["dec"]) * u.deg)
        px, py = wcs.world_to_pixel(sky)
        inside = (
            np.isfinite(px) & np.isfinite(py) & (px > -0.5) & (px < nx - 0.5) & (py > -0.5) & (py < ny - 0.5)
        )
        idx = np.nonzero(inside)[0][:max_catalog]
        h = ax.scatter(
            px[idx], py[idx], marker="+", s=60, c="red", linewidths=0.9, label=f"catalogue ({len(idx)})"
        )
        handles.append(h)
        if label_mag is not None and "mag" in catalog.colnames:
            for i in idx:
                m = float(catalog["mag"][i])
                if np.isfinite(m) and m <= label_mag:
                    ax.text(px[i] + 6, py[i] + 6, f"{m:.1f}", color="orange", fontsize=7)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.6)
    if title:
        ax.set_title(title)
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_residuals(
    path, residual_table: Table, *, image_shape=None, title: str | None = None, dpi: int = 100
):
    """Save an astrometric residual plot: vector map over the image and residual histogram.

    Parameters
    ----------
    path : path-like
        Output file.
    residual_table : astropy.table.Table
        From `refine_wcs`: ``x``, ``y``, ``dx_px``, ``dy_px``, ``total_arcsec``.
    image_shape : (int, int), optional
        ``(ny, nx)`` for the axis limits.
    title : str, optional
    dpi : int, optional

    Returns
    -------
    pathlib.Path
    """
    t = residual_table
    x, y = np.asarray(t["x"], dtype=float), np.asarray(t["y"], dtype=float)
    dx, dy = np.asarray(t["dx_px"], dtype=float), np.asarray(t["dy_px"], dtype=float)
    tot = np.asarray(t["total_arcsec"], dtype=float)
    fig = _figure((12.0, 5.0))
    ax = fig.add_subplot(1, 2, 1)
    if image_shape is not None:
        ny, nx = image_shape
    else:
        nx, ny = (x.max() + 1 if len(x) else 1), (y.max() + 1 if len(y) else 1)
    length = np.hypot(dx, dy)
    ref = float(np.nanmedian(length)) if len(length) and np.nanmedian(length) > 0 else 1.0
    gain = 0.08 * max(nx, ny) / ref  # median arrow = 8 % of the image size
    q = ax.quiver(
        x, y, dx * gain, dy * gain, tot, angles="xy", scale_units="xy", scale=1, cmap="viridis", width=0.004
    )
    # key below the x-axis label, so that neither overlaps
    ax.quiverkey(q, 0.80, -0.25, ref * gain, f"{ref:.2f} px (median)", labelpos="W", coordinates="axes")
    fig.colorbar(q, ax=ax, label="residual (arcsec)")
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_title(f"catalogue minus detected (arrows x{gain:.0f})", fontsize=10)
    ax2 = fig.add_subplot(1, 2, 2)
    if len(tot):
        ax2.hist(tot, bins=max(5, min(40, len(tot) // 2)), color="steelblue")
        rms = float(np.sqrt(np.mean(tot**2)))
        ax2.axvline(rms, color="red", label=f'rms {rms:.2f}"')
        ax2.legend()
    ax2.set_xlabel("residual (arcsec)")
    ax2.set_ylabel("stars")
    fig.suptitle(title or f"astrometric residuals, {len(t)} stars")
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
