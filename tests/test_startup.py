"""Startup: `starloom nodes` and `starloom validate` import no science library at all (not
numpy, astropy or scipy, nor the science modules of starloom.astro) and not the run-time engine;
a fully cached run imports no science library either.

The registry is built from the node declarations alone: every node module imports its science
inside the functions that run it (issue 13, "Startup"), and a cached node's values are only read
when a node that runs needs them. A behaviour test, run in a fresh interpreter; the timing is
benchmarks/bench_startup.py's job.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("numpy", "astropy", "scipy", "photutils", "reproject", "astroalign", "skimage",
         "matplotlib", "ccdproc", "sep", "sklearn", "colour_demosaicing", "astroscrappy", "dask",
         "distributed", "bottleneck", "PIL")
# The starloom.astro modules a node declaration may import: plain constants and exceptions.
LIGHT_ASTRO = {"starloom.astro", "starloom.astro.errors", "starloom.astro.keywords",
               "starloom.astro.fileio", "starloom.astro.embed"}
# What only running a graph needs.
RUNTIME = ("starloom.graph_runtime.run", "starloom.graph_runtime.cache",
           "starloom.graph_runtime.executor", "starloom.graph_runtime.frame_task",
           "starloom.graph_runtime.provenance")
DEMO = Path(__file__).resolve().parents[1] / "example_graphs" / "demo.json"

PROBE = """
import json, sys
from starloom.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded_by(*args) -> tuple[subprocess.CompletedProcess, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0
    return done, set(report["modules"])


@pytest.mark.parametrize("command", [["nodes"], ["validate", str(DEMO)]],
                         ids=["nodes", "validate"])
def test_listing_and_validating_import_no_heavy_library_nor_the_runtime(command):
    done, modules = loaded_by(*command)
    assert ("stacking.combine" if command == ["nodes"] else "valid") in done.stdout
    top = {name.split(".")[0] for name in modules}
    assert sorted(top & set(HEAVY)) == []
    assert sorted(modules & set(RUNTIME)) == []
    assert {m for m in modules if m.startswith("starloom.astro")} <= LIGHT_ASTRO


def test_a_fully_cached_run_imports_no_science(tmp_path):
    cache, first = tmp_path / "cache", tmp_path / "first"
    done = subprocess.run([sys.executable, "-m", "starloom.cli.main", "run", str(DEMO),
                           "--cache", str(cache), "--run-dir", str(first)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    done, modules = loaded_by("run", str(DEMO), "--cache", str(cache), "--run-dir",
                              str(tmp_path / "again"))
    assert "0 node(s) executed, 10 from cache" in done.stdout
    assert sorted({name.split(".")[0] for name in modules} & set(HEAVY)) == []
    # the outputs are restored all the same, equal to the first run's
    for name in ("stack.fits", "stack.png"):
        assert (tmp_path / "again/outputs" / name).read_bytes() == \
            (first / "outputs" / name).read_bytes()


def test_versions_from_dist_info_names_equal_the_metadata():
    """Library versions enter cache keys: the fast lookup (dist-info folder names) must give
    what importlib.metadata reads from each distribution's METADATA."""
    from importlib.metadata import distributions

    from starloom.graph_runtime.versions import _dist_info_versions, _normalized, library_version
    fast = _dist_info_versions()
    checked = 0
    for dist in distributions():
        name = dist.metadata["Name"]
        if _normalized(name) in fast:
            assert library_version(name) == dist.version, name
            checked += 1
    assert checked > 20 and library_version("astropy") and library_version("no-such-lib") is None
