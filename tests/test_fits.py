"""Tests of starloom.astro.fits: reading, repairing and writing frames."""
from __future__ import annotations

import hashlib
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty, VarianceUncertainty
from astropy.wcs import WCS
from starloom.astro.errors import FrameReadError, StarloomError
from starloom.astro import fits as sf

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ASI = DATA / "asi120mc"
STARGATE = DATA / "stargate"
ASI_BIAS = ASI / "bias" / "Bias_ASIImg_frame0001.fit"
STARGATE_1 = STARGATE / "StarGateCluster_030_sec_1x1_0001.fit"
PLEIADES = DATA / "platesolve" / "pleiades.jpg"


def needs(path: Path):
    """Mark a test as using real data and skip it when ``path`` is absent."""
    def mark(test):
        skip = pytest.mark.skipif(not path.exists(), reason=f"real data {path} absent")
        return pytest.mark.realdata(skip(test))
    return mark


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def raw_fits(path, cards, data=None) -> Path:
    """Write a FITS file byte by byte, so that non-standard cards reach the disk as given."""
    data = np.arange(6, dtype=">i2").reshape(2, 3) if data is None else data
    lines = ["SIMPLE  =                    T", "BITPIX  =                   16",
             "NAXIS   =                    2", f"NAXIS1  = {data.shape[1]:>20}",
             f"NAXIS2  = {data.shape[0]:>20}", *cards, "END"]
    head = "".join(line.ljust(80) for line in lines).encode("ascii")
    head += b" " * (-len(head) % 2880)
    body = data.astype(">i2").tobytes()
    body += b"\0" * (-len(body) % 2880)
    Path(path).write_bytes(head + body)
    return Path(path)


def ccd(data, **kw) -> CCDData:
    return CCDData(np.asarray(data), unit=u.adu, **kw)


# --- reading every BITPIX -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype, bitpix, values, expected", [
    (np.uint8, 8, [0, 1, 254, 255], np.float32),
    (np.int16, 16, [-32768, -1, 0, 32767], np.float32),
    (np.uint16, 16, [0, 1, 32768, 65535], np.float32),
    (np.int32, 32, [-2**31, -1, 0, 2**31 - 1], np.float64),
    (np.int64, 64, [-2**53, -1, 0, 2**53], np.float64),
    (np.float32, -32, [-1.5, 0.0, 1e-30, 3.4e38], np.float32),
    (np.float64, -64, [-1.5, 0.1, 1e-300, 1.7e308], np.float64),
])
def test_read_frame_every_bitpix_exact(tmp_path, dtype, bitpix, values, expected):
    array = np.array(values, dtype=dtype).reshape(2, 2)
    path = tmp_path / "in.fits"
    fits.PrimaryHDU(array).writeto(path)
    assert fits.getheader(path)["BITPIX"] == bitpix
    frame = sf.read_frame(path)
    assert frame.data.dtype == expected
    assert frame.shape == (2, 2)
    np.testing.assert_array_equal(frame.data, array.astype(expected))
    assert frame.unit == u.adu


def test_uint16_written_with_bzero_keeps_0_and_65535(tmp_path):
    path = tmp_path / "u16.fits"
    sf.write_frame(ccd(np.array([[0.0, 1.0], [32768.0, 65535.0]], np.float32)), path,
                   dtype="uint16")
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert hdul[0].header["BITPIX"] == 16
        assert hdul[0].header["BZERO"] == 32768
        np.testing.assert_array_equal(hdul[0].data, [[-32768, -32767], [0, 32767]])
    np.testing.assert_array_equal(sf.read_frame(path).data, [[0, 1], [32768, 65535]])


def test_uint16_write_rounds_and_clips(tmp_path):
    data = np.array([[-5.0, 0.4, 1.6], [65535.4, 7e4, np.nan]])
    path = sf.write_frame(ccd(data), tmp_path / "c.fits", dtype="uint16")
    np.testing.assert_array_equal(sf.read_frame(path).data, [[0, 0, 2], [65535, 65535, 0]])


@pytest.mark.parametrize("data_dtype, dtype, bitpix", [
    (np.float32, None, -32), (np.float64, None, -64), (np.int16, None, -32),
    (np.float64, "float32", -32), (np.float32, "float64", -64),
])
def test_write_float_round_trip(tmp_path, data_dtype, dtype, bitpix):
    data = np.array([[1.25, -3.0], [1000.5, 7.0]]).astype(data_dtype)
    path = sf.write_frame(ccd(data), tmp_path / "f.fits", dtype=dtype)
    assert fits.getheader(path)["BITPIX"] == bitpix
    back = sf.read_frame(path, dtype=np.float32)
    assert back.data.dtype == (np.float64 if bitpix == -64 else np.float32)
    np.testing.assert_array_equal(back.data, data.astype(back.data.dtype))


