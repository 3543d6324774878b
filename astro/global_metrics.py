"""Global frame metrics and the global weight of each frame.

Per frame (tile_compile methodology v3.3.6, section 5, jeamy/tile_compile
doc/v3/tile_basierte_qualitatsrekonstruktion_methodik_v_3.3.6_en.md):

- ``background`` B: sigma-clipped median of the valid pixels, in raw ADU (a normalized frame's
  NORMMUL/NORMADD undone, as tile_compile measures B before normalization), mean over channels;
- ``noise`` sigma: robust pixel noise of the (normalized) frame, the MAD standard deviation of
  differences of horizontally adjacent pixels divided by sqrt(2) (a first-difference estimator
  in the spirit of DER_SNR, Stoehr et al. 2008, ASP Conf. Ser. 394, 505): unlike the MAD of the
  pixels themselves it is not inflated by sky gradients or clouds;
- ``gradient_energy`` E: mean squared Sobel gradient magnitude (scikit-image ``sobel``) of the
  frame smoothed by a Gaussian of 1 px, over valid pixels away from mask edges; the smoothing
  keeps pixel noise from dominating E, which should measure sharp structure (stars);
- ``star_count``, ``fwhm`` (median, px) and ``roundness`` (median axis ratio b/a =
  sqrt(1 - e^2), 1 = round) of the stars found by :func:`starloom.astro.stars.detect_stars`.

Weight: robust z-scores ``z(x) = (x - median x) / (1.4826 MAD x)`` and ``Q = alpha (-z_B) +
beta (-z_sigma) + gamma z_E + delta (-z_FWHM)``, clipped to [-3, 3], ``G = exp(k Q)`` (k = 1).
The z-scores themselves are not clipped (as in tile_compile): a cloud raises B by many MADs
while the normalized noise sigma * B_ref / B falls, and only the unclipped z_B outweighs that
fall. Measure before resampling: a frame smoothed as a whole (noise included) has a low pixel
noise and gains weight. tile_compile (section 5.3) has no FWHM term and uses alpha, beta, gamma
= 0.4, 0.3, 0.3. Starloom's defaults are 0.4, 0.3, 0, 0.3: the star FWHM replaces the gradient
energy, because on the real Stargate frames (``shared/data/stargate``, 10 frames of median FWHM
3.75 to 5.35 px) E correlates *positively* with the FWHM (Pearson r = +0.6 to +0.95 for Sobel
energies of the raw, median-filtered or clipped frames: blurred and trailed bright stars spread
their steep edges over more pixels), so gamma > 0 rewards the blurred frames; the FWHM measures
seeing directly, as the frame selection of Siril ("best images regarding the value of FWHM",
Siril manual, Stacking) and PixInsight's SubframeSelector do. ``gamma`` and ``delta`` are
parameters: (0.4, 0.3, 0.3, 0) is tile_compile's formula. A frame without stars (FWHM NaN) gets
z_FWHM = +clamp, the worst, when other frames have stars. The MAD has a floor of 1 % of
``|median x|`` (tile_compile: an absolute 1e-6 on data normalized to 1): frames whose noise or
background differ by a few tenths of a percent (measurement scatter) are not told apart; on the
Stargate frames a 0.1 % floor let 0.2 % noise differences outweigh a 1.2 px FWHM difference.
CFA mosaics are measured on their 2x2-binned luminance (tile_compile's CFA proxy), planar
colour frames on the mean of their planes.
"""
from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData
from astropy.table import Table

from .errors import StarloomError
from .normalization import BAYER_PATTERNS, frame_stats, raw_value


