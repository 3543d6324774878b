"""Normalization: each frame's background and scale brought to the reference's, per channel.

Every method is one affine map per frame and channel, ``normalized = NORMMUL * raw + NORMADD``,
from robust statistics of the valid (unmasked, finite) pixels: the location ``loc`` is the
sigma-clipped median and the scale ``s`` the sigma-clipped MAD standard deviation (astropy
``sigma_clipped_stats``, 3 sigma, 5 iterations, ``stdfunc='mad_std'``). Methods, as Siril's
stacking normalization (lock042/siril, src/stacking/normalization.c; Siril manual, "Stacking:
normalization"):

- ``additive``: ``NORMMUL = 1``, ``NORMADD = loc_ref - loc``;
- ``multiplicative``: ``NORMMUL = loc_ref / loc``, ``NORMADD = 0`` (tile_compile's
  background division, methodology v3.3.6 section 5.2, scaled back to the reference's level);
- ``additive_scaling``: ``NORMMUL = s_ref / s``, ``NORMADD = loc_ref - NORMMUL * loc``.

Both statistics are affine-equivariant (clipping selects the same pixels of ``a * x + b``), so
a frame that is an affine copy of the reference is mapped back onto it exactly.

Channels: a 2-D frame with ``BAYERPAT`` has four, its 2x2 Bayer sub-planes (named by the
pattern's letters, e.g. R, G1, G2, B); a planar ``(nc, ny, nx)`` frame has ``nc``; otherwise
one. Cards on the output: ``NORMADD``/``NORMMUL`` (channel 0), ``NORMADDk``/``NORMMULk``
(channel k >= 1), ``NORMMETH``. Masked pixels stay masked and 0.
"""
from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData

from .errors import StarloomError
from .frames import as_header

METHODS = ("additive", "multiplicative", "additive_scaling")
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


def channel_slices(ccd: CCDData) -> list[tuple[str, tuple]]:
    """(name, index) of each channel of ``ccd``: Bayer sub-planes, planes, or the frame."""
    data = ccd.data
    bayer = str(ccd.header.get("BAYERPAT", "") or "").strip().upper()
    if data.ndim == 3:
        return [(f"plane{k}", (k,)) for k in range(data.shape[0])]
    if bayer in BAYER_PATTERNS:
        names, seen = [], {}
        for letter in bayer:
            seen[letter] = seen.get(letter, 0) + 1
            names.append(letter + (str(seen[letter]) if bayer.count(letter) > 1 else ""))
        phases = [(0, 0), (0, 1), (1, 0), (1, 1)]
        return [(n, (slice(py, None, 2), slice(px, None, 2))) for n, (py, px) in zip(names, phases)]
    return [("mono", ())]


def robust_stats(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Sigma-clipped median and MAD standard deviation (3 sigma, 5 iterations) of valid pixels.

    Raises
    ------
    StarloomError
        Fewer than 16 valid pixels.
    """
    from astropy.stats import sigma_clipped_stats
    v = np.asarray(values, np.float64)
    good = np.isfinite(v) if mask is None else (np.isfinite(v) & ~mask)
    if np.count_nonzero(good) < 16:
        raise StarloomError(f"only {np.count_nonzero(good)} valid pixels for robust statistics")
    _, med, std = sigma_clipped_stats(v[good], sigma=3.0, maxiters=5, stdfunc="mad_std")
    return float(med), float(std)


def frame_stats(ccd: CCDData) -> dict[str, tuple[float, float]]:
    """Per channel (see :func:`channel_slices`): ``(loc, scale)`` from :func:`robust_stats`."""
    mask = None if ccd.mask is None else np.broadcast_to(ccd.mask, ccd.data.shape)
    return {name: robust_stats(ccd.data[idx], None if mask is None else mask[idx])
            for name, idx in channel_slices(ccd)}


def coefficients(stats: tuple[float, float], ref: tuple[float, float], method: str) -> tuple[float, float]:
    """``(NORMMUL, NORMADD)`` taking a channel with ``stats`` onto ``ref`` ((loc, scale) pairs).

    Raises
    ------
    StarloomError
        Unknown method, or a zero/negative location (multiplicative) or scale.
    """
    (loc, s), (loc_r, s_r) = stats, ref
    if method == "additive":
        return 1.0, loc_r - loc
    if method == "multiplicative":
        if not loc > 0:
            raise StarloomError(f"background {loc:.4g} <= 0: multiplicative normalization "
                                f"needs a positive background (use 'additive')")
        return loc_r / loc, 0.0
    if method == "additive_scaling":
        if not s > 0:
            raise StarloomError(f"noise scale {s:.4g} <= 0: the frame is constant")
        mul = s_r / s
        return mul, loc_r - mul * loc
    raise StarloomError(f"parameter 'method': unknown normalization '{method}' (one of {METHODS})")


def normalize_frame(ccd: CCDData, ref_stats: dict, method: str = "additive_scaling",
                    name: str = "frame") -> tuple[CCDData, list[dict]]:
    """Normalize ``ccd`` onto the reference channel statistics ``ref_stats``.

    Parameters
    ----------
    ccd : CCDData
        Frame ``(ny, nx)`` (mono or Bayer mosaic) or ``(nc, ny, nx)``; ``mask`` True = no data.
    ref_stats : dict
        :func:`frame_stats` of the reference (same channels).
    method : {"additive", "multiplicative", "additive_scaling"}
    name : str
        Frame name for rows and messages.

    Returns
    -------
    frame : CCDData
        float32, normalized, masked pixels 0, cards NORMADD/NORMMUL(k)/NORMMETH.
    rows : list of dict
        Per channel: ``name``, ``channel``, ``background``, ``scale`` (raw, ADU), ``mul``, ``add``.

    Raises
    ------
    StarloomError
        The channels differ from the reference's, or a statistic is unusable (names the frame).
    """
    stats = frame_stats(ccd)
    if set(stats) != set(ref_stats):
        raise StarloomError(f"frame '{name}': channels {sorted(stats)} differ from the "
                            f"reference's {sorted(ref_stats)}")
    data = np.asarray(ccd.data, np.float32).copy()
    header = as_header(ccd.header).copy()
    rows = []
    for k, (ch, idx) in enumerate(channel_slices(ccd)):
        try:
            mul, add = coefficients(stats[ch], ref_stats[ch], method)
        except StarloomError as e:
            raise StarloomError(f"frame '{name}', channel {ch}: {e}") from None
        data[idx] = data[idx] * np.float32(mul) + np.float32(add)
        suffix = "" if k == 0 else str(k)
        header[f"NORMMUL{suffix}"] = (mul, f"normalized = NORMMUL*raw + NORMADD, {ch}")
        header[f"NORMADD{suffix}"] = (add, f"normalization offset, {ch}")
        rows.append({"name": name, "channel": ch, "background": stats[ch][0],
                     "scale": stats[ch][1], "mul": mul, "add": add})
    header["NORMMETH"] = (method, "normalization method")
    mask = ccd.mask
    if mask is not None:
        data = np.where(np.broadcast_to(mask, data.shape), 0.0, data).astype(np.float32)
    return CCDData(data, unit=ccd.unit, mask=mask, meta=header, wcs=ccd.wcs), rows


def raw_value(header, value: float, channel: int = 0) -> float:
    """Undo a frame's normalization (cards NORMMUL/NORMADD) for one value; identity without."""
    suffix = "" if channel == 0 else str(channel)
    mul = float(header.get(f"NORMMUL{suffix}", 1.0))
    add = float(header.get(f"NORMADD{suffix}", 0.0))
    return (value - add) / mul if mul else value
