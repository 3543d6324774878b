"""Tests of starloom.astro.combiner against ccdproc.combine, astropy and plain numpy."""
from __future__ import annotations

import warnings
from pathlib import Path

import ccdproc
import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.stats import sigma_clip
from starloom.astro.combiner import band_height, combine_arrays, combine_bands
from starloom.astro import combiner as combine_module

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BIAS_DIR = DATA / "asi120mc" / "bias"

CCDPROC_REJECTION = {
    "none": ({}, {}),
    # ccdproc.combine runs exactly one sigma_clip round, with cenfunc/stdfunc given here
    "sigma_clip": ({"maxiters": 1},
                   {"sigma_clip": True, "sigma_clip_func": "median", "sigma_clip_dev_func": "std",
                    "sigma_clip_low_thresh": 3, "sigma_clip_high_thresh": 3}),
    "minmax": ({"nlow": 1, "nhigh": 2}, {"clip_extrema": True, "nlow": 1, "nhigh": 2}),
}


def _stack(seed=0, n=11, shape=(40, 30), n_outliers=25):
    """Gaussian frames (mean 1000, sigma 10) with strong positive and negative outliers."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        f = rng.normal(1000.0, 10.0, shape)
        idx = rng.integers(0, f.size, n_outliers)
        f.flat[idx] += rng.choice([-1, 1], n_outliers) * rng.uniform(200, 5000, n_outliers)
        frames.append(f)
    return frames


def _ccdproc(frames, method, dtype=np.float64, **kwargs):
    ccds = [CCDData(np.asarray(f), unit="adu") for f in frames]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nan-reduction and log chatter
        return ccdproc.combine(ccds, method=method, dtype=dtype, **kwargs)


@pytest.mark.parametrize("method", ["average", "median", "sum"])
@pytest.mark.parametrize("rejection", ["none", "sigma_clip", "minmax"])
def test_matches_ccdproc_synthetic(method, rejection):
    frames = _stack()
    ours_kw, ccd_kw = CCDPROC_REJECTION[rejection]
    ref = _ccdproc(frames, method, **ccd_kw)
    res = combine_arrays(frames, method=method, rejection=rejection, dtype=np.float64, **ours_kw)
    np.testing.assert_allclose(res.data, ref.data, rtol=1e-12)
    np.testing.assert_array_equal(res.mask, ref.mask)
    if method != "median":  # ccdproc's median uncertainty is MAD-based, ours is std-based
        np.testing.assert_allclose(res.uncertainty, ref.uncertainty.array, rtol=1e-9)
    if rejection != "none":
        assert res.count.min() < len(frames)  # the outliers were really rejected somewhere

    res32 = combine_arrays(frames, method=method, rejection=rejection, **ours_kw)
    assert res32.data.dtype == np.float32 and res32.uncertainty.dtype == np.float32
    assert res32.count.dtype == np.int16 and res32.mask.dtype == bool
    np.testing.assert_allclose(res32.data, ref.data, rtol=2e-6)


def test_sigma_clip_iterated_matches_astropy():
    frames = _stack(seed=3, n=15)
    stack = np.array(frames)
    ref = sigma_clip(stack, sigma_lower=2.5, sigma_upper=2.0, maxiters=5, axis=0,
                     cenfunc="median", stdfunc="std", masked=True)
    res = combine_arrays(frames, rejection="sigma_clip", sigma_low=2.5, sigma_high=2.0,
                         maxiters=5, dtype=np.float64)
    np.testing.assert_array_equal(res.count, (~ref.mask).sum(axis=0))
    np.testing.assert_allclose(res.data, ref.mean(axis=0).filled(np.nan), rtol=1e-12)
    np.testing.assert_allclose(res.uncertainty, ref.std(axis=0) / np.sqrt(res.count.astype(float)),
                               rtol=1e-9)
    # more rounds reject more than the single ccdproc round
    one = combine_arrays(frames, rejection="sigma_clip", sigma_low=2.5, sigma_high=2.0,
                         maxiters=1, dtype=np.float64)
    assert one.count.sum() > res.count.sum()


@pytest.mark.realdata
@pytest.mark.skipif(not BIAS_DIR.is_dir(), reason="../shared/data/asi120mc/bias absent")
@pytest.mark.parametrize("method,rejection", [("average", "sigma_clip"), ("median", "sigma_clip"),
                                              ("sum", "minmax"), ("median", "none")])
def test_matches_ccdproc_real_bias(method, rejection):
    from astropy.io import fits

    paths = sorted(BIAS_DIR.glob("*.fit"))
    assert len(paths) == 10
    # Data only (the header's EXPTIME is a malformed string, irrelevant here); a 256-row strip
    # keeps ccdproc's runtime small.
    frames = [fits.getdata(p)[:256].astype(np.float32) for p in paths]
    ours_kw, ccd_kw = CCDPROC_REJECTION[rejection]
    ref = _ccdproc(frames, method, dtype=np.float32, **ccd_kw)
    res = combine_arrays(frames, method=method, rejection=rejection, **ours_kw)
    np.testing.assert_allclose(res.data, ref.data, rtol=1e-6)
    if method != "median":
        np.testing.assert_allclose(res.uncertainty, ref.uncertainty.array, rtol=1e-4)
    assert not res.mask.any()
    level = np.median(res.data) / (res.count.max() if method == "sum" else 1)
    assert 1900 < level < 2700  # an ASI120 bias level, in ADU (x16 scaled)


@pytest.mark.parametrize("rejection", ["none", "sigma_clip", "winsorized", "minmax",
                                       "linear_fit", "percentile", "gesd"])
@pytest.mark.parametrize("method", ["average", "median"])
def test_bands_equal_single_band(method, rejection, monkeypatch):
    frames = _stack(seed=5, n=7, shape=(37, 16))
    frames[2][5, 3] = np.nan
    kw = dict(method=method, rejection=rejection, weights=np.arange(1.0, 8.0),
              rejection_map=True)
    whole = combine_arrays(frames, **kw)
    calls = []
    one_row = 7 * 16 * 4  # bytes of one row of all frames in float32
    assert band_height(7, (37, 16), 4, 5 * one_row) == 5
    banded = combine_arrays(frames, band_bytes=5 * one_row,
                            progress=lambda done, total: calls.append((done, total)), **kw)
    assert calls == [(min(y, 37), 37) for y in range(5, 41, 5)]
    # statistics in 2-row chunks inside each band
    monkeypatch.setattr(combine_module, "_CHUNK_BYTES", 2 * one_row)
    chunked = combine_arrays(frames, **kw)
    for name in ("data", "mask", "uncertainty", "count", "rejected"):
        np.testing.assert_array_equal(getattr(banded, name), getattr(whole, name))
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))


def test_planar_rgb_equals_per_plane():
    rng = np.random.default_rng(7)
    # 12 frames: with fewer, one outlier inflates the std too much to lie beyond 3 sigma
    frames = [rng.normal(500, 20, (3, 12, 9)) for _ in range(12)]
    frames[1][2, 4, 4] = 1e5
    res = combine_arrays(frames, rejection="sigma_clip", band_bytes=12 * 3 * 9 * 4 * 2)
    assert res.data.shape == (3, 12, 9)
    for c in range(3):
        plane = combine_arrays([f[c] for f in frames], rejection="sigma_clip")
        np.testing.assert_array_equal(res.data[c], plane.data)
        np.testing.assert_array_equal(res.count[c], plane.count)
    assert res.count[2, 4, 4] == 11 and res.count[0, 4, 4] == 12


def test_weights_match_np_average():
    frames = _stack(seed=2, n=6, n_outliers=0)
    weights = np.array([1.0, 2.0, 0.5, 3.0, 1.0, 0.25])
    res = combine_arrays(frames, weights=weights, dtype=np.float64)
    np.testing.assert_allclose(res.data, np.average(np.array(frames), axis=0, weights=weights),
                               rtol=1e-12)
    plain = combine_arrays(frames, dtype=np.float64)
    assert np.abs(res.data - plain.data).max() > 1.0  # weights really changed the average
    # a masked value leaves the normalisation to the weights of the contributing frames
    masks = [np.zeros((40, 30), bool) for _ in frames]
    masks[3][0, 0] = True
    res_m = combine_arrays(frames, masks=masks, weights=weights, dtype=np.float64)
    expect = np.ma.average(np.ma.array(frames, mask=masks), axis=0, weights=weights)
    np.testing.assert_allclose(res_m.data, expect.filled(np.nan), rtol=1e-12)
    # weighted sum, as ccdproc.Combiner.sum_combine
    res_s = combine_arrays(frames, method="sum", weights=weights, dtype=np.float64)
    np.testing.assert_allclose(res_s.data, np.tensordot(weights, np.array(frames), 1), rtol=1e-12)
    # median ignores weights
    np.testing.assert_array_equal(combine_arrays(frames, method="median", weights=weights).data,
                                  combine_arrays(frames, method="median").data)


def test_weights_follow_values_through_rejection():
    # frame order differs from value order, so weights must be permuted with the sort
    frames = [np.full((4, 4), v) for v in (40.0, 1000.0, 10.0, 30.0, 20.0)]
    res = combine_arrays(frames, rejection="minmax", nlow=1, nhigh=1,
                         weights=[1, 1, 1, 4, 1], dtype=np.float64)
    np.testing.assert_allclose(res.data, (40 + 4 * 30 + 20) / 6)
    assert (res.count == 3).all()
    # and on random data with sigma clipping, against numpy's masked weighted average
    frames = _stack(seed=8, n=12)
    weights = np.linspace(0.5, 2.0, 12)
    res = combine_arrays(frames, rejection="sigma_clip", weights=weights, dtype=np.float64)
    clipped = sigma_clip(np.array(frames), axis=0, maxiters=5, cenfunc="median", stdfunc="std")
    np.testing.assert_allclose(res.data, np.ma.average(clipped, axis=0, weights=weights),
                               rtol=1e-12)


def test_scales_applied_before_combining():
    frames = _stack(seed=4, n=8)
    scales = np.linspace(0.8, 1.3, 8)
    ref = _ccdproc(frames, "average", scale=scales)
    res = combine_arrays(frames, scales=scales, dtype=np.float64)
    np.testing.assert_allclose(res.data, ref.data, rtol=1e-12)
    scaled = [f * s for f, s in zip(frames, scales)]
    for rejection in ("sigma_clip", "winsorized"):
        np.testing.assert_array_equal(
            combine_arrays(frames, scales=scales, rejection=rejection, dtype=np.float64).count,
            combine_arrays(scaled, rejection=rejection, dtype=np.float64).count)


def _siril_winsorized(values, sig_low, sig_high):
    """Per-pixel port of Siril's WINSORIZED case (src/stacking/rejection_float.c), reference."""
    stack = sorted(values)
    while True:
        n = len(stack)
        med = float(np.median(stack))
        sigma = float(np.std(stack, ddof=1))
        w = np.array(stack)
        while True:
            w = np.clip(w, med - 1.5 * sigma, med + 1.5 * sigma)
            sigma0, sigma = sigma, 1.134 * float(np.std(w, ddof=1))
            if abs(sigma - sigma0) <= sigma0 * 5e-4:
                break
        stack = [v for v in stack if not (med - v > sig_low * sigma or v - med > sig_high * sigma)]
        if len(stack) == n or len(stack) <= 3:
            return stack


