"""The simulated session must carry the ground truth it claims in its parameters and headers."""
import math

import astroalign
import numpy as np
import pytest
from astropy import units as u
from astropy.stats import sigma_clipped_stats
from astropy.time import Time
from scipy import ndimage
from skimage.registration import phase_cross_correlation
from starloom.astro.simulate import simulate_session

GAIN, READ_NOISE, BIAS, DARK_CURRENT, T_DARK = 1.5, 5.0, 500.0, 0.05, 60.0


@pytest.fixture(scope="module")
def session():
    return simulate_session(seed=3, gain=GAIN, read_noise=READ_NOISE, bias_level=BIAS,
                            dark_current=DARK_CURRENT, dark_exposure=T_DARK, light_exposure=T_DARK)


def stack(frames):
    return np.mean([f.data.astype(np.float64) for f in frames], axis=0)


def test_same_arguments_give_identical_frames():
    a = simulate_session(seed=7, shape=(64, 80), n_bias=2, n_darks=2, n_flats=2, n_lights=3)
    b = simulate_session(seed=7, shape=(64, 80), n_bias=2, n_darks=2, n_flats=2, n_lights=3)
    c = simulate_session(seed=8, shape=(64, 80), n_bias=2, n_darks=2, n_flats=2, n_lights=3)
    for kind in ("bias", "dark", "flat", "light"):
        for fa, fb, fc in zip(a[kind], b[kind], c[kind]):
            np.testing.assert_array_equal(fa.data, fb.data)
            assert fa.header == fb.header
            assert not np.array_equal(fa.data, fc.data)


def test_frames_look_like_16_bit_camera_output(session):
    expected = {"bias": ("Bias Frame", 0.0, 8), "dark": ("Dark Frame", T_DARK, 6),
                "flat": ("Flat Field", 1.0, 8), "light": ("Light Frame", T_DARK, 8)}
    times = []
    for kind, (imagetyp, exptime, count) in expected.items():
        assert len(session[kind]) == count
        for frame in session[kind]:
            assert frame.unit == u.adu
            assert frame.data.dtype == np.float32 and frame.data.shape == (400, 600)
            assert np.all(frame.data == np.round(frame.data))
            assert frame.data.min() >= 0 and frame.data.max() <= 65535
            h = frame.header
            assert h["IMAGETYP"] == imagetyp
            assert h["EXPTIME"] == exptime
            assert h["GAIN"] == GAIN
            assert h["FILTER"] == "L" and h["INSTRUME"] == "Starloom simulator"
            assert "BAYERPAT" not in h
            times.append(Time(h["DATE-OBS"]))
    assert all(t1 > t0 for t0, t1 in zip(times, times[1:]))


def test_master_bias_level_and_read_noise(session):
    biases = session["bias"]
    master = stack(biases)
    assert abs(master.mean() - BIAS) < READ_NOISE / GAIN / math.sqrt(len(biases))
    # The fixed column pattern cancels in a difference of two biases, leaving sqrt(2) read noise.
    diff = biases[0].data.astype(float) - biases[1].data
    assert diff.std() / math.sqrt(2) == pytest.approx(READ_NOISE / GAIN, rel=0.03)
    # ...and the pattern is really there: column means differ by more than the noise allows.
    assert master.mean(axis=0).std() > 5 * READ_NOISE / GAIN / math.sqrt(8 * 400)


def test_dark_current_measured_from_darks(session):
    excess_adu = stack(session["dark"]) - stack(session["bias"])
    mean, _, _ = sigma_clipped_stats(excess_adu, sigma=5)  # clip the hot pixels
    assert mean * GAIN / T_DARK == pytest.approx(DARK_CURRENT, rel=0.05)


def test_hot_pixels_are_the_same_in_darks_and_lights(session):
    threshold = 500.0  # ADU; hot pixels hold >= 50 e-/s * 60 s / 1.5 e-/ADU = 2000 ADU
    excess = stack(session["dark"]) - stack(session["bias"])
    hot_in_darks = excess > threshold
    assert hot_in_darks.sum() == round(2e-4 * 400 * 600)
    hot_in_every_light = np.ones_like(hot_in_darks)
    for light in session["light"]:
        data = light.data.astype(float)
        hot_in_every_light &= data - ndimage.median_filter(data, size=3) > threshold
    np.testing.assert_array_equal(hot_in_every_light, hot_in_darks)


