"""The editor window's tools beyond editing and running the whole graph, added to an
:class:`~starloom.editor.app.EditorWindow` by :func:`install`:

- Run: run to the selected node, recompute it, clear its cached results, open the run's report;
- File > Open Recent;
- View: frame the selected nodes (F), the minimap, the node log panel, compare two outputs;
- Edit: add a group around the selection, add a comment.
"""
from __future__ import annotations

from qtpy.QtCore import QRectF, Qt
from qtpy.QtGui import QAction, QKeySequence
from qtpy.QtWidgets import QInputDialog, QMenu

from .canvas_notes import CanvasNotesView
from .minimap import Minimap
from .recent import RecentFiles, editor_settings
from .run_tools import NodeLogPanel, NodeRunTools
from .ryven_adapter import fit_view


def _menu(window, title: str) -> QMenu:
    for action in window.menuBar().actions():
        if action.menu() is not None and action.text() == title:
            return action.menu()
    return window.menuBar().addMenu(title)


def _add(window, menu: QMenu, text: str, keys, fn, on_view: bool = False) -> QAction:
    action = QAction(text, window)
    if keys:
        action.setShortcut(QKeySequence(keys))
    action.triggered.connect(lambda _=False: fn())
    menu.addAction(action)
    if on_view:
        # A single-letter key acts only while the canvas has the focus, never while typing.
        action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
        window.editor.view.addAction(action)
    return action


def install(window) -> None:
    """Add the tools to ``window`` (its menus, docks and attributes ``run_tools``,
    ``node_log``, ``recent``, ``minimap`` and ``notes``)."""
    ed = window.editor
    window.run_tools = tools = NodeRunTools(ed)
    window.node_log = NodeLogPanel(tools)
    window._dock("Node log", window.node_log, Qt.BottomDockWidgetArea)
    window.tabifyDockWidget(window.docks["Run log"], window.docks["Node log"])
    window.notes = CanvasNotesView(ed)
    window.minimap = Minimap(ed.view, lambda: _canvas_rect(window))

    run = _menu(window, "&Run")
    run.addSeparator()
    _add(window, run, "Run to &selected node", "F6", tools.run_to)
    _add(window, run, "Recompute selected &node", "Ctrl+F5", tools.recompute)
    _add(window, run, "C&lear cached results of selected node", None, tools.clear_cache)
    run.addSeparator()
    _add(window, run, "Open run &report in browser", "Ctrl+R", tools.open_report)

    file_menu = _menu(window, "&File")
    recent_menu = QMenu("Open &Recent", window)
    file_menu.insertMenu(file_menu.actions()[2], recent_menu)  # after New and Open…
    window.recent = RecentFiles(editor_settings(), recent_menu, lambda p: _open_recent(window, p))
    ed.changed.connect(lambda: ed.path is not None and ed.path.is_file()
                       and window.recent.add(ed.path))

    edit = _menu(window, "&Edit")
    edit.addSeparator()
    _add(window, edit, "Add &group around selection…", "Ctrl+G", window.notes.add_group)
    _add(window, edit, "Add co&mment…", "Ctrl+M", window.notes.add_comment)

    view = _menu(window, "&View")
    _add(window, view, "&Frame selected", "F", lambda: frame_selected(ed), on_view=True)
    _add(window, view, "Fit to &view\tHome", None, ed.fit_view)
    toggle = _add(window, view, "&Minimap", None, lambda: None)
    toggle.setCheckable(True)  # shown for large graphs, when asked for
    toggle.toggled.connect(window.minimap.setVisible)
    view.addAction(window.docks["Node log"].toggleViewAction())
    view.addSeparator()
    _add(window, view, "&Compare two outputs…", None, lambda: compare_selected(window))


def frame_selected(editor) -> bool:
    """Zoom and scroll the view onto the selected nodes (all of them when none is selected);
    False if the graph is empty."""
    rect = _nodes_rect(editor, editor.selected() or editor.node_ids())
    if rect.isNull():
        return False
    fit_view(editor.view, rect.adjusted(-40, -40, 40, 40))
    return True


def compare_selected(window):
    """Show two nodes' image outputs side by side: the two selected nodes, else two asked
    for among the nodes with an image output; returns the viewer, or None."""
    ed = window.editor
    pair = ed.selected()
    if len(pair) != 2:
        ready = [nid for nid in ed.node_ids() if ed.image_output(nid) is not None]
        if len(ready) < 2:
            window.statusBar().showMessage("run the graph first: two nodes with an image "
                                           "output are needed to compare", 10000)
            return None
        first, ok = QInputDialog.getItem(window, "Compare outputs", "Left:", ready, 0, False)
        if not ok:
            return None
        rest = [n for n in ready if n != first]
        second, ok = QInputDialog.getItem(window, "Compare outputs", "Right:", rest, 0, False)
        if not ok:
            return None
        pair = [first, second]
    return window.compare_outputs(*pair)


def _nodes_rect(editor, node_ids) -> QRectF:
    rect = QRectF()
    for nid in node_ids:
        rect = rect.united(editor.item(nid).sceneBoundingRect())
    return rect


def _canvas_rect(window) -> QRectF:
    rect = _nodes_rect(window.editor, window.editor.node_ids())
    for item in window.notes.items:  # groups and comments
        rect = rect.united(item.sceneBoundingRect())
    return rect


def _open_recent(window, path: str):
    if window._may_discard():
        window.open(path)
