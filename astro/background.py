"""Background gradient extraction (BGE): sample the sky between the stars, fit a smooth model.

The method is the sample-grid one of Siril's ``background_extraction.c`` (lock042/siril,
``src/algos/background_extraction.c``: a regular grid of square samples, each sample's value the
median of its box, samples brighter than the sky rejected, a polynomial or RBF surface through
the samples, subtracted or divided with the image's mean level added back) and of GraXpert
(Steffenhir/GraXpert: a grid of sample points whose values are box medians, interpolated with
RBF / thin-plate splines or kriging). Starloom's choices:

- stars and bright structure are masked first (photutils ``Background2D`` for a rough local sky
  and noise, ``detect_sources`` above ``mask_sigma`` noise, the segments dilated), so a box
  value is the sigma-clipped median of its sky pixels only (astropy ``sigma_clipped_stats``);
- a sample with too few sky pixels is dropped, and so is one that a robust polynomial fit of
  the luminance samples (astropy ``FittingWithOutlierRemoval``, sigma clipping of the sample
  residuals) marks as an outlier: the tolerance test of Siril, made relative to the gradient
  rather than to one global median so that a strong gradient does not reject its own samples;
- the model per channel is a 2-D polynomial of chosen degree (astropy ``Polynomial2D`` fitted
  by linear least squares with outlier removal) or a smoothing thin-plate spline (scipy
  ``RBFInterpolator``, evaluated on a coarse grid and interpolated bicubically to every pixel).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from .errors import ParamError, StarloomError

__all__ = ["BGEResult", "background_samples", "extract_background", "fit_background",
           "sky_mask"]

#: Minimum fraction of a sample box that must be sky (unmasked, finite) for the box to count.
MIN_SKY_FRACTION = 0.5
METHODS = ("polynomial", "rbf")
CORRECTIONS = ("subtract", "divide")
PEDESTALS = ("common", "per_channel", "zero")


@dataclass
class BGEResult:
    """What `extract_background` returns.

    Attributes
    ----------
    image : numpy.ndarray
        Corrected image, float32, the input's shape ((ny, nx) or (n, ny, nx)).
    model : numpy.ndarray
        Background model, float32, same shape.
    samples : astropy.table.Table
        One row per sample box: ``x``, ``y`` (0-based pixel centre), ``used`` (kept for the
        fit), ``sky_fraction``, and per channel ``value_<c>`` (box median) and ``model_<c>``.
    stats : dict
        ``n_samples``, ``n_used``, ``box_size``, per channel ``rms_before``/``rms_after`` (robust
        spread of the sample values before and after correction) and ``pedestal``.
    """

    image: np.ndarray
    model: np.ndarray
    samples: Table
    stats: dict


def _planes(data) -> np.ndarray:
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 2:
        return data[None]
    if data.ndim == 3:
        return data
    raise StarloomError(f"BGE needs a 2-D image or a (n, ny, nx) colour image, got shape {data.shape}")


def sky_mask(luminance, mask=None, *, box_size=64, mask_sigma=3.0, dilate=5, npixels=5):
    """Pixels that are not sky: stars and bright structure (dilated), masked and non-finite ones.

    Parameters
    ----------
    luminance : numpy.ndarray (ny, nx)
        Image to find the sources on (the mean of the channels of a colour image).
    mask : numpy.ndarray of bool (ny, nx), optional
        Pixels already known to be bad.
    box_size : int
        Box of photutils ``Background2D`` for the rough local sky and noise (px).
    mask_sigma : float
        Detection threshold above the local sky, in units of the local noise.
    dilate : int
        Radius (px) of the circular footprint the source segments are dilated with.
    npixels : int
        Minimum connected pixels of a source (photutils ``detect_sources``).

    Returns
    -------
    numpy.ndarray of bool (ny, nx)
        True where a pixel is not sky.
    """
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import detect_sources
    from photutils.utils import NoDetectionsWarning, circular_footprint

    bad = ~np.isfinite(luminance)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    ny, nx = luminance.shape
    box = int(max(8, min(box_size, ny // 2, nx // 2)))
    work = np.where(bad, np.nanmedian(luminance[~bad]), luminance)
    bkg = Background2D(work, box, filter_size=3, mask=bad, bkg_estimator=MedianBackground())
    with warnings.catch_warnings():  # a frame without sources is fine: all of it is sky
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segm = detect_sources(work - bkg.background, mask_sigma * bkg.background_rms,
                              n_pixels=npixels, mask=bad)
    if segm is None:
        return bad
    footprint = circular_footprint(int(dilate)) if dilate > 0 else None
    return bad | segm.make_source_mask(footprint=footprint)


def background_samples(planes, not_sky, box_size) -> Table:
    """Sigma-clipped medians of the sky pixels in a regular grid of square boxes.

    Parameters
    ----------
    planes : numpy.ndarray (n, ny, nx)
        Channels.
    not_sky : numpy.ndarray of bool (ny, nx)
        Pixels left out (`sky_mask`).
    box_size : int
        Side of a sample box (px); the grid of boxes is centred on the frame.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y``, ``sky_fraction``, ``value_0`` .. ``value_<n-1>`` (NaN when no sky), and
        ``used`` (sky fraction >= `MIN_SKY_FRACTION`).
    """
    from astropy.stats import sigma_clipped_stats

    n, ny, nx = planes.shape
    b = int(box_size)
    gy, gx = ny // b, nx // b
    if gy < 2 or gx < 2:
        raise ParamError("box_size", f"{b} px leaves fewer than 2x2 sample boxes on a "
                                     f"{nx}x{ny} image")
    y0, x0 = (ny - gy * b) // 2, (nx - gx * b) // 2

    def boxes(a):  # (..., gy, b, gx, b) -> (..., gy, gx, b*b)
        a = a[..., y0:y0 + gy * b, x0:x0 + gx * b]
        a = a.reshape(a.shape[:-2] + (gy, b, gx, b)).swapaxes(-3, -2)
        return a.reshape(a.shape[:-2] + (b * b,))

    m = boxes(not_sky)
    frac = 1.0 - m.mean(axis=-1)
    table = Table()
    yy, xx = np.mgrid[0:gy, 0:gx]
    table["x"] = (x0 + (xx + 0.5) * b - 0.5).ravel()
    table["y"] = (y0 + (yy + 0.5) * b - 0.5).ravel()
    table["sky_fraction"] = frac.ravel()
    for c in range(n):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-masked boxes give NaN
            _, med, _ = sigma_clipped_stats(boxes(planes[c]), mask=m, sigma=3.0, maxiters=5,
                                            axis=-1)
        table[f"value_{c}"] = np.where(frac > 0, np.asarray(med, dtype=float), np.nan).ravel()
    table["used"] = (table["sky_fraction"] >= MIN_SKY_FRACTION) & np.isfinite(table["value_0"])
    return table


def _norm_xy(x, y, shape):
    """Pixel coordinates scaled to [-1, 1] (a well-conditioned polynomial basis)."""
    ny, nx = shape
    return (2.0 * np.asarray(x) / max(nx - 1, 1) - 1.0, 2.0 * np.asarray(y) / max(ny - 1, 1) - 1.0)


def _poly_fit(x, y, v, degree, sigma):
    """Polynomial2D fitted by linear least squares with sigma-clipped outlier removal."""
    from astropy.modeling import fitting, models
    from astropy.stats import sigma_clip

    fitter = fitting.FittingWithOutlierRemoval(fitting.LinearLSQFitter(), sigma_clip,
                                               niter=5, sigma=sigma)
    model, outliers = fitter(models.Polynomial2D(degree), x, y, v)
    return model, np.asarray(np.ma.getmaskarray(outliers), dtype=bool)


def reject_outlier_samples(samples: Table, shape, degree=2, sigma=2.5) -> Table:
    """Mark samples that sit on residual structure as unused (robust luminance fit).

    The luminance (mean of the channels) of the used samples is fitted with a polynomial of
    ``degree`` (at most 2) with sigma clipping; clipped samples get ``used = False``.
    """
    values = np.mean([samples[c] for c in samples.colnames if c.startswith("value_")], axis=0)
    used = np.asarray(samples["used"], dtype=bool)
    if used.sum() < 6:
        return samples
    x, y = _norm_xy(samples["x"], samples["y"], shape)
    _, out = _poly_fit(x[used], y[used], values[used], min(int(degree), 2), sigma)
    idx = np.flatnonzero(used)
    samples["used"][idx[out]] = False
    return samples


def fit_background(samples: Table, shape, *, method="polynomial", degree=2, smoothing=0.1,
                   channel=0) -> np.ndarray:
    """Smooth background model of one channel through its used samples.

    Parameters
    ----------
    samples : astropy.table.Table
        From `background_samples` (columns ``x``, ``y``, ``used``, ``value_<channel>``).
    shape : tuple of int
        ``(ny, nx)`` of the model.
    method : {'polynomial', 'rbf'}
        'polynomial': astropy ``Polynomial2D`` of ``degree`` (linear least squares, samples off
        by more than 3 sigma dropped iteratively); 'rbf': scipy ``RBFInterpolator`` with a
        thin-plate-spline kernel (Duchon 1977) and ``smoothing`` (in units of the sample
        values' variance, so 0 interpolates exactly).
    degree : int
        Polynomial degree (1..4, as Siril offers).
    smoothing : float
        RBF smoothing (>= 0).
    channel : int
        Which ``value_<channel>`` column to fit.

    Returns
    -------
    numpy.ndarray (ny, nx), float64

    Raises
    ------
    StarloomError
        Too few usable samples for the model.
    """
    used = np.asarray(samples["used"], dtype=bool)
    v = np.asarray(samples[f"value_{channel}"], dtype=float)[used]
    x, y = _norm_xy(np.asarray(samples["x"])[used], np.asarray(samples["y"])[used], shape)
    need = (degree + 1) * (degree + 2) // 2 + 1 if method == "polynomial" else 4
    if len(v) < need:
        raise StarloomError(f"BGE: only {len(v)} usable background samples, {method} needs at "
                            f"least {need}; use smaller boxes (box_size), a lower degree or a "
                            f"lower mask dilation")
    ny, nx = shape
    if method == "polynomial":
        model, _ = _poly_fit(x, y, v, int(degree), 3.0)
        gx, gy = _norm_xy(np.arange(nx), np.arange(ny), shape)
        return model(gx[None, :], gy[:, None])
    from scipy.interpolate import RBFInterpolator, RectBivariateSpline

    scale = float(np.std(v)) or 1.0
    rbf = RBFInterpolator(np.column_stack([x, y]), (v - v.mean()) / scale,
                          kernel="thin_plate_spline", smoothing=float(smoothing) * len(v))
    cx = np.linspace(-1.0, 1.0, min(nx, 96))
    cy = np.linspace(-1.0, 1.0, min(ny, 96))
    grid = np.stack(np.meshgrid(cx, cy, indexing="ij"), axis=-1).reshape(-1, 2)
    coarse = rbf(grid).reshape(len(cx), len(cy)) * scale + v.mean()
    gx, gy = _norm_xy(np.arange(nx), np.arange(ny), shape)
    return RectBivariateSpline(cx, cy, coarse, kx=3, ky=3)(gx, gy).T


def _robust_spread(values) -> float:
    from astropy.stats import mad_std

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(mad_std(values)) if len(values) else float("nan")


def _check_params(method, correction, pedestal, degree, box_size, smoothing):
    if method not in METHODS:
        raise ParamError("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    if correction not in CORRECTIONS:
        raise ParamError("correction", f"must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    if pedestal not in PEDESTALS:
        raise ParamError("pedestal", f"must be one of {', '.join(PEDESTALS)}, got {pedestal!r}")
    if not 0 <= int(degree) <= 6:
        raise ParamError("degree", f"must be 0..6, got {degree}")
    if box_size is not None and box_size < 4:
        raise ParamError("box_size", f"must be >= 4 px, got {box_size}")
    if smoothing < 0:
        raise ParamError("smoothing", f"must be >= 0, got {smoothing}")


def extract_background(data, mask=None, *, method="polynomial", degree=2, smoothing=0.1,
                       box_size=None, samples_per_line=20, correction="subtract",
                       pedestal="common", mask_sigma=3.0, dilate=5) -> BGEResult:
    """Fit and remove a smooth background (light pollution gradient, vignetting) per channel.

    Parameters
    ----------
    data : array_like (ny, nx) or (n, ny, nx)
        Linear image, mono or planar colour (e.g. RGB (3, ny, nx)).
    mask : array_like of bool, optional
        Bad pixels ((ny, nx), or (n, ny, nx): any channel masked masks the pixel).
    method : {'polynomial', 'rbf'}
        Surface model, see `fit_background`.
    degree : int
        Polynomial degree.
    smoothing : float
        RBF smoothing.
    box_size : int, optional
        Sample box side (px); default: the longer side / ``samples_per_line``.
    samples_per_line : int
        Boxes along the longer side when ``box_size`` is not given (Siril's "samples per line").
    correction : {'subtract', 'divide'}
        'subtract' for additive gradients (light pollution, moon), 'divide' for multiplicative
        ones (vignetting left by missing flats): ``data / model`` (Siril's two corrections).
    pedestal : {'common', 'per_channel', 'zero'}
        Level added back after subtraction (or multiplied in after division): 'common' is one
        level for every channel, the mean of the channels' model medians, which leaves a
        neutral (grey) background; 'per_channel' keeps each channel's own median level (as
        Siril, which adds back each channel's mean); 'zero' leaves the sky at 0 (1 for divide).
    mask_sigma, dilate : float, int
        Source masking, see `sky_mask`.

    Returns
    -------
    BGEResult

    Raises
    ------
    ParamError
        A parameter out of range (named).
    StarloomError
        The image has the wrong number of dimensions or too few sky samples.
    """
    _check_params(method, correction, pedestal, degree, box_size, smoothing)
    planes = _planes(data)
    n, ny, nx = planes.shape
    bad = None
    if mask is not None:
        bad = np.asarray(mask, dtype=bool)
        bad = bad.any(axis=0) if bad.ndim == 3 else bad
    b = int(box_size) if box_size else max(8, max(ny, nx) // max(int(samples_per_line), 2))
    lum = planes.mean(axis=0)
    not_sky = sky_mask(lum, bad, box_size=2 * b, mask_sigma=mask_sigma, dilate=dilate)
    samples = reject_outlier_samples(background_samples(planes, not_sky, b), (ny, nx),
                                     degree=max(int(degree), 1))
    model = np.empty_like(planes)
    for c in range(n):
        model[c] = fit_background(samples, (ny, nx), method=method, degree=degree,
                                  smoothing=smoothing, channel=c)
    levels = np.nanmedian(model.reshape(n, -1), axis=1)
    if correction == "divide" and np.any(model <= 0):
        raise StarloomError("BGE: the background model reaches zero or below; 'divide' needs a "
                            "positive background (use correction='subtract')")
    level = {"common": np.full(n, levels.mean()), "per_channel": levels,
             "zero": np.zeros(n) if correction == "subtract" else np.ones(n)}[pedestal]
    if correction == "subtract":
        out = planes - model + level[:, None, None]
    else:
        scale = level if pedestal != "zero" else np.ones(n)
        out = planes / (model / levels[:, None, None]) * (scale / levels)[:, None, None]
    return BGEResult(*_finish(data, out, model, samples, planes, not_sky, b, level))


def _finish(data, out, model, samples, planes, not_sky, box_size, level):
    """Per-channel sample columns of the model and flatness statistics; input shape restored."""
    n, ny, nx = planes.shape
    ix = np.clip(np.rint(samples["x"]).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(samples["y"]).astype(int), 0, ny - 1)
    used = np.asarray(samples["used"], dtype=bool)
    stats = {"n_samples": len(samples), "n_used": int(used.sum()), "box_size": int(box_size),
             "pedestal": [float(v) for v in level], "channels": []}
    after = background_samples(out, not_sky, box_size)
    for c in range(n):
        samples[f"model_{c}"] = model[c][iy, ix]
        v_before = np.asarray(samples[f"value_{c}"])[used]
        v_after = np.asarray(after[f"value_{c}"])[used]
        stats["channels"].append({"rms_before": _robust_spread(v_before),
                                  "rms_after": _robust_spread(v_after),
                                  "model_min": float(np.nanmin(model[c])),
                                  "model_max": float(np.nanmax(model[c]))})
    if np.ndim(data) == 2:
        out, model = out[0], model[0]
    return out.astype(np.float32), model.astype(np.float32), samples, stats


def plot_bge(path, data, model, corrected, samples: Table, *, title=""):
    """Three panels: the image with its background samples, the model, the corrected image.

    Parameters
    ----------
    path : path-like
        PNG file.
    data, model, corrected : numpy.ndarray (ny, nx) or (n, ny, nx)
        Input, background model and result (colour images are shown by their channel mean).
    samples : astropy.table.Table
        `background_samples` table (``x``, ``y``, ``used``).
    title : str
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def grey(a):
        a = np.asarray(a, dtype=float)
        return a.mean(axis=0) if a.ndim == 3 else a

    fig = Figure(figsize=(13, 4.2))
    FigureCanvasAgg(fig)
    img = grey(data)
    lo, hi = np.nanpercentile(img, [1, 99])
    used = np.asarray(samples["used"], dtype=bool)
    panels = (("image and samples", img, (lo, hi)), ("background model", grey(model), None),
              ("corrected", grey(corrected), None))
    for i, (name, a, lim) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        if lim is None:
            lim = np.nanpercentile(a, [1, 99])
        im = ax.imshow(a, origin="lower", cmap="gray", vmin=lim[0], vmax=lim[1])
        if i == 0:
            ax.plot(samples["x"][used], samples["y"][used], "g+", ms=5, label="used")
            ax.plot(samples["x"][~used], samples["y"][~used], "rx", ms=4, label="rejected")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
