"""The run report: one self-contained page with every node's section, the timeline, guard
rails and the graph; run on the first half of the tile pipeline over simulated frames."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from starloom.astro import fits as fitsio
from starloom.cli.main import main
from starloom.graph_runtime.cache import Cache
from starloom.graph_runtime.graph import plan
from starloom.graph_runtime.registry import default_registry
from starloom.graph_runtime.run import Run
from starloom.serialization import GraphDocument
from test_tiles_prep import star_field


@pytest.fixture(scope="module")
def lights(tmp_path_factory) -> Path:
    """Six frames with known dithers, one in bad seeing (FWHM 8 px: no star match, the
    phase-correlation fallback), one pure noise (rejected by registration)."""
    root = tmp_path_factory.mktemp("lights")
    shifts = [(0, 0), (2.0, -1.0), (-3.0, 2.0), (1.0, 3.0), (4.0, 1.0)]
    for i, (dx, dy) in enumerate(shifts):
        ccd = star_field(dx, dy, seed=i, fwhm=8.0 if i == 4 else 2.5,
                         header={"IMAGETYP": "Light Frame"})
        fitsio.write_frame(ccd, root / f"light_{i:02d}.fits")
    noise = np.random.default_rng(9).normal(500, 5, (100, 120)).astype(np.float32)
    fits.PrimaryHDU(noise, fits.Header({"EXPTIME": 60.0, "IMAGETYP": "Light Frame"})).writeto(
        root / "light_05.fits")
    return root


def graph(lights: Path) -> GraphDocument:
    def n(id, type, **params):
        return {"id": id, "type": type, "version": 1, "params": params}
    return GraphDocument.model_validate({
        "metadata": {"name": "tile prep"},
        "parameters": {"lights": {"type": "path", "default": str(lights), "binds": ["load.path"]}},
        "nodes": [n("load", "io.load_frames"),
                  n("scan", "tiles.scan_input", frames_min=3, frames_reduced_threshold=30),
                  n("reference", "registration.select_reference", method="index", index=0),
                  n("register", "registration.star_align", resample=False),
                  n("normalize", "tiles.normalize"),
                  n("metrics", "tiles.global_metrics"),
                  n("prewarp", "tiles.prewarp", canvas="grow"),
                  n("stack", "stacking.combine"),
                  n("save", "io.save_png", filename="stack.png")],
        "edges": [{"from": "load.frames", "to": "scan.frames"},
                  {"from": "scan.frames", "to": "reference.frames"},
                  {"from": "scan.frames", "to": "register.frames"},
                  {"from": "reference.reference", "to": "register.reference"},
                  # measured before resampling (which smooths noise), warped once after
                  {"from": "register.frames", "to": "normalize.frames"},
                  {"from": "normalize.frames", "to": "metrics.frames"},
                  {"from": "metrics.frames", "to": "prewarp.frames"},
                  {"from": "prewarp.frames", "to": "stack.frames"},
                  {"from": "stack.image", "to": "save.image"}]})


@pytest.fixture(scope="module")
def run_dir(lights, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run") / "run"
    res = Run(d, Cache(d.parent / "cache")).execute(plan(graph(lights), default_registry()))
    assert res.status == "ok", res.error
    return d


def test_pipeline_registers_with_fallback_and_rejects_the_noise_frame(run_dir):
    reg = json.loads((run_dir / "artifacts/register.json").read_text())["frames"]
    assert reg["light_01"]["method"] == "star_match" and reg["light_01"]["dx"] == pytest.approx(-2, abs=0.1)
    assert reg["light_04"]["method"] == "phase_correlation"
    assert reg["light_04"]["dx"] == pytest.approx(-4, abs=0.5)
    assert "phase correlation" in reg["light_05"]["rejected"]
    pre = json.loads((run_dir / "artifacts/prewarp.json").read_text())
    ny, nx = pre["canvas_shape"]  # shifts to the reference: dx -4..+3, dy -3..+2, measured
    assert 100 + 5 <= ny <= 100 + 6 and 120 + 7 <= nx <= 120 + 8
    assert set(pre["frames"]) == {f"light_{i:02d}" for i in range(5)}
    stacked = [f for f in (run_dir / "outputs").glob("*.png")]
    assert stacked and pre["frames"]["light_04"]["method"] == "phase_correlation"
    metrics = json.loads((run_dir / "artifacts/metrics.json").read_text())["frames"]
    # the bad-seeing frame has the lowest weight
    assert min(metrics, key=lambda k: metrics[k]["weight"]) == "light_04"
    assert all(metrics[f"light_0{i}"]["star_count"] > 20 for i in range(4))
    scan = json.loads((run_dir / "artifacts/scan.json").read_text())
    assert scan["mode"] == "reduced" and scan["n_frames"] == 6


def test_report_is_self_contained_and_has_every_section(run_dir):
    html = (run_dir / "artifacts/report.html").read_text()
    srcs = re.findall(r"<img[^>]*src='([^']*)'", html)
    assert len(srcs) >= 7 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "href='http" not in html and "<script" not in html and "<link" not in html
    for nid in ("load", "scan", "reference", "register", "normalize", "metrics", "prewarp",
                "stack", "save"):
        assert f"id='node-{nid}'" in html, nid
    assert "id='guard-rails'" in html and "frames_reduced_threshold" in html and ">reduced<" in html
    assert "aria-label='timeline'" in html and "node timeline" in html
    for fig in ("coverage.png", "registration.png", "normalization.png", "global_metrics.png",
                "stars.png"):
        assert fig in html, fig
    # per-frame registration diagnostics as a table: method per frame, rejection reason
    assert "<th>method</th>" in html and "phase_correlation" in html
    assert "rejected light_05" in html
    # the graph with its parameters
    assert "canvas=&quot;grow&quot;" in html and "<th>parameter</th>" in html
    # outputs embedded too
    assert "outputs/stack.png" in html


def test_cli_writes_the_report_again(run_dir, capsys):
    (run_dir / "artifacts/report.html").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert "id='node-prewarp'" in (run_dir / "artifacts/report.html").read_text()


def test_timeline_spans_from_events():
    from starloom.graph_runtime.report_timeline import node_spans, timeline_svg
    ev = [{"t": "2026-01-01T00:00:00+00:00", "event": "run_started"},
          {"t": "2026-01-01T00:00:01+00:00", "event": "node_cached", "node": "a"},
          {"t": "2026-01-01T00:00:01+00:00", "event": "node_started", "node": "b"},
          {"t": "2026-01-01T00:00:02+00:00", "event": "frame_computed", "node": "b"},
          {"t": "2026-01-01T00:00:02.5+00:00", "event": "frame_rejected", "node": "b"},
          {"t": "2026-01-01T00:00:04+00:00", "event": "node_finished", "node": "b"},
          {"t": "2026-01-01T00:00:04+00:00", "event": "node_started", "node": "c"},
          {"t": "2026-01-01T00:00:05+00:00", "event": "node_failed", "node": "c"}]
    spans = {s["node"]: s for s in node_spans(ev)}
    assert spans["a"]["state"] == "cached" and spans["a"]["start"] == spans["a"]["end"] == 1.0
    assert (spans["b"]["start"], spans["b"]["end"], spans["b"]["frames"], spans["b"]["rejected"]) == \
        (1.0, 4.0, [2.0], [2.5])
    assert spans["c"]["state"] == "failed"
    svg = timeline_svg(ev)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    # a bar per node, one frame tick, one rejection cross, the failed node in red
    assert svg.count("<rect") == 3 and svg.count(">x</text>") == 1 and "fill='#c33'><title>c" in svg
    assert timeline_svg([]) is None


def test_timeline_not_drawn_while_running_or_for_huge_graphs():
    from starloom.graph_runtime.report import MAX_TIMELINE_NODES, _timeline

    ev = [{"t": "2026-01-01T00:00:00", "event": "node_started", "node": "a"},
          {"t": "2026-01-01T00:00:02", "event": "node_finished", "node": "a"}]
    assert "aria-label='timeline'" in _timeline(ev, "ok", 1)
    assert "when the run ends" in _timeline(ev, "running", 1)
    assert "no timeline" in _timeline(ev, "ok", MAX_TIMELINE_NODES + 1)
