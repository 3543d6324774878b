"""Image stacking (combination) computed in horizontal bands, by worker threads.

Only one band of rows of every frame is in memory at a time (two with threads: the next band is
read while the current one is combined), so hundreds of frames can be stacked with bounded
memory. Each band is combined in small row chunks (about 2 MiB of stack) that stay in cache,
spread over a pool of threads (NumPy releases the GIL in its sorts, reductions and ufuncs). A
chunk is sorted once along the frame axis; every rejection algorithm then reduces to shrinking,
per pixel, a contiguous index range ``[lo, hi)`` of the sorted values (clipping by value always
keeps a contiguous run of sorted values; linear-fit clipping keeps a mask), so medians are index
look-ups and means/standard deviations are sums of float64 deviations
(:mod:`starloom.astro.rejection`). That is what makes it faster than ``ccdproc.combine``, which
recomputes statistics of masked float arrays. Every
pixel is computed the same way whatever the band, chunk and thread count, so results are
bit-identical for every memory budget.

Conventions
-----------
* A frame is 2-D ``(ny, nx)`` or planar 3-D ``(nc, ny, nx)`` (e.g. RGB ``(3, ny, nx)``). Bands
  are taken along the y axis, axis ``-2``, so a band of a 3-D frame is ``frame[:, y0:y1, :]``.
* Bad pixels are carried as NaN inside a band: input masks, NaN and +/-inf values all mean "this
  frame does not contribute at this pixel".
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .rejection import combine_chunk

__all__ = ["CombineResult", "combine_bands", "combine_arrays", "band_height", "default_threads"]

METHODS = ("average", "median", "sum")
REJECTIONS = ("none", "sigma_clip", "winsorized", "minmax", "linear_fit", "percentile", "gesd")

_CHUNK_BYTES = 2 * 2**20
# One band of the stack (float32). With threads there are two, so 2 x 64 MiB: as fast as larger
# bands on the 50 x 2048 x 2048 benchmark (benchmarks/README.md) and less memory than Siril's.
DEFAULT_BAND_BYTES = 64 * 2**20


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
    rejected : numpy.ndarray of uint16, shape ``(2,) + shape``, or None
        The rejection map (only when requested): per pixel, how many valid values were
        rejected below (``rejected[0]``) and above (``rejected[1]``) the kept ones. Masked and
        NaN values are not counted; ``count + rejected.sum(0)`` is the number of valid values.
    """

    data: np.ndarray
    mask: np.ndarray
    uncertainty: np.ndarray
    count: np.ndarray
    rejected: np.ndarray | None = None


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
    percentile_low: float = 0.2,
    percentile_high: float = 0.1,
    gesd_outliers: float = 0.3,
    gesd_alpha: float = 0.05,
    rejection_map=False,
    weights=None,
    scales=None,
    band_bytes: int = DEFAULT_BAND_BYTES,
    dtype=np.float32,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
    stored_dtype=None,
    band_map: Callable | None = None,
    band_tasks: int = 1,
) -> CombineResult:
    """Combine ``n_frames`` frames of equal shape, reading them band by band.

    Parameters
    ----------
    read_band : callable
        ``read_band(i, y0, y1) -> (data, mask)`` returns rows ``y0:y1`` (along axis -2) of frame
        ``i``: ``data`` is a real ndarray of shape ``shape[:-2] + (y1 - y0, shape[-1])`` (any
        numeric dtype; cast to ``dtype``, in the frame's own units, e.g. ADU), ``mask`` is None or
        a boolean array of the same shape, True = bad pixel. It is called once per frame and band,
        frames in order, bands top to bottom, from the calling thread. Integer data need no
        check for NaN/inf, so returning raw integers (e.g. uint16) is fastest.
    n_frames : int
        Number of frames, >= 1 and <= 32767 (``count`` is int16).
    shape : tuple of int
        Frame shape: ``(ny, nx)`` or planar ``(nc, ny, nx)``.
    method : {"average", "median", "sum"}
        How the surviving values of a pixel are combined.
    rejection : {"none", "sigma_clip", "winsorized", "minmax", "linear_fit", "percentile", "gesd"}
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
        * ``"linear_fit"``: linear-fit clipping as in Siril (``rejection_float.c`` LINEARFIT,
          ``siril_fit_linear.c``): a least-squares line ``a + b k`` is fitted to the pixel's
          sorted values against their rank ``k``; values more than ``sigma_low`` below /
          ``sigma_high`` above it, in units of the mean absolute deviation from the line, are
          rejected; refit and repeat (``maxiters`` rounds; at least 4 values are kept). Suited
          to large stacks with a spread that varies along the sorted values
          (:func:`starloom.astro.rejection_fit.linear_fit_keep`).
        * ``"percentile"``: percentile clipping as in Siril: one pass rejecting values below
          ``median * (1 - percentile_low)`` or above ``median * (1 + percentile_high)``
          (``|median|`` for negative data) of all the pixel's values; for small stacks.
        * ``"gesd"``: the generalized extreme Studentized deviate test (Rosner 1983,
          Technometrics 25, 165; NIST/SEMATECH e-Handbook 1.3.5.17.3), as Siril's "Generalized
          Extreme Studentized Deviate Test": up to ``floor(gesd_outliers * n)`` outliers of
          the pixel's ``n`` values, significance ``gesd_alpha``; the critical values come from
          Student's t quantiles (``scipy.special.stdtrit``, as ``scipy.stats.t.ppf``)
          (:func:`starloom.astro.rejection_fit.gesd_range`).
    sigma_low, sigma_high : float
        Rejection thresholds in units of sigma (sigma_clip and winsorized) or of the mean
        absolute deviation from the fitted line (linear_fit).
    maxiters : int or None
        Maximum rejection rounds; None iterates until convergence.
    nlow, nhigh : int
        Values dropped per pixel by ``"minmax"``.
    percentile_low, percentile_high : float
        ``"percentile"`` bounds, as fractions of the median (Siril's defaults 0.2 and 0.1).
    gesd_outliers : float
        ``"gesd"``: largest fraction of a pixel's values that may be outliers, in (0, 0.5].
    gesd_alpha : float
        ``"gesd"``: significance level of the test, in (0, 0.5).
    rejection_map : bool or numpy.ndarray
        Count the rejected values of each pixel into ``CombineResult.rejected``: True allocates
        it; a uint16 array of shape ``(2,) + shape`` (e.g. passed through
        ``FrameSeries.reduce``) is filled and returned as ``rejected``.
    weights : array_like, shape (n_frames,), optional
        Per-frame weights for ``"average"`` (weighted mean of the kept values, normalised by the
        sum of the weights of the kept values) and ``"sum"`` (weighted sum, as
        ``ccdproc.Combiner.sum_combine``). Ignored by ``"median"``. The uncertainty is
        unweighted, as in ccdproc.
    scales : array_like, shape (n_frames,), optional
        Multiplicative per-frame factors applied to the data before rejection and combination
        (ccdproc.combine's ``scale``, except ccdproc applies it after rejection).
    band_bytes : int
        Memory budget for one band of the raw stack, in bytes (see :func:`band_height`); with
        ``threads`` > 1 two bands are held. Results do not depend on it.
    dtype : numpy dtype
        Working and output float dtype (float32 by default; float64 for exact comparisons).
    progress : callable, optional
        Called as ``progress(done_rows, total_rows)`` after each band, in the calling thread.
    threads : int, optional
        Worker threads combining chunks (default :func:`default_threads`); 1 works in the
        calling thread. ``read_band`` is always called from the calling thread. Results do not
        depend on it.
    stored_dtype : numpy dtype, optional
        The dtype every ``read_band`` returns, when known and an integer type (e.g. uint16 for
        camera frames) with no masks and no ``scales``: the band buffers then hold it (half the
        memory of float32 for uint16, so twice the rows per band) and values are converted to
        ``dtype`` chunk by chunk. A ``read_band`` result of another dtype or with a mask is a
        ValueError. Results do not depend on it.
    band_map : callable, optional
        Where the rows are combined: ``band_map(fn, items)`` returns an iterator of
        ``(index, fn(item))`` in any order, e.g. tasks on a Dask cluster. The rows are then
        split into ranges (each within ``band_bytes``, at least ``band_tasks`` of them), each
        combined by a call of this function (``threads=1``) that calls ``read_band`` itself,
        wherever ``fn`` runs: ``read_band`` must then be picklable (by cloudpickle for Dask)
        and read from files the workers see. ``progress`` is called as ranges finish; closing
        the iterator (an exception, e.g. a cancelled run) must cancel the ranges not done.
        Default: this process's threads. Results do not depend on it.
    band_tasks : int
        With ``band_map``: the least number of row ranges (e.g. the workers' threads).

    Returns
    -------
    CombineResult
        ``data``, ``mask``, ``uncertainty`` (dtype ``dtype``) and ``count`` (int16), all of
        shape ``shape``; ``rejected`` (uint16, ``(2,) + shape``) with ``rejection_map``.

    Raises
    ------
    ValueError
        If ``n_frames`` < 1 or > 32767, ``shape`` is not 2-D or 3-D, ``method`` or ``rejection``
        is unknown, ``nlow``/``nhigh`` are negative, a percentile or GESD parameter is out of
        range, ``rejection_map`` is an array of the wrong shape or dtype, ``weights`` or
        ``scales`` is not 1-D of length ``n_frames``, or ``read_band`` returns data or a mask
        of the wrong shape (the message names the frame index and band rows).

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
    _check(n_frames, shape, method, rejection, nlow, nhigh)
    _check_fit(percentile_low, percentile_high, gesd_outliers, gesd_alpha)
    weights = _per_frame(weights, n_frames, "weights")
    scales = _per_frame(scales, n_frames, "scales")
    if maxiters is None:
        maxiters = n_frames  # each round rejects at least one value, so this is convergence
    threads = default_threads() if threads is None else max(1, int(threads))
    out = CombineResult(data=np.empty(shape, dtype), mask=None,
                        uncertainty=np.empty(shape, dtype), count=np.empty(shape, np.int16),
                        rejected=_rejected_array(rejection_map, shape))
    options = dict(method=method, rejection=rejection, weights=weights, sigma_low=sigma_low,
                   sigma_high=sigma_high, maxiters=maxiters, nlow=nlow, nhigh=nhigh,
                   percentile_low=percentile_low, percentile_high=percentile_high,
                   gesd_outliers=gesd_outliers, gesd_alpha=gesd_alpha,
                   rejection_map=out.rejected is not None)
    ny = shape[-2]
    buffer_dtype = dtype
    if stored_dtype is not None:
        buffer_dtype = np.dtype(stored_dtype)
        if buffer_dtype.kind not in "iu" or scales is not None:
            raise ValueError(f"stored_dtype must be an integer dtype and scales None, got "
                             f"{buffer_dtype} and scales={scales is not None}")
    options["dtype"] = dtype
    rows = band_height(n_frames, shape, buffer_dtype.itemsize, band_bytes)
    if band_map is not None:
        task = dict(options, scales=scales, band_bytes=band_bytes, stored_dtype=stored_dtype)
        _map_ranges(band_map, read_band, n_frames, shape, min(rows, -(-ny // max(1, band_tasks))),
                    task, out, progress)
        out.mask = out.count == 0
        return out
    # Statistics run on sub-bands of about _CHUNK_BYTES: small temporaries stay in cache and are
    # recycled by malloc, whereas band-sized ones cost page faults on every band (measured 2x).
    chunk = band_height(n_frames, shape, dtype.itemsize, _CHUNK_BYTES)
    # Two band buffers with threads: the next band is read while the workers combine this one.
    n_buffers = 2 if threads > 1 and rows < ny else 1
    size = n_frames * int(np.prod(shape[:-2] + (rows, shape[-1])))
    buffers = [np.empty(size, buffer_dtype) for _ in range(n_buffers)]
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    running: list[tuple[int, list]] = []  # (band end row, chunk futures), oldest first
    try:
        for band, y0 in enumerate(range(0, ny, rows)):
            y1 = min(ny, y0 + rows)
            if len(running) == n_buffers:  # this band's buffer is still being combined
                _finish_band(running.pop(0), ny, progress)
            band_shape = shape[:-2] + (y1 - y0, shape[-1])
            stack = buffers[band % n_buffers][:n_frames * int(np.prod(band_shape))].reshape(
                (n_frames,) + band_shape)
            has_bad = _read_stack(stack, read_band, scales, y0, y1)
            jobs = [(stack, c0, min(y1 - y0, c0 + chunk), y0, has_bad)
                    for c0 in range(0, y1 - y0, chunk)]
            futures = ([pool.submit(_combine_rows, out, job, options) for job in jobs]
                       if pool is not None else [_combine_rows(out, job, options) for job in jobs])
            running.append((y1, futures))
        while running:
            _finish_band(running.pop(0), ny, progress)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    out.mask = out.count == 0
    return out


def _map_ranges(band_map, read_band, n_frames, shape, rows, task, out, progress):
    """Combine ranges of ``rows`` rows with ``band_map`` (each by :func:`_combine_range`) and
    copy each into ``out`` as it arrives."""
    ny = shape[-2]
    jobs = [(read_band, n_frames, shape, y0, min(ny, y0 + rows), task)
            for y0 in range(0, ny, rows)]
    results, done = band_map(_combine_range, jobs), 0
    try:
        for j, part in results:
            y0, y1 = jobs[j][3:5]
            rows_out = np.s_[..., y0:y1, :]
            out.data[rows_out], out.uncertainty[rows_out] = part.data, part.uncertainty
            out.count[rows_out] = part.count
            if out.rejected is not None:
                out.rejected[:, ..., y0:y1, :] = part.rejected
            done += y1 - y0
            if progress is not None:
                progress(done, ny)
    finally:
        if hasattr(results, "close"):
            results.close()  # cancels the ranges not done (a failure, a cancelled run)


def _combine_range(job) -> CombineResult:
    """Rows ``y0:y1`` of the combination (one task of :func:`_map_ranges`, run wherever the
    band map sends it): reads its rows of every frame itself."""
    read_band, n_frames, shape, y0, y1, task = job

    def read_rows(i, a, b):
        return read_band(i, y0 + a, y0 + b)

    part = combine_bands(read_rows, n_frames, shape[:-2] + (y1 - y0, shape[-1]), threads=1,
                         **task)
    part.mask = None  # the caller derives it from count: one array less to send back
    return part


def default_threads() -> int:
    """Worker threads of a combination: the CPUs this process may run on (at most 8)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _check(n_frames, shape, method, rejection, nlow, nhigh):
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


