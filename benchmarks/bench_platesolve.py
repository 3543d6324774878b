"""Plate solving: Starloom's ``plate_solve`` against plain ``solve-field``, side by side.

    .venv/bin/python benchmarks/bench_platesolve.py [--timeout 300] [--cases a,b,...]

Both tools use the same index files (Debian ``astrometry-data-tycho2``, /usr/share/astrometry).
``solve-field`` runs as a user would run it on the image file (``--no-plots --overwrite -D tmp``,
its own image2xy source extraction, no hints, the cpulimit of /etc/astrometry.cfg capped by
``--timeout``); Starloom runs as its plate_solve node does (`plate_solve` on the image with
the header hints, ``timeout_s=--timeout``; DAOFIND and image2xy run concurrently inside; the
libraries are imported once before the first image, as in a running pipeline). The two tools
take turns going first, image by image. For each image: solved or not, wall time, and the
error of the solved image centre against the truth (the simulated WCS, or the WCS the file
carries; otherwise against the other tool's solution, marked ``*``).

Images: the real frames of ../shared/data (randomsky, pleiades JPEG, the DSLR Bayer crop, a
Stargate frame, a Seestar M 94 frame) and simulated wide fields, rendered from the Tycho-2 stars
of the index files (`render_sky_field`): 10, 30 and 64 degree fields in the TAN, ZEA and ARC
projections with barrel distortion and stars elongated towards the corners, as a wide-angle or
all-sky lens shows them.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from starloom.astro.simulate_sky import render_sky_field

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class Case:
    name: str
    path: Path  # the file solve-field is given
    data: np.ndarray  # what Starloom detects stars on (2-D)
    header: fits.Header
    truth: WCS | None
    note: str


def _real_cases(tmp: Path) -> list[Case]:
    cases = []

    def fits_case(name, path, note, truth_from_header=False):
        data, hdr = fits.getdata(path, header=True)
        truth = None
        if truth_from_header:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                truth = WCS(hdr).celestial
            truth.pixel_shape = (data.shape[-1], data.shape[-2])
        cases.append(Case(name, path, np.asarray(data, dtype=np.float64), hdr, truth, note))

    p = DATA / "platesolve" / "randomsky.fits"
    if p.exists():
        fits_case("randomsky", p, "1280x1024, 2.68\"/px, 0.95 deg", truth_from_header=True)
    p = DATA / "platesolve" / "pleiades.jpg"
    if p.exists():
        from PIL import Image

        rgb = np.asarray(Image.open(p).convert("L"), dtype=np.float64)[::-1]  # FITS rows go up
        cases.append(Case("pleiades", p, rgb, fits.Header(), None, "636x477 JPEG, ~1.4 deg"))
    p = DATA / "dslr_bayer" / "unsolved.fits"
    if p.exists():
        s = DATA / "dslr_bayer" / "solved.fits"
        data, hdr = fits.getdata(p, header=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            truth = WCS(fits.getheader(s)).celestial
        truth.pixel_shape = (data.shape[1], data.shape[0])
        cases.append(Case("dslr_bayer", p, np.asarray(data, float), hdr, truth,
                          "700x700 Bayer mosaic, 10.3\"/px, 2 deg"))
    p = DATA / "stargate" / "StarGateCluster_030_sec_1x1_0001.fit"
    if p.exists():
        data, hdr = fits.getdata(p, header=True)
        hdr = hdr.copy()
        hdr["RA"], hdr["DEC"] = "12 35 00", "-12 00 00"  # a user's hint; the file has none
        hp = tmp / "stargate.fits"
        fits.writeto(hp, data, hdr, overwrite=True)
        cases.append(Case("stargate", hp, np.asarray(data, float), hdr, None,
                          "752x581, 1.7\"/px, 0.36 deg, RA/DEC hint added"))
    files = sorted((DATA / "seestar_m94").glob("*.fit"))
    if files:
        data, hdr = fits.getdata(files[0], header=True)
        cases.append(Case("seestar_m94", files[0], np.asarray(data, float), hdr, None,
                          "1080x1920 GRBG, RA/DEC keywords, 0.7 deg"))
    return cases


SIMULATED = {
    # name: (centre, width deg, projection, barrel, elongation, rotation, FWHM px, header hints)
    "sim10_tan": ((83.8, -5.4), 10.0, "TAN", 0.01, 1.5, 20.0, 2.2, False),
    "sim30_zea": ((280.0, 30.0), 30.0, "ZEA", 0.03, 2.0, -35.0, 2.2, False),
    "sim64_arc": ((300.0, 35.0), 64.0, "ARC", 0.08, 4.0, 10.0, 3.5, False),
    "sim64_tan": ((120.0, -40.0), 64.0, "TAN", 0.08, 2.5, 75.0, 2.2, False),
    # the case: a camera header with RA/DEC (1 deg off) and FOCALLEN + XPIXSZ
    "sim64_arc_hdr": ((300.0, 35.0), 64.0, "ARC", 0.08, 4.0, 10.0, 3.5, True),
    "sim100_arc_hdr": ((10.0, 60.0), 100.0, "ARC", 0.05, 3.0, 0.0, 3.0, True),
}


def _sim_cases(tmp: Path, names) -> list[Case]:
    cases = []
    for name in names:
        center, width, proj, barrel, elong, rot, fwhm, hinted = SIMULATED[name]
        img, w, n = render_sky_field(center, width, projection=proj, barrel=barrel, fwhm_px=fwhm,
                                     elongation=elong, rotation_deg=rot, seed=len(name))
        hdr = fits.Header()
        if hinted:  # 14 mm lens; pixel size giving the simulated central scale
            scale = width * 3600.0 / img.shape[1]
            hdr.update(RA=center[0] + 1.0, DEC=center[1] - 0.5, FOCALLEN=14.0,
                       XPIXSZ=round(scale * 14.0 / 206.264806, 3))
        path = tmp / f"{name}.fits"
        fits.writeto(path, img, hdr, overwrite=True)
        cases.append(Case(name, path, img.astype(np.float64), hdr, w,
                          f"simulated {width:g} deg {proj}, barrel {barrel:g}, elongation {elong:g}, "
                          f"{n} Tycho-2 stars" + (", RA/DEC + FOCALLEN header" if hinted else "")))
    return cases


def run_solve_field(case: Case, out: Path, timeout: float):
    """Plain solve-field on the file: ``(solved, wall s, WCS or None, n sources)``."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["solve-field", "--no-plots", "--overwrite", "-D", str(out), "--cpulimit",
           str(int(timeout)), str(case.path)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        log, _ = proc.communicate()
    dt = time.monotonic() - t0
    stem = case.path.stem
    m = re.search(r"simplexy: found (\d+) sources", log)
    nsrc = int(m.group(1)) if m else None
    wcs_file = out / f"{stem}.wcs"
    if not (out / f"{stem}.solved").exists() or not wcs_file.exists():
        return False, dt, None, nsrc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(fits.getheader(wcs_file))
    w.pixel_shape = (case.data.shape[-1], case.data.shape[-2])
    return True, dt, w, nsrc


