"""A deterministic simulated observing session (bias, dark, flat and light frames).

The demo graphs and the tests need raw frames whose ground truth is known: the bias level, the
dark current, the hot pixels, the vignetting and the dither of every light. The signal chain follows
the CCD equation of Howell, *Handbook of CCD Astronomy* (2nd ed., 2006), ch. 4: photo-electrons and
dark electrons are Poisson distributed, the read noise is Gaussian (in electrons), and the analogue
to digital converter divides by the gain (e-/ADU) and adds the bias offset.
"""
from __future__ import annotations

import math

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.time import Time, TimeDelta

__all__ = ["simulate_session", "BAYER_PATTERNS", "CFA_RESPONSE"]

BAYER_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
#: Relative response of each colour-filter-array channel to the (grey) simulated sky and stars.
CFA_RESPONSE = {"R": 0.8, "G": 1.0, "B": 0.6}

#: Moffat power index of the simulated PSF: 4.765 is the value for Kolmogorov turbulence
#: (Trujillo et al. 2001, MNRAS 328, 977).
MOFFAT_BETA = 4.765
#: Star fluxes (e-/s) follow N(>F) proportional to F**-1 between these limits.
STAR_FLUX_MIN = 300.0
STAR_FLUX_MAX = 3.0e5
STAR_FLUX_INDEX = 1.0
#: Hot pixels have a dark current drawn log-uniformly in this range (e-/s).
HOT_CURRENT_RANGE = (50.0, 500.0)
#: RMS of the fixed column pattern of the bias, in ADU; RMS of the pixel response non-uniformity.
COLUMN_PATTERN_RMS_ADU = 2.0
PRNU_RMS = 0.01
CCD_TEMP = -10.0
ADU_MAX = 65535.0
READOUT_SECONDS = 3.0
SESSION_START = "2025-01-15T19:00:00"

# Independent random streams, so that e.g. changing n_lights leaves the star field untouched.
_STREAM_DETECTOR, _STREAM_SKY, _STREAM_STARS, _STREAM_DITHER, _STREAM_FRAMES = range(5)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *stream])


def _check(condition: bool, name: str, message: str, value) -> None:
    if not condition:
        raise ValueError(f"parameter '{name}' {message}, got {value!r}")


def _vignetting_profile(shape: tuple[int, int], drop: float) -> np.ndarray:
    """Relative illumination, 1 at the frame centre and ``1 - drop`` at the corners.

    Natural vignetting falls as cos**4 of the field angle theta (Howell 2006, sec. 4.5); with
    tan(theta) = r / f this is (1 + (r/f)**2)**-2, and f is chosen so the corner pixel sees
    exactly ``1 - drop``.
    """
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    r2 = ((x - cx) ** 2 + (y - cy) ** 2) / (cx**2 + cy**2)
    k = (1.0 - drop) ** -0.5 - 1.0
    return (1.0 + k * r2) ** -2


