"""The library's one aperture photometry and one detection-catalogue match
(:mod:`starloom.astro.photometry`, used by the sky photometry, colour-magnitude and PCC nodes and
the WCS refit), and its one 2-D image check (:mod:`starloom.astro.arrays`)."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.nddata import CCDData
from astropy.table import Table
from photutils.aperture import CircularAperture
from starloom.astro.errors import StarloomError
from starloom.astro.photometry import aperture_photometry, match_to_catalog
from test_sky import _gauss, _wcs


def test_background_is_taken_over_the_pixels_the_aperture_summed():
    """Masked pixels in an aperture are neither summed nor charged with sky: a star beside a
    masked column keeps its flux (the analytic area would remove ~4 % too much sky)."""
    rng = np.random.default_rng(2)
    img = 100.0 + rng.normal(0, 1.0, (80, 90))
    _gauss(img, 40, 35, 20000.0, 2.5)
    img[32:39, 45:47] = np.nan  # 5-6 px from the star: sky, no starlight
    t = aperture_photometry(img, [40.0], [35.0], radius=6.0, annulus=(9.0, 14.0))
    assert t["flux"][0] == pytest.approx(20000.0, rel=0.005)
    aperture = CircularAperture((40.0, 35.0), r=6.0)
    masked_area = aperture.area - aperture.area_overlap(img, mask=~np.isfinite(img))
    assert masked_area * 100.0 > 0.03 * 20000.0  # what the analytic area would get wrong
    assert t["background"][0] == pytest.approx(100.0, abs=0.2)
    assert t["background_std"][0] == pytest.approx(1.0, rel=0.15)
    assert t["peak"][0] == pytest.approx(np.nanmax(img[33:38, 38:43]))
    assert t["mag_inst"][0] == pytest.approx(-2.5 * np.log10(t["flux"][0]))


def test_match_is_one_to_one_the_closest_detection_keeps_the_star():
    w = _wcs(scale_deg=1.0 / 3600)  # 1 arcsec/px
    cat_xy = np.array([[50.0, 50.0], [120.0, 80.0], [200.0, 150.0]])
    sky = w.pixel_to_world(cat_xy[:, 0], cat_xy[:, 1])
    cat = Table({"ra": sky.ra.deg, "dec": sky.dec.deg})
    # star 0 exactly; two detections of star 1 (1.5 and 0.5 px off); one far from all
    x = np.array([50.0, 121.5, 120.5, 20.0])
    y = np.array([50.0, 80.0, 80.0, 20.0])
    idx, sep = match_to_catalog(x, y, w, cat, max_separation_arcsec=2.0)
    assert list(idx) == [0, -1, 1, -1]
    assert sep[:3] == pytest.approx([0.0, 1.5, 0.5], abs=0.01)
    coords = SkyCoord(cat["ra"], cat["dec"], unit="deg")
    assert list(match_to_catalog(x, y, w, coords, max_separation_arcsec=2.0)[0]) == list(idx)
    none, nan = match_to_catalog(x, y, w, cat[:0], max_separation_arcsec=2.0)
    assert list(none) == [-1] * 4 and np.all(np.isnan(nan))


def test_pcc_matches_in_pixels_and_only_to_stars_with_a_colour():
    from starloom.astro.pcc import _catalog_stars

    w = _wcs(scale_deg=2.0 / 3600)  # 2 arcsec/px
    sky = w.pixel_to_world(np.array([60.0, 62.5]), np.array([40.0, 40.0]))
    cat = Table({"ra": sky.ra.deg, "dec": sky.dec.deg, "bv": [np.nan, 0.65], "mag": [8.0, 9.0]})
    stars = Table({"x": [60.0], "y": [40.0]})
    # the nearer catalogue star has no B-V: the one 2.5 px away is taken, within 3 px only
    m = _catalog_stars(stars, cat, w, 3.0)
    assert len(m) == 1 and m["bv"][0] == 0.65 and m["mag"][0] == 9.0
    assert m["separation"][0] == pytest.approx(5.0, abs=0.01)  # arcsec
    assert len(_catalog_stars(stars, cat, w, 2.0)) == 0


CHECKS = [  # module, function, further arguments, the name the message gives
    ("photometry", "aperture_photometry", ([1.0], [1.0]), {"radius": 1.0, "annulus": (2.0, 3.0)},
     "photometry"),
    ("sources", "segment", (), {}, "segmentation"),
    ("sources", "richardson_lucy", (np.ones((3, 3)),), {}, "deconvolution"),
    ("focal_plane", "measure_sources", (), {}, "focal plane"),
    ("psfmap", "psf_map", (Table({"x": [], "y": [], "flux": []}),), {}, "PSF map"),
]


@pytest.mark.parametrize("module, function, args, kwargs, who", CHECKS)
def test_every_2d_check_names_its_caller_and_the_shape(module, function, args, kwargs, who):
    func = getattr(importlib.import_module(f"starloom.astro.{module}"), function)
    with pytest.raises(StarloomError) as err:
        func(np.zeros((3, 20, 30)), *args, **kwargs)
    assert str(err.value) == f"{who}: a 2-D image is needed, got shape (3, 20, 30)"


def test_sky_nodes_name_their_input():
    from starloom.nodes.sky import _plane

    with pytest.raises(StarloomError, match=r"^node input 'red': a 2-D image is needed, got "
                                            r"shape \(3, 20, 30\)$"):
        _plane(CCDData(np.zeros((3, 20, 30)), unit="adu"), "red")
    masked = CCDData(np.ones((4, 5)), unit="adu", mask=np.eye(4, 5, dtype=bool))
    assert np.count_nonzero(np.isnan(_plane(masked, "image"))) == 4


def test_plane_returns_float64_without_copying_float64():
    from starloom.astro.arrays import plane

    a = np.ones((4, 5))
    assert plane(a, "x") is a
    assert plane(np.ones((4, 5), np.uint16), "x").dtype == np.float64
