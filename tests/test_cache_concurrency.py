"""Several processes on one cache (issue 11): a second run waits for the first's entries instead
of recomputing them, a run killed while writing an entry leaves only an orphan that is cleaned,
and garbage collection never deletes what a running process holds."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from starloom.astro import fits as fitsio
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.cache_maintenance import remove_orphans
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.registry import Registry
from starloom.graph_runtime.run import Run
from starloom.nodes import register_all
from starloom.serialization import load_graph

N_LIGHTS = 6
GRAPH = {
    "format": "starloom.graph", "schema_version": 1,
    "nodes": [
        {"id": "sim", "type": "simulate.session", "version": 1,
         "params": {"width": 256, "height": 192, "n_bias": 3, "n_darks": 1, "n_flats": 1,
                    "n_lights": N_LIGHTS}},
        {"id": "bias", "type": "calibration.master_bias", "version": 1, "params": {}},
        {"id": "calibrate", "type": "calibration.calibrate_lights", "version": 1, "params": {}},
        {"id": "stack", "type": "stacking.combine", "version": 1, "params": {}},
        {"id": "save", "type": "io.save_fits", "version": 1, "params": {"filename": "stack.fits"}},
    ],
    "edges": [{"from": "sim.bias", "to": "bias.frames"},
              {"from": "sim.lights", "to": "calibrate.lights"},
              {"from": "bias.master_bias", "to": "calibrate.bias"},
              {"from": "calibrate.lights", "to": "stack.frames"},
              {"from": "stack.image", "to": "save.image"}],
}
WHOLE_NODES = {"sim", "bias", "stack", "save"}

# Imports Starloom, says it is ready, waits for the go file, then runs the command line; an
# optional hook slows the cache down at one point so a test can act there.
RUNNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from starloom.cli.main import main
    ready, go, hook = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    if hook == "stall-stack-write":
        import starloom.graph_runtime.cache as cache_mod
        original = cache_mod.write_manifest
        def stalled(folder, manifest):
            if manifest.get("node") == "stack":
                (ready.parent / "writing").touch()
                time.sleep(120)
            original(folder, manifest)
        cache_mod.write_manifest = stalled
    if hook == "hold-entries":
        from starloom.graph_runtime.cache import Cache
        cache = Cache(sys.argv[4])
        keys = [d.name for d in (cache.objects).glob("*/*") if not d.name.startswith(".")]
        assert all(cache.lookup(k) is not None for k in keys)
        ready.touch()
        time.sleep(120)
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    sys.exit(main(sys.argv[4:]))
""")


@pytest.fixture
def graph_file(tmp_path) -> Path:
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(GRAPH))
    return path


def _start(tmp_path: Path, name: str, hook: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
    folder = tmp_path / f"proc-{name}"
    folder.mkdir()
    ready = folder / "ready"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(ready), str(tmp_path / "go"), hook,
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return proc, ready


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120):
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"process ended early: {proc.communicate()}")
        if time.time() - t0 > seconds:
            pytest.fail(f"{path} did not appear")
        time.sleep(0.02)


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def test_two_processes_on_one_cache_compute_each_entry_once(tmp_path, graph_file):
    cache = tmp_path / "cache"
    procs = []
    for name in ("a", "b"):
        args = ["run", str(graph_file), "--cache", str(cache), "--run-dir", str(tmp_path / name)]
        procs.append(_start(tmp_path, name, "none", args))
    for proc, ready in procs:
        _wait_for(ready, proc)
    (tmp_path / "go").touch()  # both start the walk together
    for proc, _ in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    a, b = _status(tmp_path / "a"), _status(tmp_path / "b")
    # Each whole node was computed by exactly one of the two; the other got its entry.
    executed = [n for s in (a, b) for n in s["executed"] if n in WHOLE_NODES]
    assert sorted(executed) == sorted(WHOLE_NODES), (a, b)
    assert a["frames_computed"] + b["frames_computed"] == N_LIGHTS, (a, b)
    assert a["frames_cached"] + b["frames_cached"] == N_LIGHTS, (a, b)
    images = [fitsio.read_frame(tmp_path / n / "outputs" / "stack.fits").data for n in "ab"]
    assert np.array_equal(images[0], images[1])
    assert Cache(cache).verify() == []


def test_kill_during_a_cache_write_leaves_an_orphan_that_is_cleaned(tmp_path, graph_file):
    cache_dir = tmp_path / "cache"
    args = ["run", str(graph_file), "--cache", str(cache_dir), "--run-dir", str(tmp_path / "a")]
    proc, ready = _start(tmp_path, "a", "stall-stack-write", args)
    _wait_for(ready, proc)
    (tmp_path / "go").touch()
    _wait_for(ready.parent / "writing", proc)  # inside Cache.put of 'stack', holding its key
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    cache = Cache(cache_dir)
    assert cache.info()["orphans"] == 1
    # The dead process's key lock is gone with it: a new run neither waits nor sees a
    # half-written entry; it reuses what finished and computes the stack.
    registry = Registry()
    register_all(registry)
    res = Run(tmp_path / "b", cache).execute(plan(load_graph(graph_file), registry))
    assert res.status == "ok", res.error
    assert res.executed == ["stack", "save"] and res.cached == ["sim", "bias", "calibrate"]
    assert remove_orphans(cache, min_age=0) == 1  # nobody holds its key any more
    assert cache.info()["orphans"] == 0 and cache.verify() == []


def test_gc_never_deletes_entries_a_running_process_holds(tmp_path, graph_file):
    cache_dir = tmp_path / "cache"
    registry = Registry()
    register_all(registry)
    first = Cache(cache_dir)
    assert Run(tmp_path / "r", first).execute(
        plan(load_graph(graph_file), registry)).status == "ok"
    first.close()
    n = Cache(cache_dir).info()["entries"]
    proc, ready = _start(tmp_path, "holder", "hold-entries", [str(cache_dir)])
    _wait_for(ready, proc)
    try:
        res = Cache(cache_dir).gc(max_bytes=0, older_than=0)
        assert res["removed"] == 0 and res["kept_in_use"] == n
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # dies without a word: its marks die with it
        proc.communicate(timeout=60)
    res = Cache(cache_dir).gc(max_bytes=0)
    assert res["removed"] == n and Cache(cache_dir).info()["entries"] == 0
    assert not list((cache_dir / "holders").glob("*.keys"))


def test_a_claimed_key_makes_others_wait_for_its_entry(tmp_path):
    key = "ab" * 32
    first, second = Cache(tmp_path / "c"), Cache(tmp_path / "c")
    assert first.claim(key) is None  # nobody had it: ``first`` computes it
    got = {}
    waiter = threading.Thread(target=lambda: got.setdefault("entry", second.claim(key)))
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive()  # waiting for ``first``
    first.put(key, {"answer": 42}, {"node": "n"})
    waiter.join(10)
    assert got["entry"] is not None and got["entry"].values() == {"answer": 42}
