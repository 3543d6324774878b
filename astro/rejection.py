"""Per-pixel rejection and combination of one chunk of a stack, pixel-major.

The kernels of :mod:`starloom.astro.combiner`. A chunk arrives as ``(n_frames, n_pixels)`` and is
transposed once to pixel-major ``(n_pixels, n_frames)``: each pixel's values are then contiguous,
so NumPy sorts them with its vectorised small-array sort (x86-simd-sort), reductions over the
frame axis run along contiguous rows (the same summation for a pixel whatever the chunk around
it, which keeps results bit-identical for every band and chunk size), and a subset of pixels is a
cheap gather of whole rows.

After sorting, every rejection but linear-fit clipping keeps a contiguous index range ``[lo, hi)``
of each pixel's sorted values (clipping by value always does), so medians are index look-ups;
linear-fit clipping, percentile clipping and the generalized ESD test are in
:mod:`starloom.astro.rejection_fit`. The values rejected below and above the kept ones are
counted per pixel for the rejection map. Iterative clipping
revisits only the pixels whose range changed in the previous round: a pixel whose range did not
change has the same centre and spread next round, so it can never change again. With 3-sigma
bounds about one pixel in eight changes in the first round, so later rounds are cheap.
"""
from __future__ import annotations

import numpy as np

# Siril's winsorization constants (src/stacking/rejection_float.c): winsorize at 1.5 sigma,
# correct the winsorized standard deviation by 1.134, iterate until it changes by <= 0.05 %.
_WINSOR_CUT = 1.5
_WINSOR_CORRECTION = 1.134
_WINSOR_TOL = 5e-4
_WINSOR_MAX_INNER = 100


def combine_chunk(x, method, rejection, weights, sigma_low, sigma_high, maxiters, nlow, nhigh,
                  has_bad=True, dtype=None, percentile_low=0.2, percentile_high=0.1,
                  gesd_outliers=0.3, gesd_alpha=0.05, rejection_map=False):
    """Combine one chunk ``x`` of shape ``(n_frames, n_pixels)`` (NaN = bad value).

    Parameters
    ----------
    x : numpy.ndarray
        Values, frame-major; not modified.
    method, rejection, weights, sigma_low, sigma_high, maxiters, nlow, nhigh
        As :func:`starloom.astro.combiner.combine_bands` (``weights``: float64 array or None).
    has_bad : bool
        False when ``x`` is known to hold no NaN (skips counting them).
    dtype : numpy dtype, optional
        Float dtype the values are worked in (default: ``x``'s); integers are converted here.
    percentile_low, percentile_high, gesd_outliers, gesd_alpha
        As :func:`starloom.astro.combiner.combine_bands`.
    rejection_map : bool
        Also count the rejected values of each pixel.

    Returns
    -------
    out, unc : numpy.ndarray of float64, shape (n_pixels,)
        Combined value and its uncertainty (NaN where nothing was kept).
    count : numpy.ndarray of int, shape (n_pixels,)
        Values kept per pixel.
    rejected : tuple of two numpy.ndarray of int, shape (n_pixels,), or None
        With ``rejection_map``: valid values rejected below and above the kept ones (masked
        values are not counted); otherwise None.
    """
    n = x.shape[0]
    work = dtype or x.dtype
    if x.dtype.kind in "iu" and rejection != "winsorized":
        # Integers (uint16 camera frames) are sorted as they are, 1.4x faster than float32,
        # and only converted (exactly) in the float64 statistics; winsorizing needs floats.
        work = x.dtype
    s = np.empty(x.shape[::-1], work)
    s[...] = x.T  # pixel-major (n_pixels, n_frames), converted in the same pass
    valid = (n - np.count_nonzero(np.isnan(s), axis=1)) if has_bad else np.full(len(s), n)
    w = None
    if weights is not None and method != "median":
        w = np.broadcast_to(weights, s.shape)
    if rejection == "none" and method != "median":
        # no order statistics needed: skip the sort; bad values are zeroed by the keep mask
        keep = ~np.isnan(s) if has_bad else None
        ref = np.zeros(len(s))
        split = (np.zeros_like(valid), np.zeros_like(valid)) if rejection_map else None
        return _finish(s, keep, valid, ref, w, method) + (split,)
    if w is None:
        s.sort(axis=1)  # NaN sorts last
    else:
        order = np.argsort(s, axis=1)  # weights must follow their values through the sort
        s = np.take_along_axis(s, order, axis=1)
        w = np.asarray(weights)[order]
    lo = np.zeros(len(s), np.intp)
    hi = valid.astype(np.intp)
    keep = None
    if rejection == "sigma_clip":
        lo, hi, stats = _sigma_clip_range(s, lo, hi, sigma_low, sigma_high, maxiters,
                                          full=not has_bad)
        if w is None and method != "median":
            ref, s1, s2 = stats
            split = _range_split(lo, hi, valid) if rejection_map else None
            return _result(ref, s1, s2, hi - lo, method) + (split,)
    elif rejection == "winsorized":
        lo, hi = _winsorized_range(s, lo, hi, sigma_low, sigma_high, maxiters)
    elif rejection == "minmax":
        lo = np.full_like(hi, nlow)
        hi = np.maximum(hi - nhigh, lo)
    elif rejection != "none":
        from . import rejection_fit as fit  # imports this module: not at the top

        if rejection == "percentile":
            lo, hi = fit.percentile_range(s, lo, hi, percentile_low, percentile_high)
        elif rejection == "gesd":
            lo, hi = fit.gesd_range(s, lo, hi, gesd_outliers, gesd_alpha)
        else:  # linear_fit: may keep a non-contiguous set
            keep = fit.linear_fit_keep(s, valid, sigma_low, sigma_high, maxiters)
            median = fit.masked_midpoint(s, keep)
            count = keep.sum(axis=1)
    if keep is None:
        keep = None if (not has_bad and rejection == "none") else _in_range(s, lo, hi)
        median, count = midpoint(s, lo, hi), hi - lo
        split = _range_split(lo, hi, valid) if rejection_map else None
    else:
        split = _mask_split(s, keep, valid, median) if rejection_map else None
    out, unc, count = _finish(s, keep, count, np.nan_to_num(median), w, method)
    if method == "median":
        out = np.where(count > 0, median, np.nan)
    return out, unc, count, split


