"""Content-addressed cache of node outputs, on disk.

Layout of the store (default: the user's cache folder, ``platformdirs.user_cache_dir``)::

    objects/<k[:2]>/<key>/manifest.json   key pre-image, timings, library versions, diagnostics,
                                          checksums of every file (see cache_integrity)
                          <port>.fits     Image (CCDData with mask and uncertainty); also each
                                          output frame of one frame of a per-frame node
                          <port>.ecsv     Table
                          <port>.json     Transform / scalars / Path
                          <port>.series.json  FrameSeries (references to frame entries)
                          files/          files the node wrote into the run folder (outputs/,
                                          artifacts/), restored into a new run on a hit
    objects/<k[:2]>/.<key>.<rand>/        an entry being written (an orphan if its run died)
    fingerprints.sqlite   file content hashes memoized by (path, size, mtime_ns)
    locks/, holders/, gc.lock             per-key locks and the marks of entries in use
                                          (:mod:`.cache_maintenance`)
    <name>/               node-private persistent folders (:meth:`Cache.scratch_dir`), e.g.
                          ``astrometry/`` for plate-solving index files

Each entry is written into a temporary folder and renamed into place, so an interrupted run
leaves only complete entries; the next run resumes from them. Values are stored as FITS, ECSV and
JSON, never pickled. Paths inside entries are relative to the store, so a moved or copied store
keeps working. A damaged entry (a file truncated or altered, a manifest cut short) is a miss: the
node is recomputed, the entry replaced, and a warning names the entry and its node.

The interface the runtime uses, and nothing else reads or writes ``objects/``:

- :meth:`Cache.lookup` -> :class:`Entry` or None: an entry's manifest, values, frames and files;
- :meth:`Cache.claim`: the entry, or None while this process computes it (other processes wait);
- :meth:`Cache.put`: store a node's output values;
- :meth:`Cache.put_frame` / :meth:`Cache.put_rejected`: store one frame of a per-frame node
  (the cache names the files and builds the :class:`FrameRef` of each output frame);
- :meth:`Cache.hash_file`, :meth:`Cache.scratch_dir`, :meth:`Cache.info`, :meth:`Cache.clear`,
  :meth:`Cache.verify`, :meth:`Cache.gc`.

Nothing is kept in memory: the runtime holds the values a run still needs and frees them after
their last consumer; values needed later are loaded again from the entry.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import platformdirs

from starloom.astro.fileio import copy_atomic

from . import cache_maintenance as maintenance
from .cache_integrity import (CacheError, CacheWarning, EntryDamaged, checksums, file_sha256,
                              read_manifest, safe_relpath, sha256_json, verify_files,
                              write_manifest)
from .cache_keys import KEY_VERSION, node_key
from .versions import library_version

if TYPE_CHECKING:
    from astropy.nddata import CCDData

    from starloom.astro.frames import FrameRef

# Values (cache_values) are read and written with astropy, numpy and the FITS layer: imported
# on first use, so `starloom nodes`, `validate` and `cache info` start without them (issue 13).

__all__ = ["Cache", "CacheError", "CacheWarning", "Entry", "KEY_VERSION", "code_identity",
           "default_cache_dir", "node_key", "value_key"]  # noqa: F822 (lazy, __getattr__)

_SCRATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Entries whose hashes this process has checked: (store, key) -> modification times of their
# files then. Process-wide, so repeated runs (the editor's F5) do not read every entry again.
_VERIFIED: dict[tuple[Path, str], dict] = {}


def default_cache_dir() -> Path:
    return Path(os.environ.get("STARLOOM_CACHE") or platformdirs.user_cache_dir("starloom"))


class Entry:
    """One complete, checked entry of the store: what a node, or one frame of one, left.

    Obtained from :meth:`Cache.lookup`; reading it never changes the store.

    Attributes
    ----------
    key : str
        The cache key.
    manifest : dict
        The entry's ``manifest.json``: ``pre_image``, ``node``, ``seconds``, ``diagnostics``,
        ``port_keys`` (whole nodes), ``frame`` and ``frames`` or ``rejected`` (frame entries),
        ``ports``, ``files``, ``references`` (entries whose files its values point to),
        ``checksums``, ``libraries``, ``stored_at``.
    """

    def __init__(self, key: str, folder: Path, manifest: dict, root: Path):
        self.key = key
        self.manifest = manifest
        self._dir = folder
        self._root = root

    @property
    def diagnostics(self) -> dict:
        """What the node recorded in ``ctx.diagnostics`` when it computed this entry."""
        return self.manifest.get("diagnostics", {})

    @property
    def rejected(self) -> str | None:
        """Why the per-frame node rejected this frame, or None."""
        return self.manifest.get("rejected")

    @property
    def frames(self) -> "dict[str, FrameRef] | None":
        """Output frames of a per-frame entry, by port (None for a rejected frame)."""
        if self.rejected is not None or "frames" not in self.manifest:
            return None
        from .cache_values import ref_from_json
        return {p: ref_from_json(d, self._root) for p, d in self.manifest["frames"].items()}

    def values(self) -> dict[str, Any]:
        """Load the output values by port (images and tables are read from disk)."""
        from .cache_values import load_value
        return {port: load_value(self._dir, port, kind, self._root)
                for port, kind in self.manifest["ports"].items()}

    def restore_files(self, run_dir: Path) -> dict[str, Path]:
        """Copy the files the node wrote back into ``run_dir``; returns {run-relative path: path}.

        Raises
        ------
        CacheError
            The manifest names a path outside the run directory (a tampered entry); nothing
            is written.
        """
        files = self.manifest.get("files", [])
        bad = [rel for rel in files if not safe_relpath(rel)]
        if bad:
            raise CacheError(f"cache entry {self._dir} names the file '{bad[0]}' outside the run "
                             "directory; remove the entry (starloom cache verify --repair)")
        out = {}
        for rel in files:
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
    on_warning : callable(message, node), optional
        Called for a damaged entry or fingerprint database (``node`` is the id of the entry's
        node, or None); default: a :class:`CacheWarning`. A run sets it to emit a warning event.

    Raises
    ------
    CacheError
        The store folder cannot be created.
    """

    def __init__(self, root: str | os.PathLike | None = None,
                 on_warning: Callable[[str, str | None], None] | None = None):
        self.root = Path(root).absolute() if root else default_cache_dir().absolute()
        self.objects = self.root / "objects"
        try:
            self.objects.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cache folder {self.root}: cannot create it ({e.strerror}); "
                             "choose another with --cache DIR or STARLOOM_CACHE") from None
        self.on_warning = on_warning
        self._db = None
        self._claims: dict[str, Any] = {}
        self._mutex, self._db_lock = threading.Lock(), threading.Lock()
        self._uses = maintenance.Uses(self.root)

    def warn(self, message: str, node: str | None = None) -> None:
        """Report a problem the cache repairs by itself (see ``on_warning``)."""
        if self.on_warning is not None:
            self.on_warning(message, node)
        else:
            warnings.warn(message, CacheWarning, stacklevel=2)

    def close(self) -> None:
        """Release claims, the marks of entries in use and the fingerprint database."""
        self.release_claims()
        self._uses.close()
        self.close_fingerprints()

    # --- file fingerprints -------------------------------------------------------------------
    def hash_file(self, path: str | os.PathLike) -> str:
        """sha256 of a file's content, memoized by (absolute path, size, mtime_ns).

        A fingerprint database that is not SQLite (garbage, truncated) is recreated with a
        warning: the memo only saves time, so losing it loses nothing else.
        """
        p = os.path.abspath(path)
        st = os.stat(p)
        row = self._memo("SELECT size, mtime_ns, sha256 FROM fp WHERE path=?", (p,))
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return row[2]
        digest = file_sha256(p)  # outside the lock: threads hash files at once
        self._memo("INSERT OR REPLACE INTO fp VALUES (?,?,?,?)",
                   [(p, st.st_size, st.st_mtime_ns, digest)], write=True)
        return digest

    def _memo(self, sql: str, args, *, write: bool = False):
        """One statement on the fingerprint memo (one connection, one thread at a time): the
        first row read, or None (also when the database fails; it is then recreated)."""
        with self._db_lock:
            try:
                db = self._fingerprints()
                if not write:
                    return db.execute(sql, args).fetchone()
                with db:
                    db.executemany(sql, args)
            except sqlite3.DatabaseError as e:
                self._reset_fingerprints(e)
        return None

    def _fingerprints(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.root / maintenance.FINGERPRINTS, timeout=30,
                                 check_same_thread=False)
            try:
                # A memo: losing the last rows to a power cut only costs re-hashing, so no fsync
                # per file (it took ~20 ms a file, 1 s of a 50-frame stack; issue 13).
                db.execute("PRAGMA synchronous=OFF")
                db.execute("CREATE TABLE IF NOT EXISTS fp (path TEXT PRIMARY KEY, size INT, "
                           "mtime_ns INT, sha256 TEXT)")
            except sqlite3.DatabaseError:
                db.close()
                raise
            self._db = db
        return self._db

    def _reset_fingerprints(self, error: Exception) -> None:
        if isinstance(error, sqlite3.OperationalError) and (
                "locked" in str(error) or "busy" in str(error)):
            return  # another process is writing it: skip the memo this once, keep the file
        path = self.root / maintenance.FINGERPRINTS
        self.warn(f"{path} is not a usable fingerprint database ({error}); recreating it "
                  "(file hashes are computed again)")
        self.close_fingerprints()
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def close_fingerprints(self) -> None:
        """Close the fingerprint database (it reopens on the next :meth:`hash_file`)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def scratch_dir(self, name: str) -> Path:
        """A persistent folder ``<root>/<name>`` for one kind of node-private data (created).

        For data a node may reuse across runs but that is not a node output, e.g. plate-solving
        index files built for a field. ``name`` is one plain folder name; ``objects`` and the
        store's own folders are refused.
        """
        if not _SCRATCH_NAME.fullmatch(name) or name in ("objects", "locks", "holders"):
            raise ValueError(f"cache folder name {name!r}: one plain folder name, not 'objects'")
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- entries -----------------------------------------------------------------------------
    def _entry_dir(self, key: str) -> Path:
        return self.objects / key[:2] / key

    def lookup(self, key: str) -> Entry | None:
        """The complete, intact entry stored under ``key``, or None.

        The key is first marked as used by this process (:func:`.cache_maintenance.gc` keeps
        it). Sizes are checked every time, hashes when a file changed since it was last hashed
        (by this or an earlier process: :meth:`hash_file`'s memo), and
        the entries its frames live in are checked with it. A damaged entry is removed, reported
        through :meth:`warn` (naming the file and the node) and gives None, so the node is
        recomputed.
        """
        try:
            return self._open(key, {key})
        except EntryDamaged as e:
            where = f"node '{e.node}'" if e.node else "an unknown node"
            if e.frame:
                where += f", frame '{e.frame}'"
            self.warn(f"cache entry {key[:12]} ({where}) is damaged: {e}; it is recomputed "
                      "and replaced", e.node)
            return None

    def _open(self, key: str, seen: set[str]) -> Entry | None:
        self._uses.mark(key)
        folder = self._entry_dir(key)
        try:
            manifest = read_manifest(folder)
            if manifest is None:
                return None
            signature = verify_files(folder, manifest, _VERIFIED.get((self.root, key)),
                                     hasher=self.hash_file)
        except EntryDamaged:
            self.discard(key)
            raise
        for ref in manifest.get("references", []):
            if ref in seen:
                continue
            seen.add(ref)
            try:
                found = self._open(ref, seen)
            except EntryDamaged as e:
                e.node, e.frame = manifest.get("node", e.node), manifest.get("frame", e.frame)
                raise
            if found is None:
                damaged = EntryDamaged(folder, f"refers to entry {ref[:12]}, which is missing")
                damaged.node, damaged.frame = manifest.get("node"), manifest.get("frame")
                raise damaged
        _VERIFIED[(self.root, key)] = signature
        try:
            os.utime(folder)  # last use, for gc's least-recently-used order
        except OSError:
            pass  # a read-only store still serves entries
        return Entry(key, folder, manifest, self.root)

    def discard(self, key: str) -> None:
        """Remove the entry ``key`` (renamed away first, so no reader sees it half deleted)."""
        folder = self._entry_dir(key)
        aside = folder.with_name(f".{key}.{secrets.token_hex(4)}")
        try:
            os.replace(folder, aside)
        except OSError:
            return
        shutil.rmtree(aside, ignore_errors=True)
        _VERIFIED.pop((self.root, key), None)

    def forget(self, key: str) -> list[str]:
        """Remove the entry ``key`` and the entries of its own frames (those it refers to that
        the same node stored), so the node is computed again; entries of other nodes it refers
        to stay. Returns the keys removed (none if ``key`` is not stored)."""
        try:
            manifest = read_manifest(self._entry_dir(key))
        except EntryDamaged:
            manifest = {}
        if manifest is None:
            return []
        keys = [key]
        for ref in manifest.get("references", []):
            try:
                if (read_manifest(self._entry_dir(ref)) or {}).get("node") == manifest.get("node"):
                    keys.append(ref)
            except EntryDamaged:
                keys.append(ref)  # damaged anyway: it would be recomputed
        for k in keys:
            self.discard(k)
        return keys

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

    def claim(self, key: str, force: bool = False) -> Entry | None:
        """The entry under ``key``, or None after taking the key's lock to compute it.

        While one process holds a key (from a None here to :meth:`put` of that key, or
        :meth:`release`), another claiming it waits and then gets the entry, instead of
        computing the same result again. Callers hold one claim at a time per thread, so
        processes never wait for each other in a circle.

        Parameters
        ----------
        key : str
        force : bool
            Take the key even if an entry exists (the caller recomputes and replaces it).
        """
        lock = maintenance.key_lock(self.root, key)
        lock.acquire()  # waits while another process computes this key
        entry = None if force else self.lookup(key)
        if entry is not None:
            lock.release()
            return entry
        with self._mutex:
            self._claims[key] = lock
        return None

    def release(self, key: str) -> None:
        """Let go of a key taken by :meth:`claim` (no-op for a key not held)."""
        with self._mutex:
            lock = self._claims.pop(key, None)
        if lock is not None:
            lock.release()

    def release_claims(self) -> None:
        """Release every key this object holds (at the end of a run, also a failed one)."""
        for key in list(self._claims):
            self.release(key)

    def put(self, key: str, values: dict[str, Any], manifest: dict,
            files: dict[str, Path] | None = None) -> dict[str, Any]:
        """Store output values (and files the node wrote, by run-relative path) under ``key``.

        Atomic: the entry is built in a temporary folder and renamed into place, replacing an
        existing (e.g. damaged, or forced) entry. In-memory frames of a FrameSeries are written
        as FITS into the entry and the returned values reference those files. Releases the
        key if :meth:`claim` took it.

        Parameters
        ----------
        key : str
            Cache key (:func:`node_key`).
        values : dict
            Output values by port.
        manifest : dict
            JSON-able description stored as ``manifest.json`` (``ports``, ``files``,
            ``references``, ``checksums``, ``key`` and ``stored_at`` are added).
        files : dict of str to Path, optional
            Files the node wrote, by path relative to the run folder.

        Returns
        -------
        dict
            The values as stored.
        """
        try:
            return self._put(key, values, manifest, files or {})
        finally:
            self.release(key)

    def _put(self, key: str, values: dict, manifest: dict, files: dict) -> dict:
        from starloom.astro.frames import FrameSeries

        from .cache_values import ref_to_json, store_value
        final = self._entry_dir(key)
        self._uses.mark(key)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        except FileNotFoundError:  # the first entry of its objects/xx folder
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            ports, stored, refs = {}, {}, set()
            for port, value in values.items():
                ports[port], stored[port] = store_value(tmp, final, port, value)
                if isinstance(stored[port], FrameSeries):
                    refs.update(self._entry_of(r.path) for r in stored[port].refs)
            for rel, f in files.items():
                if not safe_relpath(rel):
                    raise CacheError(f"file '{rel}' of node '{manifest.get('node')}' is not "
                                     "a plain path inside the run directory")
                (tmp / "files" / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, tmp / "files" / rel)
            refs.discard(None)
            refs.discard(key)
            manifest = dict(manifest, key=key, ports=ports, files=sorted(files),
                            references=sorted(refs), checksums=checksums(tmp),
                            stored_at=time.time())
            if "frames" in manifest:
                manifest["frames"] = {p: ref_to_json(r, self.root)
                                      for p, r in manifest["frames"].items()}
            write_manifest(tmp, manifest)
            _install(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _VERIFIED.pop((self.root, key), None)
        self._remember_hashes(final, manifest["checksums"])  # the next lookup reads no file
        return stored

    def _remember_hashes(self, folder: Path, sums: dict) -> None:
        """Put an entry's checksums into :meth:`hash_file`'s memo, as its files are now."""
        try:
            stats = {rel: os.stat(folder / rel) for rel in sums}
        except OSError:
            return  # replaced meanwhile by another run's entry: hashed on its lookup
        self._memo("INSERT OR REPLACE INTO fp VALUES (?,?,?,?)",
                   [(os.path.abspath(folder / rel), st.st_size, st.st_mtime_ns,
                     sums[rel]["sha256"]) for rel, st in stats.items()], write=True)

    def _entry_of(self, path: str | None) -> str | None:
        """Key of the entry holding the file ``path``, or None for a file outside the store."""
        if path is None:
            return None
        try:
            rel = Path(path).relative_to(self.objects)
        except ValueError:
            return None
        return rel.parts[1] if len(rel.parts) > 2 else None

    def put_frame(self, key: str, frames: "dict[str, CCDData]", manifest: dict,
                  files: dict[str, Path] | None = None, *, name: str,
                  meta: dict | None = None) -> "dict[str, FrameRef]":
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
        from starloom.astro import fits as fitsio
        from starloom.astro.frames import FrameRef
        refs = {p: FrameRef(key=sha256_json([key, p]), name=name,
                            path=str(self._entry_dir(key) / f"{p}.fits"),
                            meta={**fitsio.frame_metadata(ccd.header), **(meta or {})})
                for p, ccd in frames.items()}
        self.put(key, frames, dict(manifest, frames=refs), files)
        return refs

    def put_rejected(self, key: str, reason: str, manifest: dict,
                     files: dict[str, Path] | None = None) -> None:
        """Remember that a per-frame node rejected one frame (``lookup(key).rejected``)."""
        self.put(key, {}, dict(manifest, rejected=reason), files)

    # --- maintenance (cache_maintenance) -----------------------------------------------------
    def info(self) -> dict:
        """Store folder, entries, their total size in bytes, orphans and their size."""
        return maintenance.info(self)

    def clear(self) -> int:
        """Remove every entry, orphan and the fingerprint database; returns the entries."""
        return maintenance.clear(self)

    def verify(self, repair: bool = False) -> list[tuple[str, str]]:
        """Check every entry's files (see :func:`.cache_maintenance.verify`)."""
        return maintenance.verify(self, repair)

    def gc(self, max_bytes: int | None = None, older_than: float | None = None) -> dict:
        """Remove least recently used entries (see :func:`.cache_maintenance.gc`)."""
        return maintenance.gc(self, max_bytes, older_than)


def _install(tmp: Path, final: Path) -> None:
    """Rename the finished entry ``tmp`` to ``final``, replacing an entry already there."""
    try:
        os.replace(tmp, final)
        return
    except OSError:
        pass  # ``final`` exists (damaged, forced, or stored by another run meanwhile)
    aside = final.with_name(f".{final.name}.{secrets.token_hex(4)}")
    try:
        os.replace(final, aside)
    except FileNotFoundError:
        pass
    try:
        os.replace(tmp, final)
    except OSError:
        # Another run stored the same key in between: its entry is equally valid.
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(aside, ignore_errors=True)


def __getattr__(name: str):
    if name == "value_key":  # lazily, with the values module (see the imports)
        from .cache_values import value_key
        return value_key
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def code_identity(node_cls) -> dict:
    """What identifies a node type's code in its cache key.

    ``implementation`` (bumped by the node's author whenever its output changes, see
    :class:`~.node.Node`) and the installed version of each library in ``libraries``.
    """
    names = sorted(getattr(node_cls, "libraries", ()))
    return {"implementation": getattr(node_cls, "implementation", 1),
            "libraries": {n: library_version(n) for n in names}}
