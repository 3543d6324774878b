"""Editing a graph document without a GUI: checked operations, undo and redo, change records.

:class:`EditableGraph` holds a :class:`~starloom.serialization.GraphDocument` and the node
registry, and is the only thing that changes the document while it is edited. Every operation
checks its request against the node types (ports exist, port types fit, one edge per input, no
cycle, parameter values valid for the node's ``Params``); a refused request raises
:class:`EditRefused` and leaves the document as it was. Every accepted operation is one command
on the undo stack, and every change is announced to subscribers as a small :class:`Change`
record, so a view (the Qt editor, a test, a script) mirrors the document without reading it
whole after each edit. The split follows Meshroom's: a plain model in the core, the GUI a view
and controller over it. The checks are :mod:`.edit_rules`'; the change records, undo and their
delivery :mod:`.history`'s; the groups and comments drawn on the canvas
:mod:`.canvas_notes`'.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator

from starloom.astro.fileio import atomic_write
from starloom.serialization import (EdgeSpec, GraphDocument, GraphParameter, NodeSpec, UI,
                                    load_graph)
from starloom.serialization.text_style import CANONICAL, format_graph, text_style

from .canvas_notes import CanvasNotes
from .edit_rules import UNKNOWN_PORT, EditRefused, GraphRules
from .graph import created_with
from .history import Change, ChangeKind, History, Step
from .registry import Registry

__all__ = ["UNKNOWN_PORT", "Change", "ChangeKind", "EditRefused", "EditableGraph"]

_MISSING = object()  # a parameter with no value in the document (its default applies)


class EditableGraph(GraphRules, CanvasNotes):
    """A graph document being edited: checked operations, undo/redo and change notifications.

    Parameters
    ----------
    registry : Registry
        Node types: ports, parameter models and versions of the document's nodes.
    doc : GraphDocument, optional
        The document to edit (kept, not copied; default: an empty graph). It counts as saved.

    Notes
    -----
    Read the document through :attr:`doc` but change it only through the operations, or undo,
    the modified flag and subscribers lose track of it. Subscribers are called after an
    operation is complete, in order; a subscriber may start another operation (it becomes a
    command of its own, and its changes are delivered after the current ones). A node's
    :class:`~starloom.serialization.NodeSpec` keeps its identity while the node is edited,
    renamed, removed and brought back by undo, so a view may key its drawing on it.
    """

    def __init__(self, registry: Registry, doc: GraphDocument | None = None):
        super().__init__(registry)
        self._history = History()
        self._saved = ""
        self.replace(doc if doc is not None else GraphDocument())

    # --- the document ------------------------------------------------------------------------
    def replace(self, doc: GraphDocument, source: bytes | None = None):
        """Edit ``doc`` from now on: clear undo and redo, count it as saved, announce
        DOCUMENT_REPLACED.

        ``source`` is the file's content ``doc`` was read from: saved unedited, it is written
        back byte for byte; edited, in its layout (see :mod:`starloom.serialization.text_style`).
        The ports of nodes whose type is not installed are taken from the document's edges.
        """
        self._doc, self._source, self._style = doc, source, CANONICAL
        if source is not None:
            try:
                self._style = text_style(source.decode("utf-8-sig"))
            except ValueError:  # not plain JSON text after all: write it canonically
                self._style = CANONICAL
        self._history.clear()
        self._saved = doc.to_json()
        self._read_unknown_ports()
        self._emit(ChangeKind.DOCUMENT_REPLACED)
        self._history.deliver()

    def load(self, path) -> None:
        """Read a graph file and edit it (raises ``GraphFileError`` if it cannot be read)."""
        doc = load_graph(path)
        self.replace(doc, Path(path).read_bytes())

    @property
    def modified(self) -> bool:
        """Whether the document differs from the last save (or from the document given)."""
        return self._doc.to_json() != self._saved

    def save(self, path) -> Path:
        """Write the document to ``path`` and count it as saved (announces SAVED).

        An edited document first records the Starloom and node-type versions it is written
        with (``metadata.created_with``, not undoable) and is laid out as its file was; an
        unedited one is written back byte for byte. The file keeps its permission bits.

        Raises
        ------
        OSError
            If the file cannot be written.
        """
        if self.modified or self._source is None:
            if self.modified:
                self._doc.metadata.created_with = created_with(self._doc, self.registry)
            self._source = format_graph(self._doc, self._style).encode("utf-8")
        with atomic_write(path, "wb") as f:
            f.write(self._source)
        self._saved = self._doc.to_json()
        self._history.seal()
        self._emit(ChangeKind.SAVED)
        self._history.deliver()
        return Path(path)

    # --- nodes --------------------------------------------------------------------------------
    def add_node(self, type_id: str, x: float = 0.0, y: float = 0.0,
                 node_id: str | None = None) -> str:
        """Add a node of ``type_id`` with its top-left corner at ``(x, y)``.

        Parameters
        ----------
        type_id : str
            A registered node type.
        x, y : float
            Position in the editor (``ui.x``, ``ui.y``).
        node_id : str, optional
            Id of the new node (default: a fresh id made from the type's name).

        Returns
        -------
        str
            The new node's id.

        Raises
        ------
        EditRefused
            If the type is not registered, or ``node_id`` is not a valid id or is taken.
        """
        if type_id not in self.registry:
            raise EditRefused(f"unknown node type '{type_id}'")
        if node_id is not None:
            self._check_new_id(node_id, None)
        cls = self.registry.get(type_id)
        spec = NodeSpec(id=node_id or self._fresh_id(type_id), type=type_id,
                        version=cls.version, ui=UI(x=x, y=y))
        with self._edit(f"add {spec.id}"):
            self._do(self._put_node, spec, len(self._doc.nodes))
        return spec.id

    def remove_nodes(self, node_ids: Iterable[str]):
        """Remove nodes, their edges and the graph parameter binds naming them (one command).

        A graph parameter left with no bind is removed too (a graph file cannot hold one).

        Raises
        ------
        EditRefused
            If one of the nodes does not exist.
        """
        node_ids = list(dict.fromkeys(node_ids))
        for nid in node_ids:
            self._require(nid)
        if not node_ids:
            return
        gone = set(node_ids)
        with self._edit(f"remove {', '.join(node_ids)}"):
            for i in reversed(range(len(self._doc.edges))):
                e = self._doc.edges[i]
                if e.source[0] in gone or e.target[0] in gone:
                    self._do(self._take_edge, i)
            params = {}
            for gname, gp in self._doc.parameters.items():
                binds = [b for b in gp.binds if b.split(".")[0] not in gone]
                if binds:
                    params[gname] = gp if binds == gp.binds else gp.model_copy(
                        update={"binds": binds})
            if params != self._doc.parameters:
                self._do(self._set_parameters, params)
            for nid in node_ids:
                self._do(self._take_node, self.node_ids().index(nid))

    def remove_node(self, node_id: str):
        """Remove one node; see :meth:`remove_nodes`."""
        self.remove_nodes([node_id])

    def rename_node(self, old: str, new: str):
        """Change a node's id, rewriting its edges and the graph parameter binds naming it.

        Raises
        ------
        EditRefused
            If there is no node ``old``, or ``new`` is not a valid id or is taken.
        """
        self._require(old)
        if new == old:
            return
        self._check_new_id(new, old)
        with self._edit(f"rename {old} to {new}"):
            self._do(self._rename, old, new)

    def set_label(self, node_id: str, label: str | None):
        """Set the title shown on a node (``ui.label``); spaces are collapsed, and an empty
        label or the type's own title clears it.

        Raises
        ------
        EditRefused
            If there is no such node.
        """
        spec = self._require(node_id)
        label = " ".join((label or "").split()) or None
        cls = self.node_type(node_id)
        if cls is not None and label == (cls.title or cls.type_id):
            label = None
        if label != spec.ui.label:
            with self._edit(f"label {node_id}"):
                self._do(self._set_label, node_id, label)

    def move_nodes(self, positions: dict[str, tuple[float, float]], text: str = "move"):
        """Set the top-left corner ``(x, y)`` of nodes, as one command.

        Successive moves of the same nodes merge into one command.

        Raises
        ------
        EditRefused
            If one of the nodes does not exist.
        """
        moves = {}
        for nid, (x, y) in positions.items():
            ui = self._require(nid).ui
            if (ui.x, ui.y) != (x, y):
                moves[nid] = (float(x), float(y))
        if moves:
            with self._edit(f"{text} {', '.join(moves)}", ("move", text, frozenset(moves))):
                for nid, (x, y) in moves.items():
                    self._do(self._set_position, nid, x, y)

    def move_node(self, node_id: str, x: float, y: float):
        """Move one node; see :meth:`move_nodes`."""
        self.move_nodes({node_id: (x, y)})

    # --- edges --------------------------------------------------------------------------------
    def connect(self, source: str, target: str):
        """Add the edge from output ``source`` to input ``target`` (``"node.port"`` each).

        An edge already in the document is left as it is.

        Raises
        ------
        EditRefused
            If a node or port does not exist, the node would feed itself, the port types do
            not fit, the input is already fed, or the edge would close a cycle. The refusal
            names the target node.
        """
        if self.has_edge(source, target):
            return
        (sn, sp), (tn, tp) = self._ref(source), self._ref(target)
        out = self._port(sn, sp, output=True)
        inp = self._port(tn, tp, output=False)
        if sn == tn:
            raise EditRefused(f"cannot connect {source} to {target}: a node cannot feed itself",
                              tn)
        known = UNKNOWN_PORT.type not in out.types + inp.types
        if known and not inp.accepts(out):
            raise EditRefused(f"cannot connect {source} ({'/'.join(out.types)}) to {target} "
                              f"({'/'.join(inp.types)}): the port types differ", tn)
        fed = self.feeding(target)
        if fed is not None:
            raise EditRefused(f"cannot connect {source} to {target}: the input is already fed "
                              f"by {fed}", tn)
        if self._reaches(tn, sn):
            raise EditRefused(f"connecting {source} to {target} would make a cycle", tn)
        with self._edit(f"connect {source} to {target}"):
            self._do(self._put_edge, EdgeSpec(**{"from": source, "to": target}),
                     len(self._doc.edges))

    def disconnect(self, source: str, target: str):
        """Remove the edge from ``source`` to ``target``.

        Raises
        ------
        EditRefused
            If there is no such edge.
        """
        i = self._edge_index(source, target)
        if i is None:
            raise EditRefused(f"there is no edge {source} -> {target}", self._ref(target)[0])
        with self._edit(f"disconnect {source} from {target}"):
            self._do(self._take_edge, i)

    # --- parameters ---------------------------------------------------------------------------
    def set_param(self, node_id: str, name: str, value: Any):
        """Set a node parameter, validated by the node type's ``Params``.

        The document stores the validated value in JSON form (e.g. ``"2 min"`` for a field in
        seconds becomes ``120.0``). A parameter bound to a graph parameter sets that graph
        parameter instead (it is the value the node runs with). Successive values of the same
        parameter merge into one command.

        Raises
        ------
        EditRefused
            If there is no such node, its type is not installed, it has no such parameter, or
            the value is invalid; the message names the node and the parameter.
        """
        self._require(node_id)
        gname = self.bound_parameter(node_id, name)
        if gname is not None:
            self.set_graph_parameter(gname, value)
            return
        new = self._validated(node_id, name, value)
        old = self.node(node_id).params.get(name, _MISSING)
        if old == new:
            return
        with self._edit(f"set {node_id}.{name}", ("param", node_id, name)):
            self._do(self._set_value, node_id, name, new)

    def set_metadata(self, name: str | None = None, description: str | None = None):
        """Set the graph's name and/or description (None leaves a field as it is)."""
        changes = {k: v for k, v in (("name", name), ("description", description))
                   if v is not None and v != getattr(self._doc.metadata, k)}
        if changes:
            with self._edit(f"edit graph {' and '.join(changes)}"):
                for field, value in changes.items():
                    self._do(self._set_metadata, field, value)

    def create_graph_parameter(self, name: str, binds: Iterable[str], *,
                               kind: str | None = None, default: Any = _MISSING,
                               description: str = ""):
        """Create a graph parameter that sets node parameters (``"node.param"`` each).

        Parameters
        ----------
        name : str
            The parameter's name (letters, digits, ``_`` or ``-``; not starting with a digit).
        binds : iterable of str
            At least one ``"node.param"``; none may be bound to another graph parameter.
        kind : str, optional
            Its ``type``: path, string, number, integer or boolean (default: that of the first
            bound field).
        default : optional
            Its value (default: the first bound parameter's current value), checked against
            every bound parameter.
        description : str

        Raises
        ------
        EditRefused
            If the name is invalid or taken, there is no bind, a bind names no node parameter
            or one already bound, or the value is invalid for a bound parameter.
        """
        self._check_parameter_name(name)
        binds = list(dict.fromkeys(binds))
        if not binds:
            raise EditRefused(f"graph parameter '{name}' must bind at least one node parameter")
        for bind in binds:
            self._check_bindable(name, bind)
        first = self._ref(binds[0])
        if default is _MISSING:
            try:
                default = self.param_value(*first)
            except KeyError:  # a type that is not installed, and no value in the document
                default = None
        if default is not None:
            default = self._checked_for_binds(name, binds, default)
        gp = GraphParameter(type=kind or self._parameter_type(*first), default=default,
                            binds=binds, description=description)
        with self._edit(f"create graph parameter {name}"):
            self._do(self._set_parameters, {**self._doc.parameters, name: gp})

    def remove_graph_parameter(self, name: str):
        """Remove a graph parameter (its nodes keep their own values).

        Raises
        ------
        EditRefused
            If there is no such graph parameter.
        """
        self._require_parameter(name)
        with self._edit(f"remove graph parameter {name}"):
            self._do(self._set_parameters,
                     {k: v for k, v in self._doc.parameters.items() if k != name})

    def bind_parameter(self, name: str, target: str):
        """Make graph parameter ``name`` also set node parameter ``target`` (``"node.param"``).

        Raises
        ------
        EditRefused
            If there is no such graph parameter, ``target`` names no node parameter or one
            already bound, or the graph parameter's value is invalid for it.
        """
        gp = self._require_parameter(name)
        if target in gp.binds:
            return
        self._check_bindable(name, target)
        if gp.default is not None:
            self._checked_for_binds(name, [target], gp.default)
        self._replace_parameter(name, gp.model_copy(update={"binds": [*gp.binds, target]}),
                                f"bind {target} to {name}")

    def unbind_parameter(self, name: str, target: str):
        """Stop graph parameter ``name`` setting ``target`` (the node keeps its own value).

        Raises
        ------
        EditRefused
            If there is no such graph parameter or bind, or it is the parameter's last bind (a
            graph parameter binds at least one node parameter: remove it instead).
        """
        gp = self._require_parameter(name)
        if target not in gp.binds:
            raise EditRefused(f"graph parameter '{name}' does not bind {target}")
        if len(gp.binds) == 1:
            raise EditRefused(f"{target} is the last bind of graph parameter '{name}': remove "
                              "the graph parameter instead")
        self._replace_parameter(
            name, gp.model_copy(update={"binds": [b for b in gp.binds if b != target]}),
            f"unbind {target} from {name}")

    def set_graph_parameter(self, name: str, value: Any):
        """Set a graph parameter's value (its ``default``), checked against every node
        parameter it binds whose type is installed. Successive values merge into one command.

        Raises
        ------
        EditRefused
            If there is no such graph parameter, or the value is invalid for a bound node
            parameter (the message names the graph parameter, the node and the parameter).
        """
        gp = self._require_parameter(name)
        new = self._checked_for_binds(name, gp.binds, value)
        if new != gp.default or type(new) is not type(gp.default):  # 1 -> 1.0 is a change
            self._replace_parameter(name, gp.model_copy(update={"default": new}),
                                    f"set graph parameter {name}", ("graph parameter", name))

    # --- undo, redo, notifications ------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return self._history.undo_text is not None

    @property
    def can_redo(self) -> bool:
        return self._history.redo_text is not None

    @property
    def undo_text(self) -> str | None:
        """What :meth:`undo` would undo (e.g. ``"set stack.sigma_low"``), or None."""
        return self._history.undo_text

    @property
    def redo_text(self) -> str | None:
        """What :meth:`redo` would redo, or None."""
        return self._history.redo_text

    def undo(self) -> str | None:
        """Undo the last command; returns its text, or None if there was nothing to undo.

        Raises
        ------
        RuntimeError
            If called inside :meth:`group` or an operation.
        """
        return self._history.undo()

    def redo(self) -> str | None:
        """Redo the last undone command; returns its text, or None if there was none.

        Raises
        ------
        RuntimeError
            If called inside :meth:`group` or an operation.
        """
        return self._history.redo()

    @contextmanager
    def group(self, text: str) -> Iterator[None]:
        """Make the operations inside the ``with`` block one command.

        If the block raises, the operations it made are undone and the exception propagates.
        """
        with self._history.command(text):
            yield

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback(change)`` with a :class:`Change` after every change (after the
        operation is complete); returns a function that stops it."""
        return self._history.subscribe(callback)

    def _edit(self, text: str, merge_key: Hashable | None = None):
        return self._history.command(text, merge_key)

    def _do(self, primitive: Callable[..., Step], *args):
        self._history.record(primitive(*args))

    def _emit(self, kind: ChangeKind, **fields):
        self._history.announce(Change(kind, **fields))

    # --- primitive changes: each changes the document and returns the step reverting it -------
    def _put_node(self, spec: NodeSpec, index: int) -> Step:
        self._doc.nodes.insert(index, spec)
        self._emit(ChangeKind.NODE_ADDED, node=spec.id)
        return partial(self._take_node, index)

    def _take_node(self, index: int) -> Step:
        spec = self._doc.nodes.pop(index)
        self._emit(ChangeKind.NODE_REMOVED, node=spec.id)
        return partial(self._put_node, spec, index)

    def _put_edge(self, edge: EdgeSpec, index: int) -> Step:
        self._doc.edges.insert(index, edge)
        self._emit(ChangeKind.EDGE_ADDED, edge=(edge.from_, edge.to))
        return partial(self._take_edge, index)

    def _take_edge(self, index: int) -> Step:
        edge = self._doc.edges.pop(index)
        self._emit(ChangeKind.EDGE_REMOVED, edge=(edge.from_, edge.to))
        return partial(self._put_edge, edge, index)

    def _rename(self, old: str, new: str) -> Step:
        self.node(old).id = new
        for e in self._doc.edges:
            if e.source[0] == old:
                e.from_ = f"{new}.{e.source[1]}"
            if e.target[0] == old:
                e.to = f"{new}.{e.target[1]}"
        for g, gp in self._doc.parameters.items():
            binds = [_renamed(b, old, new) for b in gp.binds]
            if binds != gp.binds:  # a new object: GraphParameters are not changed in place
                self._doc.parameters[g] = gp.model_copy(update={"binds": binds})
        if old in self._unknown_ports:
            self._unknown_ports[new] = self._unknown_ports.pop(old)
        self._emit(ChangeKind.NODE_RENAMED, node=new, old=old)
        return partial(self._rename, new, old)

    def _set_value(self, node_id: str, name: str, value: Any) -> Step:
        params = self.node(node_id).params
        old = params.get(name, _MISSING)
        if value is _MISSING:
            params.pop(name, None)
        else:
            params[name] = value  # in place: a parameter keeps its position in the file
        self._emit(ChangeKind.PARAM_CHANGED, node=node_id, name=name)
        return partial(self._set_value, node_id, name, old)

    def _set_position(self, node_id: str, x: float, y: float) -> Step:
        ui = self.node(node_id).ui
        old = (ui.x, ui.y)
        ui.x, ui.y = x, y
        self._emit(ChangeKind.NODE_MOVED, node=node_id)
        return partial(self._set_position, node_id, *old)

    def _set_label(self, node_id: str, label: str | None) -> Step:
        ui = self.node(node_id).ui
        old, ui.label = ui.label, label
        self._emit(ChangeKind.LABEL_CHANGED, node=node_id)
        return partial(self._set_label, node_id, old)

    def _set_metadata(self, field: str, value: str) -> Step:
        old = getattr(self._doc.metadata, field)
        setattr(self._doc.metadata, field, value)
        self._emit(ChangeKind.METADATA_CHANGED)
        return partial(self._set_metadata, field, old)

    def _set_parameters(self, parameters: dict[str, GraphParameter]) -> Step:
        # GraphParameter objects are never changed in place: a changed one is a new object.
        old, self._doc.parameters = self._doc.parameters, parameters
        for name in dict.fromkeys([*old, *parameters]):
            if old.get(name) is not parameters.get(name):
                self._emit(ChangeKind.GRAPH_PARAMETER_CHANGED, name=name)
        return partial(self._set_parameters, old)

    # --- edits of graph parameters --------------------------------------------------------------
    def _replace_parameter(self, name: str, gp: GraphParameter, text: str,
                           merge_key: Hashable | None = None):
        with self._edit(text, merge_key):
            self._do(self._set_parameters, {**self._doc.parameters, name: gp})


def _renamed(bind: str, old: str, new: str) -> str:
    node, param = bind.split(".")
    return f"{new}.{param}" if node == old else bind
