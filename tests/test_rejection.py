"""The stack's rejection suite and rejection map: each method against its formula on hand-made
pixels, per-pixel brute-force references (astropy, ccdproc, Siril's definitions, Rosner's GESD),
the NIST/SEMATECH GESD worked example, masks, weights, band streaming, and a simulated satellite
trail with hot pixels."""
from __future__ import annotations

import warnings

import ccdproc
import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.stats import sigma_clip
from scipy.stats import t as student_t
from starloom.astro import combiner as combine_module
from starloom.astro.combiner import combine_arrays
from starloom.astro.rejection_fit import gesd_critical_values, gesd_test
from test_combine import _siril_winsorized

NEW = ("linear_fit", "percentile", "gesd")
ALL = ("sigma_clip", "winsorized", "minmax") + NEW

# NIST/SEMATECH e-Handbook of Statistical Methods, 1.3.5.17.3 "Generalized Extreme Studentized
# Deviate Test for Outliers", https://www.itl.nist.gov/div898/handbook/eda/section3/eda35h3.htm:
# Rosner's (1983) 54 values, tested for up to 10 outliers at alpha = 0.05, and its summary table.
ROSNER = np.array("""
    -0.25 0.68 0.94 1.15 1.20 1.26 1.26 1.34 1.38 1.43 1.49 1.49 1.55 1.56 1.58 1.65 1.69 1.70
    1.76 1.77 1.81 1.91 1.94 1.96 1.99 2.06 2.09 2.10 2.14 2.15 2.23 2.24 2.26 2.35 2.37 2.40
    2.47 2.54 2.62 2.64 2.90 2.92 2.92 2.93 3.21 3.26 3.30 3.59 3.68 4.30 4.64 5.34 5.42 6.01
    """.split(), dtype=float)
NIST_R = [3.118, 2.942, 3.179, 2.810, 2.815, 2.848, 2.279, 2.310, 2.101, 2.067]
NIST_LAMBDA = [3.158, 3.151, 3.143, 3.136, 3.128, 3.120, 3.111, 3.103, 3.094, 3.085]


# ---- per-pixel references, written from each method's definition, one pixel at a time ----

def _ref_kept(v, rejection, sl=3.0, sh=3.0, maxiters=5, nlow=1, nhigh=1, pl=0.2, ph=0.1,
              frac=0.3, alpha=0.05):
    """Kept values of one pixel's valid values ``v`` (1-D float64)."""
    v = np.sort(v)
    if rejection == "sigma_clip":
        return v[~sigma_clip(v, sigma_lower=sl, sigma_upper=sh, maxiters=maxiters,
                             cenfunc="median", stdfunc="std").mask]
    if rejection == "winsorized":
        return np.array(_siril_winsorized(v, sl, sh)) if len(v) > 3 else v
    if rejection == "minmax":
        return v[nlow:len(v) - nhigh]
    if rejection == "percentile":  # Siril's percentile_clipping, median of all values
        med = np.median(v)
        return v[(med - v <= pl * abs(med)) & (v - med <= ph * abs(med))]
    if rejection == "linear_fit":
        for _ in range(maxiters):
            if len(v) < 4:
                break
            k = np.arange(len(v))
            slope, icpt = np.polyfit(k, v, 1)
            res = v - (icpt + slope * k)
            sigma = np.mean(np.abs(res))
            rej = (-res > sl * sigma) | (res > sh * sigma)
            if not rej.any() or len(v) - rej.sum() < 4:
                break
            v = v[~rej]
        return v
    if rejection == "gesd":
        return _ref_gesd(v, frac, alpha)
    raise AssertionError(rejection)


def _ref_gesd(v, frac, alpha):
    """Rosner (1983) as the e-Handbook states it: remove the value farthest from the mean r
    times; the outliers are the first i removed, i the largest with R_i > lambda_i."""
    x = list(v)
    n = len(x)
    r = max(0, min(int(np.floor(frac * n)), n - 3))
    removed, n_out = [], 0
    for i in range(1, r + 1):
        a = np.array(x)
        dev = np.abs(a - a.mean())
        j = int(np.argmax(dev))
        m = len(a)
        t = student_t.ppf(1 - alpha / (2 * m), m - 2)
        lam = (m - 1) * t / np.sqrt((m - 2 + t * t) * m)
        if dev[j] / a.std(ddof=1) > lam:
            n_out = i
        removed.append(x.pop(j))
    return np.sort(np.array(removed[n_out:] + x))


