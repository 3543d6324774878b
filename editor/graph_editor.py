"""The editor's model: a Starloom graph document drawn and edited in a Ryven flow, run by the
Starloom runtime.

The :class:`~starloom.serialization.GraphDocument` is the model of truth. The Ryven flow is its
view: every Ryven node holds the document's ``NodeSpec`` (``node.spec``) and flow events (node
placed or removed, connection made or removed) update the document's nodes and edges. Saving
writes the document, with positions read back from the scene, so opening and saving a graph
without edits gives the same text. Runs plan the document and execute it with
:class:`starloom.graph_runtime.run.Run` in a worker thread; its events reach the GUI thread
through a Qt signal.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from qtpy.QtCore import QObject, QPointF, Signal
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import QShortcut
from ryvencore.NodePort import NodeInput, NodeOutput
from ryvencore_qt import NodeGUI, SessionGUI
from ryvencore_qt.src.flows.FlowCommands import Delegate_Command, RemoveComponents_Command

from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.graph import GraphValidationError, created_with, plan
from starloom.graph_runtime.registry import default_registry
from starloom.graph_runtime.run import Run, RunResult, new_run_dir
from starloom.serialization import EdgeSpec, GraphDocument, NodeSpec, UI, load_graph, save_graph

from .nodes import (IMAGE_TYPES, describe, ryven_node_class, ryven_node_classes, show_value,
                    wrap_title)
from .viewer import preview_image

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_MISSING = object()
LAYER_DX, ROW_GAP, MARGIN = 290, 40, 40


class _Bridge(QObject):
    """Carries worker-thread run events to the GUI thread (queued signal connections)."""

    event = Signal(int, object)     # run token, event dict
    finished = Signal(int, object)  # run token, RunResult


class GraphEditor(QObject):
    """A graph document edited in a Ryven flow view and run with the Starloom runtime.

    Parameters
    ----------
    parent : QWidget
        Parent of the flow view.
    registry : Registry, optional
        Node types (default: :func:`~starloom.graph_runtime.registry.default_registry`).
    cache_dir : path, optional
        Cache of runs (default: the user cache folder, as ``starloom run``).
    runs_dir : path, optional
        Parent folder of run folders (default: ``runs/`` next to the graph file, or in the
        current folder for an unsaved graph).

    Attributes
    ----------
    doc : GraphDocument
        The document being edited (node specs are shared with the flow's nodes).
    path : Path or None
        File of the document.
    view : FlowView
        The Ryven flow view to put in a window.
    states : dict
        Latest run state of each node id: pending, running, cached, done, failed, cancelled.
    outputs : dict
        Latest output values of each node id, by port.
    """

    changed = Signal()                 # the document was edited (or replaced)
    params_changed = Signal(str)       # node id whose params (or id/label) changed; '' = graph
    selection_changed = Signal(object)  # selected node id or None
    refused = Signal(str)              # a connection or value was refused, with the reason
    message = Signal(str)              # a line for the status bar / log
    run_event = Signal(object)         # every runtime event (dict)
    run_finished = Signal(object)      # RunResult, or GraphValidationError if nothing ran
    view_requested = Signal(str, object)  # node id and port (or None) to show in a viewer

    def __init__(self, parent=None, registry=None, cache_dir=None, runs_dir=None):
        super().__init__(parent)
        self.registry = registry or default_registry()
        self.cache_dir = cache_dir
        self.runs_dir = runs_dir
        self.session_gui = SessionGUI(parent)
        design = self.session_gui.design
        design.set_flow_theme(design.flow_theme_by_name("Fusion"))  # light; see nodes.TITLE_FONT
        self.session = self.session_gui.core_session
        self.classes = ryven_node_classes(self.registry)
        self.session.register_node_types(list(self.classes.values()))
        self.flow = self.session.create_flow("graph")
        self.flow.starloom_editor = self
        self.view = self.session_gui.flow_views[self.flow]
        # Typed ports: every connect request, from the mouse or the API, goes through our check.
        self.view.check_connection_validity_request.disconnect()
        self.view.check_connection_validity_request.connect(self._check_connection)
        self.flow.check_connection_validity = self._check_connection
        # Ryven's drawings and its empty flow menu are not part of a Starloom graph.
        self.view._menu_layout_proxy.hide()
        self.view._stylus_modes_proxy.hide()
        # Ryven's copy/paste puts pickled node state on the clipboard: not in this editor.
        for sc in self.view.findChildren(QShortcut):
            if sc.key() in (QKeySequence(QKeySequence.Copy), QKeySequence(QKeySequence.Cut),
                            QKeySequence(QKeySequence.Paste)):
                sc.setEnabled(False)
        self.flow.node_created.sub(self._node_created)
        self.flow.node_added.sub(self._node_added, nice=-1)  # before the view selects it
        self.flow.node_removed.sub(self._node_removed)
        self.flow.connection_added.sub(self._connection_added)
        self.flow.connection_removed.sub(self._connection_removed)
        self.view.nodes_selection_changed.connect(self._selection)
        self.view._undo_stack.indexChanged.connect(self._undo_index_changed)  # moves too
        self._bridge = _Bridge()
        self._bridge.event.connect(self._on_run_event)
        self._bridge.finished.connect(self._on_run_finished)
        self._pending_spec: NodeSpec | None = None
        self._loading = False
        self._run: Run | None = None
        self._thread: threading.Thread | None = None
        self._token = 0  # events of a run started before the last load() are dropped
        self.doc = GraphDocument()
        self.path: Path | None = None
        self.states: dict[str, str] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.last_refusal = ""
        self._saved_text = self.doc.to_json()

    # --- document in, document out ------------------------------------------------------------
    def load(self, doc: GraphDocument, path: str | Path | None = None, arrange: bool = True):
        """Show ``doc`` (the editor keeps and edits this object).

        If its nodes overlap (e.g. a hand-written file without positions) they are arranged left
        to right, and the document counts as modified.
        """
        self.cancel()
        self._thread, self._run = None, None
        self._token += 1
        self._loading = True
        try:
            for out, inps in list(self.flow.graph_adj.items()):
                for inp in list(inps):
                    self.flow.remove_connection((out, inp))
            for node in list(self.flow.nodes):
                self.flow.remove_node(node)
            self.doc, self.path = doc, Path(path) if path else None
            self.states.clear()
            self.outputs.clear()
            for spec in doc.nodes:
                self._create(spec)
            for e in doc.edges:
                out, inp = self._ports(e.from_, e.to)
                if out is not None and inp is not None and self.flow.connected_output(inp) is None:
                    self.flow.add_connection((out, inp))
                else:  # `starloom validate` names the problem; the file keeps the edge
                    self.message.emit(f"edge {e.from_} -> {e.to} is not drawn: no such port, "
                                      "or the input is fed twice")
        finally:
            self._loading = False
        self.view._undo_stack.clear()
        self._saved_text = doc.to_json()
        if arrange and self._overlapping():
            self.arrange()
            self.message.emit("nodes overlapped: arranged left to right")
        self.view.clear_selection()
        self.changed.emit()

    def open(self, path: str | Path):
        """Open a graph file (raises ``GraphFileError`` if it cannot be read)."""
        self.load(load_graph(path), path)

    def new(self):
        """Start an empty graph."""
        self.load(GraphDocument())

    def document(self) -> GraphDocument:
        """The document as it would be saved: a copy, with positions read from the scene.

        A node keeps its stored position unless its item was moved (by half a pixel or more).
        """
        for node in self.flow.nodes:
            if node not in self.view.node_items:  # being placed right now
                continue
            x, y = self._top_left(node)
            ui = node.spec.ui
            if abs(x - ui.x) >= 0.5 or abs(y - ui.y) >= 0.5:
                ui.x, ui.y = float(round(x)), float(round(y))
        return self.doc.model_copy(deep=True)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the document to ``path`` (default: the file it came from)."""
        path = Path(path or self.path)
        doc = self.document()
        if doc.to_json() != self._saved_text:
            # An edited graph records the versions it was written with; an unedited one stays
            # byte-identical.
            doc.metadata.created_with = self.doc.metadata.created_with = created_with(
                doc, self.registry)
        save_graph(doc, path)
        self.path = path
        self._saved_text = self.doc.to_json()
        self.message.emit(f"saved {path}")
        self.changed.emit()
        return path

    @property
    def modified(self) -> bool:
        """Whether the document differs from the file (or from the empty graph)."""
        return self.document().to_json() != self._saved_text

    # --- nodes and edges ------------------------------------------------------------------------
    def node_ids(self) -> list[str]:
        """Ids of the document's nodes, in document order."""
        return [n.id for n in self.doc.nodes]

    def node(self, node_id: str):
        """The Ryven node of ``node_id``."""
        for n in self.flow.nodes:
            if n.spec.id == node_id:
                return n
        raise KeyError(node_id)

    def item(self, node_id: str):
        """The node item (QGraphicsItem) of ``node_id``."""
        return self.view.node_items[self.node(node_id)]

    def node_type(self, node_id: str):
        """The Starloom node class of ``node_id`` (None if the type is not installed)."""
        return type(self.node(node_id)).starloom_type

    def add_node(self, type_id: str, x: float | None = None, y: float | None = None,
                 node_id: str | None = None) -> str:
        """Place a node of ``type_id`` with its top-left corner at ``(x, y)`` (undoable).

        Without ``x``/``y`` it goes right of the rightmost node. Returns the new node's id.
        """
        if type_id not in self.classes:
            raise KeyError(f"unknown node type '{type_id}'")
        if node_id is not None and (not _ID.match(node_id) or node_id in self.node_ids()):
            raise ValueError(f"node id '{node_id}' is invalid or taken")
        cls = self.registry.get(type_id)
        if x is None or y is None:
            right = [self._top_left(n)[0] for n in self.flow.nodes]
            x, y = (max(right) + LAYER_DX if right else MARGIN), MARGIN
        self._pending_spec = NodeSpec(id=node_id or self._new_id(type_id), type=type_id,
                                      version=cls.version, ui=UI(x=x, y=y))
        self.view._node_place_pos = QPointF(x, y)
        self.view.create_node__cmd(self.classes[type_id])
        node = self.flow.nodes[-1]
        self._place(node, x, y)
        return node.spec.id

    def remove_node(self, node_id: str):
        """Delete a node and its connections (undoable)."""
        self.view.push_undo(RemoveComponents_Command(self.view, [self.item(node_id)]))

    def connect(self, source: str, target: str) -> bool:
        """Connect output ``"node.port"`` to input ``"node.port"`` as a mouse drag would.

        Returns whether the connection exists afterwards; a refusal (incompatible port types, a
        cycle) is shown on the target node and in :attr:`last_refusal`.
        """
        out, inp = self._ports(source, target)
        if out is None or inp is None:
            raise KeyError(f"no port {source if out is None else target}")
        if self.flow.connected_output(inp) is out:
            return True
        self.view.connect_node_ports__cmd(out, inp)
        return self.flow.connected_output(inp) is out

    def disconnect(self, source: str, target: str):
        """Remove the connection from ``source`` to ``target`` (undoable)."""
        out, inp = self._ports(source, target)
        if out is not None and self.flow.connected_output(inp) is out:
            self.view.connect_node_ports__cmd(out, inp)  # Ryven toggles an existing connection

    def select(self, node_id: str | None):
        """Select one node (or none)."""
        self.view.select_items([self.item(node_id)] if node_id else [])

    def arrange(self):
        """Lay the nodes out in columns by depth (left to right), stacked without overlap."""
        depth: dict[str, int] = {}
        preds: dict[str, list[str]] = {n.id: [] for n in self.doc.nodes}
        for e in self.doc.edges:
            if e.source[0] in preds and e.target[0] in preds:
                preds[e.target[0]].append(e.source[0])

        def d(nid, seen=()):
            if nid not in depth:
                depth[nid] = 1 + max((d(p, seen + (nid,)) for p in preds[nid] if p not in seen),
                                     default=-1)
            return depth[nid]

        columns: dict[int, list] = {}
        for node in self.flow.nodes:
            columns.setdefault(d(node.spec.id), []).append(node)
        for col, nodes in columns.items():
            y = MARGIN
            for node in nodes:
                self._place(node, MARGIN + col * LAYER_DX, y)
                y += self.view.node_items[node].boundingRect().height() + ROW_GAP

    # --- parameters, ids, labels ----------------------------------------------------------------
    def bound_parameter(self, node_id: str, name: str) -> str | None:
        """Name of the graph parameter bound to ``node_id.name``, if any."""
        for gname, gp in self.doc.parameters.items():
            if f"{node_id}.{name}" in gp.binds:
                return gname
        return None

    def param_value(self, node_id: str, name: str) -> Any:
        """The value the node holds for a parameter: its bound graph parameter's value, the
        value in the document, or the default."""
        spec = self.doc.node(node_id)
        gname = self.bound_parameter(node_id, name)
        if gname and self.doc.parameters[gname].default is not None:
            return self.doc.parameters[gname].default
        if name in spec.params:
            return spec.params[name]
        field = self.node_type(node_id).Params.model_fields[name]
        return field.get_default(call_default_factory=True)

    def _validate(self, node_id: str, name: str, value: Any) -> tuple[Any, str | None]:
        """(JSON value, None) if ``value`` is valid for the parameter, else (None, reason)."""
        cls = self.node_type(node_id)
        if cls is None:
            return None, f"node type '{self.doc.node(node_id).type}' is not installed"
        if name not in cls.Params.model_fields:
            return None, f"'{cls.type_id}' has no parameter '{name}'"
        params = dict(self.doc.node(node_id).params, **{name: value})
        for attempt in (params, {name: value}):
            try:
                return cls.Params.model_validate(attempt).model_dump(mode="json")[name], None
            except ValidationError as e:
                mine = [err for err in e.errors() if err["loc"][:1] == (name,)]
                if mine:
                    return None, f"{name}: {mine[0]['msg']} (got {value!r})"
        return None, f"{name}: other parameters of the node are invalid"

    def set_param(self, node_id: str, name: str, value: Any) -> str | None:
        """Set a node parameter (undoable); a bound parameter sets its graph parameter.

        Returns None when the value was taken, else the reason it was refused (also shown on
        the node and sent with :attr:`refused`); the node then keeps its previous value.
        """
        gname = self.bound_parameter(node_id, name)
        if gname is not None:
            return self.set_graph_param(gname, value)
        new, why = self._validate(node_id, name, value)
        if why:
            return self._refuse_value(node_id, why)
        spec = self.doc.node(node_id)
        old = spec.params.get(name, _MISSING)
        if old == new and old is not _MISSING:
            return None

        def apply(v):
            if v is _MISSING:
                spec.params.pop(name, None)
            else:
                spec.params[name] = v
            self._set_message(spec.id, "")
            self.params_changed.emit(spec.id)
            self.changed.emit()

        self._undoable(f"set {node_id}.{name}", lambda: apply(new), lambda: apply(old))
        return None

    def set_graph_param(self, name: str, value: Any) -> str | None:
        """Set a graph parameter's value (its ``default``), checked against every parameter it
        binds. Returns None, or the reason it was refused."""
        gp = self.doc.parameters[name]
        new = value
        for bind in gp.binds:
            nid, pname = bind.split(".")
            if nid in self.node_ids() and self.node_type(nid) is not None:
                new, why = self._validate(nid, pname, value)
                if why:
                    return self._refuse_value(nid, f"graph parameter '{name}' -> {why}")
        old = gp.default
        if new == old:
            return None

        def apply(v):
            gp.default = v
            for bind in gp.binds:
                self.params_changed.emit(bind.split(".")[0])
            self.params_changed.emit("")
            self.changed.emit()

        self._undoable(f"set graph parameter {name}", lambda: apply(new), lambda: apply(old))
        return None

    def rename_node(self, old: str, new: str) -> str | None:
        """Change a node's id, updating edges and graph parameter binds (undoable).

        Returns None, or the reason the id was refused."""
        if new == old:
            return None
        if not _ID.match(new):
            return self._refuse_value(old, f"id '{new}': use letters, digits, '_' or '-', "
                                           "not starting with a digit")
        if new in self.node_ids():
            return self._refuse_value(old, f"id '{new}' is taken by another node")

        def apply(a, b):
            spec = self.doc.node(a)
            spec.id = b
            for e in self.doc.edges:
                for attr in ("from_", "to"):
                    nid, port = getattr(e, attr).split(".")
                    if nid == a:
                        setattr(e, attr, f"{b}.{port}")
            for gp in self.doc.parameters.values():
                gp.binds = [f"{b}.{x.split('.')[1]}" if x.split(".")[0] == a else x
                            for x in gp.binds]
            if a in self.states:
                self.states[b] = self.states.pop(a)
            if a in self.outputs:
                self.outputs[b] = self.outputs.pop(a)
            self._body(b).set_node_id(b)
            self.params_changed.emit(b)
            self.changed.emit()

        self._undoable(f"rename {old} to {new}", lambda: apply(old, new), lambda: apply(new, old))
        return None

    def set_label(self, node_id: str, label: str | None):
        """Set the node's display label (``ui.label``; empty or the type's title clears it)."""
        node = self.node(node_id)
        title = type(node).title
        label = " ".join((label or "").split()) or None
        node.spec.ui.label = None if label == title else label
        x, y = self._top_left(node)
        NodeGUI.set_display_title(node.gui, wrap_title(label or title))
        self._place(node, x, y)
        self.params_changed.emit(node_id)
        self.changed.emit()

    def set_metadata(self, name: str | None = None, description: str | None = None):
        """Set the graph's name and/or description."""
        if name is not None:
            self.doc.metadata.name = name
        if description is not None:
            self.doc.metadata.description = description
        self.changed.emit()

    # --- running --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._thread is not None

    def run(self, force: set[str] = frozenset()) -> bool:
        """Plan the document and run it in a worker thread.

        Returns False (and shows the problems on the nodes) if the graph does not validate;
        :attr:`run_finished` is emitted in both cases.
        """
        if self.running:
            return False
        doc = self.document()
        base = self.path.parent if self.path else Path.cwd()
        for nid in self.node_ids():
            self._set_state(nid, None)
            self._set_message(nid, "")
        try:
            p = plan(doc, self.registry, base_dir=base.resolve(),
                     source=self.path.name if self.path else "graph")
        except GraphValidationError as e:
            for prob in e.problems:
                if prob.node in self.node_ids():
                    self._set_state(prob.node, "failed")
                    text = self._body(prob.node).message.text()
                    self._set_message(prob.node, (text + "\n" if text else "") +
                                      (f"{prob.where}: " if prob.where else "") + prob.message)
            self.message.emit(str(e))
            self.run_finished.emit(e)
            return False
        run_dir = new_run_dir(self.runs_dir or base / "runs")
        run = Run(run_dir, Cache(self.cache_dir), force=force)
        previews = {pn.spec.id: pn.cls for pn in p.nodes}

        def listener(ev):  # worker thread: only emit signals from here
            self._bridge.event.emit(token, dict(ev))
            if ev["event"] in ("node_finished", "node_cached") and ev.get("key"):
                try:
                    values = run.cache.get(ev["key"])
                    port = _image_port(previews[ev["node"]])
                    image = preview_image(values[port]) if port else None
                except Exception as exc:  # a preview must never break the run
                    values, image = None, None
                    self._bridge.event.emit(token, {"event": "warning", "node": ev["node"],
                                                    "message": f"no preview: {exc}"})
                self._bridge.event.emit(token, {"event": "outputs", "node": ev["node"],
                                                "values": values, "preview": image})

        run.listeners.append(listener)
        self._token += 1
        token = self._token

        def work():
            try:
                result = run.execute(p)
            except Exception as exc:  # e.g. the run folder cannot be written
                run.close()
                result = RunResult("failed", run_dir, error=f"{type(exc).__name__}: {exc}")
            self._bridge.finished.emit(token, result)

        self._run = run
        self._thread = threading.Thread(target=work, name="starloom-run", daemon=True)
        self.message.emit(f"running in {run_dir}")
        self._thread.start()
        return True

    def cancel(self, wait: bool = True):
        """Ask the current run to stop at the next node or frame boundary."""
        if self._run is not None:
            self._run.cancel()
            if wait and self._thread is not None:
                self._thread.join()

    def _on_run_event(self, token: int, ev: dict):
        if token != self._token:
            return
        kind, nid = ev["event"], ev.get("node")
        if kind == "run_started":
            for n in ev.get("nodes", []):
                if n in self.node_ids():
                    self._set_state(n, "pending")
        elif nid not in self.node_ids():
            pass
        elif kind == "node_started":
            self._set_state(nid, "running")
        elif kind == "progress":
            self._set_state(nid, "running", f"{ev['done']}/{ev['total']}", ev["done"], ev["total"])
        elif kind == "node_cached":
            self._set_state(nid, "cached")
        elif kind == "node_finished":
            self._set_state(nid, "done", f"{ev.get('seconds', 0):.1f} s")
        elif kind == "node_failed":
            self._set_state(nid, "failed")
            self._set_message(nid, ev.get("message", ""))
        elif kind == "outputs":
            if ev["values"] is not None:
                self.outputs[nid] = ev["values"]
                for out in self.node(nid).outputs:
                    if out.label_str in ev["values"]:
                        show_value(out, describe(ev["values"][out.label_str]))
            if ev["preview"] is not None:
                self._body(nid).set_thumbnail(ev["preview"])
                self._relayout(self.node(nid))
        if kind != "outputs":
            self.run_event.emit(ev)

    def _on_run_finished(self, token: int, result: RunResult):
        if token != self._token:
            return
        if self._thread is not None:
            self._thread.join()
        self._thread, self._run = None, None
        for nid, state in list(self.states.items()):
            if state in ("running", "pending") and nid in self.node_ids():
                self._set_state(nid, "cancelled" if result.status == "cancelled" else
                                ("failed" if state == "running" else None))
        self.message.emit(f"run {result.status}" + (f": {result.error}" if result.error else "")
                          + f" ({result.run_dir})")
        self.run_finished.emit(result)

    def view_output(self, node_id: str, port: str | None = None):
        """Ask the window to show an image output of the node (see :attr:`view_requested`)."""
        self.view_requested.emit(node_id, port)

    def image_output(self, node_id: str, port: str | None = None):
        """(port, value) of the node's latest output on ``port`` (default: the port its
        thumbnail shows), or None before a run."""
        cls = self.node_type(node_id)
        port = port or (_image_port(cls) if cls else None)
        values = self.outputs.get(node_id) or {}
        return (port, values[port]) if port in values else None

    # --- internals ------------------------------------------------------------------------------
    def _create(self, spec: NodeSpec):
        cls = self.classes.get(spec.type)
        if cls is None:  # a type not installed: keep the node, ports as the edges name them
            ins = [e.target[1] for e in self.doc.edges if e.target[0] == spec.id]
            outs = [e.source[1] for e in self.doc.edges if e.source[0] == spec.id]
            cls = ryven_node_class(type_id=spec.type, inputs=dict.fromkeys(ins),
                                   outputs=dict.fromkeys(outs))
            self.session.register_node_type(cls)
        self._pending_spec = spec
        node = self.flow.create_node(cls)
        self._place(node, spec.ui.x, spec.ui.y)
        return node

    def _node_created(self, node):
        spec, self._pending_spec = self._pending_spec, None
        if spec is None:  # placed from the node list
            cls = type(node).starloom_type
            pos = self.view._node_place_pos
            spec = NodeSpec(id=self._new_id(cls.type_id), type=cls.type_id, version=cls.version,
                            ui=UI(x=round(pos.x()), y=round(pos.y())))
        node.spec = spec

    def _node_added(self, node):
        if not any(s is node.spec for s in self.doc.nodes):
            index = getattr(node, "doc_index", len(self.doc.nodes))
            self.doc.nodes.insert(min(index, len(self.doc.nodes)), node.spec)
        if not self._loading:
            self.changed.emit()

    def _node_removed(self, node):
        for i, s in enumerate(self.doc.nodes):
            if s is node.spec:
                node.doc_index = i
                del self.doc.nodes[i]
                break
        if not self._loading:
            self.changed.emit()

    def _edge(self, c) -> tuple[str, str]:
        out, inp = c
        return f"{out.node.spec.id}.{out.label_str}", f"{inp.node.spec.id}.{inp.label_str}"

    def _connection_added(self, c):
        src, dst = self._edge(c)
        if not any(e.from_ == src and e.to == dst for e in self.doc.edges):
            self.doc.edges.append(EdgeSpec(**{"from": src, "to": dst}))
        if not self._loading:
            self._set_message(c[1].node.spec.id, "")
            self.changed.emit()

    def _connection_removed(self, c):
        src, dst = self._edge(c)
        self.doc.edges = [e for e in self.doc.edges if not (e.from_ == src and e.to == dst)]
        if not self._loading:
            self.changed.emit()

    def _check_connection(self, c) -> bool:
        out, inp = c
        why = None
        if not (isinstance(out, NodeOutput) and isinstance(inp, NodeInput)):
            why = "connect an output (right side) to an input (left side)"
        elif out.node is inp.node:
            why = "a node cannot feed itself"
        else:
            src, dst = self._edge(c)
            op = type(out.node).starloom_outputs.get(out.label_str)
            ip = type(inp.node).starloom_inputs.get(inp.label_str)
            known = op is not None and ip is not None and "?" not in op.types + ip.types
            if known and not ip.accepts(op):
                why = (f"cannot connect {src} ({'/'.join(op.types)}) to {dst} "
                       f"({'/'.join(ip.types)}): the port types differ")
            elif self._reaches(inp.node, out.node):
                why = f"connecting {src} to {dst} would make a cycle"
        if why:
            self.last_refusal = why
            self._set_message((inp if isinstance(inp, NodeInput) else out).node.spec.id,
                              f"refused: {why}")
            self.message.emit(why)
            self.refused.emit(why)
        self.flow.connection_request_valid.emit(why is None)
        return why is None

    def _reaches(self, start, goal) -> bool:
        todo, seen = [start], set()
        while todo:
            n = todo.pop()
            if n is goal:
                return True
            if n not in seen:
                seen.add(n)
                todo += self.flow.node_successors.get(n, [])
        return False

    def _ports(self, source: str, target: str):
        def find(ref, outputs):
            nid, _, port = ref.partition(".")
            try:
                node = self.node(nid)
            except KeyError:
                return None
            return next((p for p in (node.outputs if outputs else node.inputs)
                         if p.label_str == port), None)
        return find(source, True), find(target, False)

    def _new_id(self, type_id: str) -> str:
        base = type_id.rsplit(".", 1)[-1]
        base = base if _ID.match(base) else "node"
        taken, i = set(self.node_ids()), 2
        new = base
        while new in taken:
            new, i = f"{base}_{i}", i + 1
        return new

    def _undoable(self, text, redo, undo):
        self.view.push_undo(Delegate_Command(self.view, text=text, on_undo=undo, on_redo=redo))

    def _refuse_value(self, node_id: str, why: str) -> str:
        self.last_refusal = why
        if node_id in self.node_ids():
            self._set_message(node_id, f"refused: {why}")
        self.message.emit(f"refused: {why}")
        self.refused.emit(why)
        return why

    def _body(self, node_id: str):
        return self.item(node_id).main_widget

    def _set_message(self, node_id: str, text: str):
        body = self._body(node_id)
        if text != body.message.text():
            body.set_message(text)
            self._relayout(self.node(node_id))

    def _set_state(self, node_id: str, state, detail="", done=None, total=None):
        body = self._body(node_id)
        shape = (body.state, body.progress.isHidden())
        if state is None:
            self.states.pop(node_id, None)
        else:
            self.states[node_id] = state
        body.set_state(state, detail, done, total)
        if shape != (body.state, body.progress.isHidden()):
            self._relayout(self.node(node_id))

    def _top_left(self, node) -> tuple[float, float]:
        item = self.view.node_items[node]
        r = item.boundingRect()
        return item.pos().x() - r.width() / 2, item.pos().y() - r.height() / 2

    def _place(self, node, x: float, y: float):
        item = self.view.node_items[node]
        r = item.boundingRect()
        item.setPos(x + r.width() / 2, y + r.height() / 2)
        item.update_conn_pos()  # Ryven recomputes connections before a move, not after

    def _relayout(self, node):
        """Refit a node item to its body's content, keeping its top-left corner in place."""
        x, y = self._top_left(node)
        item = self.view.node_items[node]
        item.main_widget.adjustSize()
        item.update_shape()
        self._place(node, x, y)

    def _overlapping(self) -> bool:
        rects = [self.view.node_items[n].sceneBoundingRect() for n in self.flow.nodes]
        return any(a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1:])

    def _undo_index_changed(self, _index):
        self.changed.emit()

    def _selection(self, nodes):
        self.selection_changed.emit(nodes[0].spec.id if len(nodes) == 1 else None)


def _image_port(node_cls) -> str | None:
    """The output port a thumbnail shows: the first Image output, else the first FrameSeries."""
    for kind in IMAGE_TYPES:
        for name, port in node_cls.outputs.items():
            if kind in port.types:
                return name
    return None
