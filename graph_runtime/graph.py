"""Turn a graph document into a validated, ordered plan: bind parameters, upgrade node versions,
validate every param, port and edge, and order nodes topologically.

Every problem is collected and reported at once, each naming the node, port or parameter.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from starloom.serialization import GraphDocument, NodeSpec

from starloom.astro.errors import StarloomError
from .node import Node, Port, is_path_field, resolve_path_value
from .registry import Registry
from .versions import starloom_version


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph: where (node id, port or param) and what."""

    node: str | None
    where: str | None
    message: str

    def __str__(self) -> str:
        loc = []
        if self.node:
            loc.append(f"node '{self.node}'")
        if self.where:
            loc.append(self.where)
        return (", ".join(loc) + ": " if loc else "") + self.message


class GraphValidationError(StarloomError):
    """The graph cannot run; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem], source: str = "graph"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


@dataclass
class PlannedNode:
    spec: NodeSpec
    cls: type[Node]
    params: Any  # validated Params instance
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)  # port -> (node, port)


@dataclass
class Plan:
    """A validated graph in execution order, and the document as it will run."""

    nodes: list[PlannedNode]
    document: GraphDocument
    warnings: list[Problem] = field(default_factory=list)  # the graph runs, but look here

    def node(self, node_id: str) -> PlannedNode:
        return next(n for n in self.nodes if n.spec.id == node_id)


class _Override(NamedTuple):
    """A node parameter's value set from outside the node: by a graph parameter or ``--set``."""

    value: Any
    base: Path  # folder a relative path in ``value`` resolves against
    graph_param: str | None = None  # name of the graph parameter; None for --set
    from_cli: bool = False  # given on the command line (--param, --set), not by the file


