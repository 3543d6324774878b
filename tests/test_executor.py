"""Per-frame work in worker processes: the same bits as in one process, what a node reports in a
worker reaches the run, failures name the frame, a cancelled run stops handing out frames."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from starloom.astro import fits as fitsio
from starloom.astro.frames import WRITE_TIME_CARDS
from starloom.astro.simulate import simulate_session
from starloom.cli.main import main
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.executor import LocalExecutor, ProcessExecutor, make_executor
from starloom.graph_runtime.frame_task import worker_count
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.node import Node, Params, Port
from starloom.graph_runtime.registry import Registry
from starloom.graph_runtime.run import Run
from starloom.nodes import register_all
from starloom.astro.errors import StarloomError
from starloom.serialization import GraphDocument


class Where(Node):
    """A per-frame node recording the process that computed each frame; fails on 'bad'."""

    type_id = "test.where"
    title = "Where"
    category = "test"
    per_frame = "frames"

    class Params(Params):
        fail_on: str = ""

    inputs = {"frames": Port("FrameSeries")}
    outputs = {"frames": Port("FrameSeries")}

    def run(self, ctx, params, frame):
        if ctx.frame == params.fail_on:
            raise ValueError(f"cannot process {ctx.frame}")
        ctx.diagnostics["pid"] = os.getpid()
        ctx.warn(f"looked at {ctx.frame}")
        ctx.history(f"seen by test.where ({ctx.frame})")
        ctx.artifact_path(f"{ctx.frame}.txt").write_text(ctx.frame)
        frame.data = frame.data * 2
        return {"frames": frame}


def registry() -> Registry:
    reg = Registry()
    register_all(reg)
    reg.add(Where)
    return reg


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    return write_session(tmp_path_factory.mktemp("session"))


def write_session(root: Path) -> Path:
    """5 simulated light frames (lights/) and 3 bias frames (bias/), 100x120, as uint16 FITS."""
    frames = simulate_session(seed=5, shape=(100, 120), n_bias=3, n_darks=1, n_flats=1,
                              n_lights=5, n_stars=40, dither=3.0)
    for kind, folder in (("bias", "bias"), ("light", "lights")):
        (root / folder).mkdir()
        for i, ccd in enumerate(frames[kind]):
            fitsio.write_frame(ccd, root / folder / f"{kind}_{i:03d}.fits", dtype="uint16")
    return root


def n(id, type, **params):
    return {"id": id, "type": type, "version": 1, "params": params}


def stack_graph(session: Path) -> GraphDocument:
    """load -> master bias -> calibrate (per frame) -> register (per frame)."""
    return GraphDocument.model_validate({
        "nodes": [n("load", "io.load_frames", path=str(session / "lights")),
                  n("load_bias", "io.load_frames", path=str(session / "bias")),
                  n("bias", "calibration.master_bias"),
                  n("calibrate", "calibration.calibrate_lights"),
                  n("reference", "registration.select_reference", method="index", index=0),
                  n("register", "registration.star_align")],
        "edges": [{"from": "load_bias.frames", "to": "bias.frames"},
                  {"from": "load.frames", "to": "calibrate.lights"},
                  {"from": "bias.master_bias", "to": "calibrate.bias"},
                  {"from": "calibrate.lights", "to": "reference.frames"},
                  {"from": "calibrate.lights", "to": "register.frames"},
                  {"from": "reference.reference", "to": "register.reference"}]})


def where_graph(session: Path, fail_on: str = "") -> GraphDocument:
    return GraphDocument.model_validate({
        "nodes": [n("load", "io.load_frames", path=str(session / "lights")),
                  n("where", "test.where", fail_on=fail_on)],
        "edges": [{"from": "load.frames", "to": "where.frames"}]})


def hdus_without_write_time(path: Path) -> list:
    """Each HDU's header cards (without DATE, CHECKSUM, ...) and data bytes."""
    out = []
    with fits.open(path) as hdul:
        for hdu in hdul:
            cards = [(c.keyword, str(c.value)) for c in hdu.header.cards
                     if c.keyword not in WRITE_TIME_CARDS]
            data = None if hdu.data is None else (
                hdu.data.tobytes() if isinstance(hdu.data, np.ndarray) else repr(hdu.data))
            out.append((cards, data))
    return out


def stored_fits(cache: Path) -> dict:
    """Every FITS file of a cache by store-relative path (keys are content addresses)."""
    return {p.relative_to(cache).as_posix(): hdus_without_write_time(p)
            for p in (cache / "objects").rglob("*.fits")}


