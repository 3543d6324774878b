"""Flat-field model: known vignetting and noise recovered, exclusions, split-half validation,
the node's artifacts, and the real ASI120 flats."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.nddata import CCDData

from conftest import shared
from starloom.astro.collection import collect_frames
from starloom.astro.errors import StarloomError
from starloom.astro.flatmodel import (FLAG_LOW, FLAG_SATURATED, FlatModelOptions,
                                      build_flat_model, channel_statistics,
                                      split_half_validation)
from starloom.astro.frames import FrameSeries
from starloom.astro.simulate import _vignetting_profile, simulate_session
from starloom.cli.main import main

SHAPE, GAIN, READ_NOISE, N = (100, 120), 1.5, 5.0, 16


def _session(n_flats=N, **kw):
    return simulate_session(seed=3, shape=SHAPE, n_bias=8, n_darks=0, n_flats=n_flats,
                            n_lights=0, vignetting=0.3, bayer="GRBG", hot_pixel_fraction=0,
                            gain=GAIN, read_noise=READ_NOISE, flat_level=20000.0, **kw)


def _series(frames):
    return FrameSeries.from_frames(frames, [f"flat{i:02d}" for i in range(len(frames))])


def _bias(frames) -> CCDData:
    return CCDData(np.mean([f.data for f in frames], axis=0).astype(np.float32), unit="adu")


@pytest.fixture(scope="module")
def simulated():
    frames = _session()
    series, bias = _series(frames["flat"]), _bias(frames["bias"])
    return frames, series, bias, build_flat_model(series, bias=bias)


def test_uncertainty_matches_injected_noise(simulated):
    frames, _, bias, model = simulated
    # Expected standard error of each factor: the CCD equation's noise of the pixel's mean
    # signal S (ADU above bias), sqrt(S * gain + read_noise**2) / gain (Howell 2006, ch. 4),
    # relative to S, times the factor, over sqrt(N).
    signal = np.mean([f.data for f in frames["flat"]], axis=0) - bias.data
    expected = model.factors * np.sqrt(signal * GAIN + READ_NOISE**2) / GAIN / signal / np.sqrt(N)
    for name, (dy, dx, step) in model.channels.items():
        ratio = (model.uncertainty / expected)[dy::step, dx::step]
        assert 0.93 < np.median(ratio) < 1.07, (name, np.median(ratio))


def test_factors_recover_known_vignetting(simulated):
    _, _, _, model = simulated
    assert model.pattern == "GRBG" and list(model.channels) == ["G1", "R", "B", "G2"]
    vignetting = _vignetting_profile(SHAPE, 0.3)
    for name, (dy, dx, step) in model.channels.items():
        f, v = model.factors[dy::step, dx::step], vignetting[dy::step, dx::step]
        assert abs(f.mean() - 1) < 1e-5
        # What is left after the vignetting is the 1 % pixel response non-uniformity.
        rms = np.std(f / (v / v.mean()) - 1)
        assert 0.007 < rms < 0.013, (name, rms)
    assert not model.mask.any() and all(model.frames["used"])


def test_split_half_validation_removes_the_vignetting(simulated):
    _, series, _, model = simulated
    stats, images = split_half_validation(series, model, seed=1)
    assert sorted(images["half_a"] + images["half_b"]) == list(range(N))
    assert len(images["half_a"]) == N // 2
    for row in stats:
        assert row["std_before"] > 0.07  # a 30 % corner drop
        assert row["std_after"] < 0.005  # the noise of two means of 8 flats
        assert row["reduction"] > 15 and row["reduction_binned"] > 15
    again, _ = split_half_validation(series, model, seed=1)
    assert np.array_equal(again["std_after"], stats["std_after"])


def test_exclusions_of_pixels_and_frames():
    frames = _session(n_flats=8)
    flats = [f.copy() for f in frames["flat"]]
    for f in flats:
        f.data[10, 10] = 65535.0  # saturated in every frame
        f.data[50, 60:64] = 520.0  # dead: about 0.001 of the level
    flats[3].data = np.full(SHAPE, 540.0, np.float32)  # lamp off: too dark
    flats[5].data[:50] = 500 + (flats[5].data[:50] - 500) * 0.7  # a shadow on one frame
    model = build_flat_model(_series(flats), bias=_bias(frames["bias"]))
    assert model.flags[10, 10] & FLAG_SATURATED
    assert (model.flags[50, 60:64] & FLAG_LOW).all()
    assert model.mask.sum() == 5
    reasons = dict(zip(model.frames["name"], model.frames["reason"]))
    assert reasons["flat03"].startswith("too dark")
    assert reasons["flat05"].startswith("illumination pattern departs")
    assert model.used == [0, 1, 2, 4, 6, 7]
    stats = channel_statistics(model)
    assert stats["n_excluded"].sum() == 5


def test_too_few_flats_is_a_clear_error():
    frames = _session(n_flats=3)
    flats = [f.copy() for f in frames["flat"]]
    flats[0].data[:] = 65535.0
    flats[1].data[:] = 65535.0
    with pytest.raises(StarloomError, match="only 1 usable flat"):
        build_flat_model(_series(flats))


def test_node_writes_summary_and_tables(tmp_path, capsys):
    graph = {
        "format": "starloom.graph", "schema_version": 1,
        "metadata": {"name": "flat model", "description": "test",
                     "created_with": {"starloom": "0.1.0"}},
        "parameters": {},
        "nodes": [{"id": "sim", "type": "simulate.session", "version": 1,
                   "params": {"width": 96, "height": 80, "n_flats": 8, "n_lights": 1,
                              "bayer": "RGGB"}},
                  {"id": "bias", "type": "calibration.master_bias", "version": 1,
                   "params": {}},
                  {"id": "model", "type": "calibration.flat_model", "version": 1,
                   "params": {"seed": 2}}],
        "edges": [{"from": "sim.flats", "to": "model.flats"},
                  {"from": "sim.bias", "to": "bias.frames"},
                  {"from": "bias.master_bias", "to": "model.bias"}]}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    run = tmp_path / "run"
    assert main(["run", str(path), "--run-dir", str(run), "--cache",
                 str(tmp_path / "c")]) == 0, capsys.readouterr().err
    art = run / "artifacts" / "model"
    page = (art / "summary.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "std_before" in page
    assert (art / "frames_used.csv").read_text().count("\n") == 9
    summary = json.loads((art / "metadata_summary.json").read_text())
    assert summary["n_used"] == 8 and summary["channels"] == ["R", "G1", "G2", "B"]
    assert all(s["reduction"] > 5 for s in summary["statistics"])
    assert (art / "summary.pdf").read_bytes().startswith(b"%PDF")
    for name in ("factors.png", "uncertainty.png", "profiles.png", "factor_distribution.png"):
        assert (art / name).stat().st_size > 1000


def test_real_asi120_flats_split_half():
    data = shared("asi120mc")
    found = collect_frames(sorted(str(p) for p in (data / "flat").glob("*.fit")),
                           hash_file=lambda p: p, frame_type="flat")
    bias_files = collect_frames(sorted(str(p) for p in (data / "bias").glob("*.fit")),
                                hash_file=lambda p: p, frame_type="bias").series
    bias = bias_files.reduce("average")
    options = FlatModelOptions(flicker_rows=True)
    model = build_flat_model(found.series, bias=bias, options=options)
    stats, _ = split_half_validation(found.series, model, seed=0, options=options)
    print("\nASI120MC flats, split-half validation (GRBG):")
    print(stats)
    assert model.pattern == "GRBG" and list(stats["channel"]) == ["G1", "R", "B", "G2"]
    assert len(model.used) == 10
    # The flats vary by about 1 % per channel; a model of 5 flats removes the large-scale part
    # (8 x 8 blocks) and leaves the pixel noise of the two half means (about 0.8 %).
    assert all(0.005 < s < 0.02 for s in stats["std_before"])
    assert all(s < 0.012 for s in stats["std_after"])
    assert all(r > 2 for r in stats["reduction_binned"])
