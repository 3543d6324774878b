"""Vignetting of an optical system, measured on a master flat: optical centre, radial profile
and corner fall-off."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import StarloomError

CORNERS = ("bottom_left", "bottom_right", "top_left", "top_right")


@dataclass
class Vignetting:
    """Result of :func:`measure_vignetting`.

    Attributes
    ----------
    centre : tuple of float
        Optical centre (x, y), px of the input image, 0-based: the maximum of a quadratic
        surface fitted to the flat (the image centre when the fit has no maximum inside).
    centre_source : str
        ``"fit"`` or ``"image centre"``.
    radius, profile : ndarray, shape (n,)
        Radial profile: mean relative illumination (1 at the centre) in annuli around the
        centre, radius in px of the input image.
    corner_falloff : dict
        Per corner, the illumination drop relative to the centre, percent.
    relative : ndarray, shape (ny', nx')
        The (binned, smoothed) flat divided by its value at the centre.
    binning : int
        Binning applied before measuring.
    """

    centre: tuple[float, float]
    centre_source: str
    radius: np.ndarray
    profile: np.ndarray
    corner_falloff: dict
    relative: np.ndarray
    binning: int


def _quadratic_peak(img: np.ndarray) -> tuple[float, float] | None:
    """Stationary point of a 2-D quadratic fitted by least squares, if it is a maximum inside."""
    from astropy.modeling import fitting, models

    ny, nx = img.shape
    step = max(1, int(np.sqrt(img.size / 20000)))
    yy, xx = np.mgrid[0:ny:step, 0:nx:step]
    z = img[::step, ::step]
    ok = np.isfinite(z)
    fit = fitting.LinearLSQFitter()(models.Polynomial2D(2), xx[ok], yy[ok], z[ok])
    c = {n: getattr(fit, n).value for n in fit.param_names}
    # d/dx: c1_0 + 2 c2_0 x + c1_1 y = 0 ; d/dy: c0_1 + 2 c0_2 y + c1_1 x = 0
    hess = np.array([[2 * c["c2_0"], c["c1_1"]], [c["c1_1"], 2 * c["c0_2"]]])
    if np.linalg.det(hess) <= 0 or hess[0, 0] >= 0:  # not a maximum
        return None
    x, y = np.linalg.solve(hess, [-c["c1_0"], -c["c0_1"]])
    if not (0 <= x < nx and 0 <= y < ny):
        return None
    return float(x), float(y)


def measure_vignetting(data, *, binning: int = 1, smoothing: float = 2.0,
                       corner_size: float = 0.05) -> Vignetting:
    """Measure vignetting on a flat field.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        A (master) flat, any scale; NaN pixels are ignored.
    binning : int
        Block-average binning first (2 turns a Bayer mosaic into colour-neutral super-pixels;
        ``astropy.nddata.block_reduce``).
    smoothing : float
        Sigma of a Gaussian smoothing of the binned flat, in binned px (dust and noise are not
        vignetting); 0: none.
    corner_size : float
        Side of the corner boxes as a fraction of the image's smaller side.

    Returns
    -------
    Vignetting

    Raises
    ------
    StarloomError
        When the flat is not 2-D, is too small, or its centre is not positive.

    Notes
    -----
    The optical centre is the maximum of a quadratic surface fitted to the flat
    (``astropy.modeling`` Polynomial2D, linear least squares); the radial profile is
    photutils' ``RadialProfile``; the corner fall-off compares the mean of each corner box with
    the mean within ``2 * smoothing + 2`` binned px of the centre.
    """
    from astropy.nddata import block_reduce
    from photutils.profiles import RadialProfile
    from scipy.ndimage import gaussian_filter

    img = np.asarray(data, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 8 * binning:
        raise StarloomError(f"vignetting: a 2-D flat of at least {8 * binning} px a side is "
                            f"needed, got shape {img.shape}")
    if binning > 1:
        img = block_reduce(img, binning, func=np.nanmean)
    img = np.where(np.isfinite(img), img, np.nanmedian(img))
    if smoothing > 0:
        img = gaussian_filter(img, smoothing, mode="nearest")
    peak = _quadratic_peak(img)
    source = "fit" if peak is not None else "image centre"
    cx, cy = peak if peak is not None else ((img.shape[1] - 1) / 2, (img.shape[0] - 1) / 2)
    yy, xx = np.indices(img.shape)
    near = (xx - cx) ** 2 + (yy - cy) ** 2 <= (2 * smoothing + 2) ** 2
    level = float(np.mean(img[near]))
    if not level > 0:
        raise StarloomError("vignetting: the flat is not positive at its centre")
    rel = img / level
    rmax = float(np.max(np.hypot(np.array([0, img.shape[1] - 1]) - cx,
                                 np.array([[0], [img.shape[0] - 1]]) - cy)))
    prof = RadialProfile(rel, (cx, cy), np.arange(0.0, rmax + 1.0))
    box = max(1, int(corner_size * min(img.shape)))
    corners = {"bottom_left": rel[:box, :box], "bottom_right": rel[:box, -box:],
               "top_left": rel[-box:, :box], "top_right": rel[-box:, -box:]}
    falloff = {k: float(100.0 * (1.0 - np.mean(v))) for k, v in corners.items()}
    scale = binning
    centre = ((cx + 0.5) * scale - 0.5, (cy + 0.5) * scale - 0.5)
    return Vignetting(centre=centre, centre_source=source, radius=prof.radius * scale,
                      profile=np.asarray(prof.profile), corner_falloff=falloff, relative=rel,
                      binning=binning)


def plot_vignetting(path, v: Vignetting, *, dpi: int = 100):
    """Contour map of the relative illumination and its radial profile, side by side."""
    from .plots import _figure

    fig = _figure((10, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    ny, nx = v.relative.shape
    extent = (-0.5, nx * v.binning - 0.5, -0.5, ny * v.binning - 0.5)
    im = ax.imshow(v.relative, origin="lower", cmap="viridis", extent=extent)
    cs = ax.contour(v.relative, levels=8, colors="white", linewidths=0.7, extent=extent)
    ax.clabel(cs, fmt="%.2f", fontsize=7)
    ax.plot(*v.centre, "r+", ms=12, label=f"optical centre ({v.centre_source})")
    ax.legend(fontsize=7, loc="upper right")
    fig.colorbar(im, ax=ax, label="relative illumination")
    ax.set_title("Flat, relative to the centre")
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.plot(v.radius, v.profile, "-", color="tab:blue")
    ax2.set_xlabel("distance from optical centre, px")
    ax2.set_ylabel("relative illumination")
    text = "\n".join(f"{k.replace('_', ' ')}: {-f:+.1f}%" for k, f in v.corner_falloff.items())
    ax2.text(0.03, 0.05, text, transform=ax2.transAxes, fontsize=8)
    ax2.grid(alpha=0.3)
    ax2.set_title("Radial profile, corner fall-off")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
