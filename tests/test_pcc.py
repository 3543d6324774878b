"""Photometric colour calibration (PCC): simulated known white balance; guard rails."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from starloom.astro.pcc import PCCError, photometric_colour_calibration, sky_levels
from starloom.astro.pcc_fit import bv_to_temperature, expected_ratios
from starloom.astro.simulate_colour import simulate_colour_image


def test_colour_model_is_physical():
    # Ballesteros (2012): the Sun (B-V 0.653) at ~5780 K, hot stars hotter, red stars cooler
    assert bv_to_temperature(0.653) == pytest.approx(5778, abs=60)
    rg, bg = expected_ratios([-0.2, 0.653, 1.5], 0.653)
    assert rg[1] == pytest.approx(1.0) and bg[1] == pytest.approx(1.0)
    assert rg[0] < 1 < rg[2] and bg[0] > 1 > bg[2]


@pytest.mark.parametrize("gains", [(0.8, 1.0, 0.6), (1.3, 1.0, 1.1)])
def test_pcc_recovers_the_simulated_white_balance(gains):
    sim = simulate_colour_image(seed=5, shape=(150, 200), n_stars=50, gains=gains)
    res = photometric_colour_calibration(sim["image"].data, sim["wcs"], sim["catalog"])
    assert np.allclose(res.factors, sim["factors"], rtol=0.02), (res.factors, sim["factors"])
    assert res.stats["n_used"] >= 10 and res.stats["residual_mag"] < 0.1
    # after calibration a G2V star is grey: measured ratios times factors follow the catalogue
    bright = np.asarray(res.stars["used"]) & (res.stars["flux_g"] > np.median(res.stars["flux_g"]))
    calibrated = np.asarray(res.stars["rg_measured"])[bright] * res.factors[0]
    assert np.median(calibrated / np.asarray(res.stars["rg_expected"])[bright]) == pytest.approx(1, abs=0.02)
    # background neutralised: the sky has one level in all channels
    before, after = sky_levels(sim["image"].data), sky_levels(res.image)
    assert np.ptp(before) > 0.2 * np.mean(before)  # the simulated sky is coloured
    assert np.ptp(after) < 0.01 * np.mean(after)


def test_pcc_guard_rails():
    sim = simulate_colour_image(seed=5, shape=(150, 200), n_stars=50)
    data, wcs, cat = sim["image"].data, sim["wcs"], sim["catalog"]
    with pytest.raises(PCCError, match="at least 10 needed"):
        photometric_colour_calibration(data, wcs, cat[:6])
    wrong = Table(cat, copy=True)
    wrong["bv"] = np.random.default_rng(0).permutation(np.asarray(cat["bv"]))
    with pytest.raises(PCCError, match="exceeds max_residual"):
        photometric_colour_calibration(data, wcs, wrong, max_residual=0.05)
    with pytest.raises(PCCError, match="planar RGB"):
        photometric_colour_calibration(data[0], wcs, cat)


def test_star_average_fallback_balances_the_field_stars():
    from starloom.astro.pcc import star_average_calibration

    sim = simulate_colour_image(seed=5, shape=(150, 200), n_stars=50, gains=(0.8, 1.0, 0.6))
    res = star_average_calibration(sim["image"].data)
    # field stars average B-V ~0.65 (the G2V white): the average star lands close to the truth
    assert np.allclose(res.factors, sim["factors"], rtol=0.1), res.factors
    assert res.stats["n_used"] >= 10 and res.stats["n_matched"] == 0
