"""Colour composition (RGB and LRGB from filter stacks) and colour display stretches.

Colour images are planar RGB: arrays or ``CCDData`` of shape ``(3, ny, nx)``, planes R, G, B.
Stacks of separate filters are brought onto one pixel grid with ``reproject.reproject_interp``
(https://reproject.readthedocs.io) before they are combined. The colour-preserving display
stretch is astropy's implementation of Lupton et al. 2004, PASP 116, 133, "Preparing
Red-Green-Blue Images from CCD Data" (``astropy.visualization.make_lupton_rgb`` and
``RGBImageMappingLupton``).
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from .errors import StarloomError
from .stretch import stretch as stretch_image

__all__ = ["COLOUR_STRETCHES", "compose_rgb", "luminance_replace", "colour_stretch",
           "lupton_stretch"]

COLOUR_STRETCHES = ("linked", "unlinked", "lupton", "lupton_unlinked")


def _on_grid(ccd: CCDData, reference: CCDData, name: str, ref_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(data, bad) of ``ccd`` on ``reference``'s pixel grid, reprojected through the WCS."""
    data = np.asarray(ccd.data, dtype=np.float64)
    if data.ndim != 2:
        raise StarloomError(f"input '{name}': a filter stack is 2-D, got shape {data.shape}")
    bad = ~np.isfinite(data) | (np.asarray(ccd.mask, bool) if ccd.mask is not None else False)
    if ccd is reference:
        return np.where(bad, np.nan, data), bad
    if ccd.wcs is None or reference.wcs is None:
        if data.shape != reference.shape:
            raise StarloomError(f"input '{name}' {data.shape} and '{ref_name}' "
                                f"{reference.shape} differ and have no WCS to reproject with; "
                                f"plate-solve or register them first")
        return np.where(bad, np.nan, data), bad
    from .coadd import reproject_frames  # imports reproject where used (startup time)

    stack, foot = reproject_frames([(np.where(bad, np.nan, data), ccd.wcs.celestial)],
                                   reference.wcs.celestial, reference.shape)
    out = stack[0].astype(np.float64)
    return out, ~np.isfinite(out) | (foot[0] <= 0)


def luminance_replace(rgb: np.ndarray, luminance: np.ndarray) -> tuple[np.ndarray, dict]:
    """Replace the luminance of a linear RGB image by a separate L image (LRGB).

    The RGB image is written in a luminance / colour-difference space with equal weights,
    ``Y = (R + G + B) / 3`` (Lupton et al. 2004's intensity) and ``R - Y, G - Y, B - Y`` (the
    colour-difference idea of ITU-R BT.601's Y'CbCr, applied to linear data); Y is replaced by
    the L image and the differences are kept: ``RGB' = RGB + (L' - Y)``. Before that L is
    put on Y's scale by a least-squares line ``Y ~ a L + b`` over the pixels valid in both
    (iterated once with 3-sigma clipping of the residuals, ``astropy.stats.sigma_clip``), so
    an L stack of any exposure and unit works. The result has L's detail and signal-to-noise
    in its luminance and the RGB's colours; being additive it is stable where the background
    is near zero (a ratio ``RGB * L / Y`` is not).

    Parameters
    ----------
    rgb : numpy.ndarray
        Planar RGB ``(3, ny, nx)``, linear (not stretched).
    luminance : numpy.ndarray
        L image ``(ny, nx)`` on the same pixel grid.

    Returns
    -------
    (numpy.ndarray, dict)
        float32 ``(3, ny, nx)``, NaN where either input is; and ``{'scale': a, 'offset': b}``.

    Raises
    ------
    StarloomError
        If the shapes differ or fewer than 10 pixels are valid in both.
    """
    from astropy.stats import sigma_clip

    rgb = np.asarray(rgb, dtype=np.float64)
    lum = np.asarray(luminance, dtype=np.float64)
    if rgb.shape != (3,) + lum.shape:
        raise StarloomError(f"luminance {lum.shape} does not match RGB {rgb.shape}")
    y = rgb.mean(axis=0)
    ok = np.isfinite(y) & np.isfinite(lum)
    if ok.sum() < 10:
        raise StarloomError("luminance and RGB share fewer than 10 valid pixels")
    a, b = np.polyfit(lum[ok], y[ok], 1)
    resid = sigma_clip(y[ok] - (a * lum[ok] + b), sigma=3, maxiters=1)
    keep = ~np.ma.getmaskarray(resid)
    a, b = np.polyfit(lum[ok][keep], y[ok][keep], 1)
    out = rgb + (a * lum + b - y)[None]
    return out.astype(np.float32), {"scale": float(a), "offset": float(b)}


