"""Shared fixtures: the real-data folder, a scratch cache, and a small graph runner."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(*parts) -> Path:
    """Path under ../shared/data, skipping the test when that data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present: {path}")
    return path


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # Never touch the user's real cache folder from tests.
    monkeypatch.setenv("STARLOOM_CACHE", str(tmp_path / "default-cache"))
    # Nor the editor's settings (its recent files).
    monkeypatch.setenv("STARLOOM_EDITOR_SETTINGS", str(tmp_path / "editor-settings.ini"))


@pytest.fixture(scope="module")
def client():
    """A Dask client of a LocalCluster with 2 single-threaded worker processes on loopback."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()
