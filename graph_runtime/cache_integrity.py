"""Integrity of cache entries: manifests that check themselves, file checksums, safe paths.

A cache outlives Starloom versions and gets copied, shared and damaged, so nothing read from an
entry is trusted:

- ``manifest.json`` carries ``manifest_sha256``, the sha256 of its own canonical JSON without
  that field: a truncated, overwritten or altered manifest is detected, never a
  ``JSONDecodeError``;
- ``checksums`` gives the size and sha256 of every other file of the entry: sizes are checked on
  every lookup, hashes on the first use of an entry in a process (again when a file's
  modification time changed since) and by ``starloom cache verify``;
- every path a manifest names (ports, restored files, frame files) must be a plain relative path
  without ``..``, so a tampered manifest cannot reach outside the entry or the run directory.

A damaged entry raises :class:`EntryDamaged`; the cache treats it as a miss (recompute, replace,
warn).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable

from starloom.astro.errors import StarloomError
from starloom.astro.fileio import sha256_json


MANIFEST = "manifest.json"
PORT_KINDS = ("image", "series", "table", "array", "json")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_KEY = re.compile(r"[0-9a-f]{64}")


class CacheError(StarloomError):
    """The cache cannot be used as asked (its folder, a tampered path); the message says why."""


class CacheWarning(UserWarning):
    """A damaged cache entry or fingerprint database was found and is being replaced."""


class EntryDamaged(Exception):
    """An entry is incomplete or altered.

    Parameters
    ----------
    path : Path
        The damaged file (or the entry folder).
    reason : str
        What is wrong with it, e.g. ``"has 100 bytes, expected 2880"``.
    """

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path} {reason}")
        self.path, self.reason = Path(path), reason
        self.node: str | None = None
        self.frame: str | None = None


def is_key(text) -> bool:
    """Whether ``text`` is a cache key (64 lower-case hex digits)."""
    return isinstance(text, str) and _KEY.fullmatch(text) is not None


def safe_relpath(rel) -> bool:
    """Whether ``rel`` is a relative path that stays below the folder it is joined to.

    Refused: non-strings, empty paths, absolute paths (POSIX or Windows, with a drive), any
    ``..`` component and backslashes (a Windows separator that POSIX would keep in a name).
    """
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        return False
    posix, win = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or win.drive or win.root:
        return False
    return all(part not in ("..", "") for part in posix.parts)


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's content, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksums(folder: Path) -> dict[str, dict]:
    """``{relative posix path: {"size": bytes, "sha256": hex}}`` of every file but the manifest."""
    out = {}
    for top, dirs, names in os.walk(folder):  # os.walk: a tenth of rglob's cost per entry
        dirs.sort()
        rel_top = os.path.relpath(top, folder)
        for name in sorted(names):
            if rel_top == "." and name == MANIFEST:
                continue
            path = os.path.join(top, name)
            rel = name if rel_top == "." else f"{Path(rel_top).as_posix()}/{name}"
            out[rel] = {"size": os.stat(path).st_size, "sha256": file_sha256(path)}
    return dict(sorted(out.items()))


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``manifest.json`` with its own checksum (``manifest_sha256``).

    The checksum is taken over the manifest as it reads back from JSON, so values JSON turns
    into strings (``default=str``) hash the same when the manifest is checked.
    """
    obj = json.loads(json.dumps(manifest, default=str))
    obj["manifest_sha256"] = sha256_json(obj)
    (folder / MANIFEST).write_text(json.dumps(obj, indent=1), encoding="utf-8")