def _range_split(lo, hi, valid):
    """Values rejected below and above each row's kept range ``[lo, hi)`` of ``valid``."""
    low = np.minimum(lo, valid)
    return low, valid - low - np.maximum(hi - lo, 0)


def _mask_split(s, keep, valid, median):
    """Valid values not kept, split into those below the kept median and the others."""
    rejected = (np.arange(s.shape[1]) < valid[:, None]) & ~keep
    with np.errstate(invalid="ignore"):
        low = np.count_nonzero(rejected & (s < median[:, None]), axis=1)
    return low, np.count_nonzero(rejected, axis=1) - low


def _finish(s, keep, count, ref, w, method):
    """Mean (or weighted mean, or sum) and uncertainty of the kept values of each row."""
    d = _deviations(s, keep, ref)
    s1 = d.sum(axis=1)
    s2 = np.einsum("ij,ij->i", d, d)
    if w is None:
        return _result(ref, s1, s2, count, method)
    w_kept = (w.sum(axis=1) if keep is None else np.where(keep, w, 0).sum(axis=1))
    w_dev = np.einsum("ij,ij->i", d, w)
    out, unc, count = _result(ref, s1, s2, count, method)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ref * w_kept + w_dev
        if method == "average":
            out = out / w_kept
    return np.where(count > 0, out, np.nan), unc, count