def _stack(seed, n=15, shape=(9, 8), n_outliers=30, nan=True):
    """Gaussian frames (1000 +/- 10) with strong outliers, one NaN and a few masked values."""
    rng = np.random.default_rng(seed)
    frames = [rng.normal(1000.0, 10.0, shape) for _ in range(n)]
    for f in frames:
        idx = rng.integers(0, f.size, n_outliers // n + 2)
        f.flat[idx] += rng.choice([-1, 1], idx.size) * rng.uniform(80, 4000, idx.size)
    masks = [rng.random(shape) < 0.05 for _ in range(n)]
    if nan:
        frames[2][1, 1] = np.nan
    return frames, masks


def _reference_maps(frames, masks, rejection, weights=None, **kw):
    """Brute force, pixel by pixel: average of the kept values (weighted), kept count and the
    values rejected below / above the kept median."""
    stack = np.array(frames)
    bad = ~np.isfinite(stack) | np.array(masks)
    shape = stack.shape[1:]
    data, count = np.full(shape, np.nan), np.zeros(shape, int)
    low, high = np.zeros(shape, int), np.zeros(shape, int)
    for idx in np.ndindex(shape):
        col = stack[(slice(None),) + idx]
        ok = ~bad[(slice(None),) + idx]
        kept = _ref_kept(col[ok], rejection, **kw)
        keep = ok & np.isin(col, kept)
        count[idx] = keep.sum()
        rejected = col[ok & ~keep]
        med = np.median(kept) if kept.size else np.inf
        low[idx], high[idx] = (rejected < med).sum(), (rejected >= med).sum()
        if count[idx]:
            data[idx] = np.average(col[keep], weights=None if weights is None else weights[keep])
    return data, count, low, high


_OURS = {"sigma_clip": {}, "winsorized": {"maxiters": 50}, "minmax": {"nlow": 2, "nhigh": 1},
         "linear_fit": {"sigma_low": 2.5, "sigma_high": 2.5},
         "percentile": {"percentile_low": 0.015, "percentile_high": 0.02},
         "gesd": {"gesd_outliers": 0.3, "gesd_alpha": 0.05}}
_REF = {"sigma_clip": {}, "winsorized": {"maxiters": 50}, "minmax": {"nlow": 2, "nhigh": 1},
        "linear_fit": {"sl": 2.5, "sh": 2.5}, "percentile": {"pl": 0.015, "ph": 0.02},
        "gesd": {"frac": 0.3, "alpha": 0.05}}


@pytest.mark.parametrize("rejection", ALL)
def test_every_method_equals_its_per_pixel_reference_with_masks_and_weights(rejection):
    frames, masks = _stack(seed=21)
    weights = np.linspace(0.5, 2.0, len(frames))
    res = combine_arrays(frames, masks=masks, rejection=rejection, weights=weights,
                         dtype=np.float64, rejection_map=True, **_OURS[rejection])
    data, count, low, high = _reference_maps(frames, masks, rejection, weights=weights,
                                             **_REF[rejection])
    np.testing.assert_array_equal(res.count, count)
    np.testing.assert_allclose(res.data, data, rtol=1e-12)
    np.testing.assert_array_equal(res.rejected[0], low)
    np.testing.assert_array_equal(res.rejected[1], high)
    assert res.rejected.dtype == np.uint16
    n_valid = len(frames) - (np.array(masks) | np.isnan(np.array(frames))).sum(axis=0)
    np.testing.assert_array_equal(res.count + res.rejected.sum(axis=0), n_valid)
    assert 0 < res.rejected.sum() and res.rejected[0].sum() > 0 and res.rejected[1].sum() > 0
    # the median of the kept values, too
    med = combine_arrays(frames, masks=masks, rejection=rejection, method="median",
                         dtype=np.float64, **_OURS[rejection])
    np.testing.assert_array_equal(med.count, count)


@pytest.mark.parametrize("rejection", ["sigma_clip", "minmax"])
def test_rejection_map_of_the_ccdproc_methods_equals_ccdproc_masks(rejection):
    """ccdproc.Combiner's own clipping masks give the same per-pixel rejection counts."""
    frames, _ = _stack(seed=22, nan=False)
    combiner = ccdproc.Combiner([CCDData(f, unit="adu") for f in frames])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rejection == "sigma_clip":
            combiner.sigma_clipping(low_thresh=3, high_thresh=3, func="median", dev_func="std")
            ours = combine_arrays(frames, rejection=rejection, maxiters=1, dtype=np.float64,
                                  rejection_map=True)
        else:
            combiner.clip_extrema(nlow=1, nhigh=2)
            ours = combine_arrays(frames, rejection=rejection, nlow=1, nhigh=2,
                                  dtype=np.float64, rejection_map=True)
        mean = combiner.average_combine()
    arr = combiner.data_arr
    kept_median = np.ma.median(arr, axis=0)
    rejected = arr.mask
    values = arr.data
    np.testing.assert_array_equal(ours.rejected[0], (rejected & (values < kept_median)).sum(0))
    np.testing.assert_array_equal(ours.rejected[1], (rejected & (values >= kept_median)).sum(0))
    np.testing.assert_allclose(ours.data, mean.data, rtol=1e-12)


def test_percentile_formula_on_a_hand_made_pixel():
    # median 100: keep [80, 110] with p_low 0.2, p_high 0.1 (Siril's defaults)
    values = [100.0, 70.0, 85.0, 112.0, 99.0, 101.0, 130.0]
    frames = [np.full((2, 3), v) for v in values]
    res = combine_arrays(frames, rejection="percentile", dtype=np.float64, rejection_map=True)
    assert (res.count == 4).all()
    np.testing.assert_allclose(res.data, (85 + 99 + 100 + 101) / 4)
    assert (res.rejected[0] == 1).all() and (res.rejected[1] == 2).all()
    # a value exactly on the bound is kept (Siril rejects only beyond it)
    on_bound = combine_arrays([np.full((1, 1), v) for v in (100.0, 80.0, 110.0, 100.0)],
                              rejection="percentile", dtype=np.float64)
    assert on_bound.count[0, 0] == 4


def test_linear_fit_formula_on_a_hand_made_pixel():
    # a clean ramp of sorted values (so the line fits it exactly) and one high outlier
    values = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 60.0]
    frames = [np.full((1, 2), v) for v in values[::-1]]
    res = combine_arrays(frames, rejection="linear_fit", dtype=np.float64, rejection_map=True)
    # round 1: least-squares line through (k, y); 60 lies sigma_high mean abs deviations above
    k = np.arange(10.0)
    slope, icpt = np.polyfit(k, values, 1)
    res1 = np.array(values) - (icpt + slope * k)
    mad = np.mean(np.abs(res1))
    assert res1[-1] > 3 * mad and (np.abs(res1[:-1]) < 3 * mad).all()
    # round 2: the ramp fits exactly (sigma 0), nothing more is rejected
    assert (res.count == 9).all() and (res.rejected[1] == 1).all()
    np.testing.assert_allclose(res.data, 14.0)
    # four values are always kept
    few = combine_arrays([np.full((1, 1), v) for v in (1.0, 2.0, 3.0, 1e6)],
                         rejection="linear_fit", dtype=np.float64)
    assert few.count[0, 0] == 4


