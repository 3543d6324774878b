"""Dark scaling and optimization, bimodal dark series: ccdproc as oracle, simulated truth, and
the real ASI120MC darks."""
from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import ccdproc
import numpy as np
import pytest
from fake_context import FakeContext
from astropy.nddata import CCDData
from conftest import shared
from starloom.astro import fits as fitsio
from starloom.astro.calibration import calibrate_light
from starloom.astro.darks import (
    bimodal_split,
    dark_scaling_residual,
    frame_levels,
    optimize_dark_scale,
    scaled_dark,
)
from starloom.astro.errors import StarloomError
from starloom.astro.frames import FrameSeries
from starloom.astro.simulate import simulate_session
from starloom.nodes.calibration import MasterDark


def Ctx():
    return FakeContext(frame="frame")


def _session(dark_exposure=100.0, light_exposure=20.0, seed=5):
    # Hot pixels reach 500 e-/s: 100 s keeps them below saturation in the darks.
    return simulate_session(seed=seed, shape=(100, 120), n_bias=6, n_darks=6, n_flats=0,
                            n_lights=2, dark_exposure=dark_exposure,
                            light_exposure=light_exposure, hot_pixel_fraction=5e-3,
                            dark_current=0.5, n_stars=30)


def _masters(frames):
    bias = ccdproc.combine(frames["bias"], method="average")
    dark = ccdproc.subtract_bias(ccdproc.combine(frames["dark"], method="median"), bias)
    dark.header["EXPTIME"] = frames["dark"][0].header["EXPTIME"]
    return bias, dark


def test_scaled_dark_and_calibration_agree_with_ccdproc():
    frames = _session()
    bias, dark = _masters(frames)
    light = ccdproc.subtract_bias(frames["light"][0], bias)
    ref = ccdproc.subtract_dark(light, dark, exposure_time="EXPTIME", exposure_unit=u.s,
                                scale=True)
    ours = scaled_dark(dark, 20.0)
    assert ours.header["EXPTIME"] == 20.0
    np.testing.assert_allclose(light.data - ours.data, ref.data, atol=1e-3)
    np.testing.assert_allclose(ours.data, dark.data * 0.2, rtol=1e-6)
    darks = FrameSeries.from_frames([dark], ["dark"])
    cal, steps = calibrate_light(frames["light"][0], bias=bias, darks=darks)
    np.testing.assert_allclose(cal.data, ref.data, atol=1e-3)
    assert steps == ["bias", "dark 100s"] and cal.header["DARKSCAL"] == pytest.approx(0.2)
    with pytest.raises(StarloomError, match="EXPTIME"):
        scaled_dark(CCDData(dark.data, unit="adu"), 10.0)


def test_dark_optimization_finds_the_true_factor_and_lowers_the_noise():
    frames = _session()
    bias, dark = _masters(frames)
    light = ccdproc.subtract_bias(frames["light"][0], bias).data
    k, info = optimize_dark_scale(light, dark.data)
    # Truth: the dark current (hot pixels included) scales with exposure, 20 / 100.
    assert k == pytest.approx(0.2, abs=0.02)
    assert info["noise"] < info["noise_unscaled"] / 3

    def noise(f):
        return np.std(light - f * dark.data)
    # A dark whose EXPTIME is wrong (here written as 40 s) scales by 0.5: optimization
    # recovers the right factor and a lower noise than scaling by exposure.
    assert info["noise"] < 0.8 * noise(0.5)
    darks = FrameSeries.from_frames([dark], ["dark"])
    cal, steps = calibrate_light(frames["light"][0], bias=bias, darks=darks,
                                 dark_scaling="optimize")
    assert "optimized" in steps[1] and cal.header["DARKSCAL"] == pytest.approx(k)
    # A star-covered light does not pull the factor: stars are bright in the light only.
    starry = light + 5000.0 * (np.random.default_rng(0).random(light.shape) > 0.99)
    assert optimize_dark_scale(starry, dark.data)[0] == pytest.approx(k, abs=0.02)
    with pytest.raises(StarloomError, match="shape"):
        optimize_dark_scale(light, dark.data[:50])


def test_bimodal_split():
    asi_10s = [2389.57, 2405.73, 2389.09, 2405.66, 2389.20]
    split = bimodal_split(asi_10s)
    assert split.low == [0, 2, 4] and split.high == [1, 3] and split.separation > 20
    rng = np.random.default_rng(1)
    for _ in range(200):  # unimodal series are not split
        assert bimodal_split(1000 + rng.normal(0, 2, 8)) is None
    assert bimodal_split([100, 100.5, 99.8, 100.2, 180]) is None  # one outlier is not a mode
    assert bimodal_split([100, 100, 100, 100]) is None


