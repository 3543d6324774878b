"""Cosmetic correction: maps against injected truth and ccdproc, CFA-aware repair, and the
real Stargate, M51 (dev$pix) frames."""
from __future__ import annotations

import warnings
from pathlib import Path

import ccdproc
import numpy as np
import pytest
from fake_context import FakeContext
from astropy.nddata import CCDData
from conftest import shared
from scipy.ndimage import binary_dilation, label
from starloom.astro import cosmetic
from starloom.astro import fits as fitsio
from starloom.astro.errors import StarloomError
from starloom.astro.simulate import _Camera, simulate_session
from starloom.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "example_graphs"
SHAPE = (100, 120)
SEED = 7
HOT_FRACTION = 3e-3


@pytest.fixture(scope="module")
def session():
    """A simulated session with known hot pixels, plus injected cold pixels (in the flats)
    and cosmic rays (in the first light)."""
    frames = simulate_session(seed=SEED, shape=SHAPE, n_bias=5, n_darks=5, n_flats=4,
                              n_lights=3, dark_exposure=60.0, light_exposure=60.0,
                              hot_pixel_fraction=HOT_FRACTION, n_stars=25, sky_level=20.0,
                              fwhm_range=(3.5, 4.5))
    camera = _Camera(SEED, SHAPE, gain=1.5, read_noise=5.0, bias_level=500.0,
                     dark_current=0.05, hot_pixel_fraction=HOT_FRACTION, vignetting=0.25,
                     bayer=None, filter_name="L")
    hot = camera.current > 10.0  # the simulator's hot pixels: 50 to 500 e-/s
    rng = np.random.default_rng(11)
    cold = np.zeros(SHAPE, bool)
    cold.flat[rng.choice(cold.size, 25, replace=False)] = True
    cold &= ~hot
    for flat in frames["flat"]:
        flat.data[cold] = 500.0 + 0.3 * (flat.data[cold] - 500.0)  # 30 % response
    rays = np.zeros(SHAPE, bool)
    light = frames["light"][0]
    for y, x in rng.integers(5, (SHAPE[0] - 5, SHAPE[1] - 5), (20, 2)):
        length = rng.integers(1, 4)  # hits of 1 to 3 pixels
        rays[y, x:x + length] = True
    light.data[rays] += rng.uniform(2000, 8000, rays.sum())
    bias = ccdproc.combine(frames["bias"], method="average")
    dark = ccdproc.subtract_bias(ccdproc.combine(frames["dark"], method="median"), bias)
    flat = ccdproc.combine([ccdproc.subtract_bias(f, bias) for f in frames["flat"]],
                           method="median")
    flat.data = flat.data / np.median(flat.data)
    return dict(frames=frames, hot=hot, cold=cold, rays=rays, dark=dark, flat=flat,
                light=ccdproc.subtract_bias(light, bias))


def _recall_and_false(found, truth, near=0):
    """Fraction of true pixels found, and flagged pixels farther than ``near`` px from truth."""
    grown = binary_dilation(truth, iterations=near) if near else truth
    return (found & truth).sum() / truth.sum(), int((found & ~grown).sum())


def test_hot_and_cold_maps_find_what_was_injected(session):
    hot, _ = cosmetic.deviant_pixels(session["dark"].data, 5, 5)
    recall, false = _recall_and_false(hot, session["hot"])
    assert session["hot"].sum() == 36 and recall == 1.0 and false <= 2
    _, cold = cosmetic.deviant_pixels(session["flat"].data, 5, 5)
    recall, false = _recall_and_false(cold, session["cold"])
    assert recall == 1.0 and false <= 2
    print(f"hot: {hot.sum()} found of {session['hot'].sum()}, cold: {cold.sum()} of "
          f"{session['cold'].sum()}")


def test_hot_pixels_from_lights_alone(session):
    lights = session["frames"]["light"]  # 3 dithered lights, the first with cosmic rays
    hot, counts = cosmetic.hot_pixels_from_lights(lights)
    recall, false = _recall_and_false(hot, session["hot"])
    assert recall >= 0.95 and false <= 1
    assert not (hot & session["rays"]).any()  # a ray strikes once: not a hot pixel
    assert counts[session["hot"]].min() >= 2


