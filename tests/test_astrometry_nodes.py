"""The astrometry nodes end to end, through ``starloom run``, on real frames.

The example graph ``solve_and_reproject.json`` solves, refines, reprojects and co-adds the
Stargate frames; small load -> plate_solve -> save_fits graphs solve randomsky.fits (checked
against its own WCS keywords) and pleiades.jpg (checked against Tycho-2). Positions are checked
against catalogue stars, never against copied coordinates. Tests skip when ../shared/data or
astrometry.net (solve-field, Tycho-2 index files) are absent; nothing touches the network.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from conftest import shared
from starloom.astro import catalogs
from starloom.astro import fits as fitsio
from starloom.astro.catalogs import find_index_files, footprint_cone, load_catalog
from starloom.astro.stars import detect_stars
from starloom.cli.main import main
from starloom.nodes.astrometry import PlateSolve

EXAMPLE = Path(__file__).resolve().parents[1] / "example_graphs" / "solve_and_reproject.json"
HAVE_TYCHO = bool(find_index_files())
HAVE_SOLVER = bool(shutil.which("solve-field") and shutil.which("build-astrometry-index")) and HAVE_TYCHO
needs_solver = pytest.mark.skipif(not HAVE_SOLVER, reason="astrometry.net solve-field / Tycho-2 "
                                                          "index files not installed")
needs_tycho = pytest.mark.skipif(not HAVE_TYCHO, reason="Tycho-2 index files not installed")
realdata = pytest.mark.realdata


def run(graph, run_dir: Path, *args, cache: Path | None = None):
    """``starloom run`` in-process; returns (exit code, status.json, seconds)."""
    t0 = time.monotonic()
    rc = main(["run", str(graph), *args, "--run-dir", str(run_dir),
               *(["--cache", str(cache)] if cache else ["--no-cache"])])
    return rc, json.loads((run_dir / "status.json").read_text()), time.monotonic() - t0


def solve_graph(folder: Path, **solve_params) -> Path:
    """A graph file load -> astrometry.plate_solve -> io.save_fits, parameter ``image``."""
    doc = {
        "format": "starloom.graph", "schema_version": 1,
        "parameters": {"image": {"type": "path", "default": "", "binds": ["load.path"]}},
        "nodes": [
            {"id": "load", "type": "io.load_frames", "version": 1, "params": {}},
            {"id": "solve", "type": "astrometry.plate_solve", "version": 1, "params": solve_params},
            {"id": "save", "type": "io.save_fits", "version": 1,
             "params": {"filename": "{name}_solved.fits"}},
        ],
        "edges": [{"from": "load.frames", "to": "solve.frames"},
                  {"from": "solve.frames", "to": "save.image"}],
    }
    path = folder / "solve.json"
    path.write_text(json.dumps(doc))
    return path


def header_wcs(path) -> tuple[WCS, np.ndarray]:
    """WCS (first two axes) and 2-D luminance of a FITS file, read with astropy directly."""
    with fits.open(path) as hdul:
        data, header = hdul[0].data.astype(float), hdul[0].header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(header, naxis=2)
    return w, (data.mean(axis=0) if data.ndim == 3 else data)


def nearest_px(px, py, stars) -> np.ndarray:
    """Distance (px) from each (px, py) to the nearest detected star."""
    sx, sy = np.asarray(stars["x"]), np.asarray(stars["y"])
    return np.hypot(np.asarray(px)[:, None] - sx[None], np.asarray(py)[:, None] - sy[None]).min(axis=1)


def catalogue_on_image(w: WCS, shape, edge: float = 5.0):
    """Tycho-2 stars of the footprint: (table, px, py) of those ``edge`` px inside the image."""
    cat = load_catalog("tycho2", *footprint_cone(w, shape))
    px, py = w.world_to_pixel(SkyCoord(cat["ra"], cat["dec"], unit="deg"))
    ny, nx = shape
    inside = (px > edge) & (px < nx - 1 - edge) & (py > edge) & (py < ny - 1 - edge)
    return cat[inside], px[inside], py[inside]


# ------------------------------------------------------------------------------ no solver needed


def test_example_graph_validates(capsys):
    assert main(["validate", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "valid, 9 nodes" in out and "solve -> catalog -> refine -> coadd" in out
    assert main(["validate", str(EXAMPLE), "--param", "ra=188.95", "--param", "dec=-12.04"]) == 0
    assert main(["validate", str(EXAMPLE), "--param", "ra=", "--param", "dec="]) == 0  # from headers
    assert main(["validate", str(EXAMPLE), "--param", "ra=12:36:00", "--param", "dec="]) == 2
    assert "give both 'ra' and 'dec'" in capsys.readouterr().err
    doc = json.loads(EXAMPLE.read_text())
    spots = {(n["ui"]["x"], n["ui"]["y"]) for n in doc["nodes"]}
    assert len(spots) == len(doc["nodes"])  # no two nodes on the same spot


def test_plate_solve_params_read_sexagesimal_hints():
    p = PlateSolve.Params(ra="12:36:00", dec="-12 00 00", scale_low="1.5", scale_high=2)
    assert p.ra == pytest.approx(189.0) and p.dec == pytest.approx(-12.0)
    assert PlateSolve.Params(ra=188.95, dec=-12.04).ra == pytest.approx(188.95)
    assert PlateSolve.Params(ra="", dec="").ra is None
    with pytest.raises(ValueError, match="scale_low"):
        PlateSolve.Params(scale_low=3, scale_high=2)
    with pytest.raises(ValueError, match="angle"):
        PlateSolve.Params(ra="north", dec=0)


def _catalog_graph(folder: Path, **params) -> Path:
    doc = {"format": "starloom.graph", "schema_version": 1,
           "nodes": [{"id": "catalog", "type": "astrometry.catalog", "version": 1, "params": params}]}
    path = folder / "catalog.json"
    path.write_text(json.dumps(doc))
    return path


def test_catalog_node_gaia_offline_fails_clearly(tmp_path, monkeypatch, capsys):
    graph = _catalog_graph(tmp_path, source="gaia", ra="03:47:00", dec="24:07:00", radius=0.2)
    # astroquery missing
    monkeypatch.setitem(sys.modules, "astroquery", None)
    rc, status, _ = run(graph, tmp_path / "run1")
    assert rc == 1 and status["node"] == "catalog"
    assert "needs astroquery" in status["message"] and "tycho2" in status["message"]
    # astroquery present, archive unreachable
    monkeypatch.setitem(sys.modules, "astroquery", types.ModuleType("astroquery"))

    def offline(query):
        raise ConnectionError("Failed to establish a new connection: name resolution")

    monkeypatch.setattr(catalogs, "_gaia_launch", offline)
    rc, status, _ = run(graph, tmp_path / "run2")
    assert rc == 1 and status["node"] == "catalog"
    assert "Gaia DR3 cone search" in status["message"] and "unreachable" in status["message"]
    assert "offline" in status["message"] and "tycho2" in status["message"]
    assert "unreachable" in capsys.readouterr().err


@needs_tycho
def test_catalog_node_cone_from_params(tmp_path):
    graph = _catalog_graph(tmp_path, source="tycho2", ra="12:35:49", dec="-12:02:24", radius=0.3,
                           mag_limit=11.0)
    rc, status, _ = run(graph, tmp_path / "run")
    assert rc == 0, status
    diag = json.loads((tmp_path / "run/artifacts/catalog.json").read_text())
    assert diag["n_stars"] > 5 and diag["mag_band"] == "VT" and diag["mag_range"][1] <= 11.0


# ------------------------------------------------------------------------------ the example graph


@pytest.fixture(scope="module")
def stargate_run(tmp_path_factory):
    if not HAVE_SOLVER:
        pytest.skip("solve-field / Tycho-2 index files not installed")
    lights = shared("stargate")
    tmp = tmp_path_factory.mktemp("stargate")
    rc, status, seconds = run(EXAMPLE, tmp / "run", "--param", f"lights={lights}",
                              cache=tmp / "cache")
    print(f"solve_and_reproject on the Stargate frames: {seconds:.1f} s")
    assert rc == 0, status
    return tmp, tmp / "run", lights


@realdata
@needs_solver
def test_stargate_coadd_wcs_puts_catalogue_stars_on_image_stars(stargate_run):
    _, run_dir, _ = stargate_run
    coadd = fitsio.read_frame(run_dir / "outputs/coadd.fits")
    assert coadd.wcs is not None and coadd.wcs.has_celestial
    assert coadd.header["NCOMBINE"] == 10
    data = np.asarray(coadd.data, dtype=float)
    stars, _ = detect_stars(data, mask=~np.isfinite(data))
    _, px, py = catalogue_on_image(coadd.wcs, data.shape)
    covered = np.isfinite(data[np.rint(py).astype(int), np.rint(px).astype(int)])
    assert covered.sum() >= 6
    scale = float(np.sqrt(abs(np.linalg.det(coadd.wcs.pixel_scale_matrix)))) * 3600
    d = nearest_px(px[covered], py[covered], stars) * scale
    print("Tycho-2 stars on the co-add, distance to the nearest detected star (arcsec):",
          np.round(d, 2))
    assert np.median(d) < 2.0 and np.all(d < 4.0)
    assert (run_dir / "outputs/coadd_annotated.png").read_bytes()[:4] == b"\x89PNG"


@realdata
@needs_solver
def test_stargate_coverage_is_sane(stargate_run):
    _, run_dir, _ = stargate_run
    cov = fitsio.read_frame(run_dir / "outputs/coverage.fits")
    coadd = fitsio.read_frame(run_dir / "outputs/coadd.fits")
    c = np.asarray(cov.data)
    assert cov.wcs is not None and c.shape == coadd.shape
    assert c.min() >= 0 and c.max() == pytest.approx(10.0, abs=0.01)
    assert np.mean(c > 9.99) > 0.3  # most of the field is seen by every frame
    assert np.all(np.isnan(coadd.data[c == 0]))  # no data where no frame covers
    assert np.all(np.isfinite(coadd.data[c > 9.99]))
    # the sky level of the co-add is that of the frames (about 3810 ADU)
    frame = fitsio.read_frame(shared("stargate", "StarGateCluster_030_sec_1x1_0001.fit"))
    sky = np.nanmedian(coadd.data[c > 9.99])
    assert sky == pytest.approx(np.median(frame.data), rel=0.01)


@realdata
@needs_solver
def test_stargate_rms_residuals_reported(stargate_run):
    _, run_dir, _ = stargate_run
    solve = json.loads((run_dir / "artifacts/solve.json").read_text())["frames"]
    refine = json.loads((run_dir / "artifacts/refine.json").read_text())["frames"]
    assert len(solve) == len(refine) == 10
    for name, s in solve.items():
        assert s["path"] == "small-field" and s["n_matched"] >= 6 and s["rms_arcsec"] < 2.5
        assert s["solve_time_s"] < 60
        r = refine[name]
        assert r["n_matched"] >= 6 and r["rms_arcsec"] <= r["rms_before_arcsec"] + 1e-6
        assert r["rms_arcsec"] < 2.5
        resid = Table.read(run_dir / f"artifacts/refine/{name}_residuals.ecsv")
        assert len(resid) == r["n_matched"]
        assert np.sqrt(np.mean(resid["total_arcsec"] ** 2)) == pytest.approx(r["rms_arcsec"])
        png = run_dir / f"artifacts/refine/{name}_residuals.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


@realdata
@needs_solver
def test_stargate_rerun_is_served_from_cache(stargate_run):
    tmp, run_dir, lights = stargate_run
    rc, status, _ = run(EXAMPLE, tmp / "rerun", "--param", f"lights={lights}", cache=tmp / "cache")
    assert rc == 0 and status["executed"] == [] and status["frames_computed"] == 0
    assert len(status["cached"]) == 9
    before = fitsio.read_frame(run_dir / "outputs/coadd.fits").data
    after = fitsio.read_frame(tmp / "rerun/outputs/coadd.fits").data
    np.testing.assert_array_equal(before, after)
    assert (tmp / "rerun/outputs/coadd_annotated.png").exists()


# ------------------------------------------------------------------------------ single frames


@realdata
@needs_solver
def test_cli_solves_randomsky_blind_matching_its_own_header(tmp_path):
    src = shared("platesolve", "randomsky.fits")
    graph = solve_graph(tmp_path, header_hints=False)  # blind: the header only checks the result
    rc, status, seconds = run(graph, tmp_path / "run", "--param", f"image={src}")
    print(f"randomsky.fits, blind, from the CLI: {seconds:.1f} s")
    assert rc == 0, status
    assert seconds < 60
    header = fits.getheader(src)
    solved, _ = header_wcs(tmp_path / "run/outputs/randomsky_solved.fits")
    # the header's CRVAL sits at CRPIX (1-based)
    at_crpix = solved.pixel_to_world(header["CRPIX1"] - 1, header["CRPIX2"] - 1)
    assert at_crpix.separation(SkyCoord(header["CRVAL1"], header["CRVAL2"], unit="deg")).arcsec < 5
    diag = json.loads((tmp_path / "run/artifacts/solve.json").read_text())["frames"]["randomsky"]
    assert diag["pixel_scale_arcsec"] == pytest.approx(header["SCALE"], rel=5e-3)
    assert diag["n_matched"] >= 10 and diag["rms_arcsec"] < 3.0
    assert diag["hints"] == {}  # nothing taken from the header
    out = fits.getheader(tmp_path / "run/outputs/randomsky_solved.fits")
    assert out["PLTSOLVD"] is True and out["ASTMATCH"] == diag["n_matched"]


@realdata
@needs_solver
def test_cli_solves_pleiades_jpeg_against_catalogue(tmp_path):
    src = shared("platesolve", "pleiades.jpg")
    rc, status, seconds = run(solve_graph(tmp_path), tmp_path / "run", "--param", f"image={src}")
    print(f"pleiades.jpg, blind, from the CLI: {seconds:.1f} s")
    assert rc == 0, status
    assert seconds < 60
    w, lum = header_wcs(tmp_path / "run/outputs/pleiades_solved.fits")
    stars, _ = detect_stars(lum)
    cat, px, py = catalogue_on_image(w, lum.shape, edge=10)
    assert len(cat) >= 12 and cat["mag"][0] < 4.5  # the Pleiads themselves
    d = nearest_px(px[:12], py[:12], stars)
    print("brightest Tycho-2 stars, distance to the nearest detection (px):", np.round(d, 2))
    assert np.count_nonzero(d < 3.0) >= 9
    diag = json.loads((tmp_path / "run/artifacts/solve.json").read_text())["frames"]["pleiades"]
    assert 7.0 < diag["pixel_scale_arcsec"] < 9.0 and diag["rms_arcsec"] < 10


# ------------------------------------------------------------------------------ unsolvable frames


@pytest.fixture
def noise_frame(tmp_path) -> Path:
    """A 752x581 frame of noise with 60 star-like spots at random places: no sky field."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:581, :752]
    data = rng.normal(1000.0, 10.0, (581, 752))
    for x0, y0, f in zip(rng.uniform(10, 742, 60), rng.uniform(10, 571, 60),
                         rng.pareto(1.5, 60) * 2000 + 300, strict=True):
        cut = (slice(int(y0) - 8, int(y0) + 9), slice(int(x0) - 8, int(x0) + 9))
        data[cut] += f * np.exp(-0.5 * ((xx[cut] - x0) ** 2 + (yy[cut] - y0) ** 2) / 1.5**2)
    folder = tmp_path / "frames"
    folder.mkdir()
    fits.writeto(folder / "noise.fits", data.astype(np.float32))
    return folder / "noise.fits"


