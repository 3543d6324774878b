"""Plate-solving hints read from FITS headers: position, pixel scale, field size."""

from __future__ import annotations


import numpy as np
from astropy import units as u
from astropy.coordinates import Angle

def _parse_angle(value, unit) -> float:
    """Degrees from a number (degrees) or a sexagesimal string in ``unit`` (hourangle for RA)."""
    if isinstance(value, (int, float, np.floating, np.integer)):
        return float(value)
    s = str(value).strip()
    try:
        return float(s)
    except ValueError:
        return float(Angle(s.replace(" ", ":") if " " in s and ":" not in s else s, unit=unit).deg)


def parse_ra(value) -> float:
    """RA in degrees from a number (degrees) or a sexagesimal string (hours)."""
    return _parse_angle(value, u.hourangle)


def parse_dec(value) -> float:
    """Dec in degrees from a number or a sexagesimal string (degrees)."""
    return _parse_angle(value, u.deg)


def hints_from_header(header) -> dict:
    """Position and pixel-scale hints for `plate_solve` from a FITS header.

    Position, first found wins: ``CRVAL1``/``CRVAL2`` (when ``CTYPE1`` is RA-like or absent),
    ``RA``/``DEC`` (numbers in degrees, strings sexagesimal: RA in hours, Dec in degrees),
    ``OBJCTRA``/``OBJCTDEC`` (sexagesimal, RA in hours). Pixel scale: 206.265 * pixel size (um)
    / ``FOCALLEN`` (mm), pixel size from ``XPIXSZ``/``YPIXSZ`` (already binned, SBIG/MaxIm/INDI
    convention; the geometric mean of x and y) or ``PIXSIZE1``/``PIXSIZE2`` times
    ``XBINNING``/``YBINNING``; else ``SCALE``, ``PIXSCALE`` or ``SECPIX1`` (arcsec/px).

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping

    Returns
    -------
    dict
        Only the keys found: ``ra_hint``, ``dec_hint`` (deg), ``pixel_scale_arcsec``,
        ``scale_low``/``scale_high`` (+-10 %, arcsec/px) and ``scale_units``
        (``'arcsecperpix'``), and ``sources`` naming the keywords used. Pass it as
        ``plate_solve(..., hints=...)``.
    """
    get = _header_getter(header)
    out: dict = {}
    sources: dict = {}
    position = _position_hint(get)
    if position is not None:
        out["ra_hint"], out["dec_hint"], sources["position"] = position
    scale, sources_scale = _pixel_scale_hint(get)
    if sources_scale is not None:
        sources["scale"] = sources_scale
    if scale is not None and np.isfinite(scale) and scale > 0:
        out.update(
            pixel_scale_arcsec=float(scale),
            scale_low=0.9 * scale,
            scale_high=1.1 * scale,
            scale_units="arcsecperpix",
        )
    out["sources"] = sources
    return out


def _header_getter(h):
    """``get(key)``: the header value, None when absent, blank or unreadable."""

    def get(key):
        try:
            v = h.get(key)
        except Exception:  # noqa: BLE001  (odd header objects)
            return None
        return None if v is None or (isinstance(v, str) and not v.strip()) else v

    return get


def _position_hint(get):
    """``(ra, dec, 'KEY1/KEY2')`` from the first keyword pair that reads as a sky position."""
    ctype = str(get("CTYPE1") or "RA")
    pairs = []
    if ctype.upper().startswith("RA"):
        pairs.append(("CRVAL1", "CRVAL2"))
    pairs += [("RA", "DEC"), ("OBJCTRA", "OBJCTDEC")]
    for kra, kdec in pairs:
        vra, vdec = get(kra), get(kdec)
        if vra is None or vdec is None:
            continue
        try:
            if kra == "OBJCTRA":
                ra = float(Angle(str(vra).strip().replace(" ", ":"), unit=u.hourangle).deg)
                dec = float(Angle(str(vdec).strip().replace(" ", ":"), unit=u.deg).deg)
            else:
                ra, dec = parse_ra(vra), parse_dec(vdec)
        except (ValueError, TypeError):
            continue
        if 0 <= ra < 360 and -90 <= dec <= 90:
            return ra % 360.0, dec, f"{kra}/{kdec}"
    return None


def _pixel_scale_hint(get):
    """``(arcsec/px, source)``: from focal length and pixel size, else a scale keyword.

    The source is set whenever a value was read, even one that is not a usable scale.
    """
    scale, source = None, None
    focal = get("FOCALLEN")
    try:
        focal = float(focal) if focal is not None else None
    except (TypeError, ValueError):
        focal = None
    if focal and focal > 0:
        px, py = get("XPIXSZ"), get("YPIXSZ")
        binned = True
        if px is None:
            px, py, binned = get("PIXSIZE1"), get("PIXSIZE2"), False
        try:
            if px is not None:
                px = float(px)
                py = float(py) if py is not None else px
                if not binned:
                    px *= float(get("XBINNING") or 1)
                    py *= float(get("YBINNING") or 1)
                scale = float(206.264806 * np.sqrt(px * py) / focal)
                source = "FOCALLEN+" + ("XPIXSZ" if binned else "PIXSIZE1*XBINNING")
        except (TypeError, ValueError):
            scale = None
    if scale is None:
        for key in ("SCALE", "PIXSCALE", "SECPIX1"):
            v = get(key)
            try:
                if v is not None and float(v) > 0:
                    scale, source = float(v), key
                    break
            except (TypeError, ValueError):
                continue
    return scale, source


def _scale_arcsec(value, units, nx):
    """Convert a solve-field scale bound to arcsec/px when possible (None otherwise)."""
    if value is None:
        return None
    units = (units or "arcsecperpix").lower()
    v = float(value)
    if units in ("arcsecperpix", "app"):
        return v
    if units in ("degwidth", "degw", "dw"):
        return v * 3600.0 / nx
    if units in ("arcminwidth", "amw", "aw"):
        return v * 60.0 / nx
    return None


def scale_bounds_arcsec(scale_low, scale_high, scale_units, nx):
    """Pixel-scale bounds in arcsec/px from solve-field style bounds.

    Parameters
    ----------
    scale_low, scale_high : float or None
        Bounds in ``scale_units``; a single bound is used for both.
    scale_units : str
        ``'arcsecperpix'``, ``'degwidth'`` or ``'arcminwidth'`` (others, e.g. ``'focalmm'``,
        cannot be converted without the pixel size).
    nx : int
        Image width (px), for the width units.

    Returns
    -------
    (float or None, float or None)
        ``(low, high)`` in arcsec/px; ``(None, None)`` when unknown or not convertible.
    """
    s_lo = _scale_arcsec(scale_low, scale_units, nx)
    s_hi = _scale_arcsec(scale_high, scale_units, nx)
    if s_lo is not None and s_hi is None:
        s_hi = s_lo
    if s_hi is not None and s_lo is None:
        s_lo = s_hi
    return s_lo, s_hi


def scale_args(scale_low, scale_high, scale_units) -> list:
    """solve-field's scale arguments (``--scale-low/--scale-high/--scale-units``).

    Given in the caller's units, which may be ones Starloom cannot convert; an empty list when
    neither bound is given, a single bound used for both.
    """
    if scale_low is None and scale_high is None:
        return []
    lo = scale_low if scale_low is not None else scale_high
    hi = scale_high if scale_high is not None else scale_low
    return [
        "--scale-low",
        f"{float(lo):.6g}",
        "--scale-high",
        f"{float(hi):.6g}",
        "--scale-units",
        scale_units,
    ]
