"""Offline plate solving with astrometry.net's ``solve-field`` (Lang, Hogg, Mierle, Blanton &
Roweis 2010, AJ 139, 1782), TAN-SIP solutions (Shupe et al. 2005, ASP Conf. Ser. 347, 491).

astrometry.net's 1-based pixel convention is converted at the subprocess boundary only; every
pixel coordinate in and out of this module is 0-based.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import fit_wcs_from_points, proj_plane_pixel_scales

from .catalogs import (
    CatalogError,
    default_cache_dir,
    default_index_dirs,
    find_index_files,
    read_index_stars,
)
from .errors import ParamError, StarloomError
from .hints import parse_dec, parse_ra
from .stars import detect_stars
from .wcsfit import min_sip_pairs

#: Fields narrower than this (arcmin) take the small-field path when a position hint is given.
SMALL_FIELD_ARCMIN = 30.0


class PlateSolveError(StarloomError):
    """Plate solving failed: no solution within the time bound, or the solver is unavailable."""



@dataclass
class SolveResult:
    """Outcome of `plate_solve`.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        Solved celestial WCS (TAN-SIP when astrometry.net tweaked the fit), 0-based pixels via
        the astropy API; ``pixel_shape`` set to ``(nx, ny)``.
    n_matched : int
        Catalogue (index) stars matched to image stars (rows of astrometry.net's corr file).
    rms_arcsec : float
        RMS sky separation of the matched pairs under ``wcs``.
    pixel_scale_arcsec : float
        Mean pixel scale, arcsec/px (sqrt of the CD determinant).
    ra_deg, dec_deg : float
        Sky position of the image centre pixel.
    field_width_arcmin, field_height_arcmin : float
        Field size along x and y.
    rotation_deg : float or None
        astrometry.net's "up is N degrees E of N".
    parity : str or None
        ``'pos'`` or ``'neg'`` (astrometry.net).
    solve_time_s : float
        Wall time of the whole call (detection excluded, index building included).
    index : str
        Index file that solved the field.
    path : str
        ``'stock'`` (installed index series) or ``'small-field'`` (index built around the hint).
    matches : astropy.table.Table
        ``x``, ``y`` (0-based), ``ra``, ``dec`` (index star), ``sep_arcsec``.
    log_odds : float or None
        astrometry.net's log-odds of the accepted match.
    attempts : list of str
        What was tried, in order, with outcome and duration.
    index_cache_hit : bool or None
        Small-field path: True when the field indexes came from the on-disk cache.
    """

    wcs: WCS
    n_matched: int
    rms_arcsec: float
    pixel_scale_arcsec: float
    ra_deg: float
    dec_deg: float
    field_width_arcmin: float
    field_height_arcmin: float
    rotation_deg: float | None
    parity: str | None
    solve_time_s: float
    index: str
    path: str
    matches: Table
    log_odds: float | None = None
    attempts: list = field(default_factory=list)
    index_cache_hit: bool | None = None

    @property
    def center(self) -> SkyCoord:
        """Image centre as a SkyCoord (ICRS)."""
        return SkyCoord(self.ra_deg * u.deg, self.dec_deg * u.deg, frame="icrs")


def _star_list(obj, image_shape, detect_kwargs, max_stars):
    """Return (x, y, flux) arrays (0-based, brightest first) and the image shape."""
    if isinstance(obj, Table):
        if not {"x", "y"} <= set(obj.colnames):
            raise ParamError("data_or_star_table", f"star table needs columns x, y (has {obj.colnames})")
        if image_shape is None:
            raise ParamError("image_shape", "required when a star table is given")
        t = obj
        flux = np.asarray(t["flux"], dtype=float) if "flux" in t.colnames else np.arange(len(t), 0, -1.0)
        x, y = np.asarray(t["x"], dtype=float), np.asarray(t["y"], dtype=float)
    else:
        img = np.asarray(obj)
        if img.ndim != 2:
            raise ParamError(
                "data_or_star_table", f"expected a 2-D image or a star Table, got shape {img.shape}"
            )
        image_shape = img.shape
        t, _ = detect_stars(img, **(detect_kwargs or {}))
        x, y, flux = (np.asarray(t[c], dtype=float) for c in ("x", "y", "flux"))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux)
    x, y, flux = x[ok], y[ok], flux[ok]
    order = np.argsort(-flux, kind="stable")[: int(max_stars)]
    return x[order], y[order], flux[order], (int(image_shape[0]), int(image_shape[1]))


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


def _position_args(ra_deg, dec_deg, radius_deg) -> list[str]:
    """solve-field's position hint: search only within ``radius_deg`` of (ra, dec)."""
    return ["--ra", f"{ra_deg:.6f}", "--dec", f"{dec_deg:.6f}", "--radius", f"{float(radius_deg):.4f}"]


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run(cmd, timeout_s, cwd=None):
    """Run a command in its own process group; kill the whole group on timeout.

    Returns ``(returncode or None on timeout, combined output)``.
    """
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=max(0.1, timeout_s))
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        return None, out or ""
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise


