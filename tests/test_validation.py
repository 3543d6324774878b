"""Validation reports every problem at once, each naming the node, port or parameter."""
from __future__ import annotations

import pytest
from starloom.graph_runtime.graph import GraphValidationError, plan
from starloom.graph_runtime.registry import default_registry
from starloom.serialization import GraphDocument


def _plan(nodes, edges=(), parameters=None, **kw):
    doc = GraphDocument.model_validate({"nodes": nodes, "edges": list(edges),
                                        "parameters": parameters or {}})
    return plan(doc, default_registry(), **kw)


def _problems(*args, **kw) -> list[str]:
    with pytest.raises(GraphValidationError) as e:
        _plan(*args, **kw)
    return [str(p) for p in e.value.problems]


def n(id, type, **params):
    return {"id": id, "type": type, "version": 1, "params": params}


def test_unknown_node_type():
    assert _problems([n("x", "no.such_node")]) == ["node 'x': unknown node type 'no.such_node'"]


def test_cycle_names_its_nodes():
    probs = _problems([n("a", "registration.star_align"), n("b", "registration.star_align"),
                       n("r", "registration.select_reference")],
                      [{"from": "a.frames", "to": "b.frames"}, {"from": "b.frames", "to": "a.frames"},
                       {"from": "a.frames", "to": "r.frames"},
                       {"from": "r.reference", "to": "a.reference"},
                       {"from": "r.reference", "to": "b.reference"}])
    assert probs == ["cycle among nodes: a, b, r"]


def test_missing_required_input():
    assert _problems([n("stack", "stacking.combine")]) == [
        "node 'stack', input port 'frames': required input is not connected"]


def test_port_type_mismatch():
    probs = _problems([n("sim", "simulate.session"), n("png", "io.save_png")],
                      [{"from": "sim.lights", "to": "png.image"}])
    assert probs == ["node 'png', input port 'image': type mismatch: sim.lights gives FrameSeries, "
                     "'image' takes Image"]


def test_invalid_param_names_node_and_param():
    probs = _problems([n("sim", "simulate.session", n_lights=-3, bayer="XYZW")])
    assert any(p.startswith("node 'sim', param 'n_lights': Input should be greater than or equal to 1")
               for p in probs)
    assert any(p.startswith("node 'sim', param 'bayer'") for p in probs)


def test_unknown_param_and_port_and_node_in_edge():
    probs = _problems([n("sim", "simulate.session", exposure=3)],
                      [{"from": "sim.nope", "to": "ghost.frames"}])
    assert "node 'sim', param 'exposure': Extra inputs are not permitted (got 3)" in probs
    assert any("node 'ghost'" in p and "does not exist" in p for p in probs)


def test_every_problem_reported_at_once():
    probs = _problems([n("x", "no.such_node"), n("stack", "stacking.combine", sigma_low=0),
                       n("png", "io.save_png")],
                      [{"from": "stack.image", "to": "png.image"}])
    assert len(probs) == 3
    assert {p.split(":")[0] for p in probs} == {
        "node 'x'", "node 'stack', param 'sigma_low'", "node 'stack', input port 'frames'"}


def test_unknown_graph_parameter_and_bad_binding():
    probs = _problems([n("sim", "simulate.session")],
                      parameters={"seed": {"type": "integer", "binds": ["sim.seeed"]}},
                      params={"lights": "x", "seed": 3})
    assert any("graph parameter 'lights': not defined by this graph (it has: seed)" in p for p in probs)
    assert "node 'sim', param 'seeed': no such parameter" in probs


def test_input_connected_twice():
    probs = _problems([n("sim", "simulate.session"), n("stack", "stacking.combine")],
                      [{"from": "sim.lights", "to": "stack.frames"},
                       {"from": "sim.darks", "to": "stack.frames"}])
    assert probs == ["node 'stack', input port 'frames': connected more than once"]


def test_set_overrides_param_and_is_validated():
    p = _plan([n("sim", "simulate.session")], sets={"sim.n_lights": "3"})
    assert p.nodes[0].params.n_lights == 3
    assert _problems([n("sim", "simulate.session")], sets={"sim.n_lights": "many"})[0].startswith(
        "node 'sim', param 'n_lights'")


def test_graph_parameter_values_are_typed():
    params = {"seed": {"type": "integer", "binds": ["sim.seed"]}}
    p = _plan([n("sim", "simulate.session")], parameters=params, params={"seed": "7"})
    assert p.nodes[0].params.seed == 7 and p.document.parameters["seed"].default == 7
    assert _problems([n("sim", "simulate.session")], parameters=params, params={"seed": "x"}) == [
        "graph parameter 'seed': expected an integer, got 'x'"]


def test_quantity_params_take_numbers_in_their_unit_or_convertible_strings():
    p = _plan([n("sim", "simulate.session")], sets={"sim.light_exposure": "2 min"})
    assert p.nodes[0].params.light_exposure == 120.0
    assert p.document.nodes[0].params["light_exposure"] == 120.0  # stored in the field's unit
    probs = _problems([n("sim", "simulate.session")], sets={"sim.light_exposure": "3 m"})
    assert probs[0].startswith("node 'sim', param 'light_exposure'") and "not convertible" in probs[0]
    schema = default_registry().get("simulate.session").Params.model_json_schema()
    assert schema["properties"]["light_exposure"]["unit"] == "s"
    assert schema["properties"]["light_exposure"]["exclusiveMinimum"] == 0
