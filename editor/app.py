"""The editor window and ``starloom edit``: the Ryven flow view in the middle, the node list
(grouped by category) on the left, the selected node's parameter form on the right, the run log
below; File, Edit and Run menus.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtGui import QAction, QKeySequence
from qtpy.QtWidgets import (QApplication, QDockWidget, QFileDialog, QMainWindow, QMessageBox,
                            QPlainTextEdit, QScrollArea)
from ryvencore_qt import NodeListWidget

from starloom.serialization import GraphFileError, load_graph

from .forms import GraphForm, ParamForm
from .graph_editor import GraphEditor
from .viewer import ImageViewer

GRAPH_FILTER = "Starloom graphs (*.json);;All files (*)"
IMAGE_FILTER = ("Images (*.fits *.fit *.fts *.fits.gz *.fits.fz *.png *.jpg *.jpeg *.tif *.tiff);;"
                "All files (*)")


def _event_line(ev: dict) -> str | None:
    kind, node = ev["event"], ev.get("node")
    if kind in ("progress", "run_finished"):  # the run's end is logged with its folder
        return None
    text = {"run_started": "run started", "run_cancelled": "run cancelled",
            "node_started": f"{node}: running", "node_cached": f"{node}: cached",
            "node_finished": f"{node}: done ({ev.get('seconds')} s)",
            "node_failed": f"{node}: FAILED {ev.get('message', '')}",
            "frame_computed": f"{node}: frame {ev.get('frame')} computed",
            "frame_cached": f"{node}: frame {ev.get('frame')} cached",
            "frame_rejected": f"{node}: frame {ev.get('frame')} rejected: {ev.get('message')}",
            "warning": f"{node}: warning: {ev.get('message', '')}"}.get(kind, kind)
    return f"{ev.get('t', '')[11:19]}  {text}"


class EditorWindow(QMainWindow):
    """The Starloom graph editor window.

    Parameters
    ----------
    registry, cache_dir, runs_dir
        Passed to :class:`~starloom.editor.graph_editor.GraphEditor`.

    Attributes
    ----------
    editor : GraphEditor
    form : ParamForm or GraphForm
        The form in the parameter panel.
    """

    def __init__(self, registry=None, cache_dir=None, runs_dir=None):
        super().__init__()
        self.editor = ed = GraphEditor(self, registry, cache_dir, runs_dir)
        self.viewers: list = []
        self.docks: dict[str, QDockWidget] = {}
        self.ask_before_discarding = True
        self.setCentralWidget(ed.view)
        self.resize(1500, 900)

        self.node_list = NodeListWidget(ed.session_gui, show_packages=True)
        self.node_list.update_list(ed.session.nodes)
        self.node_list.make_pack_hier()
        self.node_list.pack_tree.expandAll()
        self.node_list.node_chosen.connect(self._place_chosen)
        self._dock("Nodes", self.node_list, Qt.LeftDockWidgetArea)
        self.form_area = QScrollArea()
        self.form_area.setWidgetResizable(True)
        self._dock("Parameters", self.form_area, Qt.RightDockWidgetArea)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self._dock("Run log", self.log, Qt.BottomDockWidgetArea)
        self.form = None

        menus = {
            "&File": [("&New", QKeySequence.New, self.new),
                      ("&Open…", QKeySequence.Open, self.open_dialog),
                      ("&Save", QKeySequence.Save, self.save),
                      ("Save &as…", QKeySequence.SaveAs, self.save_as),
                      None,
                      ("Open &image…", "Ctrl+I", self.open_image_dialog),
                      None,
                      ("&Quit", QKeySequence.Quit, self.close)],
            # Undo and redo are the document's (text fields keep their own for typing); the
            # Delete key is the flow view's own.
            "&Edit": [("&Undo", QKeySequence.Undo, ed.undo),
                      ("&Redo", QKeySequence.Redo, ed.redo),
                      None,
                      ("&Delete selected\tDel", None, ed.remove_selected),
                      ("&Arrange nodes", "Ctrl+L", ed.arrange)],
            "&Run": [("&Run graph", "F5", ed.run),
                     ("Run, &recomputing all", "Shift+F5",
                      lambda: ed.run(force=set(ed.node_ids()))),
                     ("&Cancel run", "Ctrl+.", lambda: ed.cancel(wait=False))],
        }
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main toolbar")
        for title, entries in menus.items():
            menu = self.menuBar().addMenu(title)
            for entry in entries:
                if entry is None:
                    menu.addSeparator()
                    continue
                text, keys, fn = entry
                action = QAction(text, self)
                if isinstance(keys, QKeySequence.StandardKey):
                    action.setShortcuts(keys)  # every binding of the platform (redo has two)
                elif keys is not None:
                    action.setShortcut(QKeySequence(keys))
                action.triggered.connect(lambda _=False, fn=fn: fn())
                menu.addAction(action)
                if text.replace("&", "") in ("Open…", "Save", "Run graph", "Cancel run"):
                    toolbar.addAction(action)

        ed.selection_changed.connect(self._show_form)
        ed.changed.connect(self._update_title)
        ed.message.connect(lambda m: (self.statusBar().showMessage(m, 15000), self._log(m)))
        ed.run_event.connect(self._run_event)
        ed.view_requested.connect(self.view_output)
        self._show_form(None)
        self._update_title()

    def _dock(self, title, widget, area):
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[title] = dock
        return dock

    # --- files ----------------------------------------------------------------------------------
    def open(self, path) -> bool:
        """Open a graph file; an unreadable file is reported in a message box."""
        try:
            self.editor.open(path)
        except GraphFileError as e:
            QMessageBox.critical(self, "Cannot open graph", str(e))
            return False
        self._show_form(None)
        return True

    def new(self):
        """Start an empty graph (after asking about unsaved changes)."""
        if self._may_discard():
            self.editor.new()

    def open_dialog(self):
        """Ask for a graph file and open it."""
        if self._may_discard():
            path, _ = QFileDialog.getOpenFileName(self, "Open graph", "", GRAPH_FILTER)
            if path:
                self.open(path)

    def save(self) -> bool:
        """Save to the graph's file (asking for one if it has none); False if not saved."""
        if self.editor.path is None:
            return self.save_as()
        self.editor.save()
        return True

    def save_as(self) -> bool:
        """Ask for a file name and save there; False if cancelled."""
        path, _ = QFileDialog.getSaveFileName(self, "Save graph", str(self.editor.path or ""),
                                              GRAPH_FILTER)
        if not path:
            return False
        self.editor.save(path if path.endswith(".json") else path + ".json")
        return True

    def open_image_dialog(self):
        """Ask for a FITS (or JPEG/PNG/TIFF) file and open it in a viewer."""
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        if path:
            self._show_viewer(ImageViewer.from_file(path))

    def _may_discard(self) -> bool:
        if not self.ask_before_discarding or not self.editor.modified:
            return True
        answer = QMessageBox.question(
            self, "Unsaved changes", "Save the changes to the graph first?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel)
        return answer == QMessageBox.Discard or (answer == QMessageBox.Save and self.save())

    def closeEvent(self, event):  # noqa: N802 (Qt naming)
        if not self._may_discard():
            event.ignore()
            return
        self.editor.cancel()
        for v in self.viewers:
            v.close()
        event.accept()

    # --- panels ---------------------------------------------------------------------------------
    def _place_chosen(self, node_class):
        centre = self.editor.view.mapToScene(self.editor.view.viewport().rect().center())
        nid = self.editor.add_node(node_class.starloom_type_id, centre.x(), centre.y())
        self.editor.select(nid)

    def _show_form(self, node_id):
        self.form = ParamForm(self.editor, node_id) if node_id else GraphForm(self.editor)
        self.form_area.setWidget(self.form)

    def _update_title(self):
        ed = self.editor
        name = ed.path.name if ed.path else (ed.doc.metadata.name or "untitled graph")
        self.setWindowTitle(f"{name}{' *' if ed.modified else ''} — Starloom editor")

    def _log(self, line):
        self.log.appendPlainText(line)

    def _run_event(self, ev):
        line = _event_line(ev)
        if line:
            self._log(line)

    # --- viewers --------------------------------------------------------------------------------
    def view_output(self, node_id: str, port: str | None = None):
        """Open a viewer on an image output of the node (default: its first), or on the image
        file it wrote; returns the viewer, or None if the node has no output yet."""
        found = self.editor.image_output(node_id, port)
        if found is not None:
            port, value = found
            return self._show_viewer(ImageViewer(value, f"{node_id}.{port}"))
        for value in (self.editor.outputs.get(node_id) or {}).values():
            first = str(value).split(",")[0] if isinstance(value, str) else ""
            if first and Path(first).is_file():
                return self._show_viewer(ImageViewer.from_file(first))
        self.statusBar().showMessage(f"{node_id}: no image output yet; run the graph first",
                                     10000)
        return None

    def _show_viewer(self, viewer):
        self.viewers = [v for v in self.viewers if v.isVisible()] + [viewer]
        viewer.show()
        return viewer


def main(graph: str | os.PathLike | None = None) -> int:
    """Run the editor (``starloom edit [GRAPH]``); returns the exit status.

    Parameters
    ----------
    graph : path, optional
        Graph file to open.
    """
    doc = None
    if graph is not None:
        try:
            doc = load_graph(graph)
        except GraphFileError as e:
            print(f"starloom: {e}", file=sys.stderr)
            return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Starloom editor")
    window = EditorWindow()
    if doc is not None:
        window.editor.load(doc, graph)
        window._show_form(None)
    window.show()
    return app.exec()
