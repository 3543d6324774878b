"""Colour composition (RGB/LRGB through reproject), colour display stretches (astropy's
make_lupton_rgb as the oracle), colour PNG and planar FITS output, on simulated scenes and the
real SDSS g, r, i images of astropy's Lupton example."""
from __future__ import annotations

import warnings

import numpy as np
import png
import pytest
from fake_context import FakeContext
from astropy.nddata import CCDData
from astropy.wcs import WCS
from conftest import shared

from starloom.astro.colour import colour_stretch, compose_rgb, luminance_replace, lupton_stretch
from starloom.astro.errors import StarloomError
from starloom.astro.fits import read_frame, write_frame
from starloom.astro.stretch import write_png

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _wcs(crpix):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 30.0]
    w.wcs.crpix = crpix
    w.wcs.cdelt = [-1 / 3600, 1 / 3600]
    return w


def _star_image(wcs, shape=(60, 80), flux=1000.0, sky=10.0, filt="R"):
    """A Gaussian star at RA 150.0, Dec 30.0 (sigma 2 px) on a flat sky."""
    x0, y0 = wcs.world_to_pixel_values(150.0, 30.0)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    data = sky + flux * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 8.0)
    return CCDData(data.astype(np.float32), unit="adu", wcs=wcs, meta={"FILTER": filt})


FakeCtx = FakeContext


def test_lupton_stretch_is_make_lupton_rgb():
    from astropy.visualization import make_lupton_rgb

    rng = np.random.default_rng(0)
    rgb = rng.gamma(2.0, 50.0, (3, 40, 50))
    ours = lupton_stretch(rgb, [1.0, 2.0, 3.0], Q=8, stretch=40)
    theirs = make_lupton_rgb(*rgb, minimum=[1.0, 2.0, 3.0], Q=8, stretch=40,
                             output_dtype=np.float64)
    np.testing.assert_allclose(ours, np.moveaxis(theirs, -1, 0), atol=1e-6)


def test_auto_lupton_curve_is_the_grey_asinh_stretch():
    from astropy.visualization import AsinhStretch

    x = np.linspace(0, 1, 21)
    grey = np.stack([x, x, x])[:, None, :]  # equal bands: I = x, colour ratio 1
    out = lupton_stretch(grey, 0.0, percentile_high=100, asinh_a=0.05)
    np.testing.assert_allclose(out[0, 0], AsinhStretch(a=0.05)(x), atol=1e-6)


def test_lupton_keeps_colour_ratios():
    rng = np.random.default_rng(1)
    scene = rng.uniform(1, 20, (40, 50))
    rgb = np.stack([2.0 * scene, 1.0 * scene, 0.5 * scene])
    out = colour_stretch(rgb, "lupton", percentile_low=0, percentile_high=99.0)
    below = out.max(axis=0) < 1  # unsaturated pixels keep R:G:B minus the black level
    black = rgb.min()
    np.testing.assert_allclose(out[0][below] / out[1][below],
                               (rgb[0][below] - black) / (rgb[1][below] - black), rtol=1e-4)


def test_unlinked_neutralises_a_colour_cast_and_linked_keeps_it():
    rng = np.random.default_rng(2)
    cast = np.array([100.0, 200.0, 50.0])[:, None, None]
    rgb = cast * rng.normal(1.0, 0.05, (3, 50, 60))
    linked = [float(np.median(p)) for p in colour_stretch(rgb, "linked")]
    assert linked[1] > linked[0] > linked[2] + 0.1
    unlinked = [float(np.median(p)) for p in colour_stretch(rgb, "unlinked")]
    assert max(unlinked) - min(unlinked) < 0.02
    # Lupton, unlinked: the coloured sky becomes black, a star equally bright in every band
    # above it comes out white (hue kept above the black level).
    rgb[:, 25, 30] += 5000.0
    lupton = colour_stretch(rgb, "lupton_unlinked")
    assert np.median(lupton, axis=(1, 2)).max() < 0.01
    assert np.ptp(lupton[:, 25, 30]) < 0.05 * lupton[:, 25, 30].max()
    with pytest.raises(StarloomError, match="colour stretch"):
        colour_stretch(rgb, "vivid")
    with pytest.raises(StarloomError, match=r"\(3, ny, nx\)"):
        colour_stretch(rgb[0], "linked")


