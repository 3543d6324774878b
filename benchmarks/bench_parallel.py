"""Benchmark: per-frame work in worker processes against one process.

Calibrates and registers ``--frames`` simulated light frames (``--size`` pixels square, a master
bias from 5 bias frames) with ``starloom run --no-cache`` as a whole process, with
``--workers 1`` and ``--workers N`` (default: the cores) and, with ``--dask``, on a Dask
LocalCluster, alternating ``--runs`` times; prints median wall times, the speed-up, and checks
that every run stored the same registered frames (the outputs are compared pixel for pixel).

Run:  .venv/bin/python benchmarks/bench_parallel.py [--frames 24] [--size 1024] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STARLOOM = str(Path(sys.executable).with_name("starloom"))


def write_session(folder: Path, frames: int, size: int) -> None:
    from starloom.astro import fits as fitsio
    from starloom.astro.simulate import simulate_session
    sim = simulate_session(seed=7, shape=(size, size), n_bias=5, n_darks=1, n_flats=1,
                           n_lights=frames, n_stars=150, dither=5.0)
    for kind, sub in (("bias", "bias"), ("light", "lights")):
        (folder / sub).mkdir(parents=True)
        for i, ccd in enumerate(sim[kind]):
            fitsio.write_frame(ccd, folder / sub / f"{kind}_{i:03d}.fits", dtype="uint16")


def graph(folder: Path) -> dict:
    def n(id, type, **params):
        return {"id": id, "type": type, "version": 1, "params": params}
    return {"format": "starloom.graph", "schema_version": 1,
            "nodes": [n("load", "io.load_frames", path=str(folder / "lights")),
                      n("load_bias", "io.load_frames", path=str(folder / "bias")),
                      n("bias", "calibration.master_bias"),
                      n("calibrate", "calibration.calibrate_lights"),
                      n("reference", "registration.select_reference", method="index", index=0),
                      n("register", "registration.star_align"),
                      n("save", "io.save_fits", filename="first.fits")],
            "edges": [{"from": "load_bias.frames", "to": "bias.frames"},
                      {"from": "load.frames", "to": "calibrate.lights"},
                      {"from": "bias.master_bias", "to": "calibrate.bias"},
                      {"from": "calibrate.lights", "to": "reference.frames"},
                      {"from": "calibrate.lights", "to": "register.frames"},
                      {"from": "reference.reference", "to": "register.reference"},
                      {"from": "reference.reference", "to": "save.image"}]}


def registered(cache: Path) -> dict[str, bytes]:
    from astropy.io import fits
    out = {}
    for p in sorted(cache.rglob("frames.fits")):
        with fits.open(p) as hdul:
            out[p.parent.name] = np.asarray(hdul[0].data).tobytes()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--dask", action="store_true", help="also on a Dask LocalCluster")
    args = ap.parse_args()
    cases = {"--workers 1": ["--workers", "1"],
             f"--workers {args.workers}": ["--workers", str(args.workers)]}
    if args.dask:
        cases[f"--executor dask ({args.workers} workers)"] = [
            "--executor", "dask", "--workers", str(args.workers)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_session(tmp / "session", args.frames, args.size)
        (tmp / "graph.json").write_text(json.dumps(graph(tmp / "session")))
        times = {name: [] for name in cases}
        results = {}
        for i in range(args.runs):
            for j, (name, extra) in enumerate(cases.items()):
                cache = tmp / f"cache-{i}-{j}"  # a fresh cache: every frame is computed
                cmd = [STARLOOM, "run", str(tmp / "graph.json"), "--cache", str(cache),
                       "--run-dir", str(tmp / f"run-{i}-{j}"), *extra]
                t0 = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                times[name].append(time.perf_counter() - t0)
                if done.returncode:
                    raise RuntimeError(f"{name} failed:\n{done.stderr[-2000:]}")
                results[name] = registered(cache)
    base = statistics.median(times["--workers 1"])
    print(f"calibrate + register {args.frames} frames of {args.size}x{args.size}, whole "
          f"`starloom run` processes, median of {args.runs}; {os.cpu_count()} cores")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:36} {t:7.2f} s  speed-up {base / t:4.2f}  runs "
              + ", ".join(f"{x:.2f}" for x in ts))
    first = results["--workers 1"]
    same = all(r == first for r in results.values())
    print(f"registered frames identical in every case: {same} ({len(first)} frames)")


if __name__ == "__main__":
    main()