def test_write_rejects_unsupported_dtype_and_shape(tmp_path):
    with pytest.raises(sf.FrameWriteError, match="int8"):
        sf.write_frame(ccd(np.zeros((2, 2))), tmp_path / "x.fits", dtype="int8")
    with pytest.raises(sf.FrameWriteError, match="shape"):
        sf.write_frame(ccd(np.zeros(5)), tmp_path / "x.fits")
    assert issubclass(sf.FrameWriteError, StarloomError)
    assert list(tmp_path.iterdir()) == []


def test_rgb_planar_round_trip(tmp_path):
    rgb = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    path = sf.write_frame(ccd(rgb), tmp_path / "rgb.fits", dtype="uint16")
    header = fits.getheader(path)
    assert (header["NAXIS"], header["NAXIS1"], header["NAXIS2"], header["NAXIS3"]) == (3, 5, 4, 3)
    back = sf.read_frame(path)
    assert back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back.data, rgb)
    assert sf.frame_metadata(back.header)["NAXIS3"] == 3


def test_mask_and_uncertainty_round_trip(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    sigma = np.full((3, 4), 2.5, np.float32)
    path = sf.write_frame(ccd(data, mask=mask, uncertainty=StdDevUncertainty(sigma)),
                          tmp_path / "mu.fits")
    with fits.open(path) as hdul:
        assert hdul["MASK"].data.dtype == np.uint8
        assert hdul["UNCERT"].header["UTYPE"] == "StdDevUncertainty"
    back = sf.read_frame(path)
    np.testing.assert_array_equal(back.mask, mask)
    assert isinstance(back.uncertainty, StdDevUncertainty)
    np.testing.assert_array_equal(back.uncertainty.array, sigma)


def test_variance_uncertainty_is_written_as_stddev(tmp_path):
    frame = ccd(np.ones((2, 2)), uncertainty=VarianceUncertainty(np.full((2, 2), 9.0)))
    back = sf.read_frame(sf.write_frame(frame, tmp_path / "v.fits"))
    assert isinstance(back.uncertainty, StdDevUncertainty)
    np.testing.assert_allclose(back.uncertainty.array, 3.0)


def test_reads_file_written_by_ccddata_write_as_image_extension(tmp_path):
    path = tmp_path / "ext.fits"
    frame = ccd(np.arange(6.0).reshape(2, 3), mask=np.eye(2, 3, dtype=bool),
                uncertainty=StdDevUncertainty(np.ones((2, 3))))
    frame.write(path, as_image_hdu=True)
    back = sf.read_frame(path)
    np.testing.assert_array_equal(back.data, frame.data)
    np.testing.assert_array_equal(back.mask, frame.mask)
    np.testing.assert_array_equal(back.uncertainty.array, 1.0)
    assert "XTENSION" in back.header  # kept as read; write_frame drops it
    out = sf.write_frame(back, tmp_path / "again.fits")
    assert "XTENSION" not in fits.getheader(out)


def test_reads_compressed_image(tmp_path):
    array = np.arange(64 * 64, dtype=np.int16).reshape(64, 64)
    header = fits.Header([("EXPTIME", "2,5"), ("IMAGETYP", "Dark Frame")])
    path = tmp_path / "c.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(array, header)]).writeto(path)
    with pytest.warns(sf.HeaderRepairWarning, match="EXPTIME"):
        header = sf.read_header(path)
    assert header["EXPTIME"] == 2.5
    assert "ZIMAGE" not in header
    with pytest.warns(sf.HeaderRepairWarning):
        frame = sf.read_frame(path)
    np.testing.assert_array_equal(frame.data, array)
    assert sf.frame_metadata(frame.header)["IMAGETYP"] == "dark"


def test_celestial_wcs_round_trip(tmp_path):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [56.75, 24.12]
    wcs.wcs.crpix = [3.0, 2.0]
    wcs.wcs.cdelt = [-0.001, 0.001]
    path = sf.write_frame(ccd(np.zeros((4, 6)), wcs=wcs), tmp_path / "w.fits")
    assert fits.getheader(path)["CTYPE1"] == "RA---TAN"
    back = sf.read_frame(path)
    assert back.wcs is not None and back.wcs.has_celestial
    np.testing.assert_allclose(back.wcs.wcs.crval, [56.75, 24.12])
    sky = back.wcs.pixel_to_world(0, 0)
    np.testing.assert_allclose([sky.ra.deg, sky.dec.deg],
                               [c.deg for c in (wcs.pixel_to_world(0, 0).ra,
                                                wcs.pixel_to_world(0, 0).dec)])
    assert "CRVAL1" not in back.header  # held by .wcs only, so it cannot go stale


def test_no_wcs_for_linear_or_missing_wcs(tmp_path):
    path = tmp_path / "lin.fits"
    fits.PrimaryHDU(np.zeros((2, 2), np.float32),
                    fits.Header([("CTYPE1", "LINEAR"), ("CTYPE2", "LINEAR")])).writeto(path)
    frame = sf.read_frame(path)
    assert frame.wcs is None
    assert frame.header["CTYPE1"] == "LINEAR"


def test_history_date_and_existing_cards_written(tmp_path):
    frame = ccd(np.zeros((2, 2)), header=fits.Header([("OBSERVER", "Ada"), ("EXPTIME", 30.0)]))
    path = sf.write_frame(frame, tmp_path / "h.fits", history=["bias subtracted", "x" * 150])
    header = fits.getheader(path)
    assert header["OBSERVER"] == "Ada" and header["EXPTIME"] == 30.0
    history = [str(h) for h in header["HISTORY"]]
    assert history[0] == "bias subtracted"
    assert "".join(history[1:]) == "x" * 150
    written = datetime.fromisoformat(header["DATE"]).replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - written).total_seconds()) < 60
    assert "HISTORY" not in frame.header  # the caller's header is not changed