def test_gesd_reproduces_the_nist_worked_example():
    n_out, outliers, R, lam = gesd_test(ROSNER, max_outliers=10, alpha=0.05)
    assert n_out == 3
    np.testing.assert_array_equal(outliers, [5.34, 5.42, 6.01])
    # the handbook prints 3 decimals, truncated: within 1.5e-3
    np.testing.assert_allclose(R, NIST_R, atol=1.5e-3)
    np.testing.assert_allclose(lam, NIST_LAMBDA, atol=1.5e-3)
    assert R[2] > lam[2] and not (R[3:] > lam[3:]).any()  # i = 3 is the last significant test
    # R_1 < lambda_1: a single Grubbs test would have found nothing (masking), GESD finds 3
    assert R[0] < lam[0]
    # the same through the stack: 54 frames, every pixel its own shuffle of the 54 values
    rng = np.random.default_rng(5)
    cube = np.array([rng.permutation(ROSNER) for _ in range(6)]).T.reshape(54, 2, 3)
    weights = rng.uniform(0.5, 2.0, 54)
    res = combine_arrays(list(cube), rejection="gesd", gesd_outliers=0.19, gesd_alpha=0.05,
                         weights=weights, dtype=np.float64, rejection_map=True)
    assert (res.count == 51).all() and (res.rejected[1] == 3).all() and (res.rejected[0] == 0).all()
    keep = cube < 5.3
    expect = (cube * keep * weights[:, None, None]).sum(0) / (keep * weights[:, None, None]).sum(0)
    np.testing.assert_allclose(res.data, expect, rtol=1e-12)


