"""Tile pipeline, first half: scan input, prewarp onto a common canvas, normalization, global
metrics (registered before :mod:`starloom.nodes.tiles_reconstruct`'s tile nodes).

Interface to the tile nodes (tile grid, local metrics, reconstruction, clustering) and the stack:

- frames are a FrameSeries of CCDData on one common canvas (after ``tiles.prewarp``); each
  frame's ``mask`` is True where it has no data, so its coverage is ``~mask``;
- per-frame header cards: ``NORMADD``/``NORMMUL`` (``tiles.normalize``: normalized = NORMMUL *
  raw + NORMADD; ``NORMADDk``/``NORMMULk`` for channel k >= 1), ``GLOBWT`` (global weight G),
  ``BKG`` (background, raw ADU), ``NOISE`` (robust sigma, ADU after normalization), ``FWHM``
  (px), ``QUALITY`` (Q) (``tiles.global_metrics``); ``PWOFFX``/``PWOFFY`` (canvas offset);
- ``tiles.scan_input``'s ``mode`` output is ``full`` or ``reduced`` (reduced: skip state
  clustering and synthetic frames);
- ``tiles.global_metrics``' ``metrics`` table: one row per frame: name, background, noise,
  gradient_energy, star_count, fwhm, roundness, z_background, z_noise, z_gradient, z_fwhm,
  quality, weight.

Order: with ``registration.star_align`` set to ``resample: false`` the frames keep their own
pixels, so ``tiles.normalize`` and ``tiles.global_metrics`` can run before ``tiles.prewarp``
and measure noise and sharpness on pixels no interpolation has smoothed (a resampled frame's
noise is lower by a shift-dependent amount, which would bias the weights); the cards travel
through prewarp. Both also work after prewarp, on the canvas (masks respected).

Guard-rail decisions go to the diagnostics key ``guard_rails`` (list of {rule, decision,
reason}), which the run report shows in its own section.
"""
from __future__ import annotations

import csv
from typing import Literal

from pydantic import Field
from starloom.astro.errors import StarloomError
from starloom.graph_runtime.node import Node, Params, Port

_ORDER = {"bilinear": 1, "bicubic": 3, "quintic": 5}


def _write_rows(path, rows: list[dict]) -> None:
    """A list of flat dicts as CSV (the columns of the first row)."""
    if not rows:
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _round(v, nd=5):
    import numpy as np
    return round(float(v), nd) if v is not None and np.isfinite(v) else None


class ScanInput(Node):
    type_id = "tiles.scan_input"
    libraries = ("astropy",)
    title = "Scan input (tile pipeline)"
    category = "tiles"
    description = """
    Check a light series before the tile pipeline: one frame shape, bit depth and colour mode
    (mono, CFA from BAYERPAT, RGB), uniform exposure, free disk space for the run. Guard rails
    decide: fewer than 'frames_min' frames abort; fewer than 'frames_reduced_threshold' run in
    reduced mode (state clustering and synthetic frames skipped); otherwise full. The decision
    and its reason are in the diagnostics and the run report; 'mode' carries it to the nodes
    that depend on it. The frames pass through unchanged.
    """

    class Params(Params):
        frames_min: int = Field(3, ge=1, description="Fewest frames to run at all (tile_compile: 50)")
        frames_reduced_threshold: int = Field(
            30, ge=1, description="Fewer frames run in reduced mode: no state clustering or "
                                  "synthetic frames (tile_compile: 200)")
        exposure_tolerance: float = Field(0.05, ge=0, le=1, description="Largest relative "
                                          "deviation of an exposure from the median")

    inputs = {"frames": Port("FrameSeries", "light frames")}
    outputs = {"frames": Port("FrameSeries", "the same frames"),
               "mode": Port("String", "'full' or 'reduced'")}

    def run(self, ctx, params, frames):
        from starloom.astro.tiles_scan import scan_series
        listing = ctx.artifact_path("frames.csv")
        scan = scan_series(frames, frames_min=params.frames_min,
                           frames_reduced_threshold=params.frames_reduced_threshold,
                           exposure_tolerance=params.exposure_tolerance, run_dir=listing.parent)
        _write_rows(listing, [{**f, "shape": "x".join(map(str, f["shape"]))} for f in scan["frames"]])
        for w in scan.pop("warnings"):
            ctx.warn(w)
        scan["frames"] = {f["name"]: {k: v for k, v in f.items() if k != "name"}
                          for f in scan["frames"]}
        ctx.diagnostics.update(scan)
        return {"frames": frames, "mode": scan["mode"]}


