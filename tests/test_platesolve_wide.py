"""Plate solving of wide fields (issue 14, second pass): the hint radius, image2xy sources.

The wide field is simulated from the real Tycho-2 stars of the installed index files
(`starloom.astro.simulate_sky.render_sky_field`: ARC projection, barrel distortion,
stars elongated towards the corners), so the true centre is known. Solver tests skip when
astrometry.net or the Debian Tycho-2 indexes are not installed.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from starloom.astro.astrometry_net import extract_sources, solver_order
from starloom.astro.catalogs import find_index_files
from starloom.astro.hints import hints_from_header
from starloom.astro.platesolve import plate_solve
from starloom.astro.platesolve_plan import WIDE_FIRST_SHARE, paths_to_try, plan_attempts
from starloom.astro.simulate_sky import render_sky_field
from starloom.astro.stars import detect_stars


HAVE_SOLVER = shutil.which("solve-field") is not None and bool(find_index_files())
needs_solver = pytest.mark.skipif(not HAVE_SOLVER, reason="solve-field / Tycho-2 indexes not installed")
CENTER = (300.0, 35.0)  # Cygnus


@pytest.fixture(scope="module")
def wide_field():
    """A 64 x 43 deg ARC field, 600x400 px (384"/px), barrel 8 %, stars 4x longer at corners."""
    if not find_index_files():
        pytest.skip("Tycho-2 index files not installed")
    img, wcs, n = render_sky_field(CENTER, 64.0, shape=(400, 600), projection="ARC", barrel=0.08,
                                   elongation=4.0, fwhm_px=2.5, rotation_deg=10.0, seed=3)
    assert n > 500
    return img.astype(np.float64), wcs


def test_paths_and_plan():
    # a hint without a scale ends with the wide search; with a scale it does not
    assert paths_to_try(True, None, None, 1000, hinted=True) == ["stock", "small-field", "wide"]
    assert paths_to_try(False, 100.0, 120.0, 1000, hinted=True) == ["stock"]
    assert paths_to_try(False, None, None, 1000, hinted=False) == ["wide", "stock"]
    # blind: a short wide search on image2xy's list first, then the usual ladder
    assert plan_attempts(["wide", "stock"], ["daofind", "image2xy"]) == [
        ("wide", "image2xy", WIDE_FIRST_SHARE), ("stock", "daofind", 0.5), ("stock", "image2xy", 1.0)]
    # DAOFIND's list on every path first (the small-field path never takes image2xy's)
    plan = plan_attempts(["stock", "small-field", "wide"], ["daofind", "image2xy"])
    assert plan == [("stock", "daofind", 0.5), ("small-field", "daofind", 1.0), ("wide", "daofind", 0.5),
                    ("stock", "image2xy", 1.0), ("wide", "image2xy", 1.0)]
    assert plan_attempts(["small-field", "stock"], ["image2xy"]) == [("stock", "image2xy", 1.0)]
    assert plan_attempts(["stock"], ["daofind"]) == [("stock", "daofind", 1.0)]


_SYSTEM_PYTHON = "/usr/bin/python3"


def _astrometry_net_order(folder, x, y, flux) -> np.ndarray:
    """The order astrometry.net's own tools give a source list, as solve-field runs them
    (``removelines.py``, ``tabsort -d FLUX``, ``uniformize.py -n 10``): the oracle."""
    from astropy.table import Table

    src = folder / "in.xyls"
    Table({"X": x, "Y": y, "FLUX": flux}).write(src, format="fits", overwrite=True)
    steps = [[_SYSTEM_PYTHON, "-m", "astrometry.util.removelines", src, folder / "a.xyls"],
             ["tabsort", "-d", "FLUX", folder / "a.xyls", folder / "b.xyls"],
             [_SYSTEM_PYTHON, "-m", "astrometry.util.uniformize", "-n", "10",
              folder / "b.xyls", folder / "c.xyls"]]
    for cmd in steps:
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    out = Table.read(folder / "c.xyls", format="fits")
    where = {(a, b): i for i, (a, b) in enumerate(zip(x, y))}  # positions are unique
    return np.array([where[(a, b)] for a, b in zip(out["X"], out["Y"])], dtype=int)


def _has_astrometry_net_scripts() -> bool:
    if shutil.which("tabsort") is None or not Path(_SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run([_SYSTEM_PYTHON, "-c", "import astrometry.util.removelines, "
                            "astrometry.util.uniformize"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _has_astrometry_net_scripts(),
                    reason="astrometry.net's removelines.py/uniformize.py not installed")
def test_solver_order_is_astrometry_nets_removelines_and_uniformize(tmp_path):
    """The order solve-field would search (its Python helpers, run in-process instead)."""
    rng = np.random.default_rng(0)
    for trial in range(6):
        n = int(rng.integers(20, 600))
        x, y = np.round(rng.uniform(1, 1200, n), 2), np.round(rng.uniform(1, 800, n), 2)
        flux = rng.pareto(1.5, n)
        if trial % 2:  # a bad column and a trail along a row
            x[:30], y[30:60] = 333.0 + rng.uniform(-0.3, 0.3, 30), 401.0
        assert np.array_equal(solver_order(x, y, flux),
                              _astrometry_net_order(tmp_path, x, y, flux)), trial
    # known truth: a bad column of 30 among 200 stars is dropped, and when the 50 brightest
    # crowd one corner, the first 8 searched still lie in the 8 cells (4 x 2) of the field
    x, y = rng.uniform(0, 1200, 200), rng.uniform(0, 800, 200)
    x[:50], y[:50] = rng.uniform(0, 100, 50), rng.uniform(0, 100, 50)
    x[50:80] = 700.0
    flux = np.r_[np.linspace(1000, 900, 50), np.ones(150)]
    order = solver_order(x, y, flux)
    assert len(order) == 170 and not np.any(np.isin(order, np.arange(50, 80)))
    kx, ky = x[order], y[order]  # cells of the kept sources' bounding box, 4 x 2
    cx = np.clip(np.floor((kx - kx.min()) / np.ptp(kx) * 4), 0, 3)
    cy = np.clip(np.floor((ky - ky.min()) / np.ptp(ky) * 2), 0, 1)
    assert len(set(zip(cx[:8], cy[:8]))) == 8
    assert order[0] == 0  # the brightest star first


@pytest.mark.skipif(shutil.which("image2xy") is None, reason="image2xy not installed")
def test_extract_sources_positions_are_zero_based(tmp_path):
    rng = np.random.default_rng(1)
    ny, nx = 100, 120
    xs, ys = rng.uniform(10, nx - 10, 8), rng.uniform(10, ny - 10, 8)
    yy, xx = np.mgrid[:ny, :nx]
    img = 100.0 + rng.normal(0, 2.0, (ny, nx))
    for i, (x, y) in enumerate(zip(xs, ys)):
        img += (2000.0 + 300 * i) * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.3**2)
    x, y, flux = extract_sources(img, tmp_path, 30.0)
    assert len(x) >= 8 and np.all(np.diff(flux) <= 0)  # brightest first
    d = np.hypot(x[:, None] - xs[None], y[:, None] - ys[None]).min(axis=0)
    assert np.all(d < 0.2), d  # 0-based like numpy indices, not astrometry.net's 1-based


@needs_solver
def test_wide_field_with_header_hints_solves(wide_field):
    """The issue's case: RA/DEC (1 deg off) and FOCALLEN/XPIXSZ in the header, a 64 deg field.

    With the hint radius of 2 deg alone astrometry.net rejects every quad (their centres lie
    up to 38 deg from the hint) and the solve failed; the radius now covers the field.
    """
    img, truth = wide_field
    scale = 64.0 * 3600 / 600
    hints = hints_from_header(fits.Header({"RA": CENTER[0] + 1.0, "DEC": CENTER[1] - 0.5,
                                           "FOCALLEN": 14.0, "XPIXSZ": scale * 14 / 206.264806}))
    stars, _ = detect_stars(img)
    t0 = time.monotonic()
    res = plate_solve(stars, image_shape=img.shape, hints=hints, timeout_s=60, image=img)
    print(f"wide field: {time.monotonic() - t0:.1f} s, {res.attempts}")
    true_centre = truth.pixel_to_world(299.5, 199.5)
    assert res.center.separation(true_centre).arcmin < 15  # 2.3 px of 384"/px
    assert res.pixel_scale_arcsec == pytest.approx(scale, rel=0.1)
    assert res.n_matched >= 10 and res.path == "stock"
    # every matched catalogue star lies within 3 px of its image star under the solution
    assert np.median(res.matches["sep_arcsec"]) < 1.5 * scale


@needs_solver
def test_blind_image_solve_makes_both_lists_concurrently(wide_field):
    """An image in: DAOFIND (for the caller) and image2xy run together, the blind wide
    search solves on image2xy's list, and the DAOFIND table is the one `detect_stars` gives."""
    img, truth = wide_field
    res = plate_solve(img, timeout_s=60, detect_kwargs={"fwhm": 3.0})
    stars, metrics = detect_stars(img, fwhm=3.0)
    assert res.detection["n_stars"] == metrics["n_stars"] == len(res.stars)
    assert np.allclose(res.stars["x"], stars["x"]) and np.allclose(res.stars["y"], stars["y"])
    assert any(a.startswith("DAOFIND: ") for a in res.attempts)
    assert any(a.startswith("image2xy: ") for a in res.attempts)
    solved = [a for a in res.attempts if "solved" in a]
    assert solved and solved[0].startswith("wide (image2xy)")
    centre = SkyCoord(*truth.wcs.crval, unit="deg")
    assert res.center.separation(centre).arcmin < 15


@needs_solver
def test_wide_field_from_image2xy_sources_alone(wide_field):
    """With no usable DAOFIND list the image2xy sources (plain solve-field's) solve it blind."""
    img, truth = wide_field
    from astropy.table import Table

    empty = Table({"x": [0.0], "y": [0.0], "flux": [1.0]})  # too few stars: DAOFIND unusable
    res = plate_solve(empty, image_shape=img.shape, timeout_s=60, image=img)
    assert any(a.startswith(("wide (image2xy)", "stock (image2xy)")) and "solved" in a
               for a in res.attempts)
    centre = SkyCoord(*truth.wcs.crval, unit="deg")
    assert res.center.separation(centre).arcmin < 15