def test_gesd_critical_values_formula():
    lam = gesd_critical_values(60, 0.05)
    assert np.isnan(lam[:3]).all()
    m = 20
    t = student_t.ppf(1 - 0.05 / (2 * m), m - 2)
    assert lam[m] == pytest.approx((m - 1) * t / np.sqrt((m - 2 + t * t) * m), rel=1e-14)
    for m in range(3, 61):  # scipy.special.stdtrit is what scipy.stats.t.ppf evaluates
        t = student_t.ppf(1 - 0.05 / (2 * m), m - 2)
        assert lam[m] == pytest.approx((m - 1) * t / np.sqrt((m - 2 + t * t) * m), rel=1e-12)
    # Rosner's table entries for n = 54 at 5 %: lambda_1 = 3.158, lambda_10 = 3.085
    assert lam[54] == pytest.approx(3.1587, abs=5e-4) and lam[45] == pytest.approx(3.0855,
                                                                                   abs=5e-4)


def test_gesd_on_clean_data_rejects_about_alpha_of_the_pixels():
    rng = np.random.default_rng(9)
    frames = [rng.normal(500.0, 5.0, (100, 200)) for _ in range(50)]
    res = combine_arrays(frames, rejection="gesd", gesd_alpha=0.05, rejection_map=True)
    # the test's size: about alpha of clean pixels test positive (+/- 3.5 standard errors)
    assert 0.045 < np.count_nonzero(res.rejected.sum(0)) / 20000 < 0.06
    strict = combine_arrays(frames, rejection="gesd", gesd_alpha=0.01, rejection_map=True)
    assert 0.006 < np.count_nonzero(strict.rejected.sum(0)) / 20000 < 0.015


@pytest.mark.parametrize("rejection", NEW)
def test_masked_values_never_enter_the_rejection(rejection):
    """A frame masked at a pixel gives the same result there as the stack without that frame."""
    frames, _ = _stack(seed=23, n=13, nan=False)
    frames[5][3, 3] = 1e6  # masked: would be rejected and counted if it took part
    masks = [np.zeros((9, 8), bool) for _ in frames]
    masks[5][3, 3] = True
    res = combine_arrays(frames, masks=masks, rejection=rejection, dtype=np.float64,
                         rejection_map=True)
    without = combine_arrays(frames[:5] + frames[6:], rejection=rejection, dtype=np.float64,
                             rejection_map=True)
    assert res.data[3, 3] == without.data[3, 3]
    assert res.count[3, 3] == without.count[3, 3]
    np.testing.assert_array_equal(res.rejected[:, 3, 3], without.rejected[:, 3, 3])


@pytest.mark.parametrize("rejection", NEW)
def test_new_methods_bit_identical_for_every_band_chunk_and_thread_count(rejection, monkeypatch):
    frames, masks = _stack(seed=24, n=11, shape=(23, 7))
    frames = [f.astype(np.float32) for f in frames]
    kw = dict(rejection=rejection, masks=masks, weights=np.linspace(0.5, 2.0, 11),
              rejection_map=True, maxiters=3)
    ref = combine_arrays(frames, threads=1, **kw)
    one_row = 11 * 7 * 4
    for band_rows, chunk_rows, threads in ((1, 1, 2), (5, 2, 2), (23, 4, 3)):
        monkeypatch.setattr(combine_module, "_CHUNK_BYTES", chunk_rows * one_row)
        res = combine_arrays(frames, band_bytes=band_rows * one_row, threads=threads, **kw)
        for name in ("data", "mask", "uncertainty", "count", "rejected"):
            np.testing.assert_array_equal(getattr(res, name), getattr(ref, name),
                                          err_msg=f"{name}, {band_rows}-row bands")


def test_uint16_frames_equal_float_frames_for_the_new_methods():
    rng = np.random.default_rng(25)
    frames = [rng.integers(900, 1100, (8, 6)).astype(np.uint16) for _ in range(12)]
    frames[3][4, 4] = 60000
    for rejection in NEW:
        as_int = combine_module.combine_bands(lambda i, y0, y1: (frames[i][y0:y1], None), 12,
                                              (8, 6), rejection=rejection, rejection_map=True)
        as_float = combine_arrays([f.astype(np.float32) for f in frames], rejection=rejection,
                                  rejection_map=True)
        for name in ("data", "count", "rejected"):
            np.testing.assert_array_equal(getattr(as_int, name), getattr(as_float, name))
        assert as_int.rejected[1, 4, 4] >= 1


