"""Tile grid, common overlap, local metrics, tile reconstruction, state clustering and synthetic
frames (the second half of the tile pipeline), on known simulated truth and real frames."""
from __future__ import annotations

import numpy as np
import pytest
from fake_context import FakeContext
from astropy.nddata import CCDData
from conftest import shared

from starloom.astro import tile_grid as tg
from starloom.astro.clustering import cluster_states, synthetic_frames
from starloom.astro.errors import ParamError
from starloom.astro.frames import FrameSeries
from starloom.astro.local_metrics import frame_tile_metrics, local_weights
from starloom.astro.simulate_tiles import register_known, score_stack, simulate_tile_session
from starloom.astro.tile_pipeline import run_tile_pipeline, tiles_of
from starloom.astro.tile_reconstruct import fuse_tile, reconstruct_tiles


def Ctx(tmp_path):
    return FakeContext(tmp_path)


def series(arrays, masks=None):
    masks = masks or [None] * len(arrays)
    frames = [CCDData(np.asarray(a, np.float32), unit="adu", mask=m) for a, m in zip(arrays, masks)]
    return FrameSeries.from_frames(frames, [f"f{i:02d}" for i in range(len(arrays))])


def gaussian_stars(shape, fwhm, xy, flux=5e4, sky=100.0, noise=3.0, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    s = fwhm / 2.3548
    img = np.full(shape, sky)
    for x, y in xy:
        img += flux / (2 * np.pi * s * s) * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / s**2)
    return img + rng.normal(0, noise, shape)


# --- tile grid and common overlap ---------------------------------------------------------------

def test_tile_size_is_a_multiple_of_the_fwhm_within_bounds():
    assert tg.tile_size(3.0, (1000, 1000), size_factor=16, overlap=0.25) == (48, 12, 36)
    assert tg.tile_size(1.0, (1000, 1000), min_size=32)[0] == 32          # lower bound
    assert tg.tile_size(40.0, (1000, 1000), max_size=256)[0] == 256       # upper bound
    assert tg.tile_size(10.0, (100, 120))[0] == 100                        # never above the image
    assert tg.tile_size(np.nan, (1000, 1000), size_factor=10)[0] == 32     # default FWHM 3 -> 30 -> 32
    with pytest.raises(ParamError, match="overlap"):
        tg.tile_size(3.0, (100, 100), overlap=0.7)


def test_tiles_cover_the_image_exactly_with_the_overlap():
    tiles = tg.make_tiles((100, 130), 40, 30)
    cover = np.zeros((100, 130), int)
    for x0, y0, x1, y1 in tiles:
        assert (x1 - x0, y1 - y0) == (40, 40)
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1 and cover.max() == 4
    assert tiles[:, 2].max() == 130 and tiles[:, 3].max() == 100


def test_common_overlap_excludes_empty_border_tiles():
    shape = (96, 96)
    masks = []
    for i in range(4):
        m = np.zeros(shape, bool)
        m[:, 64 + 8 * i:] = True  # frames cover less and less of the right side
        masks.append(m)
    frames = series([np.ones(shape)] * 4, masks)
    cov, common = tg.coverage_maps(frames)
    assert cov[0, 0] == 1 and cov[0, 70] == pytest.approx(0.75) and cov[0, 95] == 0
    assert common[:, :64].all() and not common[:, 64:].any()
    grid = tg.grid_table(tg.make_tiles(shape, 32, 32), cov, common, min_valid_fraction=0.5)
    right = grid["x0"] == 64
    assert not grid["used"][right].any() and grid["used"][~right].all()
    assert np.allclose(grid["valid_fraction"][right], (0.75 * 8 + 0.5 * 8 + 0.25 * 8) / 32)


def test_rgb_or_mismatched_frames_are_refused_with_the_frame_named():
    from starloom.astro.errors import StarloomError
    with pytest.raises(StarloomError, match="'f01'.*one canvas"):
        tg.coverage_maps(series([np.ones((20, 20)), np.ones((20, 22))]))
    with pytest.raises(StarloomError, match="'f00'.*mono or CFA"):
        tg.coverage_maps(series([np.ones((3, 20, 20))]))


# --- reconstruction -------------------------------------------------------------------------------