def _check_fit(percentile_low, percentile_high, gesd_outliers, gesd_alpha):
    if not (0 < percentile_low <= 1 and 0 < percentile_high <= 1):
        raise ValueError(f"percentile_low and percentile_high must be in (0, 1] (fractions of "
                         f"the median), got {percentile_low!r} and {percentile_high!r}")
    if not 0 < gesd_outliers <= 0.5:
        raise ValueError(f"gesd_outliers must be in (0, 0.5], got {gesd_outliers!r}")
    if not 0 < gesd_alpha < 0.5:
        raise ValueError(f"gesd_alpha must be in (0, 0.5), got {gesd_alpha!r}")


def _rejected_array(rejection_map, shape):
    """The rejection map's array: None, a new one, or the caller's (checked, zeroed)."""
    if rejection_map is None or rejection_map is False:
        return None
    if rejection_map is True:
        return np.zeros((2,) + shape, np.uint16)
    arr = rejection_map
    if not isinstance(arr, np.ndarray) or arr.shape != (2,) + shape or arr.dtype != np.uint16:
        raise ValueError(f"rejection_map must be True or a uint16 array of shape {(2,) + shape}"
                         f", got {getattr(arr, 'dtype', type(arr).__name__)} "
                         f"{getattr(arr, 'shape', '')}")
    arr[...] = 0
    return arr


