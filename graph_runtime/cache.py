"""Content-addressed cache of node outputs, on disk.

Layout of the store (default: the user's cache folder, ``platformdirs.user_cache_dir``)::

    objects/<k[:2]>/<key>/manifest.json   key pre-image, timings, library versions, diagnostics
                          <port>.fits     Image (CCDData with mask and uncertainty); also each
                                          output frame of one frame of a per-frame node
                          <port>.ecsv     Table
                          <port>.json     Transform / scalars / Path
                          <port>.series.json  FrameSeries (references to frame entries)
                          files/          files the node wrote into the run folder (outputs/,
                                          artifacts/), restored into a new run on a hit
    fingerprints.sqlite   file content hashes memoized by (path, size, mtime_ns)
    <name>/               node-private persistent folders (:meth:`Cache.scratch_dir`), e.g.
                          ``astrometry/`` for plate-solving index files

Each entry is written into a temporary folder and renamed into place, so an interrupted run
leaves only complete entries; the next run resumes from them. Values are stored as FITS, ECSV and
JSON, never pickled.

The interface the runtime uses, and nothing else reads or writes ``objects/``:

- :meth:`Cache.lookup` -> :class:`Entry` or None: an entry's manifest, values, frames and files;
- :meth:`Cache.put`: store a node's output values;
- :meth:`Cache.put_frame` / :meth:`Cache.put_rejected`: store one frame of a per-frame node
  (the cache names the files and builds the :class:`FrameRef` of each output frame);
- :meth:`Cache.hash_file`, :meth:`Cache.scratch_dir`, :meth:`Cache.info`, :meth:`Cache.clear`.

Nothing is kept in memory: the runtime holds the values a run still needs and frees them after
their last consumer; values needed later are loaded again from the entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
from astropy.nddata import CCDData
from astropy.table import Table

from starloom.astro import fits as fitsio
from starloom.astro.fileio import copy_atomic
from starloom.astro.frames import FrameRef, FrameSeries, as_header, sha256_json

# Bumped whenever the entry layout or what is stored under a key changes: old entries are simply
# not found. 3: the runtime writes the HISTORY provenance of every image output; knob parameters
# left the key.
KEY_VERSION = 3

_SCRATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def default_cache_dir() -> Path:
    return Path(os.environ.get("STARLOOM_CACHE") or platformdirs.user_cache_dir("starloom"))


class Entry:
    """One complete entry of the store: what a node, or one frame of a per-frame node, left.

    Obtained from :meth:`Cache.lookup`; reading it never changes the store.

    Attributes
    ----------
    key : str
        The cache key.
    manifest : dict
        The entry's ``manifest.json``: ``pre_image``, ``node``, ``seconds``, ``diagnostics``,
        ``port_keys`` (whole nodes), ``frame`` and ``frames`` or ``rejected`` (frame entries),
        ``ports``, ``files``, ``libraries``, ``stored_at``.
    """

    def __init__(self, key: str, folder: Path, manifest: dict):
        self.key = key
        self.manifest = manifest
        self._dir = folder

    @property
    def diagnostics(self) -> dict:
        """What the node recorded in ``ctx.diagnostics`` when it computed this entry."""
        return self.manifest.get("diagnostics", {})

    @property
    def rejected(self) -> str | None:
        """Why the per-frame node rejected this frame, or None."""
        return self.manifest.get("rejected")

    @property
    def frames(self) -> dict[str, FrameRef] | None:
        """Output frames of a per-frame entry, by port (None for a rejected frame)."""
        if self.rejected is not None or "frames" not in self.manifest:
            return None
        return {p: FrameRef.from_json(d) for p, d in self.manifest["frames"].items()}

    def values(self) -> dict[str, Any]:
        """Load the output values by port (images and tables are read from disk)."""
        return {port: _load_value(self._dir, port, kind)
                for port, kind in self.manifest["ports"].items()}

    def restore_files(self, run_dir: Path) -> dict[str, Path]:
        """Copy the files the node wrote back into ``run_dir``; returns {run-relative path: path}."""
        out = {}
        for rel in self.manifest.get("files", []):
            dst = Path(run_dir) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            copy_atomic(self._dir / "files" / rel, dst)
            out[rel] = dst
        return out


class Cache:
    """Node-output cache (see the module docstring for the layout and the interface).

    Parameters
    ----------
    root : path, optional
        Store folder (created on demand); default :func:`default_cache_dir`.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_cache_dir()
        self.objects = self.root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
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

    def scratch_dir(self, name: str) -> Path:
        """A persistent folder ``<root>/<name>`` for one kind of node-private data (created).

        For data a node may reuse across runs but that is not a node output, e.g. plate-solving
        index files built for a field. ``name`` is one plain folder name; ``objects`` is the
        store's own.
        """
        if not _SCRATCH_NAME.fullmatch(name) or name == "objects":
            raise ValueError(f"cache folder name {name!r}: one plain folder name, not 'objects'")
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- entries -----------------------------------------------------------------------------
    def _entry_dir(self, key: str) -> Path:
        return self.objects / key[:2] / key

    def lookup(self, key: str) -> Entry | None:
        """The complete entry stored under ``key``, or None."""
        d = self._entry_dir(key)
        try:
            manifest = json.loads((d / "manifest.json").read_text())
        except FileNotFoundError:
            return None
        return Entry(key, d, manifest)

    def get(self, key: str) -> dict[str, Any]:
        """Output values of the entry ``key`` by port (``lookup(key).values()``).

        Raises
        ------
        KeyError
            No entry has that key.
        """
        entry = self.lookup(key)
        if entry is None:
            raise KeyError(f"no cache entry {key}")
        return entry.values()

    def put(self, key: str, values: dict[str, Any], manifest: dict,
            files: dict[str, Path] | None = None) -> dict[str, Any]:
        """Store output values (and files the node wrote, by run-relative path) under ``key``.

        Atomic: the entry is built in a temporary folder and renamed into place. In-memory
        frames of a FrameSeries are written as FITS into the entry and the returned values
        reference those files.

        Parameters
        ----------
        key : str
            Cache key (:func:`node_key`).
        values : dict
            Output values by port.
        manifest : dict
            JSON-able description stored as ``manifest.json`` (``ports``, ``files``, ``key`` and
            ``stored_at`` are added).
        files : dict of str to Path, optional
            Files the node wrote, by path relative to the run folder.

        Returns
        -------
        dict
            The values as stored.
        """
        final = self._entry_dir(key)
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
        return stored

    def put_frame(self, key: str, frames: dict[str, CCDData], manifest: dict,
                  files: dict[str, Path] | None = None, *, name: str,
                  meta: dict | None = None) -> dict[str, FrameRef]:
        """Store the output frames of one frame of a per-frame node under ``key``.

        Parameters
        ----------
        key : str
            The frame's cache key.
        frames : dict of str to CCDData
            One output frame by port.
        manifest, files
            As for :meth:`put`; ``frames`` (the references, as JSON) is added to the manifest.
        name : str
            The frame's name (kept by every output frame).
        meta : dict, optional
            Metadata added to each reference's, after the header's (:func:`frame_metadata`).

        Returns
        -------
        dict of str to FrameRef
            A reference to each stored output frame by port, the same that
            ``lookup(key).frames`` gives later.
        """
        refs = {p: FrameRef(key=sha256_json([key, p]), name=name,
                            path=str(self._entry_dir(key) / f"{p}.fits"),
                            meta={**fitsio.frame_metadata(ccd.header), **(meta or {})})
                for p, ccd in frames.items()}
        self.put(key, frames, dict(manifest, frames={p: r.to_json() for p, r in refs.items()}),
                 files)
        return refs

    def put_rejected(self, key: str, reason: str, manifest: dict,
                     files: dict[str, Path] | None = None) -> None:
        """Remember that a per-frame node rejected one frame (``lookup(key).rejected``)."""
        self.put(key, {}, dict(manifest, rejected=reason), files)

    # --- maintenance -------------------------------------------------------------------------
    def info(self) -> dict:
        """Store folder, number of entries and their total size in bytes."""
        n = size = 0
        for d in self.objects.glob("*/*"):
            if (d / "manifest.json").is_file():
                n += 1
                size += sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        return {"path": str(self.root), "entries": n, "bytes": size}

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        n = self.info()["entries"]
        shutil.rmtree(self.objects, ignore_errors=True)
        self.objects.mkdir(parents=True, exist_ok=True)
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
