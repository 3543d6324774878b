"""starloom.astro.calibration and .registration as library functions, without the runtime:
known values, ccdproc as the oracle, simulated truth."""
from __future__ import annotations

import astropy.units as u
import ccdproc
import numpy as np
import pytest
from astropy.nddata import CCDData

from starloom.astro.calibration import (FlatCalibration, calibrate_light, group_by_exposure,
                                        normalise, pick_by_exposure)
from starloom.astro.errors import StarloomError
from starloom.astro.frames import FrameSeries
from starloom.astro.registration import star_align
from starloom.astro.simulate import simulate_session

SHAPE = (40, 50)


def _ccd(value, **header):
    ccd = CCDData(np.full(SHAPE, value, np.float32), unit="adu")
    ccd.header.update(header)
    return ccd


def _series(frames):
    return FrameSeries.from_frames(frames, [f"f{i}" for i in range(len(frames))])


def test_calibrate_light_recovers_the_sky_signal():
    rng = np.random.default_rng(1)
    flat_field = rng.uniform(0.7, 1.1, SHAPE).astype(np.float32)
    flat_field /= flat_field.mean()  # ccdproc.flat_correct rescales the flat to mean 1
    signal, bias_level, dark_rate, t = 250.0, 400.0, 0.5, 120.0
    light = CCDData(signal * flat_field + bias_level + dark_rate * t, unit="adu",
                    meta={"EXPTIME": t, "FILTER": "L"})
    darks = _series([_ccd(dark_rate * 30.0, EXPTIME=30.0), _ccd(dark_rate * 300.0, EXPTIME=300.0)])
    flat = CCDData(flat_field, unit=u.dimensionless_unscaled, meta={"FILTER": "L"})
    out, steps = calibrate_light(light, bias=_ccd(bias_level), darks=darks,
                                 flats=_series([flat]), name="light_1")
    assert steps == ["bias", "dark 30s", "flat"]
    assert out.data.dtype == np.float32
    np.testing.assert_allclose(out.data, signal, rtol=1e-5)


def test_calibrate_light_agrees_with_the_ccdproc_chain():
    rng = np.random.default_rng(2)
    light = CCDData(rng.normal(1000, 20, SHAPE).astype(np.float32), unit="adu",
                    meta={"EXPTIME": 60.0})
    bias = CCDData(rng.normal(300, 3, SHAPE).astype(np.float32), unit="adu")
    dark = CCDData(rng.normal(40, 2, SHAPE).astype(np.float32), unit="adu", meta={"EXPTIME": 120.0})
    flat = CCDData(rng.uniform(0.8, 1.2, SHAPE).astype(np.float32), unit="adu")
    out, _ = calibrate_light(light, bias=bias, darks=_series([dark]), flats=_series([flat]))
    expected = ccdproc.flat_correct(
        ccdproc.subtract_dark(ccdproc.subtract_bias(light, bias), dark, exposure_time="EXPTIME",
                              exposure_unit=u.s, scale=True), flat, min_value=0.05)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-5)


def test_a_light_without_a_flat_of_its_filter_is_named():
    light = _ccd(10.0, FILTER="Ha")
    flats = _series([_ccd(1.0, FILTER="R"), _ccd(1.0, FILTER="G")])
    with pytest.raises(StarloomError, match=r"light frame 'M31_001': no master flat for FILTER 'Ha'"):
        calibrate_light(light, flats=flats, name="M31_001")


def test_flats_of_different_brightness_combine_to_one_normalised_flat():
    rng = np.random.default_rng(3)
    pattern = rng.uniform(0.6, 1.0, SHAPE).astype(np.float32)
    bias = np.full(SHAPE, 100.0, np.float32)
    flats = _series([CCDData(level * pattern + 100.0, unit="adu", meta={"EXPTIME": 1.0})
                     for level in (5000.0, 12000.0, 30000.0)])
    calibration = FlatCalibration(flats, bias, None, "median")
    np.testing.assert_allclose(calibration.levels,
                               np.array([5000.0, 12000.0, 30000.0]) * np.median(pattern), rtol=1e-5)
    master = normalise(flats.reduce("average", rejection="none", transform=calibration), "median")
    np.testing.assert_allclose(master.data, pattern / np.median(pattern), rtol=1e-5)


def test_darks_are_grouped_and_picked_by_exposure():
    darks = _series([_ccd(0, EXPTIME=t) for t in (300.0, 10.0, 10.2, 300.1, 60.0)])
    assert group_by_exposure(darks, 0.5) == [[1, 2], [4], [0, 3]]
    assert pick_by_exposure(darks, 50.0) == 4
    assert pick_by_exposure(darks, None) == 3  # the longest when the light's is unknown
    with pytest.raises(StarloomError, match="dark frame 'f1' has no EXPTIME"):
        group_by_exposure(_series([_ccd(0, EXPTIME=1.0), _ccd(0)]), 0.5)


def test_star_align_recovers_the_simulated_dither():
    lights = simulate_session(seed=5, shape=(200, 260), n_bias=1, n_darks=1, n_flats=1,
                              n_lights=2, dither=6.0, n_stars=120)["light"]
    ref, frame = lights
    aligned = star_align(frame, ref, name="sim_2")
    true_dx = frame.header["SIM-DX"] - ref.header["SIM-DX"]
    true_dy = frame.header["SIM-DY"] - ref.header["SIM-DY"]
    # The transform maps the frame onto the reference: minus the frame's own offset.
    assert aligned.info["dx"] == pytest.approx(-true_dx, abs=0.1)
    assert aligned.info["dy"] == pytest.approx(-true_dy, abs=0.1)
    assert aligned.info["matched_stars"] >= 10
    assert aligned.frame.shape == ref.shape and aligned.frame.mask.any()


def test_star_align_names_a_frame_of_another_shape():
    with pytest.raises(StarloomError, match="frame 'odd' has shape"):
        star_align(_ccd(1.0), CCDData(np.zeros((10, 10), np.float32), unit="adu"), name="odd")
