"""FrameSeries: a lazy, file-backed series of frames.

Like hexrd's imageseries: the series holds references to FITS files (inputs or cache entries),
never the pixel data. Indexing reads one frame; reductions read horizontal bands of every frame,
so hundreds of frames never sit in memory together.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.table import Table

from . import fits as fitsio
from .errors import FrameReadError
from .combiner import combine_bands
from .fitsrows import RowReader


def as_header(meta) -> fits.Header:
    """A CCDData's meta as a FITS Header (CCDData made in code may carry a plain dict)."""
    return meta if isinstance(meta, fits.Header) else fits.Header(dict(meta))


# Cards that say when or how a file was written, not what it holds: DATE (set by write_frame,
# FITS 4.0 section 4.4.2.1), IRAF-TLM (IRAF's last-modified time) and the CHECKSUM/DATASUM pair
# (which covers DATE). Content keys leave them out, so the same frame written at another time
# keys the same and two fresh caches agree.
WRITE_TIME_CARDS = ("DATE", "IRAF-TLM", "CHECKSUM", "DATASUM")


def content_header(header) -> fits.Header:
    """A copy of ``header`` without :data:`WRITE_TIME_CARDS`: the part a content key hashes."""
    out = header.copy() if isinstance(header, fits.Header) else fits.Header(dict(header))
    for key in WRITE_TIME_CARDS:
        out.remove(key, ignore_missing=True, remove_all=True)
    return out


