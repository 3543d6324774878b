"""Installed versions of Starloom and the libraries its results depend on, looked up once a
process (``importlib.metadata`` reads package metadata from disk each time)."""
from __future__ import annotations

import functools
import os
import re
import sys
from importlib.metadata import PackageNotFoundError, version


@functools.lru_cache(maxsize=None)
def _dist_info_versions() -> dict[str, str]:
    """Versions read from the names of the ``<name>-<version>.dist-info`` folders on sys.path
    (the first on the path wins, as for importlib.metadata): one directory listing per path
    entry instead of a metadata search per library (~17 ms each; issue 13, startup)."""
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if folder.endswith(".dist-info"):
                dist, _, ver = folder[:-len(".dist-info")].partition("-")
                found.setdefault(_normalized(dist), ver)
    return found


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()  # PEP 503 names, as dist-info folders write them


@functools.lru_cache(maxsize=None)
def library_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or None when it is not installed."""
    fast = _dist_info_versions().get(_normalized(name))
    if fast:
        return fast
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def starloom_version() -> str | None:
    """The installed Starloom version (None when run from a source tree not installed)."""
    return library_version("starloom")