def read_manifest(folder: Path) -> dict | None:
    """The manifest of the entry in ``folder``, checked; None when there is no entry.

    Raises
    ------
    EntryDamaged
        The folder exists without a manifest, or the manifest is unreadable, not JSON (e.g.
        truncated), altered, or names paths outside the entry.
    """
    path = folder / MANIFEST
    if not folder.is_dir():
        return None
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EntryDamaged(path, "is missing (the entry folder has no manifest)") from None
    except OSError as e:
        raise EntryDamaged(path, f"cannot be read ({e.strerror})") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EntryDamaged(path, "is not valid JSON (truncated or overwritten)") from None
    if not isinstance(obj, dict):
        raise EntryDamaged(path, "is not a JSON object")
    stored = obj.pop("manifest_sha256", None)
    if stored != sha256_json(obj):
        raise EntryDamaged(path, "does not match its checksum (altered or written by an "
                                 "older Starloom)")
    damaged = EntryDamaged(path, "names a path outside the entry or an unknown port kind")
    damaged.node, damaged.frame = _text(obj.get("node")), _text(obj.get("frame"))
    if not _layout_ok(obj):
        raise damaged
    return obj


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _layout_ok(manifest: dict) -> bool:
    """Whether every name and path in a manifest is plain and stays inside the entry."""
    ports, files = manifest.get("ports"), manifest.get("files", [])
    sums, refs = manifest.get("checksums"), manifest.get("references", [])
    if not (isinstance(ports, dict) and isinstance(files, list) and isinstance(sums, dict)
            and isinstance(refs, list)):
        return False
    if not all(_PLAIN_NAME.fullmatch(str(p)) and k in PORT_KINDS for p, k in ports.items()):
        return False
    if not all(safe_relpath(f) for f in files) or not all(is_key(r) for r in refs):
        return False
    frames = manifest.get("frames") or {}
    if not isinstance(frames, dict) or not all(
            isinstance(d, dict) and (not d.get("in_store") or safe_relpath(d.get("path")))
            for d in frames.values()):
        return False
    return all(safe_relpath(f) and isinstance(c, dict) for f, c in sums.items())


def verify_files(folder: Path, manifest: dict, known: dict | None = None,
                 hasher: Callable[[Path], str] | None = None) -> dict:
    """Check the files of an entry against its manifest's ``checksums``.

    Sizes are always compared; sha256 hashes (reading every file) unless ``known`` shows the
    files unchanged since they were last hashed.

    Parameters
    ----------
    folder : Path
        The entry folder.
    manifest : dict
        Its manifest, as :func:`read_manifest` returned it.
    known : dict, optional
        What an earlier call returned for this entry: ``{relative path: mtime_ns}``.
    hasher : callable, optional
        sha256 hex digest of a file; default :func:`file_sha256` (reads it). The cache passes
        its memo (:meth:`.cache.Cache.hash_file`, keyed by path, size and modification time),
        so an entry hashed by an earlier process is not read again while its files are
        unchanged; a file altered with its modification time kept is then only found by a
        full check (``starloom cache verify``), as git's index trusts file stat data.

    Returns
    -------
    dict
        ``{relative path: mtime_ns}`` of the checked files, to pass as ``known`` next time.

    Raises
    ------
    EntryDamaged
        A file is missing, has another size or another content.
    """
    stats = {}
    for rel, want in manifest["checksums"].items():
        path = folder / rel
        try:
            stats[rel] = os.stat(path)
        except OSError:
            raise _damaged(path, "is missing", manifest) from None
        if stats[rel].st_size != want.get("size"):
            raise _damaged(path, f"has {stats[rel].st_size} bytes, expected {want.get('size')} "
                                 "(truncated or overwritten)", manifest)
    signature = {rel: st.st_mtime_ns for rel, st in stats.items()}
    if signature != known:
        for rel, want in manifest["checksums"].items():
            if (hasher or file_sha256)(folder / rel) != want.get("sha256"):
                raise _damaged(folder / rel, "does not match its checksum (altered)", manifest)
    return signature


def _damaged(path: Path, reason: str, manifest: dict) -> EntryDamaged:
    e = EntryDamaged(path, reason)
    e.node, e.frame = _text(manifest.get("node")), _text(manifest.get("frame"))
    return e
