"""Benchmark: startup of `starloom validate`, `starloom nodes` and a fully cached run.

Issue 13's goal: each under 0.35 s plus 10 ms per node of the graph. Every command runs as a
whole process (wall time from start to exit), ``--runs`` times, in alternation with a bare
``python -c pass`` (the interpreter's own start, the floor no command can beat) and
``python -c "import astropy.units"`` (what any node declaration with units needs), so that a
machine loaded by other work slows all of them alike; medians are printed with the goal and the
ratio to it (<= 1 meets the goal). The cached run uses ``example_graphs/demo.json`` (simulated
data, no input files), after one uncached run fills a private cache.

Also lists which heavy libraries ``starloom nodes`` and ``starloom validate`` import
(``-X importtime``), with their cumulative import time and the chain of modules that first
imported each: none of photutils, reproject, astroalign, skimage, matplotlib, ccdproc, sep,
sklearn, colour_demosaicing, astroscrappy, dask, distributed, bottleneck should be needed to
build the node registry; astropy's units, nddata, wcs and coordinates and scipy are shown too,
because they are what keeps the commands above the goal.

Run:  .venv/bin/python benchmarks/bench_startup.py [--runs 7]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
STARLOOM = str(Path(PY).with_name("starloom"))
HEAVY = ("photutils", "reproject", "astroalign", "skimage", "matplotlib", "ccdproc", "sep",
         "sklearn", "colour_demosaicing", "astroscrappy", "dask", "distributed", "bottleneck",
         "scipy", "astropy.units", "astropy.nddata", "astropy.wcs", "astropy.coordinates",
         "astropy.table", "astropy.io.fits", "pydantic", "numpy")
GOAL_BASE, GOAL_PER_NODE = 0.35, 0.010


# As on a user's machine: byte-compiled modules are written on the first run and read after it
# (an environment with PYTHONDONTWRITEBYTECODE=1 compiles every Starloom module on each start).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _wall(cmd) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV)
    elapsed = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return elapsed


def heavy_imports(cmd) -> dict[str, tuple[float, str]]:
    """Heavy packages a command imports: cumulative import time (s) and who imported it first."""
    done = subprocess.run([PY, "-X", "importtime", *cmd], capture_output=True, text=True,
                          cwd=ROOT, env=ENV)
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(1)) / 1e6, len(m.group(2)) // 2, m.group(3)))
    found = {}
    for i, (cumulative, depth, name) in enumerate(rows):
        if name in HEAVY and name not in found:
            chain = []  # importtime lists a module's imports before it: parents come later
            for _, d, parent in rows[i + 1:]:
                if d < depth:
                    chain.append(parent)
                    depth = d
            found[name] = (cumulative, " <- ".join(chain[:4]))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    demo = ROOT / "example_graphs" / "demo.json"
    n_demo = len(json.loads(demo.read_text())["nodes"])
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        fill = [STARLOOM, "run", str(demo), "--cache", str(cache), "--run-dir", f"{tmp}/fill"]
        print(f"filling a cache with one run of {demo.name} ...", flush=True)
        _wall(fill)
        cases = {
            "python -c pass": ([PY, "-c", "pass"], None),
            "python -c 'import astropy.units'": ([PY, "-c", "import astropy.units"], None),
            "starloom nodes": ([STARLOOM, "nodes"], 0),
            f"starloom validate {demo.name}": ([STARLOOM, "validate", str(demo)], n_demo),
            f"starloom run {demo.name} (all cached)": (
                [STARLOOM, "run", str(demo), "--cache", str(cache), "--run-dir",
                 f"{tmp}/cached"], n_demo),
        }
        times = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (cmd, _) in cases.items():  # alternate commands: load hits all alike
                if "--run-dir" in cmd:
                    subprocess.run(["rm", "-rf", f"{tmp}/cached"])
                times[name].append(_wall(cmd))
    print(f"\nmedian wall time of {args.runs} runs, whole processes; goal 0.35 s + 10 ms/node")
    print(f"{'command':44} {'nodes':>5} {'median s':>9} {'goal s':>7} {'/goal':>6}")
    for name, (cmd, nodes) in cases.items():
        t = statistics.median(times[name])
        if nodes is None:
            print(f"{name:44} {'':>5} {t:9.3f}")
            continue
        goal = GOAL_BASE + GOAL_PER_NODE * nodes
        print(f"{name:44} {nodes:5d} {t:9.3f} {goal:7.2f} {t / goal:6.2f}")
    for command in (["nodes"], ["validate", str(demo)]):
        print(f"\nimported by `starloom {' '.join(command)}` (cumulative s, first importer):")
        for name, (t, chain) in heavy_imports(["-m", "starloom.cli.main", *command]).items():
            print(f"  {name:22} {t:6.3f}  {chain}")

if __name__ == "__main__":
    main()