def _cfa_map(shape: tuple[int, int], bayer: str | None) -> np.ndarray:
    """Per-pixel CFA response; the pattern's letters are array elements [0,0], [0,1], [1,0], [1,1]."""
    response = np.ones(shape)
    if bayer is not None:
        for k, letter in enumerate(bayer):
            response[k // 2 :: 2, k % 2 :: 2] = CFA_RESPONSE[letter]
    return response


def _star_field(rng: np.random.Generator, shape, n_stars: int, margin: float):
    """Star positions (x, y in pixels of the reference frame) and fluxes (e-/s).

    ``n_stars`` fall inside the reference frame; the margin around it holds stars at the same
    density, so that dithered or rotated frames are filled evenly up to their edges.
    """
    ny, nx = shape
    inner_area = nx * ny
    outer_area = (nx + 2 * margin) * (ny + 2 * margin)
    n_margin = round(n_stars * (outer_area - inner_area) / inner_area)
    x_in = rng.uniform(-0.5, nx - 0.5, n_stars)
    y_in = rng.uniform(-0.5, ny - 0.5, n_stars)
    xs, ys = [x_in], [y_in]
    kept = 0
    while kept < n_margin:
        x = rng.uniform(-0.5 - margin, nx - 0.5 + margin, 4 * n_margin)
        y = rng.uniform(-0.5 - margin, ny - 0.5 + margin, 4 * n_margin)
        outside = (x < -0.5) | (x > nx - 0.5) | (y < -0.5) | (y > ny - 0.5)
        take = min(n_margin - kept, int(outside.sum()))
        xs.append(x[outside][:take])
        ys.append(y[outside][:take])
        kept += take
    x, y = np.concatenate(xs), np.concatenate(ys)
    # Inverse-transform sampling of the truncated power law N(>F) ~ F**-index.
    u_min = (STAR_FLUX_MAX / STAR_FLUX_MIN) ** -STAR_FLUX_INDEX
    flux = STAR_FLUX_MIN * rng.uniform(u_min, 1.0, x.size) ** (-1.0 / STAR_FLUX_INDEX)
    return x, y, flux


def _render_stars(shape, x, y, flux, fwhm: float) -> np.ndarray:
    """Sum of Moffat (1969, A&A 3, 455) PSFs, each normalised to its total ``flux``."""
    from astropy.modeling.functional_models import Moffat2D  # imported where used (startup)

    ny, nx = shape
    gamma = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / MOFFAT_BETA) - 1.0))
    # Analytic integral of the Moffat profile: pi * gamma**2 * I0 / (beta - 1).
    amplitude = flux * (MOFFAT_BETA - 1.0) / (math.pi * gamma**2)
    half = int(math.ceil(4.0 * fwhm))
    image = np.zeros(shape)
    for xc, yc, amp in zip(x, y, amplitude):
        ix, iy = int(round(xc)), int(round(yc))
        x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
        y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        image[y0:y1, x0:x1] += Moffat2D.evaluate(xx, yy, amp, xc, yc, gamma, MOFFAT_BETA)
    return image


