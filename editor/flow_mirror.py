"""The Ryven flow as a mirror of the edited document.

:class:`FlowMirror` draws an :class:`~starloom.graph_runtime.editing.EditableGraph` in a Ryven
flow and keeps it equal to it: each change record of the document creates, removes, renames,
moves or retitles a Ryven node, or adds or removes a connection. The flow is never edited any
other way, so it never holds anything the document does not. The mirror also reaches the node
items (positions, sizes, the body showing id, run state, messages and thumbnail) for the rest of
the editor.
"""
from __future__ import annotations

from qtpy.QtCore import QObject, Signal

from starloom.graph_runtime.editing import Change, ChangeKind, EditableGraph

from .nodes import ryven_node_class


class FlowMirror(QObject):
    """Keeps a Ryven flow equal to an :class:`EditableGraph`.

    Parameters
    ----------
    graph : EditableGraph
        The document drawn; the mirror follows it through :meth:`apply`.
    session : ryvencore Session
        Where node classes of types that are not installed get registered.
    flow, view : Flow, FlowView
        The Ryven flow and its view.
    classes : dict
        Ryven node class of each registered type id.

    Notes
    -----
    Each Ryven node carries its document entry as ``node.starloom_spec``; entries keep their
    identity across renames and undo, so a node removed and brought back by undo gets its
    Ryven node (with its thumbnail and run state) back.
    """

    message = Signal(str)             # a drawing problem, for the status bar
    label_edited = Signal(str, str)   # node id, title typed in Ryven's "change title" dialog
    view_requested = Signal(str, object)  # node id, output port (or None) to show in a viewer
    action_requested = Signal(str, str)   # node id, entry of nodes.NODE_ACTIONS chosen on it

    def __init__(self, graph: EditableGraph, session, flow, view, classes: dict):
        super().__init__()
        self.graph, self.session, self.flow, self.view = graph, session, flow, view
        self.classes = classes
        self._unknown_classes: dict = {}  # (type id, inputs, outputs) -> Ryven node class
        self.rebuilding = False
        self._nodes: dict = {}   # node id -> Ryven node
        self._parked: dict = {}  # node id -> Ryven node removed from the flow, for undo
        self._creating = None    # the NodeSpec whose Ryven node is being created
        self._handlers = {
            ChangeKind.DOCUMENT_REPLACED: lambda c: self.rebuild(),
            ChangeKind.NODE_ADDED: lambda c: self._add(c.node),
            ChangeKind.NODE_REMOVED: lambda c: self._remove(c.node),
            ChangeKind.NODE_RENAMED: lambda c: self._rename(c.old, c.node),
            ChangeKind.NODE_MOVED: lambda c: self.place(c.node, *self._ui_position(c.node)),
            ChangeKind.LABEL_CHANGED: lambda c: self._show_label(c.node),
            ChangeKind.EDGE_ADDED: lambda c: self._connect(*c.edge),
            ChangeKind.EDGE_REMOVED: lambda c: self._disconnect(*c.edge),
        }
        # Tag each node before the view makes its item (the GUI reads the tag).
        flow.node_created.sub(self._tag, nice=-1)

    def apply(self, change: Change):
        """Update the flow for one change of the document."""
        handler = self._handlers.get(change.kind)
        if handler is not None:
            handler(change)

    def rebuild(self):
        """Draw the whole document anew."""
        self.rebuilding = True
        try:
            for out, inps in list(self.flow.graph_adj.items()):
                for inp in list(inps):
                    self.flow.remove_connection((out, inp))
            for node in list(self.flow.nodes):
                self.flow.remove_node(node)
            self._nodes.clear()
            self._parked.clear()
            for spec in self.graph.doc.nodes:
                self._add(spec.id)
            for e in self.graph.doc.edges:
                self._connect(e.from_, e.to)
        finally:
            self.rebuilding = False

    # --- lookups ------------------------------------------------------------------------------
    def node(self, node_id: str):
        """The Ryven node of ``node_id`` (KeyError if not drawn)."""
        return self._nodes[node_id]

    def item(self, node_id: str):
        """The node item (QGraphicsItem) of ``node_id``."""
        return self.view.node_items[self.node(node_id)]

    def body(self, node_id: str):
        """The :class:`~starloom.editor.nodes.NodeBody` of ``node_id``."""
        return self.item(node_id).main_widget

    def node_id(self, node) -> str:
        """The id of a Ryven node."""
        return node.starloom_spec.id

    def edge(self, out, inp) -> tuple[str, str]:
        """``("node.port", "node.port")`` of a Ryven connection."""
        return (f"{self.node_id(out.node)}.{out.label_str}",
                f"{self.node_id(inp.node)}.{inp.label_str}")

    def ports(self, source: str, target: str):
        """The Ryven output ``source`` and input ``target`` (``"node.port"``), None if absent."""
        def find(ref, outputs):
            nid, _, port = ref.partition(".")
            node = self._nodes.get(nid)
            ports = [] if node is None else node.outputs if outputs else node.inputs
            return next((p for p in ports if p.label_str == port), None)
        return find(source, True), find(target, False)

    # --- geometry -----------------------------------------------------------------------------
    def top_left(self, node_id: str) -> tuple[float, float]:
        """Scene position of the node item's top-left corner (Ryven positions centres)."""
        item = self.item(node_id)
        r = item.boundingRect()
        return item.pos().x() - r.width() / 2, item.pos().y() - r.height() / 2

    def place(self, node_id: str, x: float, y: float):
        """Put the node item's top-left corner at ``(x, y)``."""
        item = self.item(node_id)
        r = item.boundingRect()
        item.setPos(x + r.width() / 2, y + r.height() / 2)
        item.update_conn_pos()  # Ryven recomputes connections before a move, not after

    def relayout(self, node_id: str):
        """Refit a node item to its body's content, keeping its top-left corner in place."""
        x, y = self.top_left(node_id)
        item = self.item(node_id)
        item.main_widget.adjustSize()
        item.update_shape()
        self.place(node_id, x, y)

    def heights(self) -> dict[str, float]:
        """Height of each node item."""
        return {nid: self.item(nid).boundingRect().height() for nid in self._nodes}

    def overlapping(self) -> bool:
        """Whether two node items overlap."""
        rects = [self.item(nid).sceneBoundingRect() for nid in self._nodes]
        return any(a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1:])

    def moved_nodes(self) -> dict[str, tuple[float, float]]:
        """Rounded top-left corners of the items away (by half a pixel or more) from their
        document position, e.g. moved by code; the document learns them from the editor."""
        moved = {}
        for nid in self._nodes:
            (x, y), (ux, uy) = self.top_left(nid), self._ui_position(nid)
            if abs(x - ux) >= 0.5 or abs(y - uy) >= 0.5:
                moved[nid] = (float(round(x)), float(round(y)))
        return moved

    # --- the body: messages and run state -----------------------------------------------------
    def show_message(self, node_id: str, text: str):
        """Show an error or refusal on the node (empty text hides it)."""
        body = self.body(node_id)
        if text != body.message.text():
            body.set_message(text)
            self.relayout(node_id)

    def show_state(self, node_id: str, state: str | None, detail: str = "",
                   done: int | None = None, total: int | None = None):
        """Show a run state on the node (see :meth:`NodeBody.set_state`)."""
        body = self.body(node_id)
        shape = (body.state, body.progress.isHidden())
        body.set_state(state, detail, done, total)
        if shape != (body.state, body.progress.isHidden()):
            self.relayout(node_id)

    # --- following the document ---------------------------------------------------------------
    def _ui_position(self, node_id: str) -> tuple[float, float]:
        ui = self.graph.node(node_id).ui
        return ui.x, ui.y

    def _add(self, node_id: str):
        spec = self.graph.node(node_id)
        node = self._parked.pop(node_id, None)
        if node is not None and node.starloom_spec is spec:
            self._nodes[node_id] = node
            self.flow.add_node(node)
        else:
            self._creating = spec
            try:
                node = self.flow.create_node(self._class_of(node_id))
            finally:
                self._creating = None
            node.gui.title_edited.connect(
                lambda text, n=node: self.label_edited.emit(self.node_id(n), text))
            node.gui.view_requested.connect(
                lambda port, n=node: self.view_requested.emit(self.node_id(n), port))
            node.gui.action_requested.connect(
                lambda text, n=node: self.action_requested.emit(self.node_id(n), text))
        self.place(node_id, spec.ui.x, spec.ui.y)

    def _tag(self, node):
        if self._creating is not None:
            node.starloom_spec = self._creating
            self._nodes[self._creating.id] = node

    def _class_of(self, node_id: str):
        type_id = self.graph.node(node_id).type
        if type_id in self.classes:
            return self.classes[type_id]
        # A type not installed: its ports as the document's edges name them.
        ins, outs = self.graph.ports(node_id)
        key = (type_id, tuple(ins), tuple(outs))
        if key not in self._unknown_classes:
            cls = ryven_node_class(type_id=type_id, inputs=ins, outputs=outs)
            self.session.register_node_type(cls)
            self._unknown_classes[key] = cls
        return self._unknown_classes[key]

    def _remove(self, node_id: str):
        node = self._nodes.pop(node_id)
        self.flow.remove_node(node)
        self._parked[node_id] = node

    def _rename(self, old: str, new: str):
        self._nodes[new] = self._nodes.pop(old)
        self.body(new).set_node_id(new)

    def _show_label(self, node_id: str):
        x, y = self.top_left(node_id)
        self.node(node_id).gui.show_title(self.graph.node(node_id).ui.label)
        self.place(node_id, x, y)

    def _connect(self, source: str, target: str):
        out, inp = self.ports(source, target)
        if out is not None and inp is not None and self.flow.connected_output(inp) is None:
            self.flow.add_connection((out, inp))
        else:  # `starloom validate` names the problem; the document keeps the edge
            self.message.emit(f"edge {source} -> {target} is not drawn: no such port, or the "
                              "input is fed twice")

    def _disconnect(self, source: str, target: str):
        out, inp = self.ports(source, target)
        if out is not None and inp is not None and self.flow.connected_output(inp) is out:
            self.flow.remove_connection((out, inp))
