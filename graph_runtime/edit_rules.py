"""The read side of an edited graph: lookups in the document, and the checks an edit must
pass against the node types. :class:`~starloom.graph_runtime.editing.EditableGraph` extends
:class:`GraphRules` with the edits themselves.
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from starloom.astro.errors import StarloomError
from starloom.serialization import GraphDocument, GraphParameter, NodeSpec

from .node import Node, Port
from .registry import Registry

# The pattern NodeSpec.id enforces; graph parameter names follow it too (they are typed on the
# command line as --param NAME=VALUE).
_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")

#: Port of a node whose type is not installed: its type is unknown, so any edge fits.
UNKNOWN_PORT = Port("?", "unknown node type", optional=True)

#: Graph parameter type of a node parameter's JSON Schema type.
_PARAMETER_TYPES = {"number": "number", "integer": "integer", "boolean": "boolean",
                    "string": "string"}


class EditRefused(StarloomError):
    """An edit was refused; the document is unchanged.

    Attributes
    ----------
    node : str or None
        Id of the node the refusal concerns (where a view shows it), if any.
    """

    def __init__(self, message: str, node: str | None = None):
        self.node = node
        super().__init__(message)


class GraphRules:
    """Lookups in a graph document and the checks of edits, against the node types.

    Parameters
    ----------
    registry : Registry
        Node types: ports, parameter models and versions of the document's nodes.
    """

    def __init__(self, registry: Registry):
        self.registry = registry
        self._doc = GraphDocument()
        # Ports of nodes whose type is not installed, as the document's edges named them.
        self._unknown_ports: dict[str, tuple[list[str], list[str]]] = {}

    @property
    def doc(self) -> GraphDocument:
        """The document being edited (read it; change it only through the operations)."""
        return self._doc

    # --- queries ------------------------------------------------------------------------------
    def node_ids(self) -> list[str]:
        """Ids of the nodes, in document order."""
        return [n.id for n in self._doc.nodes]

    def node(self, node_id: str) -> NodeSpec:
        """The document entry of ``node_id`` (raises KeyError if there is none)."""
        return self._doc.node(node_id)

    def node_type(self, node_id: str) -> type[Node] | None:
        """The node class of ``node_id``, or None if its type is not installed."""
        type_id = self.node(node_id).type
        return self.registry.get(type_id) if type_id in self.registry else None

    def ports(self, node_id: str) -> tuple[dict[str, Port], dict[str, Port]]:
        """(inputs, outputs) of ``node_id`` by port name; for a type that is not installed, the
        ports its edges named when the document was loaded, typed :data:`UNKNOWN_PORT`."""
        cls = self.node_type(node_id)
        if cls is not None:
            return dict(cls.inputs), dict(cls.outputs)
        ins, outs = self._unknown_ports.get(node_id, ([], []))
        return dict.fromkeys(ins, UNKNOWN_PORT), dict.fromkeys(outs, UNKNOWN_PORT)

    def has_edge(self, source: str, target: str) -> bool:
        """Whether the edge ``source -> target`` (``"node.port"`` each) is in the document."""
        return self._edge_index(source, target) is not None

    def feeding(self, target: str) -> str | None:
        """The output (``"node.port"``) feeding input ``target``, if any."""
        return next((e.from_ for e in self._doc.edges if e.to == target), None)

    def bound_parameter(self, node_id: str, name: str) -> str | None:
        """Name of the graph parameter bound to ``node_id.name``, if any."""
        return next((g for g, gp in self._doc.parameters.items()
                     if f"{node_id}.{name}" in gp.binds), None)

    def param_value(self, node_id: str, name: str) -> Any:
        """The value a node parameter has when the graph runs: its bound graph parameter's
        value, else the document's value, else the type's default.

        Raises
        ------
        KeyError
            If there is no such node, or its type has no such parameter.
        """
        spec = self.node(node_id)
        gname = self.bound_parameter(node_id, name)
        if gname and self._doc.parameters[gname].default is not None:
            return self._doc.parameters[gname].default
        if name in spec.params:
            return spec.params[name]
        cls = self.node_type(node_id)
        if cls is None:
            raise KeyError(f"{node_id}.{name}")
        return cls.Params.model_fields[name].get_default(call_default_factory=True)

    # --- checks and helpers -------------------------------------------------------------------
    def _require(self, node_id: str) -> NodeSpec:
        try:
            return self.node(node_id)
        except KeyError:
            raise EditRefused(f"there is no node '{node_id}'") from None

    def _require_parameter(self, name: str) -> GraphParameter:
        try:
            return self._doc.parameters[name]
        except KeyError:
            raise EditRefused(f"there is no graph parameter '{name}'") from None

    def _check_new_id(self, new: str, old: str | None):
        if not _ID.match(new):
            raise EditRefused(f"id '{new}': use letters, digits, '_' or '-', not starting with "
                              "a digit", old)
        if new in self.node_ids():
            raise EditRefused(f"id '{new}' is taken by another node", old)

    def _read_unknown_ports(self):
        self._unknown_ports = {}
        for spec in self._doc.nodes:
            if spec.type not in self.registry:
                edges = self._doc.edges
                self._unknown_ports[spec.id] = (
                    list(dict.fromkeys(e.target[1] for e in edges if e.target[0] == spec.id)),
                    list(dict.fromkeys(e.source[1] for e in edges if e.source[0] == spec.id)))

    def _check_parameter_name(self, name: str):
        if not _ID.match(name):
            raise EditRefused(f"graph parameter '{name}': use letters, digits, '_' or '-', not "
                              "starting with a digit")
        if name in self._doc.parameters:
            raise EditRefused(f"graph parameter '{name}' exists already")

    def _fresh_id(self, type_id: str) -> str:
        base = type_id.rsplit(".", 1)[-1]
        base = base if _ID.match(base) else "node"
        taken, new, i = set(self.node_ids()), base, 2
        while new in taken:
            new, i = f"{base}_{i}", i + 1
        return new

    def _ref(self, ref: str) -> tuple[str, str]:
        node, dot, port = ref.partition(".")
        if not (node and dot and port) or "." in port:
            raise EditRefused(f"'{ref}' must be written 'node.port'")
        return node, port

    def _port(self, node_id: str, name: str, output: bool) -> Port:
        self._require(node_id)
        ports = self.ports(node_id)[1 if output else 0]
        if name not in ports:
            kind = "output" if output else "input"
            raise EditRefused(f"node '{node_id}' has no {kind} port '{name}' ({kind}s: "
                              f"{', '.join(ports) or 'none'})", node_id)
        return ports[name]

    def _edge_index(self, source: str, target: str) -> int | None:
        return next((i for i, e in enumerate(self._doc.edges)
                     if e.from_ == source and e.to == target), None)

    def _reaches(self, start: str, goal: str) -> bool:
        succ: dict[str, set[str]] = {}
        for e in self._doc.edges:
            succ.setdefault(e.source[0], set()).add(e.target[0])
        todo, seen = [start], set()
        while todo:
            n = todo.pop()
            if n == goal:
                return True
            if n not in seen:
                seen.add(n)
                todo += succ.get(n, ())
        return False

    def _validated(self, node_id: str, name: str, value: Any) -> Any:
        """``value`` in JSON form if the node's ``Params`` accept it for ``name``."""
        where = f"node '{node_id}', parameter '{name}'"
        cls = self.node_type(node_id)
        if cls is None:
            raise EditRefused(f"{where}: node type '{self.node(node_id).type}' is not "
                              "installed; its parameters are kept as they are", node_id)
        if name not in cls.Params.model_fields:
            raise EditRefused(f"{where}: '{cls.type_id}' has no such parameter", node_id)
        # With the node's other values first (validators may compare fields), then alone (an
        # invalid other value must not block fixing this one).
        for attempt in (dict(self.node(node_id).params, **{name: value}), {name: value}):
            try:
                return cls.Params.model_validate(attempt).model_dump(mode="json")[name]
            except ValidationError as e:
                mine = [err for err in e.errors() if err["loc"][:1] == (name,)]
                if mine:
                    raise EditRefused(f"{where}: {mine[0]['msg']} (got {value!r})",
                                      node_id) from None
        raise EditRefused(f"{where}: other parameters of the node are invalid", node_id)

    def _checked_for_binds(self, name: str, binds: list[str], value: Any) -> Any:
        """``value`` in the JSON form of the first installed bound parameter, checked against
        every bound parameter whose node type is installed."""
        checked = []
        for bind in binds:
            nid, pname = bind.split(".")
            if nid in self.node_ids() and self.node_type(nid) is not None:
                try:
                    checked.append(self._validated(nid, pname, value))
                except EditRefused as e:
                    raise EditRefused(f"graph parameter '{name}': {e}", e.node) from None
        return checked[0] if checked else value

    def _check_bindable(self, name: str, bind: str):
        nid, pname = self._ref(bind)
        self._require(nid)
        cls = self.node_type(nid)
        if cls is not None and pname not in cls.Params.model_fields:
            raise EditRefused(f"graph parameter '{name}': node '{nid}' has no parameter "
                              f"'{pname}'", nid)
        other = self.bound_parameter(nid, pname)
        if other is not None:
            raise EditRefused(f"graph parameter '{name}': {bind} is already bound to graph "
                              f"parameter '{other}'", nid)

    def _parameter_type(self, node_id: str, name: str) -> str:
        cls = self.node_type(node_id)
        if cls is None:
            return "string"
        schema = cls.Params.model_json_schema()["properties"].get(name, {})
        if schema.get("format") == "path":
            return "path"
        kinds = [schema.get("type")] + [b.get("type") for b in schema.get("anyOf", [])]
        return next((_PARAMETER_TYPES[k] for k in kinds if k in _PARAMETER_TYPES), "string")