def _result(ref, s1, s2, count, method):
    """Combined value and uncertainty from sums of deviations from ``ref`` over ``count``
    values: mean (x count for ``sum``); std (ddof=0) / sqrt(count), x count for ``sum``, as
    ``ccdproc.combine``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = ref + s1 / count
        std = np.sqrt(np.maximum(s2 / count - (s1 / count) ** 2, 0))
        out = mean * count if method == "sum" else mean
        unc = std * np.sqrt(count) if method == "sum" else std / np.sqrt(count)
    return np.where(count > 0, out, np.nan), unc, count


def _deviations(s, keep, ref):
    """``s - ref`` per row in float64, 0 where not kept (NaN included): float64 sums of these
    lose nothing to a large mean level, and the subtraction is exact (a float32 value minus a
    float64 centre is computed in float64)."""
    d = s.astype(np.float64)  # then a float64 subtraction: 2x faster than a mixed-type one
    d -= ref[:, None]
    if keep is not None:
        np.copyto(d, 0.0, where=~keep)
    return d


def _in_range(s, lo, hi):
    k = np.arange(s.shape[1])
    return (k >= lo[:, None]) & (k < hi[:, None])


def midpoint(s, lo, hi, full=False):
    """Median of the sorted values ``s[i, lo[i]:hi[i]]`` of each row (float64; NaN where empty);
    the mean of the two middle values for an even count, as ``numpy.median``. ``full``: every
    range is the whole row (two columns, no index arrays)."""
    n = s.shape[1]
    if full:
        return (s[:, (n - 1) // 2].astype(np.float64) + s[:, n // 2]) / 2
    rows = np.arange(len(s))
    m = lo + hi
    a = s[rows, np.clip((m - 1) // 2, 0, n - 1)].astype(np.float64)
    b = s[rows, np.clip(m // 2, 0, n - 1)]
    return np.where(hi > lo, (a + b) / 2, np.nan)


def _range_sums(s, lo, hi, cen, full):
    """Sums of the deviations from ``cen`` and of their squares over each row's range."""
    d = _deviations(s, None if full else _in_range(s, lo, hi), np.nan_to_num(cen))
    return np.einsum("ij->i", d), np.einsum("ij,ij->i", d, d)


def _round_bound(bound, dtype, up):
    """Round float64 bounds to ``dtype`` so comparisons in ``dtype`` give the float64 answer
    (astropy's fast sigma_clip compares float32 data with float64 bounds): ``x < b`` iff
    ``x < b'`` with b' the nearest value at or above b, ``x <= b`` iff ``x <= b''`` with b'' the
    nearest at or below. Integer data compare exactly with float64 bounds as they are."""
    if np.dtype(dtype).kind in "iu":
        return bound
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = bound.astype(dtype)
        off = rounded < bound if up else rounded > bound
        return np.where(off, np.nextafter(rounded, np.inf if up else -np.inf), rounded)


def _shrink(s, lo, hi, lower, upper, active, full=False):
    """Narrow each row's ``[lo, hi)`` to its sorted values within ``[lower, upper]``; values
    once rejected stay rejected (as astropy's sigma_clip). Returns the new range and which rows
    changed. A row changes iff its lowest kept value is below ``lower`` or its highest above
    ``upper`` (the values are sorted), so only those rows are counted. ``full``: every range
    is the whole row."""
    if full:
        lowest, highest = s[:, 0], s[:, -1]
    else:
        rows = np.arange(len(s))
        lowest = s[rows, np.minimum(lo, s.shape[1] - 1)]
        highest = s[rows, np.maximum(hi - 1, 0)]
    with np.errstate(invalid="ignore"):
        # float64 comparisons, as astropy's (float32 values are exact in float64)
        changed = active & ((lowest < lower) | (highest > upper))
        new_lo, new_hi = lo.copy(), hi.copy()
        c = np.flatnonzero(changed)
        if c.size:
            sub = s[c]
            below = np.count_nonzero(sub < _round_bound(lower[c], s.dtype, up=True)[:, None],
                                     axis=1)
            upto = np.count_nonzero(sub <= _round_bound(upper[c], s.dtype, up=False)[:, None],
                                    axis=1)
            new_lo[c] = np.maximum(lo[c], below)
            new_hi[c] = np.maximum(np.minimum(hi[c], upto), new_lo[c])
    return new_lo, new_hi, changed


