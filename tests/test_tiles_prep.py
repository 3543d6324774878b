"""Tile pipeline, first half: scan input, registration fallback, prewarp, normalization and
global metrics, on simulated star fields with known shifts, offsets, clouds and seeing."""
from __future__ import annotations

import numpy as np
import pytest
from fake_context import FakeContext
from astropy.io import fits
from astropy.nddata import CCDData
from conftest import shared
from scipy.ndimage import gaussian_filter
from starloom.astro.errors import FrameRejected, StarloomError
from starloom.astro.frames import FrameSeries

SHAPE = (100, 120)


def star_field(dx=0.0, dy=0.0, *, fwhm=2.5, sky=500.0, noise=5.0, seed=0, n_stars=45,
               cloud=0.0, rot_deg=0.0, header=None):
    """Gaussian stars of one fixed field seen shifted by (dx, dy) and rotated about the centre,
    plus flat sky, an optional cloud (raised sky, dimmed stars) and Gaussian noise."""
    field = np.random.default_rng(123)
    x0, y0 = field.uniform(8, SHAPE[1] - 8, n_stars), field.uniform(8, SHAPE[0] - 8, n_stars)
    flux = field.uniform(800, 8000, n_stars)
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    cx, cy = (SHAPE[1] - 1) / 2, (SHAPE[0] - 1) / 2
    x = c * (x0 - cx) - s * (y0 - cy) + cx + dx
    y = s * (x0 - cx) + c * (y0 - cy) + cy + dy
    sig = fwhm / 2.3548
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    img = np.zeros(SHAPE)
    for xi, yi, f in zip(x, y, flux):
        img += f / (2 * np.pi * sig**2) * np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * sig**2))
    img = img * (1 - 0.6 * (cloud > 0)) + sky + cloud
    img += np.random.default_rng(seed).normal(0, noise, SHAPE)
    h = fits.Header({"EXPTIME": 60.0, "BITPIX": -32, **(header or {})})
    return CCDData(img.astype(np.float32), unit="adu", meta=h)


def Ctx(tmp_path=None, frame=None):
    return FakeContext(tmp_path, frame=frame)


# --- registration fallback ---------------------------------------------------------------------

def test_star_match_is_used_when_reliable_and_reports_its_numbers():
    from starloom.astro.registration_fallback import find_transform_with_fallback
    _, info = find_transform_with_fallback(star_field(3.0, -2.0, seed=1), star_field(seed=2))
    assert info["method"] == "star_match" and info["matched_stars"] >= 6
    assert info["dx"] == pytest.approx(-3.0, abs=0.1) and info["dy"] == pytest.approx(2.0, abs=0.1)
    assert info["residual_px"] < 0.3 and info["drift_px"] == pytest.approx(np.hypot(3, 2), abs=0.1)


def test_blurred_frame_falls_back_to_phase_correlation_in_the_node():
    from starloom.nodes.registration import StarAlign
    ref = star_field(seed=2)
    blurred = star_field(4.0, 3.0, seed=3)
    blurred.data = gaussian_filter(blurred.data, 4.0)  # stars too wide and faint to match
    ctx = Ctx(frame="blurred")
    out = StarAlign().run(ctx, StarAlign.Params(), frame=blurred, reference=ref)["frames"]
    d = ctx.diagnostics
    assert d["method"] == "phase_correlation" and "star match" in d["fallback_reason"]
    assert d["dx"] == pytest.approx(-4.0, abs=0.5) and d["dy"] == pytest.approx(-3.0, abs=0.5)
    assert d["correlation"] > 0.3 and d["rotation_deg"] == 0.0
    assert out.header["REGMETH"] == "phase_correlation" and out.header["REGAPPL"]
    # the shift moved the frame's right and top 4 and 3 columns/rows off: masked
    assert out.mask[:, -3:].all() and out.mask[-2:, :].all() and not out.mask[10:-10, 10:-10].any()


def test_too_few_matches_is_unreliable_and_falls_back():
    from starloom.astro.registration_fallback import find_transform_with_fallback
    _, info = find_transform_with_fallback(star_field(2.0, 1.0, seed=1), star_field(seed=2),
                                           min_matches=400)
    assert info["method"] == "phase_correlation"
    assert "matched stars < 400" in info["fallback_reason"]
    assert info["dx"] == pytest.approx(-2.0, abs=0.2) and info["dy"] == pytest.approx(-1.0, abs=0.2)


