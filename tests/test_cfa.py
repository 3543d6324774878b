"""CFA pattern from the header (BAYERPAT, ROWORDER, XBAYROFF/YBAYROFF), sub-planes, per-colour
flat normalisation and sub-plane warping, checked on the real ASI120MC flats (GRBG)."""
from __future__ import annotations

import glob
import warnings

import numpy as np
import pytest
from fake_context import FakeContext
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from conftest import shared

from starloom.astro.cfa import (PATTERNS, cfa_masks, cfa_pattern, normalise_cfa, subplanes,
                                warp_cfa)
from starloom.astro.errors import StarloomError
from starloom.astro.fits import read_frame


def _flat():
    return read_frame(sorted(glob.glob(str(shared("asi120mc", "flat") / "*.fit")))[0])


@pytest.mark.parametrize("header, shape, expected", [
    ({"BAYERPAT": "RGGB"}, (4, 4), "RGGB"),
    ({"BAYERPAT": "RGGB", "ROWORDER": "TOP-DOWN"}, (4, 4), "RGGB"),
    ({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, (4, 4), "GBRG"),
    ({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, (5, 4), "RGGB"),  # odd rows: same parity
    ({"BAYERPAT": "GRBG", "ROWORDER": "BOTTOM-UP"}, (960, 1280), "BGGR"),
    ({"BAYERPAT": "RGGB", "XBAYROFF": 1}, (4, 4), "GRBG"),
    ({"BAYERPAT": "RGGB", "YBAYROFF": 1}, (4, 4), "GBRG"),
    ({"BAYERPAT": "RGGB", "XBAYROFF": 1, "YBAYROFF": 1}, (4, 4), "BGGR"),
    ({"BAYERPAT": " 'bggr' "}, (4, 4), "BGGR"),
])
def test_pattern_from_header(header, shape, expected):
    assert cfa_pattern(header, shape=shape) == expected


def test_bottom_up_pattern_describes_the_same_sensor():
    # A sensor stored top-down, then the same rows stored bottom-up (ROWORDER says so):
    # the pattern read from each header must name the colour actually at numpy [0, 0].
    colours = np.array(list("RGGB")).reshape(2, 2)
    for ny in (6, 7):
        sensor = np.tile(colours, (4, 2))[:ny]
        flipped = sensor[::-1]
        pattern = cfa_pattern({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, shape=flipped.shape)
        assert "".join(flipped[:2, :2].ravel()) == pattern


def test_override_and_errors():
    assert cfa_pattern({"BAYERPAT": "RGGB"}, "GRBG") == "GRBG"
    with pytest.raises(StarloomError, match="no BAYERPAT.*parameter 'pattern'"):
        cfa_pattern({}, name="m94.fit")
    with pytest.raises(StarloomError, match="unknown CFA pattern 'RGBG'"):
        cfa_pattern({"BAYERPAT": "RGBG"})
    with pytest.raises(StarloomError, match="parameter 'pattern'"):
        cfa_pattern({}, "XYZW")
    with pytest.raises(StarloomError, match="XBAYROFF 'one'"):
        cfa_pattern({"BAYERPAT": "RGGB", "XBAYROFF": "one"}, shape=(4, 4))
    assert cfa_pattern({"BAYERPAT": "RGGB", "YBAYROFF": "1"}, shape=(4, 4)) == "GBRG"
    with pytest.raises(StarloomError, match="ROWORDER"):
        cfa_pattern({"BAYERPAT": "RGGB", "ROWORDER": "SIDEWAYS"}, shape=(4, 4))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_masks_agree_with_colour_demosaicing(pattern):
    from colour_demosaicing import masks_CFA_Bayer

    ours = cfa_masks((6, 8), pattern)
    theirs = masks_CFA_Bayer((6, 8), pattern)
    for colour, mask in zip("RGB", theirs):
        np.testing.assert_array_equal(ours[colour], mask)


def test_real_asi120_flat_green_sites_have_their_own_level():
    ccd = _flat()
    pattern = cfa_pattern(ccd.header, shape=ccd.shape, name="flat")
    assert pattern == "GRBG"
    levels = {k: float(np.median(v)) for k, v in subplanes(ccd.data, pattern).items()}
    # Lab light through the Bayer filters: green well above red, red above blue; both green
    # sites agree within 3 %.
    assert levels["G1"] > 1.1 * levels["R"] > 1.2 * levels["B"]
    assert abs(levels["G1"] / levels["G2"] - 1) < 0.03


def test_normalise_cfa_sets_every_subplane_to_one():
    ccd = _flat()
    ccd.uncertainty = StdDevUncertainty(np.sqrt(ccd.data))
    raw = subplanes(ccd.data.copy(), "GRBG")
    unc_before = ccd.uncertainty.array.copy()
    levels = normalise_cfa(ccd, "GRBG", "median")
    for key, plane in subplanes(ccd.data, "GRBG").items():
        assert np.median(plane) == pytest.approx(1.0, abs=1e-6)
        assert levels[key] == pytest.approx(float(np.median(raw[key])))
    r = subplanes(ccd.uncertainty.array, "GRBG")["R"]
    np.testing.assert_allclose(r, subplanes(unc_before, "GRBG")["R"] / levels["R"], rtol=1e-6)
    with pytest.raises(StarloomError, match="sub-plane"):
        normalise_cfa(CCDData(np.zeros((4, 4)), unit="adu"), "RGGB")


def test_warp_cfa_keeps_each_colour_in_its_sites():
    from skimage.transform import AffineTransform

    # A mosaic whose colours have very different levels: any mixing shows immediately.
    levels = {"R": 100.0, "G": 500.0, "B": 20.0}
    masks = cfa_masks((40, 60), "GRBG")
    mosaic = sum(levels[c] * masks[c] for c in "RGB").astype(float)
    tf = AffineTransform(translation=(3.3, -1.7), rotation=0.02)
    out = warp_cfa(mosaic, tf.inverse, order=3)
    inside = np.isfinite(out)
    assert inside.sum() > 0.7 * out.size
    for c in "RGB":
        np.testing.assert_allclose(out[masks[c] & inside], levels[c], rtol=1e-6)
    # Mono warping of the same mosaic mixes them (what warp_cfa avoids).
    from skimage.transform import warp
    mixed = warp(mosaic, tf.inverse, order=3, cval=0.0)
    assert np.max(np.abs(mixed[masks["B"] & inside] - 20.0)) > 50


def test_warp_cfa_nan_stays_local_and_output_shape():
    from skimage.transform import AffineTransform

    data = np.full((30, 40), 100.0)
    data[10, 12] = np.nan
    out = warp_cfa(data, AffineTransform(translation=(2.0, 0.0)).inverse, order=3,
                   output_shape=(32, 36))
    assert out.shape == (32, 36)
    bad = ~np.isfinite(out)
    # Outside the input: output columns 0-1 (shift) and rows 30-31 (input has 30 rows).
    assert bad[:, :2].all() and bad[30:].all()
    inside = bad[:30, 2:]
    assert inside[10, 12] and inside.sum() == 1  # an even shift: the NaN lands on one site
    np.testing.assert_allclose(out[~bad], 100.0)


def test_warp_cfa_shifts_by_the_transform():
    from skimage.transform import AffineTransform

    yy, xx = np.mgrid[0:40, 0:50].astype(float)
    smooth = 100 + 2.0 * xx + 0.5 * yy  # linear: interpolation is exact
    out = warp_cfa(smooth, AffineTransform(translation=(4.0, 2.0)).inverse, order=1)
    # out(x, y) = in(x - 4, y - 2)
    np.testing.assert_allclose(out[10:30, 10:40], smooth[8:28, 6:36], rtol=1e-9)


def test_header_is_never_modified():
    header = fits.Header({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP", "NAXIS2": 4})
    before = header.tostring()
    cfa_pattern(header)
    assert header.tostring() == before


def _Ctx():
    return FakeContext()


def _master_flat(cfa):
    import hashlib

    from starloom.astro.collection import collect_frames
    from starloom.nodes.calibration import MasterFlat

    files = sorted(glob.glob(str(shared("asi120mc", "flat") / "*.fit")))[:4]
    series = collect_frames(files, hash_file=lambda f: hashlib.sha256(
        open(f, "rb").read()).hexdigest(), frame_type="flat").series
    ctx = _Ctx()
    params = MasterFlat.Params(cfa=cfa, rejection="none", method="average")
    return MasterFlat().run(ctx, params, series)["flats"][0], ctx


def test_real_colour_master_flat_is_one_in_every_cfa_subplane():
    master, ctx = _master_flat("auto")
    planes = subplanes(master.data, "GRBG")
    for key, plane in planes.items():
        assert np.median(plane) == pytest.approx(1.0, abs=1e-4), key
    levels = ctx.diagnostics["flats"][0]["cfa_levels"]
    assert levels["G1"] > levels["R"] > levels["B"]  # relative to the overall median
    # Without it, one overall level: red and blue sites far from 1, so dividing a light by it
    # would tint the light.
    plain, _ = _master_flat("none")
    plain_planes = subplanes(plain.data, "GRBG")
    assert np.median(plain_planes["B"]) < 0.8 and np.median(plain_planes["G1"]) > 1.05


def test_real_seestar_registration_keeps_the_cfa_pattern():
    # Two real Seestar frames (GRBG) 33 px and 0.12 degree apart: star_align warps a frame
    # with BAYERPAT sub-plane by sub-plane, so each colour's sites keep that colour's level.
    from starloom.astro.registration import star_align

    files = sorted(glob.glob(str(shared("seestar_m94") / "*.fit")))
    ref, frame = read_frame(files[0]), read_frame(files[5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aligned = star_align(frame, ref, name="frame 5")
    assert abs(aligned.info["dx"]) > 10 and aligned.info["matched_stars"] >= 10
    assert aligned.frame.header["BAYERPAT"] == "GRBG"
    before = {k: float(np.median(v)) for k, v in subplanes(frame.data, "GRBG").items()}
    masks = subplanes(aligned.frame.mask, "GRBG")
    for key, plane in subplanes(aligned.frame.data, "GRBG").items():
        assert np.median(plane[~masks[key]]) == pytest.approx(before[key], rel=0.003), key
    # The red/green contrast of the sites (about 20 %) survives; a mono warp would blur it.
    assert before["G1"] / before["R"] > 1.15
