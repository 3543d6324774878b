"""Values in cache entries: how each port value is stored and loaded, and its content key.

Images are FITS, tables ECSV, transforms and scalars JSON, a FrameSeries a list of frame
references (``<port>.series.json``) whose paths are relative to the store when the frame lives
in it, so a moved or copied store keeps working. Nothing is pickled.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from astropy.nddata import CCDData
from astropy.table import Table

from starloom.astro import fits as fitsio
from starloom.astro.frames import FrameRef, FrameSeries, as_header, content_header

from .cache_integrity import CacheError, safe_relpath


def value_key(value: Any) -> str | dict:
    """Content key of an output value: what it contributes to downstream cache keys.

    Keys of outputs come from their content, not from how they were made, so a node that is
    re-run (because an input changed) but gives the same result leaves everything downstream
    cached, e.g. the reference frame when a light is added to the series. Header cards that
    record when a file was written (:data:`~starloom.astro.frames.WRITE_TIME_CARDS`) are left
    out, so two fresh caches give the same keys.
    """
    if isinstance(value, FrameSeries):
        # Listed frame by frame so a manifest diff shows which frames changed.
        return {"series": [r.key for r in value.refs]}
    h = hashlib.sha256()
    if isinstance(value, CCDData):
        for arr in (value.data, value.mask,
                    None if value.uncertainty is None else value.uncertainty.array):
            if arr is not None:
                h.update(str(arr.dtype).encode() + str(arr.shape).encode())
                h.update(np.ascontiguousarray(arr).tobytes())
        h.update(content_header(as_header(value.header)).tostring().encode())
        if value.wcs is not None:
            h.update(value.wcs.to_header_string(relax=True).encode())
        h.update(str(value.unit).encode())
    elif isinstance(value, Table):
        import io
        buf = io.StringIO()
        value.write(buf, format="ascii.ecsv")
        h.update(buf.getvalue().encode())
    elif isinstance(value, np.ndarray):
        h.update(json.dumps(value.tolist()).encode())
    else:
        h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()


def ref_to_json(ref: FrameRef, root: Path) -> dict:
    """A reference as JSON, its path relative to the store when the file lives in it."""
    d = ref.to_json()
    if ref.path is not None:
        try:
            rel = Path(ref.path).relative_to(root)
        except ValueError:
            return d  # an input file outside the store: kept as given
        d.update(path=rel.as_posix(), in_store=True)
    return d


def ref_from_json(d: dict, root: Path) -> FrameRef:
    d = dict(d)
    if d.pop("in_store", False):
        if not safe_relpath(d.get("path")):
            raise CacheError(f"cache store {root}: a frame reference names '{d.get('path')}' "
                             "outside the store; run starloom cache verify --repair")
        d["path"] = str(root / d["path"])
    return FrameRef.from_json(d)


def store_value(tmp: Path, final: Path, port: str, value: Any) -> tuple[str, Any]:
    if isinstance(value, CCDData):
        fitsio.write_frame(value, tmp / f"{port}.fits")
        return "image", value
    if isinstance(value, FrameSeries):
        refs = []
        for i, r in enumerate(value.refs):
            if r.data is not None:
                name = f"{port}-{i:05d}.fits"
                fitsio.write_frame(r.data, tmp / name)
                r = FrameRef(key=r.key, name=r.name, path=str(final / name),
                             header_updates=r.header_updates, meta=r.meta)
            refs.append(r)
        root = final.parents[2]
        (tmp / f"{port}.series.json").write_text(
            json.dumps([ref_to_json(r, root) for r in refs]))
        return "series", FrameSeries(refs)
    if isinstance(value, Table):
        value.write(tmp / f"{port}.ecsv", format="ascii.ecsv")
        return "table", value
    if isinstance(value, np.ndarray):
        (tmp / f"{port}.json").write_text(json.dumps(value.tolist()))
        return "array", value
    (tmp / f"{port}.json").write_text(json.dumps(value))
    return "json", value


def load_value(d: Path, port: str, kind: str, root: Path) -> Any:
    if kind == "image":
        return fitsio.read_frame(d / f"{port}.fits")
    if kind == "series":
        return FrameSeries([ref_from_json(x, root)
                            for x in json.loads((d / f"{port}.series.json").read_text())])
    if kind == "table":
        return Table.read(d / f"{port}.ecsv", format="ascii.ecsv")
    value = json.loads((d / f"{port}.json").read_text())
    return np.array(value) if kind == "array" else value