def test_nan_and_masked_pixels_are_black():
    rgb = np.random.default_rng(3).uniform(1, 10, (3, 20, 20))
    rgb[1, 5, 5] = np.nan
    mask = np.zeros((20, 20), bool)
    mask[7, 8] = True
    for method in ("linked", "unlinked", "lupton", "lupton_unlinked"):
        out = colour_stretch(rgb, method, mask=mask)
        assert np.isfinite(out).all() and out[:, 7, 8].max() == 0 and out[1, 5, 5] == 0


def test_compose_rgb_reprojects_onto_the_reference_wcs():
    ref = _wcs([40.0, 30.0])
    red = _star_image(ref, filt="R")
    green = _star_image(_wcs([45.5, 27.25]), filt="G")  # the same star 5.5, -2.75 px away
    blue = _star_image(_wcs([37.0, 33.0]), shape=(70, 90), filt="B")
    rgb, info = compose_rgb(red, green, blue, reference="red")
    assert rgb.shape == (3, 60, 80) and rgb.data.dtype == np.float32
    assert rgb.wcs.wcs.crpix.tolist() == [40.0, 30.0]
    assert [rgb.header[f"RGBSRC{i}"] for i in (1, 2, 3)] == ["R", "G", "B"]
    assert "FILTER" not in rgb.header and rgb.header["COLORSPC"] == "RGB"
    # Every plane's star peaks at the reference's pixel of RA 150, Dec 30.
    x0, y0 = (int(round(float(v))) for v in ref.world_to_pixel_values(150.0, 30.0))
    for plane in rgb.data:
        assert np.unravel_index(np.nanargmax(plane), plane.shape) == (y0, x0)
    # reproject_interp is the oracle for the green plane.
    from reproject import reproject_interp
    expected, _ = reproject_interp((green.data, green.wcs), ref, shape_out=(60, 80))
    np.testing.assert_allclose(rgb.data[1][rgb.mask[1] == 0], expected[rgb.mask[1] == 0],
                               rtol=1e-5)
    assert rgb.mask[1].any() and info["masked_fraction"] > 0  # green doesn't cover the edge


def test_compose_without_wcs_needs_one_grid():
    a = CCDData(np.ones((10, 12)), unit="adu")
    rgb, _ = compose_rgb(a, a, a)
    assert rgb.shape == (3, 10, 12)
    with pytest.raises(StarloomError, match="no WCS to reproject"):
        compose_rgb(a, a, CCDData(np.ones((10, 14)), unit="adu"))
    with pytest.raises(StarloomError, match="'luminance' is not connected"):
        compose_rgb(a, a, a, reference="luminance")


def test_luminance_replace_keeps_colour_differences():
    rng = np.random.default_rng(4)
    scene = rng.uniform(0, 100, (40, 50))
    true = np.stack([1.2 * scene, scene, 0.7 * scene])
    noisy = true + rng.normal(0, 5, true.shape)
    lum = 3.0 * scene + 7.0  # another exposure and unit: scale and offset are fitted
    out, fit = luminance_replace(noisy, lum)
    # Y = (1.2 + 1 + 0.7) / 3 scene = 2.9 / 9 (L - 7)
    assert fit["scale"] == pytest.approx(2.9 / 9, rel=0.02)
    assert fit["offset"] == pytest.approx(-7 * 2.9 / 9, abs=0.3)
    # Luminance now follows L exactly (its noise gone), colour differences kept.
    np.testing.assert_allclose(out.mean(axis=0), true.mean(axis=0), atol=0.5)
    diff_in = noisy - noisy.mean(axis=0)
    np.testing.assert_allclose(out - out.mean(axis=0), diff_in, atol=1e-3)
    with pytest.raises(StarloomError, match="does not match"):
        luminance_replace(noisy, lum[:10])