@dataclass(frozen=True)
class FrameRef:
    """One frame of a series.

    Attributes
    ----------
    key : str
        Content key: the input file's sha256 (plus header updates), or the cache key of the
        per-frame computation that made it.
    name : str
        Display name, the original file's stem, carried through processing.
    path : str or None
        FITS file holding the frame; None while the frame only lives in memory (``data``).
    header_updates : dict
        Header cards applied on read (e.g. IMAGETYP given by the user).
    meta : dict
        Frame metadata (see :func:`starloom.astro.fits.frame_metadata`).
    data : CCDData or None
        In-memory frame of a source node, written to the store by the runtime.
    """

    key: str
    name: str
    path: str | None = None
    header_updates: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    data: CCDData | None = field(default=None, compare=False, repr=False)

    def read(self) -> CCDData:
        if self.data is not None:
            return self.data
        if fitsio.is_picture(self.path):
            ccd = fitsio.read_image_any(self.path)
            ccd.header.update(self.header_updates)
            return ccd
        return fitsio.read_frame(self.path, header_updates=self.header_updates or None)

    def header(self) -> fits.Header:
        """The frame's header (with ``header_updates``), without reading FITS pixel data."""
        if self.data is not None:
            return as_header(self.data.header).copy()
        if fitsio.is_picture(self.path):
            return self.read().header
        header = fitsio.read_header(self.path)
        header.update(self.header_updates)
        return header

    def to_json(self) -> dict:
        return {"key": self.key, "name": self.name, "path": self.path,
                "header_updates": self.header_updates, "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "FrameRef":
        return cls(**d)


class FrameSeries(Sequence):
    """An ordered, lazy series of frames (see :class:`FrameRef`).

    ``series[i]`` reads frame ``i`` as a ``CCDData`` (float32 data, shape ``(ny, nx)`` or
    ``(3, ny, nx)`` for planar RGB); ``series.refs`` are the references.
    """

    def __init__(self, refs: Sequence[FrameRef]):
        self.refs: tuple[FrameRef, ...] = tuple(refs)

    @classmethod
    def from_frames(cls, frames: Sequence[CCDData], names: Sequence[str]) -> "FrameSeries":
        """A series of in-memory frames (for source nodes); keyed by content."""
        refs = []
        for ccd, name in zip(frames, names, strict=True):
            h = hashlib.sha256(np.ascontiguousarray(ccd.data).tobytes())
            header = as_header(ccd.header)
            # Without write-time cards: a frame read back from a cache entry keys the same
            # whenever that entry was written.
            h.update(content_header(header).tostring().encode())
            refs.append(FrameRef(key=h.hexdigest(), name=name, data=ccd,
                                 meta=fitsio.frame_metadata(header)))
        return cls(refs)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return FrameSeries(self.refs[i])
        return self.refs[i].read()

    def __iter__(self) -> Iterator[CCDData]:
        return (r.read() for r in self.refs)

    def __repr__(self) -> str:
        return f"FrameSeries({len(self)} frames)"

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.refs]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the first frame's data (all frames of a combinable series share it)."""
        if not self.refs:
            raise ValueError("empty FrameSeries has no shape")
        r = self.refs[0]
        if r.data is not None:
            return r.data.shape
        m = r.meta
        if m.get("NAXIS1"):
            return tuple(int(m[k]) for k in ("NAXIS3", "NAXIS2", "NAXIS1") if m.get(k))
        return r.read().shape

    @property
    def metadata(self) -> Table:
        """One row per frame: name, path and the frame metadata keywords."""
        keys = ["name", "path"] + [k for k in fitsio.FRAME_KEYWORDS]
        rows = [{"name": r.name, "path": r.path or "", **r.meta} for r in self.refs]
        return Table(rows=[[row.get(k) if row.get(k) is not None else "" for k in keys]
                           for row in rows] or None, names=keys,
                     dtype=[object] * len(keys)) if rows else Table(names=keys)

    def subset(self, indices: Sequence[int]) -> "FrameSeries":
        return FrameSeries([self.refs[i] for i in indices])

    def group_by(self, keys: Sequence[str]) -> dict[tuple, "FrameSeries"]:
        """Split by metadata values (e.g. ``("FILTER",)`` or ``("EXPTIME",)``), ordered by value."""
        groups: dict[tuple, list[FrameRef]] = {}
        for r in self.refs:
            groups.setdefault(tuple(r.meta.get(k) for k in keys), []).append(r)
        order = sorted(groups, key=lambda t: tuple((v is None, str(v) if not isinstance(v, (int, float)) else v) for v in t))
        return {k: FrameSeries(groups[k]) for k in order}

    # --- reductions, band by band -------------------------------------------------------------
    def band_reader(self, transform=None, raw=False, readers=None):
        """``read_band(i, y0, y1)`` over the files (in-memory frames sliced). ``raw``: FITS
        rows may come as stored integers (e.g. uint16, what ``combine_bands`` reads fastest);
        otherwise, and always for ``transform``, they are float32. ``readers``: the
        :class:`RowReader` of each path, one header parse per file, not per band."""
        readers = {} if readers is None else readers

        def read_band(i, y0, y1):
            r = self.refs[i]
            if r.data is not None:
                data = np.asarray(r.data.data, dtype=np.float32)[..., y0:y1, :]
                mask = None if r.data.mask is None else r.data.mask[..., y0:y1, :]
            elif fitsio.is_picture(r.path):
                data, mask = r.read().data[..., y0:y1, :], None
            else:
                data, mask = _read_rows(readers, r.path, y0, y1)
                if not raw or transform is not None:
                    data = data.astype(np.float32, copy=False)
            if transform is not None:
                data = transform(i, y0, y1, data)
            return data, mask
        return read_band

    def reduce(self, method: str = "median", *, rejection: str = "none", sigma_low: float = 3.0,
               sigma_high: float = 3.0, weights=None, scales=None, progress=None,
               transform=None, percentile: float = 50.0, **kw) -> CCDData:
        """Combine the frames pixel by pixel, reading them in bands.

        Parameters
        ----------
        method : {'average', 'median', 'sum', 'max', 'min', 'percentile'}
            Reduction along the frame axis (``percentile`` takes ``percentile``, 0-100).
        rejection : {'none', 'sigma_clip', 'winsorized', 'minmax'}
            Outlier rejection before averaging (see :func:`starloom.astro.combiner.combine_bands`).
        weights, scales : array_like of shape (n_frames,), optional
            Per-frame weights (average only) and multiplicative scales applied before rejection.
        transform : callable(i, y0, y1, band) -> band, optional
            Applied to rows ``y0:y1`` of frame ``i`` as they are read (e.g. subtract a master
            bias and normalise a flat) so that calibrated copies never need to be written.
        progress : callable(done_rows, total_rows), optional
        **kw
            Passed to :func:`~starloom.astro.combiner.combine_bands` (not for max, min,
            percentile), e.g. ``maxiters``, ``band_bytes`` or ``band_map`` and ``band_tasks``
            to combine row ranges as tasks elsewhere (e.g. on Dask workers, which then read
            their rows from the frames' files themselves).

        Returns
        -------
        CCDData
            float32 data of the frame shape, mask where no frame contributed, StdDevUncertainty
            (standard error of the combined value), header of the first frame with NCOMBINE.

        Raises
        ------
        ValueError
            For an empty series or frames whose shapes differ (naming the frame).
        """
        if len(self) == 0:
            raise ValueError("cannot combine an empty FrameSeries")
        shape = self.shape
        for r in self.refs:
            s = r.data.shape if r.data is not None else tuple(
                int(r.meta[k]) for k in ("NAXIS3", "NAXIS2", "NAXIS1") if r.meta.get(k))
            if s and tuple(s) != tuple(shape):
                raise ValueError(f"frame '{r.name}' has shape {tuple(s)}, expected {tuple(shape)} "
                                 f"like '{self.refs[0].name}'")
        if method in ("max", "min", "percentile"):
            fn = {"max": np.nanmax, "min": np.nanmin,
                  "percentile": lambda a, axis: np.nanpercentile(a, percentile, axis=axis)}[method]
            data = _band_apply(self.band_reader(transform), len(self), shape, fn)
            mask, unc = ~np.isfinite(data), None
        else:
            readers: dict[str, RowReader] = {}
            stored = None if transform is not None or scales is not None else _stored_dtype(
                self.refs, readers)
            res = combine_bands(self.band_reader(transform, raw=True, readers=readers),
                                len(self), shape, method=method, rejection=rejection,
                                sigma_low=sigma_low, sigma_high=sigma_high, weights=weights,
                                scales=scales, progress=progress, stored_dtype=stored, **kw)
            data, mask, unc = res.data, res.mask, res.uncertainty
        first = self.refs[0]
        header = first.header()
        for k in list(header):
            if k.startswith(("BZERO", "BSCALE", "BLANK")):
                del header[k]
        header["NCOMBINE"] = (len(self), "number of frames combined")
        return CCDData(data, unit=unit_of(first), mask=None if mask is None or not mask.any() else mask,
                       uncertainty=None if unc is None else StdDevUncertainty(unc), meta=header)


