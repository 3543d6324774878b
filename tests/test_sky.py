"""Sky analysis (issue 14): photometry and zero point, colour-magnitude diagram, segmentation,
deconvolution, named objects; simulated truth and real frames."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from conftest import shared

from starloom.astro.errors import StarloomError
from starloom.astro.photometry import aperture_photometry, fit_zero_point, match_to_catalog
from starloom.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "example_graphs"


def _wcs(ra=192.72, dec=41.12, scale_deg=2.8e-4, shape=(200, 240)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    w.wcs.crval = [ra, dec]
    w.wcs.cdelt = [-scale_deg, scale_deg]
    return w


def _gauss(img, x, y, flux, fwhm):
    yy, xx = np.indices(img.shape)
    s = fwhm / 2.3548
    img += flux / (2 * np.pi * s * s) * np.exp(-0.5 * (((xx - x) / s) ** 2 + ((yy - y) / s) ** 2))


def _field(zp=21.3, ct=0.12, n=40, seed=1, shape=(200, 240)):
    """An image of stars whose catalogue magnitudes follow m = m_inst + zp + ct * (B-V)."""
    rng = np.random.default_rng(seed)
    w = _wcs(shape=shape)
    img = 100.0 + rng.normal(0, 1.0, shape)
    x, y = rng.uniform(15, shape[1] - 15, n), rng.uniform(15, shape[0] - 15, n)
    flux = 10 ** rng.uniform(3.2, 4.6, n)
    for a, b, f in zip(x, y, flux):
        _gauss(img, a, b, f, 2.5)
    bv = rng.uniform(-0.1, 1.6, n)
    mag = -2.5 * np.log10(flux) + zp + ct * bv
    sky = w.pixel_to_world(x, y)
    cat = Table({"ra": sky.ra.deg, "dec": sky.dec.deg, "mag": mag, "bv": bv})
    return img, w, x, y, flux, cat


def test_aperture_photometry_recovers_injected_fluxes():
    img, _, x, y, flux, _ = _field()
    t = aperture_photometry(img, x, y, radius=6.0, annulus=(9.0, 14.0))
    isolated = np.min(np.hypot(x[:, None] - x, y[:, None] - y) + np.eye(len(x)) * 1e9, 1) > 20
    ratio = np.asarray(t["flux"])[isolated] / flux[isolated]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
    with pytest.raises(StarloomError, match="annulus"):
        aperture_photometry(img, x, y, radius=6.0, annulus=(5.0, 14.0))


def test_zero_point_and_colour_term_recovered_and_outlier_flagged():
    img, w, x, y, _, cat = _field()
    cat["mag"][5] += 1.0  # a variable star
    t = aperture_photometry(img, x, y, radius=6.0, annulus=(9.0, 14.0))
    idx, sep = match_to_catalog(t["x"], t["y"], w, cat, max_separation_arcsec=2.0)
    assert np.all(idx == np.arange(len(x))) and np.all(sep < 0.1)
    zp = fit_zero_point(t["mag_inst"], cat["mag"], cat["bv"])
    assert zp.zero_point == pytest.approx(21.3, abs=0.05)
    assert zp.colour_term == pytest.approx(0.12, abs=0.03)
    assert zp.outlier[5] and zp.outlier.sum() <= 4  # the variable, and blends at most
    with pytest.raises(StarloomError, match="at least 3"):
        fit_zero_point([1.0, 2.0], [3.0, 4.0])


def test_photometry_example_on_real_frames(tmp_path):
    image = shared("platesolve", "randomsky.fits")
    g = shared("sdss_gri", "reprojected_sdss_g.fits.bz2")
    r = shared("sdss_gri", "reprojected_sdss_r.fits.bz2")
    run = tmp_path / "run"
    assert main(["run", str(EXAMPLES / "photometry.json"), "--param", f"image={image}",
                 "--param", f"blue={g}", "--param", f"red={r}", "--run-dir", str(run),
                 "--no-cache"]) == 0
    phot = Table.read(run / "outputs" / "photometry.ecsv")
    # the INDI simulator's stars against Tycho-2 VT: about 20 matched, one zero point
    assert len(phot) >= 15 and np.all(phot["separation"] < 5)
    assert phot.meta["n_used"] >= 12 and phot.meta["rms"] < 0.5
    assert (run / "artifacts" / "photometry" / "photometry.png").exists()
    cmd = Table.read(run / "outputs" / "colour_magnitude.ecsv")
    good = cmd[cmd["err_red"] < 0.1]
    assert len(good) > 80
    # stars and galaxies at high latitude: g - r mostly between 0 and 1.6 (SDSS)
    assert 0.2 < np.median(good["colour"]) < 1.6
    assert 14 < np.min(cmd["mag_red"]) and np.max(good["mag_red"]) < 24


def test_segmentation_counts_sources_and_splits_a_blend():
    from starloom.astro.sources import segment

    rng = np.random.default_rng(4)
    img = rng.normal(0, 1.0, (120, 160))
    positions = [(30, 30), (120, 40), (80, 90), (40, 95)]
    for x, y in positions:
        _gauss(img, x, y, 4000, 3.0)
    _gauss(img, 128, 92, 3000, 3.0)  # a blended pair, 7 px apart
    _gauss(img, 135, 92, 3000, 3.0)
    labels, table = segment(img, detection_sigma=5.0, min_area=10)
    assert len(table) == 6 and labels.max() == 6 and labels.dtype == np.int32
    merged = segment(img, detection_sigma=5.0, min_area=10, deblend=False)[1]
    assert len(merged) == 5
    for x, y in positions:
        d = np.hypot(table["x"] - x, table["y"] - y)
        assert d.min() < 0.3


def test_richardson_lucy_sharpens_blurred_stars():
    from starloom.astro.focal_plane import measure_sources
    from starloom.astro.sources import gaussian_psf, richardson_lucy

    rng = np.random.default_rng(7)
    img = 50 + rng.normal(0, 0.5, (100, 100))
    for x, y in ((25, 30), (70, 40), (50, 75)):
        _gauss(img, x, y, 20000, 4.0)
    out = richardson_lucy(img, gaussian_psf(3.0), iterations=30)
    before = np.median(measure_sources(img)["fwhm"])
    after = np.median(measure_sources(out)["fwhm"])
    assert after < 0.8 * before
    assert out.sum() == pytest.approx(img.sum(), rel=0.01)  # flux kept
    with pytest.raises(StarloomError, match="PSF"):
        richardson_lucy(img, np.zeros((5, 5)))


def test_named_objects_find_m94_offline(tmp_path):
    from starloom.astro.sky_objects import OPENNGC_PATH, named_objects

    if not OPENNGC_PATH.exists():
        pytest.skip("kstars-data (OpenNGC) not installed")
    w = _wcs(ra=192.72, dec=41.12, scale_deg=1.5e-3, shape=(400, 600))
    t = named_objects(w, (400, 600), mag_limit=12)
    assert "M 94" in list(t["name"])
    row = t[list(t["name"]).index("M 94")]
    assert row["type"] == "galaxy"
    assert (row["x"], row["y"]) == pytest.approx((299.5, 199.5), abs=1.0)
    # the node, on an image with that WCS: the figure and the table
    hdr = w.to_header()
    path = tmp_path / "field.fits"
    fits.writeto(path, np.random.default_rng(0).normal(100, 1, (400, 600)).astype(np.float32),
                 hdr)
    graph = {"format": "starloom.graph", "schema_version": 1, "metadata": {"name": "a"},
             "nodes": [{"id": "load", "type": "io.load_frames", "version": 1,
                        "params": {"path": str(path)}},
                       {"id": "annotate", "type": "sky.annotate", "version": 1,
                        "params": {"mag_limit": 12}}],
             "edges": [{"from": "load.frames", "to": "annotate.image"}]}
    g = tmp_path / "g.json"
    g.write_text(json.dumps(graph))
    assert main(["run", str(g), "--run-dir", str(tmp_path / "run"), "--no-cache"]) == 0
    assert (tmp_path / "run" / "outputs" / "annotated_objects.png").stat().st_size > 10_000


def test_richardson_lucy_with_a_zero_background_is_scikit_images():
    from skimage.restoration import richardson_lucy as skimage_rl

    from starloom.astro.sources import gaussian_psf, rl_with_background

    rng = np.random.default_rng(3)
    img = 0.2 + rng.uniform(0, 0.1, (60, 70))
    _gauss(img, 30, 25, 40.0, 3.0)
    psf = gaussian_psf(2.5)
    ours = rl_with_background(img, psf, np.zeros_like(img), 15, start=np.full(img.shape, 0.5))
    np.testing.assert_allclose(ours, skimage_rl(img, psf, num_iter=15, clip=False), rtol=1e-9)


def test_sky_as_background_term_leaves_no_dark_ring_around_a_bright_star():
    """A PSF broader than the stars (a common mismatch) makes plain Richardson-Lucy dig a dark
    ring into the sky around a bright star; with the sky as a background term the deconvolved
    light cannot go below the sky, and the faint stars are sharpened all the same."""
    from starloom.astro.focal_plane import measure_sources
    from starloom.astro.sources import gaussian_psf, richardson_lucy

    rng = np.random.default_rng(11)
    sky, noise = 1000.0, 5.0
    img = sky + rng.normal(0, noise, (120, 120))
    _gauss(img, 60, 60, 3e6, 3.5)  # the bright star
    for x, y in ((20, 25), (95, 30), (25, 95), (100, 100)):
        _gauss(img, x, y, 3e4, 3.5)
    psf = gaussian_psf(4.5)
    yy, xx = np.indices(img.shape)
    ring = (np.hypot(xx - 60, yy - 60) > 5) & (np.hypot(xx - 60, yy - 60) < 10)
    plain = richardson_lucy(img, psf, iterations=30)
    with_sky = richardson_lucy(img, psf, iterations=30, background=sky)
    # the defect this option exists for: the whole ring is dug down to the image's minimum
    assert plain[ring].mean() < sky - 3 * noise
    assert plain[ring].mean() == pytest.approx(img.min(), abs=0.5)
    assert with_sky[ring].mean() > sky - 0.2 * noise and with_sky.min() >= sky - 1e-6
    faint = [(20, 25), (95, 30), (25, 95), (100, 100)]

    def fwhm(image):
        t = measure_sources(image)
        near = [np.argmin(np.hypot(t["x"] - x, t["y"] - y)) for x, y in faint]
        return np.median(np.asarray(t["fwhm"])[near])

    assert fwhm(with_sky) < 0.8 * fwhm(img)
    above = img - sky
    # flux kept, but for the sky noise above the sky (the object cannot hold what is below it)
    assert (with_sky - sky).sum() == pytest.approx(above.sum(), rel=0.05)
    assert np.median((with_sky - sky)[:20, 40:80]) < 0.5 * noise