def test_bunit_parsing(tmp_path):
    for bunit, unit in [("ADU", u.adu), ("electron", u.electron), ("Counts", u.count)]:
        path = tmp_path / f"{bunit}.fits"
        fits.PrimaryHDU(np.zeros((2, 2), np.float32), fits.Header([("BUNIT", bunit)])).writeto(path)
        assert sf.read_frame(path).unit == unit
    path = tmp_path / "bad.fits"
    fits.PrimaryHDU(np.zeros((2, 2), np.float32),
                    fits.Header([("BUNIT", "furlongs?!")])).writeto(path)
    with pytest.warns(sf.HeaderRepairWarning, match="BUNIT"):
        assert sf.read_frame(path).unit == u.adu


def test_header_updates_set_frame_type(tmp_path):
    path = raw_fits(tmp_path / "x.fits", [])
    frame = sf.read_frame(path, header_updates={"IMAGETYP": "dark", "EXPTIME": 10.0})
    assert frame.header["IMAGETYP"] == "dark"
    assert sf.frame_metadata(frame.header)["EXPTIME"] == 10.0


# --- atomic writing -----------------------------------------------------------------------------

def test_write_leaves_only_the_target(tmp_path):
    out = sf.write_frame(ccd(np.ones((3, 3))), tmp_path / "out.fits")
    assert out == tmp_path / "out.fits"
    assert [p.name for p in tmp_path.iterdir()] == ["out.fits"]


def _failing_writeto(self, fileobj, *args, **kwargs):
    fileobj.write(b"SIMPLE  =    T" + b" " * 100)  # a partial file, then the disk fills up
    raise OSError(28, "No space left on device")


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(fits.HDUList, "writeto", _failing_writeto)
    with pytest.raises(OSError, match="No space"):
        sf.write_frame(ccd(np.ones((3, 3))), tmp_path / "out.fits")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = sf.write_frame(ccd(np.ones((3, 3))), tmp_path / "out.fits")
    before = sha256(target)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("rename failed")))
    with pytest.raises(OSError, match="rename failed"):
        sf.write_frame(ccd(np.zeros((3, 3))), target)
    assert sha256(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.fits"]


def test_overwrite_false_refuses(tmp_path):
    target = sf.write_frame(ccd(np.ones((2, 2))), tmp_path / "out.fits")
    before = sha256(target)
    with pytest.raises(FileExistsError):
        sf.write_frame(ccd(np.zeros((2, 2))), target, overwrite=False)
    assert sha256(target) == before


# --- frame types --------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("Light Frame", "light"), ("LIGHT", "light"), ("Object", "light"), ("Science", "light"),
    ("light_frame", "light"),
    ("Bias Frame", "bias"), ("BIAS", "bias"), ("Zero", "bias"), ("Offset", "bias"),
    ("Dark Frame", "dark"), ("DARK", "dark"), ("Master Dark", "dark"),
    ("DARKFLAT", "dark"), ("Flat Dark", "dark"),
    ("FLAT", "flat"), ("Flat Field", "flat"), ("Flat Frame", "flat"), ("SKYFLAT", "flat"),
    ("  flat  ", "flat"),
    ("", None), (None, None), ("Tricolor Image", None), ("darkness", None), (3, None),
])
def test_normalize_imagetyp(value, expected):
    assert sf.normalize_imagetyp(value) == expected


