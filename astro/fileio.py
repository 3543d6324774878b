"""Atomic file writing: the one place Starloom writes a file that someone else may read (and
the content digest of JSON-able values, used by cache keys and frame keys).

A file is written to a temporary name in the destination folder and renamed over the
destination (``os.replace``, atomic on POSIX and Windows within one file system), so a reader
never sees a half-written file and a killed process leaves the previous version intact. Cache
entries and index folders, which are whole folders, are renamed into place by their owners.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False,
                 encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit rename it over ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. Its folder must exist.
    mode : {"wb", "w"}
        Binary or text.
    fsync : bool
        Flush the data to disk before the rename (for files that must survive a power cut).
    encoding : str, optional
        Text encoding (``"utf-8"`` when ``mode`` is ``"w"`` and none is given).

    Yields
    ------
    file object
        Write the content to it.

    Notes
    -----
    The new file keeps the permission bits of the file it replaces; a new file gets
    ``0o666 & ~umask`` (as ``open`` would give), not the ``0o600`` of ``mkstemp``. On any
    exception the temporary file is removed and the destination is left untouched.
    """
    path = Path(path)
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', not {mode!r}")
    try:
        perms = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        perms = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode == "w":
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        else:
            f = os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, perms)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write`."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically, keeping ``src``'s modification time."""
    with atomic_write(dst, "wb") as f, open(src, "rb") as s:
        shutil.copyfileobj(s, f)
    shutil.copystat(src, dst)
    return Path(dst)


def sha256_json(obj) -> str:
    """sha256 hex digest of the canonical JSON of ``obj`` (sorted keys, no spaces; values JSON
    cannot hold are written with ``str``)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