def test_winsorized_matches_siril_reference_and_rejects_cosmic_ray():
    rng = np.random.default_rng(11)
    truth = 1000.0
    frames = [rng.normal(truth, 10.0, (6, 5)) for _ in range(12)]
    frames[4][2, 2] += 3000.0  # cosmic ray
    frames[7][2, 2] += 80.0  # milder hot value in the same pixel
    frames[9][0, 1] -= 150.0
    res = combine_arrays(frames, rejection="winsorized", sigma_low=3.0, sigma_high=3.0,
                         maxiters=50, dtype=np.float64)
    stack = np.array(frames)
    for y in range(6):
        for x in range(5):
            kept = _siril_winsorized(stack[:, y, x], 3.0, 3.0)
            assert res.count[y, x] == len(kept), (y, x)
            assert res.data[y, x] == pytest.approx(np.mean(kept), rel=1e-12)
    assert res.count[2, 2] == 10 and res.count[0, 1] == 11
    assert abs(res.data[2, 2] - truth) < 15.0  # 10/sqrt(10) noise; an unrejected CR adds ~250
    plain = combine_arrays(frames)
    assert plain.data[2, 2] - truth > 200.0


def test_winsorized_single_cosmic_ray_float32():
    rng = np.random.default_rng(12)
    frames = [rng.normal(500.0, 5.0, (20, 20)).astype(np.float32) for _ in range(10)]
    frames[3][10, 10] = 60000.0
    res = combine_arrays(frames, rejection="winsorized")
    assert res.count[10, 10] == 9
    assert res.data[10, 10] == pytest.approx(np.mean([f[10, 10] for i, f in enumerate(frames)
                                                      if i != 3]), rel=1e-6)
    assert res.count.mean() > 9.8  # clean Gaussian pixels are seldom clipped