def test_constant_image_reconstructs_exactly_constant_whatever_the_weights():
    rng = np.random.default_rng(1)
    shape = (70, 90)
    masks = [rng.random(shape) < 0.2 for _ in range(5)]
    frames = series([np.full(shape, 123.25)] * 5, masks)
    tiles = tg.make_tiles(shape, 24, 17)
    weights = rng.uniform(0.01, 10, (5, len(tiles)))
    rec = reconstruct_tiles(frames, tiles, weights, rejection="none")
    empty = np.logical_and.reduce(masks)  # no frame has data there
    assert empty.sum() >= 1 and (rec.image.mask == empty).all()
    np.testing.assert_allclose(rec.image.data[~empty], 123.25, rtol=1e-6)
    assert rec.usage[~empty].min() > 0 and rec.usage.max() <= 5


def test_no_step_at_tile_borders_when_tiles_weight_frames_differently():
    shape = (64, 160)
    ramp = np.tile(np.linspace(0, 50, shape[1]), (shape[0], 1))
    frames = series([ramp + 40.0 * i for i in range(3)])  # frames disagree by 40 ADU steps
    tiles = tg.make_tiles(shape, 32, 24)
    weights = np.zeros((3, len(tiles)))
    weights[np.arange(len(tiles)) % 3, np.arange(len(tiles))] = 1.0  # each tile takes one frame
    rec = reconstruct_tiles(frames, tiles, weights, rejection="none")
    offset = rec.image.data - ramp
    assert np.ptp(offset) > 60  # neighbouring tiles really do differ by up to 80 ADU
    # a hard mosaic would jump by 40-80 ADU between two pixels; the Hann-weighted blend spreads
    # the change over the 8 px overlap
    assert np.abs(np.diff(offset, axis=1)).max() < 0.4 * 80


def test_masked_pixels_never_enter_the_reconstruction():
    shape = (40, 40)
    a, b = np.full(shape, 10.0), np.full(shape, 1e6)
    mb = np.ones(shape, bool)
    mb[:, :20] = False  # frame b is valid only on the left, and wrong there by design
    b[:, :20] = 10.0
    rec = reconstruct_tiles(series([a, b, a], [None, mb, None]), tg.make_tiles(shape, 20, 15),
                            np.ones((3, 9)), rejection="none")
    np.testing.assert_allclose(rec.image.data, 10.0)
    assert rec.usage[:, 30:].max() == pytest.approx(2) and rec.usage[:, :5].min() == pytest.approx(3)


def test_sigma_clipping_with_growth_removes_a_trail_and_its_wings():
    rng = np.random.default_rng(2)
    stack = rng.normal(100, 5, (12, 30, 30))
    yy, xx = np.mgrid[0:30, 0:30]
    trail = 300 * np.exp(-0.5 * (yy - xx) ** 2 / 1.0)  # core 300, wings 73 and 4 ADU
    stack[4] += trail
    plain, *_ = fuse_tile(stack, np.ones(12), rejection="none")
    clipped, usage, _, rejected = fuse_tile(stack, np.ones(12), grow=1)
    on = np.abs(yy - xx) <= 1
    assert plain[on].mean() - 100 > 10
    assert abs(clipped[on].mean() - 100) < 1.5  # trail and its wings gone
    assert rejected[on].min() >= 1 and usage[on].max() <= 11


def test_best_fraction_keeps_only_the_best_frames():
    frames = series([np.full((20, 20), v) for v in (1.0, 2.0, 3.0, 4.0)])
    tiles = tg.make_tiles((20, 20), 20, 20)
    rec = reconstruct_tiles(frames, tiles, np.array([[1.0], [2.0], [3.0], [4.0]]),
                            best_fraction=0.5, rejection="none")
    np.testing.assert_allclose(rec.image.data, (3 * 3 + 4 * 4) / 7, rtol=1e-6)
    with pytest.raises(ParamError, match="best_fraction"):
        reconstruct_tiles(frames, tiles, np.ones((4, 1)), best_fraction=0)


# --- local metrics --------------------------------------------------------------------------------

