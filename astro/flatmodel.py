"""A flat-field model from many flats: per-pixel factors, their uncertainty, what was excluded,
and a split-half validation.

Method (after AstroPath's batch flat-field, AstroPathJHU/AstroPathPipeline,
``astropath/hpfs/flatfield``: a mean of many images, normalised to mean 1 per layer, with its
standard error, masks and a split-half test of how much it flattens an independent mean):

1. Each flat is bias- and dark-subtracted (the dark of the nearest exposure scaled by the
   exposure ratio) and divided by its own median, separately in each CFA channel (the four
   sub-planes of a Bayer mosaic, see :mod:`starloom.astro.cfa`; one channel for mono frames).
   Frames too dark, with too many saturated pixels, or whose illumination pattern (16x16 block
   means) departs from the others' by more than 5 robust standard deviations are excluded.
2. The normalised frames are averaged pixel by pixel with sigma clipping
   (:func:`starloom.astro.combiner.combine_bands`, as ``ccdproc.combine``), saturated values
   left out. The factor of a pixel is that mean divided by the mean of its channel; its
   uncertainty is the standard error of the mean, ``s / sqrt(n)`` with the sample standard
   deviation ``s`` (ddof = 1) over the ``n`` values kept.
3. Pixels saturated in any frame, of response below ``min_factor``, or whose uncertainty is
   above ``noisy_factor`` times their channel's median uncertainty (pixels that flicker from
   frame to frame) are masked.
4. Split-half validation: the usable frames are split at random (seeded) into two halves; a
   model built from one half divides the mean of the other half. The standard deviation of the
   mean-relative intensities of that mean, per channel, before and after, says how much of
   the illumination variation (vignetting, dust, pixel response) the model removes; what is
   left is the noise of the two half means.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from .calibration import pick_by_exposure
from .cfa import cfa_pattern
from .combiner import combine_bands
from .errors import StarloomError
from .frames import FrameSeries

__all__ = ["FlatModelOptions", "FlatModel", "channel_sites", "build_flat_model", "channel_statistics",
           "split_half_validation", "FLAG_SATURATED", "FLAG_LOW", "FLAG_NOISY", "FLAG_NO_DATA"]

FLAG_SATURATED, FLAG_LOW, FLAG_NOISY, FLAG_NO_DATA = 1, 2, 4, 8
BLOCKS = 16  # the illumination pattern of a frame, for outlier frames: BLOCKS x BLOCKS means
BIN = 8  # block size (channel pixels) of the binned validation statistics


@dataclass
class FlatModelOptions:
    """Parameters of :func:`build_flat_model` (units: ADU for levels).

    Attributes
    ----------
    saturation : float
        Raw values at or above this are saturated, ADU.
    max_saturated : float
        Largest fraction of saturated pixels in a usable frame.
    min_level : float
        Smallest median level of a usable frame after bias/dark subtraction, ADU.
    min_factor : float
        Pixels of a smaller relative response are masked (dead or shadowed).
    noisy_factor : float
        Pixels with an uncertainty above this many times their channel's median are masked.
    sigma_low, sigma_high : float
        Sigma-clipping bounds (in standard deviations) when averaging the frames.
    outlier_sigma : float
        Frames whose illumination pattern departs from the median pattern by more than this
        many robust (1.4826 MAD) standard deviations, and by more than 1 %, are excluded.
    pattern : str
        'auto' (BAYERPAT from the header, one channel without it), 'none' (one channel), or a
        CFA pattern relative to numpy [0, 0].
    flicker_rows : bool
        Divide each frame's rows (per channel) by their ratio to one smooth vertical profile,
        a degree-4 least-squares polynomial of the median row profile of the usable frames: a
        light that flickers during a rolling-shutter CMOS readout leaves horizontal bands,
        tens of rows apart, that are no property of the sensor (the ASI120 flats: +-10 %,
        period about 72 rows, nearly in phase from frame to frame). Every frame then has the
        same smooth vertical profile, so the split-half validation tests only the horizontal
        and pixel-scale structure; a fixed row-to-row gain pattern of the sensor is not
        corrected either.
    """

    saturation: float = 60000.0
    max_saturated: float = 0.01
    min_level: float = 100.0
    min_factor: float = 0.3
    noisy_factor: float = 5.0
    sigma_low: float = 3.0
    sigma_high: float = 3.0
    outlier_sigma: float = 5.0
    pattern: str = "auto"
    flicker_rows: bool = False


@dataclass
class FlatModel:
    """A flat-field model.

    Attributes
    ----------
    factors : ndarray (ny, nx) float32
        Relative response, mean 1 in each channel; a frame is corrected by dividing by it.
    uncertainty : ndarray (ny, nx) float32
        Standard error of ``factors``.
    flags : ndarray (ny, nx) uint8
        Why a pixel is excluded: ``FLAG_SATURATED | FLAG_LOW | FLAG_NOISY | FLAG_NO_DATA``.
    rejected : ndarray (ny, nx) int16
        Values rejected by sigma clipping at each pixel (informative, not excluded).
    frames : astropy.table.Table
        One row per input frame: name, path, EXPTIME, DATE-OBS, level (median after
        subtraction, ADU), saturated fraction, pattern deviation (RMS of its 16x16 block
        means relative to the median pattern), row flicker (RMS of its rows' medians relative
        to the smooth vertical profile: the bands ``flicker_rows`` removes), used, reason.
    channels : dict
        Channel name -> (row offset, column offset, step): ``{'mono': (0, 0, 1)}`` or the
        four CFA sub-planes ``R``, ``G1``, ``G2``, ``B``.
    pattern : str or None
        CFA pattern used.
    used : list of int
        Indices of the frames the model averages.
    """

    factors: np.ndarray
    uncertainty: np.ndarray
    flags: np.ndarray
    rejected: np.ndarray
    frames: Table
    channels: dict
    pattern: str | None = None
    used: list[int] = field(default_factory=list)
    #: The frames' calibration and levels, reused by :func:`split_half_validation`.
    calibrator: object = field(default=None, repr=False)

    @property
    def mask(self) -> np.ndarray:
        return self.flags != 0


def channel_sites(pattern: str | None) -> dict[str, tuple[int, int, int]]:
    """Sub-lattices of the channels: ``{name: (dy, dx, step)}``; names as
    :func:`starloom.astro.cfa.subplanes` (``R``, ``G1``, ``G2``, ``B``) or ``mono``."""
    if not pattern:
        return {"mono": (0, 0, 1)}
    out, greens = {}, 0
    for k, colour in enumerate(pattern):
        if colour == "G":
            greens += 1
            colour = f"G{greens}"
        out[colour] = (k // 2, k % 2, 2)
    return out


def _view(a, site):
    dy, dx, step = site
    return a[..., dy::step, dx::step]


def _pattern(series: FrameSeries, option: str) -> str | None:
    if option == "none":
        return None
    header = series.refs[0].header()
    if option == "auto" and not str(header.get("BAYERPAT", "") or "").strip():
        return None
    return cfa_pattern(header, option, shape=series.shape, name=series.refs[0].name)


class _Calibrator:
    """Bias and scaled dark of each frame, and its per-channel levels (a band transform)."""

    def __init__(self, series, bias, darks, channels, saturation, shape):
        self.channels, self.saturation = channels, saturation
        self.bias = None if bias is None else np.asarray(bias.data, np.float32)
        self.darks, self.ratios, self.levels = {}, [], []
        self.row_gain: list[np.ndarray | None] = [None] * len(series)
        self.sat_count = np.zeros(shape, np.int16)  # frames saturated, of the last combine
        for ref in series.refs:
            j, ratio = None, 0.0
            if darks is not None and len(darks):
                j = pick_by_exposure(darks, ref.meta.get("EXPTIME"))
                if j not in self.darks:
                    self.darks[j] = np.asarray(darks[j].data, np.float32)
                t_dark, t_flat = darks.refs[j].meta.get("EXPTIME"), ref.meta.get("EXPTIME")
                ratio = t_flat / t_dark if t_dark and t_flat else 1.0
            self.ratios.append((j, ratio))

    def subtract(self, i, raw, rows=slice(None)):
        out = raw.astype(np.float32, copy=True)
        if self.bias is not None:
            out -= self.bias[rows]
        j, ratio = self.ratios[i]
        if j is not None:
            out -= ratio * self.darks[j][rows]
        return out

    def level_rows(self, i, y0, y1, nx):
        """Per-pixel level of frame ``i`` on rows y0:y1 (its channel's median)."""
        tile = np.ones((2, 2), np.float32) * self.levels[i].get("mono", 1.0)
        for name, (dy, dx, step) in self.channels.items():
            if step == 2:
                tile[dy, dx] = self.levels[i][name]
        out = tile[np.arange(y0, y1)[:, None] % 2, np.arange(nx)[None, :] % 2]
        if self.row_gain[i] is not None:  # (ny, 2): by row, for even and odd columns
            out = out * self.row_gain[i][y0:y1][:, np.arange(nx) % 2]
        return out

    def __call__(self, i, y0, y1, band):
        """Band transform: subtract, normalise by the channel levels, NaN where saturated."""
        rows = slice(y0, y1)
        sat = band >= self.saturation
        out = self.subtract(i, band, rows) / self.level_rows(i, y0, y1, band.shape[-1])
        out[sat] = np.nan
        self.sat_count[rows] += sat
        return out


def _blocks(a: np.ndarray, n: int = BLOCKS) -> np.ndarray:
    ny, nx = a.shape
    by, bx = ny // n, nx // n
    return np.nanmean(a[:by * n, :bx * n].reshape(n, by, n, bx), axis=(1, 3))


def _row_profiles(norm: np.ndarray, channels: dict) -> np.ndarray:
    """Each channel's row profile (the median of each of its rows), ``(ny, 2)`` for even and
    odd columns: the channels of one CFA row are kept apart, their flicker differs with
    colour."""
    prof = np.ones((norm.shape[0], 2), np.float32)
    for dy, dx, step in channels.values():
        values = np.nanmedian(norm[dy::step, dx::step], axis=1)
        for col in ((dx,) if step == 2 else (0, 1)):
            prof[dy::step, col] = values
    return prof


def _smooth_rows(profile: np.ndarray, channels: dict, degree: int = 4) -> np.ndarray:
    """A least-squares polynomial (numpy.polynomial.Polynomial.fit) of each channel's rows
    of a ``(ny, 2)`` profile."""
    out = np.ones_like(profile)
    for dy, dx, step in channels.values():
        for col in ((dx,) if step == 2 else (0, 1)):
            y = np.arange(dy, profile.shape[0], step)
            p = profile[dy::step, col]
            good = np.isfinite(p)
            out[dy::step, col] = np.polynomial.Polynomial.fit(y[good], p[good], degree)(y)
    return out


def _frame_row(ref, i, cal, options, channels, patterns, profiles) -> dict:
    """Read frame ``i``: its levels (set on ``cal``), saturated fraction, illumination pattern
    and row profile (appended to ``patterns``, ``profiles``); its row of the frames table."""
    raw = ref.read().data
    if raw.ndim != 2:
        raise StarloomError(f"flat frame '{ref.name}' is not a 2-D mosaic or mono frame "
                            f"(shape {raw.shape})")
    sat = raw >= options.saturation
    sub = cal.subtract(i, raw)
    sub[sat] = np.nan
    levels = {name: float(np.nanmedian(_view(sub, site))) for name, site in channels.items()}
    cal.levels.append({k: (v if v > 0 else np.nan) for k, v in levels.items()})
    level = float(np.nanmedian(sub))
    norm = sub / cal.level_rows(i, 0, sub.shape[0], sub.shape[1])
    profiles.append(_row_profiles(norm, channels))
    if options.flicker_rows:
        norm /= profiles[-1][:, np.arange(norm.shape[1]) % 2]  # pattern test: no bands
    patterns.append(_blocks(norm))
    reason = ""
    if sat.mean() > options.max_saturated:
        reason = f"saturated ({100 * sat.mean():.1f} % of pixels)"
    elif not level >= options.min_level or not all(v > 0 for v in levels.values()):
        reason = f"too dark (level {level:.0f} ADU < {options.min_level:g})"
    return {"name": ref.name, "path": ref.path or "", "EXPTIME": ref.meta.get("EXPTIME"),
            "DATE-OBS": ref.meta.get("DATE-OBS") or "", "level": level,
            "saturated_fraction": float(sat.mean()), "reason": reason}


def _survey(series, cal, options, channels):
    """Pass 1: each frame's levels, saturated fraction and illumination pattern; which are
    usable (the rows of the frames table, with ``used`` and ``reason``)."""
    rows, patterns, profiles = [], [], []
    for i, ref in enumerate(series.refs):
        with warnings.catch_warnings():  # a fully saturated frame: all-NaN medians
            warnings.simplefilter("ignore", RuntimeWarning)
            rows.append(_frame_row(ref, i, cal, options, channels, patterns, profiles))
    ok = [i for i, r in enumerate(rows) if not r["reason"]]
    if ok:
        # One smooth vertical profile for every frame: fitted per frame, the polynomial's ends
        # follow each frame's bands and differ more than the vignetting they stand for.
        smooth = _smooth_rows(np.median(np.stack([profiles[i] for i in ok]), axis=0), channels)
        for i, prof in enumerate(profiles):
            gain = prof / smooth
            rows[i]["row_flicker"] = float(np.std(gain))  # NaN for a saturated frame
            if options.flicker_rows:
                cal.row_gain[i] = gain
    if ok:
        median = np.nanmedian(np.stack([patterns[i] for i in ok]), axis=0)
        with warnings.catch_warnings():  # the pattern of a fully saturated frame is NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            dev = np.array([float(np.sqrt(np.nanmean((p / median - 1) ** 2)))
                            for p in patterns])
        centre = np.median(dev[ok])
        spread = 1.4826 * np.median(np.abs(dev[ok] - centre))
        for i, r in enumerate(rows):
            r["pattern_deviation"] = float(dev[i])
            if i in ok and dev[i] > max(centre + options.outlier_sigma * spread, 0.01):
                r["reason"] = f"illumination pattern departs by {100 * dev[i]:.1f} %"
    for r in rows:
        r.setdefault("pattern_deviation", np.nan)
        r.setdefault("row_flicker", np.nan)
        r["used"] = not r["reason"]
    return rows