def _quad_bands(min_dim_arcmin, diag_arcmin):
    """build-astrometry-index preset scale numbers P whose quad band overlaps the field.

    Preset P builds quads of 2*sqrt(2)**P .. 2*sqrt(2)**(P+1) arcmin (astrometry.net presets).
    Quads from 0.1 of the field's smaller side to its diagonal are useful.
    """
    lo, hi = 0.1 * min_dim_arcmin, diag_arcmin
    bands = [p for p in range(0, 20) if 2 * np.sqrt(2) ** (p + 1) >= lo and 2 * np.sqrt(2) ** p <= hi]
    return bands or [0]


#: build-astrometry-index presets built for the small-field path: quads of 2 to 45 arcmin.
FIELD_BANDS = tuple(range(0, 9))


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
    """
    exe = shutil.which("build-astrometry-index")
    if exe is None:
        raise PlateSolveError(
            "build-astrometry-index not found on PATH; install the Debian package "
            "'astrometry.net' (apt-get install astrometry.net)"
        )
    ra0 = round(float(ra_deg) / 0.05) * 0.05 % 360.0
    dec0 = float(np.clip(round(float(dec_deg) / 0.05) * 0.05, -90, 90))
    rad = float(np.ceil((float(radius_deg) + 0.05) / 0.25) * 0.25)
    stars = read_index_stars((ra0, dec0), rad, index_dirs=index_dirs)
    src = stars.meta.get("index_file", "")
    bands = sorted(set(int(b) for b in bands))
    key = json.dumps(
        [2, src, os.path.getmtime(src) if src else 0, f"{ra0:.2f}", f"{dec0:.2f}", f"{rad:.2f}", bands]
    )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / f"field-{hashlib.sha1(key.encode()).hexdigest()[:16]}"

    def load(folder):
        info = json.loads((folder / "manifest.json").read_text())
        files = {int(k): folder / v for k, v in info["indexes"].items()}
        return files if files and all(f.exists() for f in files.values()) else None

    if (final / "manifest.json").exists():
        files = load(final)
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
        Table(
            {
                "RA": np.asarray(stars["ra"]),
                "DEC": np.asarray(stars["dec"]),
                "MAG": np.asarray(stars["mag"], dtype=np.float32),
            }
        ).write(tmp / "stars.fits", format="fits")
        deadline = time.monotonic() + timeout_s
        built, logs = {}, []
        for p in bands:
            name = f"index-starloom-{p:02d}.fits"
            rc, out = _run(
                [exe, "-i", "stars.fits", "-o", name, "-P", p, "-S", "MAG", "-E", "-I", 7000 + p],
                deadline - time.monotonic(),
                cwd=tmp,
            )
            if rc == 0 and (tmp / name).exists():
                built[p] = name
            else:
                last = out.strip().splitlines()[-1] if out.strip() else f"rc={rc}"
                logs.append(f"P={p}: " + ("timed out" if rc is None else last))
        if not built:
            raise PlateSolveError(
                "build-astrometry-index built no index for the field "
                f"({len(stars)} stars): " + "; ".join(logs)
            )
        (tmp / "manifest.json").write_text(
            json.dumps(
                {
                    "indexes": {str(k): v for k, v in built.items()},
                    "n_stars": len(stars),
                    "center": [ra0, dec0],
                    "radius_deg": rad,
                    "skipped": logs,
                }
            )
        )
        try:
            os.replace(tmp, final)
        except OSError:  # another process built it meanwhile: use theirs when complete
            files = load(final) if (final / "manifest.json").exists() else None
            if files:
                shutil.rmtree(tmp, ignore_errors=True)
                return files, True
            return {k: tmp / v for k, v in built.items()}, False
        return {k: final / v for k, v in built.items()}, False
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_solution(workdir: Path, log: str, shape):
    """Build the WCS and the matched-star table from solve-field's outputs."""
    ny, nx = shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        hdr = fits.getheader(workdir / "field.wcs", 0)
        wcs = WCS(hdr, relax=True)
    wcs.pixel_shape = (nx, ny)
    corr_path = workdir / "field.corr"
    if corr_path.exists():
        corr = fits.getdata(corr_path, 1)
        x = np.asarray(corr["field_x"], dtype=float) - 1.0  # astrometry.net is 1-based
        y = np.asarray(corr["field_y"], dtype=float) - 1.0
        ra = np.asarray(corr["index_ra"], dtype=float)
        dec = np.asarray(corr["index_dec"], dtype=float)
    else:
        x = y = ra = dec = np.zeros(0)
    sky = wcs.pixel_to_world(x, y)
    sep = sky.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec if len(x) else np.zeros(0)
    matches = Table({"x": x, "y": y, "ra": ra, "dec": dec, "sep_arcsec": sep})
    m = re.search(r"solved with index (\S+?)\.?$", log, re.M)
    lo = re.findall(r"log-odds ratio ([-\d.eE+]+)", log)
    rot = re.search(r"up is ([-\d.]+) degrees E of N", log)
    par = re.search(r"Field parity: (\w+)", log)
    return (
        wcs,
        matches,
        (m.group(1) if m else "?"),
        (float(lo[-1]) if lo else None),
        (float(rot.group(1)) if rot else None),
        (par.group(1) if par else None),
    )