def run_starloom(case: Case, timeout: float):
    """Starloom as its plate_solve node runs it: ``(solved, wall s, WCS, n stars, path/err)``.

    The node hands the image to `plate_solve`, which runs DAOFIND (`detect_stars`, the node's
    diagnostics) and image2xy concurrently and solves on whichever list each attempt needs.
    """
    from starloom.astro.hints import hints_from_header
    from starloom.astro.platesolve import PlateSolveError, plate_solve

    t0 = time.monotonic()
    data = case.data if case.data.ndim == 2 else case.data.mean(axis=0)
    try:
        res = plate_solve(data, hints=hints_from_header(case.header), timeout_s=timeout,
                          detect_kwargs={"fwhm": 3.0, "threshold_sigma": 5.0})
    except PlateSolveError as exc:
        n = (getattr(exc, "detection", None) or {}).get("n_stars")
        return False, time.monotonic() - t0, None, n, str(exc)[:300]
    return True, time.monotonic() - t0, res.wcs, len(res.stars), "; ".join(res.attempts)


def centre_error_arcmin(w: WCS | None, ref: WCS | None, shape) -> float | None:
    if w is None or ref is None:
        return None
    ny, nx = shape[-2:]
    a = w.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
    b = ref.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
    return float(a.separation(b).arcmin)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--tools", default="solve-field,starloom")
    args = ap.parse_args(argv)
    import starloom.astro.platesolve  # noqa: F401  (the code measured is the code at start)
    import starloom.astro.stars  # noqa: F401
    from photutils.background import Background2D  # noqa: F401  (imported once per process)
    from photutils.detection import DAOStarFinder  # noqa: F401
    if shutil.which("solve-field") is None:
        sys.exit("solve-field not installed")
    wanted = [c for c in args.cases.split(",") if c]
    tmp = Path(tempfile.mkdtemp(prefix="bench-platesolve-"))
    cases = _real_cases(tmp) + _sim_cases(tmp, [n for n in SIMULATED if not wanted or n in wanted])
    cases = [c for c in cases if not wanted or c.name in wanted]
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| image | what | solve-field | s | centre err ' | Starloom | s | centre err ' | "
          "sources (solve-field / Starloom) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, c in enumerate(cases):
        sf = sl = (None, None, None, None)
        starloom_first = i % 2 == 1  # take turns: neither tool always runs on a cooler machine
        if "starloom" in args.tools and starloom_first:
            sl = run_starloom(c, args.timeout)
        if "solve-field" in args.tools:
            sf = run_solve_field(c, tmp / c.name, args.timeout)
        if "starloom" in args.tools and not starloom_first:
            sl = run_starloom(c, args.timeout)
        ref_sf = c.truth or sl[2]
        ref_sl = c.truth or sf[2]
        mark = "" if c.truth is not None else "*"
        e_sf, e_sl = centre_error_arcmin(sf[2], ref_sf, c.data.shape), centre_error_arcmin(sl[2], ref_sl, c.data.shape)

        def cell(solved, dt, err):
            if solved is None:
                return "-", "-", "-"
            return ("yes" if solved else "**no**"), f"{dt:.1f}", ("" if err is None else f"{err:.2f}{mark}")

        print(f"| {c.name} | {c.note} | " + " | ".join(cell(sf[0], sf[1], e_sf)) + " | "
              + " | ".join(cell(sl[0], sl[1], e_sl)) + f" | {sf[3]} / {sl[3]} |", flush=True)
        if len(sl) > 4 and sl[4]:
            print(f"<!-- {c.name} starloom: {sl[4]} -->", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
