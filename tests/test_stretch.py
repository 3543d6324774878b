"""Display stretches, PNG writing and thumbnails."""
import numpy as np
import png
import pytest
from astropy.visualization import AsinhStretch, ZScaleInterval
from starloom.astro.stretch import STRETCH_METHODS, stretch, thumbnail, write_png


@pytest.fixture
def sky():
    """Noisy sky with a few bright 'stars', float64 (60, 80)."""
    rng = np.random.default_rng(0)
    image = rng.normal(1000.0, 20.0, (60, 80))
    image[rng.integers(0, 60, 15), rng.integers(0, 80, 15)] += rng.uniform(500, 20000, 15)
    return image


def read_png(path):
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    array = np.array([np.asarray(row) for row in rows])
    return array.reshape(height, width, planes).squeeze(), info


@pytest.mark.parametrize("method", STRETCH_METHODS)
def test_every_method_maps_onto_0_1(sky, method):
    out = stretch(sky, method)
    assert out.dtype == np.float32 and out.shape == sky.shape
    assert 0.0 <= out.min() < 0.01 and out.max() == 1.0
    # Stretches are monotonic: brighter input is never drawn darker.
    order = np.argsort(sky, axis=None)
    assert np.all(np.diff(out.ravel()[order]) >= 0)


def test_linear_uses_the_percentile_interval(sky):
    lo, hi = np.percentile(sky, [1.0, 99.0])
    expected = np.clip((sky - lo) / (hi - lo), 0, 1)
    out = stretch(sky, "linear", percentile_low=1.0, percentile_high=99.0)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_asinh_is_astropy_asinh_of_the_linear_result(sky):
    linear = stretch(sky, "linear").astype(float)
    np.testing.assert_allclose(stretch(sky, "asinh", asinh_a=0.05),
                               AsinhStretch(a=0.05)(linear), atol=1e-6)


def test_zscale_matches_astropy_limits(sky):
    vmin, vmax = ZScaleInterval().get_limits(sky)
    assert 900 < vmin < vmax < 1200  # zscale ignores the stars (>= 1500)
    np.testing.assert_allclose(stretch(sky, "zscale"), np.clip((sky - vmin) / (vmax - vmin), 0, 1),
                               atol=1e-6)


def test_histeq_flattens_the_histogram(sky):
    out = stretch(sky, "histeq", percentile_low=0, percentile_high=100)
    counts, _ = np.histogram(out, bins=4, range=(0, 1))
    np.testing.assert_allclose(counts / out.size, 0.25, atol=0.02)


@pytest.mark.parametrize("method", STRETCH_METHODS)
def test_nan_and_masked_pixels_are_ignored_and_drawn_black(sky, method):
    clean = stretch(sky, method)
    spoiled = sky.copy()
    spoiled[5, 5] = np.nan
    spoiled[10, 10] = 1e9
    mask = np.zeros(sky.shape, dtype=bool)
    mask[10, 10] = True
    out = stretch(spoiled, method, mask=mask)
    assert out[5, 5] == 0 and out[10, 10] == 0
    good = np.isfinite(spoiled) & ~mask
    # Two pixels fewer barely move the interval; the 1e9 outlier would ruin it if it counted.
    np.testing.assert_allclose(out[good], clean[good], atol=0.02)
    np.testing.assert_array_equal(stretch(np.ma.MaskedArray(spoiled, mask), method), out)


def test_rgb_channels_share_one_interval(sky):
    rgb = np.stack([sky, 2 * sky, 0.5 * sky])
    out = stretch(rgb, "linear", percentile_low=0, percentile_high=100)
    assert out.shape == (3, 60, 80) and out.dtype == np.float32
    np.testing.assert_allclose(out, (rgb - rgb.min()) / (rgb.max() - rgb.min()), atol=1e-6)
    mask = np.zeros(sky.shape, dtype=bool)
    mask[0, 0] = True
    assert np.all(stretch(rgb, "asinh", mask=mask)[:, 0, 0] == 0)


def test_degenerate_images_give_black():
    assert np.all(stretch(np.full((4, 4), 7.0), "asinh") == 0)
    assert np.all(stretch(np.full((4, 4), np.nan), "zscale") == 0)


def test_bad_arguments_raise(sky):
    with pytest.raises(ValueError, match="linear, asinh, zscale, histeq"):
        stretch(sky, "log")
    with pytest.raises(ValueError, match="percentile"):
        stretch(sky, percentile_low=50, percentile_high=10)
    with pytest.raises(ValueError, match="shape"):
        stretch(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="mask"):
        stretch(sky, mask=np.zeros((3, 3), dtype=bool))


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_gray_png_round_trip_with_fits_rows_at_the_bottom(tmp_path, bit_depth):
    image = np.linspace(0, 1, 6 * 5).reshape(6, 5)
    image[0, :] = 1.0  # FITS row 0: the bottom of the picture
    path = write_png(tmp_path / "gray.png", image, bit_depth=bit_depth)
    assert path == tmp_path / "gray.png"
    pixels, info = read_png(path)
    top = 2**bit_depth - 1
    assert info["bitdepth"] == bit_depth and info["greyscale"]
    assert pixels.shape == (6, 5)
    np.testing.assert_array_equal(pixels, np.round(image * top)[::-1])
    assert np.all(pixels[-1] == top)
    assert [p.name for p in tmp_path.iterdir()] == ["gray.png"]  # no temporary left behind


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_rgb_png_round_trip(tmp_path, bit_depth):
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 1, (3, 7, 9))
    rgb[0, 0, 0] = np.nan
    rgb[1, 0, 0] = 1.5
    pixels, info = read_png(write_png(tmp_path / "rgb.png", rgb, bit_depth))
    top = 2**bit_depth - 1
    assert not info["greyscale"] and info["planes"] == 3
    expected = np.round(np.clip(np.nan_to_num(rgb), 0, 1) * top)
    np.testing.assert_array_equal(pixels, np.moveaxis(expected, 0, -1)[::-1])
    assert tuple(pixels[-1, 0]) == (0, top, round(rgb[2, 0, 0] * top))


def test_png_overwrites_and_rejects_bad_bit_depth(tmp_path):
    path = tmp_path / "out.png"
    write_png(path, np.zeros((4, 4)))
    write_png(path, np.ones((4, 4)))
    assert np.all(read_png(path)[0] == 255)
    with pytest.raises(ValueError, match="bit_depth"):
        write_png(tmp_path / "bad.png", np.zeros((4, 4)), bit_depth=12)
    with pytest.raises(ValueError, match="shape"):
        write_png(tmp_path / "bad.png", np.zeros((4, 4, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_thumbnail_block_averages():
    image = np.arange(600 * 1000, dtype=float).reshape(600, 1000)
    small = thumbnail(image, max_size=256)
    assert small.dtype == np.float32 and small.shape == (150, 250)  # factor 4
    assert small[0, 0] == pytest.approx(image[:4, :4].mean())
    rgb = np.stack([image, -image, np.zeros_like(image)])
    assert thumbnail(rgb, max_size=256).shape == (3, 150, 250)
    tiny = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, 7.0], [9.0, 9.0, 9.0]])
    np.testing.assert_allclose(thumbnail(tiny, max_size=2), [[2.0, 6.0], [9.0, 9.0]])
    np.testing.assert_array_equal(thumbnail(tiny, max_size=3), tiny)
    with pytest.raises(ValueError, match="max_size"):
        thumbnail(image, max_size=0)