def _registration_rows(frames) -> list[dict]:
    import numpy as np
    rows = []
    for ref in frames.refs:
        h = ref.header()
        dx, dy = float(h.get("REG-DX", 0.0)), float(h.get("REG-DY", 0.0))
        rows.append({"name": ref.name, "method": str(h.get("REGMETH", "star_match" if "REG-DX" in h else "none")),
                     "dx": dx, "dy": dy, "drift": float(np.hypot(dx, dy)),
                     "rotation": float(h.get("REG-ROT", 0.0))})
    return rows


class Prewarp(Node):
    type_id = "tiles.prewarp"
    libraries = ("astropy", "scikit-image", "scipy")
    title = "Prewarp onto a common canvas"
    category = "tiles"
    description = """
    Resample every registered frame once onto one common canvas: 'grow' holds every frame
    whole (rotation and translation), 'crop' keeps the area all frames cover, 'reference' the
    reference frame's grid. Transforms come from the frames' headers (registration's REG-A
    cards; frames registered with resampling on only get the canvas offset). Each frame's mask
    marks the canvas pixels it does not cover. CFA mosaics are warped per Bayer sub-plane so
    each pixel keeps its colour. Coverage map and registration trends in the artifacts.
    """

    class Params(Params):
        canvas: Literal["grow", "crop", "reference"] = Field(
            "grow", description="Canvas: grow to hold all frames, crop to the common area, or "
                                "the reference frame's size")
        interpolation: Literal["bilinear", "bicubic", "quintic"] = Field(
            "bicubic", description="Resampling (spline order 1, 3 or 5; scikit-image warp)")

    inputs = {"frames": Port("FrameSeries", "registered frames (REG-A cards in the header)")}
    outputs = {"frames": Port("FrameSeries", "frames on the common canvas, mask = no data"),
               "coverage": Port("Image", "fraction of the frames covering each canvas pixel")}

    def run(self, ctx, params, frames):
        import numpy as np
        from starloom.astro.frames import FrameSeries
        from astropy.nddata import CCDData
        from starloom.astro import prewarp as pw
        from starloom.astro.trend_plots import plot_map, plot_trends
        if len(frames) == 0:
            raise StarloomError("no frames to prewarp")
        headers = [r.header() for r in frames.refs]
        mats = [pw.read_transform(h)[0] for h in headers]
        shape = tuple(frames.shape[-2:])
        cfa = any(str(h.get("BAYERPAT", "") or "").strip() for h in headers) and len(frames.shape) == 2
        canvas = pw.make_canvas(shape, mats, params.canvas, cfa=cfa)
        out, count, wcs = [], np.zeros(canvas.shape), None
        for i, (ccd, m) in enumerate(zip(frames, mats)):
            if wcs is None and np.allclose(m, np.eye(3)) and ccd.wcs is not None:
                wcs = pw.shifted_wcs(ccd.wcs, canvas)
            w = pw.warp_to_canvas(ccd, m, canvas, order=_ORDER[params.interpolation], cfa=cfa)
            w.header["PWCANVAS"] = (params.canvas, "prewarp canvas mode")
            out.append(w)
            count += ~(w.mask if w.mask.ndim == 2 else w.mask.any(0))
            ctx.progress(i + 1, len(frames))
        for w in out:
            w.wcs = wcs
        fraction = (count / len(frames)).astype(np.float32)
        rows = _registration_rows(frames)
        for row, w in zip(rows, out):
            row["valid_fraction"] = round(float(np.mean(~w.mask)), 5)
        plot_map(ctx.artifact_path("coverage.png"), fraction, title=f"coverage ({params.canvas} canvas)",
                 label="fraction of frames", cmap="magma")
        plot_trends(ctx.artifact_path("registration.png"), {k: [r[k] for r in rows] for k in rows[0]},
                    [("dx", "dx (px)"), ("dy", "dy (px)"), ("drift", "drift (px)"),
                     ("rotation", "rotation (deg)"), ("valid_fraction", "valid fraction")],
                    title="registration", highlight={c: [r["method"] != "star_match" for r in rows]
                                                     for c in ("dx", "dy", "drift")})
        ctx.diagnostics.update(canvas=params.canvas, canvas_shape=list(canvas.shape),
                               offset=list(canvas.offset), cfa=bool(cfa),
                               common_fraction=round(float(np.mean(fraction == 1)), 5),
                               frames={r.pop("name"): r for r in [dict(r) for r in rows]})
        cov = CCDData(fraction, unit="", wcs=wcs)
        return {"frames": FrameSeries.from_frames(out, frames.names), "coverage": cov}


