"""The seam between runtime and cache: freeing outputs, node_outputs, provenance by the runtime,
knob parameters outside the key, the per-frame ``frame`` argument, the Cache interface."""
from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest
from astropy.nddata import CCDData
from pydantic import Field

from starloom.astro.frames import FrameSeries
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.events import Event
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.node import Knob, Node, Params, Port, key_params
from starloom.graph_runtime.registry import Registry
from starloom.graph_runtime.run import Run
from starloom.nodes import register_all
from starloom.serialization import GraphDocument


# --- test node types ---------------------------------------------------------------------------
class Source(Node):
    """Three small in-memory frames; counts its runs."""

    type_id = "test.source"
    category = "test"
    runs = 0

    class Params(Params):
        level: float = Field(1.0, description="Pixel value of the first frame")
        chunk: int = Knob(64, ge=1, description="Rows at once (does not change the result)")

    outputs = {"frames": Port("FrameSeries"), "first": Port("Image")}

    def run(self, ctx, params):
        type(self).runs += 1
        frames = [CCDData(np.full((8, 8), params.level + i, np.float32), unit="adu")
                  for i in range(3)]
        ctx.history("made up", image=frames[0])
        return {"frames": FrameSeries.from_frames(frames, ["a", "b", "c"]), "first": frames[0]}


class AddOffset(Node):
    """Per frame: adds ``offset``; records the keyword arguments it was called with."""

    type_id = "test.add_offset"
    category = "test"
    per_frame = "frames"
    calls: list[set] = []

    class Params(Params):
        offset: float = 10.0

    inputs = {"frames": Port("FrameSeries"), "first": Port("Image", optional=True)}
    outputs = {"frames": Port("FrameSeries")}

    def run(self, ctx, params, frame, **others):
        type(self).calls.append({"frame": type(frame).__name__, **{k: None for k in others}})
        ctx.history(f"offset {ctx.frame}")
        return {"frames": CCDData(frame.data + params.offset, unit=frame.unit,
                                  meta=frame.header.copy())}


class PassThrough(Node):
    """Returns its input image unchanged (the runtime must not alter the input in place)."""

    type_id = "test.pass"
    category = "test"
    inputs = {"image": Port("Image")}
    outputs = {"image": Port("Image")}
    seen: CCDData | None = None

    def run(self, ctx, params, image):
        type(self).seen = image
        return {"image": image}


@pytest.fixture
def registry():
    reg = Registry()
    register_all(reg)
    for cls in (Source, AddOffset, PassThrough):
        reg.add(cls)
    Source.runs = 0
    AddOffset.calls = []
    return reg


def _doc(nodes, edges, params=None) -> GraphDocument:
    return GraphDocument.model_validate({
        "nodes": [{"id": i, "type": t, "version": 1, "params": p} for i, t, p in nodes],
        "edges": [{"from": a, "to": b} for a, b in edges], "parameters": params or {}})


def _test_graph(level=1.0, chunk=64):
    return _doc([("src", "test.source", {"level": level, "chunk": chunk}),
                 ("add", "test.add_offset", {}),
                 ("pass", "test.pass", {}),
                 ("stack", "stacking.combine", {"method": "average", "rejection": "none",
                                                "normalization": "none", "weights": "none"})],
                [("src.frames", "add.frames"), ("src.first", "add.first"),
                 ("src.first", "pass.image"), ("add.frames", "stack.frames")])


def _pipeline():
    """Simulated session -> master bias -> calibrate -> reference -> register -> stack."""
    return _doc([("sim", "simulate.session", {"width": 240, "height": 160, "n_bias": 3,
                                              "n_darks": 1, "n_flats": 1, "n_lights": 4}),
                 ("bias", "calibration.master_bias", {"method": "median"}),
                 ("calibrate", "calibration.calibrate_lights", {}),
                 ("reference", "registration.select_reference", {"method": "index"}),
                 ("register", "registration.star_align", {}),
                 ("stack", "stacking.combine", {})],
                [("sim.bias", "bias.frames"), ("sim.lights", "calibrate.lights"),
                 ("bias.master_bias", "calibrate.bias"), ("calibrate.lights", "reference.frames"),
                 ("calibrate.lights", "register.frames"), ("reference.reference", "register.reference"),
                 ("register.frames", "stack.frames")])


def _history(ccd: CCDData) -> list[str]:
    return [str(h) for h in ccd.header.get("HISTORY", [])]


