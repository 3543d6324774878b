"""Benchmark: star registration of peerbench frames with known shifts, Starloom against Siril.

One command makes ``--frames`` (50) synthetic 2048x2048 uint16 light frames whose shifts and
rotations are known, registers them with each tool as a whole process, alternating the tools
``--runs`` (3) times, and prints wall time, CPU time (user + sys) and peak RSS (from
``/usr/bin/time -v``) and the accuracy of the transforms each tool found, with the ratios
Starloom / Siril measured in the same run::

    .venv/bin/python benchmarks/bench_register.py                  # 50 x 2048x2048, 3 runs
    .venv/bin/python benchmarks/bench_register.py --frames 6 --size 512 --runs 1   # a quick try

Frames
    The star field of ``../shared/tools/peerbench/make_frames.py`` (sky 1000 ADU, Poisson noise
    at gain 1, 5 ADU read noise, 300 Gaussian stars of sigma 1.2-2.0 px with Pareto peaks,
    8 random hot pixels per frame, a satellite trail in frame N//2+1, uint16 as BITPIX 16 +
    BZERO 32768), except that the stars of frame k sit at ``A_k(p)``: the reference position
    ``p`` rotated by ``theta_k`` about the frame centre and shifted by ``t_k``. Frame 1 is the
    reference (identity); frame 2 has a large, asymmetric shift (+123.4, -67.8) px, so that a
    wrong sign or a flipped row order shows as an error of hundreds of pixels; the others have
    shifts uniform in +-``--max-shift`` px and rotations uniform in +-``--max-rotation`` deg.
    Positions are 0-based pixel centres of the numpy array: x the column, y the row; astropy
    writes numpy row 0 as FITS row 1 (no flip). The frames are written once to
    ``--workdir``/N_SxS/frames and kept (a stamp file names N, size, seed and the truth); each
    run's folder (logs, ``time.txt``) is kept beside them.

Siril 1.0.6 (``siril-cli -s``, its own ``XDG_CONFIG_HOME``, ``SIRIL_SETCPU``/``SIRIL_SETMEM``
    honoured, as ``peerbench/siril_stack.sh``): ``link light`` then ``register light_`` (global
    star alignment with Siril's default homography; ``--siril-transf`` adds ``-transf=``), which
    writes the resampled ``r_light_*.fits`` (16-bit, as the input). Siril 1.0.6 does *not*
    keep the transform of a rotated registration: ``light_.seq`` (sequence file version 3) has
    one line per image and layer, ``R0 <shiftx> <shifty> <fwhm> <weighted_fwhm> <roundness>
    <quality>``, whose shifts are 0 once the images are resampled (only ``-norot``, shifts
    alone and no new images, keeps them there). The matrices are read from what siril-cli
    prints for each image (:func:`parse_siril_log`)::

        Transformation Matrix:
           +1.00002    -0.00464  -121.90305
           +0.00460    +1.00017   -69.59069
           -0.00000    +0.00000    +1.00000
        log: Matching stars in image 2: done
        ...
        log: dx:        +121.90 px

    ``H`` maps this image's star positions onto the reference's (image 1) in Siril's
    coordinates, whose y axis points up from the bottom row (FITS row 1, numpy row 0 as read
    by astropy), so in numpy pixels the transform frame -> reference is ``F H F`` with
    ``F: y -> ny - 1 - y`` (:func:`siril_to_numpy`; checked on frame 2, where ``H`` itself is
    138 px off and ``F inv(H) F`` 250 px; whether Siril's pixel centres are 0- or 1-based moves
    the result by 1e-3 px, as ``H`` is near the identity). Five decimals limit the rotation
    terms to 1e-5 (0.01 px at 1000 px from the centre). An image Siril could not register has no
    block and counts as not registered.

Starloom (``starloom run --no-cache``, default workers = cores): load -> select_reference
    (index 0) -> star_align (its defaults: astroalign asterisms, similarity transform, bicubic
    resampling of every frame into the run's throwaway store, float32 FITS). The transform of
    each frame is in the register node's per-frame diagnostics (``matrix``: frame pixel (x, y)
    -> reference pixel, numpy convention), read from ``artifacts/register.json`` of the run
    folder. ``--profile`` adds a cProfile of one run in one process (``--workers 1``).

Accuracy, per frame against the truth ``inv(A_k)`` (frame -> reference): the shift error is the
distance between where the recovered and the true transform send the frame centre, the rotation
error the difference of the rotation angles, the field error the largest distance over the four
corners and the centre; rms and max over the frames 2..N (a frame a tool did not register
counts as failed, not in the rms). Peak RSS is GNU time's: the largest single process (Siril's
threads share one; Starloom's worker processes are not summed).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STARLOOM = str(Path(sys.executable).with_name("starloom"))
PEERBENCH = Path(os.environ.get("PEERBENCH", ROOT.parent / "shared" / "tools" / "peerbench"))
TIME = "/usr/bin/time"
#: The large, known shift of frame 2 (0-based index 1), numpy pixels (x right, y down).
BIG_SHIFT = (123.4, -67.8)


def make_frames_module():
    """``peerbench/make_frames.py`` as a module (its sky, noise and trail model)."""
    path = PEERBENCH / "make_frames.py"
    if not path.exists():
        raise SystemExit(f"{path} not found (set PEERBENCH to the peerbench folder)")
    spec = importlib.util.spec_from_file_location("peerbench_make_frames", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def similarity(theta_deg: float, tx: float, ty: float, centre: tuple[float, float]) -> np.ndarray:
    """3x3 matrix: rotate by ``theta_deg`` about ``centre`` (x, y), then shift by (tx, ty)."""
    t = np.radians(theta_deg)
    c, s = np.cos(t), np.sin(t)
    r = np.array([[c, -s], [s, c]])
    m = np.eye(3)
    m[:2, :2] = r
    m[:2, 2] = np.asarray(centre) - r @ np.asarray(centre) + (tx, ty)
    return m


def truth_transforms(n: int, shape: tuple[int, int], seed: int, max_shift: float,
                     max_rotation: float) -> np.ndarray:
    """(n, 3, 3) matrices ``A_k`` taking reference pixel (x, y, 1) to frame k's pixel."""
    ny, nx = shape
    rng = np.random.default_rng([seed, 13])
    centre = ((nx - 1) / 2, (ny - 1) / 2)
    out = np.empty((n, 3, 3))
    for k in range(n):
        if k == 0:
            out[k] = np.eye(3)
            continue
        tx, ty = BIG_SHIFT if k == 1 else rng.uniform(-max_shift, max_shift, 2)
        out[k] = similarity(rng.uniform(-max_rotation, max_rotation), tx, ty, centre)
    return out


