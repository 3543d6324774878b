"""PSF map: an effective PSF (ePSF) per region of the field."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import plane


@dataclass
class RegionPSF:
    """The ePSF of one region: grid indices ``ix``, ``iy``, the region's bounds ``x0, x1, y0,
    y1`` (px), ``n_stars`` used, ``psf`` (ndarray, (size*oversampling)^2, sum 1, or None when
    too few stars) and its ``fwhm`` (px, a Gaussian fit; NaN without a PSF)."""

    ix: int
    iy: int
    bounds: tuple[float, float, float, float]
    n_stars: int
    psf: np.ndarray | None
    fwhm: float


def _psf_fwhm(psf: np.ndarray, oversampling: int) -> float:
    """FWHM of an ePSF image in detector px: a circular Gaussian fit (photutils ``fit_fwhm``)."""
    from photutils.psf import fit_fwhm

    cy, cx = (np.asarray(psf.shape) - 1) / 2
    try:
        fwhm = float(np.atleast_1d(fit_fwhm(psf, xypos=(cx, cy), fit_shape=psf.shape[0] | 1))[0])
    except Exception:  # photutils raises several types when a fit cannot start
        return float("nan")
    return fwhm / oversampling


def psf_map(data, stars, *, grid: tuple[int, int] = (3, 3), size: int = 25,
            oversampling: int = 1, min_stars: int = 5, max_stars: int = 40,
            maxiters: int = 3) -> list[RegionPSF]:
    """Build an effective PSF per region with photutils' ``EPSFBuilder``.

    The ePSF method is Anderson & King (2000, PASP 112, 1360): stars are stacked on an
    oversampled grid, iteratively re-centred. Stars too close to the edge or to each other
    (within ``size`` px) are left out so that each cutout holds one star.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Background-subtracted image, ADU (NaN pixels are set to 0).
    stars : astropy.table.Table
        ``x``, ``y`` (px, 0-based) and ``flux`` of detected stars.
    grid : (int, int)
        Regions along y and x.
    size : int
        Cutout side, px (odd; even values are made odd).
    oversampling : int
        ePSF oversampling factor.
    min_stars, max_stars : int
        A region with fewer stars gets no PSF; the brightest ``max_stars`` are used.
    maxiters : int
        EPSFBuilder iterations.

    Returns
    -------
    list of RegionPSF
        Row-major from the bottom-left region.

    Raises
    ------
    StarloomError
        When the image is not 2-D.
    """
    from astropy.nddata import NDData
    from astropy.table import Table
    from photutils.psf import EPSFBuilder, extract_stars

    img = plane(data, "PSF map")
    img = np.where(np.isfinite(img), img, 0.0)
    size = int(size) | 1
    ny, nx = img.shape
    x, y = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    half = size / 2 + 1
    inside = (x > half) & (x < nx - half) & (y > half) & (y < ny - half)
    dist = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(dist, np.inf)
    isolated = dist.min(axis=1) > size if len(x) > 1 else np.ones(len(x), bool)
    usable = inside & isolated
    order = np.argsort(-np.asarray(stars["flux"], float))
    regions = []
    tiy, tix = grid
    for iy in range(tiy):
        for ix in range(tix):
            x0, x1, y0, y1 = nx * ix / tix, nx * (ix + 1) / tix, ny * iy / tiy, ny * (iy + 1) / tiy
            sel = [i for i in order if usable[i] and x0 <= x[i] < x1 and y0 <= y[i] < y1]
            sel = sel[:max_stars]
            psf, fwhm = None, float("nan")
            if len(sel) >= min_stars:
                cut = extract_stars(NDData(img), Table({"x": x[sel], "y": y[sel]}), size=size)
                builder = EPSFBuilder(oversampling=oversampling, maxiters=maxiters,
                                      progress_bar=False)
                epsf, _ = builder(cut)
                psf = epsf.data / epsf.data.sum()
                fwhm = _psf_fwhm(psf, oversampling)
            regions.append(RegionPSF(ix, iy, (x0, x1, y0, y1), len(sel), psf, fwhm))
    return regions


def image_psf_map(data, *, detection_sigma: float = 5.0, **kwargs):
    """:func:`psf_map` of an image's own stars.

    Stars are found by :func:`.focal_plane.measure_sources` (``detection_sigma``); the image's
    sigma-clipped median is subtracted first. ``kwargs`` go to :func:`psf_map`.

    Returns
    -------
    (list of RegionPSF, int)
        The regions and the number of stars detected.
    """
    from astropy.stats import sigma_clipped_stats

    from .focal_plane import measure_sources

    stars = measure_sources(data, detection_sigma=detection_sigma)
    _, background, _ = sigma_clipped_stats(data, sigma=3.0)
    return psf_map(np.asarray(data, float) - background, stars, **kwargs), len(stars)


def plot_psf_map(path, regions: list[RegionPSF], *, dpi: int = 100):
    """A grid of the regions' PSF images (log stretch), laid out as on the sensor."""
    from matplotlib.colors import LogNorm

    from .plots import _figure

    tiy = max(r.iy for r in regions) + 1
    tix = max(r.ix for r in regions) + 1
    fig = _figure((2.2 * tix, 2.3 * tiy))
    for r in regions:
        ax = fig.add_subplot(tiy, tix, (tiy - 1 - r.iy) * tix + r.ix + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        if r.psf is None:
            ax.text(0.5, 0.5, f"{r.n_stars} star(s)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
            continue
        top = r.psf.max()
        ax.imshow(np.clip(r.psf, top * 1e-3, None), origin="lower", cmap="magma",
                  norm=LogNorm(top * 1e-3, top))
        ax.set_title(f"FWHM {r.fwhm:.2f} px, {r.n_stars}*", fontsize=8)
    fig.suptitle("Effective PSF per region (log stretch)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