def simulate_session(*, seed=0, shape=(400, 600), n_bias=8, n_darks=6, dark_exposure=60.0,
                     n_flats=8, flat_exposure=1.0, n_lights=8, light_exposure=60.0,
                     gain=1.5, read_noise=5.0, bias_level=500.0, dark_current=0.05,
                     hot_pixel_fraction=2e-4, vignetting=0.25, sky_level=200.0,
                     sky_gradient=0.3, n_stars=150, fwhm_range=(2.2, 3.5),
                     dither=6.0, rotation_deg=0.0, bayer=None, filter_name="L",
                     flat_level=20000.0) -> dict[str, list[CCDData]]:
    """Simulate the raw frames of one night: bias, dark, flat and light frames.

    Each frame is built in electrons and digitised as
    ``ADU = round(electrons / gain + bias_level + column_pattern + N(0, read_noise / gain))``
    clipped to 0..65535 like a 16-bit camera (Howell, *Handbook of CCD Astronomy*, 2006, ch. 4).
    Electrons per pixel and frame, with t the exposure time:

    - bias: none;
    - dark: Poisson(dark_current * t), and Poisson(hot_current * t) on the hot pixels;
    - flat: Poisson(flat_level * gain * V * P * C) plus the dark electrons;
    - light: Poisson((stars + sky) * t * V * P * C) plus the dark electrons;

    where V is the vignetting profile, P the pixel response non-uniformity (fixed, 1 % RMS) and C
    the colour-filter-array response (1 without ``bayer``). The column pattern, P, the hot pixels,
    the sky gradient direction and the star field are fixed for a given seed; noise, dithers and
    seeing change from frame to frame.

    Parameters
    ----------
    seed : int
        Seed of every random draw; the same arguments give identical arrays.
    shape : tuple of int
        ``(ny, nx)`` of every frame; both at least 16.
    n_bias, n_darks, n_flats, n_lights : int
        Number of frames of each type (>= 0).
    dark_exposure, flat_exposure, light_exposure : float
        Exposure times in seconds (> 0).
    gain : float
        Detector gain in e-/ADU (> 0).
    read_noise : float
        Read noise in electrons RMS (>= 0).
    bias_level : float
        Mean bias offset in ADU (>= 0); the fixed column pattern has zero mean.
    dark_current : float
        Dark current in e-/s/pixel (>= 0).
    hot_pixel_fraction : float
        Fraction of pixels that are hot, in [0, 1); hot pixels have a dark current of 50 to
        500 e-/s (log-uniform) and sit at the same positions in every frame.
    vignetting : float
        Fractional drop of illumination at the frame corners, in [0, 1); cos**4-like radial falloff.
    sky_level : float
        Sky background at the frame centre in e-/s/pixel (>= 0), before vignetting.
    sky_gradient : float
        Total fractional change of the sky across the frame along a seeded direction, in [0, 2]:
        the sky runs from ``sky_level * (1 - g/2)`` to ``sky_level * (1 + g/2)``.
    n_stars : int
        Number of stars in the reference frame (>= 0); fluxes follow N(>F) ~ F**-1 from 300 to
        3e5 e-/s.
    fwhm_range : tuple of float
        ``(low, high)`` seeing FWHM in pixels; each light draws its FWHM uniformly in it. The PSF
        is a Moffat profile (Moffat 1969) with beta = 4.765 (Trujillo et al. 2001).
    dither : float
        Maximum dither in pixels (>= 0): lights after the first are shifted by uniform random
        ``dx, dy`` in ``[-dither, dither]``; the first light is at (0, 0).
    rotation_deg : float
        Field rotation of the last light in degrees, counter-clockwise in array (x, y)
        coordinates about the frame centre; the lights in between rotate linearly in time, as
        with an alt-az mount.
    bayer : {None, 'RGGB', 'GRBG', 'GBRG', 'BGGR'}
        Colour filter array. The letters name array elements ``[0, 0], [0, 1], [1, 0], [1, 1]``
        (FITS row 0 first); R, G and B pixels see 0.8, 1.0 and 0.6 of the sky, star and flat
        signal. Written to BAYERPAT.
    filter_name : str
        Value of the FILTER keyword.
    flat_level : float
        Flat signal at the frame centre in ADU above bias (> 0), for a G (or mono) pixel.

    Returns
    -------
    dict of str to list of astropy.nddata.CCDData
        Keys ``'bias', 'dark', 'flat', 'light'``. Data are float32 arrays of shape ``shape`` with
        integer values in 0..65535, unit ``u.adu``. Headers: IMAGETYP ('Bias Frame', 'Dark Frame',
        'Flat Field', 'Light Frame'), EXPTIME (s), GAIN (e-/ADU), RDNOISE (e-), FILTER, CCD-TEMP
        (deg C), DATE-OBS (increasing over the session: biases, darks, flats, lights), INSTRUME,
        BAYERPAT (with ``bayer``); lights also carry SIM-DX, SIM-DY (pixels: a star at (x, y) of
        the reference field appears at R(x - xc, y - yc) + (xc, yc) + (SIM-DX, SIM-DY), R the
        rotation by SIM-ROT degrees about the centre), SIM-ROT and SIM-FWHM (pixels).

    Raises
    ------
    ValueError
        If a parameter is out of range (the message names it): shape not two ints >= 16,
        negative counts, noise or levels, non-positive exposures or gain, fractions out of range,
        a bad ``fwhm_range`` or an unknown ``bayer`` pattern.
    """
    shape = _checked_shape(shape)
    _check_values(
        counts={"n_bias": n_bias, "n_darks": n_darks, "n_flats": n_flats, "n_lights": n_lights,
                "n_stars": n_stars},
        positive={"dark_exposure": dark_exposure, "flat_exposure": flat_exposure,
                  "light_exposure": light_exposure, "gain": gain, "flat_level": flat_level},
        non_negative={"read_noise": read_noise, "bias_level": bias_level,
                      "dark_current": dark_current, "sky_level": sky_level, "dither": dither},
    )
    _check_ranges(hot_pixel_fraction, vignetting, sky_gradient, fwhm_range, rotation_deg, bayer)

    camera = _Camera(seed, shape, gain=gain, read_noise=read_noise, bias_level=bias_level,
                     dark_current=dark_current, hot_pixel_fraction=hot_pixel_fraction,
                     vignetting=vignetting, bayer=bayer, filter_name=filter_name)
    sky = _sky_map(seed, shape, sky_level, sky_gradient)
    ny, nx = shape
    # Margin so that dithered and rotated frames stay filled: the dither, the largest rotation
    # displacement (at the corners) and the PSF footprint.
    corner = math.hypot(nx / 2, ny / 2)
    margin = dither + corner * abs(math.radians(rotation_deg)) + 4.0 * fwhm_range[1]
    field = _star_field(_rng(seed, _STREAM_STARS), shape, int(n_stars), margin)

    for i in range(int(n_bias)):
        camera.expose("bias", i, None, 0.0)
    for i in range(int(n_darks)):
        camera.expose("dark", i, None, float(dark_exposure))
    flat_electrons = flat_level * gain * camera.response
    for i in range(int(n_flats)):
        camera.expose("flat", i, lambda rng: rng.poisson(flat_electrons), float(flat_exposure))
    _expose_lights(camera, int(n_lights), float(light_exposure), sky, field,
                   _pointings(seed, n_lights, dither, fwhm_range), rotation_deg)
    return camera.frames


