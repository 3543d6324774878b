"""Simulated one-shot-colour data with known truth, for BGE and PCC tests and the colour demo.

Stars get catalogue-like colours: each star's R, G, B signal follows its B-V through the same
model PCC inverts (:func:`starloom.astro.pcc_fit.expected_ratios`: Ballesteros 2012 temperature,
blackbody photon flux in R, G, B bands, relative to a white reference), then the camera applies
per-channel gains (a known white-balance error) and the sky adds a known additive gradient of
its own colour. Stars sit where a TAN WCS puts the catalogue's RA/Dec, so PCC matches them.
The CCD signal chain (Poisson photo-electrons, Gaussian read noise) follows Howell, *Handbook of
CCD Astronomy* (2006), ch. 4, as :mod:`.simulate` does.
"""
from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.nddata import CCDData
from astropy.table import Table
from astropy.wcs import WCS

from .pcc_fit import WHITE_REFERENCES, expected_ratios
from .simulate import BAYER_PATTERNS, _render_stars

__all__ = ["colour_planes", "mosaic", "simulate_colour_image", "synthetic_catalog", "tan_wcs"]

#: Photo-electrons per second of a V = 10 star in the G channel.
FLUX_V10 = 2000.0


def tan_wcs(center, pixel_scale_arcsec, shape) -> WCS:
    """A north-up TAN WCS centred on ``center`` (ra, dec deg), east left, for ``shape`` (ny, nx)."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [float(center[0]), float(center[1])]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    s = pixel_scale_arcsec / 3600.0
    w.wcs.cdelt = [-s, s]
    return w


def synthetic_catalog(rng, wcs, shape, n_stars, *, mag_range=(7.0, 11.0), margin=8) -> Table:
    """Random stars on the image: ``ra``, ``dec`` (deg), ``mag`` (V, uniform in ``mag_range``)
    and ``bv`` (normal, mean 0.65, sigma 0.45, clipped to -0.3..1.8: field-star-like colours)."""
    ny, nx = shape
    x = rng.uniform(margin, nx - 1 - margin, n_stars)
    y = rng.uniform(margin, ny - 1 - margin, n_stars)
    sky = wcs.pixel_to_world(x, y)
    return Table({"ra": sky.ra.deg, "dec": sky.dec.deg,
                  "mag": rng.uniform(*mag_range, n_stars),
                  "bv": np.clip(rng.normal(0.65, 0.45, n_stars), -0.3, 1.8)})


def colour_planes(catalog: Table, wcs, shape, *, fwhm=2.5, white_bv=WHITE_REFERENCES["G2V"],
                  offset=(0.0, 0.0), flux_v10=FLUX_V10) -> np.ndarray:
    """Star light in e-/s per R, G, B plane, (3, ny, nx): Moffat stars at the WCS positions.

    Catalogue rows without ``bv`` get B-V 0.65 (grey for a G2V white reference); ``offset``
    (dx, dy) px shifts every star (a dither); ``flux_v10`` is the G rate of a V = 10 star.
    """
    sky = SkyCoord(np.asarray(catalog["ra"], float) * u.deg, np.asarray(catalog["dec"], float) * u.deg)
    x, y = wcs.world_to_pixel(sky)
    x, y = np.asarray(x) + offset[0], np.asarray(y) + offset[1]
    ny, nx = shape
    on = np.isfinite(x) & (x > -10) & (x < nx + 10) & (y > -10) & (y < ny + 10)
    bv = np.asarray(catalog["bv"], float) if "bv" in catalog.colnames else np.full(len(catalog), np.nan)
    bv = np.where(np.isfinite(bv), bv, 0.65)[on]
    flux = flux_v10 * 10 ** (-0.4 * (np.asarray(catalog["mag"], float)[on] - 10.0))
    rg, bg = expected_ratios(bv, white_bv)
    x, y = x[on], y[on]
    return np.stack([_render_stars(shape, x, y, flux * r, fwhm) for r in (rg, np.ones_like(rg), bg)])


def mosaic(planes, pattern: str) -> np.ndarray:
    """Bayer CFA mosaic (ny, nx) of planar RGB; the pattern's letters are elements [0,0], [0,1],
    [1,0], [1,1]."""
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"parameter 'bayer' must be one of {', '.join(BAYER_PATTERNS)}, got {pattern!r}")
    out = np.empty(planes.shape[1:], dtype=planes.dtype)
    for k, letter in enumerate(pattern):
        out[k // 2::2, k % 2::2] = planes["RGB".index(letter)][k // 2::2, k % 2::2]
    return out


def gradient_planes(shape, sky_level, sky_colour, gradient, angle_deg):
    """Additive sky, (3, ny, nx) e-/s: ``sky_level * colour * (1 + gradient * t)``, with t the
    position along ``angle_deg`` scaled to -0.5..0.5 across the frame (linear gradient)."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    a = np.radians(angle_deg)
    t = (xx - (nx - 1) / 2) * np.cos(a) + (yy - (ny - 1) / 2) * np.sin(a)
    t = 0.5 * t / np.abs(t).max()
    return np.stack([sky_level * c * (1.0 + gradient * t) for c in sky_colour])