def test_local_metrics_measure_fwhm_and_weight_the_sharp_frame_up():
    shape = (80, 80)
    xy = [(20, 20), (60, 22), (22, 60), (58, 58), (40, 40)]
    fwhms = [2.5, 3.0, 3.5, 4.0, 5.0]
    frames = series([gaussian_stars(shape, f, xy, seed=i) for i, f in enumerate(fwhms)])
    tiles = tg.make_tiles(shape, 40, 40)
    metrics = np.stack([frame_tile_metrics(c, tiles, np.array(xy, float), 3.0) for c in frames])
    np.testing.assert_allclose(metrics[:, 0, 0], fwhms, rtol=0.05)   # FWHM of tile 0's star
    assert (metrics[:, :, 3] >= 1).all()                              # star counts
    w = local_weights(metrics, np.ones(5))
    assert (np.diff(w["weight"][:, 0]) < 0).all()                     # sharper -> heavier
    assert (w["eta"] > 0).all()


def test_structure_tile_without_stars_is_scored_by_gradient_and_background():
    shape = (64, 64)
    yy, xx = np.mgrid[0:64, 0:64]
    neb = 200 * np.exp(-0.5 * ((xx - 32) ** 2 + (yy - 32) ** 2) / 6.0**2)
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(0)
    frames = series([gaussian_filter(neb, s) + 100 + rng.normal(0, 2, shape) for s in (0.5, 2, 4, 6)])
    tiles = tg.make_tiles(shape, 64, 64)
    metrics = np.stack([frame_tile_metrics(c, tiles, np.zeros((0, 2)), 3.0) for c in frames])
    assert np.isnan(metrics[:, 0, 0]).all() and (metrics[:, 0, 3] == 0).all()
    w = local_weights(metrics, np.ones(4))
    assert (w["eta"] == 0).all()
    assert (np.diff(w["q_local"][:, 0]) < 0).all()  # more blur, less gradient energy, lower Q


# --- the whole second half on the simulated series ------------------------------------------------

@pytest.fixture(scope="module")
def small_session():
    session = simulate_tile_session(seed=4, n_frames=12, shape=(128, 128), n_stars=160)
    frames = register_known(session)
    # additive normalization to frame 0's background (what tiles.normalize does)
    med0 = np.median(frames[0].data[~frames[0].mask])
    frames = [CCDData(f.data - (np.median(f.data[~f.mask]) - med0), unit=f.unit, mask=f.mask,
                      meta=f.header) for f in frames]
    return session, FrameSeries.from_frames(frames, session.names)


def test_tile_result_is_sharper_than_the_plain_average_and_the_trail_is_gone(small_session):
    session, frames = small_session
    plain = frames.reduce("average", rejection="sigma_clip")
    plain = np.where(plain.mask, np.nan, plain.data) if plain.mask is not None else plain.data
    result = run_tile_pipeline(frames, local_kw={"k_local": 0.5})
    image = result.reconstruction.image
    tile = np.where(image.mask, np.nan, image.data) if image.mask is not None else image.data
    a = score_stack(plain, session, border=8, min_flux=4e3)
    b = score_stack(tile, session, border=8, min_flux=4e3)
    assert a["n_stars"] >= 8
    assert b["fwhm_median"] < 0.95 * a["fwhm_median"]
    assert b["fwhm_corner"] < 0.95 * a["fwhm_corner"]
    assert b["trail_rms"] < 0.8 * a["trail_rms"]
    assert abs(b["trail_mean"]) < 0.5 * b["noise"]  # the 600 e- trail no longer stands out
    assert b["residual_rms"] < a["residual_rms"]


def test_frames_weigh_less_in_the_tiles_under_their_cloud(small_session):
    session, frames = small_session
    result = run_tile_pipeline(frames)
    tiles, q = tiles_of(result.grid), result.local["q_local"].reshape(len(frames), -1)
    lower = []
    for f, (cx, cy) in session.cloud_centres.items():
        t = np.flatnonzero((tiles[:, 0] <= cx) & (cx < tiles[:, 2]) & (tiles[:, 1] <= cy) & (cy < tiles[:, 3]))
        lower.append(np.mean(q[f, t]) < np.median(np.delete(q[:, t], list(session.cloudy), axis=0)))
    assert len(lower) == len(session.cloudy) and np.mean(lower) >= 0.75


