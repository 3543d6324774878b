"""Star detection: photutils background and DAOStarFinder, with adaptive-moment FWHM.

DAOFIND (Stetson 1987, PASP 99, 191) via photutils ``DAOStarFinder``; pixel coordinates are
0-based, images ``(ny, nx)``.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy import units as u
from astropy.table import Table, vstack
from astropy.utils.exceptions import AstropyUserWarning

from .errors import ParamError




def adaptive_moments(img, x, y, fwhm0, valid_mask=None, niter=8):
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
            adaptive_moments(img, x[i : i + chunk], y[i : i + chunk], fwhm0, valid_mask, niter)
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
    xw, yw, fw, ecc = adaptive_moments(sub, x_dao, y_dao, float(fwhm), valid_mask=~bad)
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
    bad, work = _checked_image(data, fwhm, threshold_sigma, mask)
    if box_size is None:
        box_size = int(np.clip(min(work.shape) // 10, 16, 128))
    bkg, rms = _background(work, bad if bad.any() else None, box_size)
    # a zero rms (constant or clipped boxes) would make every pixel above it a detection
    rms = np.where(rms > 0, rms, np.nanmedian(rms[rms > 0]) if (rms > 0).any() else 1.0)
    fwhm_bounds = fwhm_range if fwhm_range is not None else (max(0.8, 0.4 * fwhm), 6.0 * fwhm)
    stars, n_found = _find_stars(
        work - bkg, threshold_sigma * rms, bad, fwhm, fwhm_bounds, sharpness_range, roundness_range,
        large_stars,
    )
    if len(stars) == 0:
        empty = Table({n: np.zeros(0, dtype=bool if n == "saturated" else float) for n in _COLUMNS})
        return empty, _metrics(empty, n_found, pixel_scale, bkg, rms)
    stars.sort("flux", reverse=True)
    stars = _merge_split_peaks(stars, fwhm)
    n_rejected = n_found - len(stars)
    stars = _output_table(stars, work, rms, saturation)
    if max_stars is not None:
        stars = stars[: int(max_stars)]
    stars["x"].unit = stars["y"].unit = stars["fwhm"].unit = u.pix
    return stars, _metrics(stars, n_rejected, pixel_scale, bkg, rms)


#: Columns of `detect_stars`' table, in order.
_COLUMNS = (
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


def _checked_image(data, fwhm, threshold_sigma, mask):
    """Check `detect_stars`' arguments; return the bad-pixel mask and the working image.

    Bad pixels (non-finite or masked) are set to the median of the good ones in the working
    image (float64), so that they neither disturb the background nor look like stars.
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
    return bad, work


def _find_stars(sub, thr, bad, fwhm, fwhm_bounds, sharpness_range, roundness_range, large_stars):
    """DAOFIND detections within ``fwhm_bounds``, with the big stars of a wider pass.

    Returns ``(stars, n_found)``: the measured stars (unsorted) and the number of DAOFIND
    peaks of both passes.
    """
    lo, hi = fwhm_bounds
    stars = _dao_measure(sub, thr, bad, float(fwhm), sharpness_range, roundness_range, 2.0)
    n_found = len(stars)
    stars = stars[np.isfinite(stars["fwhm"]) & (stars["fwhm"] >= lo) & (stars["fwhm"] <= hi)]
    if not large_stars:
        return stars, n_found
    # second DAOFIND pass with a 3x wider kernel: centres of big (saturated, haloed) stars,
    # on which the first pass finds off-centre peaks or nothing
    big = _dao_measure(sub, thr, bad, 3.0 * fwhm, (0.0, 1.0), (-2.0, 2.0), float(fwhm))
    big = big[np.isfinite(big["fwhm"]) & (big["fwhm"] >= 2.0 * fwhm) & (big["fwhm"] <= 20.0 * fwhm)]
    n_found += len(big)
    if len(big) and len(stars):
        from scipy.spatial import cKDTree  # imported where used: keeps `starloom nodes` fast

        tree = cKDTree(np.c_[stars["x"], stars["y"]])
        covered = np.zeros(len(stars), dtype=bool)
        radii = np.maximum(np.asarray(big["fwhm"]), 2.0 * fwhm)
        for hits in tree.query_ball_point(np.c_[big["x"], big["y"]], radii):
            covered[hits] = True
        stars = stars[~covered]
    if len(big):
        stars = vstack([stars, big]) if len(stars) else big
    return stars, n_found


def _merge_split_peaks(stars, fwhm):
    """Keep the brightest of the detections within max(fwhm, FWHM/2) of a brighter one.

    DAOFIND splits large (saturated, flat-topped) stars into several peaks. ``stars`` must be
    sorted by flux, brightest first.
    """
    xy = np.c_[stars["x"], stars["y"]]
    from scipy.spatial import cKDTree  # imported where used: keeps `starloom nodes` fast

    tree = cKDTree(xy)
    radii = np.maximum(float(fwhm), 0.5 * np.nan_to_num(np.asarray(stars["fwhm"], dtype=float)))
    alive = np.ones(len(stars), dtype=bool)
    for i, hits in enumerate(tree.query_ball_point(xy, radii)):
        if alive[i]:
            later = [j for j in hits if j > i]
            alive[later] = False
    return stars[alive]


def _output_table(stars, work, rms, saturation):
    """The `detect_stars` table: the measurements plus ``snr`` and the ``saturated`` flag."""
    from scipy.ndimage import maximum_filter

    xi = np.clip(np.rint(np.asarray(stars["x"])).astype(int), 0, work.shape[1] - 1)
    yi = np.clip(np.rint(np.asarray(stars["y"])).astype(int), 0, work.shape[0] - 1)
    snr = np.asarray(stars["flux"]) / (rms[yi, xi] * np.sqrt(np.maximum(np.asarray(stars["npix"]), 1.0)))
    if saturation is None:
        top = np.nanmax(work)
        saturation = top if np.count_nonzero(work >= top) >= 5 else np.inf
    local_max = maximum_filter(work, size=3)[yi, xi]
    return Table(
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


def _metrics(stars, n_rejected, pixel_scale, bkg, rms) -> dict:
    """`detect_stars`' metrics; medians over the non-saturated stars when there are 3."""
    ref = stars[~stars["saturated"]] if np.count_nonzero(~stars["saturated"]) >= 3 else stars
    med_fwhm = float(np.nanmedian(ref["fwhm"])) if len(ref) else None
    return {
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