def _coerce_cli(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON (or too long an integer, too deep)
            pass
    return value


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of a value for a message, cut to ``limit`` characters."""
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python prints
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def created_with(doc: GraphDocument, registry: Registry) -> dict:
    """What a document is written with: Starloom's version and each used node type's version."""
    return {"starloom": starloom_version(),
            "nodes": {n.type: registry.get(n.type).version
                      for n in sorted(doc.nodes, key=lambda n: n.type) if n.type in registry}}


def _typed(kind: str, value: Any, cli_dir: Path) -> Any:
    """A command-line value of a graph parameter, converted to its declared type."""
    if not isinstance(value, str):
        return value
    if kind == "path":
        return resolve_path_value(value, cli_dir)
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "boolean":
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(value)
        return value.lower() in ("true", "1", "yes")
    return value


def plan(doc: GraphDocument, registry: Registry, *, base_dir: str | os.PathLike = ".",
         params: dict[str, Any] | None = None, sets: dict[str, Any] | None = None,
         cli_dir: str | os.PathLike | None = None, source: str = "graph",
         check_inputs: bool = False) -> Plan:
    """Validate ``doc`` and order it for execution.

    Parameters
    ----------
    doc : GraphDocument
        The graph as loaded.
    registry : Registry
        Node types.
    base_dir : path
        Folder relative path parameters in the graph file resolve against (the file's folder).
    params : dict, optional
        Graph-level parameter overrides (``--param NAME=VALUE``).
    sets : dict, optional
        Node parameter overrides by ``"node_id.param"`` (``--set``).
    cli_dir : path, optional
        Folder relative paths given in ``params``/``sets`` resolve against (default: cwd).
    source : str
        Name of the graph (file) for messages.
    check_inputs : bool
        Also check that the files and folders named by path parameters exist (``starloom
        validate``). A missing one is a problem, or only a warning when it is a graph
        parameter's default that ``--param`` can still replace.

    Returns
    -------
    Plan
        With ``warnings``: a node parameter written in the file that a graph parameter replaces
        by another value (the graph parameter's value is used), inputs that ``--param`` may
        still supply.

    Raises
    ------
    GraphValidationError
        Listing every problem: unknown graph parameter or node type, node version newer than
        installed, invalid param, unknown or duplicate node id or port, port type mismatch,
        missing required input, an input fed twice, a cycle; an invalid value written in the
        file for a parameter a graph parameter replaces; with ``check_inputs``, a missing input.
    """
    problems: list[Problem] = []
    warnings: list[Problem] = []
    cli_dir = Path(cli_dir or os.getcwd())
    doc = doc.model_copy(deep=True)
    by_id: dict[str, NodeSpec] = {}
    for spec in doc.nodes:
        if spec.id in by_id:
            problems.append(Problem(spec.id, None, "duplicate node id"))
        by_id[spec.id] = spec
    overrides = _overrides(doc, dict(params or {}), sets or {}, Path(base_dir), cli_dir, problems)
    for (nid, pname) in overrides:
        if nid not in by_id:
            problems.append(Problem(nid, f"param '{pname}'", "no node with this id to bind to"))
    planned: dict[str, PlannedNode] = {}
    for spec in doc.nodes:
        pn = _plan_node(spec, registry, overrides, Path(base_dir), problems, warnings,
                        check_inputs)
        if pn is not None:
            planned[spec.id] = pn
    _connect(doc, planned, by_id, problems)
    order = _toposort(doc.nodes, planned, problems)
    if problems:
        raise GraphValidationError(problems, source)
    return Plan([planned[i] for i in order], doc, warnings)


def _overrides(doc: GraphDocument, params: dict[str, Any], sets: dict[str, Any], base_dir: Path,
               cli_dir: Path, problems: list[Problem]) -> dict[tuple[str, str], _Override]:
    """Node param values set by graph parameters (CLI value or default) and by ``--set``, with
    the folder each relative path in them resolves against."""
    overrides: dict[tuple[str, str], _Override] = {}
    for name in params:
        if name not in doc.parameters:
            known = ", ".join(sorted(doc.parameters)) or "none"
            problems.append(Problem(None, f"graph parameter '{name}'",
                                    f"not defined by this graph (it has: {known})"))
    for name, gp in doc.parameters.items():
        if name in params:
            try:
                value, base = _typed(gp.type, params[name], cli_dir), cli_dir
            except ValueError:
                problems.append(Problem(None, f"graph parameter '{name}'",
                                        f"expected {'an' if gp.type[0] in 'aeiou' else 'a'} {gp.type}, got {_short(params[name])}"))
                continue
            gp.default = value  # graph.json of the run records the value used
        elif gp.default is not None:
            value, base = gp.default, base_dir
        else:
            continue
        for bind in gp.binds:
            overrides[tuple(bind.split("."))] = _Override(value, base, name, name in params)
    for target, value in sets.items():
        if target.count(".") != 1:
            problems.append(Problem(None, f"--set {target}", "must be written NODE.PARAM=VALUE"))
            continue
        overrides[tuple(target.split("."))] = _Override(_coerce_cli(value), cli_dir, None, True)
    return overrides


def _plan_node(spec: NodeSpec, registry: Registry, overrides: dict[tuple[str, str], _Override],
               base_dir: Path, problems: list[Problem], warnings: list[Problem],
               check_inputs: bool = False) -> PlannedNode | None:
    """The node's type, upgraded and validated params (None when invalid, so its ports and
    edges are still checked); None when the type is unknown or newer than installed."""
    try:
        cls = registry.get(spec.type)
    except StarloomError:
        problems.append(Problem(spec.id, None, f"unknown node type '{spec.type}'"))
        return None
    raw = dict(spec.params)
    if spec.version > cls.version:
        problems.append(Problem(spec.id, None,
                                f"'{spec.type}' version {spec.version} is newer than the "
                                f"installed version {cls.version}; upgrade Starloom or the "
                                f"node package"))
        return None
    if spec.version < cls.version:
        try:
            raw = cls.upgrade(raw, spec.version)
        except Exception as e:
            problems.append(Problem(spec.id, None, f"cannot upgrade params: {e}"))
            return None
        spec.version = cls.version
    written = dict(raw)  # the values the file itself gives, before any override
    mine = {pname: o for (nid, pname), o in overrides.items() if nid == spec.id}
    base_of = {k: base_dir for k in raw}
    for pname, o in mine.items():
        if pname not in cls.Params.model_fields:
            problems.append(Problem(spec.id, f"param '{pname}'", "no such parameter"))
            continue
        raw[pname], base_of[pname] = o.value, o.base
    for pname in raw:
        if pname in cls.Params.model_fields and is_path_field(cls.Params, pname):
            raw[pname] = resolve_path_value(raw[pname], base_of[pname])
    p = _validated(spec.id, cls, raw, problems)
    if p is not None:
        spec.params = p.model_dump(mode="json")
    for pname, o in mine.items():
        if o.graph_param is not None and pname in written and pname in cls.Params.model_fields:
            _check_replaced(spec.id, cls, pname, written[pname], base_dir, raw, p, o,
                            problems, warnings)
    if check_inputs and p is not None:
        _check_input_paths(spec.id, cls, p, mine, problems, warnings)
    return PlannedNode(spec, cls, p)


def _validated(nid: str, cls: type[Node], raw: dict, problems: list[Problem]):
    """``cls.Params`` of ``raw``, or None with a problem for each invalid value."""
    try:
        return cls.Params.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "params"
            problems.append(Problem(nid, f"param '{loc}'",
                                    f"{err['msg']} (got {_short(err.get('input'))})"))
        return None


def _check_replaced(nid: str, cls: type[Node], pname: str, value: Any, base_dir: Path,
                    raw: dict, used, o: _Override, problems: list[Problem],
                    warnings: list[Problem]) -> None:
    """A node parameter the file writes that a graph parameter replaces.

    Neither value is dropped silently: the file's own value must still be valid (it is what
    the node runs with once the graph parameter is removed or unbound), and when it differs
    from the value used, a warning says which one won. Not an error: the editor keeps a
    node's own value when it binds the parameter to a graph parameter.
    """
    if is_path_field(cls.Params, pname):
        value = resolve_path_value(value, base_dir)
    try:
        alone = cls.Params.model_validate({**raw, pname: value})
    except ValidationError as e:
        for err in e.errors():
            if err["loc"][:1] == (pname,):
                problems.append(Problem(nid, f"param '{pname}'",
                                        f"value written in the graph file is invalid: "
                                        f"{err['msg']} (got {_short(err.get('input'))}); graph "
                                        f"parameter '{o.graph_param}' replaces it when the "
                                        f"graph runs"))
        return  # invalid, or other params are (reported by the node's own validation)
    if used is not None and getattr(alone, pname) != getattr(used, pname):
        origin = "its --param value" if o.from_cli else "its default"
        warnings.append(Problem(nid, f"param '{pname}'",
                                f"the graph file sets {_short(getattr(alone, pname))}, but graph "
                                f"parameter '{o.graph_param}' binds it: "
                                f"{_short(getattr(used, pname))} ({origin}) is used"))


def _missing_path(value: str) -> str | None:
    """The first comma-separated component of a path value that names nothing, or None."""
    for part in (p.strip() for p in value.split(",")):
        try:
            found = glob.glob(part) if glob.has_magic(part) else os.path.exists(part)
        except (OSError, ValueError):  # e.g. a NUL byte in the name: it names nothing
            found = False
        if part and not found:
            return part
    return None


def _check_input_paths(nid: str, cls: type[Node], params, mine: dict[str, _Override],
                       problems: list[Problem], warnings: list[Problem]) -> None:
    """Report path parameters naming files or folders that do not exist.

    A graph parameter's default is only a warning (``--param`` may still give the real
    place, as with the example graphs' ``lights/``); any other missing input is a problem.
    """
    for pname in cls.Params.model_fields:
        value = getattr(params, pname)
        if not is_path_field(cls.Params, pname) or not isinstance(value, str) or not value:
            continue
        missing = _missing_path(value)
        if missing is None:
            continue
        o = mine.get(pname)
        if o is not None and o.graph_param is not None and not o.from_cli:
            warnings.append(Problem(nid, f"param '{pname}'",
                                    f"input not found: {missing} (the default of graph parameter "
                                    f"'{o.graph_param}'; give it with --param "
                                    f"{o.graph_param}=PATH)"))
        else:
            problems.append(Problem(nid, f"param '{pname}'", f"input not found: {missing}"))


def _connect(doc: GraphDocument, planned: dict[str, PlannedNode], by_id: dict[str, NodeSpec],
             problems: list[Problem]) -> None:
    """Check every edge (ports exist, types fit, one edge per input), record it as a planned
    input, and report required inputs left unconnected."""
    for e in doc.edges:
        (sn, sp), (tn, tp) = e.source, e.target
        src, dst = planned.get(sn), planned.get(tn)
        for nid in (sn, tn):
            if nid not in by_id:
                problems.append(Problem(nid, None, f"edge {e.from_} -> {e.to} names a node that "
                                                   f"does not exist"))
        if src is None or dst is None:
            continue
        out_port: Port | None = src.cls.outputs.get(sp)
        in_port: Port | None = dst.cls.inputs.get(tp)
        if out_port is None:
            problems.append(Problem(sn, f"output port '{sp}'",
                                    f"no such port (outputs: {', '.join(src.cls.outputs)})"))
        if in_port is None:
            problems.append(Problem(tn, f"input port '{tp}'",
                                    f"no such port (inputs: {', '.join(dst.cls.inputs) or 'none'})"))
        if out_port is None or in_port is None:
            continue
        if not in_port.accepts(out_port):
            problems.append(Problem(tn, f"input port '{tp}'",
                                    f"type mismatch: {e.from_} gives {'/'.join(out_port.types)}, "
                                    f"'{tp}' takes {'/'.join(in_port.types)}"))
        if tp in dst.inputs:
            problems.append(Problem(tn, f"input port '{tp}'", "connected more than once"))
        dst.inputs[tp] = (sn, sp)
    for pn in planned.values():
        for name, port in pn.cls.inputs.items():
            if not port.optional and name not in pn.inputs:
                problems.append(Problem(pn.spec.id, f"input port '{name}'",
                                        "required input is not connected"))


def _toposort(specs: list[NodeSpec], planned: dict[str, PlannedNode],
              problems: list[Problem]) -> list[str]:
    """Kahn's algorithm, stable in document order; a cycle is reported with its nodes."""
    ids = [s.id for s in specs if s.id in planned]
    indeg = {i: 0 for i in ids}
    children: dict[str, list[str]] = {i: [] for i in ids}
    for nid in ids:
        for (src, _) in set(planned[nid].inputs.values()):
            if src in indeg:
                indeg[nid] += 1
                children[src].append(nid)
    ready = [i for i in ids if indeg[i] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for c in children[n]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if len(order) < len(ids):
        stuck = [i for i in ids if i not in order]
        problems.append(Problem(None, None, f"cycle among nodes: {', '.join(stuck)}"))
    return order