def simulate_colour_image(*, seed=0, shape=(100, 120), center=(56.75, 24.12), pixel_scale=20.0,
                          catalog: Table | None = None, n_stars=60, gains=(0.8, 1.0, 0.6),
                          sky_level=200.0, sky_colour=(1.3, 1.0, 0.7), gradient=0.6,
                          gradient_angle=30.0, fwhm=2.5, exposure=10.0, read_noise=3.0,
                          white_bv=WHITE_REFERENCES["G2V"], bayer: str | None = None) -> dict:
    """One simulated colour exposure with a WCS, its catalogue and the truth.

    Parameters
    ----------
    seed : int
        Random seed (same arguments, same arrays).
    shape : tuple of int
        ``(ny, nx)``.
    center, pixel_scale : (float, float), float
        Field centre (RA, Dec deg) and pixel scale (arcsec/px) of the TAN WCS.
    catalog : astropy.table.Table, optional
        Stars to render (``ra``, ``dec``, ``mag`` = V, ``bv``); default `synthetic_catalog` with
        ``n_stars``.
    gains : (float, float, float)
        R, G, B camera gains: the white-balance error PCC must undo (its factors are
        ``gains[1] / gains``).
    sky_level, sky_colour, gradient, gradient_angle : float, tuple, float, float
        Additive sky in e-/s at the centre, its R, G, B colour, its fractional change across the
        frame and direction (deg from +x), see `gradient_planes`.
    fwhm : float
        Moffat FWHM, px.
    exposure, read_noise : float
        Seconds, electrons RMS.
    white_bv : float
        White reference of the colour model (stars of this B-V have R = G = B before gains).
    bayer : {None, 'RGGB', 'GRBG', 'GBRG', 'BGGR'}
        None: planar RGB (3, ny, nx); else a 2-D CFA mosaic with ``BAYERPAT``.

    Returns
    -------
    dict
        ``image`` (CCDData, float32 electrons, WCS, header OBJECT/EXPTIME/RA/DEC[/BAYERPAT]),
        ``catalog`` (Table), ``factors`` (the true PCC factors, G = 1), ``sky`` (the gradient
        in e-, (3, ny, nx), after gains), ``wcs``.
    """
    rng = np.random.default_rng(seed)
    wcs = tan_wcs(center, pixel_scale, shape)
    if catalog is None:
        catalog = synthetic_catalog(rng, wcs, shape, n_stars)
    g = np.asarray(gains, dtype=float)[:, None, None]
    stars = colour_planes(catalog, wcs, shape, fwhm=fwhm, white_bv=white_bv)
    sky = gradient_planes(shape, sky_level, sky_colour, gradient, gradient_angle) * exposure * g
    expected = stars * exposure * g + sky
    data = rng.poisson(expected) + rng.normal(0.0, read_noise, expected.shape)
    header = {"OBJECT": "Simulated colour field", "EXPTIME": float(exposure),
              "RA": float(center[0]), "DEC": float(center[1])}
    if bayer is not None:
        data = mosaic(data, bayer)
        header["BAYERPAT"] = bayer
    ccd = CCDData(data.astype(np.float32), unit=u.electron, meta=header, wcs=wcs)
    return {"image": ccd, "catalog": catalog, "factors": float(gains[1]) / np.asarray(gains, float),
            "sky": sky, "wcs": wcs}


#: The colour session's field: the Pleiades (rich in catalogue stars with B-V), 10"/px.
SESSION_FIELD = (56.75, 24.12)
SESSION_PIXEL_SCALE = 10.0
#: G photo-electrons per second of a V = 10 star in the session: the field's V ~ 5 stars stay
#: below full well in a 30 s light (brighter ones saturate, as in a real frame).
SESSION_FLUX_V10 = 100.0


