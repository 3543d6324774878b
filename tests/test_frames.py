"""FrameSeries: lazy access, metadata, grouping, band-wise reductions against numpy/astropy."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.stats import sigma_clip
from starloom.astro import fits as fitsio
from starloom.astro.frames import FrameRef, FrameSeries


@pytest.fixture
def series(tmp_path):
    rng = np.random.default_rng(5)
    refs = []
    for i in range(7):
        data = rng.normal(1000, 10, (64, 48)).astype(np.float32)
        data[10, 10] += 5000 * (i == 3)  # one outlier frame at one pixel
        ccd = CCDData(np.round(data), unit="adu",
                      meta={"IMAGETYP": "Dark Frame", "EXPTIME": 10.0 * (1 + i % 2), "FILTER": "L"})
        path = fitsio.write_frame(ccd, tmp_path / f"f{i}.fits", dtype="uint16")
        refs.append(FrameRef(key=f"k{i}", name=f"f{i}", path=str(path),
                             meta=fitsio.frame_metadata(fitsio.read_header(path), path)))
    return FrameSeries(refs)


def _cube(series):
    return np.stack([c.data for c in series])


def test_lazy_access_shape_and_metadata(series):
    assert len(series) == 7 and series.shape == (64, 48)
    assert isinstance(series[2], CCDData) and series[2].data.dtype == np.float32
    meta = series.metadata
    assert list(meta["name"]) == [f"f{i}" for i in range(7)]
    assert list(meta["IMAGETYP"]) == ["dark"] * 7
    assert len(series[1:3]) == 2
    groups = series.group_by(("EXPTIME",))
    assert [k for k in groups] == [(10.0,), (20.0,)] and len(groups[(10.0,)]) == 4


@pytest.mark.parametrize("method, fn", [("max", np.max), ("min", np.min), ("median", np.median),
                                        ("average", np.mean)])
def test_reductions_agree_with_numpy(series, method, fn):
    out = series.reduce(method, band_bytes=4 * 7 * 48 * 5) if method in ("median", "average") \
        else series.reduce(method)
    np.testing.assert_allclose(out.data, fn(_cube(series), axis=0), rtol=1e-6)
    assert out.header["NCOMBINE"] == 7


def test_percentile_and_sigma_clipped_mean(series):
    cube = _cube(series)
    p90 = series.reduce("percentile", percentile=90)
    np.testing.assert_allclose(p90.data, np.percentile(cube, 90, axis=0), rtol=1e-6)
    # With 7 frames no value can be 3 sigma out (at most (n-1)/sqrt(n) = 2.27): clip at 2.
    clipped = series.reduce("average", rejection="sigma_clip", sigma_low=2, sigma_high=2)
    ref = sigma_clip(cube, sigma=2, maxiters=5, axis=0, cenfunc="median", stdfunc="std").mean(axis=0)
    np.testing.assert_allclose(clipped.data, ref, rtol=1e-5)
    assert clipped.data[10, 10] < 1100  # the outlier was rejected


def test_mismatched_shapes_name_the_frame(series, tmp_path):
    odd = fitsio.write_frame(CCDData(np.zeros((10, 10), np.float32), unit="adu"), tmp_path / "odd.fits")
    bad = FrameSeries(list(series.refs) + [FrameRef(key="x", name="odd", path=str(odd),
                                                     meta=fitsio.frame_metadata(fitsio.read_header(odd)))])
    with pytest.raises(ValueError, match=r"frame 'odd' has shape \(10, 10\), expected \(64, 48\)"):
        bad.reduce("median")


def test_in_memory_frames_are_keyed_by_content():
    a = CCDData(np.ones((4, 4), np.float32), unit="adu")
    b = CCDData(np.ones((4, 4), np.float32) * 2, unit="adu")
    s1 = FrameSeries.from_frames([a, b], ["a", "b"])
    s2 = FrameSeries.from_frames([a, b.copy()], ["a", "b"])
    assert [r.key for r in s1.refs] == [r.key for r in s2.refs]
    assert s1.refs[0].key != s1.refs[1].key
    np.testing.assert_allclose(s1.reduce("average").data, 1.5)
