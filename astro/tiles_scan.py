"""Scan input: check a light series before the tile pipeline, and decide its mode.

Checks (tile_compile, doc/v3/process_flow/phase_0_overview.md and methodology v3.3.6 sections
2.1-2.4): one frame shape, one bit depth (BITPIX), one colour mode (``mono``; ``cfa`` when a
2-D frame has ``BAYERPAT``; ``rgb`` for planar 3-D frames), uniform exposure (EXPTIME or
EXPOSURE within a tolerance, default +-5 % of the median: a hard assumption of the method),
and enough free disk space for the run's intermediate frames.

Guard rails decide the mode: fewer than ``frames_min`` frames abort; fewer than
``frames_reduced_threshold`` run in ``reduced`` mode (state clustering and synthetic frames
skipped, the tile reconstruction is the result); otherwise ``full``. tile_compile's defaults
(50 and 200) suit long sessions; Starloom's defaults (3 and 30) let a 10-frame session run.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .errors import StarloomError

#: Float32 copies of each frame the tile pipeline keeps in the cache (registered, prewarped,
#: normalized, weighted), plus a byte mask each.
COPIES = 4


def _exposure(header) -> float | None:
    for key in ("EXPTIME", "EXPOSURE"):
        try:
            return float(header[key])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def colour_mode(header, ndim: int) -> tuple[str, str | None]:
    """``("mono"|"cfa"|"rgb", BAYERPAT or None)`` of a frame with data of ``ndim`` axes."""
    if ndim == 3:
        return "rgb", None
    bayer = str(header.get("BAYERPAT", "") or "").strip().upper() or None
    return ("cfa", bayer) if bayer else ("mono", None)


def frame_facts(frames) -> list[dict]:
    """Per frame, from headers only: ``name``, ``shape``, ``bitpix``, ``mode``, ``bayer``, ``exptime``."""
    facts = []
    for ref in frames.refs:
        h = ref.header()
        if ref.data is not None:
            shape = tuple(ref.data.shape)
        else:
            shape = tuple(int(h[k]) for k in ("NAXIS3", "NAXIS2", "NAXIS1") if k in h)
        mode, bayer = colour_mode(h, len(shape))
        facts.append({"name": ref.name, "shape": list(shape), "bitpix": h.get("BITPIX", -32),
                      "mode": mode, "bayer": bayer, "exptime": _exposure(h)})
    return facts


def _one(facts, key, what):
    values = {str(f[key]) for f in facts}
    if len(values) > 1:
        first = facts[0]
        odd = next(f for f in facts if str(f[key]) != str(first[key]))
        raise StarloomError(f"frames differ in {what}: '{first['name']}' has {first[key]}, "
                            f"'{odd['name']}' has {odd[key]}")


def scan_series(frames, *, frames_min: int = 3, frames_reduced_threshold: int = 30,
                exposure_tolerance: float = 0.05, run_dir=None) -> dict:
    """Validate ``frames`` and decide the tile pipeline's mode.

    Parameters
    ----------
    frames : FrameSeries
        The light frames.
    frames_min : int
        Fewest frames to run at all.
    frames_reduced_threshold : int
        Fewer frames than this run in ``reduced`` mode.
    exposure_tolerance : float
        Largest relative deviation of a frame's exposure from the median exposure.
    run_dir : path, optional
        Folder whose file system must hold the intermediate frames (``shutil.disk_usage``).

    Returns
    -------
    dict
        ``n_frames``, ``shape``, ``bitpix``, ``colour_mode``, ``bayer``, ``exptime`` (median,
        s, or None), ``needed_bytes``, ``free_bytes``, ``mode`` (``full``/``reduced``),
        ``guard_rails`` (list of {rule, decision, reason}), ``frames`` (per-frame facts),
        ``warnings``.

    Raises
    ------
    StarloomError
        Too few frames, mixed shapes/bit depths/colour modes, exposures outside the tolerance,
        or not enough disk space (each message says which frames or how much).
    """
    if frames_reduced_threshold < frames_min:
        raise StarloomError(f"parameter 'frames_reduced_threshold' ({frames_reduced_threshold}) "
                            f"is below 'frames_min' ({frames_min})")
    n = len(frames)
    if n < frames_min:
        raise StarloomError(f"guard rail frames_min: {n} frame(s), at least {frames_min} needed "
                            f"for the tile pipeline")
    facts = frame_facts(frames)
    _one(facts, "shape", "shape")
    _one(facts, "mode", "colour mode (BAYERPAT)")
    _one(facts, "bayer", "Bayer pattern (BAYERPAT)")
    warnings = []
    if len({f["bitpix"] for f in facts}) > 1:
        warnings.append("frames differ in bit depth (BITPIX): "
                        + ", ".join(sorted({str(f["bitpix"]) for f in facts})))
    exps = [f["exptime"] for f in facts if f["exptime"] is not None]
    median_exp = float(np.median(exps)) if exps else None
    if len(exps) < n:
        warnings.append(f"{n - len(exps)} frame(s) without EXPTIME/EXPOSURE: exposure not checked")
    if median_exp:
        odd = [f for f in facts if f["exptime"] is not None
               and abs(f["exptime"] / median_exp - 1) > exposure_tolerance]
        if odd:
            raise StarloomError(
                f"exposure not uniform: {len(odd)} frame(s) differ from the median {median_exp:g} s "
                f"by more than {exposure_tolerance:.0%} (e.g. '{odd[0]['name']}': "
                f"{odd[0]['exptime']:g} s); the tile weights assume equal exposures")
    shape = facts[0]["shape"]
    needed = int(n * np.prod(shape) * (4 + 1) * COPIES)
    free = None
    if run_dir is not None:
        free = shutil.disk_usage(Path(run_dir)).free
        if free < needed:
            raise StarloomError(f"not enough disk space in {run_dir}: {needed / 1e9:.2f} GB "
                                f"needed for {n} frames, {free / 1e9:.2f} GB free")
    rails = [{"rule": "frames_min", "decision": "pass",
              "reason": f"{n} frames >= frames_min {frames_min}"}]
    if n < frames_reduced_threshold:
        mode = "reduced"
        reason = (f"{n} frames < frames_reduced_threshold {frames_reduced_threshold}: "
                  f"state clustering and synthetic frames are skipped")
    else:
        mode = "full"
        reason = f"{n} frames >= frames_reduced_threshold {frames_reduced_threshold}"
    rails.append({"rule": "frames_reduced_threshold", "decision": mode, "reason": reason})
    return {"n_frames": n, "shape": shape, "bitpix": facts[0]["bitpix"],
            "colour_mode": facts[0]["mode"], "bayer": facts[0]["bayer"], "exptime": median_exp,
            "needed_bytes": needed, "free_bytes": free, "mode": mode, "guard_rails": rails,
            "frames": facts, "warnings": warnings}