def test_unregistrable_frame_is_rejected_with_its_reason():
    from starloom.nodes.registration import StarAlign
    noise = CCDData(np.random.default_rng(5).normal(500, 5, SHAPE).astype(np.float32), unit="adu")
    with pytest.raises(FrameRejected, match=r"frame 'empty': no star match .*phase correlation "
                                            r"-?0\.\d+ < 0\.3"):
        StarAlign().run(Ctx(frame="empty"), StarAlign.Params(), frame=noise, reference=star_field())
    with pytest.raises(FrameRejected, match="no star match"):
        StarAlign().run(Ctx(frame="empty"), StarAlign.Params(fallback="none"), frame=noise,
                        reference=star_field())


# --- prewarp -----------------------------------------------------------------------------------

def _translated(dx, dy):
    m = np.eye(3)
    m[:2, 2] = dx, dy
    return m


def test_grow_canvas_holds_every_rotated_corner():
    from starloom.astro.prewarp import make_canvas
    a = np.radians(7.0)
    rot = np.array([[np.cos(a), -np.sin(a), 5.3], [np.sin(a), np.cos(a), -4.1], [0, 0, 1]])
    mats = [np.eye(3), rot, _translated(-6.5, 2.2)]
    canvas = make_canvas(SHAPE, mats, "grow")
    ny, nx = SHAPE
    for m in mats:
        for x, y in [(0, 0), (nx - 1, 0), (0, ny - 1), (nx - 1, ny - 1)]:
            cx, cy, _ = canvas.matrix(m) @ [x, y, 1]
            assert -1e-9 <= cx <= canvas.shape[1] - 1 + 1e-9 and -1e-9 <= cy <= canvas.shape[0] - 1 + 1e-9
    assert canvas.shape[0] > ny + 10 and canvas.shape[1] > nx + 10  # rotation made it grow
    cfa = make_canvas(SHAPE, mats, "grow", cfa=True)
    assert cfa.shape[0] % 2 == cfa.shape[1] % 2 == cfa.offset[0] % 2 == cfa.offset[1] % 2 == 0


def test_canvas_sizes_and_masks_exact_on_known_shifts():
    from starloom.astro.prewarp import make_canvas, warp_to_canvas
    mats = [np.eye(3), _translated(3, -2), _translated(-4, 5)]
    ny, nx = SHAPE
    grow = make_canvas(SHAPE, mats, "grow")
    assert grow.shape == (ny + 7, nx + 7) and grow.offset == (4, 2)
    crop = make_canvas(SHAPE, mats, "crop")
    assert crop.shape == (ny - 7, nx - 7) and crop.offset == (-3, -5)
    assert make_canvas(SHAPE, mats, "reference").shape == SHAPE
    frame = star_field(seed=4)
    for canvas in (grow, crop):
        w = warp_to_canvas(frame, mats[1], canvas, order=3)
        expect = np.ones(canvas.shape, bool)  # frame px (x, y) lands on (x + 3 + ox, y - 2 + oy)
        ox, oy = canvas.offset
        y0, x0 = max(-2 + oy, 0), max(3 + ox, 0)
        expect[y0:min(ny - 2 + oy, canvas.shape[0]), x0:min(nx + 3 + ox, canvas.shape[1])] = False
        assert np.array_equal(w.mask, expect)
        # integer shift: the pixels are the frame's own (spline interpolation at its nodes)
        src = frame.data[y0 + 2 - oy: y0 + 2 - oy + 5, x0 - 3 - ox: x0 - 3 - ox + 5]
        assert np.allclose(w.data[y0:y0 + 5, x0:x0 + 5], src, atol=1e-2)
        assert np.all(w.data[w.mask] == 0)
    assert not warp_to_canvas(frame, mats[2], crop).mask.any()  # crop = the common area


