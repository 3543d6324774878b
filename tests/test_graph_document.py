"""The graph file: round trip, schema, migration, node-version upgrades, path resolution."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from starloom.cli.main import main
from starloom.graph_runtime.graph import GraphValidationError, plan
from starloom.graph_runtime.node import Node, Params, Port
from starloom.graph_runtime.registry import Registry, default_registry
from starloom.serialization import (
    SCHEMA_FILE,
    GraphDocument,
    GraphFileError,
    json_schema,
    load_graph,
    parse_graph,
    save_graph,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "example_graphs"


@pytest.mark.parametrize("name", ["demo.json", "calibration_masters.json", "register_and_stack.json"])
def test_example_graphs_round_trip_unchanged(name, tmp_path):
    doc = load_graph(EXAMPLES / name)
    out = save_graph(doc, tmp_path / name)
    again = load_graph(out)
    assert again == doc
    assert out.read_text() == again.to_json()  # saving is a fixed point
    raw = json.loads((EXAMPLES / name).read_text())
    assert [n["id"] for n in raw["nodes"]] == [n.id for n in again.nodes]
    assert [(e["from"], e["to"]) for e in raw["edges"]] == [(e.from_, e.to) for e in again.edges]


@pytest.mark.parametrize("name", ["demo.json", "calibration_masters.json", "register_and_stack.json"])
def test_example_graphs_validate(name):
    p = plan(load_graph(EXAMPLES / name), default_registry(), base_dir=EXAMPLES)
    assert len(p.nodes) == len(load_graph(EXAMPLES / name).nodes)


def test_schema_file_in_repo_matches_generated(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json_schema()
    assert json.loads(SCHEMA_FILE.read_text()) == printed, (
        f"{SCHEMA_FILE.name} is stale: regenerate with `starloom schema -o {SCHEMA_FILE}`")


def test_schema_accepts_example_and_describes_edges():
    schema = json_schema()
    assert schema["properties"]["format"]["const"] == "starloom.graph"
    assert "from" in schema["$defs"]["EdgeSpec"]["properties"]


def test_newer_schema_version_is_a_clear_error(tmp_path):
    raw = json.loads((EXAMPLES / "demo.json").read_text())
    raw["schema_version"] = 99
    f = tmp_path / "future.json"
    f.write_text(json.dumps(raw))
    with pytest.raises(GraphFileError, match=r"future\.json.*schema version 99.*up to version 1"):
        load_graph(f)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ('{"format": "something.else"}', "not a Starloom graph"),
    ('{"format": "starloom.graph", "schema_version": 1, "nodes": [{"id": "a"}]}', r"nodes\.0\.type"),
    ('{"format": "starloom.graph", "schema_version": 1, "edges": [{"from": "a", "to": "b.x"}]}',
     r"edges\.0\.from"),
])
def test_malformed_documents_name_the_key(text, match):
    with pytest.raises(GraphFileError, match=match):
        parse_graph(text, "bad.json")


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(GraphFileError, match="nothere.json"):
        load_graph(tmp_path / "nothere.json")


def test_loading_is_data_only():
    # A document is JSON validated by pydantic: values that look like code stay strings.
    doc = parse_graph(json.dumps({
        "format": "starloom.graph", "schema_version": 1,
        "nodes": [{"id": "a", "type": "io.save_fits", "version": 1,
                   "params": {"filename": "__import__('os').system('false')"}}]}))
    assert doc.nodes[0].params["filename"].startswith("__import__")


class _V2(Node):
    """A node whose params were renamed in version 2 ('sigma' became 'sigma_high')."""

    type_id = "test.versioned"
    version = 2
    title = "versioned"
    category = "test"

    class Params(Params):
        sigma_high: float = 3.0

    outputs = {"value": Port("Number")}

    @classmethod
    def upgrade(cls, params, from_version):
        if from_version == 1:
            params = dict(params)
            params["sigma_high"] = params.pop("sigma")
            return params
        return super().upgrade(params, from_version)

    def run(self, ctx, params):
        return {"value": params.sigma_high}


def _doc(version, params):
    return GraphDocument.model_validate({"nodes": [
        {"id": "n", "type": "test.versioned", "version": version, "params": params}]})


def test_node_params_upgraded_from_older_version():
    reg = Registry()
    reg.add(_V2)
    p = plan(_doc(1, {"sigma": 2.5}), reg)
    assert p.nodes[0].params.sigma_high == 2.5
    assert p.document.nodes[0].version == 2
    assert p.document.nodes[0].params == {"sigma_high": 2.5}


def test_node_version_newer_than_installed_is_an_error():
    reg = Registry()
    reg.add(_V2)
    with pytest.raises(GraphValidationError, match=r"node 'n'.*version 3 is newer than the installed version 2"):
        plan(_doc(3, {}), reg)


def test_relative_paths_resolve_against_graph_folder_and_cli_against_cwd(tmp_path, monkeypatch):
    gdir = tmp_path / "project"
    gdir.mkdir()
    doc = load_graph(EXAMPLES / "register_and_stack.json")
    save_graph(doc, gdir / "g.json")
    p = plan(load_graph(gdir / "g.json"), default_registry(), base_dir=gdir)
    assert p.node("load").params.path == str(gdir / "lights")
    monkeypatch.chdir(tmp_path)
    p = plan(load_graph(gdir / "g.json"), default_registry(), base_dir=gdir,
             params={"lights": "elsewhere/lights,other"}, cli_dir=tmp_path)
    assert p.node("load").params.path == f"{tmp_path / 'elsewhere/lights'},{tmp_path / 'other'}"
