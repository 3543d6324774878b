"""Debayering: a CFA mosaic to planar RGB.

Interpolating methods are colour-demosaicing's (https://colour-demosaicing.readthedocs.io):
bilinear, Malvar, He and Cutler (2004) "High-quality linear interpolation for demosaicing of
Bayer-patterned color images" (ICASSP), and Menon, Andriani and Calvagno (2007) "Demosaicing
with directional filtering and a posteriori decision" (IEEE TIP 16). They run on float64 data,
so nothing is quantized. Super-pixel mode bins each 2x2 tile into one RGB pixel (R, mean of
the two greens, B), as Siril's "super pixel" debayer does, halving the size without
interpolating.
"""
from __future__ import annotations

import warnings

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from .cfa import cfa_pattern, subplanes
from .errors import StarloomError

__all__ = ["DEBAYER_METHODS", "debayer", "superpixel", "debayer_ccd"]

DEBAYER_METHODS = ("bilinear", "malvar2004", "menon2007", "superpixel")
# Half-width of each method's interpolation kernel: a bad pixel spoils this many neighbours.
_REACH = {"bilinear": 1, "malvar2004": 2, "menon2007": 3, "superpixel": 0}


def superpixel(data, pattern: str) -> np.ndarray:
    """Bin each 2x2 CFA tile into one RGB pixel: (R, (G1 + G2) / 2, B).

    Parameters
    ----------
    data : numpy.ndarray
        CFA mosaic ``(ny, nx)``; an odd last row or column is dropped.
    pattern : str
        Pattern relative to numpy ``[0, 0]``.

    Returns
    -------
    numpy.ndarray
        float32 ``(3, ny // 2, nx // 2)``.
    """
    data = np.asarray(data, dtype=np.float64)
    ny, nx = (data.shape[0] // 2) * 2, (data.shape[1] // 2) * 2
    planes = subplanes(data[:ny, :nx], pattern)
    return np.stack([planes["R"], (planes["G1"] + planes["G2"]) / 2, planes["B"]]).astype(np.float32)


def debayer(data, pattern: str, method: str = "malvar2004") -> np.ndarray:
    """Debayer a CFA mosaic into planar RGB.

    Parameters
    ----------
    data : array_like
        CFA mosaic ``(ny, nx)``, any real dtype and unit; must be finite (see
        :func:`debayer_ccd` for NaN and masked pixels).
    pattern : {'RGGB', 'GRBG', 'GBRG', 'BGGR'}
        Pattern relative to numpy ``[0, 0]`` (see :func:`starloom.astro.cfa.cfa_pattern`).
    method : {'bilinear', 'malvar2004', 'menon2007', 'superpixel'}
        colour-demosaicing's ``demosaicing_CFA_Bayer_bilinear``, ``_Malvar2004``,
        ``_Menon2007`` (with its refining step), or :func:`superpixel`.

    Returns
    -------
    numpy.ndarray
        float32 ``(3, ny, nx)`` (R, G, B planes), or ``(3, ny // 2, nx // 2)`` for
        'superpixel'. Values at a recorded site equal the input for 'bilinear' and
        'malvar2004'; the interpolating methods can overshoot slightly near sharp edges.

    Raises
    ------
    StarloomError
        If ``method`` or ``pattern`` is unknown or ``data`` is not 2-D.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2:
        raise StarloomError(f"debayer needs a 2-D CFA mosaic, got shape {data.shape}")
    if method == "superpixel":
        return superpixel(data, pattern)
    # imported where used: colour-demosaicing imports the colour package (~1 s); its 0.2.x
    # imports scipy.ndimage.filters, deprecated by SciPy: nothing a user can act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import colour_demosaicing as cd

    functions = {"bilinear": cd.demosaicing_CFA_Bayer_bilinear,
                 "malvar2004": cd.demosaicing_CFA_Bayer_Malvar2004,
                 "menon2007": cd.demosaicing_CFA_Bayer_Menon2007}
    if method not in functions:
        raise StarloomError(f"parameter 'method': unknown debayer method {method!r}; known: "
                            f"{', '.join(DEBAYER_METHODS)}")
    cfa_pattern({}, pattern)  # validates the pattern with a clear message
    rgb = functions[method](data, pattern.upper())
    return np.ascontiguousarray(np.moveaxis(rgb, -1, 0), dtype=np.float32)


def _fill_bad(data: np.ndarray, bad: np.ndarray, pattern: str) -> np.ndarray:
    """Bad pixels replaced by the median of their CFA sub-plane, so kernels stay finite."""
    filled = data.copy()
    for plane, plane_bad in zip(subplanes(filled, pattern).values(),
                                subplanes(bad, pattern).values()):
        good = plane[~plane_bad]
        plane[plane_bad] = np.median(good) if good.size else 0.0
    return filled


def binned_wcs(wcs, factor: int = 2):
    """The WCS of an image binned ``factor`` x ``factor`` from the origin, SIP included.

    Output pixel ``p`` (0-based) covers input pixels ``factor * p .. factor * p + factor - 1``,
    its centre at input ``factor * p + (factor - 1) / 2``; so (FITS 1-based)
    ``CRPIX' = (CRPIX - 1/2) / factor + 1/2`` and the CD matrix (or CDELT) is multiplied by
    ``factor``. A SIP term ``A_pq u^p v^q`` (Shupe et al. 2005, u, v in input pixels from
    CRPIX) becomes ``A_pq factor^(p+q-1)`` in output pixels, and the same for B, AP and BP.
    (astropy's ``wcs[::2, ::2]`` scales CDELT only, wrong when a CD matrix or SIP is present.)

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the unbinned image.
    factor : int
        Binning factor.

    Returns
    -------
    astropy.wcs.WCS
        A new WCS; the input is unchanged.
    """
    from astropy.wcs import Sip

    out = wcs.deepcopy()
    crpix = (np.asarray(wcs.wcs.crpix, float) - 0.5) / factor + 0.5
    out.wcs.crpix = crpix
    if wcs.wcs.has_cd():
        out.wcs.cd = np.asarray(wcs.wcs.cd) * factor
    else:
        out.wcs.cdelt = np.asarray(wcs.wcs.cdelt) * factor
    if wcs.sip is not None:
        def scaled(m):
            if m is None:
                return None
            p, q = np.indices(m.shape)
            return m * float(factor) ** (p + q - 1)
        sip = wcs.sip
        out.sip = Sip(scaled(sip.a), scaled(sip.b), scaled(sip.ap), scaled(sip.bp), crpix)
    if wcs.pixel_shape is not None:
        out.pixel_shape = tuple(n // factor for n in wcs.pixel_shape)
    out.wcs.set()
    return out


def debayer_ccd(ccd: CCDData, method: str = "malvar2004", pattern: str = "auto",
                name: str = "image") -> CCDData:
    """Debayer a CFA ``CCDData`` into a planar RGB ``CCDData``, keeping its WCS.

    NaN, infinite and masked pixels are replaced by their sub-plane's median before
    interpolation (colour-demosaicing's convolutions would spread NaN), then every output
    pixel whose kernel reached one (1 px for bilinear, 2 for Malvar, 3 for Menon) is masked
    in all three planes; pixels that were NaN stay NaN.

    Parameters
    ----------
    ccd : astropy.nddata.CCDData
        CFA mosaic ``(ny, nx)`` with ``BAYERPAT`` in its header (or ``pattern`` given).
    method : {'bilinear', 'malvar2004', 'menon2007', 'superpixel'}
        See :func:`debayer`.
    pattern : {'auto', 'RGGB', 'GRBG', 'GBRG', 'BGGR'}
        'auto': from the header (:func:`starloom.astro.cfa.cfa_pattern`: ``BAYERPAT``,
        ``ROWORDER``, ``XBAYROFF``/``YBAYROFF``); otherwise relative to numpy ``[0, 0]``.
    name : str
        The image's name, for messages.

    Returns
    -------
    astropy.nddata.CCDData
        float32 ``(3, ny, nx)`` (``(3, ny // 2, nx // 2)`` for superpixel, whose WCS is
        from :func:`binned_wcs`), same unit,
        header without ``BAYERPAT``/``XBAYROFF``/``YBAYROFF`` and with ``CFAPAT`` (the pattern
        used) and ``DEBAYER`` (the method). The uncertainty is dropped (interpolation
        correlates the noise; no per-pixel value would be honest); superpixel keeps the
        mask of any bad site of the tile.

    Raises
    ------
    StarloomError
        If the data is not 2-D (e.g. already RGB), or the pattern is unknown.
    """
    if ccd.data.ndim != 2:
        raise StarloomError(f"{name}: debayer needs a 2-D CFA mosaic, got shape "
                            f"{ccd.data.shape} (already debayered?)")
    pattern = cfa_pattern(ccd.header, pattern, shape=ccd.data.shape, name=name)
    data = np.asarray(ccd.data, dtype=np.float64)
    nonfinite = ~np.isfinite(data)
    bad = nonfinite | (np.asarray(ccd.mask, bool) if ccd.mask is not None else False)
    rgb = debayer(_fill_bad(data, bad, pattern) if bad.any() else data, pattern, method)
    wcs = ccd.wcs
    if method == "superpixel":
        ny, nx = rgb.shape[1:]
        bad = bad[:2 * ny, :2 * nx].reshape(ny, 2, nx, 2).any(axis=(1, 3))
        nonfinite = nonfinite[:2 * ny, :2 * nx].reshape(ny, 2, nx, 2).any(axis=(1, 3))
        wcs = binned_wcs(wcs, 2) if wcs is not None else None
    elif bad.any():
        from scipy.ndimage import binary_dilation  # imported where used (startup time)

        reach = _REACH[method]
        bad = binary_dilation(bad, np.ones((2 * reach + 1,) * 2, bool))
    rgb[:, nonfinite] = np.nan
    header = fits.Header(ccd.header) if not isinstance(ccd.header, fits.Header) else ccd.header.copy()
    for key in ("BAYERPAT", "COLORTYP", "XBAYROFF", "YBAYROFF"):
        header.remove(key, ignore_missing=True, remove_all=True)
    header["CFAPAT"] = (pattern, "CFA pattern debayered, from numpy [0, 0]")
    header["DEBAYER"] = (method, "debayer method (colour-demosaicing)")
    mask = np.broadcast_to(bad, rgb.shape).copy() if bad.any() else None
    return CCDData(rgb, unit=ccd.unit, header=header, wcs=wcs, mask=mask)