def test_prewarp_node_applies_header_transforms_once(tmp_path):
    from starloom.astro.prewarp import write_transform_cards
    from starloom.nodes.tiles_prep import Prewarp
    frames, names = [], []
    for i, (dx, dy) in enumerate([(0, 0), (3, -2), (-4, 5)]):
        ccd = star_field(seed=i)
        write_transform_cards(ccd.header, _translated(dx, dy), applied=False, method="star_match")
        frames.append(ccd)
        names.append(f"f{i}")
    ctx = Ctx(tmp_path)
    out = Prewarp().run(ctx, Prewarp.Params(canvas="crop"), frames=FrameSeries.from_frames(frames, names))
    assert out["frames"].shape == (SHAPE[0] - 7, SHAPE[1] - 7)
    assert all(not f.mask.any() and f.header["PWOFFX"] == -3 for f in out["frames"])
    assert np.all(out["coverage"].data == 1.0) and ctx.diagnostics["common_fraction"] == 1.0
    assert (tmp_path / "coverage.png").stat().st_size > 1000 and (tmp_path / "registration.png").exists()
    # an already resampled frame (REGAPPL) is not moved again
    ccd = star_field(seed=9)
    write_transform_cards(ccd.header, _translated(5, 5), applied=True)
    again = Prewarp().run(Ctx(tmp_path), Prewarp.Params(canvas="grow"),
                          frames=FrameSeries.from_frames([ccd], ["g"]))["frames"][0]
    assert again.shape == SHAPE and np.allclose(again.data, ccd.data, atol=1e-3)


def test_cfa_mosaic_is_warped_per_subplane():
    from starloom.astro.prewarp import make_canvas, warp_to_canvas
    mosaic = np.zeros(SHAPE, np.float32)
    for k, (py, px) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        mosaic[py::2, px::2] = 100.0 * (k + 1)  # each Bayer phase its own constant
    ccd = CCDData(mosaic, unit="adu", meta={"BAYERPAT": "RGGB"})
    m = np.array([[np.cos(0.05), -np.sin(0.05), 3.0], [np.sin(0.05), np.cos(0.05), 1.0], [0, 0, 1]])
    canvas = make_canvas(SHAPE, [np.eye(3), m], "grow", cfa=True)
    w = warp_to_canvas(ccd, m, canvas, cfa=True)
    ox, oy = canvas.offset
    for k, (py, px) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        sub = w.data[(py + oy) % 2::2, (px + ox) % 2::2][~w.mask[(py + oy) % 2::2, (px + ox) % 2::2]]
        assert np.allclose(sub, 100.0 * (k + 1), atol=1e-3)  # no colour mixing


# --- normalization -----------------------------------------------------------------------------

def test_normalization_recovers_known_offsets_and_scales(tmp_path):
    from starloom.nodes.tiles_prep import Normalize
    ref = star_field(seed=1)
    a, b = 1.7, -230.0
    other = ref.copy()
    other.data = ref.data * a + b
    other.mask = np.zeros(SHAPE, bool)
    other.mask[:10] = True  # no data there: stays masked, not used
    ref.mask = other.mask.copy()  # the same pixels: the statistics are exactly affine
    series = FrameSeries.from_frames([ref, other], ["ref", "other"])
    out = Normalize().run(Ctx(tmp_path), Normalize.Params(method="additive_scaling"), frames=series)
    n = out["frames"][1]
    assert n.header["NORMMUL"] == pytest.approx(1 / a, rel=1e-5)
    assert n.header["NORMADD"] == pytest.approx(-b / a, rel=1e-4)
    assert np.allclose(n.data[10:], ref.data[10:], atol=0.05) and np.all(n.data[:10] == 0)
    t = out["table"]
    assert t["background"][1] == pytest.approx(a * t["background"][0] + b, rel=1e-5)
    assert (tmp_path / "normalization.png").exists()
    add = Normalize().run(Ctx(tmp_path), Normalize.Params(method="additive"),
                          frames=FrameSeries.from_frames([ref, star_field(seed=1, sky=640.0)], ["r", "o"]))
    assert add["frames"][1].header["NORMADD"] == pytest.approx(-140.0, abs=0.5)
    mul = Normalize().run(Ctx(tmp_path), Normalize.Params(method="multiplicative"), frames=series)
    assert mul["frames"][1].header["NORMMUL"] == pytest.approx(500 / (500 * a + b), rel=0.01)  # sky ratio
    assert mul["frames"][1].header["NORMADD"] == 0