def test_flat_corners_drop_by_vignetting():
    frames = simulate_session(seed=1, n_bias=4, n_darks=0, n_flats=4, n_lights=0,
                              vignetting=0.3, flat_level=20000.0)
    flat = stack(frames["flat"]) - stack(frames["bias"])
    ny, nx = flat.shape
    centre = np.median(flat[ny // 2 - 3 : ny // 2 + 3, nx // 2 - 3 : nx // 2 + 3])
    assert centre == pytest.approx(20000.0, rel=0.01)
    for corner in (flat[:4, :4], flat[:4, -4:], flat[-4:, :4], flat[-4:, -4:]):
        assert np.median(corner) / centre == pytest.approx(1 - 0.3, abs=0.01)


def test_dither_headers_match_measured_star_shifts(session):
    master_dark = stack(session["dark"])

    def stars_only(light):
        # Remove bias, hot pixels and the smooth sky so only the moving stars correlate.
        data = light.data - master_dark
        return np.clip(data - ndimage.gaussian_filter(data, 10), 0, None)

    lights = session["light"]
    assert lights[0].header["SIM-DX"] == 0 and lights[0].header["SIM-DY"] == 0
    reference = stars_only(lights[0])
    shifts = []
    for light in lights[1:]:
        h = light.header
        assert abs(h["SIM-DX"]) <= 6 and abs(h["SIM-DY"]) <= 6
        assert 2.2 <= h["SIM-FWHM"] <= 3.5
        # The returned shift registers the moving image onto the reference: minus the dither.
        shift, _, _ = phase_cross_correlation(reference, stars_only(light), upsample_factor=20,
                                              normalization=None)
        np.testing.assert_allclose(shift, [-h["SIM-DY"], -h["SIM-DX"]], atol=0.1)
        shifts.append((h["SIM-DX"], h["SIM-DY"]))
    assert len(set(shifts)) == len(shifts)


def test_rotation_matches_astroalign_transform():
    frames = simulate_session(seed=2, shape=(300, 400), n_bias=0, n_darks=2, n_flats=0,
                              n_lights=3, rotation_deg=3.0)
    master_dark = stack(frames["dark"])
    first, last = frames["light"][0], frames["light"][-1]
    assert last.header["SIM-ROT"] == pytest.approx(3.0)
    transform, _ = astroalign.find_transform(first.data - master_dark, last.data - master_dark)
    theta = math.radians(3.0)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    centre = np.array([199.5, 149.5])
    expected = centre - rot @ centre + [last.header["SIM-DX"], last.header["SIM-DY"]]
    assert math.degrees(transform.rotation) == pytest.approx(3.0, abs=0.05)
    np.testing.assert_allclose(transform.translation, expected, atol=0.3)


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_bayer_channels_show_in_flats_and_lights(pattern):
    frames = simulate_session(seed=4, shape=(120, 160), n_bias=0, n_darks=2, n_flats=2,
                              n_lights=1, bayer=pattern, n_stars=0, sky_gradient=0.0,
                              vignetting=0.0)
    master_dark = stack(frames["dark"])  # also holds the bias for 60 s lights
    light = frames["light"][0]
    assert light.header["BAYERPAT"] == pattern
    signal = {"flat": frames["flat"][0].data - 500.0, "light": light.data - master_dark}
    for data in signal.values():
        level = {}
        for k, letter in enumerate(pattern):
            level.setdefault(letter, []).append(np.median(data[k // 2 :: 2, k % 2 :: 2]))
        g = np.mean(level["G"])
        assert level["R"][0] / g == pytest.approx(0.8, abs=0.02)
        assert level["B"][0] / g == pytest.approx(0.6, abs=0.02)


@pytest.mark.parametrize("kwargs, name", [
    ({"shape": (8, 100)}, "shape"),
    ({"shape": (100,)}, "shape"),
    ({"read_noise": -1.0}, "read_noise"),
    ({"dark_current": -0.1}, "dark_current"),
    ({"gain": 0.0}, "gain"),
    ({"n_lights": -1}, "n_lights"),
    ({"vignetting": 1.0}, "vignetting"),
    ({"fwhm_range": (3.0, 2.0)}, "fwhm_range"),
    ({"bayer": "RGBG"}, "bayer"),
])
def test_invalid_parameters_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        simulate_session(**kwargs)