def _checked_shape(shape) -> tuple[int, int]:
    try:
        shape_ok = len(shape) == 2 and all(int(n) == n and n >= 16 for n in shape)
    except TypeError:
        shape_ok = False
    _check(shape_ok, "shape", "must be two integers >= 16", shape)
    return (int(shape[0]), int(shape[1]))


def _check_values(counts: dict, positive: dict, non_negative: dict) -> None:
    for name, value in counts.items():
        _check(int(value) == value and value >= 0, name, "must be an integer >= 0", value)
    for name, value in positive.items():
        _check(value > 0, name, "must be > 0", value)
    for name, value in non_negative.items():
        _check(value >= 0, name, "must be >= 0", value)


def _check_ranges(hot_pixel_fraction, vignetting, sky_gradient, fwhm_range, rotation_deg, bayer):
    _check(0 <= hot_pixel_fraction < 1, "hot_pixel_fraction", "must be in [0, 1)",
           hot_pixel_fraction)
    _check(0 <= vignetting < 1, "vignetting", "must be in [0, 1)", vignetting)
    _check(0 <= sky_gradient <= 2, "sky_gradient", "must be in [0, 2]", sky_gradient)
    _check(len(tuple(fwhm_range)) == 2 and 0 < fwhm_range[0] <= fwhm_range[1], "fwhm_range",
           "must be (low, high) with 0 < low <= high", fwhm_range)
    _check(math.isfinite(rotation_deg), "rotation_deg", "must be finite", rotation_deg)
    _check(bayer is None or bayer in BAYER_PATTERNS, "bayer",
           f"must be None or one of {', '.join(BAYER_PATTERNS)}", bayer)


_IMAGETYP = {"bias": "Bias Frame", "dark": "Dark Frame", "flat": "Flat Field",
             "light": "Light Frame"}


class _Camera:
    """The simulated detector and the session clock; `expose` digitises and records frames.

    The fixed pattern (bias columns, pixel response non-uniformity, hot pixels) is drawn once
    from the detector stream, so every frame of the session shares it.
    """

    def __init__(self, seed, shape, *, gain, read_noise, bias_level, dark_current,
                 hot_pixel_fraction, vignetting, bayer, filter_name):
        ny, nx = shape
        det = _rng(seed, _STREAM_DETECTOR)
        column_pattern = det.normal(0.0, COLUMN_PATTERN_RMS_ADU, nx)
        column_pattern -= column_pattern.mean()
        prnu = 1.0 + det.normal(0.0, PRNU_RMS, shape)
        n_hot = int(round(hot_pixel_fraction * ny * nx))
        hot_index = det.choice(ny * nx, size=n_hot, replace=False)
        current = np.full(ny * nx, float(dark_current))
        current[hot_index] = np.exp(det.uniform(*np.log(HOT_CURRENT_RANGE), n_hot))
        self.column_pattern = column_pattern
        self.current = current.reshape(shape)  # dark current, e-/s
        #: Relative response to light: vignetting, pixel non-uniformity and colour filter.
        self.response = _vignetting_profile(shape, vignetting) * prnu * _cfa_map(shape, bayer)
        self.seed, self.shape, self.gain, self.read_noise = seed, shape, gain, read_noise
        self.bias_level, self.bayer, self.filter_name = bias_level, bayer, filter_name
        self.clock = Time(SESSION_START, format="isot", scale="utc")
        self.frames: dict[str, list[CCDData]] = {"bias": [], "dark": [], "flat": [], "light": []}

    def expose(self, kind, index, electrons, exposure, extra=None):
        """Add frame ``index`` of ``kind``: ``electrons(rng)`` (or none) plus dark current and
        read noise over ``exposure`` seconds, digitised; ``extra`` header cards."""
        noise = _rng(self.seed, _STREAM_FRAMES, list(self.frames).index(kind), index)
        e = electrons(noise) if electrons is not None else 0.0
        if exposure > 0:
            e = e + noise.poisson(self.current * exposure)
        adu = (e / self.gain + self.bias_level + self.column_pattern
               + noise.normal(0.0, self.read_noise / self.gain, self.shape))
        data = np.clip(np.round(adu), 0.0, ADU_MAX).astype(np.float32)
        header = self._header(kind, exposure, extra)
        self.clock = self.clock + TimeDelta(exposure + READOUT_SECONDS, format="sec")
        self.frames[kind].append(CCDData(data, unit=u.adu, meta=header))

    def _header(self, kind, exposure, extra) -> fits.Header:
        header = fits.Header()
        header["IMAGETYP"] = _IMAGETYP[kind]
        header["EXPTIME"] = (float(exposure), "[s] exposure time")
        header["GAIN"] = (float(self.gain), "[e-/ADU] detector gain")
        header["RDNOISE"] = (float(self.read_noise), "[e-] read noise")
        header["FILTER"] = self.filter_name
        header["CCD-TEMP"] = (CCD_TEMP, "[C] sensor temperature")
        header["DATE-OBS"] = (self.clock.isot, "UTC start of exposure")
        header["INSTRUME"] = "Starloom simulator"
        if self.bayer is not None:
            header["BAYERPAT"] = self.bayer
        for key, value in (extra or {}).items():
            header[key] = value
        return header


