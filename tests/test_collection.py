"""starloom.astro.collection, used from a notebook with no runtime: select, order, group."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from astropy.io import fits

from starloom.astro.collection import collect_frames, header_matches


def _write(folder, name, **cards):
    path = folder / name
    hdu = fits.PrimaryHDU(np.zeros((4, 6), np.uint16))
    for k, v in cards.items():
        hdu.header[k] = v
    hdu.writeto(path)
    return str(path)


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def files(tmp_path):
    return [_write(tmp_path, "a.fits", IMAGETYP="Light Frame", FILTER="Ha", EXPTIME=300.0),
            _write(tmp_path, "b.fits", IMAGETYP="LIGHT", FILTER="OIII", EXPTIME=300.0),
            _write(tmp_path, "c.fits", IMAGETYP="Light", FILTER="Ha", EXPTIME=120.0),
            _write(tmp_path, "bias_001.fits", FILTER="Ha")]


def test_selects_by_type_and_header_values_and_hashes_only_what_it_keeps(files):
    hashed = []
    found = collect_frames(files, hash_file=lambda p: hashed.append(p) or _sha(p),
                           imagetyp="light", where={"filter": "h*", "EXPTIME": 300})
    assert found.series.names == ["a"]
    assert hashed == [files[0]]
    assert found.series.refs[0].meta["IMAGETYP"] == "light"


def test_type_inferred_from_the_name_is_applied_on_read(files):
    found = collect_frames(files, hash_file=_sha, imagetyp="bias")
    assert found.series.names == ["bias_001"]
    assert found.series.refs[0].header_updates == {"IMAGETYP": "bias"}
    assert found.series[0].header["IMAGETYP"] == "bias"


def test_groups_order_the_frames_and_fill_the_metadata(files):
    found = collect_frames(files, hash_file=_sha, imagetyp="light", group_by=["FILTER"])
    assert found.series.names == ["a", "c", "b"]
    assert found.groups == [{"FILTER": "Ha", "n_frames": 2}, {"FILTER": "OIII", "n_frames": 1}]
    assert list(found.metadata()["group"]) == [0, 0, 1]
    assert found.by_type() == {"light": 3}


def test_keys_follow_content_not_path(files, tmp_path):
    copy = tmp_path / "copy.fits"
    copy.write_bytes(open(files[0], "rb").read())
    a = collect_frames([files[0]], hash_file=_sha).series.refs[0]
    b = collect_frames([str(copy)], hash_file=_sha).series.refs[0]
    assert a.key == b.key
    forced = collect_frames([files[0]], hash_file=_sha, frame_type="flat").series.refs[0]
    assert forced.key != a.key  # a header update on read is part of the key


@pytest.mark.parametrize("value, wanted, expected", [
    ("Ha", "ha", True), ("H-alpha", "h*", True), ("OIII", "Ha", False), (None, "*", False),
    ("x", "*", True), ("300", 300, True), (299.9999999, 300, True), ("abc", 300, False)])
def test_header_matches_as_image_file_collection_does(value, wanted, expected):
    assert header_matches(value, wanted) is expected


def test_frame_names_keep_dots_inside_the_file_name():
    from starloom.astro.collection import frame_name

    # Seestar names carry the exposure with a decimal point: cutting at the first dot gave
    # all frames of a night one name
    assert frame_name("/d/Light_M_94_10.0s_IRCUT_20250409-225435.fit") == \
        "Light_M_94_10.0s_IRCUT_20250409-225435"
    assert frame_name("sdss_g.fits.bz2") == "sdss_g" and frame_name("x.fits.fz") == "x"
    assert frame_name("photo.jpg") == "photo"
