"""Benchmark: stacking time and peak memory for 10, 50 and 200 frames at a fixed memory limit.

Writes N synthetic 2048x2048 uint16 light frames (sky 1000 ADU, Gaussian noise, 8 hot pixels a
frame; BITPIX 16, BZERO 32768, as cameras write) once into a folder, then runs the whole
``starloom run`` of a load -> stack -> save_fits graph (sigma-clipped average 3/3, 3 rounds, no
normalization or weights, ``memory_limit`` fixed, ``--no-cache``) on the first 10, 50 and 200 of
them, each as its own process under ``/usr/bin/time -v``. Sizes are run in alternation, ``--runs``
times each, and the medians reported, so a machine loaded by other work slows every size alike.
Prints wall time, time per frame and peak RSS, and their ratios to the smallest run: time should
grow like the frame count (ratio per frame ~1), memory should stay flat (the frames are read in
bands that fit ``memory_limit``).

Run:  .venv/bin/python benchmarks/bench_scaling.py [--frames 10 50 200] [--memory-limit 128]
      [--runs 3] [--dir /tmp/starloom-scaling]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

STARLOOM = Path(sys.executable).with_name("starloom")
SIZE = 2048


def write_frames(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` uint16 frames in ``folder`` (kept between runs; only missing ones are written)."""
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"light_{i:04d}.fits"
        paths.append(path)
        if path.exists():
            continue
        frame = rng.normal(1000.0, 32.0, (SIZE, SIZE))
        hot = rng.integers(0, frame.size, 8)
        frame.flat[hot] = 60000.0
        hdu = fits.PrimaryHDU(np.clip(np.rint(frame), 0, 65535).astype(np.uint16))
        hdu.header["IMAGETYP"] = "LIGHT"
        hdu.header["EXPTIME"] = 60.0
        hdu.writeto(path)
    return paths


def graph(memory_limit: int) -> dict:
    return {
        "format": "starloom.graph", "schema_version": 1,
        "metadata": {"name": "Scaling benchmark"},
        "parameters": {"lights": {"type": "path", "default": "lights/", "binds": ["load.path"]}},
        "nodes": [
            {"id": "load", "type": "io.load_frames", "version": 1, "params": {}},
            {"id": "stack", "type": "stacking.combine", "version": 1,
             "params": {"method": "average", "rejection": "sigma_clip", "sigma_low": 3.0,
                        "sigma_high": 3.0, "maxiters": 3, "normalization": "none",
                        "weights": "none", "memory_limit": memory_limit}},
            {"id": "save", "type": "io.save_fits", "version": 1,
             "params": {"filename": "stack.fits"}}],
        "edges": [{"from": "load.frames", "to": "stack.frames"},
                  {"from": "stack.image", "to": "save.image"}]}


def run_once(graph_file: Path, lights: Path, run_dir: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole ``starloom run``."""
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = ["/usr/bin/time", "-v", str(STARLOOM), "run", str(graph_file), "--param",
           f"lights={lights}", "--run-dir", str(run_dir), "--no-cache"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (.+)", done.stderr).group(1)
    seconds = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return seconds, rss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--memory-limit", type=int, default=128, help="stack node memory_limit, MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "starloom-scaling")
    args = ap.parse_args()
    frames = write_frames(args.dir / "frames", max(args.frames))
    graph_file = args.dir / "graph.json"
    graph_file.write_text(json.dumps(graph(args.memory_limit)))
    for n in args.frames:  # a folder of links to the first n frames
        folder = args.dir / f"first_{n}"
        folder.mkdir(exist_ok=True)
        for f in frames[:n]:
            if not (folder / f.name).exists():
                os.symlink(f, folder / f.name)
    times: dict[int, list[float]] = {n: [] for n in args.frames}
    rss: dict[int, list[float]] = {n: [] for n in args.frames}
    for r in range(args.runs):
        for n in args.frames:  # alternate sizes so load on the machine hits all alike
            t, m = run_once(graph_file, args.dir / f"first_{n}", args.dir / f"run_{n}")
            times[n].append(t)
            rss[n].append(m)
            print(f"  run {r + 1}: {n:4d} frames  {t:6.2f} s  {m:6.0f} MiB", flush=True)
    base = args.frames[0]
    t0, m0 = statistics.median(times[base]), statistics.median(rss[base])
    print(f"\n{SIZE}x{SIZE} uint16 frames, sigma clip 3/3, memory_limit={args.memory_limit} MiB, "
          f"{os.cpu_count()} CPUs, median of {args.runs}; ratios to {base} frames")
    print(f"{'frames':>6} {'wall s':>7} {'s/frame':>8} {'peak RSS MiB':>13} "
          f"{'time ratio':>11} {'frames ratio':>13} {'RSS ratio':>10}")
    for n in args.frames:
        t, m = statistics.median(times[n]), statistics.median(rss[n])
        print(f"{n:6d} {t:7.2f} {t / n:8.3f} {m:13.0f} {t / t0:11.2f} {n / base:13.1f} "
              f"{m / m0:10.2f}")


if __name__ == "__main__":
    main()