@realdata
@needs_solver
def test_unsolvable_frame_is_rejected_from_the_series(tmp_path, noise_frame):
    shutil.copy(shared("platesolve", "randomsky.fits"), noise_frame.parent)
    graph = solve_graph(tmp_path, timeout=10, on_failure="reject")
    rc, status, _ = run(graph, tmp_path / "run", "--param", f"image={noise_frame.parent}")
    assert rc == 0, status
    frames = json.loads((tmp_path / "run/artifacts/solve.json").read_text())["frames"]
    assert "rejected" not in frames["randomsky"] and frames["randomsky"]["n_matched"] >= 10
    # DAOFIND runs inside plate_solve now: its summary is still in the diagnostics, also of
    # a frame that failed
    assert frames["randomsky"]["detection"]["n_stars"] >= 10
    assert 1.0 < frames["randomsky"]["detection"]["median_fwhm_px"] < 6.0
    assert isinstance(frames["noise"]["detection"]["n_stars"], int)
    reason = frames["noise"]["rejected"]
    assert "frame 'noise'" in reason and "no plate solution within the time bound of 10 s" in reason
    assert sorted(p.name for p in (tmp_path / "run/outputs").iterdir()) == ["randomsky_solved.fits"]
    events = (tmp_path / "run/logs/run_events.jsonl").read_text()
    assert '"frame_rejected"' in events


@needs_solver
def test_unsolvable_frame_fails_clearly_within_its_time_bound(tmp_path, noise_frame, capsys):
    graph = solve_graph(tmp_path, timeout=10, on_failure="fail")
    rc, status, seconds = run(graph, tmp_path / "run", "--param", f"image={noise_frame}")
    print(f"unsolvable frame failed after {seconds:.1f} s: {status['message']}")
    assert rc == 1 and status["status"] == "failed" and status["node"] == "solve"
    assert "frame 'noise'" in status["message"]
    assert "no plate solution within the time bound of 10 s" in status["message"]
    assert seconds < 20
    assert "time bound of 10 s" in capsys.readouterr().err
