"""The starloom command line, end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from starloom.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "example_graphs"


def starloom(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "starloom.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_demo_runs_then_is_served_from_cache(tmp_path):
    cache = str(tmp_path / "cache")
    first = starloom("demo", "--cache", cache, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Finished: 10 node(s) executed, 0 from cache" in first.stdout
    run_dirs = sorted((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1
    assert {p.name for p in (run_dirs[0] / "outputs").iterdir()} == {"stack.fits", "stack.png"}
    second = starloom("demo", "--cache", cache, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 node(s) executed, 10 from cache" in second.stdout
    assert "cached" in second.stderr
    info = starloom("cache", "info", "--cache", cache)
    assert info.returncode == 0 and "entries" in info.stdout
    cleared = starloom("cache", "clear", "--cache", cache)
    assert cleared.returncode == 0 and "removed" in cleared.stdout
    assert "0 entries" in starloom("cache", "info", "--cache", cache).stdout


def test_param_and_set_overrides(tmp_path, capsys):
    rc = main(["run", str(EXAMPLES / "demo.json"), "--param", "n_lights=4", "--set",
               "stack.method=median", "--run-dir", str(tmp_path / "run"), "--no-cache"])
    assert rc == 0
    graph = json.loads((tmp_path / "run/graph.json").read_text())
    sim = next(n for n in graph["nodes"] if n["id"] == "simulate")
    stack = next(n for n in graph["nodes"] if n["id"] == "stack")
    assert sim["params"]["n_lights"] == 4 and stack["params"]["method"] == "median"
    assert graph["parameters"]["n_lights"]["default"] == 4
    from starloom.astro import fits as fitsio
    assert fitsio.read_frame(tmp_path / "run/outputs/stack.fits").header["NCOMBINE"] == 4


def test_broken_graph_names_what_is_wrong(tmp_path):
    doc = json.loads((EXAMPLES / "demo.json").read_text())
    doc["nodes"][7]["params"]["sigma_low"] = -1
    doc["nodes"].append({"id": "mystery", "type": "no.such", "version": 1})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    res = starloom("run", str(bad), "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 2
    assert "bad.json: 2 problem(s)" in res.stderr
    assert "node 'stack', param 'sigma_low': Input should be greater than 0" in res.stderr
    assert "node 'mystery': unknown node type 'no.such'" in res.stderr
    status = json.loads((tmp_path / "run/status.json").read_text())
    assert status["status"] == "validation_failed"
    res = starloom("validate", str(bad))
    assert res.returncode == 2 and "sigma_low" in res.stderr


def test_failing_node_exit_code_and_message(tmp_path):
    res = starloom("run", str(EXAMPLES / "register_and_stack.json"), "--param",
                   f"lights={tmp_path / 'empty'}", "--run-dir", str(tmp_path / "run"), "--no-cache")
    assert res.returncode == 1
    assert "node 'load'" in res.stderr and "no files match" in res.stderr and "empty" in res.stderr
    status = json.loads((tmp_path / "run/status.json").read_text())
    assert status["status"] == "failed" and status["node"] == "load"


def test_not_json_and_newer_schema(tmp_path):
    f = tmp_path / "g.json"
    f.write_text("{oops")
    res = starloom("validate", str(f))
    assert res.returncode == 2 and "g.json: not valid JSON" in res.stderr
    f.write_text(json.dumps({"format": "starloom.graph", "schema_version": 7}))
    res = starloom("run", str(f))
    assert res.returncode == 2 and "schema version 7" in res.stderr


def test_bad_override_syntax_and_unknown_force(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--param takes NAME=VALUE"):
        main(["validate", str(EXAMPLES / "demo.json"), "--param", "seed"])
    rc = main(["run", str(EXAMPLES / "demo.json"), "--force", "nope", "--run-dir", str(tmp_path / "r")])
    assert rc == 2 and "--force names no node of the graph: nope" in capsys.readouterr().err


def test_nodes_and_node_pages(capsys):
    assert main(["nodes"]) == 0
    out = capsys.readouterr().out
    for tid in ("io.load_frames", "calibration.master_bias", "registration.star_align",
                "stacking.combine", "simulate.session"):
        assert tid in out
    assert main(["node", "stacking.combine"]) == 0
    page = capsys.readouterr().out
    assert "sigma_low" in page and "Inputs:" in page and "FrameSeries" in page
    assert main(["node", "calibration.master_dark"]) == 0
    assert "[s]" in capsys.readouterr().out  # units shown
    assert main(["node", "no.such"]) == 2
    assert "unknown node type 'no.such'" in capsys.readouterr().err


def test_validate_ok(capsys):
    assert main(["validate", str(EXAMPLES / "demo.json")]) == 0
    assert "valid, 10 nodes" in capsys.readouterr().out
