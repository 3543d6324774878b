"""Tile-based reconstruction against the plain sigma-clipped average, on a simulated series.

    .venv/bin/python benchmarks/bench_tiles.py [--frames 30] [--size 300] [--seed 0]

Simulates a series with known truth (starloom.astro.simulate_tiles: seeing varying between
frames and worse towards one corner, clouds, a satellite trail, hot pixels, dithers, a slight
rotation), registers it on its stars (astroalign), normalises it additively, and stacks the same
registered frames twice: the plain noise-weighted sigma-clipped average (what ``stacking.combine``
does) and the tile pipeline (tile grid, local metrics, tile reconstruction). Prints the star
FWHM (median and in the worst corner), the background noise, the residual against the noiseless
truth, the residual along the trail and a point-source SNR, side by side.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from astropy.table import Table
from starloom.astro.frames import FrameSeries
from starloom.astro.global_metrics import frame_metrics, global_weights
from starloom.astro.normalization import frame_stats, normalize_frame
from starloom.astro.registration import star_align
from starloom.astro.simulate_tiles import score_stack, simulate_tile_session
from starloom.astro.stacking import frame_statistics, noise_weights
from starloom.astro.tile_pipeline import run_tile_pipeline


def register_and_normalise(session) -> FrameSeries:
    """Frames aligned to frame 0 (astroalign, as registration.star_align), then shifted to
    frame 0's background (additive normalization, as tiles.normalize with method 'additive')."""
    ref = session.frames[0]
    frames = [ref] + [star_align(f, ref, name=n).frame for f, n in
                      zip(session.frames[1:], session.names[1:])]
    ref_stats = frame_stats(frames[0])
    out = [normalize_frame(f, ref_stats, "additive", name=n)[0] for f, n in zip(frames, session.names)]
    return FrameSeries.from_frames(out, session.names)


def global_weight_table(series: FrameSeries) -> Table:
    """tiles.global_metrics' table: background, noise, gradient energy, stars; z-scores, Q, G."""
    return global_weights(Table(rows=[{"name": n, **frame_metrics(c)} for n, c in
                                      zip(series.names, series)]))


def plain_stack(series: FrameSeries) -> np.ndarray:
    _, std = frame_statistics(series)
    image = series.reduce("average", rejection="sigma_clip", sigma_low=3.0, sigma_high=3.0,
                          weights=noise_weights(std))
    return np.where(image.mask, np.nan, image.data) if image.mask is not None else image.data


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k-local", type=float, default=0.5,
                    help="local weight sharpness (tiles.local_metrics k_local)")
    ap.add_argument("--k-global", type=float, default=0.5,
                    help="exponent of the global weight (tiles.local_metrics k_global)")
    ap.add_argument("--size-factor", type=float, default=16.0,
                    help="tile side in FWHMs (tiles.tile_grid size_factor)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    session = simulate_tile_session(seed=args.seed, n_frames=args.frames, shape=(args.size, args.size))
    series = register_and_normalise(session)
    g = np.asarray(global_weight_table(series)["weight"], float) ** args.k_global
    t1 = time.perf_counter()
    plain = plain_stack(series)
    t2 = time.perf_counter()
    result = run_tile_pipeline(series, global_weight=g, local_kw={"k_local": args.k_local},
                               grid_kw={"size_factor": args.size_factor})
    rec = result.reconstruction.image
    tile = np.where(rec.mask, np.nan, rec.data) if rec.mask is not None else rec.data
    t3 = time.perf_counter()
    a, b = score_stack(plain, session), score_stack(tile, session)
    print(f"{args.frames} frames {args.size}x{args.size}, seed {args.seed}; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"simulate+register {t1 - t0:.1f} s, plain stack {t2 - t1:.1f} s, tile pipeline "
          f"{t3 - t2:.1f} s ({len(result.grid)} tiles of {result.grid.meta['TILESIZE']} px, "
          f"FWHM {result.grid.meta['FWHM']:.2f} px)")
    rows = [("star FWHM, median (px)", "fwhm_median"), ("star FWHM, worst corner (px)", "fwhm_corner"),
            ("background noise (e-)", "noise"), ("residual vs truth, RMS (e-)", "residual_rms"),
            ("residual on trail, mean (e-)", "trail_mean"), ("residual on trail, RMS (e-)", "trail_rms"),
            ("point-source SNR (relative)", "point_snr")]
    print(f"{'':32s}{'plain sigma-clip':>18s}{'tile pipeline':>16s}{'tile/plain':>12s}")
    for label, key in rows:
        ratio = b[key] / a[key] if a[key] else float("nan")
        scale = 1e3 if key == "point_snr" else 1.0
        print(f"{label:32s}{a[key] * scale:18.3f}{b[key] * scale:16.3f}{ratio:12.3f}")
    return {"plain": a, "tile": b}


if __name__ == "__main__":
    main()
