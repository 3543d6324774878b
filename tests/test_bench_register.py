"""The registration benchmark's truth and accuracy helpers (benchmarks/bench_register.py).

No Siril run and no timing: the frames the benchmark writes must put the stars where its truth
says, its accuracy must be near zero for the true transform and large for a wrong sign, and its
reading of Siril's printed matrices must follow Siril 1.0.6's conventions (a real block from
``siril-cli``'s ``register`` output, for a frame with a large known shift).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_register", ROOT / "benchmarks" / "bench_register.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

# Printed by siril-cli 1.0.6 (`register light_`) for image 2 of truth_transforms(4, (512, 512),
# seed 1, max shift 20, max rotation 0.3), frames written by write_frames (reference: image 1).
SIRIL_IMAGE_2 = """\
log: Found 24 stars in image 2, channel #0
Transformation Matrix:
   +1.00002    -0.00464  -121.90305
   +0.00460    +1.00017   -69.59069
   -0.00000    +0.00000    +1.00000
log: Matching stars in image 2: done
log: Initial pair matches: 16
log: rotation:   -0.266 deg
log: dx:        +121.90 px
log: dy:         +69.59 px
"""


def test_truth_has_the_reference_and_the_large_shift_first():
    t = bench.truth_transforms(5, (512, 512), 1, 20.0, 0.3)
    assert np.array_equal(t[0], np.eye(3))
    centre = np.array([255.5, 255.5, 1.0])
    assert np.allclose((t[1] @ centre)[:2] - centre[:2], bench.BIG_SHIFT)
    assert np.all(np.abs(np.degrees(np.arctan2(t[:, 1, 0], t[:, 0, 0]))) <= 0.3)


def test_accuracy_is_zero_for_the_truth_and_large_for_a_wrong_sign():
    t = bench.truth_transforms(4, (300, 400), 2, 20.0, 0.3)
    exact = bench.accuracy(np.linalg.inv(t), t, (300, 400))
    assert exact["shift_max"] < 1e-9 and exact["rot_max"] < 1e-9 and exact["failed"] == 0
    wrong = bench.accuracy(t, t, (300, 400))  # the shift taken the wrong way round
    assert wrong["shift_px"][1] == pytest.approx(2 * np.hypot(*bench.BIG_SHIFT), rel=1e-3)
    missing = np.linalg.inv(t)
    missing[2] = np.nan
    assert bench.accuracy(missing, t, (300, 400))["failed"] == 1


def test_siril_matrix_of_a_real_run_matches_the_truth():
    t = bench.truth_transforms(4, (512, 512), 1, 20.0, 0.3)
    rec = bench.parse_siril_log(SIRIL_IMAGE_2, 4, 512)
    assert np.array_equal(rec[0], np.eye(3)) and np.isnan(rec[2:]).all()
    acc = bench.accuracy(rec[:2], t[:2], (512, 512))
    assert acc["shift_max"] < 0.1 and acc["field_max"] < 0.15
    # inconsistent dx (lines of two threads mixed up): the frame is not read
    assert np.isnan(bench.parse_siril_log(SIRIL_IMAGE_2.replace("+121.90", "+12.90"), 4, 512)[1]).all()


def test_frames_put_the_stars_where_the_truth_says(tmp_path):
    pytest.importorskip("astroalign")
    if not (bench.PEERBENCH / "make_frames.py").exists():
        pytest.skip(f"peerbench not present: {bench.PEERBENCH}")
    from astropy.io import fits
    from astropy.nddata import CCDData

    from starloom.astro.registration_fallback import find_transform_with_fallback
    shape = (320, 360)
    t = bench.truth_transforms(3, shape, 3, 15.0, 0.3)
    bench.write_frames(tmp_path, t, shape, 3, nstars=150)
    files = sorted(tmp_path.glob("light_*.fits"))
    assert [f.name for f in files] == ["light_0001.fits", "light_0002.fits", "light_0003.fits"]
    ccds = [CCDData(fits.getdata(f).astype(np.float32), unit="adu") for f in files]
    hdr = fits.getheader(files[1])
    assert (hdr["BITPIX"], hdr["BZERO"]) == (16, 32768)  # uint16 as cameras write it
    rec = np.array([find_transform_with_fallback(c, ccds[0])[0].params for c in ccds])
    acc = bench.accuracy(rec, t, shape)
    assert acc["failed"] == 0 and acc["shift_max"] < 0.1 and acc["rot_max"] < 0.02
