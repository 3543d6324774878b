"""Cosmetic correction: maps of hot, cold, bad and cosmic-ray pixels, and their repair.

Detection follows Siril's cosmetic correction (``src/filters/cosmetic_correction.c``): a pixel
is hot (cold) when it lies more than ``sigma_hot`` (``sigma_cold``) standard deviations above
(below) a reference level, and is replaced by the average (hot) or median (cold) of its
neighbours of the same colour (step 2 on a CFA, Bayer mosaic). Here the reference level is the
pixel's local median (5x5 neighbourhood without the pixel itself, like Siril's automatic
detection) rather than the frame's global median, so amplifier glow and vignetting do not
turn into hot or cold pixels, and the standard deviation is the robust ``mad_std`` of the
residuals (astropy). The bad-pixel map of a flat is ccdproc's ``ccdmask`` (the IRAF task
``ccdmask``), the cosmic-ray map is L.A.Cosmic (van Dokkum 2001, PASP 113, 1420) through
``ccdproc.cosmicray_lacosmic`` (astroscrappy).

On a CFA frame every 2x2 tile position is a colour plane of its own (``data[i::2, j::2]``):
neighbours, medians and noise are taken in that plane, so a red pixel is compared with and
repaired from red pixels only.
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import StarloomError

__all__ = [
    "CORRECTION_METHODS",
    "bad_pixel_map",
    "colour_planes",
    "correct_pixels",
    "cosmic_ray_map",
    "deviant_pixels",
    "hot_pixels_from_lights",
    "is_cfa",
    "isolated_spikes",
    "local_median",
]

CORRECTION_METHODS = ("median", "interpolate")


def is_cfa(header, mode: str = "auto") -> bool:
    """Whether a frame is a CFA (Bayer) mosaic: ``mode`` "auto" reads BAYERPAT from the
    header, "yes"/"no" force it.

    Raises
    ------
    StarloomError
        Unknown ``mode``.
    """
    if mode == "auto":
        return bool(header is not None and str(header.get("BAYERPAT", "") or "").strip())
    if mode in ("yes", "no"):
        return mode == "yes"
    raise StarloomError(f"parameter 'cfa': unknown value {mode!r} (auto, yes, no)")


def colour_planes(shape, cfa: bool) -> list[tuple[slice, slice]]:
    """Index pairs of the colour planes of a 2-D frame: the whole frame, or the four 2x2 tile
    positions of a CFA mosaic."""
    if not cfa:
        return [(slice(None), slice(None))]
    return [(slice(i, None, 2), slice(j, None, 2)) for i in (0, 1) for j in (0, 1)]


def _check_2d(data, what: str) -> np.ndarray:
    a = np.asarray(data)
    if a.ndim != 2:
        raise StarloomError(f"{what}: cosmetic correction needs a 2-D frame (a mono or CFA "
                            f"mosaic), got shape {a.shape}")
    return a


def local_median(data, size: int = 5, cfa: bool = False, exclude_centre: bool = True) -> np.ndarray:
    """Median of each pixel's ``size`` x ``size`` same-colour neighbourhood (float32).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
    size : int
        Odd side of the neighbourhood, in pixels of the colour plane (so 2*size-1 sensor
        pixels on a CFA).
    cfa : bool
        Work in each colour plane separately.
    exclude_centre : bool
        Leave the pixel itself out (the level it is compared with).

    Notes
    -----
    ``scipy.ndimage.median_filter`` with a footprint, mirrored at the edges. NaN are replaced
    by the frame's median first.
    """
    from scipy.ndimage import median_filter

    a = np.asarray(_check_2d(data, "local median"), np.float32)
    if not np.isfinite(a).all():
        a = np.where(np.isfinite(a), a, np.nanmedian(a)).astype(np.float32)
    footprint = np.ones((size, size), bool)
    if exclude_centre:
        footprint[size // 2, size // 2] = False
    out = np.empty_like(a)
    for rows, cols in colour_planes(a.shape, cfa):
        out[rows, cols] = median_filter(a[rows, cols], footprint=footprint, mode="mirror")
    return out


def _plane_noise(residual: np.ndarray, cfa: bool) -> np.ndarray:
    """Robust standard deviation (astropy ``mad_std``) of ``residual``, per colour plane,
    broadcast to the frame."""
    from astropy.stats import mad_std

    noise = np.empty(residual.shape, np.float32)
    for rows, cols in colour_planes(residual.shape, cfa):
        noise[rows, cols] = mad_std(residual[rows, cols], ignore_nan=True)
    return noise


def deviant_pixels(data, sigma_hot: float = 5.0, sigma_cold: float = 5.0, *, cfa: bool = False,
                   size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Hot and cold pixel maps of a master dark or a master flat.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Master dark (ADU) or master flat (relative).
    sigma_hot, sigma_cold : float
        Thresholds in robust standard deviations above / below the local median; 0 disables
        that map.
    cfa : bool
        Compare each pixel with its own colour plane.
    size : int
        Neighbourhood side of the local median (plane pixels).

    Returns
    -------
    hot, cold : ndarray of bool, shape (ny, nx)

    Notes
    -----
    Siril's ``find_deviant_pixels`` (median +/- sigma x standard deviation), with the local
    median of :func:`local_median` as the level and ``mad_std`` of the residual as sigma.
    """
    a = np.asarray(_check_2d(data, "deviant pixels"), np.float32)
    residual = a - local_median(a, size, cfa)
    noise = _plane_noise(residual, cfa)
    hot = residual > sigma_hot * noise if sigma_hot > 0 else np.zeros(a.shape, bool)
    cold = residual < -sigma_cold * noise if sigma_cold > 0 else np.zeros(a.shape, bool)
    return hot & np.isfinite(a), cold & np.isfinite(a)


