"""Optics (issue 14): focus sweep V-curve and vignetting, on simulated truth and real frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from conftest import shared

from starloom.astro.errors import StarloomError
from starloom.astro.focus import fit_vcurve, focus_position, hyperbola, star_sizes
from starloom.astro.vignetting import measure_vignetting
from starloom.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "example_graphs"


def _star(shape, x, y, hfr, flux, donut=False):
    """A Gaussian star of half-flux radius ``hfr`` (sigma = hfr / 1.1774), or a ring (donut)."""
    yy, xx = np.indices(shape, dtype=float)
    r = np.hypot(xx - x, yy - y)
    if donut:  # a ring of radius ~hfr, width hfr/3
        img = np.exp(-0.5 * ((r - hfr) / (hfr / 3)) ** 2)
    else:
        sigma = hfr / np.sqrt(2 * np.log(2))
        img = np.exp(-0.5 * (r / sigma) ** 2)
    return flux * img / img.sum()


def _sweep(best=23.4, positions=np.arange(10, 38, 2.0), seed=3):
    rng = np.random.default_rng(seed)
    frames = []
    for p in positions:
        size = float(hyperbola(p, 1.8, 3.0, 3.0, best))
        img = 300.0 + rng.normal(0, 3.0, (128, 128))
        for x, y in ((28, 28), (100, 36), (56, 100)):
            img += _star(img.shape, x, y, size, 4e4, donut=size > 6)
        frames.append(img)
    return positions, frames


def test_star_sizes_hfr_of_a_gaussian_is_its_known_value():
    img = 100.0 + _star((80, 80), 40.2, 39.7, 3.0, 5e4)
    stars = star_sizes(img + np.random.default_rng(0).normal(0, 0.5, img.shape))
    assert len(stars) == 1
    assert stars[0]["hfr"] == pytest.approx(3.0, rel=0.05)
    # for a Gaussian FWHM = 2 * sqrt(2 ln 2) sigma = 2 * HFR
    assert stars[0]["fwhm"] == pytest.approx(6.0, rel=0.05)
    assert (stars[0]["x"], stars[0]["y"]) == pytest.approx((40.2, 39.7), abs=0.1)


def test_simulated_sweep_recovers_best_focus_within_one_step():
    positions, frames = _sweep()
    hfr, donut = [], []
    for img in frames:
        stars = star_sizes(img)
        assert len(stars) == 3
        hfr.append(np.median([s["hfr"] for s in stars]))
        donut.append(stars[0]["donut"])
    fit = fit_vcurve(positions, hfr)
    assert abs(fit.best - 23.4) < 2.0  # one step
    assert donut[0] and donut[-1] and not donut[len(donut) // 2]


def test_vcurve_needs_four_points():
    with pytest.raises(StarloomError, match="at least 4"):
        fit_vcurve([1, 2, 3], [3.0, 2.0, 3.0])


def test_focus_position_sources():
    from astropy.io import fits
    h = fits.Header({"FOCPOS": 12345})
    assert focus_position(h, "x_7", 0) == (12345.0, "header:FOCPOS")
    assert focus_position(fits.Header(), "STAR_FOCUS_12", 0) == (12.0, "file name")
    assert focus_position(fits.Header(), "light", 4) == (4.0, "frame order")


def test_real_focus_sweep_best_focus_near_frames_11_12(tmp_path):
    folder = shared("focus_sweep")
    flats = shared("asi120mc", "flat")
    lights = shared("stargate")
    run = tmp_path / "run"
    rc = main(["run", str(EXAMPLES / "optics_report.json"), "--param", f"focus_frames={folder}",
               "--param", f"flats={flats}", "--param", f"lights={lights}", "--run-dir", str(run),
               "--no-cache"])
    assert rc == 0
    table = Table.read(run / "outputs" / "focus.ecsv")
    assert len(table) == 17 and list(table["position"]) == list(range(1, 18))
    assert 11.0 <= table.meta["best_focus"] <= 12.5
    assert table.meta["best_focus_err"] < 0.5
    # the donuts at both ends: HFR measured, FWHM not
    ends = table[[0, 1, 15, 16]]
    assert np.all(ends["donut"]) and np.all(np.isnan(ends["fwhm"]))
    assert np.all(ends["hfr"] > 9)
    best = table[np.argmin(table["hfr"])]
    assert best["position"] in (11, 12) and best["hfr"] < 2.2  # half-flux diameter about 4 px
    assert (run / "artifacts" / "focus" / "focus_curve.png").stat().st_size > 10_000
    vig = Table.read(run / "outputs" / "vignetting.ecsv")
    # the lab flats are flat to several percent (with rolling-shutter bands): no real vignetting
    for corner in ("bottom_left", "bottom_right", "top_left", "top_right"):
        assert abs(vig.meta[f"falloff_{corner}"]) < 10.0
    assert (run / "artifacts" / "vignetting" / "vignetting.png").exists()
    tiles = Table.read(run / "outputs" / "focal_plane.ecsv")
    assert len(tiles) == 6 and tiles.meta["tilt_delta_fwhm"] >= 0
    # the Stargate stars are round: no tile's median star is elongated
    assert np.nanmax(tiles["eccentricity"]) < 0.6
    assert 2.0 < np.nanmedian(tiles["fwhm"]) < 6.0


def test_vignetting_recovers_simulated_centre_and_falloff():
    ny, nx = 300, 400
    yy, xx = np.indices((ny, nx))
    model = 1.0 - 0.5 * ((xx - 220) ** 2 + (yy - 140) ** 2) / 300 ** 2
    flat = 1000 * model + np.random.default_rng(1).normal(0, 5, (ny, nx))
    v = measure_vignetting(flat)
    assert v.centre == pytest.approx((220, 140), abs=1.0)
    assert v.centre_source == "fit"
    box = int(0.05 * ny)
    truth = 100 * (1 - model[:box, :box].mean() / model[140, 220])
    assert v.corner_falloff["bottom_left"] == pytest.approx(truth, abs=0.5)
    assert v.corner_falloff["bottom_left"] > v.corner_falloff["bottom_right"]
    assert v.profile[0] == pytest.approx(1.0, abs=0.01) and v.profile[-1] < 0.7


def test_vignetting_refuses_a_cube():
    with pytest.raises(StarloomError, match="2-D flat"):
        measure_vignetting(np.ones((3, 40, 40)))


def test_focal_plane_recovers_tilt_direction_and_elongation():
    from starloom.astro.focal_plane import focal_plane, measure_sources

    rng = np.random.default_rng(2)
    ny, nx = 300, 400
    img = 100 + rng.normal(0, 2, (ny, nx))
    yy, xx = np.indices((ny, nx))
    for _ in range(150):
        x, y = rng.uniform(10, nx - 10), rng.uniform(10, ny - 10)
        s = (2.5 + 3.0 * x / nx) / 2.3548  # FWHM grows towards +x: a tilt about the y axis
        sx = s * 1.3 if (x > nx / 2 and y > ny / 2) else s  # stretched along x in one quarter
        img += 3000 * np.exp(-0.5 * (((xx - x) / sx) ** 2 + ((yy - y) / s) ** 2))
    stars = measure_sources(img)
    assert len(stars) > 120
    fp = focal_plane(stars, (ny, nx))
    assert abs(fp.tilt["direction_deg"]) < 30  # worse towards +x
    assert fp.tilt["gx"] == pytest.approx(3.0 / nx, rel=0.35)
    t = fp.tiles
    quarter = t[(t["ix"] >= 2) & (t["iy"] >= 2)]
    rest = t[(t["ix"] < 2)]
    e_true = np.sqrt(1 - 1 / 1.3 ** 2)
    assert np.allclose(quarter["eccentricity"], e_true, atol=0.06)
    assert np.all(np.abs(quarter["orientation"]) < 5)
    assert np.all(rest["eccentricity"] < 0.2)


def _sip_wcs(a20=2e-6, b02=-1e-6, crpix=(101.0, 81.0)):
    from astropy.wcs import WCS, Sip

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crpix = list(crpix)
    w.wcs.crval = [150.0, 20.0]
    w.wcs.cd = [[-2.8e-4, 0], [0, 2.8e-4]]
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0], b[0, 2] = a20, b02
    w.sip = Sip(a, b, None, None, w.wcs.crpix)
    return w


def test_distortion_map_equals_the_sip_polynomials_and_averages_with_scatter():
    from starloom.astro.distortion import distortion_map, sip_displacement

    w = _sip_wcs()
    x, y = np.array([0.0, 100.0, 199.0]), np.array([0.0, 80.0, 159.0])
    dx, dy = sip_displacement(w, x, y)
    u, v = x + 1 - 101.0, y + 1 - 81.0  # SIP: u, v relative to CRPIX (Shupe et al. 2005)
    assert np.allclose(dx, 2e-6 * u ** 2) and np.allclose(dy, -1e-6 * v ** 2)
    dm = distortion_map([_sip_wcs(a20=1e-6), _sip_wcs(a20=3e-6)], (160, 200), grid=10)
    one = distortion_map([_sip_wcs()], (160, 200), grid=10)
    assert np.allclose(dm.dx, one.dx) and np.allclose(dm.dy, one.dy)  # mean of 1e-6 and 3e-6
    assert dm.scatter.max() > 0 and np.all(one.scatter == 0)
    assert dm.n_solutions == 2


def test_distortion_map_refuses_solutions_without_sip():
    from astropy.wcs import WCS

    from starloom.astro.distortion import distortion_map

    with pytest.raises(StarloomError, match="SIP"):
        distortion_map([WCS(naxis=2)], (10, 10))


def test_distortion_map_of_the_real_dslr_solution(tmp_path):
    import json

    solved = shared("dslr_bayer", "solved.fits")
    graph = {"format": "starloom.graph", "schema_version": 1, "metadata": {"name": "d"},
             "nodes": [{"id": "load", "type": "io.load_frames", "version": 1,
                        "params": {"path": str(solved)}},
                       {"id": "map", "type": "optics.distortion_map", "version": 1,
                        "params": {"grid": 8}},
                       {"id": "save", "type": "io.save_table", "version": 1,
                        "params": {"filename": "distortion.csv"}}],
             "edges": [{"from": "load.frames", "to": "map.frames"},
                       {"from": "map.map", "to": "save.table"}]}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run"), "--no-cache"]) == 0
    table = Table.read(tmp_path / "run" / "outputs" / "distortion.csv")
    length = np.hypot(table["dx"], table["dy"])
    # astrometry.net's 2nd-order SIP of a DSLR lens: a few px at the corners, ~0 at CRPIX
    assert 1.0 < length.max() < 10.0 and length.min() < 0.2
    assert (tmp_path / "run" / "artifacts" / "map" / "distortion.png").exists()


def test_psf_map_recovers_the_fwhm_of_each_region():
    from starloom.astro.psfmap import psf_map

    rng = np.random.default_rng(5)
    ny, nx = 200, 300
    img = rng.normal(0, 2, (ny, nx))
    yy, xx = np.indices((ny, nx))
    rows = []
    for _ in range(60):
        x, y, f = rng.uniform(15, nx - 15), rng.uniform(15, ny - 15), rng.uniform(2e3, 2e4)
        s = (3.0 if x < nx / 2 else 5.0) / 2.3548
        img += f / (2 * np.pi * s * s) * np.exp(-0.5 * (((xx - x) / s) ** 2 + ((yy - y) / s) ** 2))
        rows.append((x, y, f))
    stars = Table(rows=rows, names=("x", "y", "flux"))
    regions = psf_map(img, stars, grid=(1, 2), size=21, min_stars=3)
    assert [r.ix for r in regions] == [0, 1]
    assert regions[0].fwhm == pytest.approx(3.0, rel=0.05)
    assert regions[1].fwhm == pytest.approx(5.0, rel=0.05)
    assert regions[0].psf.sum() == pytest.approx(1.0)
    none = psf_map(img, stars[:2], grid=(1, 1), min_stars=3)
    assert none[0].psf is None and np.isnan(none[0].fwhm)


def test_an_empty_series_for_an_image_input_names_the_input():
    from starloom.astro.frames import FrameSeries
    from starloom.nodes._common import single_image

    with pytest.raises(StarloomError, match="input 'flat' is an empty series"):
        single_image(FrameSeries([]), "flat")
