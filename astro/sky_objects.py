"""Named objects in a field, offline: deep-sky objects from OpenNGC (as shipped by Debian's
``kstars-data``) and named bright stars from KStars' ``stars.dat``."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np

from .errors import StarloomError

OPENNGC_PATH = Path("/usr/share/kstars/OpenNGC.kscat")

# KStars' SkyObject::TYPE numbers used by the OpenNGC catalogue
OBJECT_TYPES = {3: "open cluster", 4: "globular cluster", 5: "nebula", 6: "planetary nebula",
                7: "supernova remnant", 8: "galaxy", 13: "asterism", 14: "galaxy cluster",
                17: "multiple star", 255: "other"}


def deep_sky_objects(center_ra: float, center_dec: float, radius_deg: float, *,
                     path: str | os.PathLike | None = None,
                     mag_limit: float | None = None):
    """OpenNGC objects (NGC, IC and Messier) within a cone.

    Parameters
    ----------
    center_ra, center_dec : float
        Cone centre, deg (ICRS, J2000).
    radius_deg : float
        Cone radius, deg.
    path : path-like, optional
        The KStars OpenNGC catalogue (SQLite, ``OpenNGC.kscat``); default the one of Debian's
        ``kstars-data`` (OpenNGC by M. Verga, CC-BY-SA-4.0).
    mag_limit : float, optional
        Keep objects brighter than this (objects without a magnitude are kept).

    Returns
    -------
    astropy.table.Table
        ``name`` (e.g. "M 94"), ``other_names``, ``type``, ``ra``, ``dec`` (deg), ``mag``,
        ``major_axis`` (arcmin), sorted by magnitude (unknown last).

    Raises
    ------
    StarloomError
        The catalogue file is missing or unreadable (the message says which package has it).
    """
    from astropy.table import Table

    p = Path(path) if path is not None else OPENNGC_PATH
    if not p.exists():
        raise StarloomError(f"{p}: OpenNGC catalogue not found; install the Debian package "
                            "'kstars-data' (apt-get install kstars-data)")
    # a box in Dec (and RA, unless near a pole) first, then the exact cone
    dra = 180.0 if abs(center_dec) + radius_deg >= 89 else radius_deg / np.cos(np.deg2rad(center_dec))
    try:
        with sqlite3.connect(f"file:{p}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT name, long_name, type, ra, dec, magnitude, major_axis FROM cat "
                "WHERE dec BETWEEN ? AND ?", (center_dec - radius_deg, center_dec + radius_deg)
            ).fetchall()
    except sqlite3.Error as e:
        raise StarloomError(f"{p}: cannot read the OpenNGC catalogue ({e})") from None
    t = Table(rows=rows or None, names=("name", "other_names", "type", "ra", "dec", "mag",
                                        "major_axis"),
              dtype=(str, str, int, float, float, float, float))
    if len(t):
        t["mag"] = np.array([np.nan if m is None else m for m in t["mag"]], float)
        wrap = (np.asarray(t["ra"]) - center_ra + 180.0) % 360.0 - 180.0
        t = t[np.abs(wrap) <= dra]
        ra, dec = np.deg2rad(t["ra"]), np.deg2rad(t["dec"])
        c0, d0 = np.deg2rad(center_ra), np.deg2rad(center_dec)
        cos_sep = np.sin(dec) * np.sin(d0) + np.cos(dec) * np.cos(d0) * np.cos(ra - c0)
        t = t[cos_sep >= np.cos(np.deg2rad(radius_deg))]
    types = [OBJECT_TYPES.get(int(v), "other") for v in t["type"]]
    t.replace_column("type", np.array(types, dtype=str) if types else np.array([], dtype=str))
    if mag_limit is not None:
        t = t[~(np.asarray(t["mag"]) > mag_limit)]
    t = t[np.argsort(np.where(np.isfinite(t["mag"]), t["mag"], np.inf), kind="stable")]
    t.meta.update(source="OpenNGC (kstars-data)", path=str(p))
    return t


def named_objects(wcs, shape, *, mag_limit: float | None = 16.0,
                  star_mag_limit: float = 6.0, openngc_path=None, stars_path=None):
    """Deep-sky objects (OpenNGC) and named bright stars (KStars stars.dat) inside an image.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the image.
    shape : (int, int)
        Image shape (ny, nx).
    mag_limit : float, optional
        Faintest deep-sky objects kept (objects without a magnitude are kept).
    star_mag_limit : float
        Faintest named stars kept.

    Returns
    -------
    astropy.table.Table
        ``name``, ``type``, ``ra``, ``dec`` (deg), ``mag``, ``x``, ``y`` (px), brightest first.
    """
    from astropy.table import Table, vstack

    from .catalogs import CatalogError, footprint_cone, load_catalog

    center, radius = footprint_cone(wcs, shape)
    ra0, dec0 = float(center.ra.deg), float(center.dec.deg)
    dso = deep_sky_objects(ra0, dec0, radius, path=openngc_path, mag_limit=mag_limit)
    parts = [Table({"name": dso["name"], "type": dso["type"], "ra": dso["ra"],
                    "dec": dso["dec"], "mag": dso["mag"]})]
    try:
        stars = load_catalog("kstars", (ra0, dec0), radius, mag_limit=star_mag_limit,
                             path=stars_path)
    except CatalogError:
        stars = Table(names=("name", "ra", "dec", "mag"), dtype=(str, float, float, float))
    stars = stars[[bool(str(n).strip()) for n in stars["name"]]] if len(stars) else stars
    if len(stars):
        parts.append(Table({"name": stars["name"], "type": ["star"] * len(stars),
                            "ra": stars["ra"], "dec": stars["dec"], "mag": stars["mag"]}))
    t = vstack([p for p in parts if len(p)]) if any(len(p) for p in parts) else parts[0]
    x, y = wcs.all_world2pix(np.asarray(t["ra"], float), np.asarray(t["dec"], float), 0)
    ny, nx = shape
    inside = np.isfinite(x) & np.isfinite(y) & (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    t["x"], t["y"] = x, y
    t = t[inside]
    return t[np.argsort(np.where(np.isfinite(t["mag"]), t["mag"], np.inf), kind="stable")]