def _read_stack(stack, read_band, scales, y0, y1) -> bool:
    """Fill ``stack`` with rows y0:y1 of every frame, in frame order (in the calling thread, so
    ``read_band`` needs no thread safety); True if any value is bad (NaN)."""
    has_bad = False
    for i in range(len(stack)):
        has_bad |= _fill_frame(stack[i], read_band(i, y0, y1), i, y0, y1)
        if scales is not None:
            stack[i] *= scales[i]
    return has_bad


def _combine_rows(out, job, options):
    """Combine rows c0:c1 of a band (a worker's task) into the result arrays."""
    stack, c0, c1, y0, has_bad = job
    x = stack[..., c0:c1, :]
    rows_shape = x.shape[1:]
    data, unc, count, split = combine_chunk(x.reshape(len(x), -1), has_bad=has_bad, **options)
    rows_out = np.s_[..., y0 + c0:y0 + c1, :]
    out.data[rows_out] = data.reshape(rows_shape)
    out.uncertainty[rows_out] = unc.reshape(rows_shape)
    out.count[rows_out] = count.reshape(rows_shape)
    if split is not None:
        for side in (0, 1):
            out.rejected[side][rows_out] = split[side].reshape(rows_shape)


def _finish_band(band, ny, progress):
    y1, futures = band
    for f in futures:
        if isinstance(f, Future):
            f.result()  # re-raises a worker's exception here
    if progress is not None:
        progress(y1, ny)


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


