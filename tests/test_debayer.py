"""Debayer: colour-demosaicing as the oracle, known patterns, super-pixel values and WCS, NaN
handling, and the real ASI120MC flats (GRBG), DSLR crop (lying header) and Seestar frame."""
from __future__ import annotations

import glob
import warnings

import numpy as np
import pytest
from astropy.nddata import CCDData
from conftest import shared

from starloom.astro.cfa import PATTERNS, cfa_masks, subplanes
from starloom.astro.debayer import binned_wcs, debayer, debayer_ccd, superpixel
from starloom.astro.errors import StarloomError
from starloom.astro.fits import read_frame

warnings.filterwarnings("ignore", category=DeprecationWarning)  # colour-demosaicing's scipy imports


def _mosaic(rgb, pattern):
    """A CFA mosaic sampling a (3, ny, nx) scene with ``pattern``."""
    masks = cfa_masks(rgb.shape[1:], pattern)
    return sum(rgb[i] * masks[c] for i, c in enumerate("RGB"))


def _flat():
    return read_frame(sorted(glob.glob(str(shared("asi120mc", "flat") / "*.fit")))[0])


@pytest.mark.parametrize("method, name", [("bilinear", "demosaicing_CFA_Bayer_bilinear"),
                                          ("malvar2004", "demosaicing_CFA_Bayer_Malvar2004"),
                                          ("menon2007", "demosaicing_CFA_Bayer_Menon2007")])
def test_methods_are_colour_demosaicing(method, name):
    import colour_demosaicing

    rng = np.random.default_rng(3)
    cfa = rng.uniform(100, 60000, (30, 40))  # float, beyond 16 bit: nothing quantized
    expected = getattr(colour_demosaicing, name)(cfa, "GBRG")
    out = debayer(cfa, "GBRG", method)
    assert out.shape == (3, 30, 40) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.moveaxis(expected, -1, 0), rtol=1e-6)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_bilinear_recovers_a_known_smooth_scene(pattern):
    yy, xx = np.mgrid[0:24, 0:32].astype(float)
    # Linear ramps per colour: bilinear interpolation is exact for them away from the border.
    scene = np.stack([1000 + 3 * xx, 500 + 2 * yy, 200 + xx + yy])
    out = debayer(_mosaic(scene, pattern), pattern, "bilinear")
    np.testing.assert_allclose(out[:, 2:-2, 2:-2], scene[:, 2:-2, 2:-2], rtol=1e-6)
    # A wrong pattern puts red where blue belongs.
    wrong = debayer(_mosaic(scene, pattern), {"RGGB": "BGGR"}.get(pattern, "RGGB"), "bilinear")
    assert np.abs(wrong[:, 2:-2, 2:-2] - scene[:, 2:-2, 2:-2]).max() > 100


def test_superpixel_exact_values():
    data = np.arange(16, dtype=float).reshape(4, 4)
    out = superpixel(data, "GRBG")  # tile [[G, R], [B, G]]
    np.testing.assert_array_equal(out[0], [[1, 3], [9, 11]])          # R sites
    np.testing.assert_array_equal(out[1], [[2.5, 4.5], [10.5, 12.5]])  # (G1 + G2) / 2
    np.testing.assert_array_equal(out[2], [[4, 6], [12, 14]])          # B sites
    assert superpixel(np.ones((5, 7)), "RGGB").shape == (3, 2, 3)  # odd row/column dropped


@pytest.mark.parametrize("roworder", ["TOP-DOWN", "BOTTOM-UP"])
@pytest.mark.parametrize("method", ["bilinear", "malvar2004", "superpixel"])
def test_real_asi120_flat_colours_land_in_their_planes(roworder, method):
    flat = _flat()
    levels = {k: float(np.median(v)) for k, v in subplanes(flat.data, "GRBG").items()}
    ccd = flat.copy()
    if roworder == "BOTTOM-UP":
        # The same sensor read out as a bottom-up writer stores it (header copy, in memory).
        ccd.data = flat.data[::-1].copy()
        ccd.header["ROWORDER"] = "BOTTOM-UP"
    rgb = debayer_ccd(ccd, method)
    assert rgb.header["CFAPAT"] == ("GRBG" if roworder == "TOP-DOWN" else "BGGR")
    assert "BAYERPAT" not in rgb.header and "BAYERPAT" in flat.header
    medians = [float(np.median(p)) for p in rgb.data]
    # The red plane has the red sites' level, blue the blue's, green the greens' (its own).
    assert medians[0] == pytest.approx(levels["R"], rel=0.01)
    assert medians[2] == pytest.approx(levels["B"], rel=0.01)
    assert medians[1] == pytest.approx((levels["G1"] + levels["G2"]) / 2, rel=0.01)
    if roworder == "BOTTOM-UP" and method != "superpixel":
        # Flipped back, the bottom-up result is the top-down one (symmetric kernels).
        np.testing.assert_allclose(rgb.data[:, ::-1], debayer_ccd(flat, method).data, rtol=1e-5)


