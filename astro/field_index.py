"""astrometry.net indexes for one small sky region, built from the installed Tycho-2 indexes.

The stock Tycho-2 index series (4107-4119) holds no quads small enough for fields narrower
than about 30 arcmin; ``build-astrometry-index`` (Lang et al. 2010, AJ 139, 1782) builds them
from the catalogue stars around a position hint. Builds are cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.table import Table

from .astrometry_net import PlateSolveError, run_bounded
from .catalogs import default_cache_dir, read_index_stars

#: build-astrometry-index presets built for the small-field path: quads of 2 to 45 arcmin.
FIELD_BANDS = tuple(range(0, 9))

#: Field indexes are built around the hint snapped to this grid (deg), with the star cone
#: radius rounded up to a multiple of ``_RADIUS_STEP_DEG``: nearby hints reuse one build.
_CENTER_GRID_DEG = 0.05
_RADIUS_STEP_DEG = 0.25


def quad_bands(min_dim_arcmin, diag_arcmin):
    """build-astrometry-index preset scale numbers P whose quad band overlaps the field.

    Preset P builds quads of 2*sqrt(2)**P .. 2*sqrt(2)**(P+1) arcmin (astrometry.net presets).
    Quads from 0.1 of the field's smaller side to its diagonal are useful.

    Parameters
    ----------
    min_dim_arcmin, diag_arcmin : float
        Smaller side and diagonal of the field (arcmin).

    Returns
    -------
    list of int
        Presets in increasing order; ``[0]`` when none overlaps.
    """
    lo, hi = 0.1 * min_dim_arcmin, diag_arcmin
    bands = [p for p in range(0, 20) if 2 * np.sqrt(2) ** (p + 1) >= lo and 2 * np.sqrt(2) ** p <= hi]
    return bands or [0]


def build_field_indexes(
    ra_deg: float,
    dec_deg: float,
    radius_deg: float,
    *,
    bands: Sequence[int] = FIELD_BANDS,
    cache_dir=None,
    index_dirs=None,
    timeout_s: float = 60.0,
) -> tuple[dict, bool]:
    """Build (or fetch from cache) astrometry.net indexes for one small sky region.

    Tycho-2 stars around the (snapped) centre are read from the installed index files
    (`read_index_stars`) and written as a FITS table (RA, DEC, MAG) from which
    ``build-astrometry-index -P <band> -S MAG -E -I <id>`` builds one index per preset in
    ``bands`` (preset P holds quads of 2*sqrt(2)**P to 2*sqrt(2)**(P+1) arcmin; bands where the
    catalogue is too sparse to form quads are skipped). The set is cached under
    ``cache_dir/field-<hash>``: the centre is snapped to a 0.05 deg grid and the radius rounded
    up to 0.25 deg, so nearby hints and different scale hints reuse the same build.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Region centre (deg).
    radius_deg : float
        Minimum star cone radius (deg).
    bands : sequence of int, optional
        build-astrometry-index presets ``-P``; default `FIELD_BANDS` (0..8).
    cache_dir : path-like, optional
        Default `default_cache_dir`.
    index_dirs : sequence of path-like, optional
        Where the source Tycho-2 index files are.
    timeout_s : float
        Time bound for all builds together.

    Returns
    -------
    (dict, bool)
        ``{preset: index path}`` of the bands that could be built, and whether the set came
        from the cache.

    Raises
    ------
    PlateSolveError
        ``build-astrometry-index`` missing, too few catalogue stars, or no index could be built.
    CatalogError
        No Tycho-2 index files to read the stars from.
    """
    exe = shutil.which("build-astrometry-index")
    if exe is None:
        raise PlateSolveError(
            "build-astrometry-index not found on PATH; install the Debian package "
            "'astrometry.net' (apt-get install astrometry.net)"
        )
    ra0, dec0, rad = _snapped_region(ra_deg, dec_deg, radius_deg)
    stars = read_index_stars((ra0, dec0), rad, index_dirs=index_dirs)
    bands = sorted(set(int(b) for b in bands))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / _cache_name(stars.meta.get("index_file", ""), ra0, dec0, rad, bands)
    if (final / "manifest.json").exists():
        files = _load_manifest(final)
        if files:
            return files, True
    if len(stars) < 4:
        raise PlateSolveError(
            f"only {len(stars)} catalogue stars within {rad:.2f} deg of "
            f"({ra0:.2f}, {dec0:.2f}); cannot build a field index"
        )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        _write_star_table(tmp / "stars.fits", stars)
        built, logs = _build_bands(exe, tmp, bands, time.monotonic() + timeout_s)
        if not built:
            raise PlateSolveError(
                "build-astrometry-index built no index for the field "
                f"({len(stars)} stars): " + "; ".join(logs)
            )
        _write_manifest(tmp, built, len(stars), ra0, dec0, rad, logs)
        return _publish(tmp, final, built)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _snapped_region(ra_deg, dec_deg, radius_deg):
    """Centre snapped to the cache grid and radius (with 0.05 deg to spare) rounded up, in deg."""
    ra0 = round(float(ra_deg) / _CENTER_GRID_DEG) * _CENTER_GRID_DEG % 360.0
    dec0 = float(np.clip(round(float(dec_deg) / _CENTER_GRID_DEG) * _CENTER_GRID_DEG, -90, 90))
    rad = float(np.ceil((float(radius_deg) + 0.05) / _RADIUS_STEP_DEG) * _RADIUS_STEP_DEG)
    return ra0, dec0, rad


def _cache_name(src, ra0, dec0, rad, bands) -> str:
    """Cache folder name: a hash of the source index file (path and mtime), region and presets."""
    key = json.dumps(
        [2, src, os.path.getmtime(src) if src else 0, f"{ra0:.2f}", f"{dec0:.2f}", f"{rad:.2f}", bands]
    )
    return f"field-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def _load_manifest(folder: Path):
    """``{preset: index path}`` of a finished build, or None when an index file is missing."""
    info = json.loads((folder / "manifest.json").read_text())
    files = {int(k): folder / v for k, v in info["indexes"].items()}
    return files if files and all(f.exists() for f in files.values()) else None


def _write_star_table(path: Path, stars: Table) -> None:
    """The catalogue stars as build-astrometry-index reads them: RA, DEC (deg), MAG."""
    Table(
        {
            "RA": np.asarray(stars["ra"]),
            "DEC": np.asarray(stars["dec"]),
            "MAG": np.asarray(stars["mag"], dtype=np.float32),
        }
    ).write(path, format="fits")


def _build_bands(exe, folder: Path, bands, deadline: float):
    """Run build-astrometry-index once per preset in ``folder``, all within ``deadline``.

    Returns ``({preset: index file name}, [reason per preset that was not built])``.
    """
    built, logs = {}, []
    for p in bands:
        name = f"index-starloom-{p:02d}.fits"
        rc, out = run_bounded(
            [exe, "-i", "stars.fits", "-o", name, "-P", p, "-S", "MAG", "-E", "-I", 7000 + p],
            deadline - time.monotonic(),
            cwd=folder,
        )
        if rc == 0 and (folder / name).exists():
            built[p] = name
        else:
            last = out.strip().splitlines()[-1] if out.strip() else f"rc={rc}"
            logs.append(f"P={p}: " + ("timed out" if rc is None else last))
    return built, logs


def _write_manifest(folder: Path, built, n_stars, ra0, dec0, rad, skipped) -> None:
    """Record the build; its presence marks the folder as complete."""
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "indexes": {str(k): v for k, v in built.items()},
                "n_stars": n_stars,
                "center": [ra0, dec0],
                "radius_deg": rad,
                "skipped": skipped,
            }
        )
    )


def _publish(tmp: Path, final: Path, built):
    """Move a finished build into its cache folder; returns ``(files, from_cache)``.

    The rename is atomic, so that concurrent solves never see a half-built folder.
    """
    try:
        os.replace(tmp, final)
    except OSError:  # another process built it meanwhile: use theirs when complete
        files = _load_manifest(final) if (final / "manifest.json").exists() else None
        if files:
            shutil.rmtree(tmp, ignore_errors=True)
            return files, True
        return {k: tmp / v for k, v in built.items()}, False
    return {k: final / v for k, v in built.items()}, False