def test_normalization_per_bayer_channel(tmp_path):
    from starloom.nodes.tiles_prep import Normalize
    rng = np.random.default_rng(0)
    gains = {(0, 0): 1.0, (0, 1): 2.0, (1, 0): 2.0, (1, 1): 0.5}
    frames = []
    for scale in (1.0, 1.3):
        d = np.zeros(SHAPE, np.float32)
        for (py, px), g in gains.items():
            d[py::2, px::2] = (rng.normal(300 * g, 6 * g, (SHAPE[0] // 2, SHAPE[1] // 2))) * scale
        frames.append(CCDData(d, unit="adu", meta={"BAYERPAT": "RGGB"}))
    out = Normalize().run(Ctx(tmp_path), Normalize.Params(method="multiplicative"),
                          frames=FrameSeries.from_frames(frames, ["a", "b"]))
    assert list(dict.fromkeys(out["table"]["channel"])) == ["R", "G1", "G2", "B"]
    h = out["frames"][1].header
    assert [h["NORMMUL"], h["NORMMUL1"], h["NORMMUL2"], h["NORMMUL3"]] == pytest.approx([1 / 1.3] * 4, rel=0.01)
    assert (tmp_path / "normalization_R.png").exists()


# --- global metrics ----------------------------------------------------------------------------

def test_cloud_and_bad_seeing_get_lower_weights(tmp_path):
    from starloom.nodes.tiles_prep import GlobalMetrics, Normalize
    frames = [star_field(seed=i) for i in range(6)]
    frames.append(star_field(seed=10, cloud=400.0))   # cloud: more sky, dimmer stars
    frames.append(star_field(seed=11, fwhm=5.0))      # worse seeing
    names = [f"good{i}" for i in range(6)] + ["cloud", "seeing"]
    norm = Normalize().run(Ctx(tmp_path), Normalize.Params(), frames=FrameSeries.from_frames(frames, names))
    ctx = Ctx(tmp_path)
    out = GlobalMetrics().run(ctx, GlobalMetrics.Params(), frames=norm["frames"])
    t = out["metrics"]
    assert t.colnames == ["name", "background", "noise", "gradient_energy", "star_count", "fwhm",
                          "roundness", "z_background", "z_noise", "z_gradient", "z_fwhm", "quality",
                          "weight"]
    w = dict(zip(t["name"], t["weight"]))
    good = min(w[f"good{i}"] for i in range(6))
    assert w["cloud"] < good and w["seeing"] < good
    row = dict(zip(t["name"], t))
    assert row["cloud"]["background"] == pytest.approx(900.0, rel=0.02)  # raw ADU, not normalized
    assert row["seeing"]["fwhm"] > 1.6 * row["good0"]["fwhm"] and row["good0"]["star_count"] >= 20
    assert 0.85 < row["good0"]["roundness"] <= 1.0
    f = out["frames"][6]
    assert f.header["GLOBWT"] == pytest.approx(w["cloud"]) and f.header["BKG"] > 800
    assert (tmp_path / "global_metrics.png").exists() and (tmp_path / "stars.png").exists()
    with pytest.raises(StarloomError, match="sum to 1"):
        GlobalMetrics().run(ctx, GlobalMetrics.Params(alpha=0.5), frames=norm["frames"])
    # tile_compile's own formula (gradient energy, no FWHM) ranks them the same way here
    tc = GlobalMetrics().run(ctx, GlobalMetrics.Params(gamma=0.3, delta=0.0), frames=norm["frames"])
    w = dict(zip(tc["metrics"]["name"], tc["metrics"]["weight"]))
    good = min(w[f"good{i}"] for i in range(6))
    assert w["cloud"] < good and w["seeing"] < good


# --- scan input --------------------------------------------------------------------------------

def test_scan_guard_rails_decide_abort_reduced_or_full(tmp_path):
    from starloom.nodes.tiles_prep import ScanInput
    series = FrameSeries.from_frames([star_field(seed=i) for i in range(5)], [f"l{i}" for i in range(5)])
    ctx = Ctx(tmp_path)
    out = ScanInput().run(ctx, ScanInput.Params(frames_min=3, frames_reduced_threshold=10), frames=series)
    assert out["mode"] == "reduced" and out["frames"] is series
    d = ctx.diagnostics
    assert d["colour_mode"] == "mono" and d["shape"] == list(SHAPE) and d["exptime"] == 60.0
    assert d["guard_rails"][1]["decision"] == "reduced" and "5 frames < " in d["guard_rails"][1]["reason"]
    assert d["free_bytes"] > d["needed_bytes"] > 0 and (tmp_path / "frames.csv").exists()
    full = ScanInput().run(Ctx(tmp_path), ScanInput.Params(frames_min=3, frames_reduced_threshold=5), frames=series)
    assert full["mode"] == "full"
    with pytest.raises(StarloomError, match=r"guard rail frames_min: 5 frame\(s\), at least 6"):
        ScanInput().run(Ctx(tmp_path), ScanInput.Params(frames_min=6, frames_reduced_threshold=8), frames=series)


def test_scan_rejects_mixed_series(tmp_path):
    from starloom.astro.tiles_scan import scan_series
    good = [star_field(seed=i) for i in range(3)]
    odd_exp = star_field(seed=5, header={"EXPTIME": 30.0})
    with pytest.raises(StarloomError, match=r"exposure not uniform: 1 frame.*'odd': 30 s"):
        scan_series(FrameSeries.from_frames(good + [odd_exp], ["a", "b", "c", "odd"]))
    cfa = star_field(seed=6, header={"BAYERPAT": "RGGB"})
    with pytest.raises(StarloomError, match=r"colour mode.*'a' has mono, 'bayer' has cfa"):
        scan_series(FrameSeries.from_frames(good + [cfa], ["a", "b", "c", "bayer"]))
    small = CCDData(np.zeros((50, 60), np.float32), unit="adu", meta={"EXPTIME": 60.0})
    with pytest.raises(StarloomError, match=r"shape: 'a' has \[100, 120\], 'small' has \[50, 60\]"):
        scan_series(FrameSeries.from_frames(good + [small], ["a", "b", "c", "small"]))
    scan = scan_series(FrameSeries.from_frames([cfa] * 3, ["x", "y", "z"]))
    assert scan["colour_mode"] == "cfa" and scan["bayer"] == "RGGB"


def test_real_stargate_weights_follow_the_seeing():
    """Five real Stargate frames (uncalibrated, hot pixels): the sharpest frame (0002, FWHM
    about 3.75 px) outweighs the most blurred (0009, about 5.35 px)."""
    from astropy.table import Table
    from starloom.astro import fits as fitsio
    from starloom.astro.global_metrics import frame_metrics, global_weights
    folder = shared("stargate")
    names = ["0001", "0002", "0003", "0006", "0009"]
    rows = [{"name": n, **frame_metrics(fitsio.read_frame(
        folder / f"StarGateCluster_030_sec_1x1_{n}.fit"))} for n in names]
    t = global_weights(Table(rows=[list(r.values()) for r in rows], names=list(rows[0])))
    fwhm, w = dict(zip(t["name"], t["fwhm"])), dict(zip(t["name"], t["weight"]))
    assert fwhm["0002"] == pytest.approx(3.75, abs=0.15) and fwhm["0009"] == pytest.approx(5.35, abs=0.3)
    assert w["0002"] > w["0009"] and w["0002"] == max(w.values()) and w["0009"] == min(w.values())
    assert all(r["star_count"] >= 10 for r in rows)


def test_guard_rail_decisions_are_in_the_run_status(tmp_path):
    import json

    from starloom.cli.main import main
    graph = {"format": "starloom.graph", "schema_version": 1, "metadata": {"name": "g"},
             "nodes": [{"id": "sim", "type": "simulate.session", "version": 1,
                        "params": {"width": 120, "height": 100, "n_bias": 1, "n_darks": 1,
                                   "n_flats": 1, "n_lights": 4}},
                       {"id": "scan", "type": "tiles.scan_input", "version": 1,
                        "params": {"frames_min": 3, "frames_reduced_threshold": 10}}],
             "edges": [{"from": "sim.lights", "to": "scan.frames"}]}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run"), "--no-cache"]) == 0
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    rails = {r["rule"]: r for r in status["guard_rails"]}
    assert rails["frames_min"]["decision"] == "pass" and rails["frames_min"]["node"] == "scan"
    assert rails["frames_reduced_threshold"]["decision"] == "reduced"
