"""The runtime: caching counted by node and frame executions, run directories, resuming."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from starloom.astro import fits as fitsio
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.registry import default_registry
from starloom.graph_runtime.run import Run
from starloom.nodes.registration import StarAlign
from starloom.astro.simulate import simulate_session
from starloom.serialization import GraphDocument


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory) -> Path:
    """A small simulated session written as FITS: bias/, lights/ (5 frames), and a spare light."""
    root = tmp_path_factory.mktemp("session")
    frames = simulate_session(seed=3, shape=(160, 240), n_bias=4, n_darks=1, n_flats=1,
                              n_lights=6, n_stars=60, dither=4.0)
    for kind, folder in (("bias", "bias"), ("light", "lights")):
        (root / folder).mkdir()
        for i, ccd in enumerate(frames[kind]):
            fitsio.write_frame(ccd, root / folder / f"{kind}_{i:03d}.fits", dtype="uint16")
    (root / "spare").mkdir()
    (root / "lights" / "light_005.fits").rename(root / "spare" / "light_005.fits")
    return root


def pipeline(session: Path, sigma_high: float = 3.0) -> GraphDocument:
    def n(id, type, **params):
        return {"id": id, "type": type, "version": 1, "params": params}
    return GraphDocument.model_validate({
        "parameters": {"lights": {"type": "path", "default": str(session / "lights"),
                                  "binds": ["load.path"]}},
        "nodes": [n("load", "io.load_frames"),
                  n("load_bias", "io.load_frames", path=str(session / "bias")),
                  n("bias", "calibration.master_bias"),
                  n("calibrate", "calibration.calibrate_lights"),
                  n("reference", "registration.select_reference", method="index", index=0),
                  n("register", "registration.star_align"),
                  n("stack", "stacking.combine", sigma_high=sigma_high),
                  n("save", "io.save_fits", filename="stack.fits")],
        "edges": [{"from": "load_bias.frames", "to": "bias.frames"},
                  {"from": "load.frames", "to": "calibrate.lights"},
                  {"from": "bias.master_bias", "to": "calibrate.bias"},
                  {"from": "calibrate.lights", "to": "reference.frames"},
                  {"from": "calibrate.lights", "to": "register.frames"},
                  {"from": "reference.reference", "to": "register.reference"},
                  {"from": "register.frames", "to": "stack.frames"},
                  {"from": "stack.image", "to": "save.image"}]})


def run(doc, run_dir, cache, params=None, **kw):
    return Run(run_dir, cache, **kw).execute(plan(doc, default_registry(), params=params))


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_rerun_is_served_from_cache_and_param_change_reruns_downstream(session_dir, tmp_path):
    cache = Cache(tmp_path / "cache")
    before = {p: _sha(p) for p in session_dir.rglob("*.fits")}
    first = run(pipeline(session_dir), tmp_path / "r1", cache)
    assert first.status == "ok", first.error
    assert first.executed == ["load", "load_bias", "bias", "calibrate", "reference", "register",
                              "stack", "save"]
    assert first.frames_computed == 10  # 5 calibrated + 5 registered

    # A new process would start with an empty memory LRU: use a fresh Cache on the same folder.
    second = run(pipeline(session_dir), tmp_path / "r2", Cache(tmp_path / "cache"))
    assert second.status == "ok"
    assert second.executed == [] and second.frames_computed == 0
    assert len(second.cached) == 8
    # Cached save nodes restore their files into the new run.
    assert _sha(tmp_path / "r2/outputs/stack.fits") == _sha(tmp_path / "r1/outputs/stack.fits")

    third = run(pipeline(session_dir, sigma_high=2.5), tmp_path / "r3", Cache(tmp_path / "cache"))
    assert third.executed == ["stack", "save"]
    assert third.frames_computed == 0

    assert before == {p: _sha(p) for p in session_dir.rglob("*.fits")}, "input files modified"


def test_one_added_frame_reruns_only_its_branch(session_dir, tmp_path):
    lights = tmp_path / "lights"
    lights.mkdir()
    for f in sorted((session_dir / "lights").glob("*.fits")):
        (lights / f.name).write_bytes(f.read_bytes())
    cache = Cache(tmp_path / "cache")
    r1 = run(pipeline(session_dir), tmp_path / "r1", cache, params={"lights": str(lights)})
    assert r1.status == "ok", r1.error
    (lights / "light_005.fits").write_bytes((session_dir / "spare/light_005.fits").read_bytes())
    r2 = run(pipeline(session_dir), tmp_path / "r2", cache, params={"lights": str(lights)})
    assert r2.status == "ok", r2.error
    # The reference is re-chosen from the longer series; it is the same frame, so its content
    # key is unchanged and the five registered frames stay cached.
    assert r2.executed == ["load", "calibrate", "reference", "register", "stack", "save"]
    assert r2.frames_computed == 2  # the new light, calibrated and registered
    assert r2.frames_cached == 10  # the five old lights, in both per-frame nodes
    events = [json.loads(x) for x in (tmp_path / "r2/logs/run_events.jsonl").read_text().splitlines()]
    computed = [(e["node"], e["frame"]) for e in events if e["event"] == "frame_computed"]
    assert computed == [("calibrate", "light_005"), ("register", "light_005")]
    stack = fitsio.read_frame(tmp_path / "r2/outputs/stack.fits")
    assert stack.header["NCOMBINE"] == 6


def test_run_directory_contents(session_dir, tmp_path):
    res = run(pipeline(session_dir), tmp_path / "run", Cache(tmp_path / "cache"))
    d = tmp_path / "run"
    assert res.status == "ok"
    status = json.loads((d / "status.json").read_text())
    assert status["status"] == "ok" and status["executed"][-1] == "save"
    graph = json.loads((d / "graph.json").read_text())
    assert graph["nodes"][0]["params"]["path"] == str(session_dir / "lights")  # as run
    env = json.loads((d / "environment.json").read_text())
    assert env["libraries"]["astropy"] and env["libraries"]["ccdproc"] and env["finished"]
    reg = json.loads((d / "artifacts/register.json").read_text())
    assert set(reg["frames"]) == {f"light_{i:03d}" for i in range(5)}
    assert reg["frames"]["light_000"]["dx"] == pytest.approx(0, abs=0.05)  # the reference
    kinds = [json.loads(x)["event"] for x in (d / "logs/run_events.jsonl").read_text().splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("node_finished") == 8 and kinds.count("frame_computed") == 10
    html = (d / "artifacts/report.html").read_text()
    assert "stack.fits" in html and "register" in html
    saved = fitsio.read_frame(d / "outputs/stack.fits")
    assert any("stacking.combine" in str(h) for h in saved.header["HISTORY"])


def test_interrupted_run_resumes_from_finished_frames(session_dir, tmp_path, monkeypatch):
    cache = Cache(tmp_path / "cache")
    calls = {"n": 0}
    original = StarAlign.run

    def flaky(self, ctx, params, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        return original(self, ctx, params, **kw)

    monkeypatch.setattr(StarAlign, "run", flaky)
    r1 = run(pipeline(session_dir), tmp_path / "r1", cache)
    assert r1.status == "failed" and r1.failed_node == "register"
    assert "node 'register', frame light_002: RuntimeError: power cut" in r1.error
    status = json.loads((tmp_path / "r1/status.json").read_text())
    assert status["status"] == "failed" and status["node"] == "register"
    assert not (tmp_path / "r1/outputs/stack.fits").exists()
    monkeypatch.setattr(StarAlign, "run", original)
    r2 = run(pipeline(session_dir), tmp_path / "r2", cache)
    assert r2.status == "ok"
    assert "calibrate" in r2.cached
    assert r2.frames_computed == 3  # frames 2, 3, 4 of register; 0 and 1 were finished
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_no_cache_and_force(session_dir, tmp_path):
    r = run(pipeline(session_dir), tmp_path / "r0", None)
    assert r.status == "ok" and r.cached == []
    assert not any(p.name.startswith(".cache-") for p in (tmp_path / "r0").iterdir())
    cache = Cache(tmp_path / "cache")
    run(pipeline(session_dir), tmp_path / "r1", cache)
    r2 = run(pipeline(session_dir), tmp_path / "r2", cache, force={"stack"})
    assert r2.executed == ["stack"]


def test_a_run_without_cache_reads_no_input_to_key_it_and_gives_the_same_result(
        session_dir, tmp_path, monkeypatch):
    """Without a cache, inputs are identified by path, size and time (nothing outlives the
    run); the result is the cached run's, bit for bit."""
    from astropy.io import fits

    from starloom.graph_runtime import cache as cache_mod
    cached = run(pipeline(session_dir), tmp_path / "cached", Cache(tmp_path / "cache"))
    hashed = []
    real = cache_mod.file_sha256
    monkeypatch.setattr(cache_mod, "file_sha256", lambda p: hashed.append(p) or real(p))
    bare = run(pipeline(session_dir), tmp_path / "bare", None)
    assert cached.status == bare.status == "ok"
    assert not [p for p in hashed if str(session_dir) in str(p)]  # no input file was hashed
    a, b = (fits.getdata(tmp_path / r / "outputs/stack.fits") for r in ("cached", "bare"))
    assert np.array_equal(a, b, equal_nan=True)


