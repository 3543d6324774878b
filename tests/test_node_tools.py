"""Without Qt: the graph trimmed to a node's ancestors (run to a node), forgetting one node's
cache entries, and the groups and comments of the canvas as undoable document edits."""
from __future__ import annotations

from pathlib import Path

import pytest

from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.editing import ChangeKind, EditableGraph, EditRefused
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.registry import default_registry
from starloom.graph_runtime.run import Run
from starloom.graph_runtime.subgraph import ancestors, upstream_document
from starloom.serialization import load_graph, parse_graph

EXAMPLES = Path(__file__).resolve().parents[1] / "example_graphs"
DEMO = EXAMPLES / "demo.json"


def test_upstream_document_keeps_the_ancestors_edges_and_binds():
    doc = load_graph(DEMO)
    assert ancestors(doc, ["master_dark"]) == {"simulate", "master_bias", "master_dark"}
    part = upstream_document(doc, ["master_flat"])
    assert [n.id for n in part.nodes] == ["simulate", "master_bias", "master_dark", "master_flat"]
    assert all(e.source[0] in {"simulate", "master_bias", "master_dark"} for e in part.edges)
    assert part.parameters["seed"].binds == ["simulate.seed"]
    assert len(doc.nodes) == 10  # the document itself is unchanged
    plan(part, default_registry())  # and the part is a valid graph
    with pytest.raises(KeyError):
        upstream_document(doc, ["nope"])


def test_upstream_document_drops_parameters_binding_no_kept_node():
    doc = load_graph(DEMO)
    doc.parameters["name"] = doc.parameters["seed"].model_copy(
        update={"type": "string", "default": "x.png", "binds": ["save_png.filename"]})
    part = upstream_document(doc, ["simulate"])
    assert set(part.parameters) == {"seed", "n_lights"}


def _run(cache, run_dir, force=()):
    events = []
    run = Run(run_dir, cache, force=set(force), listeners=[events.append])
    result = run.execute(plan(upstream_document(load_graph(DEMO), ["calibrate"]),
                              default_registry(), params={"n_lights": 3}, base_dir=EXAMPLES))
    assert result.status == "ok", result.error
    return result, {e["node"]: e["key"] for e in events if "key" in e}


def test_cache_forget_removes_a_node_and_its_frames_only(tmp_path):
    cache = Cache(tmp_path / "cache")
    _, keys = _run(cache, tmp_path / "r1")
    removed = cache.forget(keys["calibrate"])
    assert removed[0] == keys["calibrate"] and len(removed) == 1 + 3  # the node and its frames
    assert cache.lookup(keys["calibrate"]) is None
    assert cache.lookup(keys["master_flat"]) is not None
    assert cache.forget(keys["calibrate"]) == []  # gone already
    result, _ = _run(cache, tmp_path / "r2")
    assert result.executed == ["calibrate"] and result.frames_computed == 3
    cache.close()


def test_groups_and_comments_are_undoable_edits_of_the_document():
    graph = EditableGraph(default_registry(), load_graph(DEMO))
    before = graph.doc.to_json()
    seen = []
    graph.subscribe(lambda c: seen.append(c.kind))
    assert graph.add_group("Calibration", 300, 0, 900, 300, "#a0d0a0") == 0
    assert graph.add_comment("flats are twilight", 40, 500) == 0
    graph.update_group(0, title="Masters")
    graph.update_group(0, x=320)
    assert seen == [ChangeKind.CANVAS_CHANGED] * 4 and graph.modified
    text = graph.doc.to_json()
    assert parse_graph(text).ui.groups[0].title == "Masters"
    with pytest.raises(EditRefused, match="color"):
        graph.update_group(0, color="green")
    with pytest.raises(EditRefused, match="no comment 3"):
        graph.remove_comment(3)
    assert graph.doc.to_json() == text  # refusals change nothing
    for _ in range(4):
        graph.undo()
    assert graph.doc.to_json() == before and not graph.modified
    assert '"ui"' not in before.split('"edges"')[1]  # no empty ui written
    graph.redo()
    assert graph.groups[0].title == "Calibration"


def test_groups_and_comments_keep_the_file_layout(tmp_path):
    graph = EditableGraph(default_registry())
    graph.load(DEMO)
    graph.add_group("Masters", 300, 0, 800, 300)
    graph.add_comment("twilight flats", 10, 10)
    graph.save(tmp_path / "a.json")
    text = (tmp_path / "a.json").read_text()
    assert ('"groups": [{"title": "Masters", "x": 300, "y": 0, "w": 800, "h": 300, '
            '"color": "#8fb3e0"}]') in text
    again = EditableGraph(default_registry())
    again.load(tmp_path / "a.json")
    assert again.comments[0].text == "twilight flats"
    again.update_comment(0, x=20)
    again.save(tmp_path / "b.json")
    assert (tmp_path / "b.json").read_text() == text.replace('"x": 10,', '"x": 20,')