def _combine(series, cal, indices, options, progress=None):
    """Sigma-clipped mean of frames ``indices`` (normalised), its standard error (ddof=1),
    the number of values kept and the number rejected."""
    sub = FrameSeries([series.refs[i] for i in indices])
    reader = sub.band_reader(transform=lambda k, y0, y1, b: cal(indices[k], y0, y1, b))
    res = combine_bands(reader, len(indices), series.shape, method="average",
                        rejection="sigma_clip", sigma_low=options.sigma_low,
                        sigma_high=options.sigma_high, maxiters=5,
                        progress=progress)
    n = res.count.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        unc = np.where(n > 1, res.uncertainty * np.sqrt(n / np.maximum(n - 1, 1)), np.nan)
    return res.data, unc.astype(np.float32), res.count


def _normalise(data, unc, valid, channels):
    """Divide each channel by its mean over ``valid`` pixels (in place); the means."""
    means = {}
    for name, site in channels.items():
        d, u, v = _view(data, site), _view(unc, site), _view(valid, site)
        mean = float(np.mean(d[v])) if v.any() else np.nan
        d /= mean
        u /= mean
        means[name] = mean
    return means


def _model(series, cal, indices, options, channels, progress=None):
    cal.sat_count[:] = 0
    data, unc, count = _combine(series, cal, indices, options, progress)
    flags = np.zeros(data.shape, np.uint8)
    flags[cal.sat_count > 0] |= FLAG_SATURATED
    flags[(count == 0) | ~np.isfinite(data)] |= FLAG_NO_DATA
    _normalise(data, unc, flags == 0, channels)
    flags[np.isfinite(data) & (data < options.min_factor)] |= FLAG_LOW
    for site in channels.values():
        u, f = _view(unc, site), _view(flags, site)
        good = (f == 0) & np.isfinite(u)
        if good.any():
            f[good & (u > options.noisy_factor * np.median(u[good]))] |= FLAG_NOISY
    _normalise(data, unc, flags == 0, channels)  # mean 1 over the pixels kept
    rejected = (len(indices) - count - cal.sat_count).astype(np.int16)
    return data, unc, flags, rejected