class Normalize(Node):
    type_id = "tiles.normalize"
    libraries = ("astropy",)
    title = "Normalize background and scale"
    category = "tiles"
    description = """
    Bring each frame's background and scale to the reference's, per channel (Bayer sub-plane
    or colour plane): multiplicative (ratio of backgrounds, tile_compile's normalization, so
    the noise global_metrics measures afterwards is relative to the sky), additive (offset) or
    additive with scaling (offset and ratio of noise scales, Siril's default before rejection;
    it equalizes the noise, which then no longer tells frames apart). Statistics are the
    sigma-clipped median and MAD of the valid pixels. Each frame gets NORMMUL/NORMADD cards
    (normalized = NORMMUL * raw + NORMADD); the table and a trend plot are in the artifacts.
    Without a reference input the first frame is the reference.
    """

    class Params(Params):
        method: Literal["additive", "multiplicative", "additive_scaling"] = Field(
            "multiplicative", description="multiplicative: background ratio (tile_compile; noise "
                                          "then measures sky SNR); additive: offset only; "
                                          "additive_scaling: offset and noise-scale ratio (Siril)")

    inputs = {"frames": Port("FrameSeries", "frames (mask = no data)"),
              "reference": Port("Image", "frame to normalize to; default the first", optional=True)}
    outputs = {"frames": Port("FrameSeries", "normalized frames (NORMMUL/NORMADD cards)"),
               "table": Port("Table", "per frame and channel: background, scale, mul, add")}

    def run(self, ctx, params, frames, reference=None):
        from starloom.astro.frames import FrameSeries
        from astropy.table import Table
        from starloom.astro.normalization import frame_stats, normalize_frame
        from starloom.astro.trend_plots import plot_trends
        if len(frames) == 0:
            raise StarloomError("no frames to normalize")
        ref = frames[0] if reference is None else reference
        ref_stats = frame_stats(ref)
        out, rows = [], []
        for i, (ccd, name) in enumerate(zip(frames, frames.names)):
            frame, r = normalize_frame(ccd, ref_stats, params.method, name)
            out.append(frame)
            rows += r
            ctx.progress(i + 1, len(frames))
        table = Table(rows=[[r[k] for k in rows[0]] for r in rows], names=list(rows[0]))
        for ch in dict.fromkeys(table["channel"]):
            sel = table[table["channel"] == ch]
            suffix = "" if ch == "mono" else f"_{ch}"
            plot_trends(ctx.artifact_path(f"normalization{suffix}.png"), sel,
                        [("background", "background (ADU)"), ("scale", "noise scale (ADU)"),
                         ("mul", "NORMMUL"), ("add", "NORMADD (ADU)")],
                        title=f"normalization ({params.method}{', ' + ch if suffix else ''})")
        frames_diag = {}
        for r in rows:
            key = "" if r["channel"] == "mono" else f"{r['channel']} "
            d = frames_diag.setdefault(r["name"], {})
            for k in ("background", "scale", "mul", "add"):
                d[key + k] = _round(r[k])
        ctx.diagnostics.update(method=params.method, reference=str(ref.header.get(
            "REFFRAME", frames.names[0] if reference is None else "input")),
            reference_stats={k: [_round(v) for v in s] for k, s in ref_stats.items()},
            frames=frames_diag)
        ctx.history(f"normalized ({params.method}) to the reference's background and scale")
        return {"frames": FrameSeries.from_frames(out, frames.names), "table": table}


