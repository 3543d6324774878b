"""Segmentation of an image into sources, and Richardson-Lucy deconvolution."""
from __future__ import annotations

import numpy as np

from .arrays import plane
from .errors import StarloomError


def segment(data, *, detection_sigma: float = 3.0, min_area: int = 10, deblend: bool = True,
            smoothing: float = 1.5, contrast: float = 0.001):
    """Detect and deblend sources (photutils) and measure them.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image; NaN pixels are masked.
    detection_sigma : float
        Threshold above the sigma-clipped background, in background sigma, on the image
        smoothed by a Gaussian of sigma ``smoothing`` px (photutils' recommended practice).
    min_area : int
        Minimum connected pixels.
    deblend : bool
        Split overlapping sources (photutils ``deblend_sources``, multi-thresholding and
        watershed, as SourceExtractor; Bertin & Arnouts 1996).
    contrast : float
        Deblending contrast (fraction of the total flux a component needs).

    Returns
    -------
    labels : ndarray, shape (ny, nx), int32
        0 for background, 1..n the sources.
    table : astropy.table.Table
        Per source: ``label``, ``x``, ``y`` (centroid, px), ``flux`` (background-subtracted,
        ADU), ``area`` (px), ``ellipticity`` (1 - b/a), ``orientation`` (deg), ``fwhm`` (px).

    Raises
    ------
    StarloomError
        When the image is not 2-D.
    """
    from astropy.convolution import Gaussian2DKernel, convolve
    from astropy.stats import sigma_clipped_stats
    from astropy.table import Table
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources

    img = plane(data, "segmentation")
    bad = ~np.isfinite(img)
    work = np.where(bad, np.nanmedian(img), img)
    _, med, std = sigma_clipped_stats(work, sigma=3.0, mask=bad)
    work = work - med
    smooth = convolve(work, Gaussian2DKernel(smoothing)) if smoothing > 0 else work
    _, _, sstd = sigma_clipped_stats(smooth, sigma=3.0, mask=bad)
    seg = detect_sources(smooth, detection_sigma * sstd, n_pixels=min_area, mask=bad)
    names = ("label", "x", "y", "flux", "area", "ellipticity", "orientation", "fwhm")
    if seg is None:
        return np.zeros(img.shape, np.int32), Table(names=names, dtype=(int,) + (float,) * 7)
    if deblend:
        seg = deblend_sources(smooth, seg, n_pixels=min_area, contrast=contrast,
                              progress_bar=False)
    cat = SourceCatalog(work, seg, convolved_data=smooth, mask=bad)
    table = Table({"label": cat.label, "x": cat.x_centroid, "y": cat.y_centroid,
                   "flux": cat.segment_flux, "area": cat.area.value,
                   "ellipticity": cat.ellipticity.value, "orientation": cat.orientation.value,
                   "fwhm": cat.fwhm.value})
    return seg.data.astype(np.int32), table


def gaussian_psf(fwhm: float, size: int | None = None) -> np.ndarray:
    """A normalised circular Gaussian PSF image of the given FWHM (px), odd size."""
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    size = int(size or 2 * int(np.ceil(4 * sigma)) + 1) | 1
    yy, xx = np.indices((size, size), dtype=float) - size // 2
    psf = np.exp(-0.5 * (xx ** 2 + yy ** 2) / sigma ** 2)
    return psf / psf.sum()


