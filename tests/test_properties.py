"""Property tests (hypothesis): whatever a graph file, a migration or a parameter value holds,
reading and checking it ends in a result or in Starloom's own errors (GraphFileError,
GraphValidationError, pydantic's ValidationError), never in a crash.

Example counts are bounded (``max_examples``) so the suite stays fast in CI.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from starloom.graph_runtime.graph import GraphValidationError, Plan, plan
from starloom.graph_runtime.registry import default_registry
from starloom.serialization import GraphDocument, GraphFileError, load_graph, migrate, parse_graph
from starloom.serialization import graph as graph_module

REGISTRY = default_registry()
TYPES = sorted(cls.type_id for cls in REGISTRY)
SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
EMPTY_DIR = Path(tempfile.mkdtemp(prefix="starloom-prop-"))  # where relative paths resolve

# Text without path separators or '~', so a random path value never globs the whole disk.
TEXT = st.text(st.characters(blacklist_characters="/\\~", blacklist_categories=("Cs",)),
               max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | TEXT
           | st.sampled_from(["", "inf", "-inf", "nan", "1e999", "2 min", "3 kg", "*", "."]))
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(TEXT, kids, max_size=4), max_leaves=20)


@st.composite
def graph_documents(draw) -> dict:
    """Documents shaped like graph files, with real and unknown node types, fields and ports."""
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "load", "1bad", "x.y"]) | TEXT,
                        max_size=4))
    nodes = []
    for nid in ids:
        type_id = draw(st.sampled_from(TYPES) | TEXT)
        fields = list(REGISTRY.get(type_id).Params.model_fields) if type_id in TYPES else []
        names = st.sampled_from(fields) | TEXT if fields else TEXT
        node = {"id": nid, "type": type_id, "version": draw(st.integers(-1, 3)),
                "params": draw(st.dictionaries(names, JSON, max_size=4))}
        nodes.append(draw(st.sampled_from([node, {**node, "ui": draw(JSON)}])))
    ports = st.sampled_from(["frames", "lights", "image", "reference", "bias", "nope"])
    ends = st.builds(lambda n, p: f"{n}.{p}", st.sampled_from(ids or ["a"]), ports) | TEXT
    edges = draw(st.lists(st.fixed_dictionaries({"from": ends, "to": ends}), max_size=4))
    binds = st.lists(st.builds(lambda n, f: f"{n}.{f}", st.sampled_from(ids or ["a"]),
                               st.sampled_from(["path", "n_lights", "seed", "method"]) | TEXT),
                     max_size=3)
    parameters = draw(st.dictionaries(TEXT, st.fixed_dictionaries(
        {"type": st.sampled_from(["path", "string", "number", "integer", "boolean", "x"]),
         "default": JSON, "binds": binds}), max_size=2))
    doc = {"format": draw(st.sampled_from(["starloom.graph", "other"])),
           "schema_version": draw(st.sampled_from([1, 1, 1, 0, 2, "1", None, True])),
           "parameters": parameters, "nodes": nodes, "edges": edges}
    return draw(st.sampled_from([doc, {**doc, draw(TEXT): draw(JSON)}]))


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_parses_or_is_a_graph_file_error(text):
    try:
        assert isinstance(parse_graph(text, "t.json"), GraphDocument)
    except GraphFileError as e:
        assert str(e).startswith("t.json: ") and "\n" not in str(e)


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=200))
def test_any_bytes_load_or_are_a_graph_file_error(data):
    path = EMPTY_DIR / "bytes.json"
    path.write_bytes(data)
    try:
        load_graph(path)
    except GraphFileError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)


@SETTINGS
@given(JSON)
def test_any_json_value_migrates_or_is_a_graph_file_error(raw):
    try:
        out = migrate(raw, "m.json")
    except GraphFileError as e:
        assert str(e).startswith("m.json: ")
    else:
        assert out["schema_version"] == graph_module.SCHEMA_VERSION


@SETTINGS
@given(graph_documents())
def test_a_migration_that_meets_a_malformed_document_is_a_graph_file_error(monkeypatch, doc):
    """A future schema-1 -> 2 migration that assumes the document is well formed: whatever it
    raises on a malformed one is reported as a GraphFileError naming the file."""
    def to_v2(raw):
        return {**raw, "nodes": [{**n, "label": n["id"].upper()} for n in raw["nodes"]]}
    monkeypatch.setattr(graph_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(graph_module, "_MIGRATIONS", {1: to_v2})
    try:
        out = migrate(json.loads(json.dumps(doc)), "old.json")
    except GraphFileError as e:
        assert str(e).startswith("old.json: ")
    else:
        assert out["schema_version"] == 2


@SETTINGS
@given(graph_documents(), st.dictionaries(TEXT, TEXT, max_size=2),
       st.dictionaries(st.sampled_from(["a.path", "b.n_lights", "load.method", "c.seed"]) | TEXT,
                       TEXT, max_size=2))
def test_any_graph_document_plans_or_lists_its_problems(doc, params, sets):
    try:
        parsed = parse_graph(json.dumps(doc), "g.json")
    except GraphFileError:
        return
    try:
        result = plan(parsed, REGISTRY, base_dir=EMPTY_DIR, params=params, sets=sets,
                      cli_dir=EMPTY_DIR, source="g.json", check_inputs=True)
    except GraphValidationError as e:
        assert e.problems and str(e).startswith("g.json: ")
    else:
        assert isinstance(result, Plan)


@SETTINGS
@given(st.data())
def test_any_params_validate_or_are_a_validation_error(data):
    cls = REGISTRY.get(data.draw(st.sampled_from(TYPES)))
    names = list(cls.Params.model_fields)
    keys = st.sampled_from(names) | TEXT if names else TEXT  # some nodes have no parameter
    values = data.draw(st.dictionaries(keys, JSON, max_size=5))
    try:
        cls.Params.model_validate(values)
    except ValidationError:
        pass


@pytest.mark.parametrize("type_id", TYPES)
def test_params_accept_their_own_defaults(type_id):
    """The property above is not vacuous: every model has a valid value."""
    cls = REGISTRY.get(type_id)
    params = cls.Params()
    assert cls.Params.model_validate(params.model_dump(mode="json")) == params