def unit_of(ref: FrameRef):
    """The unit of a frame (BUNIT, default ADU) without reading its pixels."""
    if ref.data is not None:
        return ref.data.unit
    unit = ref.header().get("BUNIT")
    return u.Unit(unit, parse_strict="silent") if unit else u.adu


def _stored_dtype(refs, readers: dict):
    """The integer dtype all frames are stored in (e.g. uint16), or None: ``combine_bands``
    then buffers bands in it, half the memory of float32."""
    found = set()
    for r in refs:
        if r.data is not None or fitsio.is_picture(r.path):
            return None
        found.add(_read_rows(readers, r.path, 0, 0, header_only=True).stored_dtype)
    return found.pop() if len(found) == 1 else None


def _read_rows(readers: dict, path: str, y0: int, y1: int, header_only=False):
    """Rows y0:y1 of a FITS image and its mask (:class:`starloom.astro.fitsrows.RowReader`,
    kept in ``readers`` by path); ``header_only``: the reader itself."""
    try:
        if path not in readers:
            readers[path] = RowReader(path)
        return readers[path] if header_only else readers[path].read(y0, y1)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        # A file truncated or damaged after it was scanned fails only here, deep in astropy
        # ("buffer is too small"): name the file.
        raise FrameReadError(path, f"image data unreadable (truncated or corrupt file?) "
                                   f"({type(exc).__name__}: {exc})") from exc


def _band_apply(read_band, n, shape, fn, band_bytes=256 * 2**20):
    """Apply ``fn(stack, axis=0)`` to (n, band rows) stacks, band by band; NaN where masked."""
    out = np.empty(shape, dtype=np.float32)
    ny = shape[-2]
    row_bytes = 4 * n * int(np.prod(shape)) // ny
    step = max(1, band_bytes // max(row_bytes, 1))
    for y0 in range(0, ny, step):
        y1 = min(ny, y0 + step)
        stack = []
        for i in range(n):
            d, m = read_band(i, y0, y1)
            stack.append(d if m is None else np.where(m, np.nan, d))
        out[..., y0:y1, :] = fn(np.stack(stack), axis=0)
    return out
