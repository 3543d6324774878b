"""Run actions on one node, and what the last run said about it.

- run to a node (only it and the nodes it depends on), recompute it, clear its cached results;
- the node's log: the events and warnings of the last run that concern it, and why it failed
  (the runtime's one-line message; the traceback stays in the run's event log);
- the last run's HTML report, opened in the browser.
"""
from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QObject, QUrl, Signal
from qtpy.QtGui import QDesktopServices
from qtpy.QtWidgets import QPlainTextEdit

from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.editing import ChangeKind
from starloom.graph_runtime.run import RunResult

from .graph_editor import GraphEditor

_LOGGED = {"node_started": "running", "node_cached": "cached", "node_finished": "done",
           "node_failed": "FAILED", "frame_computed": "frame computed",
           "frame_cached": "frame cached", "frame_rejected": "frame rejected",
           "warning": "warning"}


def node_log_line(ev: dict) -> str:
    """One line of a node's log for a run event (no node id: the panel is the node's)."""
    kind = ev["event"]
    text = _LOGGED.get(kind, kind)
    if ev.get("frame"):
        text += f" {ev['frame']}"
    if kind == "node_finished":
        text += f" in {ev.get('seconds')} s"
    if ev.get("message"):
        text += f": {ev['message']}"
    return f"{ev.get('t', '')[11:19]}  {text}"


class NodeRunTools(QObject):
    """Per-node run actions and logs of a :class:`GraphEditor`.

    Parameters
    ----------
    editor : GraphEditor

    Attributes
    ----------
    keys : dict
        Cache key of each node id in the last run that reached it.
    events : dict
        Events of the last run, by node id.
    last_run_dir : Path or None
        Folder of the last run that finished.
    """

    log_changed = Signal(str)  # node id whose log got a line

    def __init__(self, editor: GraphEditor):
        super().__init__(editor)
        self.editor = editor
        self.keys: dict[str, str] = {}
        self.events: dict[str, list[dict]] = {}
        self.last_run_dir: Path | None = None
        editor.run_event.connect(self._on_event)
        editor.run_finished.connect(self._on_finished)
        editor.mirror.action_requested.connect(self._on_action)
        editor.graph.subscribe(self._on_change)

    def target(self, node_id: str | None = None) -> str | None:
        """``node_id``, else the one selected node (None, with a message, if there is none)."""
        if node_id is None:
            chosen = self.editor.selected()
            node_id = chosen[0] if len(chosen) == 1 else None
        if node_id is None:
            self.editor.message.emit("select one node first")
        return node_id

    def run_to(self, node_id: str | None = None) -> bool:
        """Run only the node (default: the selected one) and the nodes it depends on."""
        nid = self.target(node_id)
        return nid is not None and self.editor.run(upto=nid)

    def recompute(self, node_id: str | None = None) -> bool:
        """Run the graph with the node (default: the selected one) recomputed even if cached."""
        nid = self.target(node_id)
        return nid is not None and self.editor.run(force={nid})

    def clear_cache(self, node_id: str | None = None) -> list[str]:
        """Remove the cache entries of the node's key in the last run (and of its frames).

        Returns the keys removed; nothing is removed before the node has run (its key depends
        on its inputs' content, known only then).
        """
        nid = self.target(node_id)
        if nid is None:
            return []
        key = self.keys.get(nid)
        if key is None:
            self.editor.message.emit(f"{nid}: no cached results known yet; run the graph first")
            return []
        cache = Cache(self.editor.runs.cache_dir)
        try:
            removed = cache.forget(key)
        finally:
            cache.close()
        self.editor.message.emit(f"{nid}: removed {len(removed)} cache entr"
                                 f"{'y' if len(removed) == 1 else 'ies'}")
        return removed

    def log_text(self, node_id: str | None) -> str:
        """The node's log for the last run (a hint when it has none)."""
        if node_id is None:
            return "Select a node to see its log."
        lines = [node_log_line(ev) for ev in self.events.get(node_id, [])]
        return "\n".join(lines) if lines else f"{node_id}: not run yet"

    def report_path(self) -> Path | None:
        """The last run's ``artifacts/report.html``, if written."""
        if self.last_run_dir is None:
            return None
        path = Path(self.last_run_dir) / "artifacts" / "report.html"
        return path if path.is_file() else None

    def open_report(self) -> bool:
        """Open the last run's report in the browser; False if there is none yet."""
        path = self.report_path()
        if path is None:
            self.editor.message.emit("no run report yet: run the graph first")
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.resolve())))

    def _on_event(self, ev: dict):
        nid = ev.get("node")
        if ev["event"] == "run_started":
            self.events.clear()
            self.log_changed.emit("")
        elif nid is not None and ev["event"] in _LOGGED:
            if ev.get("key"):
                self.keys[nid] = ev["key"]
            self.events.setdefault(nid, []).append(ev)
            self.log_changed.emit(nid)

    def _on_change(self, change):
        if change.kind == ChangeKind.DOCUMENT_REPLACED:  # another graph: its own runs
            self.keys.clear()
            self.events.clear()
            self.last_run_dir = None
            self.log_changed.emit("")
        elif change.kind == ChangeKind.NODE_RENAMED:
            for table in (self.keys, self.events):
                if change.old in table:
                    table[change.node] = table.pop(change.old)

    def _on_finished(self, result):
        if isinstance(result, RunResult):
            self.last_run_dir = Path(result.run_dir)

    def _on_action(self, node_id: str, text: str):
        {"Run to here": self.run_to, "Recompute": self.recompute,
         "Clear cached results": self.clear_cache}[text](node_id)


class NodeLogPanel(QPlainTextEdit):
    """The log of the selected node (see :meth:`NodeRunTools.log_text`), kept up to date."""

    def __init__(self, tools: NodeRunTools):
        super().__init__()
        self.setReadOnly(True)
        self.tools, self.node_id = tools, None
        tools.editor.selection_changed.connect(self.show_node)
        tools.log_changed.connect(self._log_changed)
        self.refresh()

    def _log_changed(self, node_id: str):
        if node_id in ("", self.node_id):
            self.refresh()

    def show_node(self, node_id: str | None):
        """Show the log of ``node_id`` (None: no node)."""
        self.node_id = node_id
        self.refresh()

    def refresh(self):
        """Show the current text of the node's log."""
        self.setPlainText(self.tools.log_text(self.node_id))
