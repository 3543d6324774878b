"""The document model beneath the editor, without Qt: every operation, its refusals, undo and
redo, change notifications, and unedited save/load round trips."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from starloom.graph_runtime.editing import (UNKNOWN_PORT, Change, ChangeKind, EditableGraph,
                                            EditRefused)
from starloom.graph_runtime.graph import created_with
from starloom.graph_runtime.node import Node, Params, PathParam, Port, Quantity
from starloom.graph_runtime.registry import Registry, default_registry
from starloom.serialization import GraphDocument, load_graph, parse_graph

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "example_graphs").glob("*.json"))


class Source(Node):
    type_id, title, category = "t.source", "Source", "t"

    class Params(Params):
        path: str = PathParam("in/")
        count: int = Field(3, ge=1)
        mode: Literal["a", "b"] = "a"

    outputs = {"frames": Port("FrameSeries"), "number": Port("Number")}


class Stack(Node):
    type_id, title, category = "t.stack", "Stack", "t"

    class Params(Params):
        sigma: float = Field(3.0, gt=0)
        exposure: Quantity("s") = 1.0

    inputs = {"frames": Port("FrameSeries"), "weights": Port("Number", optional=True)}
    outputs = {"image": Port("Image")}


class Save(Node):
    type_id, title, category = "t.save", "Save", "t"

    class Params(Params):
        filename: str = "out.fits"

    inputs = {"image": Port(("Image", "FrameSeries"))}
    outputs = {"path": Port("Path")}


class Filter(Node):
    type_id, title, category = "t.filter", "Filter", "t"
    inputs = {"image": Port("Image")}
    outputs = {"image": Port("Image")}


@pytest.fixture
def registry():
    reg = Registry()
    for cls in (Source, Stack, Save, Filter):
        reg.add(cls)
    return reg


def pipeline() -> GraphDocument:
    return parse_graph(json.dumps({
        "format": "starloom.graph", "schema_version": 1,
        "parameters": {"count": {"type": "integer", "default": 5, "binds": ["src.count"]},
                       "name": {"type": "string", "default": "x.fits",
                                "binds": ["save.filename"]}},
        "nodes": [{"id": "src", "type": "t.source", "version": 1, "ui": {"x": 40, "y": 40}},
                  {"id": "stack", "type": "t.stack", "version": 1, "params": {"sigma": 2.0}},
                  {"id": "save", "type": "t.save", "version": 1}],
        "edges": [{"from": "src.frames", "to": "stack.frames"},
                  {"from": "stack.image", "to": "save.image"}]}))


@pytest.fixture
def graph(registry):
    return EditableGraph(registry, pipeline())


@pytest.fixture
def changes(graph):
    seen: list[Change] = []
    graph.subscribe(seen.append)
    return seen


def edges(graph):
    return [(e.from_, e.to) for e in graph.doc.edges]


def refused(graph, match, operation, *args, **kw):
    """Call an operation that must be refused: the document and the undo stack stay as they
    were, nobody is notified; returns the refusal."""
    before, undo, seen = graph.doc.to_json(), graph.undo_text, []
    stop = graph.subscribe(seen.append)
    with pytest.raises(EditRefused, match=match) as info:
        operation(*args, **kw)
    stop()
    assert graph.doc.to_json() == before and graph.undo_text == undo and seen == []
    return info.value


def undo_redo_round(graph, before: str):
    """Undo the last command (the document is ``before`` again), then redo it."""
    after = graph.doc.to_json()
    graph.undo()
    assert graph.doc.to_json() == before
    graph.redo()
    assert graph.doc.to_json() == after


# --- nodes -------------------------------------------------------------------------------------
def test_add_node_gives_a_fresh_id_and_is_undoable(graph, changes):
    before = graph.doc.to_json()
    assert graph.add_node("t.stack", 300, 80) == "stack_2"
    spec = graph.node("stack_2")
    assert (spec.type, spec.version, spec.params) == ("t.stack", 1, {})
    assert (spec.ui.x, spec.ui.y) == (300, 80)
    assert changes == [Change(ChangeKind.NODE_ADDED, node="stack_2")]
    assert graph.add_node("t.stack") == "stack_3"
    assert graph.add_node("t.save", node_id="writer") == "writer"
    assert graph.node_ids()[-3:] == ["stack_2", "stack_3", "writer"]
    graph.undo(), graph.undo()
    undo_redo_round(graph, before)
    assert graph.undo_text == "add stack_2"


def test_add_node_refusals(graph):
    refused(graph, "unknown node type 'acme.denoise'", graph.add_node, "acme.denoise")
    refused(graph, "id '2x'", graph.add_node, "t.save", node_id="2x")
    refused(graph, "taken", graph.add_node, "t.save", node_id="save")


def test_remove_node_takes_its_edges_and_binds_and_undo_restores_all(graph, changes):
    before = graph.doc.to_json()
    graph.remove_node("src")
    assert graph.node_ids() == ["stack", "save"]
    assert edges(graph) == [("stack.image", "save.image")]
    assert list(graph.doc.parameters) == ["name"]  # 'count' bound only src.count
    kinds = [c.kind for c in changes]
    assert kinds == [ChangeKind.EDGE_REMOVED, ChangeKind.GRAPH_PARAMETER_CHANGED,
                     ChangeKind.NODE_REMOVED]
    changes.clear()
    graph.undo()
    assert graph.doc.to_json() == before  # order of nodes, edges and parameters too
    assert [c.kind for c in changes] == [ChangeKind.NODE_ADDED,
                                         ChangeKind.GRAPH_PARAMETER_CHANGED,
                                         ChangeKind.EDGE_ADDED]
    graph.redo()
    assert graph.node_ids() == ["stack", "save"]
    refused(graph, "no node 'src'", graph.remove_node, "src")


def test_remove_several_nodes_is_one_command(graph):
    before = graph.doc.to_json()
    graph.remove_nodes(["stack", "save"])
    assert graph.node_ids() == ["src"] and edges(graph) == []
    assert list(graph.doc.parameters) == ["count"]
    undo_redo_round(graph, before)
    refused(graph, "no node 'nope'", graph.remove_nodes, ["src", "nope"])


def test_rename_rewrites_edges_and_binds(graph, changes):
    before = graph.doc.to_json()
    spec = graph.node("src")
    graph.rename_node("src", "lights")
    assert spec.id == "lights" and graph.node("lights") is spec  # the entry keeps its identity
    assert edges(graph) == [("lights.frames", "stack.frames"), ("stack.image", "save.image")]
    assert graph.doc.parameters["count"].binds == ["lights.count"]
    assert graph.bound_parameter("lights", "count") == "count"
    assert changes == [Change(ChangeKind.NODE_RENAMED, node="lights", old="src")]
    undo_redo_round(graph, before)
    graph.rename_node("lights", "lights")  # same id: nothing to do
    assert graph.undo_text == "rename src to lights"


def test_rename_refusals_name_the_node(graph):
    assert refused(graph, "use letters", graph.rename_node, "src", "my node").node == "src"
    refused(graph, "taken by another node", graph.rename_node, "src", "stack")
    refused(graph, "no node 'nope'", graph.rename_node, "nope", "x")


def test_move_and_successive_moves_merge(graph, changes):
    before = graph.doc.to_json()
    graph.move_node("src", 100, 50)
    graph.move_nodes({"src": (120, 60), "stack": (0, 0)})  # stack is at (0, 0): not moved
    graph.move_node("src", 140, 70)
    assert (graph.node("src").ui.x, graph.node("src").ui.y) == (140, 70)
    assert [c.kind for c in changes] == [ChangeKind.NODE_MOVED] * 3
    graph.undo()
    assert graph.doc.to_json() == before and not graph.can_undo
    graph.redo()
    assert graph.node("src").ui.x == 140
    graph.move_node("stack", 10, 10)
    graph.move_node("src", 10, 10)  # other nodes: a command of its own
    graph.undo()
    assert graph.node("stack").ui.x == 10 and graph.node("src").ui.x == 140
    refused(graph, "no node 'nope'", graph.move_node, "nope", 1, 1)


def test_label_is_normalised_and_undoable(graph, changes):
    before = graph.doc.to_json()
    graph.set_label("stack", "  Deep   stack ")
    assert graph.node("stack").ui.label == "Deep stack"
    assert changes == [Change(ChangeKind.LABEL_CHANGED, node="stack")]
    undo_redo_round(graph, before)
    graph.set_label("stack", "Stack")  # the type's title: no label
    assert graph.node("stack").ui.label is None
    graph.set_label("stack", "")
    assert graph.undo_text == "label stack"
    refused(graph, "no node", graph.set_label, "nope", "x")


def test_metadata_is_undoable(graph, changes):
    before = graph.doc.to_json()
    graph.set_metadata(name="Night 1", description="M31")
    assert (graph.doc.metadata.name, graph.doc.metadata.description) == ("Night 1", "M31")
    assert [c.kind for c in changes] == [ChangeKind.METADATA_CHANGED] * 2
    undo_redo_round(graph, before)
    graph.set_metadata(name="Night 1")  # unchanged: no command
    assert graph.undo_text == "edit graph name and description"


# --- edges -------------------------------------------------------------------------------------
def test_connect_and_disconnect(graph, changes):
    graph.add_node("t.save", node_id="raw")
    changes.clear()
    before = graph.doc.to_json()
    graph.connect("src.frames", "raw.image")  # the input takes Image or FrameSeries
    assert ("src.frames", "raw.image") in edges(graph)
    assert changes == [Change(ChangeKind.EDGE_ADDED, edge=("src.frames", "raw.image"))]
    graph.connect("src.frames", "raw.image")  # already there: nothing
    assert graph.undo_text == "connect src.frames to raw.image"
    undo_redo_round(graph, before)
    before = graph.doc.to_json()
    graph.disconnect("src.frames", "raw.image")
    assert ("src.frames", "raw.image") not in edges(graph)
    undo_redo_round(graph, before)
    refused(graph, "no edge src.frames -> raw.image", graph.disconnect, "src.frames", "raw.image")


def test_connect_refusals(graph):
    graph.add_node("t.stack", node_id="other")
    e = refused(graph, r"src.number \(Number\) to other.frames \(FrameSeries\): the port types "
                       "differ", graph.connect, "src.number", "other.frames")
    assert e.node == "other"
    refused(graph, "no node 'nope'", graph.connect, "nope.x", "other.frames")
    refused(graph, r"'src' has no output port 'image' \(outputs: frames, number\)",
            graph.connect, "src.image", "other.frames")
    refused(graph, r"'other' has no input port 'bias' \(inputs: frames, weights\)",
            graph.connect, "src.frames", "other.bias")
    refused(graph, r"'src' has no input port 'frames' \(inputs: none\)", graph.connect,
            "stack.image", "src.frames")
    refused(graph, "must be written 'node.port'", graph.connect, "src", "other.frames")
    refused(graph, "the input is already fed by stack.image", graph.connect, "other.image",
            "save.image")
    refused(graph, "cannot feed itself", graph.connect, "other.image", "other.frames")


def test_a_cycle_is_refused(registry):
    graph = EditableGraph(registry)
    for nid in ("a", "b", "c"):
        graph.add_node("t.filter", node_id=nid)
    graph.connect("a.image", "b.image")
    graph.connect("b.image", "c.image")
    refused(graph, "connecting c.image to a.image would make a cycle", graph.connect,
            "c.image", "a.image")
    graph.disconnect("a.image", "b.image")
    graph.connect("c.image", "a.image")  # no path back any more
    assert graph.has_edge("c.image", "a.image") and graph.feeding("a.image") == "c.image"


def test_unknown_types_are_kept_with_ports_from_their_edges(registry):
    doc = pipeline()
    doc.nodes.append(doc.nodes[-1].model_copy(update={"id": "denoise", "type": "acme.denoise"},
                                              deep=True))
    doc.edges.append(doc.edges[-1].model_copy(update={"to": "denoise.image"}))
    text = doc.to_json()
    graph = EditableGraph(registry, doc)
    assert graph.node_type("denoise") is None
    assert graph.ports("denoise") == ({"image": UNKNOWN_PORT}, {})
    refused(graph, "acme.denoise' is not installed", graph.set_param, "denoise", "x", 1)
    graph.disconnect("stack.image", "denoise.image")
    graph.connect("src.frames", "denoise.image")  # an unknown type takes anything
    graph.rename_node("denoise", "dn")
    assert graph.ports("dn") == ({"image": UNKNOWN_PORT}, {})
    refused(graph, "no input port 'mask'", graph.connect, "src.frames", "dn.mask")
    while graph.can_undo:
        graph.undo()
    assert graph.doc.to_json() == text and not graph.modified


# --- parameters --------------------------------------------------------------------------------
def test_set_param_validates_converts_and_merges(graph, changes):
    before = graph.doc.to_json()
    graph.set_param("stack", "exposure", "2 min")  # a compatible unit is converted
    assert graph.node("stack").params["exposure"] == 120.0
    assert changes == [Change(ChangeKind.PARAM_CHANGED, node="stack", name="exposure")]
    graph.set_param("stack", "exposure", 30)
    graph.set_param("stack", "exposure", "40")  # typing one value: one command
    assert graph.node("stack").params["exposure"] == 40.0
    assert graph.undo_text == "set stack.exposure"
    graph.undo()
    assert graph.doc.to_json() == before and "exposure" not in graph.node("stack").params
    graph.redo()
    assert graph.node("stack").params["exposure"] == 40.0
    graph.set_param("stack", "sigma", 2.5)  # another parameter: its own command
    assert list(graph.node("stack").params) == ["sigma", "exposure"]  # keeps its place
    graph.undo()
    assert graph.node("stack").params == {"sigma": 2.0, "exposure": 40.0}
    assert list(graph.node("stack").params) == ["sigma", "exposure"]
    graph.set_param("stack", "sigma", 2.0)  # unchanged: nothing
    assert graph.undo_text == "set stack.exposure"


def test_set_param_refusals_name_node_and_parameter(graph):
    e = refused(graph, r"node 'stack', parameter 'sigma': Input should be greater than 0 "
                       r"\(got 0\)", graph.set_param, "stack", "sigma", 0)
    assert e.node == "stack"
    refused(graph, "node 'stack', parameter 'gain': 't.stack' has no such parameter",
            graph.set_param, "stack", "gain", 1)
    refused(graph, "parameter 'mode'", graph.set_param, "src", "mode", "c")
    refused(graph, "no node 'nope'", graph.set_param, "nope", "sigma", 1)


def test_no_merge_after_save_or_undo(graph, tmp_path):
    graph.set_param("stack", "sigma", 2.5)
    graph.save(tmp_path / "g.json")
    graph.set_param("stack", "sigma", 1.5)  # after a save: a command of its own
    graph.undo()
    assert graph.node("stack").params["sigma"] == 2.5 and not graph.modified


def test_a_bound_parameter_sets_its_graph_parameter(graph, changes):
    before = graph.doc.to_json()
    graph.set_param("src", "count", "7")
    assert graph.doc.parameters["count"].default == 7 and "count" not in graph.node("src").params
    assert graph.param_value("src", "count") == 7
    assert changes == [Change(ChangeKind.GRAPH_PARAMETER_CHANGED, name="count")]
    undo_redo_round(graph, before)
    e = refused(graph, "graph parameter 'count': node 'src', parameter 'count': Input should "
                       "be greater than or equal to 1", graph.set_param, "src", "count", 0)
    assert e.node == "src"


def test_param_value_falls_back_to_document_then_default(graph):
    assert graph.param_value("stack", "sigma") == 2.0
    assert graph.param_value("stack", "exposure") == 1.0
    assert graph.param_value("save", "filename") == "x.fits"  # the graph parameter's value
    with pytest.raises(KeyError):
        graph.param_value("stack", "gain")


def test_graph_parameters_are_created_bound_unbound_set_and_removed(graph, changes):
    start = graph.doc.to_json()
    graph.create_graph_parameter("sigma", ["stack.sigma"], description="clip")
    gp = graph.doc.parameters["sigma"]
    assert (gp.type, gp.default, gp.binds, gp.description) == ("number", 2.0, ["stack.sigma"],
                                                              "clip")
    assert changes[-1] == Change(ChangeKind.GRAPH_PARAMETER_CHANGED, name="sigma")
    graph.add_node("t.stack", node_id="other")
    before = graph.doc.to_json()
    graph.bind_parameter("sigma", "other.sigma")
    assert graph.doc.parameters["sigma"].binds == ["stack.sigma", "other.sigma"]
    undo_redo_round(graph, before)
    before = graph.doc.to_json()
    graph.set_graph_parameter("sigma", "1.5")
    assert graph.param_value("other", "sigma") == 1.5
    undo_redo_round(graph, before)
    before = graph.doc.to_json()
    graph.unbind_parameter("sigma", "other.sigma")
    assert graph.bound_parameter("other", "sigma") is None
    undo_redo_round(graph, before)
    graph.create_graph_parameter("where", ["src.path"])
    assert graph.doc.parameters["where"].type == "path"
    assert graph.doc.parameters["where"].default == "in/"
    before = graph.doc.to_json()
    graph.remove_graph_parameter("where")
    assert "where" not in graph.doc.parameters
    undo_redo_round(graph, before)
    while graph.can_undo:
        graph.undo()
    assert graph.doc.to_json() == start


def test_graph_parameter_refusals(graph):
    refused(graph, "use letters", graph.create_graph_parameter, "a b", ["stack.sigma"])
    refused(graph, "exists already", graph.create_graph_parameter, "count", ["stack.sigma"])
    refused(graph, "at least one", graph.create_graph_parameter, "s", [])
    refused(graph, "node 'stack' has no parameter 'gain'", graph.create_graph_parameter, "s",
            ["stack.gain"])
    refused(graph, "no node 'nope'", graph.create_graph_parameter, "s", ["nope.sigma"])
    refused(graph, "src.count is already bound to graph parameter 'count'",
            graph.create_graph_parameter, "s", ["src.count"])
    refused(graph, "parameter 'sigma': Input should be greater than 0",
            graph.create_graph_parameter, "s", ["stack.sigma"], default=-1)
    refused(graph, "no graph parameter 'nope'", graph.set_graph_parameter, "nope", 1)
    refused(graph, "graph parameter 'count': node 'src', parameter 'count'",
            graph.set_graph_parameter, "count", "many")
    refused(graph, "already bound", graph.bind_parameter, "name", "src.count")
    graph.create_graph_parameter("s", ["stack.sigma"])
    graph.add_node("t.source", node_id="src2")
    refused(graph, "parameter 'mode'", graph.bind_parameter, "count", "src2.mode")
    refused(graph, "does not bind src2.count", graph.unbind_parameter, "count", "src2.count")
    refused(graph, "last bind of graph parameter 'count'", graph.unbind_parameter, "count",
            "src.count")
    refused(graph, "no graph parameter", graph.remove_graph_parameter, "nope")


# --- undo stack, modified flag, notifications ---------------------------------------------------
def test_undo_and_redo_texts_and_empty_stacks(registry):
    graph = EditableGraph(registry)
    assert graph.undo() is None and graph.redo() is None
    assert not graph.can_undo and not graph.can_redo
    graph.add_node("t.source")
    assert graph.undo() == "add source" and graph.redo_text == "add source"
    assert graph.redo() == "add source" and graph.undo_text == "add source"
    graph.undo()
    graph.add_node("t.save")  # a new edit drops what could be redone
    assert not graph.can_redo


def test_group_is_one_command_and_rolls_back_on_error(graph, changes):
    before = graph.doc.to_json()
    with graph.group("replace the stack"):
        graph.disconnect("stack.image", "save.image")
        graph.connect("src.frames", "save.image")
    assert graph.undo_text == "replace the stack"
    graph.undo()
    assert graph.doc.to_json() == before
    changes.clear()
    with pytest.raises(EditRefused):
        with graph.group("doomed"):
            graph.rename_node("src", "lights")
            graph.connect("src.number", "stack.frames")  # 'src' is gone: refused
    assert graph.doc.to_json() == before and changes == []
    assert graph.undo_text is None and graph.redo_text == "replace the stack"
    with pytest.raises(RuntimeError), graph.group("inside"):
        graph.undo()


def test_modified_follows_the_last_save(graph, tmp_path):
    assert not graph.modified
    graph.set_param("stack", "sigma", 1.0)
    assert graph.modified
    graph.undo()
    assert not graph.modified
    graph.redo()
    path = graph.save(tmp_path / "g.json")
    assert not graph.modified
    saved = load_graph(path)
    assert saved == graph.doc and saved.metadata.created_with == created_with(saved,
                                                                              graph.registry)
    graph.undo()
    assert graph.modified  # the file has the edit, the document not any more


def test_subscribers_see_the_finished_change_and_may_edit(graph):
    seen = []

    def follow(change):
        seen.append((change.kind, change.node, graph.node_ids()))
        if change.kind == ChangeKind.NODE_ADDED and change.node == "extra":
            graph.connect("stack.image", "extra.image")  # e.g. Ryven's auto-connection

    def second(change):
        seen.append(("second", change.kind))

    graph.subscribe(follow)
    stop = graph.subscribe(second)
    graph.add_node("t.save", node_id="extra")
    assert seen == [(ChangeKind.NODE_ADDED, "extra", ["src", "stack", "save", "extra"]),
                    ("second", ChangeKind.NODE_ADDED),
                    (ChangeKind.EDGE_ADDED, None, ["src", "stack", "save", "extra"]),
                    ("second", ChangeKind.EDGE_ADDED)]
    assert graph.undo_text == "connect stack.image to extra.image"  # a command of its own
    stop()
    seen.clear()
    graph.undo()
    assert seen == [(ChangeKind.EDGE_REMOVED, None, ["src", "stack", "save", "extra"])]


def test_replace_and_load(graph, changes, tmp_path):
    graph.set_param("stack", "sigma", 1.0)
    (tmp_path / "g.json").write_text(pipeline().to_json())
    graph.load(tmp_path / "g.json")
    assert changes[-1] == Change(ChangeKind.DOCUMENT_REPLACED)
    assert not graph.can_undo and not graph.modified and graph.doc == pipeline()


# --- the graph files ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_graphs_save_unchanged_when_unedited(path, tmp_path):
    graph = EditableGraph(default_registry(), load_graph(path))
    first = graph.save(tmp_path / "first.json").read_bytes()
    assert first == load_graph(path).to_json().encode()
    again = EditableGraph(default_registry(), load_graph(tmp_path / "first.json"))
    assert again.save(tmp_path / "second.json").read_bytes() == first
    # An edit undone is no edit either.
    nid = graph.node_ids()[0]
    graph.set_label(nid, "something else")
    graph.undo()
    assert graph.save(tmp_path / "third.json").read_bytes() == first


def test_the_model_imports_no_qt():
    import subprocess
    import sys
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, *a):\n"
            "        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'qtpy', 'ryvencore',\n"
            "                                  'ryvencore_qt'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from starloom.graph_runtime.editing import EditableGraph\n"
            "from starloom.graph_runtime.registry import default_registry\n"
            "g = EditableGraph(default_registry())\n"
            "print(g.add_node('stacking.combine'))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "combine"