def plate_solve(
    data_or_star_table,
    *,
    image_shape=None,
    ra_hint=None,
    dec_hint=None,
    radius_deg: float | None = None,
    scale_low: float | None = None,
    scale_high: float | None = None,
    scale_units: str = "arcsecperpix",
    index_dirs: Sequence[str | os.PathLike] | None = None,
    timeout_s: float = 60,
    small_field: bool = True,
    cache_dir=None,
    hints: Mapping | None = None,
    max_stars: int = 300,
    tweak_order: int = 2,
    detect_kwargs: Mapping | None = None,
    odds_to_solve: float | None = None,
    min_matched: int = 5,
) -> SolveResult:
    """Plate-solve an image or a star list offline with astrometry.net's ``solve-field``.

    The stars (detected with `detect_stars` when an image is given) are written as an xylist
    (FITS table X, Y, FLUX in astrometry.net's 1-based pixels, brightest first) and solved with
    ``solve-field --no-plots --overwrite --crpix-center --tweak-order <n> --cpulimit <t>`` using
    the installed index files (Debian ``astrometry-data-tycho2``, series 4107-4119) or
    ``index_dirs``. With a position hint and a field narrower than ~30 arcmin (the stock
    Tycho-2 indexes hold no quads that small), the small-field path builds indexes from the
    Tycho-2 stars around the hint (`build_field_indexes`, cached on disk) and solves with them
    (``--odds-to-solve 1e6``, as the catalogue is sparse). When the field size is unknown both
    paths are tried, stock first. The whole call is bounded by ``timeout_s``: solver processes
    are killed (whole process group) when it runs out.

    Parameters
    ----------
    data_or_star_table : array_like (ny, nx) or astropy.table.Table
        Image, or a star table with ``x``, ``y`` (0-based) and preferably ``flux``.
    image_shape : (int, int), optional
        ``(ny, nx)``; required with a star table.
    ra_hint, dec_hint : float or str, optional
        Approximate field centre: degrees, or sexagesimal strings (RA in hours).
    radius_deg : float, optional
        Search radius around the hint: default 2 deg (stock path) and 1 deg (small-field path,
        where the built index covers this radius plus the field's half diagonal).
    scale_low, scale_high : float, optional
        Pixel-scale (or field-width) bounds in ``scale_units``.
    scale_units : str, optional
        solve-field units: ``'arcsecperpix'`` (default), ``'degwidth'``, ``'arcminwidth'``,
        ``'focalmm'``.
    index_dirs : sequence of path-like, optional
        Index directories (default `default_index_dirs`, i.e. ``/usr/share/astrometry``).
    timeout_s : float, optional
        Hard wall-time bound in seconds for all solver runs of this call.
    small_field : bool, optional
        Allow the small-field path (needs a position hint).
    cache_dir : path-like, optional
        Where small-field indexes are cached (default `default_cache_dir`).
    hints : mapping, optional
        Output of `hints_from_header`; fills hint/scale arguments left as None.
    max_stars : int, optional
        Brightest stars passed to the solver.
    tweak_order : int, optional
        SIP polynomial order of astrometry.net's tweak (0 disables SIP). When fewer stars are
        matched than a SIP fit of that order supports (9 for order 2, see `refine_wcs`), the
        matched pairs are refitted with ``fit_wcs_from_points`` at the highest supported degree
        or as pure TAN: a SIP tweak from a handful of stars extrapolates by tens of arcsec at
        the corners (measured on the Stargate frames, 8 matches).
    detect_kwargs : mapping, optional
        Passed to `detect_stars` when an image is given.
    odds_to_solve : float, optional
        Override astrometry.net's acceptance odds (default 1e9 stock, 1e6 small-field).
    min_matched : int, optional
        Solutions with fewer matched catalogue stars are rejected as unreliable.

    Returns
    -------
    SolveResult

    Raises
    ------
    PlateSolveError
        ``solve-field`` is not installed, no index files, too few stars, or no solution within
        ``timeout_s`` (the message lists every attempt and the bound).
    ParamError
        Bad arguments.
    """
    t_start = time.monotonic()
    hints = dict(hints or {})
    ra_hint = hints.get("ra_hint") if ra_hint is None else ra_hint
    dec_hint = hints.get("dec_hint") if dec_hint is None else dec_hint
    if scale_low is None and scale_high is None and "scale_low" in hints:
        scale_low, scale_high = hints.get("scale_low"), hints.get("scale_high")
        scale_units = hints.get("scale_units", scale_units)
    if (ra_hint is None) != (dec_hint is None):
        raise ParamError(
            "ra_hint" if ra_hint is None else "dec_hint", "give both ra_hint and dec_hint, or neither"
        )
    if ra_hint is not None:
        try:
            ra_hint, dec_hint = parse_ra(ra_hint) % 360.0, parse_dec(dec_hint)
        except (ValueError, TypeError) as exc:
            raise ParamError("ra_hint", f"cannot read the position hint ({exc})") from exc
    if not timeout_s or timeout_s <= 0:
        raise ParamError("timeout_s", f"must be > 0, got {timeout_s}")
    solver = shutil.which("solve-field")
    if solver is None:
        raise PlateSolveError(
            "solve-field not found on PATH; install astrometry.net "
            "(apt-get install astrometry.net astrometry-data-tycho2)"
        )

    x, y, flux, shape = _star_list(data_or_star_table, image_shape, detect_kwargs, max_stars)
    t_start = time.monotonic() if not isinstance(data_or_star_table, Table) else t_start
    ny, nx = shape
    if len(x) < 4:
        raise PlateSolveError(
            f"only {len(x)} stars available; plate solving needs at least 4 "
            "(lower threshold_sigma or check the image)"
        )
    s_lo = _scale_arcsec(scale_low, scale_units, nx)
    s_hi = _scale_arcsec(scale_high, scale_units, nx)
    if s_lo is not None and s_hi is None:
        s_hi = s_lo
    if s_hi is not None and s_lo is None:
        s_lo = s_hi
    # field width (arcmin) from the scale bounds: decides between the stock and small-field path
    if s_hi is None:
        is_small = None
    elif s_hi * max(nx, ny) / 60.0 < SMALL_FIELD_ARCMIN:
        is_small = True
    elif s_lo * max(nx, ny) / 60.0 >= SMALL_FIELD_ARCMIN:
        is_small = False
    else:
        is_small = None
    if ra_hint is None or not small_field or is_small is False:
        plan = ["stock"]
    else:
        plan = ["small-field", "stock"] if is_small else ["stock", "small-field"]
    stock = find_index_files(index_dirs)
    if not stock:  # both paths need them (the small-field path reads its stars from them)
        where = (
            ", ".join(map(str, index_dirs))
            if index_dirs
            else ", ".join(str(d) for d in (default_index_dirs() or ["/usr/share/astrometry"]))
        )
        raise PlateSolveError(
            f"no astrometry.net index files found in {where}; install the Debian "
            "package astrometry-data-tycho2 or pass index_dirs"
        )
    deadline = t_start + float(timeout_s)
    attempts: list[str] = []
    common_scale = []
    if scale_low is not None or scale_high is not None:
        lo = scale_low if scale_low is not None else scale_high
        hi = scale_high if scale_high is not None else scale_low
        common_scale = [
            "--scale-low",
            f"{float(lo):.6g}",
            "--scale-high",
            f"{float(hi):.6g}",
            "--scale-units",
            scale_units,
        ]

    with tempfile.TemporaryDirectory(prefix="starloom-solve-") as td:
        work = Path(td)
        Table(
            {
                "X": (x + 1.0).astype(np.float64),
                "Y": (y + 1.0).astype(np.float64),
                "FLUX": flux.astype(np.float64),
            }
        ).write(work / "field.xyls", format="fits")
        for kind in plan:
            left = deadline - time.monotonic()
            if left < 0.5:
                attempts.append(f"{kind}: skipped, time bound used up")
                continue
            t0 = time.monotonic()
            cache_hit = None
            if kind == "stock":
                indexes = stock
                extra = []
                if ra_hint is not None:
                    extra = _position_args(ra_hint, dec_hint,
                                           radius_deg if radius_deg is not None else 2.0)
                if odds_to_solve is not None:
                    extra += ["--odds-to-solve", f"{odds_to_solve:g}"]
            else:
                if s_lo is not None:
                    min_dim = s_lo * min(nx, ny) / 60.0
                    diag = s_hi * float(np.hypot(nx, ny)) / 60.0
                else:  # unknown scale: every band of a field narrower than SMALL_FIELD_ARCMIN
                    min_dim, diag = 2.0, SMALL_FIELD_ARCMIN * 1.25
                rad = float(radius_deg if radius_deg is not None else 1.0)
                try:
                    built, cache_hit = build_field_indexes(
                        ra_hint,
                        dec_hint,
                        rad + diag / 120.0,
                        cache_dir=cache_dir,
                        index_dirs=index_dirs,
                        timeout_s=left,
                    )
                except (PlateSolveError, CatalogError) as exc:
                    attempts.append(f"small-field: index build failed ({exc})")
                    continue
                indexes = [built[b] for b in _quad_bands(min_dim, diag) if b in built]
                if not indexes:
                    attempts.append(
                        f"small-field: no index of the needed quad sizes could be built "
                        f"(built presets {sorted(built)})"
                    )
                    continue
                extra = _position_args(ra_hint, dec_hint, rad) + [
                    "--odds-to-solve",
                    f"{(odds_to_solve or 1e6):g}",
                ]
            left = deadline - time.monotonic()
            if left < 0.5:
                attempts.append(f"{kind}: no time left after preparing indexes")
                continue
            cfg = work / f"{kind}.cfg"
            cfg.write_text(
                f"cpulimit {max(1, int(left))}\n" + "".join(f"index {Path(p).resolve()}\n" for p in indexes)
            )
            out_dir = work / kind
            out_dir.mkdir(exist_ok=True)
            cmd = [
                solver,
                work / "field.xyls",
                "--width",
                nx,
                "--height",
                ny,
                "--x-column",
                "X",
                "--y-column",
                "Y",
                "--sort-column",
                "FLUX",
                "--no-plots",
                "--overwrite",
                "--crpix-center",
                *(["--tweak-order", int(tweak_order)] if tweak_order else ["--no-tweak"]),
                "--cpulimit",
                max(1, int(left)),
                "--config",
                cfg,
                "--dir",
                out_dir,
                "--out",
                "field",
                "--new-fits",
                "none",
                "--index-xyls",
                "none",
                "--rdls",
                "none",
                "--match",
                "none",
                "--temp-dir",
                work,
                *common_scale,
                *extra,
            ]
            rc, log = _run(cmd, left, cwd=work)
            dt = time.monotonic() - t0
            if rc is None:
                attempts.append(f"{kind} ({len(indexes)} indexes): killed at the time bound after {dt:.1f} s")
                continue
            if not (out_dir / "field.solved").exists() or not (out_dir / "field.wcs").exists():
                tail = " ".join(log.strip().splitlines()[-1:]) if rc else "no solution"
                attempts.append(f"{kind} ({len(indexes)} indexes): no solution in {dt:.1f} s ({tail})")
                continue
            wcs, matches, index, log_odds, rot, parity = _read_solution(out_dir, log, shape)
            if len(matches) < min_matched:
                attempts.append(
                    f"{kind}: rejected a solution with only {len(matches)} matched stars "
                    f"(min_matched={min_matched})"
                )
                continue
            attempts.append(f"{kind} ({len(indexes)} indexes): solved with {index} in {dt:.1f} s")
            if wcs.sip is not None and len(matches) < min_sip_pairs(tweak_order):
                # too few matches for the SIP tweak (it extrapolates wildly at the corners):
                # refit the matched pairs with the highest SIP degree they support, else TAN
                degree = max(
                    [d for d in range(2, int(tweak_order) + 1) if len(matches) >= min_sip_pairs(d)] or [0]
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", (FITSFixedWarning, AstropyUserWarning))
                    wcs = fit_wcs_from_points(
                        (np.asarray(matches["x"]), np.asarray(matches["y"])),
                        SkyCoord(matches["ra"] * u.deg, matches["dec"] * u.deg),
                        projection="TAN",
                        sip_degree=degree or None,
                    )
                wcs.pixel_shape = (nx, ny)
                sky = wcs.pixel_to_world(np.asarray(matches["x"]), np.asarray(matches["y"]))
                matches["sep_arcsec"] = sky.separation(
                    SkyCoord(matches["ra"] * u.deg, matches["dec"] * u.deg)
                ).arcsec
                attempts.append(
                    f"SIP order {tweak_order} needs >= {min_sip_pairs(tweak_order)} matches, got "
                    f"{len(matches)}: refitted the matches as "
                    + (f"TAN-SIP degree {degree}" if degree else "TAN")
                )
            scales = proj_plane_pixel_scales(wcs.celestial) * 3600.0
            center = wcs.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
            rms = float(np.sqrt(np.mean(matches["sep_arcsec"] ** 2))) if len(matches) else float("nan")
            return SolveResult(
                wcs=wcs,
                n_matched=len(matches),
                rms_arcsec=rms,
                pixel_scale_arcsec=float(np.sqrt(scales[0] * scales[1])),
                ra_deg=float(center.icrs.ra.deg),
                dec_deg=float(center.icrs.dec.deg),
                field_width_arcmin=float(nx * scales[0] / 60.0),
                field_height_arcmin=float(ny * scales[1] / 60.0),
                rotation_deg=rot,
                parity=parity,
                solve_time_s=time.monotonic() - t_start,
                index=index,
                path=kind,
                matches=matches,
                log_odds=log_odds,
                attempts=attempts,
                index_cache_hit=cache_hit,
            )
    hint = (
        f"hint RA {ra_hint:.4f}, Dec {dec_hint:.4f} deg"
        if ra_hint is not None
        else "no position hint (blind)"
    )
    scale_txt = f"scale {s_lo:.3g}-{s_hi:.3g} arcsec/px" if s_lo else "no scale hint"
    raise PlateSolveError(
        f"no plate solution within the time bound of {float(timeout_s):g} s (used "
        f"{time.monotonic() - t_start:.1f} s; {len(x)} stars, "
        f"{nx}x{ny} px, {hint}, {scale_txt}). Tried: "
        + "; ".join(attempts)
        + ". Give a position hint (RA/Dec) and pixel scale, raise timeout_s, or check the star list."
    )