def test_dslr_crop_needs_the_pattern_override():
    ccd = read_frame(shared("dslr_bayer", "solved.fits"))
    assert ccd.header["FILTER"] == "RGGB" and "BAYERPAT" not in ccd.header
    with pytest.raises(StarloomError, match="no BAYERPAT.*parameter 'pattern'"):
        debayer_ccd(ccd, name="solved.fits")
    diagonal = np.median(np.concatenate([ccd.data[0::2, 0::2], ccd.data[1::2, 1::2]]))
    right = debayer_ccd(ccd, "bilinear", pattern="GRBG")
    lying = debayer_ccd(ccd, "bilinear", pattern="RGGB")
    # With the greens on the (0,0)/(1,1) diagonal the green plane has the diagonal's level
    # (the sky is brightest in green for a DSLR); the header's RGGB puts it into red and blue.
    assert np.median(right.data[1]) == pytest.approx(diagonal, rel=0.005)
    assert np.median(right.data[1]) > max(np.median(right.data[0]), np.median(right.data[2]))
    assert np.median(lying.data[0]) == pytest.approx(diagonal, rel=0.01)
    # The WCS (TAN-SIP) is kept unchanged.
    assert right.wcs is not None and right.wcs.sip is not None
    np.testing.assert_allclose(right.wcs.wcs.crpix, ccd.wcs.wcs.crpix)


def test_superpixel_wcs_points_at_the_tile_centres():
    ccd = read_frame(shared("dslr_bayer", "solved.fits"))
    half = debayer_ccd(ccd, "superpixel", pattern="GRBG")
    assert half.shape == (3, 350, 350)
    x, y = np.array([0.0, 120.0, 349.0]), np.array([0.0, 300.0, 17.0])
    sep = ccd.wcs.pixel_to_world(2 * x + 0.5, 2 * y + 0.5).separation(
        half.wcs.pixel_to_world(x, y))
    assert sep.arcsec.max() < 1e-6  # SIP included
    # astropy's wcs[::2, ::2] is the reference for a plain CDELT WCS.
    from astropy.wcs import WCS
    plain = WCS(naxis=2)
    plain.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    plain.wcs.crpix, plain.wcs.cdelt, plain.wcs.crval = [50, 40], [-1e-3, 1e-3], [10, 20]
    np.testing.assert_allclose(binned_wcs(plain).wcs.crpix, plain[::2, ::2].wcs.crpix)


def test_nan_and_masked_pixels():
    rng = np.random.default_rng(5)
    data = rng.normal(1000, 10, (20, 24))
    data[10, 11] = np.nan
    mask = np.zeros(data.shape, bool)
    mask[3, 4] = True
    ccd = CCDData(data, unit="adu", mask=mask, meta={"BAYERPAT": "RGGB"})
    rgb = debayer_ccd(ccd, "bilinear")
    assert np.isnan(rgb.data[:, 10, 11]).all()
    assert np.isfinite(np.delete(rgb.data.reshape(3, -1), 10 * 24 + 11, axis=1)).all()
    assert rgb.mask.shape == (3, 20, 24)
    assert rgb.mask[:, 9:12, 10:13].all() and rgb.mask[:, 2:5, 3:6].all()
    assert rgb.mask.sum() == 3 * 18
    assert rgb.header["DEBAYER"] == "bilinear"


def test_rejects_rgb_input():
    with pytest.raises(StarloomError, match="already debayered"):
        debayer_ccd(CCDData(np.ones((3, 4, 4)), unit="adu", meta={"BAYERPAT": "RGGB"}))
    with pytest.raises(StarloomError, match="method"):
        debayer(np.ones((4, 4)), "RGGB", "vng")


def test_real_seestar_frame_debayers_in_colour():
    path = sorted(glob.glob(str(shared("seestar_m94") / "*.fit")))[0]
    ccd = read_frame(path)
    rgb = debayer_ccd(ccd, "malvar2004")
    assert rgb.shape == (3, 1920, 1080) and rgb.header["CFAPAT"] == "GRBG"
    r, g, b = (float(np.median(p)) for p in rgb.data)
    # Uncorrected sky of a colour CMOS: green brightest (two sites' worth of sensitivity).
    assert g > r and g > b


def test_graph_debayers_real_flats_frame_by_frame_and_writes_planar_fits(tmp_path):
    from starloom.graph_runtime.cache import Cache
    from starloom.graph_runtime.graph import plan
    from starloom.graph_runtime.registry import default_registry
    from starloom.graph_runtime.run import Run
    from starloom.serialization import GraphDocument

    files = sorted(glob.glob(str(shared("asi120mc", "flat") / "*.fit")))[:2]
    doc = GraphDocument.model_validate({
        "nodes": [{"id": "load", "type": "io.load_frames", "version": 1,
                   "params": {"path": ",".join(files)}},
                  {"id": "debayer", "type": "colour.debayer_frames", "version": 1,
                   "params": {"method": "superpixel"}},
                  {"id": "save", "type": "io.save_fits", "version": 1,
                   "params": {"filename": "rgb_{index}.fits"}}],
        "edges": [{"from": "load.frames", "to": "debayer.frames"},
                  {"from": "debayer.frames", "to": "save.image"}]})
    run = Run(tmp_path / "run", Cache(tmp_path / "cache"))
    result = run.execute(plan(doc, default_registry()))
    assert result.status == "ok", result.error
    assert result.frames_computed == 2
    back = read_frame(tmp_path / "run" / "outputs" / "rgb_1.fits")
    assert back.shape == (3, 480, 640) and back.header["CFAPAT"] == "GRBG"
    assert "BAYERPAT" not in back.header
    raw = read_frame(files[1])
    np.testing.assert_allclose(back.data[0], subplanes(raw.data, "GRBG")["R"])  # red plane