def test_mask_propagation():
    frames = [np.full((5, 6), v, dtype=np.float32) for v in (1.0, 2.0, 3.0, 10.0)]
    masks = [np.zeros((5, 6), bool) for _ in frames]
    masks[3][1, 1] = True  # excluded: average of 1, 2, 3
    for m in masks:
        m[4, 5] = True  # no frame left
    frames[0][0, 0] = np.nan  # NaN counts as a bad pixel
    frames[1][0, 0] = np.inf  # so does inf
    for method in ("average", "median", "sum"):
        res = combine_arrays(frames, masks=masks, method=method)
        assert res.data[1, 1] == {"average": 2.0, "median": 2.0, "sum": 6.0}[method]
        assert res.count[1, 1] == 3 and res.count[0, 0] == 2 and res.count[2, 2] == 4
        assert res.data[0, 0] == {"average": 6.5, "median": 6.5, "sum": 13.0}[method]
        assert res.mask[4, 5] and res.count[4, 5] == 0 and np.isnan(res.data[4, 5])
        assert res.mask.sum() == 1
    ma = [np.ma.array(f, mask=m) for f, m in zip(frames, masks)]
    np.testing.assert_array_equal(combine_arrays(ma).count,
                                  combine_arrays(frames, masks=masks).count)


def test_read_band_contract_rows_and_calls():
    frames = _stack(seed=9, n=3, shape=(10, 4))
    seen = []

    def read_band(i, y0, y1):
        seen.append((i, y0, y1))
        return frames[i][y0:y1].astype(np.int32), None

    res = combine_bands(read_band, 3, (10, 4), method="median", band_bytes=3 * 4 * 4 * 4)
    assert seen == [(i, y, min(y + 4, 10)) for y in (0, 4, 8) for i in range(3)]
    np.testing.assert_array_equal(res.data, np.median(np.array(frames).astype(np.int32), axis=0))