def _trail_session(seed=31, n=15, shape=(100, 120)):
    """Registered frames of a static scene (sky 1000 ADU + a gradient + stars, noise 10 ADU),
    a satellite trail (+400 ADU, 2 px wide) across frame 6 and 25 hot pixels (+3000 ADU) at
    different places in every frame (registration moved them; at most one per pixel, off the
    trail: two outliers among 15 values inflate the standard deviation past 3 sigma, a known
    limit of sigma clipping that is not what this test is about)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(float)
    truth = 1000.0 + 0.3 * xx
    for _ in range(12):
        y0, x0 = rng.uniform(5, shape[0] - 5), rng.uniform(5, shape[1] - 5)
        r2 = (yy - y0) ** 2 + (xx - x0) ** 2
        truth += rng.uniform(200, 2000) * np.exp(-r2 / (2 * 1.5 ** 2))
    frames = [truth + rng.normal(0.0, 10.0, shape) for _ in range(n)]
    trail = np.abs(yy - (15 + 0.6 * xx)) < 1.0
    frames[6][trail] += 400.0
    hot = np.zeros(shape, bool)
    places = rng.choice(np.flatnonzero(~trail), (n, 25), replace=False)
    for f, idx in zip(frames, places):
        f.flat[idx] += 3000.0
        hot.flat[idx] = True
    return frames, truth, trail, hot


@pytest.mark.parametrize("rejection,kw", [
    ("sigma_clip", {}), ("winsorized", {}), ("minmax", {"nlow": 1, "nhigh": 2}),
    ("linear_fit", {"sigma_low": 5.0, "sigma_high": 5.0}), ("percentile", {}), ("gesd", {})])
def test_each_method_removes_a_satellite_trail_and_maps_it(rejection, kw):
    frames, truth, trail, hot = _trail_session()
    plain = combine_arrays(frames, dtype=np.float64)
    assert (plain.data - truth)[trail].mean() > 20.0  # 400 / 15 leaks into a plain average
    res = combine_arrays(frames, rejection=rejection, rejection_map=True, **kw)
    resid = (res.data - truth)[trail]
    noise = 10.0 / np.sqrt(len(frames))
    assert abs(resid.mean()) < 0.6 * noise and resid.std() < 1.6 * noise, resid
    assert np.abs(res.data - truth)[hot].max() < 8 * noise  # no hot pixel left (one adds 200)
    high = res.rejected[1]
    assert (high[trail] >= 1).mean() > 0.97
    assert (high[hot] >= 1).all()
    if rejection != "minmax":  # minmax drops nhigh values everywhere: its map is uniform
        clean = ~trail & ~hot
        assert (high[trail] >= 1).mean() > 3 * (high[clean] >= 1).mean()


def test_stack_node_outputs_the_rejection_map_and_its_picture(tmp_path):
    """stacking.combine from the command line's runtime: GESD on FITS frames with a trail."""
    import json

    from PIL import Image
    from starloom.astro import fits as fitsio
    from starloom.graph_runtime.cache import Cache
    from starloom.graph_runtime.graph import plan
    from starloom.graph_runtime.registry import default_registry
    from starloom.graph_runtime.run import Run
    from starloom.serialization import GraphDocument

    frames, truth, trail, hot = _trail_session(shape=(60, 80))
    (tmp_path / "lights").mkdir()
    for i, f in enumerate(frames):
        ccd = CCDData(f.astype(np.float32), unit="adu", meta={"IMAGETYP": "Light Frame",
                                                            "EXPTIME": 60.0})
        fitsio.write_frame(ccd, tmp_path / "lights" / f"light_{i:03d}.fits")
    doc = GraphDocument.model_validate({
        "nodes": [{"id": "load", "type": "io.load_frames", "version": 1,
                   "params": {"path": str(tmp_path / "lights")}},
                  {"id": "stack", "type": "stacking.combine", "version": 1,
                   "params": {"rejection": "gesd", "gesd_outliers": 0.2, "weights": "none",
                              "normalization": "none"}}],
        "edges": [{"from": "load.frames", "to": "stack.frames"}]})
    result = Run(tmp_path / "run", Cache(tmp_path / "cache")).execute(plan(doc, default_registry()))
    assert result.status == "ok", result.error
    out = result.outputs["stack"]
    rmap = out["rejection_map"]
    # counts (the node returns uint16; the cache reads images back as float)
    assert rmap.data.shape == (60, 80) and (rmap.data == np.round(rmap.data)).all()
    assert rmap.header["REJECT"] == "gesd" and rmap.header["NCOMBINE"] == 15
    assert (rmap.data[trail] >= 1).all() and (rmap.data[hot] >= 1).all()
    assert rmap.header["REJHIGH"] == int(rmap.data.sum()) - rmap.header["REJLOW"]
    assert np.abs(out["image"].data - truth)[trail].mean() < 3.0
    png = np.asarray(Image.open(tmp_path / "run/artifacts/stack/rejection_map.png"))
    assert png.shape == (60, 80, 3)
    red = png[::-1, :, 0]  # PNG rows run top-down, FITS rows bottom-up
    assert red[trail].min() > 100 and np.median(red[~trail & ~hot]) == 0
    diag = json.loads((tmp_path / "run/artifacts/stack.json").read_text())
    assert diag["rejection"]["pixels_with_rejection"] > trail.mean()
    assert diag["rejection"]["max_rejected"] >= 1


