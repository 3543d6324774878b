"""Background gradient extraction (BGE) on simulated colour and mono images with a known gradient."""
from __future__ import annotations

import numpy as np
import pytest
from starloom.astro.background import extract_background, sky_mask
from starloom.astro.errors import ParamError, StarloomError
from starloom.astro.simulate_colour import simulate_colour_image


def plane_slope(plane, not_sky):
    """|gradient| of a least-squares plane a + b x + c y through the sky pixels (per px)."""
    ny, nx = plane.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    ok = ~not_sky & np.isfinite(plane)
    a = np.column_stack([np.ones(ok.sum()), xx[ok], yy[ok]])
    coef = np.linalg.lstsq(a, plane[ok], rcond=None)[0]
    return float(np.hypot(coef[1], coef[2]))


@pytest.fixture(scope="module")
def field():
    return simulate_colour_image(seed=3, shape=(150, 200), n_stars=50, gradient=0.8)


@pytest.mark.parametrize("method", ["polynomial", "rbf"])
def test_bge_removes_the_simulated_gradient(field, method):
    data = field["image"].data
    res = extract_background(data, method=method, degree=1, smoothing=0.5)
    not_sky = sky_mask(data.mean(axis=0))
    for c in range(3):
        before = plane_slope(data[c].astype(float), not_sky)
        true = plane_slope(field["sky"][c], np.zeros_like(not_sky))
        after = plane_slope(res.image[c].astype(float), not_sky)
        assert before == pytest.approx(true, rel=0.1)  # the measure sees the true gradient
        assert after < 0.05 * before, (c, before, after)
    # the model is the sky: within 2 % of the known gradient, channel by channel
    inner = (slice(None), slice(10, -10), slice(10, -10))
    assert np.allclose(res.model[inner], field["sky"][inner], rtol=0.02)
    # 'common' pedestal: the three channels end on one grey sky level
    levels = [np.median(res.image[c][~not_sky]) for c in range(3)]
    assert np.ptp(levels) < 0.01 * np.mean(levels)
    assert res.stats["n_used"] > 0.5 * res.stats["n_samples"]
    assert set(res.samples.colnames) >= {"x", "y", "used", "value_0", "value_2", "model_1"}


def test_bge_mono_divide_flattens_vignetting():
    ny, nx = 120, 160
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((xx - nx / 2) ** 2 + (yy - ny / 2) ** 2) / (nx / 2) ** 2
    vignetting = 1.0 - 0.3 * r2
    rng = np.random.default_rng(0)
    data = 1000.0 * vignetting + rng.normal(0, 3, (ny, nx))
    res = extract_background(data, degree=2, correction="divide")
    assert res.image.shape == (ny, nx) and res.model.dtype == np.float32
    assert np.std(res.image) < 0.1 * np.std(data)
    assert np.allclose(res.model / res.model.mean(), vignetting / vignetting.mean(), rtol=0.01)


def test_bge_bad_inputs_name_the_problem():
    with pytest.raises(StarloomError, match="2-D image"):
        extract_background(np.zeros(50))
    with pytest.raises(ParamError, match="box_size"):
        extract_background(np.random.default_rng(1).normal(100, 1, (40, 40)), box_size=30)
    with pytest.raises(ParamError, match="method"):
        extract_background(np.zeros((40, 40)), method="kriging")


def test_bge_on_a_real_frame_models_the_sky_not_the_stars():
    from astropy.stats import SigmaClip
    from conftest import shared
    from photutils.aperture import ApertureStats, CircularAnnulus
    from starloom.astro.fits import read_frame
    from starloom.astro.stars import detect_stars

    path = sorted(shared("stargate").glob("*.fit"))[0]  # real 752x581 mono CCD frame
    data = read_frame(path).data.astype(float)
    res = extract_background(data, method="rbf", smoothing=1.0)
    ch = res.stats["channels"][0]
    assert ch["rms_after"] < ch["rms_before"]
    # under the brightest stars the model is the local sky around them (an oracle from
    # photutils: the clipped median of an annulus), not raised by the star's light
    stars, metrics = detect_stars(data)
    bright = stars[:15]
    xy = np.column_stack([bright["x"], bright["y"]])
    sky = ApertureStats(data, CircularAnnulus(xy, 10, 18), sigma_clip=SigmaClip(3.0)).median
    model = res.model[np.rint(bright["y"]).astype(int), np.rint(bright["x"]).astype(int)]
    assert np.all(np.abs(model - sky) < 5 * metrics["background_rms"]), (model - sky, metrics["background_rms"])
