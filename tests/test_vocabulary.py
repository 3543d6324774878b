"""One idea, one name: renamed parameters of older node versions are upgraded on load, and no
node type uses a retired name."""
from __future__ import annotations

import pytest

from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.registry import default_registry
from starloom.serialization import GraphDocument

RETIRED = {"mean": "average", "sip_order": "sip_degree", "normalize": "normalization",
           "combine": "method", "sigma": "sigma_low/sigma_high"}


def _upgraded(type_id, version, params) -> dict:
    cls = default_registry().get(type_id)
    new = cls.upgrade(dict(params), version)
    return cls.Params.model_validate(new).model_dump()


def test_master_flat_v1_normalize_mean_becomes_normalization_average():
    assert _upgraded("calibration.master_flat", 1, {"normalize": "mean"})["normalization"] == "average"
    assert _upgraded("calibration.master_flat", 1, {"normalize": "median",
                                                    "sigma_low": 2.5})["sigma_low"] == 2.5


def test_plate_solve_v1_sip_order_becomes_sip_degree():
    assert _upgraded("astrometry.plate_solve", 1, {"sip_order": 3})["sip_degree"] == 3


def test_coadd_v1_params_become_the_stacking_names():
    p = _upgraded("astrometry.reproject_coadd", 1,
                  {"method": "exact", "combine": "mean", "rejection": "sigma_clip", "sigma": 2.5})
    assert (p["reprojection"], p["method"], p["sigma_low"], p["sigma_high"]) == (
        "exact", "average", 2.5, 2.5)


def test_an_old_graph_file_plans_with_upgraded_params():
    doc = GraphDocument.model_validate({
        "nodes": [{"id": "sim", "type": "simulate.session", "version": 1, "params": {}},
                  {"id": "flat", "type": "calibration.master_flat", "version": 1,
                   "params": {"normalize": "mean"}}],
        "edges": [{"from": "sim.flats", "to": "flat.frames"}]})
    node = plan(doc, default_registry()).node("flat")
    assert node.params.normalization == "average"
    assert node.spec.version == default_registry().get("calibration.master_flat").version


@pytest.mark.parametrize("cls", list(default_registry()), ids=lambda c: c.type_id)
def test_no_node_type_uses_a_retired_name(cls):
    schema = cls.Params.model_json_schema()
    for name, field in schema.get("properties", {}).items():
        assert name not in ("sip_order", "normalize", "combine", "sigma", "reject"), (
            f"{cls.type_id}.{name}: say {RETIRED.get(name, name)}")
        assert "mean" not in field.get("enum", []), f"{cls.type_id}.{name}: say 'average'"