def test_master_dark_node_combines_the_brighter_cluster_of_a_bimodal_series():
    frames = simulate_session(seed=2, shape=(64, 80), n_bias=0, n_darks=5, n_flats=0,
                              n_lights=0, dark_exposure=100.0, dark_current=2.0)["dark"]
    for ccd in frames[::2]:  # the ASI120 quirk: every other frame loses its bottom rows' signal
        ccd.data[48:] = 500.0 + np.random.default_rng(0).normal(0, 3, ccd.data[48:].shape)
    series = FrameSeries.from_frames(frames, [f"dark_{i}" for i in range(5)])
    node = MasterDark()
    for choice, band in (("brighter", 500 + 2.0 * 100 / 1.5), ("all", 500.0)):
        ctx = Ctx()
        params = MasterDark.Params(bimodal=choice)
        master = node.run(ctx, params, series)["darks"][0]
        assert any("bimodal" in w for w in ctx.warnings)
        assert ctx.diagnostics["bimodal"]["100s"]["high"] == ["dark_1", "dark_3"]
        assert np.median(master.data[48:]) == pytest.approx(band, abs=8)
    ctx = Ctx()
    node.run(ctx, MasterDark.Params(), FrameSeries.from_frames(frames[1::2], ["a", "b"]))
    assert not any("bimodal" in w for w in ctx.warnings)


def _read(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ASI120's EXPTIME written with a decimal comma
        return [fitsio.read_frame(f) for f in sorted(Path(folder).glob("*.fit"))]


@pytest.fixture(scope="module")
def asi_darks():
    asi = shared("asi120mc")
    bias = ccdproc.combine(_read(asi / "bias"), method="average")
    out = {}
    for seconds in (10, 100):
        frames = _read(asi / f"dark_{seconds}s")
        split = bimodal_split(frame_levels(frames))
        assert split is not None and split.high == [1, 3]  # frames 2 and 4 are complete
        for name, use in (("all", frames), ("brighter", [frames[i] for i in split.high])):
            master = ccdproc.subtract_bias(ccdproc.combine(use, method="median"), bias)
            master.header["EXPTIME"] = float(seconds)
            out[seconds, name] = master
    return out


def test_asi120_100s_dark_scaled_to_10s_matches_the_10s_dark(asi_darks):
    good = dark_scaling_residual(asi_darks[100, "brighter"], asi_darks[10, "brighter"])
    # Dark current is linear in time on this sensor: the least-squares factor is within 5 %
    # of the exposure ratio, the residual level within 3 ADU (of ~80 ADU of 10 s dark signal)
    # everywhere, and its spread below the 10 s master's own.
    assert good["ratio"] == pytest.approx(0.1)
    assert good["best_scale"] == pytest.approx(0.1, rel=0.05)
    assert max(abs(b) for b in good["row_band_medians"]) < 3.0
    assert good["residual_std"] < good["short_std"]
    # Combining every frame keeps the incomplete bottom rows of the odd frames: there the
    # scaled 100 s dark and the 10 s dark disagree by tens of ADU.
    bad = dark_scaling_residual(asi_darks[100, "all"], asi_darks[10, "all"])
    assert bad["row_band_medians"][-1] > 20.0
    print("ASI120 100 s -> 10 s dark residual:", good)


def test_asi120_dark_optimization_on_a_real_10s_frame(asi_darks):
    """A complete 10 s dark frame (bias-subtracted) as the 'light': the optimized factor of
    the 100 s master is near the exposure ratio and leaves less noise than it."""
    asi = shared("asi120mc")
    bias = ccdproc.combine(_read(asi / "bias"), method="average")
    frame = ccdproc.subtract_bias(_read(asi / "dark_10s")[1], bias).data
    master = asi_darks[100, "brighter"].data
    k, info = optimize_dark_scale(frame, master)
    assert k == pytest.approx(0.1, abs=0.01)
    assert info["noise"] <= np.std((frame - 0.1 * master)[224:736, 384:896])
    print(f"ASI120 dark optimization: k = {k:.4f} (exposure ratio 0.1), noise "
          f"{info['noise']:.1f} ADU")