def test_real_sdss_gri_lupton_composite(tmp_path):
    folder = shared("sdss_gri")
    g, r, i = (read_frame(folder / f"reprojected_sdss_{b}.fits.bz2") for b in "gri")
    rgb, _ = compose_rgb(i, r, g, reference="red")  # astropy's example: i, r, g as R, G, B
    # Already on one grid: the reprojection changes nothing inside.
    np.testing.assert_allclose(rgb.data[2][5:-5, 5:-5], g.data[5:-5, 5:-5], rtol=1e-4, atol=1e-4)
    from astropy.visualization import make_lupton_rgb
    ours = lupton_stretch(rgb.data, 0.0, Q=10, stretch=0.5)
    theirs = make_lupton_rgb(i.data, r.data, g.data, Q=10, stretch=0.5, output_dtype=np.float64)
    np.testing.assert_allclose(ours[:, 5:-5, 5:-5], np.moveaxis(theirs, -1, 0)[:, 5:-5, 5:-5],
                               atol=1e-4)
    path = write_png(tmp_path / "ngc6976.png", ours, 16)
    width, height, rows, meta = png.Reader(filename=str(path)).asDirect()
    assert (width, height, meta["planes"], meta["bitdepth"]) == (682, 496, 3, 16)


def test_planar_rgb_fits_round_trip(tmp_path):
    rgb, _ = compose_rgb(*(_star_image(_wcs([40.0, 30.0]), filt=f) for f in "RGB"))
    path = write_frame(rgb, tmp_path / "rgb.fits")
    back = read_frame(path)
    assert back.shape == (3, 60, 80) and back.header["NAXIS3"] == 3
    np.testing.assert_array_equal(back.data, rgb.data)
    np.testing.assert_allclose(back.wcs.wcs.crpix, [40.0, 30.0])


def test_save_png_writes_colour_for_rgb(tmp_path):
    from starloom.nodes.io import SavePng

    rgb, _ = compose_rgb(*(_star_image(_wcs([40.0, 30.0]), sky=s) for s in (10.0, 30.0, 5.0)))
    for colour in ("linked", "unlinked", "lupton_unlinked"):
        params = SavePng.Params(filename=f"{colour}.png", colour=colour, bit_depth=16)
        path = SavePng().run(FakeCtx(tmp_path), params, rgb)["path"]
        width, height, rows, meta = png.Reader(filename=path).asDirect()
        pixels = np.array([np.asarray(r) for r in rows]).reshape(height, width, 3)
        assert meta["planes"] == 3 and meta["bitdepth"] == 16
        sky = np.median(pixels.reshape(-1, 3), axis=0)
        if colour == "linked":
            assert sky[1] > sky[0] > sky[2]  # the green cast shows
        else:
            assert np.ptp(sky) < 0.02 * 65535  # neutral background


def test_compose_node_and_debayer_node(tmp_path):
    from starloom.nodes.colour import ComposeRGB, Debayer

    ctx = FakeCtx(tmp_path)
    stacks = [_star_image(_wcs([40.0, 30.0]), filt=f) for f in "RGB"]
    out = ComposeRGB().run(ctx, ComposeRGB.Params(), *stacks)["image"]
    assert out.shape == (3, 60, 80) and (tmp_path / "preview.png").exists()
    cfa = CCDData(np.full((20, 30), 100.0, np.float32), unit="adu", meta={"BAYERPAT": "RGGB"})
    out = Debayer().run(ctx, Debayer.Params(method="superpixel"), cfa)["image"]
    assert out.shape == (3, 10, 15) and ctx.diagnostics["pattern"] == "RGGB"
    assert ctx.diagnostics["median_rgb"] == [100.0, 100.0, 100.0]