def _fill_frame(dest, band, i, y0, y1) -> bool:
    """Copy one frame's band into ``dest``, turning masked and non-finite values into NaN;
    True if there were any. An integer ``dest`` (``stored_dtype``) takes only its own dtype."""
    try:
        values, mask = band
    except (TypeError, ValueError):
        raise ValueError(f"read_band({i}, {y0}, {y1}) must return (data, mask_or_None)") from None
    values = np.asarray(values)
    if values.shape != dest.shape:
        raise ValueError(f"read_band returned shape {values.shape} for frame {i}, rows "
                         f"{y0}:{y1}; expected {dest.shape}")
    if dest.dtype.kind in "iu" and (values.dtype != dest.dtype or mask is not None):
        raise ValueError(f"read_band returned {values.dtype} data"
                         f"{' with a mask' if mask is not None else ''} for frame {i}, rows "
                         f"{y0}:{y1}; stored_dtype {dest.dtype} expects {dest.dtype}, no mask")
    dest[...] = values
    bad = None
    if values.dtype.kind not in "biu":  # integers cannot be NaN or inf: skip the check
        finite = np.isfinite(dest)
        bad = None if finite.all() else ~finite
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != dest.shape:
            raise ValueError(f"read_band returned a mask of shape {mask.shape} for frame {i}, "
                             f"rows {y0}:{y1}; expected {dest.shape}")
        bad = mask if bad is None else bad | mask
    if bad is None or not bad.any():
        return False
    dest[bad] = np.nan
    return True