def isolated_spikes(data, sigma: float = 10.0, neighbour_sigma: float = 5.0, *,
                    cfa: bool = False, neighbour_fraction: float = 0.0) -> np.ndarray:
    """Single-pixel spikes: pixels far above their 5x5 median whose neighbours are not bright.

    A pixel counts when it exceeds the median of its 5x5 (same-colour) neighbourhood by more
    than ``sigma`` times the background noise, while none of its 8 nearest (same-colour)
    neighbours exceeds that median by ``neighbour_sigma`` times the noise: a star, however
    sharp, lights its neighbours (a FWHM of 2 px already puts the next pixel at half the
    peak); a hot pixel or a one-pixel cosmic ray does not. The noise is the sigma-clipped
    (3 sigma) standard deviation of the frame (``astropy.stats.sigma_clipped_stats``), per
    colour plane.

    With ``neighbour_fraction`` > 0 the test is relaxed for hot pixels on a star's wing or in
    pairs: the *second* brightest neighbour must stay below ``neighbour_sigma`` sigma or below
    ``neighbour_fraction`` of the pixel's own excess (a star of FWHM >= 2 px has four
    neighbours at half its peak excess or more).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        A frame (ADU); NaN pixels are never spikes.
    sigma : float
        Spike threshold, background standard deviations above the 5x5 median (10 in the
        hot-pixel count of issue 10: about 160 per raw Stargate frame).
    neighbour_sigma : float
        A neighbour this many standard deviations above the median is "bright".
    cfa : bool
        Judge each CFA colour plane on its own.
    neighbour_fraction : float
        0: strict test (no bright neighbour); > 0: the relaxed test above.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
    """
    from astropy.stats import sigma_clipped_stats
    from scipy.ndimage import maximum_filter, rank_filter

    a = np.asarray(_check_2d(data, "spikes"), np.float32)
    finite = np.isfinite(a)
    level = local_median(a, 5, cfa, exclude_centre=False)
    ring = np.ones((3, 3), bool)
    ring[1, 1] = False
    out = np.zeros(a.shape, bool)
    for rows, cols in colour_planes(a.shape, cfa):
        plane = np.where(finite[rows, cols], a[rows, cols], level[rows, cols])
        _, _, noise = sigma_clipped_stats(plane, sigma=3.0)
        excess = plane - level[rows, cols]
        if neighbour_fraction > 0:
            neighbours = rank_filter(excess, -2, footprint=ring, mode="mirror")
            limit = np.maximum(neighbour_sigma * noise, neighbour_fraction * excess)
        else:
            neighbours = maximum_filter(excess, footprint=ring, mode="mirror")
            limit = neighbour_sigma * noise
        out[rows, cols] = (excess > sigma * noise) & (neighbours < limit)
    return out & finite