def simulate_colour_session(*, seed=0, shape=(400, 600), n_bias=8, n_darks=6, n_flats=8,
                            n_lights=8, light_exposure=60.0, read_noise=5.0, dark_current=0.05,
                            dither=6.0, bayer="RGGB", catalog: Table | None = None,
                            center=SESSION_FIELD, pixel_scale=SESSION_PIXEL_SCALE) -> dict:
    """A one-shot-colour session: `simulate_session`'s calibration frames and camera, with
    lights of a real star field in colour.

    Bias, darks and flats are those of :func:`starloom.astro.simulate.simulate_session` with the
    same seed and ``bayer`` (so the lights share their bias pattern, hot pixels, vignetting and
    CFA response R 0.8, G 1, B 0.6: the white-balance error PCC undoes). The lights show the
    ``catalog`` stars (default: KStars stars.dat around ``center``, V and B-V) at the positions
    of a TAN WCS (``pixel_scale`` arcsec/px), coloured by their B-V (`colour_planes`), on a sky
    with a coloured linear gradient (`gradient_planes`), dithered, mosaicked by the CFA and
    digitised by the same camera. They carry RA/DEC pointing keywords and OBJECT, but no WCS,
    as a smart telescope's raw frames do.

    Returns
    -------
    dict of str to list of astropy.nddata.CCDData
        ``'bias', 'dark', 'flat', 'light'`` as `simulate_session`.
    """
    from . import simulate as sim
    from .catalogs import load_catalog

    frames = sim.simulate_session(seed=seed, shape=shape, n_bias=n_bias, n_darks=n_darks,
                                  dark_exposure=light_exposure, n_flats=n_flats, n_lights=0,
                                  light_exposure=light_exposure, read_noise=read_noise,
                                  dark_current=dark_current, dither=dither, bayer=bayer)
    camera = sim._Camera(seed, tuple(shape), gain=1.5, read_noise=read_noise, bias_level=500.0,
                         dark_current=dark_current, hot_pixel_fraction=2e-4, vignetting=0.25,
                         bayer=bayer, filter_name="L")
    wcs = tan_wcs(center, pixel_scale, shape)
    if catalog is None:
        radius = 0.6 * np.hypot(*shape) * pixel_scale / 3600.0
        catalog = load_catalog("kstars", center, radius)
    sky = gradient_planes(shape, 20.0, (1.3, 1.0, 0.7), 0.6, 30.0)
    dithers, fwhms = sim._pointings(seed, n_lights, dither, (2.2, 3.2))
    for i in range(int(n_lights)):
        planes = colour_planes(catalog, wcs, shape, fwhm=fwhms[i], offset=dithers[i],
                               flux_v10=SESSION_FLUX_V10) + sky
        expected = mosaic(planes, bayer) * light_exposure * camera.response
        extra = {"OBJECT": "Pleiades (simulated)", "RA": (float(center[0]), "[deg] pointing"),
                 "DEC": (float(center[1]), "[deg] pointing"),
                 "SIM-DX": float(dithers[i][0]), "SIM-DY": float(dithers[i][1])}
        camera.expose("light", i, lambda rng, e=expected: rng.poisson(e), light_exposure, extra)
    frames["light"] = camera.frames["light"]
    return frames


def neutral_calibration(light: CCDData, n: int = 3) -> dict:
    """Calibration frames that leave ``light`` frames unchanged: bias and darks 0, flats 1.

    For a session of real lights taken without calibration frames: calibrating them with these
    is the identity. Headers copy the light's FILTER, BAYERPAT, EXPTIME and INSTRUME.
    """
    keep = ("FILTER", "BAYERPAT", "EXPTIME", "INSTRUME", "ROWORDER", "XBAYROFF", "YBAYROFF")
    base = {k: light.header[k] for k in keep if k in light.header}
    out = {}
    for kind, typ, value in (("bias", "Bias Frame", 0.0), ("dark", "Dark Frame", 0.0),
                             ("flat", "Flat Field", 1.0)):
        header = dict(base, IMAGETYP=typ)
        if kind == "bias":
            header["EXPTIME"] = 0.0
        out[kind] = [CCDData(np.full(light.shape, value, np.float32), unit=light.unit,
                             meta=dict(header)) for _ in range(n)]
    return out