def test_corrupt_frame_names_the_file(session_dir, tmp_path):
    lights = tmp_path / "lights"
    lights.mkdir()
    src = sorted((session_dir / "lights").glob("*.fits"))[0]
    (lights / "good.fits").write_bytes(src.read_bytes())
    (lights / "broken.fits").write_bytes(src.read_bytes()[:5000])
    r = run(pipeline(session_dir), tmp_path / "r", Cache(tmp_path / "cache"),
            params={"lights": str(lights)})
    assert r.status == "failed"
    assert "broken.fits" in r.error


def test_cache_entries_are_complete_and_inspectable(session_dir, tmp_path):
    cache = Cache(tmp_path / "cache")
    run(pipeline(session_dir), tmp_path / "r1", cache)
    info = cache.info()
    assert info["entries"] >= 8 + 10
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "cache/objects").rglob("manifest.json")]
    stack = next(m for m in manifests if m["node"] == "stack" and "frame" not in m)
    pre = stack["pre_image"]
    assert pre["type"] == "stacking.combine" and pre["params"]["sigma_high"] == 3.0
    assert len(pre["inputs"]["frames"]["series"]) == 5
    assert stack["libraries"]["numpy"] == np.__version__
    assert cache.clear() == info["entries"] and cache.info()["entries"] == 0


