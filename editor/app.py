"""The editor window and ``starloom edit``: the Ryven flow view in the middle, the node list
(grouped by category) on the left, the selected node's parameter form on the right, the run log
below; File, Edit and Run menus.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QAction, QKeySequence
from qtpy.QtWidgets import (QApplication, QDockWidget, QFileDialog, QLabel, QMainWindow,
                            QMessageBox, QPlainTextEdit, QScrollArea)

from starloom.graph_runtime.embedded import carries_graph, embedded_graph_text, load_any_graph
from starloom.serialization import GraphFileError

from .forms import GraphForm, ParamForm
from .graph_editor import GraphEditor
from .palette import NodePalette
from .ports import legend_html
from .ryven_adapter import route_file_drops
from .viewer import ImageViewer
from .window_extras import install as install_extras

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

        # Starloom's palette, not Ryven's node list (it raised IndexError on filtered clicks).
        self.node_list = NodePalette(self, ed.registry, docked=True)
        self.node_list.chosen.connect(self._place_chosen)
        self._dock("Nodes", self.node_list, Qt.LeftDockWidgetArea)
        self.form_area = QScrollArea()
        self.form_area.setWidgetResizable(True)
        self.form_area.setMinimumWidth(360)  # path fields were 25 px wide in the default dock
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
                      ("&Copy", QKeySequence.Copy, self.copy),
                      ("&Paste", QKeySequence.Paste, self.paste),
                      ("D&uplicate", "Ctrl+D", ed.duplicate),
                      ("&Delete selected\tDel", None, ed.remove_selected),
                      ("&Arrange nodes", "Ctrl+L", ed.arrange),
                      ("&Fit to view", "Home", ed.fit_view)],
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
        ed.params_changed.connect(self._parameters_changed)
        ed.changed.connect(self._update_title)
        ed.message.connect(lambda m: (self.statusBar().showMessage(m, 15000), self._log(m)))
        ed.run_event.connect(self._run_event)
        ed.view_requested.connect(self.view_output)
        route_file_drops(ed.view, self.open_dropped)
        self._show_form(None)
        self._update_title()
        self._add_legend()
        self._fitted = False
        install_extras(self)  # run tools, node log, recent files, minimap, groups and comments

    def _add_legend(self):
        self.legend = QLabel(legend_html())
        self.legend.setToolTip("Port colours: the type of data a port gives or takes")
        self.statusBar().addPermanentWidget(self.legend)

    def showEvent(self, event):  # noqa: N802 (Qt naming)
        super().showEvent(event)
        if not self._fitted:  # the view has its real size only once shown
            self._fitted = True
            self.editor.fit_view()

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

    def open_dropped(self, path: str):
        """A file dropped on the canvas: a graph file, or an image carrying the graph that made
        it, is opened (after asking about unsaved changes); another image is shown."""
        try:
            bare = carries_graph(path) and embedded_graph_text(path) is None
        except (OSError, ValueError, KeyError, IndexError):
            bare = False  # open() reports what is wrong with the file
        if bare:
            self._show_viewer(ImageViewer.from_file(path))
        elif self._may_discard():
            self.open(path)

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

    def copy(self):
        """Put the selected nodes on the clipboard as Starloom graph JSON (plain text)."""
        if self.editor.selected():
            QApplication.clipboard().setText(self.editor.copy_text())

    def paste(self):
        """Add the nodes of graph JSON on the clipboard (from this or another graph)."""
        try:
            self.editor.paste_text(QApplication.clipboard().text())
        except GraphFileError as e:
            self.statusBar().showMessage(f"nothing to paste: {e}", 10000)

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
    def _place_chosen(self, type_id: str, _pos=None, _port=None):
        view = self.editor.view
        centre = view.mapToScene(view.viewport().rect().center())
        x, y = self.editor.free_position(centre.x(), centre.y())
        nid = self.editor.add_node(type_id, x, y)
        self.editor.select(nid)

    def _show_form(self, node_id):
        self.form = ParamForm(self.editor, node_id) if node_id else GraphForm(self.editor)
        self.form_area.setWidget(self.form)
        self._binds = self._bind_signature()

    def _bind_signature(self):
        return {n: tuple(p.binds) for n, p in self.editor.doc.parameters.items()}

    def _parameters_changed(self, node_id: str):
        # A graph parameter made, removed, bound or unbound changes the form's rows; rebuilt
        # later, as the change may come from an action of the form itself.
        if node_id == "" and self._bind_signature() != getattr(self, "_binds", None):
            self._binds = self._bind_signature()
            QTimer.singleShot(0, self._rebuild_form)

    def _rebuild_form(self):
        nid = getattr(self.form, "node_id", None)
        self._show_form(nid if nid in self.editor.node_ids() else None)

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

    def compare_outputs(self, first: str, second: str):
        """Open a viewer showing the image outputs of two nodes side by side (e.g. a single
        calibrated frame against the stack); None if either has no image output yet."""
        a, b = self.editor.image_output(first), self.editor.image_output(second)
        if a is None or b is None:
            self.statusBar().showMessage("run the graph first: no image output to compare", 10000)
            return None
        viewer = ImageViewer(a[1], f"{first}.{a[0]}")
        viewer.compare(b[1], f"{second}.{b[0]}")
        return self._show_viewer(viewer)

    def _show_viewer(self, viewer):
        self.viewers = [v for v in self.viewers if v.isVisible()] + [viewer]
        viewer.show()
        return viewer


def main(graph: str | os.PathLike | None = None, params: dict[str, str] | None = None) -> int:
    """Run the editor (``starloom edit [GRAPH] [--param NAME=VALUE ...]``); returns the exit
    status.

    Parameters
    ----------
    graph : path, optional
        Graph file to open.
    params : dict, optional
        Graph parameter values (text, converted as ``starloom run --param`` does), set once the
        graph is open as undoable edits; an unknown name or invalid value exits with status 2.
    """
    doc = None
    if graph is not None:
        try:
            doc = load_any_graph(graph)
        except GraphFileError as e:
            print(f"starloom: {e}", file=sys.stderr)
            return 2
    elif params:
        print("starloom: --param needs a graph file", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Starloom editor")
    window = EditorWindow()
    if doc is not None:
        if carries_graph(graph):  # from an image: not a file to save into
            window.editor.load(doc)
        else:
            window.editor.load(doc, graph, source=Path(graph).read_bytes())
        for name, value in (params or {}).items():
            why = window.editor.set_graph_param(name, value)
            if why is not None:
                print(f"starloom: --param {name}: {why}", file=sys.stderr)
                window.ask_before_discarding = False
                window.close()
                return 2
        window._show_form(None)
    window.show()
    return app.exec()
