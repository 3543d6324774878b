"""A graph run from the editor computes its per-frame nodes on the command line's pool of worker
processes (STARLOOM_WORKERS), gives the cache entries of a command-line run bit for bit, and a
cancelled run leaves no worker process behind."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from editor_window import window  # noqa: F401  (the fixture; skips without Qt)
from starloom.cli.main import main  # noqa: E402
from starloom.graph_runtime.executor import ProcessExecutor, _alive  # noqa: E402
from test_executor import stack_graph, stored_fits, write_session  # noqa: E402


@pytest.fixture
def pool_calls(monkeypatch):
    """Each ``ProcessExecutor.map`` of the test: frames handed out and the workers' pids."""
    calls = []
    original = ProcessExecutor.map

    def spy(self, fn, items):
        items = list(items)
        call = {"frames": len(items), "pids": set()}
        calls.append(call)
        done = original(self, fn, items)
        try:
            for result in done:
                call["pids"] |= set(self._pool._processes)
                yield result
        finally:
            done.close()

    monkeypatch.setattr(ProcessExecutor, "map", spy)
    monkeypatch.setenv("STARLOOM_WORKERS", "2")
    return calls


@pytest.fixture
def graph(tmp_path) -> Path:
    """load -> master bias -> calibrate (per frame) -> register (per frame), 5 light frames."""
    path = tmp_path / "graph.json"
    (tmp_path / "session").mkdir()
    path.write_text(stack_graph(write_session(tmp_path / "session")).to_json())
    return path


def run(qtbot, ed, timeout=120000):
    with qtbot.waitSignal(ed.run_finished, timeout=timeout) as blocker:
        ed.run(force=set(ed.node_ids()))
    return blocker.args[0]


def test_a_per_frame_graph_runs_on_the_pool_with_the_bits_of_the_cli(window, qtbot, tmp_path,
                                                                     graph, pool_calls):
    window.open(graph)
    result = run(qtbot, window.editor)
    assert result.status == "ok", result.error
    # calibrate and register each handed their 5 frames to worker processes
    assert [c["frames"] for c in pool_calls] == [5, 5]
    pids = set().union(*(c["pids"] for c in pool_calls))
    assert pids and os.getpid() not in pids
    assert not any(_alive(pid) for pid in pids)  # the run closed its pool
    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["frames_computed"] == 10
    assert main(["run", str(graph), "--cache", str(tmp_path / "cli_cache"),
                 "--run-dir", str(tmp_path / "cli_run")]) == 0
    editor_entries = stored_fits(tmp_path / "cache")  # the window's cache (editor_window)
    assert len([k for k in editor_entries if k.endswith("/frames.fits")]) == 5
    assert editor_entries == stored_fits(tmp_path / "cli_cache")
    for node in ("calibrate", "register"):
        assert (json.loads((result.run_dir / f"artifacts/{node}.json").read_text())
                == json.loads((tmp_path / f"cli_run/artifacts/{node}.json").read_text()))


def test_cancelling_during_per_frame_work_ends_the_workers(window, qtbot, graph, pool_calls):
    window.open(graph)
    ed = window.editor

    def cancel_on_first_frame(ev):
        if ev["event"] == "frame_computed" and ev["node"] == "calibrate":
            ed.cancel(wait=False)

    ed.run_event.connect(cancel_on_first_frame)
    result = run(qtbot, ed)
    assert result.status == "cancelled"
    assert ed.states["register"] == "cancelled" and not ed.running
    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["frames_computed"] < 10
    pids = set().union(*(c["pids"] for c in pool_calls))
    assert pids and not any(_alive(pid) for pid in pids)
    # The next run starts a new pool and completes.
    ed.run_event.disconnect(cancel_on_first_frame)
    before = len(pool_calls)
    assert run(qtbot, ed).status == "ok"
    assert [c["frames"] for c in pool_calls[before:]] == [5, 5]