def test_two_workers_give_the_bits_of_one_process(session, tmp_path):
    graph = tmp_path / "graph.json"
    graph.write_text(stack_graph(session).to_json())
    for workers in ("1", "2"):
        code = main(["run", str(graph), "--workers", workers, "--cache",
                     str(tmp_path / f"cache{workers}"), "--run-dir", str(tmp_path / workers)])
        assert code == 0
    one, two = tmp_path / "1", tmp_path / "2"
    stored = stored_fits(tmp_path / "cache1")
    # The same entries (same keys: same content keys of every frame) with the same bits.
    assert stored == stored_fits(tmp_path / "cache2")
    registered = [v for k, v in stored.items() if k.endswith("/frames.fits")]
    assert len(registered) == 5 and len(registered[0][0][1]) == 100 * 120 * 4  # float32 pixels
    for node in ("calibrate", "register"):  # the per-frame diagnostics, frame by frame
        assert (json.loads((one / f"artifacts/{node}.json").read_text())
                == json.loads((two / f"artifacts/{node}.json").read_text()))
    status = json.loads((two / "status.json").read_text())
    assert status["frames_computed"] == 10 and status["frames_cached"] == 0
    # The per-frame cache is intact: a run with 2 workers on the first cache finds every frame.
    code = main(["run", str(graph), "--workers", "2", "--cache", str(tmp_path / "cache1"),
                 "--run-dir", str(tmp_path / "again")])
    assert code == 0
    status = json.loads((tmp_path / "again/status.json").read_text())
    assert status["frames_computed"] == 0 and set(status["cached"]) == {
        "load", "load_bias", "bias", "calibrate", "reference", "register"}


def run_where(session, run_dir, executor, fail_on="", listeners=()):
    run = Run(run_dir, Cache(run_dir.parent / "cache"), executor=executor,
              listeners=list(listeners))
    return run.execute(plan(where_graph(session, fail_on), registry()))


def test_what_a_node_reports_in_a_worker_reaches_the_run(session, tmp_path):
    res = run_where(session, tmp_path / "r", ProcessExecutor(2))
    assert res.status == "ok", res.error
    diag = json.loads((tmp_path / "r/artifacts/where.json").read_text())["frames"]
    assert list(diag) == [f"light_{i:03d}" for i in range(5)]  # frame order, not finish order
    pids = {d["pid"] for d in diag.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert diag["light_002"]["warnings"] == ["looked at light_002"]
    events = [json.loads(x) for x in (tmp_path / "r/logs/run_events.jsonl").read_text().split("\n")
              if x]
    warned = sorted(e["frame"] for e in events if e["event"] == "warning" and e["node"] == "where")
    assert warned == [f"light_{i:03d}" for i in range(5)]
    frames = res.outputs["where"]["frames"]
    lights = sorted((session / "lights").iterdir())
    assert np.array_equal(frames[3].data, 2 * fitsio.read_frame(lights[3]).data)
    assert "seen by test.where (light_003)" in str(frames[3].header["HISTORY"])
    assert (tmp_path / "r/artifacts/where/light_004.txt").read_text() == "light_004"
    again = run_where(session, tmp_path / "r2", ProcessExecutor(2))
    assert again.cached == ["load", "where"]
    assert (tmp_path / "r2/artifacts/where/light_004.txt").read_text() == "light_004"


def test_a_frame_failing_in_a_worker_names_node_and_frame(session, tmp_path):
    res = run_where(session, tmp_path / "r", ProcessExecutor(2), fail_on="light_001")
    assert res.status == "failed" and res.failed_node == "where"
    assert res.error == "node 'where', frame light_001: ValueError: cannot process light_001"
    events = [json.loads(x) for x in (tmp_path / "r/logs/run_events.jsonl").read_text().split("\n")
              if x]
    failed = [e for e in events if e["event"] == "node_failed"]
    assert failed[0]["frame"] == "light_001" and "ValueError" in failed[0]["traceback"]
    # The frames that succeeded are cached; the key of the failed one is free again.
    res = run_where(session, tmp_path / "r2", LocalExecutor())
    assert res.status == "ok" and res.frames_computed + res.frames_cached == 5
    assert res.frames_computed >= 1


def test_cancelling_stops_handing_out_frames(session, tmp_path):
    runs = []

    def cancel_after_first(ev):
        if ev["event"] == "frame_computed":
            runs[0].cancel()

    run = Run(tmp_path / "r", Cache(tmp_path / "cache"), executor=ProcessExecutor(1),
              listeners=[cancel_after_first])
    runs.append(run)
    res = run.execute(plan(where_graph(session), registry()))
    assert res.status == "cancelled"
    assert res.frames_computed == 1
    status = json.loads((tmp_path / "r/status.json").read_text())
    assert status["status"] == "cancelled"


def test_worker_settings(monkeypatch):
    monkeypatch.delenv("STARLOOM_WORKERS", raising=False)
    assert worker_count() == len(os.sched_getaffinity(0))
    assert worker_count(3) == 3
    monkeypatch.setenv("STARLOOM_WORKERS", "1")
    assert isinstance(make_executor(), LocalExecutor)
    monkeypatch.setenv("STARLOOM_WORKERS", "4")
    assert make_executor().workers == 4
    monkeypatch.setenv("STARLOOM_WORKERS", "many")
    with pytest.raises(StarloomError, match="STARLOOM_WORKERS.*'many'"):
        make_executor()
    with pytest.raises(StarloomError, match="--workers.*'0'"):
        make_executor(workers="0")
