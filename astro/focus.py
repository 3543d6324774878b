"""Focus sweep: half-flux radius and FWHM per frame, and the V-curve (hyperbola) fit.

The half-flux radius (HFR) is the radius of the circle around a star's centroid holding half of
its background-subtracted flux: it stays defined for out-of-focus donuts, where a Gaussian FWHM
does not. Stars are found as connected sources (photutils segmentation), not as point sources,
so donuts are found too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import StarloomError

POSITION_KEYWORDS = ("FOCPOS", "FOCUSPOS")


def _robust_background(data: np.ndarray) -> tuple[float, float]:
    from astropy.stats import sigma_clipped_stats

    _, median, std = sigma_clipped_stats(data, sigma=3.0, maxiters=10)
    return float(median), float(std)


def _padding(data: np.ndarray) -> np.ndarray:
    """Rows and columns of one constant value: the padding of a sub-frame, not sky."""
    with np.errstate(invalid="ignore"):
        rows = np.nanmax(data, axis=1) == np.nanmin(data, axis=1)
        cols = np.nanmax(data, axis=0) == np.nanmin(data, axis=0)
    return rows[:, None] | cols[None, :]


def star_sizes(data: np.ndarray, *, detection_sigma: float = 3.0, min_area: int = 20,
               max_stars: int = 50, smoothing: float = 2.0) -> list[dict]:
    """Half-flux radius and FWHM of the sources of one frame, brightest first.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        The frame, ADU; NaN pixels and constant rows or columns (padding) are ignored.
    detection_sigma : float
        Detection threshold above the sigma-clipped background, in background sigma.
    min_area : int
        Minimum number of connected pixels of a source.
    max_stars : int
        Brightest sources measured.
    smoothing : float
        Sigma of the Gaussian the frame is smoothed with for detection, px: about a tenth of
        the largest donut keeps its ring one source.

    Returns
    -------
    list of dict
        Per source: ``x``, ``y`` (flux-weighted centroid, px, 0-based), ``flux`` (ADU, within
        the measuring radius), ``hfr`` (px; photutils ``CurveOfGrowth.calc_radius_at_ee(0.5)``)
        and ``fwhm`` (px; photutils ``psf.fit_fwhm``, a circular Gaussian fit; NaN when the fit
        fails or the star is a donut) and ``donut`` (bool: the radial profile peaks away from
        the centre, photutils ``RadialProfile``).

    Raises
    ------
    StarloomError
        When the frame is not 2-D.
    """
    from astropy.convolution import Gaussian2DKernel, convolve
    from photutils.segmentation import SourceCatalog, detect_sources

    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2:
        raise StarloomError(f"focus: a 2-D frame is needed, got shape {data.shape}")
    bad = ~np.isfinite(data) | _padding(data)
    work = np.where(bad, np.nanmedian(data), data)
    background, noise = _robust_background(work)
    work = work - background
    # Detection on a smoothed copy (photutils' recommended practice) keeps a faint donut's
    # ring in one piece; the noise of the smoothed image sets the threshold.
    smooth = convolve(work, Gaussian2DKernel(smoothing))
    _, smooth_noise = _robust_background(smooth)
    import warnings

    from photutils.utils import NoDetectionsWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        seg = detect_sources(smooth, detection_sigma * max(smooth_noise, 1e-12),
                             n_pixels=min_area, mask=bad)
    if seg is None:
        return []
    cat = SourceCatalog(work, seg, convolved_data=smooth, mask=bad)
    order = np.argsort(-np.nan_to_num(cat.segment_flux, nan=-np.inf))[:max_stars]
    stars = []
    for i in order:
        src = cat[int(i)]
        x, y = float(src.x_centroid), float(src.y_centroid)
        half = max(src.bbox.ixmax - src.bbox.ixmin, src.bbox.iymax - src.bbox.iymin)
        radius = max(3.0, 0.75 * half + 2.0)
        stars.append({"x": x, "y": y, **_star_profile(work, x, y, radius)})
    return stars


def _star_profile(work: np.ndarray, x: float, y: float, radius: float) -> dict:
    from photutils.profiles import CurveOfGrowth, RadialProfile
    from photutils.psf import fit_fwhm

    radii = np.arange(1.0, radius + 1.0)
    cog = CurveOfGrowth(work, (x, y), radii)
    flux = float(cog.profile[-1])
    hfr = np.nan
    if flux > 0 and np.all(np.isfinite(cog.profile)):
        cog.normalize(method="max")
        try:
            hfr = float(cog.calc_radius_at_ee(0.5))
        except ValueError:  # the curve is not monotonic near 0.5
            hfr = np.nan
    # A donut (the central obstruction's shadow out of focus) is brightest in a ring: no
    # Gaussian describes it, so it has no FWHM.
    radial = RadialProfile(work, (x, y), np.arange(0.0, radius + 1.0)).profile
    donut = bool(np.nanargmax(radial) >= 2)  # peak beyond the central 2 px
    fwhm = np.nan
    if not donut:
        try:
            box = int(2 * radius + 1) | 1
            with np.errstate(all="ignore"):
                fwhm = float(np.atleast_1d(fit_fwhm(work, xypos=(x, y), fit_shape=box))[0])
        except Exception:  # photutils raises several types when a fit cannot start
            fwhm = np.nan
        if not np.isfinite(fwhm) or fwhm <= 0:
            fwhm = np.nan
    return {"flux": flux, "hfr": hfr, "fwhm": fwhm, "donut": donut}


def focus_position(header, name: str, index: int,
                   keywords: tuple[str, ...] = POSITION_KEYWORDS) -> tuple[float, str]:
    """Focuser position of a frame and where it came from.

    The first of ``keywords`` present in ``header``; else the last number in the file name
    ``name`` (e.g. ``STAR_FOCUS_12`` -> 12, as focus runs are often numbered by step); else
    ``index``. Returns ``(position, source)`` with source ``"header:KEY"``, ``"file name"`` or
    ``"frame order"``.
    """
    for key in keywords:
        value = header.get(key)
        if value is not None:
            try:
                return float(value), f"header:{key}"
            except (TypeError, ValueError):
                pass
    numbers = re.findall(r"\d+(?:\.\d+)?", name)
    if numbers:
        return float(numbers[-1]), "file name"
    return float(index), "frame order"


@dataclass
class VCurveFit:
    """V-curve fitted to a focus sweep (see :func:`fit_vcurve`).

    Attributes: ``best`` and ``best_err`` (focuser units, 1-sigma from the fit covariance),
    ``a`` (the star size at best focus, px), ``b_left``/``b_right`` (focuser units: the arms'
    widths inside and outside of focus), ``rms`` (px, residual of the points fitted) and
    ``used`` (bool mask of the points fitted).
    """

    best: float
    best_err: float
    a: float
    b_left: float
    b_right: float
    rms: float
    used: np.ndarray

    def __call__(self, p):
        return hyperbola(np.asarray(p, dtype=float), self.a, self.b_left, self.b_right, self.best)


def hyperbola(p, a, b_left, b_right, c):
    """The V-curve model: ``a * sqrt(1 + ((p - c) / b)**2)``, ``b = b_left`` below ``c``."""
    b = np.where(p < c, b_left, b_right)
    return a * np.sqrt(1.0 + ((p - c) / b) ** 2)


def fit_vcurve(position, size, fit_range: float = 3.0) -> VCurveFit:
    """Fit the focus V-curve: a hyperbola of star size against focuser position.

    A defocused star's blur grows linearly with the focuser's distance from focus far from it
    and smoothly through the seeing-limited minimum, which a hyperbola describes (H. Kleijn,
    "Curve fitting focus using hyperbola", hnsky.org/hyperbola.htm, the model of ASTAP's and
    N.I.N.A.'s hyperbolic autofocus). The two arms get their own width, as FocusMax's V-curve
    gets its own left and right slopes (L. Weber and S. Brady, "Fast auto-focus method and
    software for CCD-based telescopes", 2001): real focusers (backlash, a tilted focal plane)
    rarely give symmetric arms. Only points up to ``fit_range`` times the smallest size are
    fitted, as autofocus tools keep to their "near focus" zone: far out, a donut's HFR no
    longer grows linearly. Least squares by ``scipy.optimize.curve_fit``.

    Parameters
    ----------
    position : array_like, shape (n,)
        Focuser positions (any unit, e.g. steps).
    size : array_like, shape (n,)
        HFR (or FWHM) per position, px; NaN values are left out.
    fit_range : float
        Points with a size above ``fit_range`` times the smallest are not fitted; 0: fit all.

    Returns
    -------
    VCurveFit

    Raises
    ------
    StarloomError
        Fewer than 4 points to fit, or the fit does not converge.
    """
    from scipy.optimize import curve_fit

    p = np.asarray(position, dtype=float)
    s = np.asarray(size, dtype=float)
    used = np.isfinite(p) & np.isfinite(s) & (s > 0)
    if used.any() and fit_range > 0:
        used &= s <= fit_range * np.min(s[used])
    if used.sum() < 4:
        raise StarloomError(f"focus: {int(used.sum())} frame(s) with a measured star size in the "
                            "fitted range; the V-curve fit needs at least 4")
    pu, su = p[used], s[used]
    i = int(np.argmin(su))
    span = float(np.ptp(pu)) or 1.0
    guess = (float(su[i]), span / 4.0, span / 4.0, float(pu[i]))
    lo = [1e-6, 1e-3 * span, 1e-3 * span, pu.min() - span / 2]
    hi = [np.inf, 10 * span, 10 * span, pu.max() + span / 2]
    try:
        popt, pcov = curve_fit(hyperbola, pu, su, p0=guess, bounds=(lo, hi), maxfev=20000)
    except (RuntimeError, ValueError) as e:
        raise StarloomError(f"focus: the V-curve fit did not converge ({e})") from None
    a, bl, br, c = (float(v) for v in popt)
    err = float(np.sqrt(pcov[3, 3])) if np.isfinite(pcov[3, 3]) else float("nan")
    rms = float(np.sqrt(np.mean((hyperbola(pu, a, bl, br, c) - su) ** 2)))
    return VCurveFit(best=c, best_err=err, a=a, b_left=bl, b_right=br, rms=rms, used=used)


def frame_focus_metrics(stars: list[dict]) -> dict:
    """Median HFR and FWHM over a frame's stars (NaN when none), and the star count."""
    def median(key):
        values = [s[key] for s in stars if np.isfinite(s[key])]
        return float(np.median(values)) if values else float("nan")

    return {"hfr": median("hfr"), "fwhm": median("fwhm"), "n_stars": len(stars)}


def plot_focus_curve(path, position, hfr, fwhm, fit: VCurveFit | None, *, dpi: int = 100):
    """Draw HFR and FWHM against focuser position with the fitted V-curve and best focus.

    Points left out of the fit are drawn hollow; the shaded band is best focus +- 1 sigma.
    Returns the written path (PNG, PDF or SVG by its suffix).
    """
    from .plots import _figure

    p, h, f = (np.asarray(v, dtype=float) for v in (position, hfr, fwhm))
    fig = _figure((7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    used = fit.used if fit is not None else np.isfinite(h)
    ax.plot(p[used], h[used], "o", color="tab:blue", label="HFR (fitted)")
    ax.plot(p[~used], h[~used], "o", mfc="none", color="tab:blue", label="HFR (not fitted)")
    ax.plot(p, f, "s", ms=4, color="tab:orange", label="FWHM (NaN on donuts)")
    if fit is not None:
        grid = np.linspace(np.nanmin(p), np.nanmax(p), 400)
        ax.plot(grid, fit(grid), "-", color="tab:blue", lw=1)
        ax.axvspan(fit.best - fit.best_err, fit.best + fit.best_err, color="tab:green", alpha=0.2)
        ax.axvline(fit.best, color="tab:green",
                   label=f"best focus {fit.best:.2f} +- {fit.best_err:.2f}")
    ax.set_xlabel("focuser position")
    ax.set_ylabel("star size, px")
    top = np.nanmax(np.concatenate([h[np.isfinite(h)], [1.0]]))
    ax.set_ylim(0, 1.1 * top)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