def richardson_lucy(data, psf, *, iterations: int = 20, background=None):
    """Richardson-Lucy deconvolution (Richardson 1972, JOSA 62, 55; Lucy 1974, AJ 79, 745).

    Without ``background``: scikit-image's ``restoration.richardson_lucy`` on the image shifted
    to be non-negative (its minimum subtracted, added back after) and scaled to a maximum of 1.
    The sky is then part of the object being deconvolved, and where the PSF does not match a
    bright star exactly, the algorithm moves sky flux into the star: dark rings below the sky.

    With ``background``: the sky is a known additive term of the image model,
    ``image = psf * object + background`` with ``object >= 0`` (Richardson-Lucy with a
    background term; Snyder, Hammoud & White 1993, JOSA A 10, 1014, eq. 8), iterated as
    ``object <- object * psf^T * (image / (psf * object + background))``. Only the light above
    the sky is deconvolved and the result cannot fall below the sky: no dark rings. (Own
    iteration, since scikit-image's has no background term; with a zero background it equals
    scikit-image's, which ``tests/test_sky.py`` checks.)

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image; NaN pixels are filled with the median first.
    psf : ndarray, shape (m, m)
        Point-spread function (normalised to sum 1 here).
    iterations : int
        Number of iterations (more: sharper and noisier).
    background : float or ndarray of shape (ny, nx), optional
        The sky under the sources, in the image's units (e.g. :func:`.local_metrics.sky_map`).

    Returns
    -------
    ndarray, shape (ny, nx), float64

    Raises
    ------
    StarloomError
        When the image is not 2-D or the PSF is not a 2-D array with a positive sum.
    """
    from skimage.restoration import richardson_lucy as rl

    img = plane(data, "deconvolution")
    psf = np.asarray(psf, dtype=float)
    if psf.ndim != 2 or not psf.sum() > 0:
        raise StarloomError("deconvolution: the PSF must be a 2-D image with a positive sum")
    img = np.where(np.isfinite(img), img, np.nanmedian(img))
    psf = psf / psf.sum()
    if background is not None:
        sky = np.broadcast_to(np.asarray(background, dtype=float), img.shape)
        # The ratio image / model needs a positive image: shift both by one constant.
        shift = max(0.0, 1.0 - float(min(img.min(), sky.min())))
        return rl_with_background(img + shift, psf, sky + shift, iterations) + sky
    lo = float(img.min())
    scale = float(img.max() - lo) or 1.0
    out = rl((img - lo) / scale, psf, num_iter=iterations, clip=False)
    return out * scale + lo


def rl_with_background(image, psf, background, iterations: int, start=None,
                       eps: float = 1e-12):
    """The object estimate of Richardson-Lucy with a background term (see
    :func:`richardson_lucy`; Snyder, Hammoud & White 1993): non-negative, without the sky.

    ``image`` and ``background`` (ny, nx) must be positive; ``psf`` (m, m) sums to 1. Starts
    from ``start``, by default the image above the sky (floored at a millionth of its peak):
    from a flat start, the sky would drain only as 1/iteration, multiplicative updates being
    slow where the object is faint. Convolutions as scikit-image's (scipy.signal,
    ``mode='same'``), so that with a zero background and its flat start the iterations are
    scikit-image's.
    """
    from scipy.signal import convolve

    mirror = psf[::-1, ::-1]
    if start is None:
        above = image - background
        start = np.maximum(above, max(float(above.max()), 1.0) * 1e-6)
    obj = np.array(start, dtype=float)
    for _ in range(iterations):
        model = convolve(obj, psf, mode="same") + background + eps
        obj = obj * convolve(image / model, mirror, mode="same")
    return obj


def measured_psf(data, *, size: int = 25) -> np.ndarray:
    """An effective PSF of the whole image's isolated stars (see :func:`.psfmap.psf_map`).

    Raises
    ------
    StarloomError
        Fewer than 3 isolated stars.
    """
    from .psfmap import image_psf_map

    regions, _ = image_psf_map(data, grid=(1, 1), size=size, min_stars=3)
    region = regions[0]
    if region.psf is None:
        raise StarloomError(f"deconvolution: {region.n_stars} isolated star(s) to measure the "
                            "PSF on (3 needed); connect a PSF or choose psf='gaussian'")
    # The stamp's residual sky and noise wings would be deconvolved as if they were light
    # spread by the optics (dark square halos): level the border to 0, keep a disc.
    psf = region.psf - np.median(np.concatenate([region.psf[0], region.psf[-1],
                                                 region.psf[:, 0], region.psf[:, -1]]))
    yy, xx = np.indices(psf.shape) - (np.asarray(psf.shape)[:, None, None] - 1) / 2
    psf = np.where(np.hypot(xx, yy) <= psf.shape[0] / 2, np.clip(psf, 0, None), 0.0)
    return psf / psf.sum()


def plot_before_after(path, before, after, *, title: str = "", dpi: int = 100):
    """The image before and after processing side by side, with one display stretch (asinh over
    the 0.5-99.8 percentile interval of ``before``) so they compare."""
    from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval

    from .plots import _figure

    ny, nx = np.shape(before)
    fig = _figure((10, 5 * ny / nx + 0.8))
    finite = np.asarray(before)[np.isfinite(before)]
    norm = ImageNormalize(finite, interval=PercentileInterval(99.3), stretch=AsinhStretch(0.1))
    for k, (img, label) in enumerate(((before, "before"), (after, "after"))):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.imshow(img, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