def build_flat_model(series: FrameSeries, *, bias=None, darks: FrameSeries | None = None,
                     options: FlatModelOptions | None = None, progress=None) -> FlatModel:
    """Build a flat-field model from many flats (see the module docstring for the method).

    Parameters
    ----------
    series : FrameSeries
        Flat frames (raw ADU, 2-D mono or CFA mosaic), or mean sky images, all of one shape.
    bias : CCDData, optional
        Master bias subtracted from every frame.
    darks : FrameSeries, optional
        Bias-subtracted master darks; each frame gets the one of the nearest EXPTIME, scaled.
    options : FlatModelOptions, optional
    progress : callable(done, total), optional

    Returns
    -------
    FlatModel

    Raises
    ------
    StarloomError
        Fewer than 2 usable frames (the table of reasons is in the message), frames that are
        not 2-D, or an unknown CFA pattern.
    """
    options = options or FlatModelOptions()
    if len(series) < 2:
        raise StarloomError(f"a flat model needs at least 2 flats, got {len(series)}")
    pattern = _pattern(series, options.pattern)
    channels = channel_sites(pattern)
    cal = _Calibrator(series, bias, darks, channels, options.saturation, series.shape)
    rows = _survey(series, cal, options, channels)
    used = [i for i, r in enumerate(rows) if r["used"]]
    if len(used) < 2:
        why = "; ".join(f"{r['name']}: {r['reason']}" for r in rows if r["reason"])
        raise StarloomError(f"only {len(used)} usable flat(s) of {len(rows)}: {why}")
    data, unc, flags, rejected = _model(series, cal, used, options, channels, progress)
    names = ["name", "path", "EXPTIME", "DATE-OBS", "level", "saturated_fraction",
             "pattern_deviation", "row_flicker", "used", "reason"]
    table = Table(rows=[[r[k] if r[k] is not None else np.nan for k in names] for r in rows],
                  names=names)
    return FlatModel(data, unc, flags, rejected, table, channels, pattern, used, cal)