def test_bad_pixel_map_is_ccdmask(session):
    flat = session["flat"]
    ours = cosmetic.bad_pixel_map(flat)
    np.testing.assert_array_equal(ours, ccdproc.ccdmask(flat.data))
    recall, _ = _recall_and_false(ours, session["cold"])
    assert recall >= 0.9


def test_cosmic_ray_map_is_lacosmic_and_finds_the_injected_hits(session):
    from astropy.stats import mad_std
    from scipy.ndimage import median_filter

    light = session["light"].subtract(session["dark"], handle_meta="first_found")
    kw = dict(sigclip=4.5, gain=1.5, readnoise=5.0)
    ours = cosmetic.cosmic_ray_map(light, **kw)
    np.testing.assert_array_equal(ours, ccdproc.cosmicray_lacosmic(light, **kw).mask)
    recall = (ours & session["rays"]).sum() / session["rays"].sum()
    assert recall >= 0.9
    # False positives: on the sky they are rare; the cores of bright stars (which a 5x5
    # median keeps, unlike rays) and the residuals of hot pixels are L.A.Cosmic's known
    # confusions, counted apart.
    smooth = median_filter(light.data, 5)
    sky = np.median(smooth)
    stars = binary_dilation(smooth > sky + 5 * mad_std(smooth - sky), iterations=3)
    elsewhere = ~binary_dilation(session["rays"] | session["hot"], iterations=1) & ~stars
    false_on_sky = int((ours & elsewhere).sum())
    assert false_on_sky <= 15 and false_on_sky < 0.002 * elsewhere.sum()
    print(f"L.A.Cosmic: recall {recall:.3f}, {false_on_sky} false pixels on the sky, "
          f"{int((ours & stars & ~session['rays']).sum())} on stars")


def test_correction_removes_defects_and_touches_nothing_else(session):
    light = session["light"].data
    flagged = session["hot"] | session["rays"]
    for method in cosmetic.CORRECTION_METHODS:
        fixed = cosmetic.correct_pixels(light, flagged, method=method)
        np.testing.assert_array_equal(fixed[~flagged], light.astype(np.float32)[~flagged])
        level = cosmetic.local_median(light, 5)
        noise = np.std(light[~flagged] - level[~flagged])
        # Each repaired pixel is back within the sky noise of its surroundings (away from
        # stars, which a 3x3 median cannot restore exactly).
        far = flagged & (level < np.percentile(level, 90))
        assert np.abs(fixed[far] - level[far]).max() < 5 * noise
        assert cosmetic.isolated_spikes(fixed).sum() == 0
    assert cosmetic.isolated_spikes(light).sum() >= 40  # before: hot pixels and rays
    with pytest.raises(StarloomError, match="shape"):
        cosmetic.correct_pixels(light, flagged[:10])


def test_cfa_correction_uses_same_colour_neighbours():
    rng = np.random.default_rng(3)
    tile = np.array([[100.0, 200.0], [200.0, 300.0]])  # R G / G B levels
    data = np.tile(tile, (20, 20)) + rng.normal(0, 2, (40, 40))
    mask = np.zeros(data.shape, bool)
    mask[10, 10] = mask[21, 21] = True  # an R pixel and a B pixel
    data[mask] = 5000.0
    ccd = CCDData(data, unit="adu", meta={"BAYERPAT": "RGGB"})
    assert cosmetic.is_cfa(ccd.header) and not cosmetic.is_cfa(ccd.header, "no")
    for method in cosmetic.CORRECTION_METHODS:
        fixed = cosmetic.correct_pixels(data, mask, method=method, cfa=True)
        assert fixed[10, 10] == pytest.approx(100, abs=8)
        assert fixed[21, 21] == pytest.approx(300, abs=8)
    mixed = cosmetic.correct_pixels(data, mask, method="median", cfa=False)
    assert abs(mixed[10, 10] - 100) > 50  # colour-blind repair mixes in G and B
    hot, _ = cosmetic.deviant_pixels(data, 5, 0, cfa=True)
    np.testing.assert_array_equal(hot, mask)


