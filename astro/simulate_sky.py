"""Simulated sky fields of real catalogue stars, as wide-angle and all-sky lenses see them (for
plate-solving benchmarks and tests)."""
from __future__ import annotations

import warnings

import numpy as np


def render_sky_field(center, width_deg, shape=(800, 1200), *, projection="ARC", barrel=0.0,
                     rotation_deg=0.0, mag_limit=None, elongation=1.0, fwhm_px=2.2,
                     sky=800.0, noise=12.0, seed=0, index_dirs=None):
    """Image of real catalogue stars as a wide-angle lens sees them, with its true WCS.

    Stars are the Tycho-2 stars (VT) of the installed astrometry.net index files
    (`starloom.astro.catalogs.read_index_stars`), projected with an ideal WCS (``projection``:
    'TAN' gnomonic, 'ZEA' zenithal equal-area, 'ARC' zenithal equidistant, the "fisheye" of
    all-sky cameras; Calabretta & Greisen 2002, A&A 395, 1077), then displaced by a radial
    barrel distortion r' = r (1 - barrel (r / r_corner)^2) (Brown 1966's radial term) that the
    WCS does not model. Each star is an elliptical Gaussian whose radial axis grows by
    ``elongation`` at the corners (coma and astigmatism of fast wide lenses), on a sky with a
    linear gradient and Gaussian noise.

    Parameters
    ----------
    center : (float, float)
        Field centre RA, Dec (deg).
    width_deg : float
        Field width along x (deg), at the centre's scale.
    shape : (int, int)
        ``(ny, nx)``.
    projection : {'TAN', 'ZEA', 'ARC'}
    barrel : float
        Radial displacement at the corner, as a fraction of the corner radius (0.05: 5 %).
    rotation_deg : float
        Position angle of the image y axis (deg E of N).
    mag_limit : float, optional
        Faintest VT rendered; default grows with the pixel scale (fainter for narrower fields).
    elongation : float
        Ratio of radial to tangential PSF width at the corners.
    fwhm_px, sky, noise : float
        Central FWHM (px), sky level and noise (ADU).
    seed : int
    index_dirs : sequence, optional
        Index directories to read the stars from.

    Returns
    -------
    (numpy.ndarray float32 (ny, nx), astropy.wcs.WCS, int)
        Image, the true WCS of the undistorted pixel grid at the centre (the distortion is
        small near the centre, so its centre is exact), number of stars rendered.
    """
    from astropy.wcs import WCS

    from .catalogs import read_index_stars

    ny, nx = shape
    scale = width_deg / nx
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    w.wcs.crval = [center[0], center[1]]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    th = np.radians(rotation_deg)
    w.wcs.cd = scale * np.array([[-np.cos(th), np.sin(th)], [np.sin(th), np.cos(th)]])
    w.pixel_shape = (nx, ny)
    radius = min(89.0, 0.75 * width_deg * np.hypot(1.0, ny / nx))
    if mag_limit is None:
        mag_limit = float(np.clip(11.5 - 2.5 * np.log10(max(scale * 3600 / 10.0, 1.0)), 5.5, 11.5))
    stars = read_index_stars(tuple(center), radius, index_dirs=index_dirs)
    stars = stars[np.asarray(stars["mag"]) <= mag_limit]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = w.all_world2pix(np.asarray(stars["ra"]), np.asarray(stars["dec"]), 0)
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    rc = np.hypot(cx, cy)
    r = np.hypot(x - cx, y - cy) / rc
    f = 1.0 - barrel * r**2
    x, y = cx + (x - cx) * f, cy + (y - cy) * f
    ok = np.isfinite(x) & np.isfinite(y) & (x > -5) & (x < nx + 5) & (y > -5) & (y < ny + 5)
    x, y, mag = x[ok], y[ok], np.asarray(stars["mag"])[ok]
    rng = np.random.default_rng(seed)
    img = sky * (1.0 + 0.3 * (np.arange(nx)[None, :] / nx) + 0.1 * (np.arange(ny)[:, None] / ny))
    flux = 30000.0 * 10 ** (-0.4 * (mag - mag_limit + 6.0))
    _add_stars(img, x, y, flux, fwhm_px, elongation, cx, cy, rc)
    img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0, 65535).astype(np.float32), w, int(len(x))


def _add_stars(img, x, y, flux, fwhm_px, elongation, cx, cy, rc):
    """Add elliptical Gaussians (radial sigma grows to ``elongation`` x at the corners)."""
    ny, nx = img.shape
    s0 = fwhm_px / 2.3548
    for xi, yi, fi in zip(x, y, flux):
        rr = np.hypot(xi - cx, yi - cy)
        sr = s0 * (1.0 + (elongation - 1.0) * (rr / rc) ** 2)
        phi = np.arctan2(yi - cy, xi - cx)
        h = int(np.ceil(4 * sr)) + 1
        x0, x1 = max(int(xi) - h, 0), min(int(xi) + h + 1, nx)
        y0, y1 = max(int(yi) - h, 0), min(int(yi) + h + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        gx, gy = np.meshgrid(np.arange(x0, x1) - xi, np.arange(y0, y1) - yi)
        u = gx * np.cos(phi) + gy * np.sin(phi)
        v = -gx * np.sin(phi) + gy * np.cos(phi)
        img[y0:y1, x0:x1] += fi / (2 * np.pi * sr * s0) * np.exp(-0.5 * ((u / sr) ** 2 + (v / s0) ** 2))
