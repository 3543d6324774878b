"""A simulated light series whose quality varies between frames and across each frame.

The tile benchmark (``benchmarks/bench_tiles.py``) and the tile tests need frames with a known,
noiseless truth and the defects the tile pipeline is meant to handle: seeing that changes from
frame to frame and gets worse towards one corner (by a different amount in each frame), a
cloud over part of some frames, a satellite trail, hot pixels fixed on the sensor, small dithers
and a slight rotation. Photon noise is Poisson and the read noise Gaussian (Howell, *Handbook of
CCD Astronomy*, 2nd ed., 2006, ch. 4); stars are circular Gaussians, whose FWHM adaptive
moments measure exactly (Bernstein & Jarvis 2002, AJ 123, 583).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData

__all__ = ["TileSession", "simulate_tile_session", "register_known", "score_stack"]

SIGMA_PER_FWHM = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass
class TileSession:
    """What :func:`simulate_tile_session` returns.

    Attributes
    ----------
    frames : list of CCDData
        Raw light frames, float32 electrons (gain 1), shape ``(ny, nx)``, each dithered and
        rotated; header ``EXPTIME``, ``IMAGETYP``, and the truth: ``SIM-DX``, ``SIM-DY`` (px),
        ``SIM-ROT`` (deg), ``SIM-FWHM`` (base seeing, px), ``SIM-CLD`` (cloud), ``SIM-TRL``.
    names : list of str
        Frame names.
    truth : ndarray, shape (ny, nx), float64
        The noiseless sky in the reference frame's pixels (frame 0 has no dither), seen with
        ``truth_fwhm`` seeing, without cloud, trail or hot pixels, sky level included.
    truth_fwhm : float
        FWHM (px) of the truth's stars: the best seeing of the series.
    trail_mask : ndarray of bool, shape (ny, nx)
        Pixels within 2 px of the satellite trail, in the reference frame's pixels.
    stars : ndarray, shape (n, 3)
        x, y (reference pixels, 0-based) and flux (e-) of the stars inside the field.
    worst_corner : tuple of int
        ``(y, x)`` of the corner where the seeing degrades.
    cloudy, trail_frame : list of int, int
        Frames with a cloud; the frame with the trail.
    cloud_centres : dict
        Cloudy frame index -> ``(x, y)`` of its cloud's centre, reference pixels (the cloud is
        a Gaussian of sigma 0.18 x the frame's larger side).
    fwhm_maps : list of ndarray
        Per frame, the FWHM (px) at every reference pixel.
    """

    frames: list
    names: list
    truth: np.ndarray
    truth_fwhm: float
    trail_mask: np.ndarray
    stars: np.ndarray
    worst_corner: tuple
    cloudy: list
    trail_frame: int
    fwhm_maps: list = field(default_factory=list)
    cloud_centres: dict = field(default_factory=dict)


def _stars(rng, shape, n_stars, margin):
    ny, nx = shape
    x = rng.uniform(-margin, nx + margin, n_stars)
    y = rng.uniform(-margin, ny + margin, n_stars)
    # N(>F) ~ F**-1 between 2e3 and 1.5e5 e- (inverse-transform sampling)
    flux = 2e3 * rng.uniform((1.5e5 / 2e3) ** -1, 1.0, n_stars) ** -1.0
    return x, y, flux


def _fwhm_at(x, y, shape, base, corner_gain, corner):
    """Seeing at reference pixel (x, y): ``base`` times 1 + ``corner_gain`` near ``corner``."""
    ny, nx = shape
    d2 = ((x - corner[1]) ** 2 + (y - corner[0]) ** 2) / (0.45 * max(ny, nx)) ** 2
    return base * (1.0 + corner_gain * np.exp(-0.5 * d2))


def _to_reference(shape, dx, dy, rot_deg):
    """Reference-frame coordinates of every pixel of a frame shifted by (dx, dy), rotated."""
    ny, nx = shape
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    u_, v_ = xx - cx - dx, yy - cy - dy
    return c * u_ + s * v_ + cx, -s * u_ + c * v_ + cy


def _to_frame(x, y, shape, dx, dy, rot_deg):
    ny, nx = shape
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    u_, v_ = x - cx, y - cy
    return c * u_ - s * v_ + cx + dx, s * u_ + c * v_ + cy + dy


def _render(shape, x, y, flux, fwhm):
    """Sum of circular Gaussian stars (total ``flux`` each, per-star ``fwhm``)."""
    ny, nx = shape
    image = np.zeros(shape)
    for xc, yc, f, w in zip(x, y, flux, fwhm):
        s = w * SIGMA_PER_FWHM
        h = int(np.ceil(4 * s)) + 1
        x0, x1 = max(int(xc) - h, 0), min(int(xc) + h + 1, nx)
        y0, y1 = max(int(yc) - h, 0), min(int(yc) + h + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        image[y0:y1, x0:x1] += f / (2 * np.pi * s * s) * np.exp(
            -0.5 * ((xx - xc) ** 2 + (yy - yc) ** 2) / (s * s))
    return image


def _nebula(xr, yr, shape):
    """A faint extended object (two elliptical Gaussians), e-/px at reference coordinates."""
    ny, nx = shape
    a = np.exp(-0.5 * (((xr - 0.35 * nx) / (0.12 * nx)) ** 2 + ((yr - 0.6 * ny) / (0.07 * ny)) ** 2))
    b = np.exp(-0.5 * (((xr - 0.6 * nx) / (0.05 * nx)) ** 2 + ((yr - 0.3 * ny) / (0.1 * ny)) ** 2))
    return 120.0 * a + 80.0 * b


def _line_distance(xr, yr, p0, p1):
    d = np.asarray(p1, float) - np.asarray(p0, float)
    d /= np.hypot(*d)
    return np.abs((xr - p0[0]) * d[1] - (yr - p0[1]) * d[0])


def _header(i, dx, dy, rot, base, cloudy, trail):
    h = fits.Header()
    h["IMAGETYP"] = "Light Frame"
    h["EXPTIME"] = (60.0, "s")
    h["SIM-DX"], h["SIM-DY"], h["SIM-ROT"] = float(dx), float(dy), float(rot)
    h["SIM-FWHM"] = (float(base), "simulated base seeing FWHM, px")
    h["SIM-CLD"], h["SIM-TRL"] = bool(cloudy), bool(trail)
    return h


def simulate_tile_session(*, seed: int = 0, n_frames: int = 30, shape=(256, 256),
                          n_stars: int = 220, fwhm_range=(2.2, 4.5), corner_gain_max=1.2,
                          dither: float = 4.0, rotation_deg: float = 0.4, sky: float = 800.0,
                          read_noise: float = 5.0, n_cloudy: int = 5, trail_peak: float = 600.0,
                          hot_fraction: float = 5e-4) -> TileSession:
    """Simulate a light series for the tile-based reconstruction.

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same frames.
    n_frames : int
        Number of light frames (>= 3).
    shape : (int, int)
        ``(ny, nx)`` of each frame, pixels.
    n_stars : int
        Stars in the field (and its dither margin).
    fwhm_range : (float, float)
        Base seeing FWHM of the frames, px, drawn uniformly; frame 0 (the reference) gets the
        range's middle.
    corner_gain_max : float
        Seeing towards the worst (top-right) corner is worse by a factor up to
        ``1 + corner_gain_max``, drawn uniformly per frame.
    dither, rotation_deg : float
        Largest shift (px) and rotation (deg) of a frame against frame 0.
    sky : float
        Sky level, e-/px.
    read_noise : float
        Gaussian read noise, e-.
    n_cloudy : int
        Frames with a cloud patch (transmission down to 40 %, scattered light +60 % of the sky).
    trail_peak : float
        Peak of the satellite trail (e-/px, Gaussian profile of sigma 1 px) in one frame.
    hot_fraction : float
        Fraction of sensor pixels that are hot (3000 to 20000 e- above the sky).

    Returns
    -------
    TileSession

    Raises
    ------
    ValueError
        ``n_frames`` below 3 or a shape below 32 px.
    """
    if n_frames < 3 or min(shape) < 32:
        raise ValueError(f"simulate_tile_session: need n_frames >= 3 and shape >= 32 px, got "
                         f"{n_frames} and {shape}")
    rng = np.random.default_rng(seed)
    ny, nx = shape
    corner = (ny - 1, nx - 1)
    sx, sy, sf = _stars(rng, shape, n_stars, dither + 10)
    base = rng.uniform(*fwhm_range, n_frames)
    base[0] = np.mean(fwhm_range)
    gain = rng.uniform(0, corner_gain_max, n_frames)
    shifts = rng.uniform(-dither, dither, (n_frames, 2))
    rots = rng.uniform(-rotation_deg, rotation_deg, n_frames)
    shifts[0], rots[0] = 0.0, 0.0
    cloudy = sorted(rng.choice(np.arange(1, n_frames), min(n_cloudy, n_frames - 1), replace=False).tolist())
    trail_frame = int(rng.integers(1, n_frames))
    trail = ((0.0, 0.15 * ny), (float(nx), 0.85 * ny))
    hot = rng.random(shape) < hot_fraction
    hot_value = rng.uniform(3000, 20000, shape) * hot
    frames, names, maps, centres = [], [], [], {}
    for i in range(n_frames):
        xr, yr = _to_reference(shape, shifts[i, 0], shifts[i, 1], rots[i])
        fx, fy = _to_frame(sx, sy, shape, shifts[i, 0], shifts[i, 1], rots[i])
        fw = _fwhm_at(sx, sy, shape, base[i], gain[i], corner)
        signal = _render(shape, fx, fy, sf, fw) + _nebula(xr, yr, shape)
        back = np.full(shape, sky)
        if i in cloudy:
            cx, cy = rng.uniform(0.2, 0.8) * nx, rng.uniform(0.2, 0.8) * ny
            centres[i] = (float(cx), float(cy))
            blob = np.exp(-0.5 * ((xr - cx) ** 2 + (yr - cy) ** 2) / (0.18 * max(shape)) ** 2)
            signal *= 1.0 - 0.6 * blob
            back += 0.6 * sky * blob
        electrons = signal + back
        if i == trail_frame:
            electrons += trail_peak * np.exp(-0.5 * _line_distance(xr, yr, *trail) ** 2)
        data = rng.poisson(electrons).astype(np.float32) + hot_value.astype(np.float32)
        data += rng.normal(0, read_noise, shape).astype(np.float32)
        frames.append(CCDData(data, unit=u.electron,
                              meta=_header(i, *shifts[i], rots[i], base[i], i in cloudy, i == trail_frame)))
        names.append(f"tile_sim_{i:03d}")
        yy, xx = np.mgrid[0:ny, 0:nx]
        maps.append(_fwhm_at(xx, yy, shape, base[i], gain[i], corner))
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    truth_fwhm = float(fwhm_range[0])
    truth = _render(shape, sx, sy, sf, np.full(sx.size, truth_fwhm)) + _nebula(xx, yy, shape) + sky
    inside = (sx >= 0) & (sx < nx) & (sy >= 0) & (sy < ny)
    return TileSession(frames, names, truth, truth_fwhm, _line_distance(xx, yy, *trail) <= 2.0,
                       np.column_stack([sx, sy, sf])[inside], corner, cloudy, trail_frame, maps,
                       centres)


def register_known(session: TileSession, order: int = 3) -> list:
    """The frames resampled onto frame 0's pixels with their true transforms (a perfect
    registration): scipy ``map_coordinates`` (spline of ``order``); pixels that fall outside a
    frame are masked (``mask`` True) and set to 0. Returns a list of CCDData."""
    from scipy.ndimage import map_coordinates

    ny, nx = session.truth.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    out = []
    for ccd in session.frames:
        h = ccd.header
        fx, fy = _to_frame(xx, yy, (ny, nx), h["SIM-DX"], h["SIM-DY"], h["SIM-ROT"])
        outside = (fx < 0) | (fx > nx - 1) | (fy < 0) | (fy > ny - 1)
        data = map_coordinates(np.asarray(ccd.data, float), [fy, fx], order=order, mode="nearest")
        out.append(CCDData(np.where(outside, 0.0, data).astype(np.float32), unit=ccd.unit,
                           mask=outside, meta=h.copy()))
    return out


def _isolated(stars: np.ndarray, radius: float) -> np.ndarray:
    """Stars with no star of a tenth of their flux or more within ``radius`` px."""
    from scipy.spatial import cKDTree

    tree = cKDTree(stars[:, :2])
    ok = np.ones(len(stars), bool)
    for i, near in enumerate(tree.query_ball_point(stars[:, :2], radius)):
        ok[i] = all(j == i or stars[j, 2] < 0.1 * stars[i, 2] for j in near)
    return ok


def score_stack(image: np.ndarray, session: TileSession, border: int = 12,
                min_flux: float = 2e4) -> dict:
    """Quality of a stack of a simulated series against its truth.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        The stack, on frame 0's pixels; NaN where it has no data.
    session : TileSession
    border : int
        Pixels left out along the edges (dither borders).
    min_flux : float
        Faintest star (e-) whose FWHM is measured.

    Returns
    -------
    dict
        ``fwhm_median`` and ``fwhm_corner`` (px): median adaptive-moment FWHM of isolated
        stars of at least ``min_flux``, over the field and over the quarter of them
        nearest the worst corner; ``noise`` (1.4826 MAD of the residual on star-free pixels), ``residual_rms``
        (RMS of stack minus truth, its median offset removed), ``trail_mean`` and
        ``trail_rms`` (of the residual on star-free pixels of the trail), ``point_snr``
        (``1 / (noise * fwhm_median)``, proportional to a point source's matched-filter
        signal-to-noise ratio, flux over noise times PSF width, for Gaussian stars).
    """
    from .stars import adaptive_moments

    ny, nx = image.shape
    inner = np.zeros(image.shape, bool)
    inner[border:ny - border, border:nx - border] = True
    valid = np.isfinite(image) & inner
    resid = np.where(valid, image - session.truth, np.nan)
    resid -= np.nanmedian(resid)
    starfree = valid & (session.truth - np.median(session.truth) < 2.0)
    noise = 1.4826 * float(np.nanmedian(np.abs(resid[starfree] - np.nanmedian(resid[starfree]))))
    s = session.stars
    pick = (s[:, 2] > min_flux) & _isolated(s, 8.0)
    edge = border + 5
    pick &= (s[:, 0] > edge) & (s[:, 0] < nx - edge) & (s[:, 1] > edge) & (s[:, 1] < ny - edge)
    s = s[pick]
    sky = float(np.nanmedian(image[starfree]))
    _, _, fw, _ = adaptive_moments(np.nan_to_num(image - sky), s[:, 0], s[:, 1], 3.0, valid)
    cy, cx = session.worst_corner
    dist = np.where(np.isfinite(fw), np.hypot(s[:, 0] - cx, s[:, 1] - cy), np.inf)
    corner = dist <= np.quantile(dist[np.isfinite(dist)], 0.25) if np.isfinite(dist).any() else dist < 0
    trail = session.trail_mask & starfree
    med = float(np.nanmedian(fw))
    return {"fwhm_median": med, "fwhm_corner": float(np.nanmedian(fw[corner])),
            "n_stars": int(np.isfinite(fw).sum()), "noise": noise,
            "residual_rms": float(np.sqrt(np.nanmean(resid[valid] ** 2))),
            "trail_mean": float(np.nanmean(resid[trail])),
            "trail_rms": float(np.sqrt(np.nanmean(resid[trail] ** 2))),
            "point_snr": 1.0 / (noise * med)}
