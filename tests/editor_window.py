"""The editor window the pytest-qt tests drive (imported by the editor's test modules, which are
skipped when Qt, Ryven's editor library or pytest-qt is missing)."""
from __future__ import annotations

import os

import pytest

if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtWidgets", reason="the editor needs PySide6")
pytest.importorskip("ryvencore_qt", reason="the editor needs ryvencore-qt")
pytest.importorskip("pytestqt", reason="the editor's tests need pytest-qt")

from starloom.editor.app import EditorWindow  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path):
    """A shown editor window with its cache and runs in ``tmp_path``."""
    w = EditorWindow(cache_dir=tmp_path / "cache", runs_dir=tmp_path / "runs")
    w.ask_before_discarding = False
    qtbot.addWidget(w)
    w.resize(1400, 850)
    w.show()
    qtbot.waitExposed(w)
    return w