@pytest.mark.parametrize("path, expected", [
    ("Bias_ASIImg_frame0001.fit", "bias"),
    ("/x/dark_10s/Dark_ASIImg_10sec_frame0001.fit", "dark"),
    ("/x/dark_10s/img_0001.fit", "dark"),
    ("/x/flats/img_0001.fit", "flat"),
    ("/data/Lights/M42/Ha/img_0001.fit", "light"),
    ("/x/darkness_0001.fit", None),
    ("/x/Flatiron/img.fit", None),
    ("/x/biased.fit", None),
    ("/x/Light_M31_gain120_offset30_0001.fit", "light"),
    ("/x/y/offset30_zero.fit", None),
    ("/x/MasterDark.fits", "dark"),
    ("/x/DarkFlat_001.fit", "dark"),
    ("/x/dark_flat_001.fit", "dark"),
    ("/x/flats/darks_001.fit", "dark"),  # the file name wins over the folder
    ("/lights/flats_and_darks/a.fit", "light"),  # ambiguous folder skipped
    ("/work/shared/data/stargate/StarGateCluster_030_sec_1x1_0001.fit", None),
    ("/lights/a/b/c/d/img.fit", None),  # beyond 3 folder levels
])
def test_infer_frame_type(path, expected):
    assert sf.infer_frame_type(path) == expected


@needs(ASI)
def test_infer_frame_type_real_asi120_paths():
    found = {}
    for path in sorted(ASI.rglob("*.fit")):
        found.setdefault(path.parent.name, set()).add(sf.infer_frame_type(path))
    assert found == {"bias": {"bias"}, "dark_10s": {"dark"}, "dark_100s": {"dark"},
                     "flat": {"flat"}}


# --- header repair ------------------------------------------------------------------------------

def test_decimal_comma_repaired_in_memory_only(tmp_path):
    path = raw_fits(tmp_path / "comma.fit", [
        "EXPTIME =              6,4E-05 / Total Exposure Time (s)",
        "GAIN    = '120     '",
        "FOCALLEN= '1,000   '",
        "OBJECT  = '1234    '",
        "CCD-TEMP= 'cold    '",
    ])
    before = sha256(path)
    with pytest.warns(sf.HeaderRepairWarning) as record:
        header = sf.read_header(path)
    messages = [str(w.message) for w in record]
    assert any(str(path) in m and "EXPTIME" in m and "6.4e-05" in m for m in messages)
    assert any(str(path) in m and "GAIN" in m for m in messages)
    assert header["EXPTIME"] == 6.4e-05 and isinstance(header["EXPTIME"], float)
    assert header["GAIN"] == 120
    assert header["FOCALLEN"] == "1,000"  # a thousand or one? not guessed
    assert header["OBJECT"] == "1234"  # not a numeric keyword
    assert header["CCD-TEMP"] == "cold"
    meta = sf.frame_metadata(header, path)
    assert meta["EXPTIME"] == 6.4e-05 and meta["GAIN"] == 120.0
    assert meta["FOCALLEN"] is None and meta["CCD-TEMP"] is None
    assert sha256(path) == before


def test_unfixable_card_removed(tmp_path):
    path = raw_fits(tmp_path / "bad.fit", ["NAXIS1 x=                   10", "EXPTIME =  1.0"])
    with pytest.warns(sf.HeaderRepairWarning, match="removed"):
        frame = sf.read_frame(path)
    assert "NAXIS1 X" not in frame.header and frame.header["EXPTIME"] == 1.0
    sf.write_frame(frame, tmp_path / "out.fits")  # the repaired header is valid FITS


