"""Benchmark: the runtime's own cost per node, on a graph of trivial nodes.

Issue 13's goal: a graph of 500 trivial nodes runs at under 2 ms per node. The graph is a chain
of ``--nodes`` nodes of one trivial type (a number in, the number plus one out), so what is
measured is the engine: keys, cache lookups and entries, events, artifacts, status files. Three
cases, each ``--runs`` times in alternation (median printed): a first run into an empty cache,
a fully cached re-run, and a run without a cache (``--no-cache``). Planning (validating the
graph) is timed on its own, and so is the run report (``report.html``, written at the start
and the end of every run by :mod:`starloom.graph_runtime.report`): the engine's time is the
run's minus the report's. ``--profile`` prints a cProfile of one first run instead.

Run:  .venv/bin/python benchmarks/bench_overhead.py [--nodes 500] [--runs 3] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import Field
from starloom.graph_runtime import report
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.node import Node, Params, Port
from starloom.graph_runtime.registry import Registry
from starloom.graph_runtime.run import Run
from starloom.serialization import GraphDocument

GOAL_MS = 2.0
REPORT_SECONDS: list[float] = []
_write_report = report.write_report


def _timed_report(run_dir):
    t0 = time.perf_counter()
    try:
        return _write_report(run_dir)
    finally:
        REPORT_SECONDS.append(time.perf_counter() - t0)


report.write_report = _timed_report  # Run.execute imports it from the module at each run


class AddOne(Node):
    type_id = "bench.add_one"
    title = "Add one"
    category = "bench"

    class Params(Params):
        step: float = Field(1.0, description="added to the input")

    inputs = {"x": Port("Number", "a number", optional=True)}
    outputs = {"y": Port("Number", "x + step")}

    def run(self, ctx, params, x=None):
        return {"y": (x or 0.0) + params.step}


def chain(n: int) -> GraphDocument:
    nodes = [{"id": f"n{i}", "type": AddOne.type_id, "version": 1, "params": {}}
             for i in range(n)]
    edges = [{"from": f"n{i - 1}.y", "to": f"n{i}.x"} for i in range(1, n)]
    return GraphDocument.model_validate({"nodes": nodes, "edges": edges})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    reg = Registry()
    reg.add(AddOne)
    doc = chain(args.nodes)
    t0 = time.perf_counter()
    p = plan(doc, reg)
    t_plan = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            res = Run(tmp / "p", Cache(tmp / "pcache")).execute(p)
            prof.disable()
            assert res.status == "ok", res.error
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
            return
        times: dict[str, list[tuple[float, float]]] = {
            "first run (empty cache)": [], "cached re-run": [], "no cache": []}
        for i in range(args.runs):
            cache = Cache(tmp / f"cache{i}")
            for name, c in (("first run (empty cache)", cache), ("cached re-run", cache),
                            ("no cache", None)):
                REPORT_SECONDS.clear()
                t0 = time.perf_counter()
                res = Run(tmp / f"{name[:5]}{i}", c).execute(p)
                times[name].append((time.perf_counter() - t0, sum(REPORT_SECONDS)))
                assert res.status == "ok", res.error
                if c is not None:  # without a cache the values are gone after the run
                    assert res.outputs[f"n{args.nodes - 1}"]["y"] == float(args.nodes)
            cache.close()
    n = args.nodes
    print(f"{n} trivial nodes in a chain; median of {args.runs} runs; goal {GOAL_MS} ms/node")
    print(f"{'case':26} {'run s':>7} {'report s':>9} {'engine s':>9} {'ms/node':>8} "
          f"{'/goal':>6}")
    print(f"{'planning':26} {t_plan:7.3f} {'':>9} {t_plan:9.3f} {1000 * t_plan / n:8.3f}")
    for name, ts in times.items():
        total = statistics.median(t for t, _ in ts)
        rep = statistics.median(r for _, r in ts)
        engine = statistics.median(t - r for t, r in ts)
        print(f"{name:26} {total:7.3f} {rep:9.3f} {engine:9.3f} {1000 * engine / n:8.3f} "
              f"{1000 * engine / n / GOAL_MS:6.2f}")

if __name__ == "__main__":
    main()