def _sky_map(seed, shape, sky_level, sky_gradient) -> np.ndarray:
    """Sky in e-/s/pixel: a linear gradient along a seeded direction (phase angle phi)."""
    ny, nx = shape
    phi = _rng(seed, _STREAM_SKY).uniform(0.0, 2.0 * math.pi)
    y, x = np.mgrid[0:ny, 0:nx]
    proj = (x - (nx - 1) / 2) * math.cos(phi) + (y - (ny - 1) / 2) * math.sin(phi)
    return sky_level * (1.0 + 0.5 * sky_gradient * proj / np.abs(proj).max())


def _pointings(seed, n_lights, dither, fwhm_range):
    """Dither offsets ``(n, 2)`` (the first light at (0, 0)) and seeing FWHMs ``(n,)`` in px."""
    dither_rng = _rng(seed, _STREAM_DITHER)
    dithers = dither_rng.uniform(-dither, dither, (max(int(n_lights), 1), 2))
    dithers[0] = 0.0
    fwhms = dither_rng.uniform(fwhm_range[0], fwhm_range[1], max(int(n_lights), 1))
    return dithers, fwhms


def _expose_lights(camera, n_lights, light_exposure, sky, field, pointings, rotation_deg):
    """Render and expose the lights: the star ``field`` rotated (linearly in time up to
    ``rotation_deg``) about the frame centre, dithered, seen through each light's seeing."""
    (star_x, star_y, star_flux), (dithers, fwhms) = field, pointings
    ny, nx = camera.shape
    xc, yc = (nx - 1) / 2, (ny - 1) / 2
    for i in range(n_lights):
        theta = math.radians(rotation_deg) * (i / (n_lights - 1) if n_lights > 1 else 0.0)
        dx, dy = dithers[i]
        c, s = math.cos(theta), math.sin(theta)
        x_i = xc + c * (star_x - xc) - s * (star_y - yc) + dx
        y_i = yc + s * (star_x - xc) + c * (star_y - yc) + dy
        stars = _render_stars(camera.shape, x_i, y_i, star_flux, fwhms[i])
        expected = (stars + sky) * light_exposure * camera.response
        extra = {"SIM-DX": (float(dx), "[px] true dither in x"),
                 "SIM-DY": (float(dy), "[px] true dither in y"),
                 "SIM-ROT": (math.degrees(theta), "[deg] true field rotation"),
                 "SIM-FWHM": (float(fwhms[i]), "[px] true seeing FWHM"),
                 "OBJECT": "Simulated field"}
        camera.expose("light", i, lambda rng, e=expected: rng.poisson(e), light_exposure, extra)
