"""Runs that say what happened: the running status, interrupted runs, ``starloom runs``,
``starloom resume`` (issue 11), including a run killed with SIGKILL during a per-frame node."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from astropy.io import fits

from starloom.cli.main import main
from starloom.graph_runtime import runs
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.registry import default_registry
from starloom.graph_runtime.run import Run
from starloom.serialization import GraphDocument


def starloom(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "starloom.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _node(id, type, **params):
    return {"id": id, "type": type, "version": 1, "params": params}


def small_graph(n_lights: int = 3) -> dict:
    """Simulate a tiny session, stack its lights (no registration) and save the stack."""
    return {"format": "starloom.graph", "schema_version": 1, "metadata": {"name": "Tiny"},
            "parameters": {"n_lights": {"type": "integer", "default": n_lights,
                                        "binds": ["simulate.n_lights"]}},
            "nodes": [_node("simulate", "simulate.session", width=64, height=64, n_bias=2,
                            n_darks=1, n_flats=1),
                      _node("bias", "calibration.master_bias"),
                      _node("calibrate", "calibration.calibrate_lights"),
                      _node("stack", "stacking.combine", rejection="none"),
                      _node("save", "io.save_fits", filename="stack.fits")],
            "edges": [{"from": "simulate.bias", "to": "bias.frames"},
                      {"from": "simulate.lights", "to": "calibrate.lights"},
                      {"from": "bias.master_bias", "to": "calibrate.bias"},
                      {"from": "calibrate.lights", "to": "stack.frames"},
                      {"from": "stack.image", "to": "save.image"}]}


def kill_graph(n_lights: int) -> dict:
    """Simulate, calibrate and register many lights: registration is the slow per-frame step
    (about 0.15 s a frame), long enough to kill the run in its middle."""
    g = small_graph(n_lights)
    g["metadata"]["name"] = "Kill test"
    g["nodes"][0]["params"] = {"width": 400, "height": 300, "n_bias": 3, "n_darks": 1,
                               "n_flats": 1}
    g["nodes"][3:3] = [_node("reference", "registration.select_reference", method="index",
                             index=0),
                       _node("register", "registration.star_align")]
    g["edges"] = [e for e in g["edges"] if e["to"] != "stack.frames"] + [
        {"from": "calibrate.lights", "to": "reference.frames"},
        {"from": "calibrate.lights", "to": "register.frames"},
        {"from": "reference.reference", "to": "register.reference"},
        {"from": "register.frames", "to": "stack.frames"}]
    return g


def write_graph(path: Path, graph: dict) -> Path:
    path.write_text(json.dumps(graph))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_run(runs_dir: Path, name: str, status: dict | None, graph_name: str = "G",
             events: list[dict] = ()) -> Path:
    d = runs_dir / name
    (d / "logs").mkdir(parents=True)
    (d / "graph.json").write_text(json.dumps({"metadata": {"name": graph_name}, "nodes": [
        {"id": "load", "type": "io.load_frames"}, {"id": "stack", "type": "stacking.combine"}]}))
    if status is not None:
        (d / "status.json").write_text(json.dumps(status))
    (d / "logs" / "run_events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return d


def test_status_says_running_during_a_run(tmp_path):
    doc = GraphDocument.model_validate(small_graph())
    seen = []

    def listener(ev):
        if ev["event"] == "node_started" and not seen:
            seen.append(json.loads((tmp_path / "run/status.json").read_text()))
            seen.append(runs.read_status(tmp_path / "run"))
            seen.append((tmp_path / "run/artifacts/report.html").read_text())

    res = Run(tmp_path / "run", Cache(tmp_path / "cache"), listeners=[listener],
              graph_file=tmp_path / "tiny.json").execute(plan(doc, default_registry()))
    assert res.status == "ok", res.error
    raw, read, report = seen
    assert raw["status"] == "running" and raw["pid"] == os.getpid()
    assert raw["host"] == platform.node() and raw["started"]
    assert read["status"] == "running"  # this process is alive
    assert ">running<" in report and "Running since" in report
    final = json.loads((tmp_path / "run/status.json").read_text())
    assert final["status"] == "ok" and final["started"] == raw["started"] and final["finished"]
    env = json.loads((tmp_path / "run/environment.json").read_text())
    assert env["cache"] == str((tmp_path / "cache").resolve())
    assert env["graph_file"] == str(tmp_path / "tiny.json")


def test_a_dead_running_run_reads_interrupted(tmp_path):
    me = {"status": "running", "pid": os.getpid(), "pid_start": runs.process_start(),
          "host": platform.node(), "started": "2026-01-01T00:00:00+00:00"}
    alive = fake_run(tmp_path, "alive", me)
    assert runs.read_status(alive)["status"] == "running"
    dead = fake_run(tmp_path, "dead", {**me, "pid": dead_pid()})
    st = runs.read_status(dead)
    assert st["status"] == "interrupted" and "ended without finishing" in st["message"]
    if runs.process_start() is not None:  # Linux: a reused pid is another process
        reused = fake_run(tmp_path, "reused", {**me, "pid_start": "1"})
        assert runs.read_status(reused)["status"] == "interrupted"
    # Another host: running until no sign of life for STALE_AFTER.
    remote = fake_run(tmp_path, "remote", {**me, "host": "elsewhere.example"})
    assert runs.read_status(remote)["status"] == "running"
    later = dt.datetime.now(dt.timezone.utc) + runs.STALE_AFTER + dt.timedelta(minutes=1)
    st = runs.read_status(remote, now=later)
    assert st["status"] == "interrupted" and "elsewhere.example" in st["message"]
    # No status.json but an event log: an old run that was stopped; garbage: unknown, named.
    assert runs.read_status(fake_run(tmp_path, "old", None))["status"] == "interrupted"
    bad = fake_run(tmp_path, "bad", None)
    (bad / "status.json").write_text("{not json")
    st = runs.read_status(bad)
    assert st["status"] == "unknown" and str(bad / "status.json") in st["message"]


def test_report_of_an_interrupted_run(tmp_path, capsys):
    d = fake_run(tmp_path, "r", {"status": "running", "pid": dead_pid(), "host": platform.node(),
                                 "started": "2026-01-01T00:00:00+00:00"},
                 events=[{"t": "2026-01-01T00:00:00+00:00", "event": "run_started"},
                         {"t": "2026-01-01T00:00:01+00:00", "event": "node_started",
                          "node": "load"}])
    with (d / "logs/run_events.jsonl").open("a") as f:
        f.write('{"t": "2026-01-01T00:00:02+00:00", "event": "frame_comp')  # cut by the kill
    assert main(["report", str(d)]) == 0
    html = (d / "artifacts/report.html").read_text()
    assert ">interrupted<" in html and f"starloom resume {d}" in html
    assert "<tr class='interrupted'><td>load</td>" in html
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "nothing: not a run directory" in capsys.readouterr().err


def test_runs_lists_newest_first_and_as_json(tmp_path, capsys):
    fake_run(tmp_path, "a-ok", {"status": "ok", "seconds": 12.5, "started":
                                "2026-01-01T10:00:00+00:00"}, "First")
    fake_run(tmp_path, "b-failed", {"status": "failed", "node": "stack", "message": "boom",
                                    "seconds": 3.0, "started": "2026-01-02T10:00:00+00:00"})
    fake_run(tmp_path, "c-killed", {"status": "running", "pid": dead_pid(),
                                    "host": platform.node(), "started": "2026-01-03T10:00:00+00:00"},
             events=[{"t": "2026-01-03T10:00:00+00:00", "event": "run_started"},
                     {"t": "2026-01-03T10:01:30+00:00", "event": "node_started", "node": "stack"}])
    v = tmp_path / "d-invalid"
    v.mkdir()
    (v / "status.json").write_text(json.dumps({"status": "validation_failed", "started":
                                               "2026-01-04T10:00:00+00:00",
                                               "graph_file": "/x/my_graph.json"}))
    (tmp_path / "not-a-run").mkdir()
    assert main(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "STARTED", "(UTC)", "DURATION", "GRAPH", "NODE"]
    assert [ln.split()[0] for ln in lines[1:5]] == ["d-invalid", "c-killed", "b-failed", "a-ok"]
    assert lines[1].split()[1:] == ["validation_failed", "2026-01-04", "10:00:00", "-",
                                    "my_graph.json"]
    assert lines[2].split()[1:] == ["interrupted", "2026-01-03", "10:00:00", "1", "min", "30",
                                    "s", "G", "stack"]
    assert lines[3].split()[1:] == ["failed", "2026-01-02", "10:00:00", "3.0", "s", "G", "stack"]
    assert lines[4].split()[1:] == ["ok", "2026-01-01", "10:00:00", "12.5", "s", "First"]
    assert "starloom resume RUN_DIR" in lines[-1]
    assert main(["runs", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["validation_failed", "interrupted", "failed", "ok"]
    assert rows[1]["seconds"] == 90.0 and rows[1]["node"] == "stack" and rows[1]["attempts"] == 0
    assert rows[2]["message"] == "boom" and rows[3]["graph"] == "First"
    # One run directory given: just that run; no folder: an error naming it; empty: says so.
    assert main(["runs", str(tmp_path / "a-ok"), "--json"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["a-ok"]
    assert main(["runs", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'}: no such folder" in capsys.readouterr().err
    assert main(["runs", str(tmp_path / "not-a-run")]) == 0
    assert "no runs in" in capsys.readouterr().out


def test_resume_from_a_node_in_place(tmp_path, capsys, monkeypatch):
    # A graph parameter with a relative default: resume must run the same input folder from
    # another working directory.
    gdir = tmp_path / "g"
    gdir.mkdir()
    graph = small_graph()
    graph_file = write_graph(gdir / "tiny.json", graph)
    run_dir = tmp_path / "runs/r1"
    cache = tmp_path / "cache"
    assert main(["run", str(graph_file), "--cache", str(cache), "--run-dir", str(run_dir)]) == 0
    monkeypatch.chdir(tmp_path / "runs")
    assert main(["resume", str(run_dir), "--from", "stack"]) == 0
    err = capsys.readouterr().err
    assert f"with cache {cache.resolve()} (recorded in environment.json)" in err
    assert "recomputing save, stack" in err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "ok"
    assert status["executed"] == ["stack", "save"]
    assert status["cached"] == ["simulate", "bias", "calibrate"]
    attempts = [json.loads(x) for x in (run_dir / "logs/attempts.jsonl").read_text().splitlines()]
    assert [a["status"] for a in attempts] == ["ok"]
    assert (run_dir / "outputs/stack.fits").is_file()
    started = [json.loads(x)["event"] for x in (run_dir / "logs/run_events.jsonl").read_text()
               .splitlines()].count("run_started")
    assert started == 2  # one event log, both attempts
    # Errors name what is wrong and leave the run's status alone.
    assert main(["resume", str(run_dir), "--from", "nope"]) == 2
    assert f"--from: {run_dir / 'graph.json'} has no node 'nope'" in capsys.readouterr().err
    assert main(["resume", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: not a run directory" in capsys.readouterr().err
    assert json.loads((run_dir / "status.json").read_text())["status"] == "ok"


def test_resume_refuses_a_live_run_and_a_validation_failure(tmp_path, capsys):
    live = fake_run(tmp_path, "live", {"status": "running", "pid": os.getpid(),
                                       "host": platform.node(), "started": "2026-01-01"})
    assert main(["resume", str(live)]) == 2
    assert "is still running (pid" in capsys.readouterr().err
    bad = write_graph(tmp_path / "bad.json", {**small_graph(), "nodes": [
        _node("x", "no.such")], "edges": [], "parameters": {}})
    assert main(["run", str(bad), "--run-dir", str(tmp_path / "v")]) == 2
    capsys.readouterr()
    assert main(["resume", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert "graph.json: missing" in err and "failed validation" in err
    assert json.loads((tmp_path / "v/status.json").read_text())["status"] == "validation_failed"


def test_resume_of_a_run_without_cache_recomputes(tmp_path, capsys):
    graph_file = write_graph(tmp_path / "tiny.json", small_graph())
    run_dir = tmp_path / "r"
    assert main(["run", str(graph_file), "--no-cache", "--run-dir", str(run_dir)]) == 0
    assert json.loads((run_dir / "environment.json").read_text())["cache"] is None
    assert main(["resume", str(run_dir)]) == 0
    assert "no cache (the run was made with --no-cache)" in capsys.readouterr().err
    assert len(json.loads((run_dir / "status.json").read_text())["executed"]) == 5


def _frames_done(log: Path, node: str) -> int:
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return 0
    return sum(1 for x in lines if '"frame_computed"' in x and f'"node": "{node}"' in x)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_a_per_frame_node_then_resume(tmp_path):
    n = 24
    graph_file = write_graph(tmp_path / "kill.json", kill_graph(n))
    runs_dir, cache = tmp_path / "runs", tmp_path / "cache"
    killed = runs_dir / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "starloom.cli.main", "run", str(graph_file),
                             "--cache", str(cache), "--run-dir", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    log = killed / "logs/run_events.jsonl"
    deadline = time.monotonic() + 300
    while _frames_done(log, "register") < 3:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no registered frame in 300 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _frames_done(log, "register")
    assert done < n, "every frame finished before the kill: make the graph slower"
    raw = json.loads((killed / "status.json").read_text())
    assert raw["status"] == "running" and raw["pid"] == proc.pid

    listed = starloom("runs", str(runs_dir))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == ["killed", "interrupted"]
    row = json.loads(starloom("runs", str(runs_dir), "--json").stdout)[0]
    assert row["status"] == "interrupted" and row["node"] == "register"
    assert row["graph"] == "Kill test"

    resumed = starloom("resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    status = json.loads((killed / "status.json").read_text())
    assert status["status"] == "ok"
    assert status["frames_cached"] > 0 and status["frames_cached"] >= done
    assert status["frames_cached"] + status["frames_computed"] == n  # register's frames
    assert status["cached"] == ["simulate", "bias", "calibrate", "reference"]
    attempts = (killed / "logs/attempts.jsonl").read_text().splitlines()
    assert [json.loads(a)["status"] for a in attempts] == ["interrupted"]
    assert json.loads(starloom("runs", str(runs_dir), "--json").stdout)[0]["attempts"] == 1

    full = starloom("run", str(graph_file), "--cache", str(tmp_path / "cache2"), "--run-dir",
                    str(runs_dir / "full"))
    assert full.returncode == 0, full.stderr
    with fits.open(killed / "outputs/stack.fits") as a, \
            fits.open(runs_dir / "full/outputs/stack.fits") as b:
        assert len(a) == len(b)
        for ha, hb in zip(a, b):
            # Bit-identical pixels (and tables, e.g. a mask or uncertainty extension).
            assert (ha.data is None and hb.data is None) or \
                ha.data.tobytes() == hb.data.tobytes()
            # DATE is the time the file was written (FITS 4.0 section 4.4.2.1).
            assert [tuple(c) for c in ha.header.cards if c.keyword != "DATE"] == \
                [tuple(c) for c in hb.header.cards if c.keyword != "DATE"]


@pytest.mark.skipif(os.name == "nt", reason="needs SIGINT to a process")
def test_ctrl_c_marks_the_run_interrupted(tmp_path):
    graph_file = write_graph(tmp_path / "kill.json", kill_graph(16))
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "starloom.cli.main", "run", str(graph_file),
                             "--cache", str(tmp_path / "cache"), "--run-dir", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"},
                            # as from a terminal: a test session started in the background
                            # (`pytest &`) ignores SIGINT, and its children would inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while _frames_done(run_dir / "logs/run_events.jsonl", "register") < 1:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"'starloom resume {run_dir}' continues" in err and "Traceback" not in err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and "Ctrl+C" in status["message"]
    assert ">interrupted<" in (run_dir / "artifacts/report.html").read_text()