def test_errors():
    frames = _stack(n=3, shape=(6, 5))
    with pytest.raises(ValueError, match="at least one frame"):
        combine_bands(lambda i, a, b: (None, None), 0, (6, 5))
    with pytest.raises(ValueError, match="at least one frame"):
        combine_arrays([])
    with pytest.raises(ValueError, match="unknown method 'mean'"):
        combine_arrays(frames, method="mean")
    with pytest.raises(ValueError, match="unknown rejection 'sigma'"):
        combine_arrays(frames, rejection="sigma")
    with pytest.raises(ValueError, match=r"weights must have shape \(3,\)"):
        combine_arrays(frames, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"scales must have shape \(3,\)"):
        combine_arrays(frames, scales=np.ones(4))
    with pytest.raises(ValueError, match="frame shape"):
        combine_bands(lambda i, a, b: (None, None), 2, (5,))
    bad = frames[:2] + [np.zeros((6, 4))]
    with pytest.raises(ValueError, match="for frame 2"):
        combine_arrays(bad)
    with pytest.raises(ValueError, match="mask of shape .* frame 1"):
        combine_arrays(frames, masks=[None, np.zeros((6, 4), bool), None])
    with pytest.raises(ValueError, match="nlow and nhigh"):
        combine_arrays(frames, rejection="minmax", nlow=-1)


