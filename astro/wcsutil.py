"""WCS of frames and headers: read, require, strip, replace; pixel scales, covering cones.

Helpers on astropy types for the astrometry nodes and notebooks: a frame's celestial WCS (from
``CCDData.wcs`` or, for frames built in memory, from WCS cards in its header), the cone that
contains the footprints of several frames, and the plane a star finder should look at.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from . import fits as fitsio
from .catalogs import footprint_cone
from .errors import StarloomError
from .frames import as_header


def mean_plane(ccd: CCDData) -> tuple[np.ndarray, np.ndarray | None]:
    """2-D float64 image for star finding (mean of the planes of RGB frames) and its mask."""
    data = np.asarray(ccd.data, dtype=np.float64)
    mask = None if ccd.mask is None else np.asarray(ccd.mask, dtype=bool)
    if data.ndim == 3:
        data = data.mean(axis=0)
        mask = None if mask is None else (mask.any(axis=0) if mask.ndim == 3 else mask)
    return data, mask


def celestial_wcs(ccd: CCDData) -> WCS | None:
    """The celestial WCS of a frame, or None.

    Falls back to WCS cards in the header, for frames built in memory whose WCS was never
    parsed into ``ccd.wcs``.
    """
    w = ccd.wcs if ccd.wcs is not None else header_wcs(as_header(ccd.meta))
    return w.celestial if w is not None and w.has_celestial else None


def header_wcs(header: fits.Header) -> WCS | None:
    """WCS of a header (its first two axes when the whole does not parse), or None."""
    if "CTYPE1" not in header:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        for naxis in (None, 2):
            try:
                return WCS(header, naxis=naxis, relax=True)
            except Exception:  # noqa: BLE001, S112  (astropy raises many types for odd headers)
                continue
    return None


def require_wcs(ccd: CCDData, name: str) -> WCS:
    w = celestial_wcs(ccd)
    if w is None:
        raise StarloomError(f"frame '{name}' has no celestial WCS; plate-solve it first "
                            "(astrometry.plate_solve)")
    return w


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Mean pixel scale of a celestial WCS, arcsec/px."""
    sx, sy = proj_plane_pixel_scales(wcs.celestial) * 3600.0
    return float(np.sqrt(sx * sy))


def frame_wcs(ref) -> tuple[WCS | None, tuple[int, int]]:
    """(celestial WCS or None, (ny, nx)) of a frame of a series, reading only its header."""
    if ref.data is not None or fitsio.is_picture(ref.path):
        ccd = ref.read()
        return celestial_wcs(ccd), tuple(ccd.shape[-2:])
    header = ref.header()
    w = header_wcs(header)
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    return (w.celestial if w is not None and w.has_celestial else None), shape


def wcs_shapes(value) -> list[tuple[str, WCS | None, tuple[int, int]]]:
    """(name, WCS or None, shape) of an Image or of every frame of a FrameSeries."""
    if isinstance(value, CCDData):
        return [("image", celestial_wcs(value), tuple(value.shape[-2:]))]
    return [(r.name, *frame_wcs(r)) for r in value.refs]


def covering_cone(pairs, margin_deg: float = 0.0) -> tuple[SkyCoord, float]:
    """Centre and radius (deg) of a cone containing the footprints of (WCS, shape) pairs."""
    cones = [footprint_cone(w, s) for w, s in pairs]
    x, y, z = np.sum([c.cartesian.xyz.value for c, _ in cones], axis=0)
    center = SkyCoord(np.degrees(np.arctan2(y, x)) % 360.0 * u.deg,
                      np.degrees(np.arctan2(z, np.hypot(x, y))) * u.deg, frame="icrs")
    radius = max(float(center.separation(c).deg) + r for c, r in cones)
    return center, radius + float(margin_deg)


_WCS_KEY = re.compile(r"^(WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|"
                      r"PV\d_\d+|PS\d_\d+|LONPOLE|LATPOLE|RADESYS[A-Z]?|RADECSYS|[AB]P?_\d+_\d+|"
                      r"[AB]P?_ORDER|[AB]_DMAX)$")


def strip_wcs(header: fits.Header) -> fits.Header:
    """Remove WCS cards (so a new WCS never mixes with stale SIP or CD cards); in place."""
    for key in {k for k in header if _WCS_KEY.match(k)}:
        header.remove(key, ignore_missing=True, remove_all=True)
    return header


def with_wcs(ccd: CCDData, wcs: WCS, cards: dict) -> CCDData:
    """A copy of ``ccd`` carrying ``wcs`` and header ``cards`` {key: (value, comment)}."""
    header = strip_wcs(as_header(ccd.meta).copy())
    for key, card in cards.items():
        header[key] = card
    return CCDData(ccd.data, unit=ccd.unit, mask=ccd.mask, uncertainty=ccd.uncertainty,
                   meta=header, wcs=wcs)


def rows_on_data(catalog: Table, wcs: WCS, data: np.ndarray) -> Table:
    """Catalogue rows falling on finite pixels of ``data`` (not on a co-add's empty corners)."""
    sky = SkyCoord(np.asarray(catalog["ra"], float) * u.deg, np.asarray(catalog["dec"], float) * u.deg)
    px, py = (np.rint(a) for a in wcs.world_to_pixel(sky))
    ny, nx = data.shape
    ok = np.isfinite(px) & np.isfinite(py) & (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
    ok[ok] = np.isfinite(data[py[ok].astype(int), px[ok].astype(int)])
    return catalog[ok]