def test_per_frame_node_can_reject_frames(session_dir, tmp_path, monkeypatch):
    from starloom.astro.errors import FrameRejected
    original = StarAlign.run

    def picky(self, ctx, params, **kw):
        ctx.artifact_path(f"{ctx.frame}.txt").write_text(ctx.frame)  # a per-frame artifact
        if ctx.frame == "light_003":
            raise FrameRejected("too few stars")
        return original(self, ctx, params, **kw)

    monkeypatch.setattr(StarAlign, "run", picky)
    cache = Cache(tmp_path / "cache")
    r1 = run(pipeline(session_dir), tmp_path / "r1", cache)
    assert r1.status == "ok", r1.error
    assert fitsio.read_frame(tmp_path / "r1/outputs/stack.fits").header["NCOMBINE"] == 4
    reg = json.loads((tmp_path / "r1/artifacts/register.json").read_text())
    assert reg["frames"]["light_003"]["rejected"] == "too few stars"
    assert "rejected light_003: too few stars" in (tmp_path / "r1/artifacts/report.html").read_text()
    r2 = run(pipeline(session_dir), tmp_path / "r2", Cache(tmp_path / "cache"))
    assert r2.executed == [] and r2.frames_computed == 0  # the rejection is cached too
    # Per-frame artifact files come back from the cache, for a cached node ...
    assert (tmp_path / "r2/artifacts/register/light_003.txt").read_text() == "light_003"
    # ... and for the cached frames of a node that re-runs because a light was added.
    lights = tmp_path / "lights"
    lights.mkdir()
    for f in list((session_dir / "lights").glob("*.fits")) + [session_dir / "spare/light_005.fits"]:
        (lights / f.name).write_bytes(f.read_bytes())
    r3 = run(pipeline(session_dir), tmp_path / "r3", Cache(tmp_path / "cache"),
             params={"lights": str(lights)})
    assert "register" in r3.executed and r3.frames_computed == 2
    assert sorted(p.name for p in (tmp_path / "r3/artifacts/register").iterdir()) == [
        f"light_{i:03d}.txt" for i in range(6)]


def test_load_frames_groups_by_header_keywords(tmp_path):
    frames = simulate_session(seed=1, shape=(80, 100), n_bias=1, n_darks=2, n_flats=1, n_lights=1,
                              n_stars=5, dark_exposure=30.0)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, ccd in enumerate(frames["dark"] + frames["light"] + frames["bias"]):
        if i == 1:
            ccd.header["EXPTIME"] = 10.0
        fitsio.write_frame(ccd, folder / f"f{i}.fits")
    doc = GraphDocument.model_validate({"nodes": [{"id": "load", "type": "io.load_frames",
                                                   "version": 1, "params": {
        "path": str(folder), "group_by": ["exptime"], "where": {"IMAGETYP": "*"}}}]})
    res = run(doc, tmp_path / "r", Cache(tmp_path / "cache"))
    assert res.status == "ok", res.error
    series = res.outputs["load"]["frames"]
    assert [r.meta["EXPTIME"] for r in series.refs] == sorted(r.meta["EXPTIME"] for r in series.refs)
    groups = json.loads((tmp_path / "r/artifacts/load.json").read_text())["groups"]
    assert [(g["EXPTIME"], g["n_frames"]) for g in groups] == [
        (frames["bias"][0].header["EXPTIME"], 1), (10.0, 1), (30.0, 1), (60.0, 1)]
    assert list(res.outputs["load"]["metadata"]["group"]) == [0, 1, 2, 3]
    bad = doc.model_copy(deep=True)
    bad.nodes[0].params["group_by"] = ["NOSUCHKEY"]
    from starloom.graph_runtime.graph import GraphValidationError
    with pytest.raises(GraphValidationError, match="group_by.*NOSUCHKEY"):
        plan(bad, default_registry())