@pytest.mark.parametrize("rejection", ["none", "sigma_clip", "winsorized", "minmax",
                                       "linear_fit", "percentile", "gesd"])
@pytest.mark.parametrize("method", ["average", "median", "sum"])
def test_bit_identical_for_every_memory_limit_and_thread_count(method, rejection, monkeypatch):
    """The stack node's memory_limit is a cache-key-free knob: every band size, chunk size and
    thread count must give the same bits (odd frame count and width, NaN, masks, weights)."""
    frames = [f.astype(np.float32) for f in _stack(seed=13, n=9, shape=(23, 7))]
    frames[4][3, 2] = np.nan
    masks = [None] * 9
    masks[6] = np.zeros((23, 7), bool)
    masks[6][10:12, :] = True
    kw = dict(method=method, rejection=rejection, weights=np.linspace(0.5, 2.0, 9), masks=masks,
              maxiters=3, rejection_map=True)
    ref = combine_arrays(frames, threads=1, **kw)
    one_row = 9 * 7 * 4
    for band_rows, chunk_rows, threads in ((1, 1, 2), (4, 2, 2), (23, 3, 3), (6, 6, 1)):
        monkeypatch.setattr(combine_module, "_CHUNK_BYTES", chunk_rows * one_row)
        res = combine_arrays(frames, band_bytes=band_rows * one_row, threads=threads, **kw)
        for name in ("data", "mask", "uncertainty", "count", "rejected"):
            np.testing.assert_array_equal(getattr(res, name), getattr(ref, name),
                                          err_msg=f"{name}, {band_rows}-row bands")


def test_uint16_rows_equal_float_rows():
    """read_band may return stored integers (the FITS reader's uint16): same result as float."""
    rng = np.random.default_rng(14)
    frames = [rng.integers(900, 1100, (12, 10)).astype(np.uint16) for _ in range(11)]
    frames[3][4, 4] = 60000
    for method, rejection in (("average", "none"), ("median", "none"), ("sum", "minmax"),
                              ("median", "winsorized"), ("average", "sigma_clip")):
        kw = dict(method=method, rejection=rejection, weights=np.arange(1.0, 12.0))
        as_int = combine_bands(lambda i, y0, y1: (frames[i][y0:y1], None), 11, (12, 10), **kw)
        as_float = combine_arrays([f.astype(np.float32) for f in frames], **kw)
        for name in ("data", "mask", "uncertainty", "count"):
            np.testing.assert_array_equal(getattr(as_int, name), getattr(as_float, name))
    assert as_int.count[4, 4] == 10
    # buffered as stored (uint16 bands, twice the rows), bit-identical
    stored = combine_bands(lambda i, y0, y1: (frames[i][y0:y1], None), 11, (12, 10),
                           rejection="sigma_clip", stored_dtype=np.uint16, band_bytes=11 * 40 * 3)
    as_float = combine_arrays([f.astype(np.float32) for f in frames], rejection="sigma_clip")
    for name in ("data", "mask", "uncertainty", "count"):
        np.testing.assert_array_equal(getattr(stored, name), getattr(as_float, name))
    with pytest.raises(ValueError, match="returned float32 data for frame 0"):
        combine_bands(lambda i, y0, y1: (frames[i][y0:y1].astype(np.float32), None), 11,
                      (12, 10), stored_dtype=np.uint16)