@needs(ASI_BIAS)
def test_real_asi120_bias_exptime_repair():
    before = sha256(ASI_BIAS)
    with pytest.warns(sf.HeaderRepairWarning) as record:
        header = sf.read_header(ASI_BIAS)
    assert any(str(ASI_BIAS) in str(w.message) and "EXPTIME" in str(w.message) for w in record)
    assert header["EXPTIME"] == pytest.approx(6.4e-05, rel=0, abs=0)
    with pytest.warns(sf.HeaderRepairWarning, match="EXPTIME"):
        frame = sf.read_frame(ASI_BIAS)
    meta = sf.frame_metadata(frame.header, ASI_BIAS)
    assert meta["IMAGETYP"] == "bias"  # no IMAGETYP card: from the file name
    assert meta["EXPTIME"] == 6.4e-05
    assert meta["BAYERPAT"] == "GRBG" and meta["OFFSET"] == 9.0 and meta["GAIN"] == 0.0
    assert (meta["NAXIS1"], meta["NAXIS2"], meta["NAXIS3"]) == (1280, 960, None)
    raw = fits.getdata(ASI_BIAS)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(frame.data, raw)
    assert np.all(frame.data % 16 == 0)  # 12-bit data scaled by 16 survive exactly
    assert sha256(ASI_BIAS) == before


@needs(ASI)
def test_real_asi120_dark_and_flat_need_no_repair(recwarn):
    dark = sf.read_header(next((ASI / "dark_10s").glob("*.fit")))
    flat = sf.read_header(next((ASI / "flat").glob("*.fit")))
    assert not [w for w in recwarn if issubclass(w.category, sf.HeaderRepairWarning)]
    assert dark["EXPTIME"] == 10.0 and flat["EXPTIME"] == 0.005


@needs(STARGATE_1)
def test_real_stargate_metadata():
    before = sha256(STARGATE_1)
    frame = sf.read_frame(STARGATE_1)
    meta = sf.frame_metadata(frame.header, STARGATE_1)
    assert meta["IMAGETYP"] == "light"
    assert meta["EXPTIME"] == 30.0
    assert meta["INSTRUME"] == "Orion SSDSI-2"
    assert (meta["NAXIS1"], meta["NAXIS2"], meta["XBINNING"]) == (752, 581, 1)
    assert meta["path"] == str(STARGATE_1)
    assert frame.shape == (581, 752) and frame.wcs is None
    np.testing.assert_array_equal(frame.data, fits.getdata(STARGATE_1))
    assert sha256(STARGATE_1) == before


def test_frame_metadata_defaults_and_frame_keyword():
    meta = sf.frame_metadata(fits.Header([("FRAME", "Light"), ("XBINNING", 2)]))
    assert set(sf.FRAME_KEYWORDS) | {"NAXIS1", "NAXIS2", "NAXIS3", "path"} == set(meta)
    assert meta["IMAGETYP"] == "light" and meta["XBINNING"] == 2 and meta["EXPTIME"] is None
    assert meta["path"] is None
    meta = sf.frame_metadata({"IMAGETYP": "Tricolor Image"}, path="/x/flats/a.fit")
    assert meta["IMAGETYP"] == "flat" and meta["path"] == "/x/flats/a.fit"


# --- failures -----------------------------------------------------------------------------------

def test_truncated_file_raises_frame_read_error(tmp_path):
    good = raw_fits(tmp_path / "good.fit", [], data=np.ones((100, 100), ">i2"))
    for name, size in [("half.fit", 2880 + 5000), ("header_only.fit", 2880),
                       ("mid_header.fit", 1000)]:
        bad = tmp_path / name
        bad.write_bytes(good.read_bytes()[:size])
        with pytest.raises(FrameReadError) as info:
            sf.read_frame(bad)
        assert str(bad) in str(info.value) and info.value.path == str(bad)


@needs(ASI_BIAS)
def test_truncated_real_frame(tmp_path):
    bad = tmp_path / ASI_BIAS.name
    bad.write_bytes(ASI_BIAS.read_bytes()[:1_000_000])
    with pytest.raises(FrameReadError, match=str(bad)):
        sf.read_frame(bad)


@pytest.mark.parametrize("content", [b"", b"not a FITS file at all\n" * 200])
def test_non_fits_file_raises(tmp_path, content):
    path = tmp_path / "x.fits"
    path.write_bytes(content)
    with pytest.raises(FrameReadError, match=str(path)):
        sf.read_header(path)
    with pytest.raises(FrameReadError, match=str(path)):
        sf.read_frame(path)


def test_missing_file_and_table_only_file(tmp_path):
    with pytest.raises(FrameReadError, match="nope.fits"):
        sf.read_frame(tmp_path / "nope.fits")
    path = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="E", array=np.ones(3))])]).writeto(path)
    with pytest.raises(FrameReadError, match="no HDU holds an image"):
        sf.read_header(path)