# --- freeing outputs, node_outputs -------------------------------------------------------------
def test_output_is_freed_after_its_last_consumer_and_node_outputs_loads_it_again(tmp_path):
    registry = Registry()
    register_all(registry)
    run = Run(tmp_path / "r", Cache(tmp_path / "cache"))
    seen = {}

    def listener(ev):
        if ev["event"] == Event.NODE_FINISHED and ev["node"] == "bias":
            bias = run.node_outputs("bias")["master_bias"]
            seen["ref"], seen["data"] = weakref.ref(bias), bias.data.copy()
            del bias
        if ev["event"] == Event.NODE_STARTED and ev["node"] in ("calibrate", "reference"):
            gc.collect()
            seen[ev["node"]] = seen["ref"]() is not None

    run.listeners.append(listener)
    res = run.execute(plan(_pipeline(), registry))
    assert res.status == "ok", res.error
    assert seen["calibrate"] is True  # its one consumer has not run yet
    assert seen["reference"] is False  # freed once 'calibrate' has run
    # A freed output comes back from the cache, equal to what the node computed.
    again = run.node_outputs("bias")["master_bias"]
    assert again is not seen["ref"]() and np.array_equal(again.data, seen["data"])
    assert np.array_equal(res.outputs["bias"]["master_bias"].data, seen["data"])
    assert set(res.outputs) == {"sim", "bias", "calibrate", "reference", "register", "stack"}
    assert res.outputs["stack"]["image"].shape == (160, 240)
    with pytest.raises(KeyError):
        run.node_outputs("nosuchnode")


def test_node_outputs_in_listener_for_cached_nodes_and_without_cache(tmp_path, registry):
    cache = Cache(tmp_path / "cache")
    got = {}

    def listener(run):
        def fn(ev):
            if ev["event"] in (Event.NODE_FINISHED, Event.NODE_CACHED):
                got[(ev["event"], ev["node"])] = run.node_outputs(ev["node"])
        return fn

    for name in ("r1", "r2"):
        run = Run(tmp_path / name, cache)
        run.listeners.append(listener(run))
        assert run.execute(plan(_test_graph(), registry)).status == "ok"
    first = got[(Event.NODE_FINISHED, "stack")]["image"]
    cached = got[(Event.NODE_CACHED, "stack")]["image"]
    assert np.array_equal(first.data, cached.data)
    assert np.allclose(first.data, 12.0)  # mean of 1, 2, 3 plus the offset 10
    assert [r.name for r in got[(Event.NODE_CACHED, "add")]["frames"].refs] == ["a", "b", "c"]
    # Without a cache, outputs are gone when the run (and its throwaway store) ends.
    run = Run(tmp_path / "r3", None)
    res = run.execute(plan(_test_graph(), registry))
    assert res.status == "ok"
    with pytest.raises(KeyError):
        res.outputs["stack"]


# --- provenance --------------------------------------------------------------------------------
def test_runtime_writes_provenance_into_every_image_output(tmp_path):
    registry = Registry()
    register_all(registry)
    res = Run(tmp_path / "r", Cache(tmp_path / "cache")).execute(plan(_pipeline(), registry))
    assert res.status == "ok", res.error
    p = plan(_pipeline(), registry)
    n_images = 0
    for pn in p.nodes:
        head = f"starloom {pn.cls.type_id} v{pn.cls.version}"
        for port, value in res.outputs[pn.spec.id].items():
            images = [value] if isinstance(value, CCDData) else list(value) \
                if isinstance(value, FrameSeries) else []
            for ccd in images:
                assert head in _history(ccd), (pn.spec.id, port)
                n_images += 1
    # simulated bias, darks, flats, lights; master bias; calibrated; reference; aligned; stack
    # and its rejection map
    assert n_images == (3 + 1 + 1 + 4) + 1 + 4 + 1 + 4 + 1 + 1
    # The exact text of today: type and version, non-default params, the node's note.
    bias = _history(res.outputs["bias"]["master_bias"])
    assert bias[-3:] == ["starloom calibration.master_bias v1", "  params {'method': 'median'}",
                         "  combined 3 bias frames"]
    stack = _history(res.outputs["stack"]["image"])
    assert stack[-2:] == ["starloom stacking.combine v1", "  stacked 4 frames"]
    aligned = _history(res.outputs["register"]["frames"][0])
    assert aligned[-2] == "starloom registration.star_align v1"
    assert aligned[-1].startswith("  aligned to ")