class Ctx(FakeContext):
    """No warning is expected from the cosmetic nodes here."""

    def __init__(self, folder):
        super().__init__(folder, frame="frame")

    def warn(self, message):
        raise AssertionError(message)


def test_nodes_output_maps_as_images(session, tmp_path):
    from starloom.astro.frames import FrameSeries
    from starloom.nodes import cosmetic as nodes

    ctx = Ctx(tmp_path)
    dark = session["dark"]
    dark.header["EXPTIME"] = 60.0
    out = nodes.DeviantPixels().run(ctx, nodes.DeviantPixels.Params(),
                                    FrameSeries.from_frames([dark], ["dark"]))
    assert out["hot"].data.dtype == np.uint8
    np.testing.assert_array_equal(out["hot"].data > 0, session["hot"])
    assert out["hot"].header["NFLAGGED"] == 36 and ctx.diagnostics["hot"] == 36
    assert (tmp_path / "deviant_pixels.png").stat().st_size > 10_000
    out = nodes.BadPixelMap().run(ctx, nodes.BadPixelMap.Params(), session["flat"])
    assert (out["map"].data[session["cold"]] == 1).mean() >= 0.9
    light = session["light"].subtract(session["dark"], handle_meta="first_found")
    params = nodes.CosmicRays.Params(gain=1.5, readnoise=5.0)
    out = nodes.CosmicRays().run(ctx, params, frame=light)
    rays = out["maps"].data > 0
    assert (rays & session["rays"]).sum() >= 0.9 * session["rays"].sum()
    assert cosmetic.isolated_spikes(out["frames"].data, 10).sum() == 0
    params = nodes.CorrectPixels.Params(spike_sigma=0)
    fixed = nodes.CorrectPixels().run(ctx, params, frame=light, map=out["maps"])["frames"]
    np.testing.assert_allclose(fixed.data, out["frames"].data)


def test_lacosmic_on_m51_dev_pix():
    ccd = fitsio.read_frame(shared("cosmicray", "iraf_dev_pix_m51.fits"))
    rays = cosmetic.cosmic_ray_map(ccd, measured_noise=True)
    hits = label(rays)[1]
    # IRAF's dev$pix holds about 250 small cosmic-ray spikes (flat-fielded: its noise is
    # measured, not modelled from a gain).
    assert 150 <= hits <= 350
    assert rays.mean() < 0.01
    fixed = cosmetic.correct_pixels(ccd.data, rays)
    assert cosmetic.isolated_spikes(fixed, 10).sum() <= cosmetic.isolated_spikes(ccd.data, 10).sum()


def _read(folder, pattern="*.fit*"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [fitsio.read_frame(f) for f in sorted(Path(folder).glob(pattern))]


@pytest.fixture(scope="module")
def stargate_runs(tmp_path_factory):
    lights = shared("stargate")
    tmp = tmp_path_factory.mktemp("stargate")
    for graph in ("cosmetic_correction", "register_and_stack"):
        assert main(["run", str(EXAMPLES / f"{graph}.json"), "--param", f"lights={lights}",
                     "--cache", str(tmp / "cache"), "--run-dir", str(tmp / graph)]) == 0
    return lights, tmp


def test_stargate_hot_pixels_are_found_and_corrected(stargate_runs):
    lights, tmp = stargate_runs
    raw = _read(lights)
    corrected = _read(tmp / "cosmetic_correction/outputs", "cc_*.fits")
    assert len(corrected) == len(raw) == 10
    hot_map = fitsio.read_frame(tmp / "cosmetic_correction/outputs/hot_pixel_map.fits").data
    assert 150 <= (hot_map > 0).sum() <= 400
    for before, after in zip(raw, corrected):
        spikes = cosmetic.isolated_spikes(before.data)
        assert 140 <= spikes.sum() <= 230  # about 160 single-pixel spikes per raw frame
        assert cosmetic.isolated_spikes(after.data).sum() <= 1
        # Only the map and the frame's own spikes were touched.
        assert (after.data != before.data).mean() < 0.002
    stack = fitsio.read_frame(tmp / "register_and_stack/outputs/stack.fits")
    assert cosmetic.isolated_spikes(stack.data).sum() <= 1
    assert (tmp / "register_and_stack/outputs/stack.png").stat().st_size > 10_000