def compose_rgb(red: CCDData, green: CCDData, blue: CCDData, luminance: CCDData | None = None,
                reference: str = "red") -> tuple[CCDData, dict]:
    """Planar RGB (or LRGB) from three (or four) filter stacks, reprojected to one WCS.

    Each stack is reprojected onto the reference stack's WCS and shape
    (``reproject.reproject_interp``, bilinear); stacks without a WCS must already share the
    reference's shape (registered together). With ``luminance``, its detail replaces the
    RGB's luminance (:func:`luminance_replace`).

    Parameters
    ----------
    red, green, blue : astropy.nddata.CCDData
        2-D stacks of the red, green and blue filters, linear, with a celestial WCS when they
        are not on one pixel grid already.
    luminance : astropy.nddata.CCDData, optional
        2-D L stack.
    reference : {'red', 'green', 'blue', 'luminance'}
        The stack whose WCS and shape the result takes.

    Returns
    -------
    (astropy.nddata.CCDData, dict)
        float32 ``(3, ny, nx)`` with the reference's WCS, unit and header (``FILTER`` removed,
        ``COLORSPC = 'RGB'`` and one ``RGBSRC<i>`` card per plane naming its input's
        FILTER), mask True where any input has no data; and diagnostics (the LRGB fit).

    Raises
    ------
    StarloomError
        Reference 'luminance' without an L input, an input not 2-D, or differently shaped
        inputs without WCS.
    """
    inputs = {"red": red, "green": green, "blue": blue}
    if luminance is not None:
        inputs["luminance"] = luminance
    if reference not in inputs:
        raise StarloomError(f"parameter 'reference': '{reference}' is not connected")
    ref = inputs[reference]
    planes, bads = {}, []
    for name, ccd in inputs.items():
        planes[name], bad = _on_grid(ccd, ref, name, reference)
        bads.append(bad)
    rgb = np.stack([planes["red"], planes["green"], planes["blue"]])
    info = {"reference": reference, "shape": list(rgb.shape)}
    if luminance is not None:
        rgb, info["lrgb_fit"] = luminance_replace(rgb, planes["luminance"])
    bad = np.logical_or.reduce(bads)
    header = fits.Header(ref.header) if not isinstance(ref.header, fits.Header) else ref.header.copy()
    header.remove("FILTER", ignore_missing=True)
    header["COLORSPC"] = ("RGB" if luminance is None else "LRGB", "planes are R, G, B")
    for i, name in enumerate(("red", "green", "blue"), start=1):
        header[f"RGBSRC{i}"] = (str(inputs[name].header.get("FILTER", name)),
                                f"FILTER of the {name} plane's stack")
    out = CCDData(rgb.astype(np.float32), unit=ref.unit, header=header, wcs=ref.wcs,
                  mask=np.broadcast_to(bad, rgb.shape).copy() if bad.any() else None)
    info["masked_fraction"] = float(bad.mean())
    return out, info


def lupton_stretch(rgb, minimum, Q: float | None = None, stretch: float | None = None,
                   percentile_high: float = 99.75, asinh_a: float = 0.1) -> np.ndarray:
    """Lupton et al. (2004) colour-preserving arcsinh stretch of a planar RGB image.

    astropy's ``RGBImageMappingLupton`` (what ``make_lupton_rgb`` uses): each band minus its
    ``minimum``; intensity ``I = (R + G + B) / 3``; every band multiplied by ``f(I) / I``
    with ``f`` the ``LuptonAsinhStretch(stretch, Q)``, so hue is kept; pixels whose largest
    band exceeds 1 are scaled down as a whole (colour kept in saturated stars).

    Parameters
    ----------
    rgb : array_like
        ``(3, ny, nx)``, linear; NaN drawn black.
    minimum : float or sequence of 3 floats
        The value(s) mapped to black (one per band for an unlinked stretch).
    Q : float, optional
        asinh softening, > 0. None: chosen with ``stretch`` so that the intensity curve is
        astropy's ``AsinhStretch(a=asinh_a)`` of ``I / I_high`` (the grey 'asinh' display
        stretch), with ``I_high`` the ``percentile_high`` percentile of the intensity:
        ``Q = 10 sinh(0.1 asinh(1 / a))``, ``stretch = Q a I_high``.
    stretch : float, optional
        Linear range of ``LuptonAsinhStretch``. None: ``I_high`` maps to 1 (see ``Q``).
    percentile_high : float
        Percentile (0-100) of the intensity mapped to 1 when ``stretch`` is None.
    asinh_a : float
        See ``Q``.

    Returns
    -------
    numpy.ndarray
        float32 ``(3, ny, nx)`` in [0, 1].
    """
    from astropy.visualization import LuptonAsinhStretch, ManualInterval
    from astropy.visualization.lupton_rgb import RGBImageMappingLupton

    data = np.asarray(rgb, dtype=np.float64)
    mins = np.broadcast_to(np.asarray(minimum, dtype=np.float64), (3,))
    auto_q = Q is None
    if auto_q:
        Q = 10.0 * np.sinh(0.1 * np.arcsinh(1.0 / asinh_a))
    if stretch is None:
        intensity = (data - mins[:, None, None]).mean(axis=0)
        finite = intensity[np.isfinite(intensity)]
        top = float(np.percentile(finite, percentile_high)) if finite.size else 0.0
        top = top if top > 0 else 1.0
        # LuptonAsinhStretch is asinh(Q I / stretch) * 0.1 / asinh(0.1 Q): it reaches 1 at
        # I = stretch sinh(asinh(0.1 Q) / 0.1) / Q, which is I_high with these choices.
        stretch = Q * asinh_a * top if auto_q else Q * top / np.sinh(np.arcsinh(0.1 * Q) / 0.1)
    mapping = RGBImageMappingLupton([ManualInterval(vmin=m, vmax=None) for m in mins],
                                    LuptonAsinhStretch(stretch=stretch, Q=Q))
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # f(I)/I at I = 0: astropy's 0
        out = mapping.apply_mappings(data[0], data[1], data[2])
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).astype(np.float32)