def test_params_are_validated():
    from pydantic import ValidationError
    from starloom.nodes.stacking import Stack

    p = Stack.Params(rejection="gesd")
    assert (p.gesd_outliers, p.gesd_alpha, p.percentile_low, p.percentile_high) == (
        0.3, 0.05, 0.2, 0.1)
    for bad in ({"gesd_alpha": 0.7}, {"gesd_outliers": 0.0}, {"percentile_low": 1.5},
                {"percentile_high": -0.1}, {"nlow": -1}, {"rejection": "gesdt"}):
        with pytest.raises(ValidationError):
            Stack.Params(**bad)
    frames, _ = _stack(seed=1, n=5)
    with pytest.raises(ValueError, match="gesd_alpha must be in"):
        combine_arrays(frames, rejection="gesd", gesd_alpha=0.5)
    with pytest.raises(ValueError, match="percentile_low and percentile_high"):
        combine_arrays(frames, rejection="percentile", percentile_low=0)
    with pytest.raises(ValueError, match="rejection_map must be True or a uint16 array"):
        combine_arrays(frames, rejection_map=np.zeros((2, 9, 8), np.int32))


def test_rejection_map_image_and_picture():
    from starloom.astro.stacking import rejection_map_image, rejection_map_rgb, rejection_summary

    rejected = np.zeros((2, 2100, 30), np.uint16)
    rejected[1, 2099, 29] = 4  # one pixel in the last, partial block
    rejected[0, 5, 5] = 1
    img = rejection_map_image(rejected, 20, "sigma_clip")
    assert img.data.dtype == np.uint16 and img.data.sum() == 5 and str(img.unit) == "ct"
    assert (img.header["REJLOW"], img.header["REJHIGH"], img.header["REJECT"]) == (1, 4,
                                                                                   "sigma_clip")
    rgb = rejection_map_rgb(rejected, max_pixels=8000)
    assert rgb.shape == (3, 700, 10)  # reduced by 3 (63000 / 9 <= 8000): block maxima
    assert rejection_map_rgb(rejected).shape == (3, 2100, 30)  # small enough as it is
    assert rgb[0, 699, 9] == 1.0 and rgb[2, 1, 1] == pytest.approx(0.5) and rgb[1].max() == 0
    s = rejection_summary(rejected, 20)
    assert s["max_rejected"] == 4 and s["pixels_with_rejection"] == pytest.approx(2 / 63000)
    assert s["rejected_high"] == pytest.approx(4 / (20 * 63000))


def test_planar_rgb_rejection_map_equals_per_plane():
    from starloom.astro.stacking import rejection_map_rgb

    rng = np.random.default_rng(26)
    frames = [rng.normal(500, 20, (3, 12, 9)) for _ in range(12)]
    frames[1][2, 4, 4] = 1e5
    res = combine_arrays(frames, rejection="gesd", rejection_map=True,
                         band_bytes=12 * 3 * 9 * 4 * 2)
    assert res.rejected.shape == (2, 3, 12, 9)
    for c in range(3):
        plane = combine_arrays([f[c] for f in frames], rejection="gesd", rejection_map=True)
        np.testing.assert_array_equal(res.rejected[:, c], plane.rejected)
    assert res.rejected[1, 2, 4, 4] >= 1
    assert rejection_map_rgb(res.rejected).shape == (3, 12, 9)