def test_provenance_notes_per_image_and_inputs_not_altered(tmp_path, registry):
    res = Run(tmp_path / "r", Cache(tmp_path / "cache")).execute(
        plan(_test_graph(level=2.0, chunk=7), registry))
    assert res.status == "ok", res.error
    out = res.outputs
    # The note for one image goes to that image only; knobs stay out of the params line.
    assert _history(out["src"]["first"]) == [
        "starloom test.source v1", "  params {'level': 2.0}", "  made up"]
    assert _history(out["src"]["frames"][1]) == ["starloom test.source v1", "  params {'level': 2.0}"]
    # Per-frame outputs get the node's lines after those of their input frame.
    assert _history(out["add"]["frames"][2])[-2:] == ["starloom test.add_offset v1", "  offset c"]
    # A node passing its input through stamps a copy, never the upstream value.
    assert _history(out["pass"]["image"])[-1] == "starloom test.pass v1"
    assert _history(PassThrough.seen)[-1] == "  made up"


# --- knob parameters ---------------------------------------------------------------------------
def test_knob_param_stays_out_of_the_key_and_a_normal_param_does_not(tmp_path, registry):
    cache = Cache(tmp_path / "cache")

    def run(name, **kw):
        res = Run(tmp_path / name, cache).execute(plan(_test_graph(**kw), registry))
        assert res.status == "ok", res.error
        return res

    first = run("r1")
    assert first.executed == ["src", "add", "pass", "stack"] and Source.runs == 1
    knob = run("r2", chunk=5)
    assert knob.executed == [] and "src" in knob.cached and Source.runs == 1
    normal = run("r3", level=4.0)
    assert "src" in normal.executed and Source.runs == 2
    assert np.allclose(normal.outputs["stack"]["image"].data, 15.0)
    assert key_params(Source.Params(level=4.0, chunk=5)) == {"level": 4.0}
    manifests = [json.loads(m.read_text()) for m in (tmp_path / "cache").rglob("manifest.json")]
    src = [m for m in manifests if m["node"] == "src"]
    assert len(src) == 2 and all("chunk" not in m["pre_image"]["params"] for m in src)


# --- per-frame contract ------------------------------------------------------------------------
def test_per_frame_node_gets_its_frame_as_frame(tmp_path, registry):
    res = Run(tmp_path / "r", Cache(tmp_path / "cache")).execute(plan(_test_graph(), registry))
    assert res.status == "ok", res.error
    assert AddOffset.calls == [{"frame": "CCDData", "first": None}] * 3  # never 'frames'
    assert [float(f.data[0, 0]) for f in res.outputs["add"]["frames"]] == [11.0, 12.0, 13.0]


# --- the Cache interface -----------------------------------------------------------------------
def test_cache_interface_frames_rejections_files_and_scratch(tmp_path):
    cache = Cache(tmp_path / "cache")
    assert cache.lookup("ab" * 32) is None
    with pytest.raises(KeyError):
        cache.get("ab" * 32)
    run_dir = tmp_path / "run"
    (run_dir / "artifacts").mkdir(parents=True)
    (run_dir / "artifacts" / "x.txt").write_text("x")
    frame = CCDData(np.arange(12, dtype=np.float32).reshape(3, 4), unit="adu",
                    meta={"EXPTIME": 5.0})
    refs = cache.put_frame("cd" * 32, {"out": frame}, {"node": "n", "diagnostics": {"d": 1}},
                           {"artifacts/x.txt": run_dir / "artifacts/x.txt"}, name="f1",
                           meta={"path": "/somewhere/f1.fits"})
    entry = cache.lookup("cd" * 32)
    assert entry.frames == refs and entry.rejected is None and entry.diagnostics == {"d": 1}
    assert refs["out"].name == "f1" and refs["out"].meta["path"] == "/somewhere/f1.fits"
    assert np.array_equal(refs["out"].read().data, frame.data)
    assert refs["out"].meta["EXPTIME"] == 5.0
    other = tmp_path / "run2"
    assert entry.restore_files(other) == {"artifacts/x.txt": other / "artifacts/x.txt"}
    assert (other / "artifacts/x.txt").read_text() == "x"
    cache.put_rejected("ef" * 32, "too few stars", {"node": "n"})
    assert cache.lookup("ef" * 32).rejected == "too few stars"
    assert cache.lookup("ef" * 32).frames is None
    scratch = cache.scratch_dir("astrometry")
    assert scratch == tmp_path / "cache" / "astrometry" and scratch.is_dir()
    for bad in ("objects", "../x", "a/b", ""):
        with pytest.raises(ValueError):
            cache.scratch_dir(bad)
