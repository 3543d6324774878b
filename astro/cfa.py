"""Colour filter array (CFA, Bayer mosaic) handling before debayering.

A one-shot-colour sensor records one colour per pixel in a repeating 2x2 tile, named by the
FITS keyword ``BAYERPAT`` (``'RGGB'``: R at the tile's top left, then G, then G, B on the next
row). The conventions followed here are those written by INDI, ASCOM/N.I.N.A. and read by
Siril (https://free-astro.org/index.php?title=Siril:FITS_orientation):

- ``BAYERPAT`` describes the tile as seen from the top-left of the picture, reading rows
  top-down;
- ``ROWORDER = 'TOP-DOWN'`` (or absent, as ZWO's ASIImg and the Seestar write): the first row
  of the array, numpy row 0, is that top row, so the pattern starts at numpy ``[0, 0]``;
- ``ROWORDER = 'BOTTOM-UP'``: numpy row 0 is the *bottom* row, the picture's top row is numpy
  row ``ny - 1``, so for an even number of rows the pattern seen from numpy ``[0, 0]`` is the
  vertically flipped one (``'RGGB'`` -> ``'GBRG'``); for an odd number it is unchanged;
- ``XBAYROFF`` / ``YBAYROFF`` (0 or 1): the tile starts that many columns / rows later, i.e.
  an odd offset swaps the columns / rows of the tile; applied in the top-down frame, before
  the ``ROWORDER`` flip.

Patterns returned by this module are always relative to numpy ``[0, 0]`` of the array as
stored, the convention colour-demosaicing's functions take.
"""
from __future__ import annotations

import numpy as np

from .errors import StarloomError

__all__ = ["PATTERNS", "cfa_pattern", "cfa_masks", "subplanes", "normalise_cfa", "warp_cfa"]

PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
_STATISTICS = {"median": np.nanmedian, "average": np.nanmean}


def _tile(pattern: str) -> list[list[str]]:
    return [[pattern[0], pattern[1]], [pattern[2], pattern[3]]]


def _flat(tile) -> str:
    return tile[0][0] + tile[0][1] + tile[1][0] + tile[1][1]