class GlobalMetrics(Node):
    type_id = "tiles.global_metrics"
    libraries = ("astropy", "photutils", "scikit-image", "scipy")
    title = "Global frame metrics and weights"
    category = "tiles"
    description = """
    Measure each frame: background, robust noise, gradient energy, star count, FWHM and
    roundness; robust z-scores (median/MAD) across the frames give the quality
    Q = alpha(-z_B) + beta(-z_sigma) + gamma z_E + delta(-z_FWHM) and the global weight
    G = exp(Q) (tile_compile's formula with alpha, beta, gamma, delta = 0.4, 0.3, 0.3, 0; the
    default puts the star FWHM in place of the gradient energy, which on real frames can
    reward blurred bright stars).
    Frames pass through with GLOBWT, QUALITY, BKG, NOISE, FWHM cards; table and trend plots
    in the artifacts.
    """

    class Params(Params):
        alpha: float = Field(0.4, ge=0, le=1, description="Weight of -z(background)")
        beta: float = Field(0.3, ge=0, le=1, description="Weight of -z(noise)")
        gamma: float = Field(0.0, ge=0, le=1, description="Weight of z(gradient energy) "
                             "(tile_compile: 0.3 and no FWHM term)")
        delta: float = Field(0.3, ge=0, le=1, description="Weight of -z(star FWHM)")
        clamp: float = Field(3.0, gt=0, le=10, description="Q clipped to [-clamp, clamp] before exp")
        fwhm: float = Field(3.0, gt=0.5, le=30, description="Expected star FWHM, px (star finder)")
        threshold_sigma: float = Field(5.0, gt=0, description="Star detection threshold, sigma")

    inputs = {"frames": Port("FrameSeries", "frames (normalized, mask = no data)")}
    outputs = {"frames": Port("FrameSeries", "the frames with GLOBWT/QUALITY/BKG/NOISE/FWHM cards"),
               "metrics": Port("Table", "one row per frame: metrics, z-scores, quality, weight")}

    def run(self, ctx, params, frames):
        import numpy as np
        from starloom.astro.frames import FrameSeries, as_header
        from astropy.table import Table
        from starloom.astro.global_metrics import frame_metrics, global_weights
        from starloom.astro.trend_plots import plot_trends
        if len(frames) == 0:
            raise StarloomError("no frames to measure")
        rows = []
        for i, (ccd, name) in enumerate(zip(frames, frames.names)):
            try:
                m = frame_metrics(ccd, fwhm=params.fwhm, threshold_sigma=params.threshold_sigma)
            except StarloomError as e:
                raise StarloomError(f"frame '{name}': {e}") from None
            rows.append({"name": name, **m})
            ctx.progress(i + 1, len(frames))
        table = Table(rows=[[r[k] for k in rows[0]] for r in rows], names=list(rows[0]))
        global_weights(table, alpha=params.alpha, beta=params.beta, gamma=params.gamma,
                       delta=params.delta, clamp=params.clamp)
        out = []
        for ccd, row in zip(frames, table):
            ccd.meta = as_header(ccd.meta)
            for card, col, comment in (("GLOBWT", "weight", "global weight G = exp(Q)"),
                                       ("QUALITY", "quality", "global quality Q"),
                                       ("BKG", "background", "background, raw ADU"),
                                       ("NOISE", "noise", "robust pixel noise, ADU"),
                                       ("FWHM", "fwhm", "median star FWHM, px")):
                v = float(row[col])
                ccd.header[card] = (v if np.isfinite(v) else -1.0, comment)
            out.append(ccd)
        plot_trends(ctx.artifact_path("global_metrics.png"), table,
                    [("background", "background (ADU)"), ("noise", "noise (ADU)"),
                     ("gradient_energy", "gradient energy"), ("quality", "quality Q"),
                     ("weight", "weight G")], title="global metrics")
        plot_trends(ctx.artifact_path("stars.png"), table,
                    [("star_count", "stars"), ("fwhm", "FWHM (px)"), ("roundness", "roundness b/a")],
                    title="star metrics")
        ctx.diagnostics.update(
            weights={"alpha": params.alpha, "beta": params.beta, "gamma": params.gamma,
                     "delta": params.delta},
            clamp=params.clamp,
            frames={r["name"]: {c: _round(r[c]) for c in table.colnames if c != "name"} for r in table})
        return {"frames": FrameSeries.from_frames(out, frames.names), "metrics": table}


NODES = [ScanInput, Prewarp, Normalize, GlobalMetrics]