def test_unsupported_cube_raises(tmp_path):
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((5, 2, 2), np.float32)).writeto(path)
    with pytest.raises(FrameReadError, match="shape"):
        sf.read_frame(path)


# --- other image formats ------------------------------------------------------------------------

def test_read_image_any_png_grey_and_rgb(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    grey = np.zeros((4, 6), np.uint8)
    grey[0] = 200  # top row of the picture
    Image.fromarray(grey).save(tmp_path / "g.png")
    frame = sf.read_image_any(tmp_path / "g.png")
    assert frame.shape == (4, 6) and frame.data.dtype == np.float32 and frame.unit == u.adu
    np.testing.assert_array_equal(frame.data[-1], 200)  # row 0 is now the bottom
    np.testing.assert_array_equal(frame.data[:-1], 0)
    assert frame.header["ROWORDER"] == "BOTTOM-UP"

    deep = np.array([[0, 65535], [1000, 40000]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    np.testing.assert_array_equal(sf.read_image_any(tmp_path / "d.png").data, deep[::-1])

    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 10, 250
    Image.fromarray(rgb).save(tmp_path / "c.PNG")
    frame = sf.read_image_any(tmp_path / "c.PNG")
    assert frame.shape == (3, 4, 6)
    assert (frame.data[0] == 10).all() and (frame.data[1] == 0).all() and (frame.data[2] == 250).all()


def test_read_image_any_fits_and_bad_image(tmp_path):
    path = sf.write_frame(ccd(np.full((2, 2), 7.0)), tmp_path / "a.fits")
    np.testing.assert_array_equal(sf.read_image_any(path).data, 7.0)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(FrameReadError, match="b.jpg"):
        sf.read_image_any(bad)


@needs(PLEIADES)
def test_read_image_any_real_jpeg():
    before = sha256(PLEIADES)
    frame = sf.read_image_any(PLEIADES)
    assert frame.shape == (3, 477, 636) and frame.data.dtype == np.float32
    assert frame.unit == u.adu
    assert 0 <= frame.data.min() and frame.data.max() <= 255 and frame.data.max() > 100
    assert sha256(PLEIADES) == before


def test_input_file_copy_not_modified_by_any_read(tmp_path):
    path = raw_fits(tmp_path / "in.fit", ["EXPTIME =  6,4E-05", "exptim2 = 1"])
    copy = shutil.copy(path, tmp_path / "copy.fit")
    with pytest.warns(sf.HeaderRepairWarning):
        sf.read_header(path)
        sf.read_frame(path, header_updates={"IMAGETYP": "bias"})
        sf.read_image_any(path)
    assert Path(path).read_bytes() == Path(copy).read_bytes()


def test_write_does_not_touch_caller_data(tmp_path):
    data = np.array([[-3.0, 1.4, 7e4], [np.nan, 2.0, 5.5]], np.float32)
    frame = ccd(data.copy(), uncertainty=StdDevUncertainty(np.ones((2, 3), np.float32)))
    header_before = frame.header.copy()
    for dtype in (None, "uint16", "float64"):
        sf.write_frame(frame, tmp_path / f"{dtype}.fits", dtype=dtype, history=["x"])
    np.testing.assert_array_equal(frame.data, data)
    np.testing.assert_array_equal(frame.uncertainty.array, 1.0)
    assert frame.header == header_before


def test_rgb_image_keeps_its_tan_sip_wcs(tmp_path):
    from astropy.wcs import WCS, Sip
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [56.75, 24.1]
    w.wcs.crpix = [16.5, 12.5]
    w.wcs.cd = [[-2e-4, 0], [0, 2e-4]]
    a = np.zeros((3, 3)); a[2, 0] = 1e-6
    w.sip = Sip(a, np.zeros((3, 3)), None, None, w.wcs.crpix)
    rgb = CCDData(np.random.default_rng(1).random((3, 24, 32)).astype(np.float32), unit="adu", wcs=w)
    path = sf.write_frame(rgb, tmp_path / "rgb.fits")
    back = sf.read_frame(path)
    assert back.shape == (3, 24, 32) and back.wcs is not None and back.wcs.sip is not None
    sky0, sky1 = w.pixel_to_world(30.0, 20.0), back.wcs.pixel_to_world(30.0, 20.0)
    assert sky0.separation(sky1).arcsec < 1e-6
    assert "A_2_0" not in back.header  # the WCS cards live in .wcs, not twice
