"""The colour half end to end: PCC on the real Pleiades JPEG; the colour_pipeline example graph
on its simulated one-shot-colour session, through ``starloom run``."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import shared
from starloom.astro.catalogs import find_index_files, footprint_cone, load_catalog
from starloom.astro.fits import read_image_any
from starloom.astro.pcc import photometric_colour_calibration, sky_levels
from starloom.astro.platesolve import plate_solve
from starloom.astro.simulate import CFA_RESPONSE
from starloom.astro.stars import detect_stars
from starloom.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[1] / "example_graphs" / "colour_pipeline.json"
HAVE_SOLVER = bool(shutil.which("solve-field")) and bool(find_index_files())
HAVE_KSTARS = Path("/usr/share/kstars/stars.dat").exists()
needs_offline_astrometry = pytest.mark.skipif(
    not (HAVE_SOLVER and HAVE_KSTARS), reason="solve-field, Tycho-2 indexes or KStars stars.dat missing")


@needs_offline_astrometry
def test_pcc_on_the_real_pleiades_jpeg(tmp_path):
    ccd = read_image_any(shared("platesolve", "pleiades.jpg"))  # (3, 477, 636), row 0 = bottom
    lum = ccd.data.mean(axis=0)
    stars, _ = detect_stars(lum)
    # position and a loose scale hint (the picture spans ~1.4 deg over 636 px: ~8"/px) keep the
    # solve short on a busy machine
    res = plate_solve(stars, image_shape=lum.shape, ra_hint=56.75, dec_hint=24.12, radius_deg=2.0,
                      scale_low=5.0, scale_high=12.0, timeout_s=120, cache_dir=tmp_path)
    center, radius = footprint_cone(res.wcs, lum.shape, 0.02)
    catalog = load_catalog("kstars", center, radius)
    # an 8-bit JPEG clips every catalogue star (V < 9) at 255: keep them (their halos carry the
    # colour), and accept the large residual of gamma-encoded, clipped photometry
    pcc = photometric_colour_calibration(ccd.data, res.wcs, catalog, saturation=1e9,
                                         max_residual=1.0, min_stars=10)
    print("Pleiades PCC:", pcc.stats)
    assert pcc.stats["n_used"] >= 10
    assert 0.3 < pcc.factors[0] < 3 and 0.3 < pcc.factors[2] < 3
    # the Pleiades' blue stars come out blue: B > R in the 10 brightest matched stars
    t = pcc.stars[np.argsort(np.asarray(pcc.stars["mag"]))][:10]
    assert np.all(np.asarray(t["bv"]) < 0.4)  # B and early A stars
    b_over_r = np.asarray(t["flux_b"]) * pcc.factors[2] / (np.asarray(t["flux_r"]) * pcc.factors[0])
    assert np.mean(b_over_r) > 1.0, b_over_r


@needs_offline_astrometry
def test_colour_pipeline_example_on_its_simulated_session(tmp_path):
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    rc = main(["run", str(EXAMPLE), "--run-dir", str(run_dir), "--no-cache",
               "--set", "simulate.n_lights=3"])
    status = json.loads((run_dir / "status.json").read_text())
    assert rc == 0, status
    out = run_dir / "outputs"
    for name in ("stacked_rgb.fits", "stacked_rgb_bge.fits", "stacked_rgb_pcc.fits", "colour.png"):
        assert (out / name).exists(), name
    with fits.open(out / "stacked_rgb_pcc.fits") as hdul:
        data, header = hdul[0].data, hdul[0].header
    assert data.shape[0] == 3 and "PCCFACR" in header
    # the simulated camera's CFA response (R 0.8, G 1, B 0.6; flats are normalised per CFA
    # sub-plane, so it stays in the lights) is the white-balance error PCC undoes
    truth = [CFA_RESPONSE["G"] / CFA_RESPONSE[c] for c in "RGB"]
    diag = json.loads((run_dir / "artifacts" / "pcc.json").read_text())
    print("colour pipeline:", diag, f"{time.monotonic() - t0:.0f} s")
    assert diag["method"] == "PCC (G2V)" and diag["n_used"] >= 10
    assert np.allclose(diag["factors"], truth, rtol=0.02), (diag["factors"], truth)
    assert [header["PCCFACR"], header["PCCFACB"]] == pytest.approx([truth[0], truth[2]], rel=0.02)
    levels = sky_levels(data.astype(float))
    assert np.ptp(levels) < 0.01 * np.mean(levels)  # neutral background
    bge = json.loads((run_dir / "artifacts" / "bge.json").read_text())
    for channel in bge["channels"]:  # the simulated sky gradient is flattened
        assert channel["rms_after"] < 0.05 * channel["rms_before"], channel
    assert (run_dir / "artifacts" / "bge" / "bge.png").exists()
    assert (run_dir / "artifacts" / "pcc" / "pcc_fit.png").exists()


def test_neutral_calibration_leaves_real_osc_lights_unchanged():
    from starloom.astro.calibration import calibrate_light
    from starloom.astro.fits import read_frame
    from starloom.astro.frames import FrameSeries
    from starloom.astro.simulate_colour import neutral_calibration

    light = read_frame(sorted(shared("seestar_m94").glob("*.fit"))[0])
    neutral = neutral_calibration(light)
    assert neutral["flat"][0].header["BAYERPAT"] == "GRBG"
    darks = FrameSeries.from_frames([neutral["dark"][0]], ["dark"])
    flats = FrameSeries.from_frames([neutral["flat"][0]], ["flat"])
    out, _ = calibrate_light(light, bias=neutral["bias"][0], darks=darks, flats=flats)
    assert np.array_equal(np.asarray(out.data, float), np.asarray(light.data, float))
