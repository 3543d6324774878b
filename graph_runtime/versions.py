"""Installed versions of Starloom and the libraries its results depend on, looked up once a
process (``importlib.metadata`` reads package metadata from disk each time)."""
from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version


@functools.lru_cache(maxsize=None)
def library_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or None when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def starloom_version() -> str | None:
    """The installed Starloom version (None when run from a source tree not installed)."""
    return library_version("starloom")
