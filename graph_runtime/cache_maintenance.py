"""Keeping a cache healthy: use markers, info, clear, verify and garbage collection.

Entries in use
--------------
A process that looks up or stores a key first writes the key into its *use file*
``holders/<pid>-<random>.keys`` and holds an exclusive lock on ``holders/<pid>-<random>.lock``
while its :class:`~.cache.Cache` lives (the operating system drops the lock when the process
dies, even by SIGKILL). :func:`gc` takes ``gc.lock``, reads the use files of every process whose
lock is still held and never deletes those keys; use files of dead processes are removed. Writing
a key into a use file also takes ``gc.lock``, so a key is either marked before the collector
reads the use files (kept) or looked up after the collector renamed its entry away (a miss).

Orphans
-------
A run killed while storing an entry leaves its temporary folder ``objects/<k[:2]>/.<key>.<rand>``.
:func:`info` counts them, :func:`clear` removes them, :func:`gc` removes those older than
``orphan_age`` whose key nobody is computing.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # Windows: filelock's own locks
    fcntl = None

from .cache_integrity import MANIFEST, EntryDamaged, is_key, read_manifest, verify_files

if TYPE_CHECKING:
    from .cache import Cache

FINGERPRINTS = "fingerprints.sqlite"
ORPHAN_AGE = 3600.0
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*((?:[kmgt]i?)?b?)\s*", re.IGNORECASE)
_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_SECONDS = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def gc_lock(root: Path) -> FileLock:
    """The store-wide lock taken by :func:`gc` and by processes marking a key as in use."""
    return FileLock(root / "gc.lock", thread_local=False)


class FlockLock:
    """An exclusive ``flock(2)`` on one lock file, taken and released by any thread.

    What ``FileLock`` does on Unix (the two exclude each other), without its per-object cost
    (probing the folder, tracking forks: ~1 ms a key, 2 of the 7 ms of engine time per
    trivial node on a loaded machine; issue 13). The folder is created when missing (also
    after ``cache clear``).
    """

    def __init__(self, path: Path):
        self.lock_file, self._fd = str(path), None

    def acquire(self, timeout: float | None = None) -> None:
        """Wait for the lock; ``timeout=0``: raise ``filelock.Timeout`` if it is held."""
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            Path(self.lock_file).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if timeout == 0 else 0))
        except BlockingIOError:
            os.close(fd)
            raise Timeout(self.lock_file) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def key_lock(root: Path, key: str):
    """The lock a process holds while it computes and stores ``key`` (:meth:`Cache.claim`)."""
    path = root / "locks" / key[:2] / f"{key}.lock"
    if fcntl is None:  # FileLock creates the folder when it is missing
        return FileLock(path, thread_local=False)
    return FlockLock(path)


class Uses:
    """This process's use file: keys :func:`gc` must keep while the process lives.

    Parameters
    ----------
    root : Path
        The store folder.
    """

    def __init__(self, root: Path):
        self.root = root
        self._keys: set[str] = set()
        self._file = None
        self._lock: FileLock | None = None
        self._mutex = threading.Lock()

    def mark(self, key: str) -> None:
        """Record ``key`` as used by this process (once; cheap afterwards)."""
        if key in self._keys:
            return
        with self._mutex:
            if self._file is None:
                folder = self.root / "holders"
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{os.getpid()}-{secrets.token_hex(4)}"
                self._lock = FileLock(folder / f"{name}.lock", thread_local=False)
                self._lock.acquire()
                self._file = open(folder / f"{name}.keys", "a", encoding="ascii")
                self._gc_lock = (FlockLock(self.root / "gc.lock") if fcntl is not None
                                 else gc_lock(self.root))
            with self._gc_lock:
                self._file.write(key + "\n")
                self._file.flush()
            self._keys.add(key)

    def close(self) -> None:
        """Forget the marks: remove the use file and drop its lock."""
        with self._mutex:
            if self._file is not None:
                path = Path(self._file.name)
                self._file.close()
                path.unlink(missing_ok=True)
                self._lock.release()
                Path(self._lock.lock_file).unlink(missing_ok=True)
            self._file, self._lock, self._keys = None, None, set()


def keys_in_use(root: Path) -> set[str]:
    """Keys marked by live processes; removes the use files of dead ones (call under gc.lock)."""
    used: set[str] = set()
    for lock_path in sorted((root / "holders").glob("*.lock")):
        keys_path = lock_path.with_suffix(".keys")
        probe = FileLock(lock_path, timeout=0, thread_local=False)
        try:
            probe.acquire()
        except Timeout:  # held: the process is alive
            try:
                used.update(k for k in keys_path.read_text("ascii").split() if is_key(k))
            except OSError:
                pass
            continue
        keys_path.unlink(missing_ok=True)
        probe.release()
        lock_path.unlink(missing_ok=True)
    return used


def _entries(objects: Path):
    """(key, folder) of every entry folder (complete or not), without orphans."""
    for d in sorted(objects.glob("*/*")):
        if d.is_dir() and is_key(d.name) and d.parent.name == d.name[:2]:
            yield d.name, d


def _orphans(objects: Path) -> list[Path]:
    return sorted(d for d in objects.glob("*/.*") if d.is_dir())


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def info(cache: "Cache") -> dict:
    """Store folder, entries, their total size in bytes, orphans and their size."""
    n = size = 0
    for _, d in _entries(cache.objects):
        n += 1
        size += _size(d)
    orphans = _orphans(cache.objects)
    return {"path": str(cache.root), "entries": n, "bytes": size, "orphans": len(orphans),
            "orphan_bytes": sum(_size(d) for d in orphans)}


def clear(cache: "Cache") -> int:
    """Remove every entry, orphan, key lock and the fingerprint database; returns the entries."""
    n = info(cache)["entries"]
    shutil.rmtree(cache.objects, ignore_errors=True)
    cache.objects.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(cache.root / "locks", ignore_errors=True)
    cache.close_fingerprints()
    for suffix in ("", "-journal", "-wal", "-shm"):
        (cache.root / (FINGERPRINTS + suffix)).unlink(missing_ok=True)
    with gc_lock(cache.root):
        keys_in_use(cache.root)  # removes the use files of dead processes
    return n


def verify(cache: "Cache", repair: bool = False) -> list[tuple[str, str]]:
    """Check every entry's manifest and file hashes (and the fingerprint database).

    Parameters
    ----------
    cache : Cache
    repair : bool
        Remove the damaged entries (the next run recomputes them) and a damaged fingerprint
        database.

    Returns
    -------
    list of (str, str)
        ``(key or file name, what is wrong)`` for each damaged entry or file.
    """
    damaged = []
    for key, d in _entries(cache.objects):
        try:
            manifest = read_manifest(d)
            if manifest is None:
                continue
            verify_files(d, manifest)  # no known state: every hash is read
            missing = [r for r in manifest.get("references", [])
                       if not (cache.objects / r[:2] / r).is_dir()]
            if missing:
                raise EntryDamaged(d, f"refers to entry {missing[0]}, which is missing")
        except EntryDamaged as e:
            damaged.append((key, str(e)))
            if repair:
                cache.discard(key)
    problem = _check_fingerprints(cache.root / FINGERPRINTS)
    if problem:
        damaged.append((FINGERPRINTS, problem))
        if repair:
            cache.close_fingerprints()
            (cache.root / FINGERPRINTS).unlink(missing_ok=True)
    return damaged


def _check_fingerprints(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(path)
        try:
            ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        return f"{path} is not a readable SQLite database ({e})"
    return None if ok == "ok" else f"{path} is damaged ({ok})"


def gc(cache: "Cache", max_bytes: int | None = None, older_than: float | None = None,
       orphan_age: float = ORPHAN_AGE) -> dict:
    """Remove least recently used entries and old orphans, keeping entries in use.

    Parameters
    ----------
    cache : Cache
    max_bytes : int, optional
        Remove entries, least recently used first, until the entries take at most this much.
    older_than : float, optional
        Remove entries not used for this many seconds.
    orphan_age : float
        Remove temporary folders of interrupted writes older than this (seconds) whose key no
        process is computing.

    Returns
    -------
    dict
        ``removed`` entries and their ``bytes``, ``kept_in_use`` (entries spared because a
        running process holds them), ``orphans`` removed, ``bytes_left``.
    """
    now = time.time()
    with gc_lock(cache.root):
        used = keys_in_use(cache.root)
        entries = []
        for key, d in _entries(cache.objects):
            entries.append((d.stat().st_mtime, key, d, _size(d)))
        entries.sort()  # least recently used first (lookups touch the folder)
        total = sum(e[3] for e in entries)
        victims, spared = [], 0
        for mtime, key, d, size in entries:
            too_old = older_than is not None and now - mtime > older_than
            too_big = max_bytes is not None and total > max_bytes
            if not (too_old or too_big):
                continue
            if key in used:
                spared += 1
                continue
            victims.append((key, d, size))
            total -= size
        for key, d, size in _dependents(entries, {v[0] for v in victims}, used):
            victims.append((key, d, size))
            total -= size
        trash = [_move_aside(d, key) for key, d, _ in victims]
    for t in trash:
        shutil.rmtree(t, ignore_errors=True)
    orphans = remove_orphans(cache, orphan_age)
    _remove_idle_locks(cache.root, orphan_age)
    _forget_missing_files(cache.root / FINGERPRINTS)
    return {"removed": len(victims), "bytes": sum(v[2] for v in victims),
            "kept_in_use": spared, "orphans": orphans, "bytes_left": total}


def _forget_missing_files(path: Path) -> None:
    """Drop the memoized hashes of files that no longer exist (removed entries, moved inputs):
    the memo only grows otherwise. A damaged database is left to ``verify``."""
    if not path.exists():
        return
    try:
        with closing(sqlite3.connect(path, timeout=30)) as db, db:
            gone = [(p,) for (p,) in db.execute("SELECT path FROM fp") if not os.path.exists(p)]
            db.executemany("DELETE FROM fp WHERE path=?", gone)
    except sqlite3.DatabaseError:
        pass


def _dependents(entries: list, removed: set[str], used: set[str]) -> list:
    """Entries not in use whose frames live in removed entries (they would only be misses)."""
    refs = {}
    for _, key, d, size in entries:
        try:
            refs[key] = (d, size, set(json.loads((d / MANIFEST).read_text()).get("references", [])))
        except (OSError, ValueError, AttributeError):
            continue  # a damaged manifest: verify or the next lookup deals with it
    out, changed = [], True
    while changed:
        changed = False
        for key, (d, size, uses) in refs.items():
            if key not in removed and key not in used and uses & removed:
                removed.add(key)
                out.append((key, d, size))
                changed = True
    return out


def _move_aside(d: Path, key: str) -> Path:
    """Rename an entry to an orphan name, so lookups miss it before it is deleted."""
    aside = d.with_name(f".{key}.{secrets.token_hex(4)}")
    try:
        os.replace(d, aside)
    except FileNotFoundError:
        pass
    return aside


def remove_orphans(cache: "Cache", min_age: float = ORPHAN_AGE) -> int:
    """Remove orphan folders older than ``min_age`` seconds whose key nobody is computing."""
    n = 0
    now = time.time()
    for d in _orphans(cache.objects):
        key = d.name[1:].split(".")[0]
        try:
            if now - d.stat().st_mtime < min_age:
                continue
        except FileNotFoundError:
            continue
        if is_key(key):
            probe = key_lock(cache.root, key)
            try:
                probe.acquire(timeout=0)
            except Timeout:  # a live process is computing this key right now
                continue
            probe.release()
        shutil.rmtree(d, ignore_errors=True)
        n += 1
    return n


def _remove_idle_locks(root: Path, min_age: float) -> None:
    """Remove key lock files nobody holds (one is left per key ever computed)."""
    now = time.time()
    for path in (root / "locks").glob("*/*.lock"):
        try:
            if now - path.stat().st_mtime < min_age:
                continue
        except FileNotFoundError:
            continue
        probe = FileLock(path, timeout=0, thread_local=False)
        try:
            probe.acquire()
        except Timeout:
            continue
        # Unlinked while held: at worst two processes then compute the same key once each,
        # which Cache.put tolerates (the last complete entry wins).
        path.unlink(missing_ok=True)
        probe.release()


def parse_size(text: str) -> int:
    """Bytes in a size such as ``500MB``, ``20GB``, ``1.5T``, ``2GiB`` or ``4096``.

    Raises
    ------
    ValueError
        Not a number followed by B, K, M, G or T (optionally with ``i`` for powers of 1024).
    """
    m = _SIZE.fullmatch(text or "")
    if not m:
        raise ValueError(f"size '{text}': give a number and a unit, e.g. 500MB or 20GB")
    unit = m.group(2).lower()
    factor = _UNITS[unit[:1] if unit[:1] != "b" else ""]
    if "i" in unit:
        factor = 1024 ** ("kmgt".index(unit[0]) + 1)
    return int(float(m.group(1)) * factor)


def parse_age(text: str) -> float:
    """Seconds in an age such as ``12h``, ``30d``, ``2w``, ``90m`` or ``45s`` (plain: days).

    Raises
    ------
    ValueError
        Not a number followed by s, m, h, d or w.
    """
    m = _AGE.fullmatch(text or "")
    if not m:
        raise ValueError(f"age '{text}': give a number and a unit, e.g. 12h or 30d")
    return float(m.group(1)) * _SECONDS[m.group(2).lower()]