def hot_pixels_from_lights(frames, sigma: float = 5.0, min_fraction: float = 0.5, *,
                           cfa: bool = False, neighbour_fraction: float = 0.3,
                           progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Hot pixels found from light frames alone: isolated spikes at the same place in most
    frames.

    Parameters
    ----------
    frames : iterable of CCDData
        Light frames of one sensor, same shape (ny, nx), before registration.
    sigma : float
        Spike threshold of :func:`isolated_spikes`, in background standard deviations.
    min_fraction : float
        A pixel is hot when it spikes in at least this fraction of the frames. Stars move with
        the pointing (and are not isolated anyway), cosmic rays strike once; hot pixels stay.
    cfa : bool
        CFA mosaic: spikes are judged within each colour plane.
    neighbour_fraction : float
        Relaxed neighbour test of :func:`isolated_spikes`, so hot pixels on a star's wing or
        in pairs are found too (0: the strict test).
    progress : callable(done, total), optional

    Returns
    -------
    hot : ndarray of bool, shape (ny, nx)
    counts : ndarray of int, shape (ny, nx)
        In how many frames each pixel spiked.

    Raises
    ------
    StarloomError
        No frames, or frames of different shapes.
    """
    counts, n = None, 0
    frames = list(frames) if not hasattr(frames, "__len__") else frames
    total = len(frames)
    for ccd in frames:
        spikes = isolated_spikes(ccd.data, sigma, cfa=cfa, neighbour_fraction=neighbour_fraction)
        if counts is None:
            counts = np.zeros(spikes.shape, np.int32)
        elif spikes.shape != counts.shape:
            raise StarloomError(f"light frame {n} has shape {spikes.shape}, the first "
                                f"{counts.shape}")
        counts += spikes
        n += 1
        if progress is not None:
            progress(n, total)
    if not n:
        raise StarloomError("no light frames to find hot pixels in")
    return counts >= max(1, int(np.ceil(min_fraction * n))), counts


def bad_pixel_map(flat, *, cfa: bool = False, **ccdmask_kw) -> np.ndarray:
    """Bad pixels of a flat (or of the ratio of two flats), by ``ccdproc.ccdmask``.

    ccdmask (after IRAF's ``ccdmask``) flags pixels and column segments that depart from a
    moving median by more than ``lsigma``/``hsigma`` robust sigma. On a CFA mosaic it runs on
    each colour plane, whose levels differ.

    Parameters
    ----------
    flat : CCDData or ndarray, shape (ny, nx)
    cfa : bool
    **ccdmask_kw
        Passed to ``ccdproc.ccdmask`` (``ncmed``, ``nlmed``, ``ncsig``, ``nlsig``, ``lsigma``,
        ``hsigma``, ``ngood``).

    Returns
    -------
    ndarray of bool, shape (ny, nx)
    """
    import ccdproc

    a = np.asarray(_check_2d(getattr(flat, "data", flat), "bad-pixel map"), np.float64)
    out = np.zeros(a.shape, bool)
    for rows, cols in colour_planes(a.shape, cfa):
        out[rows, cols] = ccdproc.ccdmask(a[rows, cols], **ccdmask_kw)
    return out


def cosmic_ray_map(ccd, *, cfa: bool = False, measured_noise: bool = False,
                   **lacosmic_kw) -> np.ndarray:
    """Cosmic-ray hits of one frame by L.A.Cosmic (``ccdproc.cosmicray_lacosmic``,
    astroscrappy).

    Parameters
    ----------
    ccd : CCDData, shape (ny, nx)
        A frame in ADU (its own mask, if any, is passed on as pixels to ignore).
    cfa : bool
        Run on each colour plane of the mosaic (a CFA tile pattern would otherwise read as
        fine structure).
    measured_noise : bool
        Give L.A.Cosmic a constant noise variance measured in the frame (``mad_std`` of the
        residual from a 5x5 median, squared; its ``invar``) instead of its detector model
        from ``gain`` and ``readnoise``: for frames whose gain is unknown or that were
        rescaled (flat-fielded, averaged).
    **lacosmic_kw
        Passed to ``ccdproc.cosmicray_lacosmic`` (``sigclip``, ``sigfrac``, ``objlim``,
        ``gain``, ``readnoise``, ``satlevel``, ``niter``, ...).

    Returns
    -------
    ndarray of bool, shape (ny, nx)
    """
    import ccdproc
    from astropy.nddata import CCDData

    a = np.asarray(_check_2d(ccd.data, "cosmic-ray map"), np.float32)
    out = np.zeros(a.shape, bool)
    for rows, cols in colour_planes(a.shape, cfa):
        mask = None if ccd.mask is None else np.asarray(ccd.mask)[rows, cols]
        plane = CCDData(np.ascontiguousarray(a[rows, cols]), unit=ccd.unit or "adu", mask=mask)
        kw = dict(lacosmic_kw)
        if measured_noise:
            from astropy.stats import mad_std

            noise = mad_std(plane.data - local_median(plane.data, 5, exclude_centre=False),
                            ignore_nan=True)
            kw["invar"] = np.full(plane.shape, noise ** 2, np.float32)
        result = ccdproc.cosmicray_lacosmic(plane, **kw)
        out[rows, cols] = result.mask if mask is None else result.mask & ~mask
    return out


def _neighbour_offsets(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    keep = (dy != 0) | (dx != 0)
    return np.stack([dy[keep], dx[keep]], axis=1)


def _median_fill(plane: np.ndarray, bad: np.ndarray, radius: int) -> np.ndarray:
    """Each bad pixel replaced by the median of the good pixels within ``radius``, growing the
    radius where all of them are bad."""
    out = plane.copy()
    ys, xs = np.nonzero(bad)
    ny, nx = plane.shape
    for r in (radius, 2 * radius, 4 * radius):
        if not ys.size:
            break
        off = _neighbour_offsets(r)
        yy, xx = ys[:, None] + off[:, 0], xs[:, None] + off[:, 1]
        inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        yy, xx = np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)
        vals = np.where(inside & ~bad[yy, xx], plane[yy, xx], np.nan)
        with warnings.catch_warnings():  # all-NaN rows are expected: the radius grows
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(vals, axis=1)
        done = np.isfinite(med)
        out[ys[done], xs[done]] = med[done]
        ys, xs = ys[~done], xs[~done]
    return out


def correct_pixels(data, mask, *, method: str = "median", cfa: bool = False,
                   radius: int = 1) -> np.ndarray:
    """Replace the pixels of ``mask`` from their neighbours of the same colour.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
    mask : ndarray of bool, shape (ny, nx)
        Pixels to replace (hot, cold, bad, cosmic rays).
    method : {"median", "interpolate"}
        "median": the median of the unmasked same-colour pixels within ``radius`` (plane
        pixels; the 3x3 of Siril for radius 1, widened where all are masked); "interpolate":
        a Gaussian-weighted interpolation of the unmasked neighbours
        (``astropy.convolution.interpolate_replace_nans``, Gaussian2DKernel of sigma
        ``radius``).
    cfa : bool
        Use only neighbours of the same CFA colour plane.
    radius : int
        Neighbourhood radius, >= 1.

    Returns
    -------
    ndarray, float32, shape (ny, nx)
        A corrected copy; ``data`` is not modified.

    Raises
    ------
    StarloomError
        Shapes differ, or unknown method.
    """
    a = np.array(_check_2d(data, "correction"), np.float32)
    m = np.asarray(mask, bool)
    if m.shape != a.shape:
        raise StarloomError(f"pixel map has shape {m.shape}, the frame {a.shape}")
    if method not in CORRECTION_METHODS:
        raise StarloomError(f"parameter 'method': unknown {method!r} "
                            f"({', '.join(CORRECTION_METHODS)})")
    bad = m | ~np.isfinite(a)
    for rows, cols in colour_planes(a.shape, cfa):
        plane, pbad = a[rows, cols], bad[rows, cols]
        if not pbad.any():
            continue
        if method == "median":
            a[rows, cols] = _median_fill(plane, pbad, max(1, int(radius)))
        else:
            from astropy.convolution import Gaussian2DKernel, interpolate_replace_nans

            filled = interpolate_replace_nans(np.where(pbad, np.nan, plane),
                                              Gaussian2DKernel(max(1, int(radius))))
            a[rows, cols] = np.where(np.isfinite(filled), filled,
                                     _median_fill(plane, pbad, max(1, int(radius))))
    return a
