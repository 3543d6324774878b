"""Content-addressed cache of node outputs: an in-memory LRU over an on-disk store.

Layout of the store (default: the user's cache folder, ``platformdirs.user_cache_dir``)::

    objects/<k[:2]>/<key>/manifest.json   key pre-image, timings, library versions, diagnostics
                          <port>.fits     Image (CCDData with mask and uncertainty)
                          <port>.ecsv     Table
                          <port>.json     Transform / scalars / Path
                          <port>.series.json  FrameSeries (references to frame entries)
                          files/          files the node wrote into the run folder (outputs/,
                                          artifacts/), restored into a new run on a hit
    fingerprints.sqlite   file content hashes memoized by (path, size, mtime_ns)

Each entry is written into a temporary folder and renamed into place, so an interrupted run
leaves only complete entries; the next run resumes from them. Values are stored as FITS, ECSV and
JSON, never pickled.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
from astropy.nddata import CCDData
from astropy.table import Table

from starloom.astro import fits as fitsio
from starloom.astro.frames import FrameRef, FrameSeries, as_header, sha256_json

KEY_VERSION = 2  # bumped whenever the entry layout changes: old entries are simply not found


def default_cache_dir() -> Path:
    return Path(os.environ.get("STARLOOM_CACHE") or platformdirs.user_cache_dir("starloom"))


class Cache:
    """Node-output cache.

    Parameters
    ----------
    root : path
        Store folder (created on demand).
    memory_items : int
        Size of the in-memory LRU of loaded values.
    """

    def __init__(self, root: str | os.PathLike | None = None, memory_items: int = 64):
        self.root = Path(root) if root else default_cache_dir()
        self.objects = self.root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self._lru: OrderedDict[str, dict] = OrderedDict()
        self._lru_size = memory_items
        self._db = None

    # --- file fingerprints -------------------------------------------------------------------
    def hash_file(self, path: str | os.PathLike) -> str:
        """sha256 of a file's content, memoized by (absolute path, size, mtime_ns)."""
        p = os.path.abspath(path)
        st = os.stat(p)
        if self._db is None:
            self._db = sqlite3.connect(self.root / "fingerprints.sqlite", timeout=30)
            self._db.execute("CREATE TABLE IF NOT EXISTS fp (path TEXT PRIMARY KEY, size INT, "
                             "mtime_ns INT, sha256 TEXT)")
        row = self._db.execute("SELECT size, mtime_ns, sha256 FROM fp WHERE path=?", (p,)).fetchone()
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return row[2]
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO fp VALUES (?,?,?,?)",
                             (p, st.st_size, st.st_mtime_ns, digest))
        return digest

    # --- entries -----------------------------------------------------------------------------
    def entry_dir(self, key: str) -> Path:
        return self.objects / key[:2] / key

    def has(self, key: str) -> bool:
        return key in self._lru or (self.entry_dir(key) / "manifest.json").is_file()

    def manifest(self, key: str) -> dict:
        return json.loads((self.entry_dir(key) / "manifest.json").read_text())

    def get(self, key: str) -> dict[str, Any]:
        """Output values of an entry by port (FITS images read lazily into the LRU)."""
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        d = self.entry_dir(key)
        man = self.manifest(key)
        values = {port: _load_value(d, port, kind) for port, kind in man["ports"].items()}
        self._remember(key, values)
        return values

    def put(self, key: str, values: dict[str, Any], manifest: dict,
            files: dict[str, Path] | None = None, remember: bool = True) -> dict[str, Any]:
        """Store output values (and files the node wrote, by run-relative path) under ``key``.

        Atomic: the entry is built in a temporary folder and renamed into place.

        In-memory frames of a FrameSeries are written as FITS into the entry and the returned
        values reference those files. Returns the values as stored.
        """
        final = self.entry_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=final.parent))
        try:
            ports, stored = {}, {}
            for port, value in values.items():
                ports[port], stored[port] = _store_value(tmp, final, port, value)
            for rel, f in (files or {}).items():
                (tmp / "files" / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, tmp / "files" / rel)
            manifest = dict(manifest, key=key, ports=ports, files=sorted(files or {}),
                            stored_at=time.time())
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
            try:
                os.replace(tmp, final)
            except OSError:
                # Another run stored the same key first: its entry is equally valid.
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if remember:
            self._remember(key, stored)
        return stored

    def restore_files(self, key: str, run_dir: Path) -> list[Path]:
        """Copy the files an entry's node wrote into the run folder ``run_dir``."""
        src = self.entry_dir(key) / "files"
        out = []
        for rel in self.manifest(key).get("files", []):
            (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            _atomic_copy(src / rel, run_dir / rel)
            out.append(run_dir / rel)
        return out

    def _remember(self, key, values):
        self._lru[key] = values
        self._lru.move_to_end(key)
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)

    # --- maintenance -------------------------------------------------------------------------
    def info(self) -> dict:
        n = size = 0
        for d in self.objects.glob("*/*"):
            if (d / "manifest.json").is_file():
                n += 1
                size += sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        return {"path": str(self.root), "entries": n, "bytes": size}

    def clear(self) -> int:
        n = self.info()["entries"]
        shutil.rmtree(self.objects, ignore_errors=True)
        self.objects.mkdir(parents=True, exist_ok=True)
        self._lru.clear()
        return n


def node_key(type_id: str, version: int, params: dict, inputs: dict, extra: Any = None) -> tuple[str, dict]:
    """Cache key and its pre-image: sha256 of canonical JSON of type, version, params, inputs."""
    pre = {"key_version": KEY_VERSION, "type": type_id, "version": version, "params": params,
           "inputs": inputs}
    if extra is not None:
        pre["fingerprint"] = extra
    return sha256_json(pre), pre


def value_key(value: Any) -> str | dict:
    """Content key of an output value: what it contributes to downstream cache keys.

    Keys of outputs come from their content, not from how they were made, so a node that is
    re-run (because an input changed) but gives the same result leaves everything downstream
    cached, e.g. the reference frame when a light is added to the series.
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
        header = as_header(value.header).copy()
        header.remove("DATE", ignore_missing=True)
        h.update(header.tostring().encode())
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


def _atomic_copy(src: Path, dst: Path):
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _store_value(tmp: Path, final: Path, port: str, value: Any) -> tuple[str, Any]:
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
        (tmp / f"{port}.series.json").write_text(json.dumps([r.to_json() for r in refs]))
        return "series", FrameSeries(refs)
    if isinstance(value, Table):
        value.write(tmp / f"{port}.ecsv", format="ascii.ecsv")
        return "table", value
    if isinstance(value, np.ndarray):
        (tmp / f"{port}.json").write_text(json.dumps(value.tolist()))
        return "array", value
    (tmp / f"{port}.json").write_text(json.dumps(value))
    return "json", value


def _load_value(d: Path, port: str, kind: str) -> Any:
    if kind == "image":
        return fitsio.read_frame(d / f"{port}.fits")
    if kind == "series":
        return FrameSeries([FrameRef.from_json(x)
                            for x in json.loads((d / f"{port}.series.json").read_text())])
    if kind == "table":
        return Table.read(d / f"{port}.ecsv", format="ascii.ecsv")
    value = json.loads((d / f"{port}.json").read_text())
    return np.array(value) if kind == "array" else value