def _sigma_clip_range(s, lo, hi, sigma_low, sigma_high, maxiters, full):
    """Iterated median/std clipping of the sorted rows ``s`` (astropy.stats.sigma_clip with
    cenfunc='median', stdfunc='std'), revisiting only the rows that changed.

    Returns the final ranges and, for every row, the median ``ref`` of its final range and the
    sums of deviations from it and of their squares (for the mean and standard deviation).
    ``full``: every range starts as the whole row (no NaN).
    """
    ref, s1, s2 = np.empty(len(s)), np.empty(len(s)), np.empty(len(s))
    idx = np.arange(len(s))  # rows still iterating
    sub, sub_lo, sub_hi = s, lo, hi
    for _ in range(maxiters):
        cnt = sub_hi - sub_lo
        with np.errstate(invalid="ignore", divide="ignore"):
            cen = midpoint(sub, sub_lo, sub_hi, full)
            t1, t2 = _range_sums(sub, sub_lo, sub_hi, cen, full)
            std = np.sqrt(np.maximum(t2 / cnt - (t1 / cnt) ** 2, 0))
        new_lo, new_hi, changed = _shrink(sub, sub_lo, sub_hi, cen - sigma_low * std,
                                          cen + sigma_high * std, cnt > 0, full)
        done = ~changed
        ref[idx[done]], s1[idx[done]], s2[idx[done]] = np.nan_to_num(cen[done]), t1[done], t2[done]
        lo[idx], hi[idx] = new_lo, new_hi
        keep = np.flatnonzero(changed)
        idx = idx[keep]
        if not idx.size:
            return lo, hi, (ref, s1, s2)
        sub, sub_lo, sub_hi, full = s[idx], lo[idx], hi[idx], False
    # rows still changing after maxiters rounds: their sums are of the previous range
    cen = np.nan_to_num(midpoint(sub, sub_lo, sub_hi))
    ref[idx] = cen
    s1[idx], s2[idx] = _range_sums(sub, sub_lo, sub_hi, cen, False)
    return lo, hi, (ref, s1, s2)


def _range_std(s, inr, cnt, cen, ddof):
    """Standard deviation (float64) of the values of each row of ``s`` where ``inr``."""
    d = _deviations(s, inr, np.nan_to_num(cen))
    s1 = d.sum(axis=1)
    s2 = np.einsum("ij,ij->i", d, d)
    return np.sqrt(np.maximum((s2 - s1 * s1 / cnt) / (cnt - ddof), 0))


def _winsorized_sigma(s, inr, cnt, cen):
    """Siril's robust sigma: 1.134 x the (ddof=1) std of the values winsorized at
    ``cen +/- 1.5 sigma``, iterated per row until it changes by at most 0.05 %."""
    sigma = _range_std(s, inr, cnt, cen, ddof=1)
    w = s
    done = ~np.isfinite(sigma)
    for _ in range(_WINSOR_MAX_INNER):
        lower = (cen - _WINSOR_CUT * sigma).astype(s.dtype)[:, None]
        upper = (cen + _WINSOR_CUT * sigma).astype(s.dtype)[:, None]
        w = np.clip(w, lower, upper)
        new = _WINSOR_CORRECTION * _range_std(w, inr, cnt, cen, ddof=1)
        converged = np.abs(new - sigma) <= _WINSOR_TOL * sigma
        sigma = np.where(done, sigma, new)  # Siril stops each pixel at its own convergence
        done |= converged | ~np.isfinite(new)
        if done.all():
            break
    return sigma


def _winsorized_range(s, lo, hi, sigma_low, sigma_high, maxiters):
    """Winsorized sigma clipping of the sorted rows ``s`` (Siril, rejection_float.c),
    revisiting only the rows that changed; a row with 3 or fewer values is not clipped."""
    idx = np.arange(len(s))
    sub, sub_lo, sub_hi = s, lo, hi
    for _ in range(maxiters):
        cnt = sub_hi - sub_lo
        with np.errstate(invalid="ignore", divide="ignore"):
            cen = midpoint(sub, sub_lo, sub_hi)
            sigma = _winsorized_sigma(sub, _in_range(sub, sub_lo, sub_hi), cnt, cen)
        new_lo, new_hi, changed = _shrink(sub, sub_lo, sub_hi, cen - sigma_low * sigma,
                                          cen + sigma_high * sigma, cnt > 3)
        lo[idx], hi[idx] = new_lo, new_hi
        idx = idx[changed]
        if not idx.size:
            break
        sub, sub_lo, sub_hi = s[idx], lo[idx], hi[idx]
    return lo, hi
