"""The editor's controller: a graph document edited through a Ryven flow view and run with the
Starloom runtime.

The document lives in an :class:`~starloom.graph_runtime.editing.EditableGraph`, which checks
every edit, keeps the undo history and announces each change. This class is the Qt side of it:

- the :class:`~.flow_mirror.FlowMirror` draws the document in the Ryven flow and follows its
  changes;
- what the user does in the flow view (place, delete, move, connect) becomes an operation on the
  document (:mod:`.ryven_adapter` routes it here); a refused operation changes nothing, and its
  reason is shown on the node, in the status bar and with :attr:`GraphEditor.refused`;
- the :class:`~.run_controller.RunController` runs the document and shows the run on the nodes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from qtpy.QtCore import QObject, QRectF, Signal
from ryvencore.NodePort import NodeInput, NodeOutput
from ryvencore_qt import SessionGUI

from starloom.graph_runtime.editing import Change, ChangeKind, EditableGraph, EditRefused
from starloom.graph_runtime.embedded import carries_graph, load_any_graph
from starloom.graph_runtime.registry import default_registry
from starloom.graph_runtime.subgraph import upstream_document
from starloom.serialization import GraphDocument, load_graph, parse_graph

from .flow_mirror import FlowMirror
from .layout import arranged, next_position
from .nodes import ryven_node_classes
from .node_params import NodeParams
from .palette import NodePalette
from .ports import highlight
from .run_controller import RunController
from .ryven_adapter import (fit_view, route_connection_requests, route_place_requests,
                            route_user_actions, strip_view)


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
    graph : EditableGraph
        The document model: every edit goes through it.
    mirror : FlowMirror
        The Ryven flow drawn from :attr:`graph`.
    runs : RunController
        Runs of the document.
    path : Path or None
        File of the document.
    view : FlowView
        The Ryven flow view to put in a window.
    last_refusal : str
        Why the last refused edit was refused.
    """

    changed = Signal()                 # the document was edited, saved or replaced
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
        self.session_gui = SessionGUI(parent)
        design = self.session_gui.design
        design.set_flow_theme(design.flow_theme_by_name("Fusion"))  # light; see nodes.TITLE_FONT
        self.session = self.session_gui.core_session
        self.classes = ryven_node_classes(self.registry)
        self.session.register_node_types(list(self.classes.values()))
        self.flow = self.session.create_flow("graph")
        self.view = self.session_gui.flow_views[self.flow]
        strip_view(self.view)
        self.node_params: dict = {}  # node id -> NodeParams (the editors on the node)
        self.graph = EditableGraph(self.registry)
        self.mirror = FlowMirror(self.graph, self.session, self.flow, self.view, self.classes)
        self.runs = RunController(self.graph, self.mirror, cache_dir, runs_dir)
        self.path: Path | None = None
        self.last_refusal = ""
        route_user_actions(self.view, place=self._place_requested,
                           remove=self._remove_requested, moved=self._moved)
        route_connection_requests(self.view, self.flow, self._connection_requested)
        self.palette = NodePalette(self.view, self.registry)
        self.palette.chosen.connect(self._palette_chosen)
        route_place_requests(self.view, self.open_palette, self._wire_dragged)
        self.view.nodes_selection_changed.connect(self._selection)
        self.mirror.message.connect(self.message)
        self.mirror.label_edited.connect(self.set_label)
        self.mirror.view_requested.connect(self.view_output)
        self.runs.message.connect(self.message)
        self.runs.run_event.connect(self.run_event)
        self.runs.run_finished.connect(self.run_finished)
        self.graph.subscribe(self._on_change)

    # --- document in, document out ------------------------------------------------------------
    @property
    def doc(self) -> GraphDocument:
        """The document being edited (read only: edit it through this class or :attr:`graph`)."""
        return self.graph.doc

    def load(self, doc: GraphDocument, path: str | Path | None = None, arrange: bool = True,
             source: bytes | None = None):
        """Show ``doc`` (the editor keeps and edits this object); ``source``, the file content
        it was read from, is kept for saving (see :meth:`EditableGraph.replace`).

        If its nodes overlap (e.g. a hand-written file without positions) they are arranged left
        to right (an undoable edit), and the document counts as modified.
        """
        self.runs.reset()
        self.path = Path(path) if path else None
        self.graph.replace(doc, source)
        if arrange and self.mirror.overlapping():
            self.arrange()
            self.message.emit("nodes overlapped: arranged left to right")
        self.view.clear_selection()
        self.fit_view()

    def open(self, path: str | Path):
        """Open a graph file, or the graph embedded in a FITS or PNG file a save node wrote
        (raises ``GraphFileError`` if it cannot be read or carries no valid graph)."""
        if carries_graph(path):  # the graph a save node embedded in an image it wrote
            self.load(load_any_graph(path))  # no file yet: Save asks for one
            self.message.emit(f"opened the graph embedded in {Path(path).name}")
            return
        doc = load_graph(path)
        self.load(doc, path, source=Path(path).read_bytes())

    def new(self):
        """Start an empty graph."""
        self.load(GraphDocument())

    def document(self) -> GraphDocument:
        """The document as it would be saved: a copy, after taking in the position of any node
        item moved in the scene by code (by half a pixel or more)."""
        self._adopt_scene_positions()
        return self.graph.doc.model_copy(deep=True)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the document to ``path`` (default: the file it came from)."""
        path = Path(path or self.path)
        self._adopt_scene_positions()
        self.graph.save(path)
        self.path = path
        self.message.emit(f"saved {path}")
        self.changed.emit()
        return path

    @property
    def modified(self) -> bool:
        """Whether the document differs from the file (or from the empty graph)."""
        return self.graph.modified

    def undo(self):
        """Undo the last edit."""
        self.graph.undo()

    def redo(self):
        """Redo the last undone edit."""
        self.graph.redo()

    # --- nodes and edges ----------------------------------------------------------------------
    def node_ids(self) -> list[str]:
        """Ids of the document's nodes, in document order."""
        return self.graph.node_ids()

    def node(self, node_id: str):
        """The Ryven node of ``node_id``."""
        return self.mirror.node(node_id)

    def item(self, node_id: str):
        """The node item (QGraphicsItem) of ``node_id``."""
        return self.mirror.item(node_id)

    def node_type(self, node_id: str):
        """The Starloom node class of ``node_id`` (None if the type is not installed)."""
        return self.graph.node_type(node_id)

    def add_node(self, type_id: str, x: float | None = None, y: float | None = None,
                 node_id: str | None = None) -> str:
        """Place a node of ``type_id`` with its top-left corner at ``(x, y)`` (undoable).

        Without ``x``/``y`` it goes right of the rightmost node. Returns the new node's id.

        Raises
        ------
        EditRefused
            If the type is not registered, or ``node_id`` is invalid or taken.
        """
        if x is None or y is None:
            x, y = next_position(self.graph.doc)
        return self.graph.add_node(type_id, x, y, node_id)

    def free_position(self, x: float, y: float) -> tuple[float, float]:
        """The first place at or below ``(x, y)`` where a new node (taken as 180 x 80 px) is
        clear of every other node, so nodes added in a row do not pile up."""
        rects = [self.item(nid).sceneBoundingRect() for nid in self.node_ids()]
        while True:
            hit = next((r for r in rects if r.intersects(QRectF(x, y, 180, 80))), None)
            if hit is None:
                return round(x), round(y)
            y = hit.bottom() + 20

    def remove_node(self, node_id: str):
        """Delete a node and its connections (undoable)."""
        self._attempt(self.graph.remove_node, node_id)

    def remove_selected(self):
        """Delete the selected nodes and connections (undoable), as the Delete key does."""
        self.view.remove_selected_components__cmd()

    def connect(self, source: str, target: str) -> bool:
        """Connect output ``"node.port"`` to input ``"node.port"`` as a mouse drag would (an
        edge already feeding the input is replaced).

        Returns whether the connection exists afterwards; a refusal (no such port, incompatible
        port types, a cycle) is shown on the target node and in :attr:`last_refusal`.
        """
        self._connect(source, target)
        return self.graph.has_edge(source, target)

    def disconnect(self, source: str, target: str):
        """Remove the connection from ``source`` to ``target``, if there is one (undoable)."""
        if self.graph.has_edge(source, target):
            self._attempt(self.graph.disconnect, source, target)

    def selected(self) -> list[str]:
        """Ids of the selected nodes, in document order."""
        chosen = {self.mirror.node_id(n) for n in self.view.selected_nodes()}
        return [nid for nid in self.node_ids() if nid in chosen]

    def copy_text(self, node_ids: list[str] | None = None) -> str:
        """The nodes (default: the selected ones) with their parameters, labels and the edges
        between them, as Starloom graph JSON (a graph file of its own; never pickle)."""
        ids = set(self.selected() if node_ids is None else node_ids)
        doc = self.document()
        part = GraphDocument(nodes=[n for n in doc.nodes if n.id in ids],
                             edges=[e for e in doc.edges
                                    if e.source[0] in ids and e.target[0] in ids])
        return part.to_json()

    def paste_text(self, text: str, offset: tuple[float, float] = (40, 40)) -> list[str]:
        """Add the nodes and edges of graph JSON text (see :meth:`copy_text`), shifted by
        ``offset``, under fresh ids where theirs are taken (one undoable step). Returns the
        new ids; raises ``GraphFileError`` if the text is not a valid graph."""
        part = parse_graph(text, "pasted text")
        new: dict[str, str] = {}
        with self.graph.group(f"paste {len(part.nodes)} node(s)"):
            for spec in part.nodes:
                nid, n = spec.id, 2
                while nid in self.node_ids():
                    nid, n = f"{spec.id}_{n}", n + 1
                try:
                    new[spec.id] = self.graph.add_node(spec.type, spec.ui.x + offset[0],
                                                       spec.ui.y + offset[1], nid)
                except EditRefused as e:  # e.g. a type not installed here
                    self._refuse(e)
                    continue
                for name, value in spec.params.items():
                    self._attempt(self.graph.set_param, new[spec.id], name, value)
                if spec.ui.label:
                    self._attempt(self.graph.set_label, new[spec.id], spec.ui.label)
            for e in part.edges:
                (sn, sp), (tn, tp) = e.source, e.target
                if sn in new and tn in new:
                    self._connect(f"{new[sn]}.{sp}", f"{new[tn]}.{tp}")
        self.view.select_items([self.item(nid) for nid in new.values()])
        return list(new.values())

    def duplicate(self) -> list[str]:
        """Copy the selected nodes (and their inner edges) beside themselves."""
        return self.paste_text(self.copy_text()) if self.selected() else []

    def select(self, node_id: str | None):
        """Select one node (or none)."""
        self.view.select_items([self.item(node_id)] if node_id else [])

    def fit_view(self):
        """Zoom and scroll so that every node is in view (not zoomed in beyond 100 %)."""
        rect = QRectF()
        for nid in self.node_ids():
            rect = rect.united(self.item(nid).sceneBoundingRect())
        fit_view(self.view, rect.adjusted(-40, -40, 40, 40))

    def arrange(self):
        """Lay the nodes out in columns by depth, left to right, stacked without overlap
        (undoable)."""
        self.graph.move_nodes(arranged(self.graph.doc, self.mirror.heights()), text="arrange")

    # --- parameters, ids, labels --------------------------------------------------------------
    def bound_parameter(self, node_id: str, name: str) -> str | None:
        """Name of the graph parameter bound to ``node_id.name``, if any."""
        return self.graph.bound_parameter(node_id, name)

    def param_value(self, node_id: str, name: str) -> Any:
        """The value the node holds for a parameter: its bound graph parameter's value, the
        value in the document, or the default."""
        return self.graph.param_value(node_id, name)

    def set_param(self, node_id: str, name: str, value: Any) -> str | None:
        """Set a node parameter (undoable); a bound parameter sets its graph parameter.

        Returns None when the value was taken, else the reason it was refused (also shown on
        the node and sent with :attr:`refused`); the node then keeps its previous value.
        """
        return self._attempt(self.graph.set_param, node_id, name, value)

    def expose_param(self, node_id: str, name: str, gp_name: str | None = None) -> str | None:
        """Make a node parameter a graph parameter (named after it unless ``gp_name`` is given,
        made unique), with the node's value (undoable). Returns None, or the refusal."""
        if gp_name is None:
            gp_name, n = name, 2
            while gp_name in self.doc.parameters:
                gp_name, n = f"{name}_{n}", n + 1
        return self._attempt(self.graph.create_graph_parameter, gp_name, [f"{node_id}.{name}"])

    def bind_param(self, gp_name: str, node_id: str, name: str) -> str | None:
        """Let graph parameter ``gp_name`` also set ``node_id.name`` (undoable)."""
        return self._attempt(self.graph.bind_parameter, gp_name, f"{node_id}.{name}")

    def unbind_param(self, node_id: str, name: str) -> str | None:
        """Stop the graph parameter bound to ``node_id.name`` setting it; the node keeps the
        value it had through it. Unbinding the last bind removes the graph parameter (one
        undoable step). Returns None, or the refusal."""
        gp_name = self.bound_parameter(node_id, name)
        if gp_name is None:
            return None
        value = self.param_value(node_id, name)
        try:
            with self.graph.group(f"unbind {node_id}.{name} from {gp_name}"):
                if self.doc.parameters[gp_name].binds == [f"{node_id}.{name}"]:
                    self.graph.remove_graph_parameter(gp_name)
                else:
                    self.graph.unbind_parameter(gp_name, f"{node_id}.{name}")
                self.graph.set_param(node_id, name, value)
        except EditRefused as e:
            return self._refuse(e)
        return None

    def set_graph_param(self, name: str, value: Any) -> str | None:
        """Set a graph parameter's value, checked against every parameter it binds (undoable).
        Returns None, or the reason it was refused."""
        return self._attempt(self.graph.set_graph_parameter, name, value)

    def rename_node(self, old: str, new: str) -> str | None:
        """Change a node's id, updating edges and graph parameter binds (undoable).
        Returns None, or the reason the id was refused."""
        return self._attempt(self.graph.rename_node, old, new)

    def set_label(self, node_id: str, label: str | None) -> str | None:
        """Set the node's display label (``ui.label``; empty or the type's title clears it;
        undoable). Returns None, or the reason it was refused."""
        return self._attempt(self.graph.set_label, node_id, label)

    def set_metadata(self, name: str | None = None, description: str | None = None):
        """Set the graph's name and/or description (undoable)."""
        self.graph.set_metadata(name, description)

    # --- running ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self.runs.running

    @property
    def states(self) -> dict[str, str]:
        """Latest run state of each node id: pending, running, cached, done, failed, cancelled."""
        return self.runs.states

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        """Latest output values of each node id, by port."""
        return self.runs.outputs

    def run(self, force: set[str] = frozenset(), upto: str | None = None) -> bool:
        """Plan the document and run it in a worker thread; with ``upto`` (a node id) only that
        node and the nodes it depends on (same runtime, same cache keys).

        Returns False (and shows the problems on the nodes) if the graph does not validate;
        :attr:`run_finished` is emitted in both cases.
        """
        if self.running:
            return False
        base = self.path.parent if self.path else Path.cwd()
        doc = self.document()
        if upto is not None:
            doc = upstream_document(doc, [upto])
        return self.runs.start(doc, base, self.path.name if self.path else "graph", force)

    def cancel(self, wait: bool = True):
        """Ask the current run to stop at the next node or frame boundary."""
        self.runs.cancel(wait)

    def view_output(self, node_id: str, port: str | None = None):
        """Ask the window to show an image output of the node (see :attr:`view_requested`)."""
        self.view_requested.emit(node_id, port)

    def image_output(self, node_id: str, port: str | None = None):
        """(port, value) of the node's latest output on ``port`` (default: the port its
        thumbnail shows), or None before a run."""
        return self.runs.image_output(node_id, port)

    # --- the document changed -----------------------------------------------------------------
    def _on_change(self, change: Change):
        self.mirror.apply(change)
        kind, nid = change.kind, change.node
        self._follow_node_params(change)
        if kind == ChangeKind.NODE_RENAMED:
            self.runs.rename(change.old, nid)
        if kind == ChangeKind.PARAM_CHANGED:
            self.mirror.show_message(nid, "")  # a value taken clears a refusal or failure
        elif kind == ChangeKind.EDGE_ADDED:
            self.mirror.show_message(change.edge[1].split(".")[0], "")
        elif kind == ChangeKind.GRAPH_PARAMETER_CHANGED and change.name in self.doc.parameters:
            for bind in self.doc.parameters[change.name].binds:
                if bind.split(".")[0] in self.graph.node_ids():
                    self.mirror.show_message(bind.split(".")[0], "")
        if kind in (ChangeKind.PARAM_CHANGED, ChangeKind.LABEL_CHANGED, ChangeKind.NODE_RENAMED):
            self.params_changed.emit(nid)
        elif kind in (ChangeKind.GRAPH_PARAMETER_CHANGED, ChangeKind.METADATA_CHANGED):
            self.params_changed.emit("")
        self.changed.emit()

    def _follow_node_params(self, change: Change):
        # The editors on the nodes: made with each new node (a node brought back by undo
        # keeps its body, and its editors), refreshed when values change.
        kind = change.kind
        if kind == ChangeKind.DOCUMENT_REPLACED:
            self.node_params = {}
        if kind in (ChangeKind.DOCUMENT_REPLACED, ChangeKind.NODE_ADDED):
            # Changes of a grouped edit arrive one by one after it: the flow has this node,
            # not yet the next ones.
            for nid in self.node_ids() if change.node is None else [change.node]:
                body = self.mirror.body(nid)
                if getattr(body, "param_editors", None) is None:
                    self.node_params[nid] = NodeParams(self, nid, body)
                    self.mirror.relayout(nid)
        elif kind == ChangeKind.NODE_RENAMED:
            self.node_params[change.node] = self.node_params.pop(change.old, None)
        elif kind in (ChangeKind.PARAM_CHANGED, ChangeKind.GRAPH_PARAMETER_CHANGED):
            for params in self.node_params.values():
                if params is not None:
                    params.refresh()

    def _attempt(self, operation: Callable, *args) -> str | None:
        """Run a document operation; None if done, else the reason shown for its refusal."""
        try:
            operation(*args)
        except EditRefused as e:
            return self._refuse(e)
        return None

    def _refuse(self, e: EditRefused) -> str:
        why = self.last_refusal = str(e)
        if e.node in self.graph.node_ids():
            self.mirror.show_message(e.node, f"refused: {why}")
        self.message.emit(f"refused: {why}")
        self.refused.emit(why)
        return why

    def _adopt_scene_positions(self):
        # User moves reach the document as they end (see _moved); an item moved by code only
        # when the document is read for saving or running.
        if not self.mirror.rebuilding:
            moved = self.mirror.moved_nodes()
            if moved:
                self.graph.move_nodes(moved)

    # --- what the user did in the flow view ---------------------------------------------------
    def _connect(self, source: str, target: str, toggle: bool = False):
        try:
            if self.graph.has_edge(source, target):
                if toggle:  # Ryven's gesture: connecting a connected pair disconnects it
                    self.graph.disconnect(source, target)
                return
            fed = self.graph.feeding(target)
            with self.graph.group(f"connect {source} to {target}"):
                if fed is not None:  # a new edge replaces the one feeding the input
                    self.graph.disconnect(fed, target)
                self.graph.connect(source, target)
        except EditRefused as e:
            self._refuse(e)

    def _connection_requested(self, out, inp):
        if isinstance(out, NodeOutput) and isinstance(inp, NodeInput):
            self._connect(*self.mirror.edge(out, inp), toggle=True)

    def open_palette(self, view_pos, port=None):
        """Open the node palette at a viewport point (QPoint); with ``port`` (a Ryven port a
        wire was dragged from) it lists only types with a fitting port, and connects it."""
        self._palette_port = port
        self.palette.open_at(view_pos, _starloom_port(port), isinstance(port, NodeOutput))

    def _wire_dragged(self, port):
        # Ports a dragged wire may reach are highlighted, the others faded, until it is dropped.
        spec = _starloom_port(port)
        for nid in self.node_ids():
            highlight(self.node(nid).gui.port_dots, spec, isinstance(port, NodeOutput))

    def _palette_chosen(self, type_id: str, pos, fitting: str | None):
        port, self._palette_port = getattr(self, "_palette_port", None), None
        try:
            # One undo step: the node and the wire it was asked for.
            with self.graph.group(f"add {type_id}"):
                nid = self.add_node(type_id, round(pos.x()), round(pos.y()))
                if port is not None and fitting is not None:
                    other = f"{self.mirror.node_id(port.node)}.{port.label_str}"
                    if isinstance(port, NodeOutput):
                        self._connect(other, f"{nid}.{fitting}")
                    else:
                        self._connect(f"{nid}.{fitting}", other)
        except EditRefused as e:
            self._refuse(e)
            return
        self.select(nid)

    def _place_requested(self, node_class, pos):
        self._attempt(self.add_node, node_class.starloom_type_id, round(pos.x()), round(pos.y()))

    def _remove_requested(self, nodes, connections):
        ids = [self.mirror.node_id(n) for n in nodes]
        edges = [self.mirror.edge(*c) for c in connections]
        try:
            with self.graph.group("delete " + ", ".join(ids + [f"{s} -> {t}" for s, t in edges])):
                for source, target in edges:
                    if self.graph.has_edge(source, target):
                        self.graph.disconnect(source, target)
                if ids:
                    self.graph.remove_nodes(ids)
        except EditRefused as e:
            self._refuse(e)

    def _moved(self, nodes):
        ids = [self.mirror.node_id(n) for n in nodes]
        positions = {nid: tuple(float(round(v)) for v in self.mirror.top_left(nid)) for nid in ids}
        try:
            self.graph.move_nodes(positions)
        except EditRefused:  # cannot happen for drawn nodes; keep the view equal to the document
            for nid in ids:
                if nid in self.graph.node_ids():
                    self.mirror.place(nid, self.graph.node(nid).ui.x, self.graph.node(nid).ui.y)

    def _selection(self, nodes):
        # Ryven also reports the selection while it removes nodes (new graph, undo of a paste):
        # a node no longer in the document is no selection.
        nid = self.mirror.node_id(nodes[0]) if len(nodes) == 1 else None
        self.selection_changed.emit(nid if nid in self.graph.node_ids() else None)


def _starloom_port(port):
    """The Starloom port (with its types) of a Ryven port, or None."""
    if port is None:
        return None
    ports = port.node.starloom_outputs if isinstance(port, NodeOutput) else \
        port.node.starloom_inputs
    return ports.get(port.label_str)
