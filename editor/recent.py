"""Recently opened graph files, kept in the user's Qt settings (File > Open Recent)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from qtpy.QtCore import QSettings
from qtpy.QtWidgets import QMenu

MAX_RECENT = 10
_KEY = "recent_files"


def editor_settings() -> QSettings:
    """The editor's settings: ``$STARLOOM_EDITOR_SETTINGS`` (an INI file, e.g. for tests),
    else the platform's place for "Starloom/editor"."""
    path = os.environ.get("STARLOOM_EDITOR_SETTINGS")
    if path:
        return QSettings(path, QSettings.IniFormat)
    return QSettings("Starloom", "editor")


class RecentFiles:
    """The list of recent graph files and the menu showing it.

    Parameters
    ----------
    settings : QSettings
        Where the list is kept.
    menu : QMenu
        Filled with the list each time it opens.
    open_file : callable(str)
        Called with the path chosen.
    """

    def __init__(self, settings: QSettings, menu: QMenu, open_file: Callable[[str], None]):
        self.settings, self.menu, self.open_file = settings, menu, open_file
        menu.aboutToShow.connect(self.fill_menu)
        self.fill_menu()

    def paths(self) -> list[str]:
        """The recent files, newest first; files no longer there are dropped from the list."""
        stored = self.settings.value(_KEY, []) or []
        if isinstance(stored, str):  # QSettings gives a one-item list back as a string
            stored = [stored]
        kept = [p for p in stored if Path(p).is_file()][:MAX_RECENT]
        if kept != stored:
            self.settings.setValue(_KEY, kept)
        return kept

    def add(self, path) -> None:
        """Put ``path`` first in the list (at most :data:`MAX_RECENT` are kept)."""
        path = str(Path(path).resolve())
        listed = self.paths()
        if listed[:1] != [path]:
            self.settings.setValue(_KEY, ([path] + [p for p in listed if p != path])[:MAX_RECENT])
            self.settings.sync()

    def fill_menu(self) -> None:
        """List the recent files in the menu (disabled when there are none)."""
        self.menu.clear()
        for i, path in enumerate(self.paths(), 1):
            action = self.menu.addAction(f"&{i % 10} {Path(path).name}")
            action.setToolTip(path)
            action.setData(path)
            action.triggered.connect(lambda _=False, p=path: self.open_file(p))
        self.menu.setEnabled(bool(self.menu.actions()))