def star_catalogue(shape: tuple[int, int], nstars: int, margin: float, rng):
    """Reference positions (x, y), peaks and sigmas of make_frames' star model, over the frame
    grown by ``margin`` px on each side (stars shifted in from outside), same density."""
    ny, nx = shape
    area = (nx + 2 * margin) * (ny + 2 * margin) / (nx * ny)
    k = int(round(nstars * area))
    x = rng.uniform(-margin, nx + margin, k)
    y = rng.uniform(-margin, ny + margin, k)
    peaks = np.clip(200.0 * rng.pareto(1.5, k) + 100.0, 100.0, 45000.0)
    sigmas = rng.uniform(1.2, 2.0, k)
    return x, y, peaks, sigmas


def render(shape, x, y, peaks, sigmas, sky: float, r: int = 10) -> np.ndarray:
    """Noiseless sky + Gaussian stars at (x, y) (pixel centres), float64 (ny, nx)."""
    ny, nx = shape
    model = np.full(shape, sky, dtype=np.float64)
    for xs, ys, a, s in zip(x, y, peaks, sigmas):
        x0, x1 = max(int(xs) - r, 0), min(int(xs) + r + 1, nx)
        y0, y1 = max(int(ys) - r, 0), min(int(ys) + r + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        model[y0:y1, x0:x1] += a * np.exp(-((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * s * s))
    return model


def write_frames(folder: Path, truth: np.ndarray, shape: tuple[int, int], seed: int,
                 nstars: int = 300, hot: int = 8) -> None:
    """Write ``light_0001.fits``... into ``folder``: frame k's stars at ``truth[k]`` (p)."""
    from astropy.io import fits
    mf = make_frames_module()
    ny, nx = shape
    rng = np.random.default_rng(seed)
    margin = float(np.abs(truth[:, :2, 2]).max()) + 0.01 * max(shape) + 10
    x, y, peaks, sigmas = star_catalogue(shape, nstars, margin, rng)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(truth)
    for k, a in enumerate(truth):
        fx, fy, _ = a @ np.vstack([x, y, np.ones_like(x)])
        inside = (fx > -12) & (fx < nx + 12) & (fy > -12) & (fy < ny + 12)
        model = render(shape, fx[inside], fy[inside], peaks[inside], sigmas[inside], mf.SKY)
        img = rng.poisson(model * mf.GAIN).astype(np.float64) / mf.GAIN
        img += rng.normal(0.0, mf.READ_NOISE, img.shape)
        hdr = fits.Header()
        hdr["IMAGETYP"] = ("LIGHT", "frame type")
        hdr["EXPTIME"] = (60.0, "[s] exposure time")
        hdr["FRAMENO"] = (k + 1, "synthetic frame index")
        hdr["TRUE-DX"] = (a[0, 2], "[px] shift of the stars (numpy x, incl. rotation)")
        hdr["TRUE-DY"] = (a[1, 2], "[px] shift of the stars (numpy y, incl. rotation)")
        hdr["TRUE-ROT"] = (np.degrees(np.arctan2(a[1, 0], a[0, 0])), "[deg] star rotation")
        img[rng.integers(0, ny, hot), rng.integers(0, nx, hot)] = rng.uniform(2e4, 6.5e4, hot)
        if k == n // 2:
            mf.add_trail(img, rng)
        data = np.clip(np.rint(img), 0, 65535).astype(np.uint16)
        fits.PrimaryHDU(data=data, header=hdr).writeto(folder / f"light_{k + 1:04d}.fits",
                                                        overwrite=True)


def flip_y(ny: int) -> np.ndarray:
    """3x3 matrix of ``y -> ny - 1 - y``: numpy rows (down) <-> Siril's y axis (up)."""
    return np.array([[1.0, 0.0, 0.0], [0.0, -1.0, ny - 1.0], [0.0, 0.0, 1.0]])


def siril_to_numpy(h: np.ndarray, ny: int) -> np.ndarray:
    """Siril's image -> reference homography in numpy pixels (``F H F``, F = :func:`flip_y`)."""
    f = flip_y(ny)
    return f @ np.asarray(h, float) @ f


def accuracy(recovered: np.ndarray, truth: np.ndarray, shape: tuple[int, int]) -> dict:
    """Errors of recovered frame -> reference transforms against ``inv(truth)``.

    Parameters
    ----------
    recovered : ndarray, shape (n, 3, 3)
        Frame pixel (x, y, 1) -> reference pixel, numpy convention; NaN for a frame the tool
        did not register.
    truth : ndarray, shape (n, 3, 3)
        Reference pixel -> frame pixel (:func:`truth_transforms`).
    shape : (ny, nx)

    Returns
    -------
    dict
        Per frame (lists, NaN where not registered): ``shift_px`` (error at the frame
        centre), ``rotation_deg`` and ``field_px`` (largest error over corners and centre);
        over the registered frames 2..n: ``shift_rms``, ``shift_max``, ``rot_rms``,
        ``rot_max``, ``field_max`` and ``failed`` (frames not registered).
    """
    ny, nx = shape
    pts = np.array([[0, 0, nx - 1, nx - 1, (nx - 1) / 2],
                    [0, ny - 1, 0, ny - 1, (ny - 1) / 2], [1, 1, 1, 1, 1]], float)
    shift, rot, field = [], [], []
    for rec, a in zip(recovered, truth):
        true_inv = np.linalg.inv(a)
        frame_pts = a @ pts  # where the reference's corners and centre are in the frame
        d = np.hypot(*((rec @ frame_pts)[:2] - (true_inv @ frame_pts)[:2]))
        shift.append(float(d[-1]))
        field.append(float(d.max()))
        rot.append(float(np.degrees(np.arctan2(rec[1, 0], rec[0, 0])
                                    - np.arctan2(true_inv[1, 0], true_inv[0, 0]))))
    s, r, f = (np.array(v[1:]) for v in (shift, rot, field))
    ok = np.isfinite(s)
    if not ok.any():
        return {"shift_px": shift, "rotation_deg": rot, "field_px": field, "failed": len(s),
                **dict.fromkeys(("shift_rms", "shift_max", "rot_rms", "rot_max", "field_max"),
                                float("nan"))}
    s, r, f = s[ok], r[ok], f[ok]
    return {"shift_px": shift, "rotation_deg": rot, "field_px": field,
            "shift_rms": float(np.sqrt(np.mean(s ** 2))), "shift_max": float(s.max()),
            "rot_rms": float(np.sqrt(np.mean(r ** 2))), "rot_max": float(np.abs(r).max()),
            "field_max": float(f.max()), "failed": int((~ok).sum())}


def parse_siril_log(text: str, n: int, ny: int) -> np.ndarray:
    """Siril 1.0.6's image -> reference transforms from its ``register`` output, numpy pixels.

    Siril 1.0.6 does not keep the homography of a rotated registration in the sequence file
    (its ``R`` lines there hold shifts, 0 for resampled images, FWHM, roundness, quality); it
    prints each image's matrix to stdout as ``Transformation Matrix:`` and three rows, then
    ``log: Matching stars in image N: done`` and ``log: dx: ...``/``dy:`` (= minus the matrix
    translation, checked here because two threads may interleave their lines). The reference
    (image 1) is the identity; a frame without a consistent block stays NaN.
    """
    out = np.full((n, 3, 3), np.nan)
    out[0] = np.eye(3)
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "Transformation Matrix:":
            i += 1
            continue
        try:
            h = np.array([[float(v) for v in lines[i + j].split()] for j in (1, 2, 3)])
            tail = lines[i + 4:i + 20]
            k = next(int(t.split("image ")[1].split(":")[0]) for t in tail if "Matching stars in image" in t)
            dx = next(float(t.split()[-2]) for t in tail if t.startswith("log: dx:"))
            dy = next(float(t.split()[-2]) for t in tail if t.startswith("log: dy:"))
        except (ValueError, IndexError, StopIteration):
            i += 1
            continue
        if h.shape == (3, 3) and 1 <= k <= n and abs(dx + h[0, 2]) < 0.02 and abs(dy + h[1, 2]) < 0.02:
            out[k - 1] = siril_to_numpy(h, ny)
        i += 4
    return out


def starloom_transforms(run_dir: Path, n: int) -> np.ndarray:
    """The register node's per-frame ``matrix`` (frame -> reference, numpy pixels), (n, 3, 3)."""
    diag = json.loads((run_dir / "artifacts" / "register.json").read_text())["frames"]
    out = np.full((n, 3, 3), np.nan)
    for k in range(n):
        info = diag.get(f"light_{k + 1:04d}", {})
        if "matrix" in info:
            out[k] = np.asarray(info["matrix"], float)
    return out


GRAPH = {
    "format": "starloom.graph", "schema_version": 1,
    "parameters": {"lights": {"type": "path", "default": "lights/", "binds": ["load.path"],
                              "description": "folder of light frames"}},
    "nodes": [{"id": "load", "type": "io.load_frames", "version": 1, "params": {}},
              {"id": "reference", "type": "registration.select_reference", "version": 1,
               "params": {"method": "index", "index": 0}},
              {"id": "register", "type": "registration.star_align", "version": 1, "params": {}}],
    "edges": [{"from": "load.frames", "to": "reference.frames"},
              {"from": "load.frames", "to": "register.frames"},
              {"from": "reference.reference", "to": "register.reference"}]}


def siril_script(frames: Path, seq: Path, transf: str | None) -> str:
    """The siril-cli script: link the frames, register them (global star alignment)."""
    lines = ["requires 1.0.0"]
    if os.environ.get("SIRIL_SETMEM"):
        lines.append(f"setmem {os.environ['SIRIL_SETMEM']}")
    if os.environ.get("SIRIL_SETCPU"):
        lines.append(f"setcpu {os.environ['SIRIL_SETCPU']}")
    opt = f" -transf={transf}" if transf else ""
    lines += ["setext fits", f"cd {frames}", f"link light -out={seq}", f"cd {seq}",
              f"register light_{opt}", "close"]
    return "\n".join(lines) + "\n"


def timed(cmd: list[str], out: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` (under ``/usr/bin/time -v`` when present); wall, CPU s, peak RSS MB, stdout."""
    out.mkdir(parents=True, exist_ok=True)
    tv = out / "time.txt"
    full = [TIME, "-v", "-o", str(tv), *cmd] if os.path.exists(TIME) else cmd
    t0 = time.perf_counter()
    done = subprocess.run(full, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    (out / "stdout.txt").write_text(done.stdout)
    (out / "stderr.txt").write_text(done.stderr)
    if done.returncode:
        raise SystemExit(f"{cmd[0]} failed (rc {done.returncode}); see {out}/stderr.txt:\n"
                         + done.stderr[-1500:])
    res = {"wall": wall, "cpu": float("nan"), "rss_mb": float("nan"), "stdout": done.stdout}
    if tv.exists():
        fields = dict(line.strip().rsplit(": ", 1) for line in tv.read_text().splitlines()
                      if ": " in line)
        res["cpu"] = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
        res["rss_mb"] = int(fields["Maximum resident set size (kbytes)"]) / 1024
    return res


def run_siril(frames: Path, out: Path, n: int, ny: int, transf: str | None) -> dict:
    seq = out / "seq"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "register.ssf").write_text(siril_script(frames, seq, transf))
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["XDG_CONFIG_HOME"] = str(out / ".siril-config")  # the user's settings stay untouched
    os.makedirs(env["XDG_CONFIG_HOME"])
    res = timed([os.environ.get("SIRIL_BIN", "siril-cli"), "-d", str(out), "-s",
                 str(out / "register.ssf")], out, env)
    res["transforms"] = parse_siril_log(res.pop("stdout"), n, ny)
    return res


def run_starloom(frames: Path, out: Path, n: int, workers: int | None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    graph = out.parent / "register.json"
    graph.write_text(json.dumps(GRAPH, indent=1))
    extra = ["--workers", str(workers)] if workers else []
    res = timed([STARLOOM, "run", str(graph), "--param", f"lights={frames}", "--run-dir",
                 str(out / "run"), "--no-cache", *extra], out)
    res.pop("stdout")
    res["transforms"] = starloom_transforms(out / "run", n)
    return res


def ensure_frames(folder: Path, n: int, size: int, seed: int, max_shift: float,
                  max_rotation: float) -> np.ndarray:
    """The truth; (re)writes the frames unless the stamp says they are these ones."""
    truth = truth_transforms(n, (size, size), seed, max_shift, max_rotation)
    stamp = folder.parent / "frames.stamp"
    key = f"{n} {size} {seed} {max_shift} {max_rotation} {truth.tobytes().hex()[:64]}"
    if not (stamp.exists() and stamp.read_text() == key):
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        write_frames(folder, truth, (size, size), seed)
        stamp.write_text(key)
        print(f"wrote {n} frames {size}x{size} to {folder} in {time.perf_counter() - t0:.0f} s")
    return truth


def profile_starloom(frames: Path, out: Path, top: int = 30) -> None:
    """cProfile of one Starloom run in one process (``--workers 1``); prints the top entries."""
    import pstats
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    prof, graph = out / "starloom.prof", out / "register.json"
    graph.write_text(json.dumps(GRAPH, indent=1))
    res = timed([sys.executable, "-m", "cProfile", "-o", str(prof), STARLOOM, "run", str(graph),
                 "--param", f"lights={frames}", "--run-dir", str(out / "run"), "--no-cache",
                 "--workers", "1"], out)
    if "Finished:" not in res["stdout"]:  # cProfile hides the exit status
        raise SystemExit(f"the profiled run failed; see {out}/stderr.txt")
    stats = pstats.Stats(str(prof))
    for key in ("cumulative", "tottime"):
        print(f"\n== cProfile of one Starloom run (--workers 1), by {key} ({prof}) ==")
        stats.sort_stats(key).print_stats(top)


def report(results: dict, truth: np.ndarray, shape, args) -> None:
    """Print the table: median times and the accuracy of each tool, ratios Starloom / Siril."""
    print(f"\n== registration of {args.frames} frames {shape[1]}x{shape[0]} (uint16, seed "
          f"{args.seed}, shifts +-{args.max_shift} px, rotations +-{args.max_rotation} deg, "
          f"frame 2 shifted {BIG_SHIFT}), {os.cpu_count()} cores, median of {args.runs} runs, "
          f"load average {os.getloadavg()[0]:.1f} ==")
    print("| tool | wall s | runs, wall s | CPU s (user+sys) | peak RSS MB | shift err rms / max px "
          "| rotation err rms / max deg | field err max px | not registered |")
    print("|---|---|---|---|---|---|---|---|---|")
    med = {}
    for name, runs in results.items():
        acc = [accuracy(r["transforms"], truth, shape) for r in runs]
        same = all(np.allclose(a["shift_px"], acc[0]["shift_px"], equal_nan=True) for a in acc)
        a = acc[-1]
        m = {k: statistics.median(r[k] for r in runs) for k in ("wall", "cpu", "rss_mb")}
        med[name] = {**m, **a}
        walls = ", ".join(f"{r['wall']:.2f}" for r in runs)
        print(f"| {name} | {m['wall']:.2f} | {walls} | "
              f"{m['cpu']:.1f} | {m['rss_mb']:.0f} | {a['shift_rms']:.4f} / {a['shift_max']:.4f} | "
              f"{a['rot_rms']:.5f} / {a['rot_max']:.5f} | {a['field_max']:.3f} | {a['failed']}"
              + ("" if same else " (accuracy differs between runs)") + " |")
    s, q = med.get("Starloom"), med.get("Siril")
    if s and q:
        r = {k: s[k] / q[k] if q[k] else float("nan")
             for k in ("wall", "cpu", "rss_mb", "shift_rms", "rot_rms", "field_max")}
        print(f"| Starloom / Siril | {r['wall']:.2f} | | {r['cpu']:.2f} | {r['rss_mb']:.2f} | "
              f"{r['shift_rms']:.2f} (rms) | {r['rot_rms']:.2f} (rms) | {r['field_max']:.2f} | |")
    big = {name: v["shift_px"][1] for name, v in med.items()}
    print(f"frame 2 (shift {BIG_SHIFT} px): centre error " +
          ", ".join(f"{k} {v:.4f} px" for k, v in big.items()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--size", type=int, default=2048, help="frame side, px")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-shift", type=float, default=40.0, help="px, uniform +-")
    ap.add_argument("--max-rotation", type=float, default=0.3, help="deg, uniform +-")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_register"))
    ap.add_argument("--workers", type=int, default=None,
                    help="Starloom's --workers (default: its own, one per core)")
    ap.add_argument("--siril-transf", default=None,
                    choices=["shift", "similarity", "affine", "homography"],
                    help="Siril's -transf= (default: Siril's own, homography)")
    ap.add_argument("--tools", default="siril,starloom", help="comma-separated")
    ap.add_argument("--profile", action="store_true",
                    help="also a cProfile of one Starloom run in one process")
    args = ap.parse_args(argv)
    shape = (args.size, args.size)
    base = args.workdir / f"{args.frames}_{args.size}x{args.size}"
    frames = base / "frames"
    truth = ensure_frames(frames, args.frames, args.size, args.seed, args.max_shift,
                          args.max_rotation)
    tools = {"Siril": lambda out: run_siril(frames, out, args.frames, args.size, args.siril_transf),
             "Starloom": lambda out: run_starloom(frames, out, args.frames, args.workers)}
    chosen = [t for t in tools if t.lower() in args.tools.lower().split(",")]
    results = {t: [] for t in chosen}
    for i in range(args.runs):
        for name in chosen:
            res = tools[name](base / name.lower() / f"run{i + 1}")
            results[name].append(res)
            print(f"  {name:9} run {i + 1}: wall {res['wall']:6.2f} s  CPU {res['cpu']:6.1f} s  "
                  f"peak RSS {res['rss_mb']:5.0f} MB", flush=True)
    report(results, truth, shape, args)
    if args.profile:
        profile_starloom(frames, base / "profile")


if __name__ == "__main__":
    main()
