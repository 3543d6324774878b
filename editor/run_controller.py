"""Running the edited graph from the editor: plan it, execute it with the Starloom runtime in a
worker thread, and show each node's run state, outputs and thumbnail as the run goes.

The runtime's events reach the GUI thread through queued Qt signals; only that thread touches
widgets. Per-frame work runs on the command line's default executor
(:func:`~starloom.graph_runtime.executor.make_executor`: a pool of worker processes, one per
core or ``STARLOOM_WORKERS``), started with ``forkserver`` since this process has other
threads; the run closes it when it ends, cancelled or not, so no worker outlives the run.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from starloom.astro.errors import StarloomError
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.editing import EditableGraph
from starloom.graph_runtime.events import Event
from starloom.graph_runtime.executor import LocalExecutor, make_executor
from starloom.graph_runtime.graph import GraphValidationError, plan
from starloom.graph_runtime.run import Run, RunResult, new_run_dir
from starloom.serialization import GraphDocument

from .flow_mirror import FlowMirror
from .nodes import IMAGE_TYPES, describe, show_value
from .viewer import preview_image

OUTPUTS = "outputs"  # editor-only event: a node's output values and thumbnail, for the GUI thread


class _Bridge(QObject):
    """Carries worker-thread run events to the GUI thread (queued signal connections)."""

    event = Signal(int, object)     # run token, event dict
    finished = Signal(int, object)  # run token, RunResult


class RunController(QObject):
    """Runs the document and shows the run on the nodes.

    Parameters
    ----------
    graph : EditableGraph
        The document being edited (for its node ids and types).
    mirror : FlowMirror
        The drawn nodes, where states, messages, values and thumbnails are shown.
    cache_dir, runs_dir : path or None
        Cache of runs (default: the user cache folder) and parent of run folders (default:
        ``runs/`` beside the graph file).

    Attributes
    ----------
    states : dict
        Latest run state of each node id: pending, running, cached, done, failed, cancelled.
    outputs : dict
        Latest output values of each node id, by port.
    """

    run_event = Signal(object)     # every runtime event (dict)
    run_finished = Signal(object)  # RunResult, or GraphValidationError if nothing ran
    message = Signal(str)

    def __init__(self, graph: EditableGraph, mirror: FlowMirror, cache_dir=None, runs_dir=None):
        super().__init__()
        self.graph, self.mirror = graph, mirror
        self.cache_dir, self.runs_dir = cache_dir, runs_dir
        self.states: dict[str, str] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self._bridge = _Bridge()
        self._bridge.event.connect(self._on_event)
        self._bridge.finished.connect(self._on_finished)
        self._run: Run | None = None
        self._thread: threading.Thread | None = None
        self._token = 0  # events of a run started before the last reset() are dropped

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._thread is not None

    def start(self, doc: GraphDocument, base_dir: Path, source: str,
              force: set[str] = frozenset()) -> bool:
        """Plan ``doc`` and run it in a worker thread.

        Returns False (and shows the problems on the nodes) if a run is in progress or the
        graph does not validate; :attr:`run_finished` is emitted in the second case.
        """
        if self.running:
            return False
        for nid in self.graph.node_ids():
            self._set_state(nid, None)
            self.mirror.show_message(nid, "")
        try:
            p = plan(doc, self.graph.registry, base_dir=base_dir.resolve(), source=source)
        except GraphValidationError as e:
            self._show_problems(e)
            return False
        run_dir = new_run_dir(self.runs_dir or base_dir / "runs")
        try:
            executor = make_executor()  # as `starloom run` without --workers
        except StarloomError as e:  # e.g. a bad STARLOOM_WORKERS
            self.message.emit(f"{e}; computing frames in the editor's process")
            executor = LocalExecutor()
        run = Run(run_dir, Cache(self.cache_dir), executor=executor, force=force)
        self._token += 1
        run.listeners.append(self._listener(run, self._token, {n.spec.id: n.cls for n in p.nodes}))
        self._run = run
        self._thread = threading.Thread(target=self._work, args=(run, p, self._token),
                                        name="starloom-run", daemon=True)
        self.message.emit(f"running in {run_dir}")
        self._thread.start()
        return True

    def cancel(self, wait: bool = True):
        """Ask the current run to stop at the next node or frame boundary."""
        if self._run is not None:
            self._run.cancel()
            if wait and self._thread is not None:
                self._thread.join()

    def reset(self):
        """Forget runs: a new document is shown (a run still going is cancelled and ignored)."""
        self.cancel()
        self._thread, self._run = None, None
        self._token += 1
        self.states.clear()
        self.outputs.clear()

    def rename(self, old: str, new: str):
        """Keep a renamed node's state and outputs."""
        for table in (self.states, self.outputs):
            if old in table:
                table[new] = table.pop(old)

    def image_output(self, node_id: str, port: str | None = None):
        """(port, value) of the node's latest output on ``port`` (default: the port its
        thumbnail shows), or None before a run."""
        cls = self.graph.node_type(node_id)
        port = port or (image_port(cls) if cls else None)
        values = self.outputs.get(node_id) or {}
        return (port, values[port]) if port in values else None

    # --- worker thread ------------------------------------------------------------------------
    def _listener(self, run: Run, token: int, classes: dict):
        def listener(ev):  # worker thread: only emit signals from here
            self._bridge.event.emit(token, dict(ev))
            if ev["event"] in (Event.NODE_FINISHED, Event.NODE_CACHED):
                self._bridge.event.emit(token, self._outputs_event(run, ev, classes[ev["node"]]))
        return listener

    @staticmethod
    def _outputs_event(run: Run, ev: dict, node_cls) -> dict:
        try:
            values = run.node_outputs(ev["node"])
            port = image_port(node_cls)
            image = preview_image(values[port]) if port else None
        except Exception as exc:  # a preview must never break the run
            return {"event": Event.WARNING, "node": ev["node"], "message": f"no preview: {exc}"}
        return {"event": OUTPUTS, "node": ev["node"], "values": values, "preview": image}

    def _work(self, run: Run, p, token: int):
        try:
            result = run.execute(p)
        except Exception as exc:  # e.g. the run folder cannot be written
            run.close()
            result = RunResult("failed", run.dir, error=f"{type(exc).__name__}: {exc}")
        self._bridge.finished.emit(token, result)

    # --- GUI thread ---------------------------------------------------------------------------
    def _show_problems(self, e: GraphValidationError):
        for prob in e.problems:
            if prob.node in self.graph.node_ids():
                self._set_state(prob.node, "failed")
                text = self.mirror.body(prob.node).message.text()
                self.mirror.show_message(prob.node, (text + "\n" if text else "") +
                                         (f"{prob.where}: " if prob.where else "") + prob.message)
        self.message.emit(str(e))
        self.run_finished.emit(e)

    def _on_event(self, token: int, ev: dict):
        if token != self._token:
            return
        kind, nid = ev["event"], ev.get("node")
        if kind == Event.RUN_STARTED:
            for n in ev.get("nodes", []):
                if n in self.graph.node_ids():
                    self._set_state(n, "pending")
        elif nid not in self.graph.node_ids():
            pass
        elif kind == Event.NODE_STARTED:
            self._set_state(nid, "running")
        elif kind == Event.PROGRESS:
            self._set_state(nid, "running", f"{ev['done']}/{ev['total']}", ev["done"], ev["total"])
        elif kind == Event.NODE_CACHED:
            self._set_state(nid, "cached")
        elif kind == Event.NODE_FINISHED:
            self._set_state(nid, "done", f"{ev.get('seconds', 0):.1f} s")
        elif kind == Event.NODE_FAILED:
            self._set_state(nid, "failed")
            self.mirror.show_message(nid, ev.get("message", ""))
        elif kind == OUTPUTS:
            self._show_outputs(nid, ev["values"], ev["preview"])
        if kind != OUTPUTS:
            self.run_event.emit(ev)

    def _show_outputs(self, node_id: str, values: dict | None, preview):
        if values is not None:
            self.outputs[node_id] = values
            for out in self.mirror.node(node_id).outputs:
                if out.label_str in values:
                    show_value(out, describe(values[out.label_str]))
        body = self.mirror.body(node_id)
        if preview is not None or not body.thumb.isHidden():
            body.set_thumbnail(preview)
            self.mirror.relayout(node_id)

    def _on_finished(self, token: int, result: RunResult):
        if token != self._token:
            return
        if self._thread is not None:
            self._thread.join()
        self._thread, self._run = None, None
        for nid, state in list(self.states.items()):
            if state in ("running", "pending") and nid in self.graph.node_ids():
                self._set_state(nid, "cancelled" if result.status == "cancelled" else
                                ("failed" if state == "running" else None))
        self.message.emit(f"run {result.status}" + (f": {result.error}" if result.error else "")
                          + f" ({result.run_dir})")
        self.run_finished.emit(result)

    def _set_state(self, node_id: str, state: str | None, detail: str = "",
                   done: int | None = None, total: int | None = None):
        if state is None:
            self.states.pop(node_id, None)
        else:
            self.states[node_id] = state
        if state not in ("done", "cached"):
            # A thumbnail (and the viewer) shows only the result of the state the node is in:
            # nothing while it is pending or running, or after it failed or was cancelled.
            self.outputs.pop(node_id, None)
            body = self.mirror.body(node_id)
            if not body.thumb.isHidden():
                body.set_thumbnail(None)
                self.mirror.show_state(node_id, state, detail, done, total)
                self.mirror.relayout(node_id)
                return
        self.mirror.show_state(node_id, state, detail, done, total)


def image_port(node_cls) -> str | None:
    """The output port a thumbnail shows: the first Image output, else the first FrameSeries."""
    for kind in IMAGE_TYPES:
        for name, port in node_cls.outputs.items():
            if kind in port.types:
                return name
    return None