def metric_image(ccd: CCDData) -> tuple[np.ndarray, np.ndarray]:
    """2-D float64 image for metrics and its mask (True = invalid): mono, plane mean or CFA bin."""
    data = np.asarray(ccd.data, np.float64)
    mask = np.zeros(data.shape, bool) if ccd.mask is None else np.broadcast_to(ccd.mask, data.shape)
    mask = mask | ~np.isfinite(data)
    if data.ndim == 3:
        return data.mean(axis=0), mask.any(axis=0)
    bayer = str(ccd.header.get("BAYERPAT", "") or "").strip().upper()
    if bayer in BAYER_PATTERNS:
        ny, nx = (data.shape[0] // 2) * 2, (data.shape[1] // 2) * 2
        d = data[:ny, :nx].reshape(ny // 2, 2, nx // 2, 2)
        m = mask[:ny, :nx].reshape(ny // 2, 2, nx // 2, 2)
        return d.mean(axis=(1, 3)), m.any(axis=(1, 3))
    return data, mask


def pixel_noise(img: np.ndarray, mask: np.ndarray) -> float:
    """Robust per-pixel noise: MAD std of horizontal first differences / sqrt(2), clipped."""
    from astropy.stats import sigma_clipped_stats
    d = np.diff(img, axis=1)
    ok = ~(mask[:, 1:] | mask[:, :-1])
    if np.count_nonzero(ok) < 16:
        return float("nan")
    _, _, std = sigma_clipped_stats(d[ok], sigma=3.0, maxiters=5, stdfunc="mad_std")
    return float(std / np.sqrt(2.0))


def gradient_energy(img: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared Sobel magnitude of the 1-px Gaussian-smoothed image over interior valid pixels."""
    from scipy.ndimage import binary_dilation, gaussian_filter
    from skimage.filters import sobel
    fill = np.median(img[~mask]) if (~mask).any() else 0.0
    g = sobel(gaussian_filter(np.where(mask, fill, img), 1.0))
    edge = binary_dilation(mask, iterations=3) if mask.any() else mask
    inner = ~edge
    inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False
    return float(np.mean(g[inner] ** 2)) if inner.any() else float("nan")


def frame_metrics(ccd: CCDData, *, fwhm: float = 3.0, threshold_sigma: float = 5.0) -> dict:
    """Background (raw ADU), noise, gradient energy and star metrics of one frame.

    Parameters
    ----------
    ccd : CCDData
        Frame, possibly normalized (NORMMUL/NORMADD cards) and masked (True = no data).
    fwhm : float
        Expected stellar FWHM in px (star finder kernel).
    threshold_sigma : float
        Star detection threshold in background sigma.

    Returns
    -------
    dict
        ``background``, ``noise``, ``gradient_energy``, ``star_count``, ``fwhm`` (px, NaN
        without stars), ``roundness`` (NaN without stars).
    """
    from .stars import detect_stars
    img, mask = metric_image(ccd)
    if np.count_nonzero(~mask) < 64:
        raise StarloomError("fewer than 64 valid pixels: no metrics")
    stats = frame_stats(ccd)
    background = float(np.mean([raw_value(ccd.header, loc, k)
                                for k, (loc, _) in enumerate(stats.values())]))
    # no second, wide-kernel pass for big stars (large_stars): 4x the time, and the median
    # FWHM, count and roundness of a field hardly change
    stars, m = detect_stars(img, fwhm=fwhm, threshold_sigma=threshold_sigma, mask=mask,
                            large_stars=False)
    ecc = np.asarray(stars["eccentricity"], float) if len(stars) else np.zeros(0)
    ecc = ecc[np.isfinite(ecc)]
    return {"background": background, "noise": pixel_noise(img, mask),
            "gradient_energy": gradient_energy(img, mask), "star_count": len(stars),
            "fwhm": float(m["median_fwhm_px"]) if m["median_fwhm_px"] is not None else float("nan"),
            "roundness": float(np.median(np.sqrt(1 - np.clip(ecc, 0, 1) ** 2))) if len(ecc) else float("nan")}


def robust_z(x, floor_fraction: float = 1e-2) -> np.ndarray:
    """Robust z-scores ``(x - median) / max(1.4826 MAD, floor_fraction |median|, 1e-12)``; NaN -> 0."""
    x = np.asarray(x, float)
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros_like(x)
    med = np.median(x[ok])
    mad = 1.4826 * np.median(np.abs(x[ok] - med))
    z = (x - med) / max(mad, floor_fraction * abs(med), 1e-12)
    return np.where(ok, z, 0.0)


def global_weights(table: Table, *, alpha: float = 0.4, beta: float = 0.3, gamma: float = 0.0,
                   delta: float = 0.3, clamp: float = 3.0, k: float = 1.0) -> Table:
    """Add ``z_background``, ``z_noise``, ``z_gradient``, ``z_fwhm``, ``quality``, ``weight``.

    Parameters
    ----------
    table : Table
        Per-frame rows with ``background``, ``noise``, ``gradient_energy``, ``fwhm``.
    alpha, beta, gamma, delta : float
        Weights of -z_B, -z_sigma, z_E and -z_FWHM; >= 0 and summing to 1 (tile_compile's
        constraint for its three). See the module docstring for the defaults.
    clamp : float
        Q is clipped to [-clamp, clamp] before the exponential (and a frame without stars
        gets z_FWHM = clamp).
    k : float
        Steepness of ``G = exp(k Q)``.

    Returns
    -------
    Table
        The same table (columns added in place).

    Raises
    ------
    StarloomError
        The weights do not sum to 1 or one is negative.
    """
    if min(alpha, beta, gamma, delta) < 0 or abs(alpha + beta + gamma + delta - 1) > 1e-6:
        raise StarloomError(f"parameters 'alpha', 'beta', 'gamma', 'delta': {alpha}, {beta}, "
                            f"{gamma}, {delta} must be >= 0 and sum to 1")
    table["z_background"] = robust_z(table["background"])
    table["z_noise"] = robust_z(table["noise"])
    table["z_gradient"] = robust_z(table["gradient_energy"])
    fwhm = np.asarray(table["fwhm"], float)
    # no star found among frames with stars: too blurred (or clouded) to measure, the worst
    table["z_fwhm"] = np.where(np.isnan(fwhm) & np.isfinite(fwhm).any(), clamp, robust_z(fwhm))
    q = (alpha * -table["z_background"] + beta * -table["z_noise"] + gamma * table["z_gradient"]
         + delta * -table["z_fwhm"])
    table["quality"] = np.asarray(q, float)
    table["weight"] = np.exp(k * np.clip(table["quality"], -clamp, clamp))
    return table
