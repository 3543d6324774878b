"""Image stacking (combination) computed in horizontal bands.

Only one band of rows of every frame is in memory at a time, so hundreds of frames can be stacked
with bounded memory. Each band is combined in small row chunks (about 2 MiB of stack) that stay in
cache. A chunk is sorted once along the frame axis; every rejection algorithm then reduces to
shrinking, per pixel, a contiguous index range ``[lo, hi)`` of the sorted values (clipping by
value always keeps a contiguous run of sorted values), so medians are index look-ups and
means/standard deviations are masked sums accumulated in float64. That is what makes it faster
than ``ccdproc.combine``, which recomputes statistics of masked float arrays.

Conventions
-----------
* A frame is 2-D ``(ny, nx)`` or planar 3-D ``(nc, ny, nx)`` (e.g. RGB ``(3, ny, nx)``). Bands
  are taken along the y axis, axis ``-2``, so a band of a 3-D frame is ``frame[:, y0:y1, :]``.
* Bad pixels are carried as NaN inside a band: input masks, NaN and +/-inf values all mean "this
  frame does not contribute at this pixel".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["CombineResult", "combine_bands", "combine_arrays", "band_height"]

METHODS = ("average", "median", "sum")
REJECTIONS = ("none", "sigma_clip", "winsorized", "minmax")

# Siril's winsorization constants (src/stacking/rejection_float.c): winsorize at 1.5 sigma,
# correct the winsorized standard deviation by 1.134, iterate until it changes by <= 0.05 %.
_WINSOR_CUT = 1.5
_WINSOR_CORRECTION = 1.134
_WINSOR_TOL = 5e-4
_WINSOR_MAX_INNER = 100
_CHUNK_BYTES = 2 * 2**20


@dataclass
class CombineResult:
    """Result of a combination; every array has the frame shape.

    Attributes
    ----------
    data : numpy.ndarray
        Combined image, dtype as requested (float32 by default). NaN where ``mask`` is True.
    mask : numpy.ndarray of bool
        True where no frame contributed (all values masked or rejected).
    uncertainty : numpy.ndarray
        Standard deviation (ddof=0) of the contributing values divided by sqrt(``count``), as
        ``ccdproc.combine`` computes for ``average``; for ``method="sum"`` it is multiplied by
        ``count`` (i.e. std * sqrt(count)), again as ccdproc does. Same dtype as ``data``, same
        units as the (scaled) input; NaN where ``mask`` is True.
    count : numpy.ndarray of int16
        Number of frames that contributed at each pixel.
    """

    data: np.ndarray
    mask: np.ndarray
    uncertainty: np.ndarray
    count: np.ndarray


def band_height(n_frames: int, shape: tuple[int, ...], itemsize: int, band_bytes: int) -> int:
    """Rows per band so that ``n_frames * rows * row_bytes <= band_bytes``.

    Parameters
    ----------
    n_frames : int
        Number of frames in the stack.
    shape : tuple of int
        Frame shape, ``(ny, nx)`` or ``(nc, ny, nx)``; bands run along axis -2.
    itemsize : int
        Bytes per value of the working dtype (4 for float32).
    band_bytes : int
        Budget for one band of the whole stack, in bytes.

    Returns
    -------
    int
        Band height in rows, between 1 and ``shape[-2]``. It is 1 when even a single row of all
        frames exceeds the budget (the budget cannot be honoured then).

    Notes
    -----
    ``band_bytes`` bounds the buffer holding one band of all frames, which :func:`combine_bands`
    allocates once. The statistics then work on row chunks of about 2 MiB, so the peak memory is
    about ``band_bytes`` plus the output arrays (3 x the frame size in float32 plus int16 and bool
    planes).
    """
    row_bytes = itemsize * int(np.prod(shape)) // shape[-2]
    rows = int(band_bytes) // max(1, n_frames * row_bytes)
    return max(1, min(shape[-2], rows))


def combine_bands(
    read_band: Callable[[int, int, int], tuple[np.ndarray, np.ndarray | None]],
    n_frames: int,
    shape: tuple[int, ...],
    *,
    method: str = "average",
    rejection: str = "none",
    sigma_low: float = 3.0,
    sigma_high: float = 3.0,
    maxiters: int | None = 5,
    nlow: int = 1,
    nhigh: int = 1,
    weights=None,
    scales=None,
    band_bytes: int = 256 * 2**20,
    dtype=np.float32,
    progress: Callable[[int, int], None] | None = None,
) -> CombineResult:
    """Combine ``n_frames`` frames of equal shape, reading them band by band.

    Parameters
    ----------
    read_band : callable
        ``read_band(i, y0, y1) -> (data, mask)`` returns rows ``y0:y1`` (along axis -2) of frame
        ``i``: ``data`` is a real ndarray of shape ``shape[:-2] + (y1 - y0, shape[-1])`` (any
        numeric dtype; cast to ``dtype``, in the frame's own units, e.g. ADU), ``mask`` is None or
        a boolean array of the same shape, True = bad pixel. It is called once per frame and band,
        frames in order, bands top to bottom.
    n_frames : int
        Number of frames, >= 1 and <= 32767 (``count`` is int16).
    shape : tuple of int
        Frame shape: ``(ny, nx)`` or planar ``(nc, ny, nx)``.
    method : {"average", "median", "sum"}
        How the surviving values of a pixel are combined.
    rejection : {"none", "sigma_clip", "winsorized", "minmax"}
        Per-pixel outlier rejection over the frame axis, done before combining:

        * ``"sigma_clip"``: as ``astropy.stats.sigma_clip(stack, axis=0, cenfunc="median",
          stdfunc="std", sigma_lower=sigma_low, sigma_upper=sigma_high, maxiters=maxiters)``:
          reject values below ``median - sigma_low * std`` or above
          ``median + sigma_high * std`` of the values still kept, repeat until nothing changes or
          ``maxiters`` rounds.
        * ``"winsorized"``: winsorized sigma clipping as in Siril
          (``src/stacking/rejection_float.c``; "Winsorized Sigma Clipping" in the Siril stacking
          docs, https://siril.readthedocs.io/en/stable/preprocessing/stacking.html) and PixInsight's
          ImageIntegration: values are winsorized (clamped) to ``median +/- 1.5 sigma`` and sigma
          re-estimated as 1.134 x the (ddof=1) standard deviation of the winsorized values until
          it changes by at most 0.05 %; then values beyond ``sigma_low`` / ``sigma_high`` robust
          sigmas from the median are rejected. Rounds repeat until nothing changes or
          ``maxiters`` rounds; a pixel with 3 or fewer values left is not clipped further
          (Siril's ``N > 3`` condition).
        * ``"minmax"``: drop the ``nlow`` lowest and ``nhigh`` highest valid values per pixel,
          as ``ccdproc.Combiner.clip_extrema`` (IRAF imcombine minmax).
    sigma_low, sigma_high : float
        Rejection thresholds in units of sigma (sigma_clip and winsorized).
    maxiters : int or None
        Maximum rejection rounds; None iterates until convergence.
    nlow, nhigh : int
        Values dropped per pixel by ``"minmax"``.
    weights : array_like, shape (n_frames,), optional
        Per-frame weights for ``"average"`` (weighted mean of the kept values, normalised by the
        sum of the weights of the kept values) and ``"sum"`` (weighted sum, as
        ``ccdproc.Combiner.sum_combine``). Ignored by ``"median"``. The uncertainty is
        unweighted, as in ccdproc.
    scales : array_like, shape (n_frames,), optional
        Multiplicative per-frame factors applied to the data before rejection and combination
        (ccdproc.combine's ``scale``, except ccdproc applies it after rejection).
    band_bytes : int
        Memory budget for one band of the raw stack, in bytes (see :func:`band_height`).
    dtype : numpy dtype
        Working and output float dtype (float32 by default; float64 for exact comparisons).
    progress : callable, optional
        Called as ``progress(done_rows, total_rows)`` after each band.

    Returns
    -------
    CombineResult
        ``data``, ``mask``, ``uncertainty`` (dtype ``dtype``) and ``count`` (int16), all of
        shape ``shape``.

    Raises
    ------
    ValueError
        If ``n_frames`` < 1 or > 32767, ``shape`` is not 2-D or 3-D, ``method`` or ``rejection``
        is unknown, ``nlow``/``nhigh`` are negative, ``weights`` or ``scales`` is not 1-D of
        length ``n_frames``, or ``read_band`` returns data or a mask of the wrong shape (the
        message names the frame index and band rows).

    Notes
    -----
    Masked and NaN/inf input values never enter the statistics. The median of an even number of
    values is the mean of the two middle ones (``numpy.median``). Without input masks the results
    equal ``ccdproc.combine`` with ``sigma_clip_func="median"``, ``sigma_clip_dev_func="std"``
    (ccdproc runs one sigma-clipping round: use ``maxiters=1`` to match) or
    ``clip_extrema=True``; the median's uncertainty differs (ccdproc uses 1.4826 MAD / sqrt(n)).
    """
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    if n_frames < 1:
        raise ValueError(f"combine needs at least one frame, got n_frames={n_frames}")
    if n_frames > np.iinfo(np.int16).max:
        raise ValueError(f"n_frames={n_frames} exceeds 32767 (count is int16)")
    if len(shape) not in (2, 3):
        raise ValueError(f"frame shape must be (ny, nx) or (nc, ny, nx), got {shape}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if rejection not in REJECTIONS:
        raise ValueError(f"unknown rejection {rejection!r}; expected one of {REJECTIONS}")
    if nlow < 0 or nhigh < 0:
        raise ValueError(f"nlow and nhigh must be >= 0, got nlow={nlow}, nhigh={nhigh}")
    weights = _per_frame(weights, n_frames, "weights")
    scales = _per_frame(scales, n_frames, "scales")
    if maxiters is None:
        maxiters = n_frames  # each round rejects at least one value, so this is convergence

    ny = shape[-2]
    data = np.empty(shape, dtype)
    unc = np.empty(shape, dtype)
    count = np.empty(shape, np.int16)
    rows = band_height(n_frames, shape, dtype.itemsize, band_bytes)
    # Statistics run on sub-bands of about _CHUNK_BYTES: small temporaries stay in cache and are
    # recycled by malloc, whereas band-sized ones cost page faults on every band (measured 2x).
    chunk = band_height(n_frames, shape, dtype.itemsize, _CHUNK_BYTES)
    buf = np.empty(n_frames * int(np.prod(shape[:-2] + (rows, shape[-1]))), dtype)
    for y0 in range(0, ny, rows):
        y1 = min(ny, y0 + rows)
        band_shape = shape[:-2] + (y1 - y0, shape[-1])
        stack = buf[:n_frames * int(np.prod(band_shape))].reshape((n_frames,) + band_shape)
        for i in range(n_frames):
            _fill_frame(stack[i], read_band(i, y0, y1), i, y0, y1)
            if scales is not None:
                stack[i] *= scales[i]
        for c0 in range(0, y1 - y0, chunk):
            rows_out = np.s_[..., y0 + c0:min(y1, y0 + c0 + chunk), :]
            data[rows_out], unc[rows_out], count[rows_out] = _combine_stack(
                stack[..., c0:c0 + chunk, :], method, rejection, weights, sigma_low,
                sigma_high, maxiters, nlow, nhigh)
        if progress is not None:
            progress(y1, ny)
    return CombineResult(data=data, mask=count == 0, uncertainty=unc, count=count)


def combine_arrays(arrays, masks=None, **kwargs) -> CombineResult:
    """Combine a list of in-memory frames; a convenience wrapper of :func:`combine_bands`.

    Parameters
    ----------
    arrays : sequence of numpy.ndarray
        Frames of equal shape ``(ny, nx)`` or ``(nc, ny, nx)``. A ``numpy.ma.MaskedArray``
        contributes its mask.
    masks : sequence of (numpy.ndarray of bool or None), optional
        Per-frame bad-pixel masks (True = bad), same shape as the frames.
    **kwargs
        Passed to :func:`combine_bands` (``method``, ``rejection``, ``weights``, ...).

    Returns
    -------
    CombineResult

    Raises
    ------
    ValueError
        As :func:`combine_bands`; also if ``masks`` has a different length than ``arrays``. A
        frame of the wrong shape is reported by index.
    """
    arrays = list(arrays)
    if masks is not None and len(masks) != len(arrays):
        raise ValueError(f"got {len(masks)} masks for {len(arrays)} frames")
    if not arrays:
        raise ValueError("combine needs at least one frame, got an empty list")

    def read_band(i, y0, y1):
        a = arrays[i]
        m = masks[i] if masks is not None else None
        if m is None and isinstance(a, np.ma.MaskedArray):
            m = np.ma.getmaskarray(a)
        if np.ndim(a) < 2:
            raise ValueError(f"frame {i} has shape {np.shape(a)}; frames must be 2-D or 3-D")
        band = np.ma.getdata(a)[..., y0:y1, :]
        return band, None if m is None else np.asarray(m)[..., y0:y1, :]

    return combine_bands(read_band, len(arrays), np.shape(arrays[0]), **kwargs)


def _per_frame(values, n_frames, name):
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n_frames,):
        raise ValueError(f"{name} must have shape ({n_frames},) (one per frame), "
                         f"got shape {values.shape}")
    return values


def _fill_frame(dest, band, i, y0, y1):
    """Copy one frame's band into ``dest``, turning masked and non-finite values into NaN."""
    try:
        values, mask = band
    except (TypeError, ValueError):
        raise ValueError(f"read_band({i}, {y0}, {y1}) must return (data, mask_or_None)") from None
    values = np.asarray(values)
    if values.shape != dest.shape:
        raise ValueError(f"read_band returned shape {values.shape} for frame {i}, rows "
                         f"{y0}:{y1}; expected {dest.shape}")
    dest[...] = values
    bad = ~np.isfinite(dest)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != dest.shape:
            raise ValueError(f"read_band returned a mask of shape {mask.shape} for frame {i}, "
                             f"rows {y0}:{y1}; expected {dest.shape}")
        bad |= mask
    dest[bad] = np.nan


def _combine_stack(x, method, rejection, weights, sigma_low, sigma_high, maxiters, nlow, nhigh):
    """Combine one chunk ``x`` of shape (n_frames, ...), NaN = bad, which is sorted in place.

    Returns data, uncertainty (float64) and count per pixel.
    """
    n = x.shape[0]
    w = None
    if weights is not None and method != "median":
        w = weights.reshape((n,) + (1,) * (x.ndim - 1))
    if rejection == "none" and method != "median":
        vals, keep = x, ~np.isnan(x)  # no order statistics needed: skip the sort
        count = np.count_nonzero(keep, axis=0)
        ref = np.zeros(x.shape[1:], x.dtype)
    else:
        hi = np.count_nonzero(~np.isnan(x), axis=0)
        if w is None:
            x.sort(axis=0)  # NaN sorts last
            vals = x
        else:
            # weights must follow their values through the sort
            order = np.argsort(x, axis=0)
            vals = np.take_along_axis(x, order, axis=0)
            w = w.reshape(n)[order]
        lo = np.zeros_like(hi)
        if rejection == "minmax":
            lo = np.full_like(hi, nlow)
            hi = np.maximum(hi - nhigh, lo)
        elif rejection == "sigma_clip":
            lo, hi = _sigma_clip_range(vals, lo, hi, sigma_low, sigma_high, maxiters)
        elif rejection == "winsorized":
            lo, hi = _winsorized_range(vals, lo, hi, sigma_low, sigma_high, maxiters)
        keep = _in_range(vals, lo, hi)
        count = hi - lo
        median = _midpoint(vals, lo, hi)
        ref = np.nan_to_num(median).astype(x.dtype)

    with np.errstate(invalid="ignore", divide="ignore"):
        d = _deviations(vals, keep, ref)
        s1 = d.sum(axis=0, dtype=np.float64)
        s2 = np.einsum("i...,i...->...", d, d, dtype=np.float64)
        mean = ref.astype(np.float64) + s1 / count
        std = np.sqrt(np.maximum(s2 / count - (s1 / count) ** 2, 0))
        if method == "median":
            out = median
        elif w is None:
            out = mean * count if method == "sum" else mean
        else:
            w_kept = np.where(keep, w, 0).sum(axis=0, dtype=np.float64)
            w_dev = np.einsum("i...,i...->...", d, np.broadcast_to(w, d.shape), dtype=np.float64)
            out = ref * w_kept + w_dev
            if method == "average":
                out = out / w_kept
        unc = std * np.sqrt(count) if method == "sum" else std / np.sqrt(count)
    out = np.where(count > 0, out, np.nan)
    return out, unc, count


def _deviations(vals, keep, ref):
    """``vals - ref`` where kept, 0 elsewhere, in the data dtype. ``ref`` (per pixel, same dtype)
    lies among the data, so the subtraction is exact for values within a factor 2 of it and
    float64 sums of the deviations lose nothing to a large mean level."""
    d = np.subtract(vals, ref)
    np.copyto(d, 0, where=~keep)
    return d


def _in_range(vals, lo, hi):
    k = np.arange(vals.shape[0]).reshape((-1,) + (1,) * (vals.ndim - 1))
    return (k >= lo) & (k < hi)


def _midpoint(s, lo, hi):
    """Median of the sorted values ``s[lo:hi]`` per pixel (float64; NaN where empty)."""
    m = lo + hi
    top = s.shape[0] - 1
    a = np.take_along_axis(s, np.clip((m - 1) // 2, 0, top)[None], axis=0)[0]
    b = np.take_along_axis(s, np.clip(m // 2, 0, top)[None], axis=0)[0]
    return np.where(hi > lo, (a.astype(np.float64) + b) / 2, np.nan)


def _range_std(s, inr, cnt, cen, ddof):
    """Standard deviation of the sorted values in ``inr`` (float64)."""
    d = _deviations(s, inr, np.nan_to_num(cen).astype(s.dtype))
    s1 = d.sum(axis=0, dtype=np.float64)
    s2 = np.einsum("i...,i...->...", d, d, dtype=np.float64)
    var = (s2 - s1 * s1 / cnt) / (cnt - ddof)
    return np.sqrt(np.maximum(var, 0))


def _shrink(s, lo, hi, lower, upper, active):
    """Narrow ``[lo, hi)`` to the sorted values within ``[lower, upper]``; values once rejected
    stay rejected (as astropy's sigma_clip). Returns the new range and whether it changed."""
    with np.errstate(invalid="ignore"):
        n_below = np.count_nonzero(s < _round_bound(lower, s.dtype, up=True), axis=0)
        n_upto = np.count_nonzero(s <= _round_bound(upper, s.dtype, up=False), axis=0)
    new_lo = np.where(active, np.maximum(lo, n_below), lo)
    new_hi = np.where(active, np.maximum(np.minimum(hi, n_upto), new_lo), hi)
    changed = bool((new_lo != lo).any() or (new_hi != hi).any())
    return new_lo, new_hi, changed


def _round_bound(bound, dtype, up):
    """Round float64 bounds to ``dtype`` so comparisons in ``dtype`` give the float64 answer
    (astropy's fast sigma_clip compares float32 data with float64 bounds): ``x < b`` iff
    ``x < b'`` with b' the nearest value at or above b, ``x <= b`` iff ``x <= b''`` with b'' the
    nearest at or below."""
    rounded = bound.astype(dtype)
    off = rounded < bound if up else rounded > bound
    return np.where(off, np.nextafter(rounded, np.inf if up else -np.inf), rounded)


def _sigma_clip_range(s, lo, hi, sigma_low, sigma_high, maxiters):
    """Iterated median/std clipping of the sorted stack ``s`` (astropy.stats.sigma_clip)."""
    for _ in range(maxiters):
        cnt = hi - lo
        with np.errstate(invalid="ignore", divide="ignore"):
            cen = _midpoint(s, lo, hi)
            std = _range_std(s, _in_range(s, lo, hi), cnt, cen, ddof=0)
        lo, hi, changed = _shrink(s, lo, hi, cen - sigma_low * std, cen + sigma_high * std,
                                  cnt > 0)
        if not changed:
            break
    return lo, hi


def _winsorized_range(s, lo, hi, sigma_low, sigma_high, maxiters):
    """Winsorized sigma clipping of the sorted stack ``s`` (Siril, rejection_float.c)."""
    for _ in range(maxiters):
        cnt = hi - lo
        inr = _in_range(s, lo, hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            cen = _midpoint(s, lo, hi)
            sigma = _range_std(s, inr, cnt, cen, ddof=1)
            w = s
            done = ~np.isfinite(sigma)
            for _ in range(_WINSOR_MAX_INNER):
                lower = (cen - _WINSOR_CUT * sigma).astype(s.dtype)
                upper = (cen + _WINSOR_CUT * sigma).astype(s.dtype)
                w = np.clip(w, lower, upper)
                new = _WINSOR_CORRECTION * _range_std(w, inr, cnt, cen, ddof=1)
                converged = np.abs(new - sigma) <= _WINSOR_TOL * sigma
                sigma = np.where(done, sigma, new)  # Siril stops each pixel at its own convergence
                done |= converged | ~np.isfinite(new)
                if done.all():
                    break
        lo, hi, changed = _shrink(s, lo, hi, cen - sigma_low * sigma, cen + sigma_high * sigma,
                                  cnt > 3)
        if not changed:
            break
    return lo, hi