def _check(pattern: str, what: str) -> str:
    # Headers in the wild also write lower case, spaces or quotes inside the string.
    text = str(pattern).strip().strip("'").upper().replace(" ", "")
    if text not in PATTERNS:
        raise StarloomError(f"{what}: unknown CFA pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    return text


def flip_rows(pattern: str) -> str:
    """The pattern with its two rows swapped (``'RGGB'`` -> ``'GBRG'``)."""
    t = _tile(pattern)
    return _flat([t[1], t[0]])


def flip_columns(pattern: str) -> str:
    """The pattern with its two columns swapped (``'RGGB'`` -> ``'GRBG'``)."""
    t = _tile(pattern)
    return _flat([t[0][::-1], t[1][::-1]])


def _offset(header, key: str, name: str) -> int:
    value = header.get(key, 0)
    try:
        return int(float(value or 0))
    except (TypeError, ValueError):
        raise StarloomError(f"{name}: header {key} {value!r} is not a whole number of pixels; "
                            f"set parameter 'pattern'") from None


def cfa_pattern(header, override: str = "auto", shape=None, name: str = "image") -> str:
    """The Bayer pattern of a CFA image, relative to numpy ``[0, 0]``.

    Parameters
    ----------
    header : astropy.io.fits.Header or dict-like
        The image header: ``BAYERPAT`` (or ``COLORTYP``, as some writers use), ``ROWORDER``,
        ``XBAYROFF``, ``YBAYROFF``; ``NAXIS2`` for the number of rows when ``shape`` is not
        given.
    override : {'auto', 'RGGB', 'GRBG', 'GBRG', 'BGGR'}
        'auto' reads the header; any pattern is taken as is (relative to numpy ``[0, 0]``),
        for headers that lie or lack the keyword.
    shape : tuple of int, optional
        Array shape ``(ny, nx)``; its ``ny`` decides whether ``ROWORDER = 'BOTTOM-UP'`` flips
        the pattern (see the module docstring).
    name : str
        The image's name, for messages.

    Returns
    -------
    str
        One of :data:`PATTERNS`.

    Raises
    ------
    StarloomError
        If ``override`` is unknown, or is 'auto' and the header has no known pattern (the
        message says to set the ``pattern`` parameter), or ``ROWORDER`` is neither
        'TOP-DOWN' nor 'BOTTOM-UP'.
    """
    if override != "auto":
        return _check(override, "parameter 'pattern'")
    raw = header.get("BAYERPAT", header.get("COLORTYP"))
    if raw is None or str(raw).strip() == "":
        raise StarloomError(f"{name}: no BAYERPAT in the header, so the CFA pattern is unknown; "
                            f"set parameter 'pattern' (one of {', '.join(PATTERNS)})")
    pattern = _check(raw, f"{name}: header BAYERPAT")
    if _offset(header, "XBAYROFF", name) % 2:
        pattern = flip_columns(pattern)
    if _offset(header, "YBAYROFF", name) % 2:
        pattern = flip_rows(pattern)
    order = str(header.get("ROWORDER", "TOP-DOWN")).strip().upper()
    if order not in ("TOP-DOWN", "BOTTOM-UP"):
        raise StarloomError(f"{name}: header ROWORDER {order!r} is neither 'TOP-DOWN' nor "
                            f"'BOTTOM-UP'")
    ny = shape[-2] if shape is not None else header.get("NAXIS2")
    if order == "BOTTOM-UP":
        if ny is None:
            raise StarloomError(f"{name}: ROWORDER is 'BOTTOM-UP' but the number of rows is "
                                f"unknown; set parameter 'pattern'")
        if int(ny) % 2 == 0:
            pattern = flip_rows(pattern)
    return pattern


def cfa_offsets(pattern: str) -> dict[str, list[tuple[int, int]]]:
    """``{'R': [(row, col)], 'G': [(row, col), (row, col)], 'B': [(row, col)]}`` in the tile."""
    pattern = _check(pattern, "pattern")
    out: dict[str, list[tuple[int, int]]] = {"R": [], "G": [], "B": []}
    for k, colour in enumerate(pattern):
        out[colour].append(divmod(k, 2))
    return out


def cfa_masks(shape, pattern: str) -> dict[str, np.ndarray]:
    """Boolean masks of the red, green and blue sites of a CFA of ``shape`` ``(ny, nx)``.

    Same meaning as ``colour_demosaicing.masks_CFA_Bayer``: ``{'R': ..., 'G': ..., 'B': ...}``,
    each a bool array of ``shape``, True where that colour was recorded.
    """
    ny, nx = shape[-2:]
    masks = {c: np.zeros((ny, nx), bool) for c in "RGB"}
    for colour, sites in cfa_offsets(pattern).items():
        for dy, dx in sites:
            masks[colour][dy::2, dx::2] = True
    return masks


def subplanes(data, pattern: str) -> dict[str, np.ndarray]:
    """The four CFA sub-planes of a mosaic, as views at half resolution.

    Parameters
    ----------
    data : numpy.ndarray
        CFA mosaic ``(ny, nx)``.
    pattern : str
        Pattern relative to numpy ``[0, 0]``.

    Returns
    -------
    dict
        ``{'R': data[r0::2, c0::2], 'G1': ..., 'G2': ..., 'B': ...}`` (views, not copies;
        ``G1`` is the green site in the tile's first row).
    """
    if np.ndim(data) != 2:
        raise StarloomError(f"a CFA mosaic is 2-D, got shape {np.shape(data)}")
    out = {}
    for colour, sites in cfa_offsets(pattern).items():
        for k, (dy, dx) in enumerate(sites):
            out[colour if colour != "G" else f"G{k + 1}"] = data[dy::2, dx::2]
    return out


def normalise_cfa(master, pattern: str, statistic: str = "median"):
    """Normalise a colour master flat to 1 in each CFA sub-plane separately (in place).

    A flat of a one-shot-colour sensor has a different level per colour (the lamp's or sky's
    colour times the filter transmission): normalised by one overall median, it would change
    the colour balance of every light it divides, and a green-dominated median leaves red and
    blue far from 1. Each of the four sub-planes (R, G1, G2, B) is therefore divided by its own
    median (or average), as Siril does for CFA flats ("equalize CFA"); the colour balance is
    then left to photometric colour calibration.

    Parameters
    ----------
    master : astropy.nddata.CCDData
        Master flat, 2-D mosaic; its data (and uncertainty) are divided in place.
    pattern : str
        Pattern relative to numpy ``[0, 0]`` (only the sub-plane split matters).
    statistic : {'median', 'average'}
        Statistic of each sub-plane scaled to 1 (NaN ignored).

    Returns
    -------
    dict
        ``{'R': level, 'G1': level, 'G2': level, 'B': level}``: the levels divided by.

    Raises
    ------
    StarloomError
        If the data is not 2-D, or a sub-plane has no finite pixel or a level <= 0.
    """
    data = np.asarray(master.data, dtype=np.float32).copy()
    scale = np.ones_like(data)
    levels = {}
    for key, view in subplanes(scale, pattern).items():
        level = float(_STATISTICS[statistic](subplanes(data, pattern)[key]))
        if not np.isfinite(level) or level <= 0:
            raise StarloomError(f"master flat: CFA sub-plane {key} has level {level}; cannot "
                                f"normalise it")
        view[...] = level
        levels[key] = level
    master.data = data / scale
    if master.uncertainty is not None:
        master.uncertainty.array = master.uncertainty.array / scale
    return levels


def warp_cfa(data, inverse_map, order: int = 3, cval: float = np.nan,
             output_shape=None) -> np.ndarray:
    """Resample a CFA mosaic sub-plane by sub-plane, so colours never mix.

    Interpolating a mosaic directly (e.g. bicubic) blends red, green and blue neighbours into
    every output pixel and destroys the pattern. Instead each of the four sub-planes
    (offsets ``(dy, dx)`` in {0, 1}^2) is warped on its own half-resolution grid: the output
    site ``(2i + dy, 2j + dx)`` is mapped to the input through ``inverse_map`` and read by
    interpolating the input's *same* sub-plane at ``((y - dy) / 2, (x - dx) / 2)``. The
    pattern of the output equals the input's, and each colour is interpolated only from sites
    of that colour. Cost: the same number of interpolations as one full warp, but each colour
    is resampled on a grid twice as coarse, so the frame is slightly softer than a warp of a
    debayered image; the alternative (debayering every frame before registration) triples the
    data to register and stack. Resampling: ``skimage.transform.warp`` (spline of ``order``).

    Parameters
    ----------
    data : numpy.ndarray
        CFA mosaic ``(ny, nx)``; the output has the same pattern (from numpy ``[0, 0]``).
        Non-finite pixels are filled with their sub-plane's median for the spline and the
        output pixels they reach (bilinear weight > 1 %) are set to ``cval``.
    inverse_map : callable
        Maps an ``(N, 2)`` array of output ``(x, y)`` pixel coordinates (0-based, full
        resolution) to input ``(x, y)``, as ``skimage.transform.ProjectiveTransform.inverse``.
    order : int
        Spline order of the interpolation (1 bilinear, 3 bicubic, 5 quintic).
    cval : float
        Value outside the input.
    output_shape : tuple of int, optional
        ``(ny, nx)`` of the output (e.g. the reference frame's); default the input's.

    Returns
    -------
    numpy.ndarray
        float64 ``output_shape``.
    """
    from skimage.transform import warp  # imported where used (startup time)

    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2:
        raise StarloomError(f"a CFA mosaic is 2-D, got shape {data.shape}")
    out = np.full(output_shape or data.shape, cval, dtype=np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            plane = data[dy::2, dx::2]
            target = out[dy::2, dx::2]
            bad = ~np.isfinite(plane)
            if bad.any():  # a NaN would spread through the whole spline prefilter
                plane = np.where(bad, np.median(plane[~bad]) if (~bad).any() else 0.0, plane)
            offset = np.array([dx, dy], dtype=np.float64)

            def half_map(xy, offset=offset):
                return (np.asarray(inverse_map(xy * 2.0 + offset)) - offset) / 2.0

            # Edges mirrored for the spline (a NaN cval spreads through skimage's prefilter,
            # a 0 one darkens the border); pixels mapped outside the input get ``cval`` after.
            target[...] = warp(plane, half_map, output_shape=target.shape, order=order,
                               mode="symmetric", preserve_range=True)
            rows, cols = np.indices(target.shape)
            src = half_map(np.column_stack([cols.ravel(), rows.ravel()]).astype(np.float64))
            outside = ((src[:, 0] < -0.5) | (src[:, 0] > plane.shape[1] - 0.5)
                       | (src[:, 1] < -0.5) | (src[:, 1] > plane.shape[0] - 0.5))
            target[outside.reshape(target.shape)] = cval
            if bad.any():
                reached = warp(bad.astype(np.float64), half_map, output_shape=target.shape,
                               order=1, mode="constant", cval=0.0) > 0.01
                target[reached] = cval
    return out