def colour_stretch(rgb, method: str = "linked", *, stretch: str = "asinh",
                   percentile_low: float = 0.25,
                   percentile_high: float = 99.75, asinh_a: float = 0.1, Q: float | None = None,
                   mask=None) -> np.ndarray:
    """Display stretch of a planar RGB image to [0, 1], linked or unlinked.

    - ``'linked'``: one percentile interval over the three bands then ``stretch``
      (:func:`starloom.astro.stretch.stretch`): the image's colour balance is shown as is;
    - ``'unlinked'``: each band its own interval and ``stretch``, which neutralises the
      background and the overall colour cast (like an unlinked auto-stretch), at the cost of
      true colour ratios;
    - ``'lupton'``: :func:`lupton_stretch` (colour-preserving arcsinh, Lupton et al. 2004)
      with one black level for all bands, the ``percentile_low`` of all valid pixels;
    - ``'lupton_unlinked'``: the same with each band's own black level, its sky (the
      3-sigma-clipped median, ``astropy.stats.sigma_clipped_stats``): a coloured sky turns
      neutral black while everything above it keeps its colour (a grey star stays grey only
      if the bands are white-balanced; this does not replace PCC).

    Parameters
    ----------
    rgb : array_like
        ``(3, ny, nx)``.
    method : {'linked', 'unlinked', 'lupton', 'lupton_unlinked'}
    stretch : {'asinh', 'linear', 'zscale', 'histeq'}
        Per-band stretch of 'linked' and 'unlinked' (see :func:`starloom.astro.stretch.stretch`).
    percentile_low, percentile_high : float
        Percentiles (0-100) mapped to black and white ('lupton_unlinked': its black is the
        sky, see above).
    asinh_a : float
        ``a`` of astropy's AsinhStretch (for the Lupton methods: the same curve applied to the
        intensity, see :func:`lupton_stretch`).
    Q : float, optional
        Lupton's softening, for the Lupton methods; None: from ``asinh_a``.
    mask : array_like of bool, optional
        True for bad pixels, ``(ny, nx)`` or ``(3, ny, nx)``; drawn black.

    Returns
    -------
    numpy.ndarray
        float32 ``(3, ny, nx)`` in [0, 1].

    Raises
    ------
    StarloomError
        Unknown method, or data not ``(3, ny, nx)``.
    """
    data = np.asarray(np.ma.getdata(rgb), dtype=np.float64)
    if data.ndim != 3 or data.shape[0] != 3:
        raise StarloomError(f"a colour stretch needs planar RGB (3, ny, nx), got {data.shape}")
    if method not in COLOUR_STRETCHES:
        raise StarloomError(f"parameter 'colour': unknown colour stretch {method!r}; known: "
                            f"{', '.join(COLOUR_STRETCHES)}")
    bad = ~np.isfinite(data)
    if mask is not None:
        bad = bad | np.broadcast_to(np.asarray(mask, bool), data.shape)
    kw = dict(percentile_low=percentile_low, percentile_high=percentile_high, asinh_a=asinh_a)
    if method == "linked":
        return stretch_image(data, stretch, mask=bad, **kw)
    if method == "unlinked":
        return np.stack([stretch_image(data[i], stretch, mask=bad[i], **kw) for i in range(3)])
    good = [data[i][~bad[i]] for i in range(3)]
    if any(g.size == 0 for g in good):
        return np.zeros(data.shape, np.float32)
    if method == "lupton":
        minimum = float(np.percentile(np.concatenate(good), percentile_low))
    else:  # each band's sky (sigma-clipped median) is black: a coloured sky turns neutral
        from astropy.stats import sigma_clipped_stats

        minimum = [float(sigma_clipped_stats(g, sigma=3.0)[1]) for g in good]
    out = lupton_stretch(np.where(bad, np.nan, data), minimum, Q=Q,
                         percentile_high=percentile_high, asinh_a=asinh_a)
    out[bad] = 0.0
    return out