def _binned_std(image, site, size) -> float:
    """Standard deviation of the means of ``size`` x ``size`` blocks of a channel's
    sub-plane (NaN pixels left out): the large-scale variation without the pixel noise."""
    v = _view(image, site)
    ny, nx = (v.shape[0] // size) * size, (v.shape[1] // size) * size
    blocks = v[:ny, :nx].reshape(ny // size, size, nx // size, size)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        means = np.nanmean(blocks, axis=(1, 3))
    return float(np.nanstd(means))


def _mean_relative_std(image, valid, site) -> tuple[float, float]:
    v = _view(image, site)[_view(valid, site)]
    mean = float(np.mean(v))
    return mean, float(np.std(v / mean))


def split_half_validation(series: FrameSeries, model: FlatModel, seed: int = 0,
                          options: FlatModelOptions | None = None) -> tuple[Table, dict]:
    """Split-half test of a flat model (AstroPath's applied-flatfield test).

    The frames the model used are split at random (``numpy.random.default_rng(seed)``) into
    halves A (``n // 2`` frames) and B; a model is built from A with the same options, and the
    mean of B (normalised, as for the model) is divided by it.

    Parameters
    ----------
    series : FrameSeries
        The frames given to :func:`build_flat_model`.
    model : FlatModel
        Its result (for the frames used and their levels).
    seed : int
    options : FlatModelOptions, optional
        As given to :func:`build_flat_model`.

    Returns
    -------
    stats : astropy.table.Table
        One row per channel: ``channel``, ``n_compared`` (pixels), ``std_before``, ``std_after`` (standard
        deviation of the mean-relative intensities of B's mean before and after dividing by
        A's model, dimensionless), ``reduction`` (before / after), and the same of the means
        of 8 x 8 blocks of the channel's pixels (``std_before_binned``, ``std_after_binned``,
        ``reduction_binned``): the illumination variation without most of the pixel noise of
        the two half means, which bounds the unbinned ``std_after`` from below.
    images : dict
        ``'before'`` (B's mean, mean-relative per channel), ``'after'`` (same, corrected),
        ``'valid'`` (bool, pixels compared), ``'half_a'``, ``'half_b'`` (frame indices).

    Raises
    ------
    StarloomError
        Fewer than 4 usable frames (each half needs 2).
    """
    options = options or FlatModelOptions()
    used = list(model.used)
    if len(used) < 4:
        raise StarloomError(f"split-half validation needs at least 4 usable flats, got "
                            f"{len(used)}")
    order = np.random.default_rng(seed).permutation(len(used))
    half_a = sorted(used[k] for k in order[:len(used) // 2])
    half_b = sorted(used[k] for k in order[len(used) // 2:])
    cal = model.calibrator
    factors_a, _, flags_a, _ = _model(series, cal, half_a, options, model.channels)
    cal.sat_count[:] = 0
    mean_b, _, count_b = _combine(series, cal, half_b, options)
    valid = (flags_a == 0) & (cal.sat_count == 0) & (count_b > 0) & np.isfinite(mean_b)
    after = mean_b / factors_a
    before_rel, after_rel = np.full_like(mean_b, np.nan), np.full_like(mean_b, np.nan)
    rows = []
    for name, site in model.channels.items():
        m0, s0 = _mean_relative_std(mean_b, valid, site)
        m1, s1 = _mean_relative_std(after, valid, site)
        _view(before_rel, site)[...] = _view(mean_b, site) / m0
        _view(after_rel, site)[...] = _view(after, site) / m1
        b0, b1 = (_binned_std(np.where(valid, img, np.nan), site, BIN)
                  for img in (before_rel, after_rel))
        rows.append([name, int(_view(valid, site).sum()), s0, s1, s0 / s1 if s1 > 0 else np.inf,
                     b0, b1, b0 / b1 if b1 > 0 else np.inf])
    stats = Table(rows=rows, names=["channel", "n_compared", "std_before", "std_after",
                                    "reduction", "std_before_binned", "std_after_binned",
                                    "reduction_binned"])
    return stats, {"before": before_rel, "after": after_rel, "valid": valid,
                   "half_a": half_a, "half_b": half_b}


def channel_statistics(model: FlatModel) -> Table:
    """Per channel: pixels kept and excluded, mean/std/min/max of the factors and the median
    uncertainty, over the pixels kept."""
    rows = []
    for name, site in model.channels.items():
        f, u, keep = _view(model.factors, site), _view(model.uncertainty, site), \
            _view(model.flags, site) == 0
        rows.append([name, int(keep.sum()), int((~keep).sum()), float(np.mean(f[keep])),
                     float(np.std(f[keep])), float(np.min(f[keep])), float(np.max(f[keep])),
                     float(np.median(u[keep]))])
    return Table(rows=rows, names=["channel", "n_pixels", "n_excluded", "factor_mean",
                                   "factor_std", "factor_min", "factor_max",
                                   "uncertainty_median"])