def test_tile_nodes_run_in_a_chain(small_session, tmp_path):
    from starloom.nodes.tiles_reconstruct import (LocalMetrics, StateClustering, SyntheticFrames,
                                                  TileGrid, TileReconstruct)
    _, frames = small_session
    ctx = Ctx(tmp_path)
    grid = TileGrid().run(ctx, TileGrid.Params(), frames)["grid"]
    assert ctx.diagnostics["n_used"] == len(grid) and ctx.diagnostics["tile_size_px"] >= 32
    table = LocalMetrics().run(ctx, LocalMetrics.Params(), frames, grid)["table"]
    assert len(table) == len(frames) * len(grid)
    out = TileReconstruct().run(ctx, TileReconstruct.Params(), frames, grid, table)
    assert out["image"].shape == frames.shape and np.nanmax(out["usage"].data) <= len(frames)
    for png in ("tile_grid.png", "tile_fwhm.png", "usage.png", "weight.png", "rejected.png"):
        assert (tmp_path / png).stat().st_size > 1000
    clusters = StateClustering().run(ctx, StateClustering.Params(n_clusters=2), table)["clusters"]
    assert set(clusters["cluster"]) == {0, 1}
    synth = SyntheticFrames().run(ctx, SyntheticFrames.Params(), frames, clusters)["frames"]
    assert len(synth) == 2
    reduced = StateClustering().run(ctx, StateClustering.Params(), table, mode="reduced")["clusters"]
    assert len(set(reduced["cluster"])) == len(frames) and any("reduced" in w for w in ctx.warnings)
    assert SyntheticFrames().run(ctx, SyntheticFrames.Params(), frames, reduced,
                                 mode="reduced")["frames"] is frames


# --- clustering -------------------------------------------------------------------------------------

def test_clustering_finds_two_states_and_synthetic_frames_are_weighted_means():
    rng = np.random.default_rng(0)
    good = rng.normal([2.0, 1.0, 0.1, 100, 5], 0.05, (6, 5))
    bad = rng.normal([0.5, -1.0, 0.4, 140, 8], 0.05, (4, 5))
    labels, info = cluster_states(np.vstack([good, bad]))
    assert info["n_clusters"] == 2 and len(set(labels[:6])) == 1 and len(set(labels[6:])) == 1
    assert labels[0] != labels[-1]
    gmm, _ = cluster_states(np.vstack([good, bad]), method="gmm", n_clusters=2)
    assert len(set(gmm[:6])) == 1 and gmm[0] != gmm[-1]
    frames = series([np.full((8, 8), v) for v in range(10)])
    g = np.arange(1, 11, dtype=float)
    made = dict(synthetic_frames(frames, labels, g))
    k = labels[0]
    np.testing.assert_allclose(made[k].data, np.sum(np.arange(6) * g[:6]) / g[:6].sum(), rtol=1e-6)
    with pytest.raises(ParamError, match="n_clusters"):
        cluster_states(np.vstack([good, bad]), n_clusters=10)


# --- real frames ------------------------------------------------------------------------------------

def test_stargate_tile_stack_is_as_sharp_as_the_plain_stack(tmp_path):
    """Four real Stargate frames (drift 0-5 px, hot pixels): the tile reconstruction is no less
    sharp than the sigma-clipped average of the same registered frames, and no noisier by 10 %."""
    from starloom.astro.fits import read_frame
    from starloom.astro.global_metrics import pixel_noise
    from starloom.astro.registration import star_align
    from starloom.astro.stars import detect_stars

    paths = sorted(shared("stargate").glob("*.fit"))[:4]
    raw = [read_frame(p) for p in paths]
    frames = [raw[0]] + [star_align(c, raw[0]).frame for c in raw[1:]]
    med0 = np.median(frames[0].data)
    for f in frames:
        ok = ~f.mask if f.mask is not None else np.ones(f.shape, bool)
        f.data = (f.data - (np.median(f.data[ok]) - med0)).astype(np.float32)
    fs = FrameSeries.from_frames(frames, [p.stem for p in paths])
    plain = fs.reduce("average", rejection="sigma_clip")
    tile = run_tile_pipeline(fs, local_kw={"k_local": 0.5}).reconstruction.image

    def measure(ccd):
        m = ~np.isfinite(ccd.data) | (np.asarray(ccd.mask, bool) if ccd.mask is not None else False)
        m[:12], m[-12:], m[:, :12], m[:, -12:] = True, True, True, True
        _, met = detect_stars(np.where(m, med0, ccd.data), mask=m, fwhm=4.0)
        return met["median_fwhm_px"], pixel_noise(np.asarray(ccd.data, float), m)

    (fa, na), (fb, nb) = measure(plain), measure(tile)
    assert fb <= fa * 1.01 and nb <= na * 1.10
