"""Offline plate solving with astrometry.net's ``solve-field`` (Lang, Hogg, Mierle, Blanton &
Roweis 2010, AJ 139, 1782), TAN-SIP solutions (Shupe et al. 2005, ASP Conf. Ser. 347, 491).

This module decides what to try and judges the outcome; running astrometry.net's programs and
reading their files is `starloom.astro.astrometry_net`, building indexes for small fields
`starloom.astro.field_index`. astrometry.net's 1-based pixel convention is converted at that
subprocess boundary only; every pixel coordinate in and out of this module is 0-based.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import fit_wcs_from_points, proj_plane_pixel_scales

from .astrometry_net import (PlateSolveError, extract_sources, has_solution,
                             position_args, read_solution, solve_field, write_xylist)
from .catalogs import CatalogError, default_index_dirs, find_index_files
from .errors import ParamError
from .field_index import build_field_indexes, quad_bands
from .hints import parse_dec, parse_ra, scale_args, scale_bounds_arcsec
from .stars import detect_stars
from .wcsfit import min_sip_pairs

#: Fields narrower than this (arcmin) take the small-field path when a position hint is given.
SMALL_FIELD_ARCMIN = 30.0

#: A hinted search of unknown scale that fails is followed by a search of fields wider than
#: about this (deg, longer side) anywhere on the sky (``'wide'``).
WIDE_FIELD_DEG = 5.0

#: Brightest sources searched by the ``'wide'`` attempt (large quads are made of bright
#: stars), and its share of the time when it comes first (a blind solve).
WIDE_OBJS, WIDE_FIRST_SHARE = 150, 0.15


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
    sip_degree: int = 2,
    detect_kwargs: Mapping | None = None,
    odds_to_solve: float | None = None,
    min_matched: int = 5,
    image=None,
) -> SolveResult:
    """Plate-solve an image or a star list offline with astrometry.net's ``solve-field``.

    The stars (detected with `detect_stars` when an image is given) are written as an xylist
    (FITS table X, Y, FLUX in astrometry.net's 1-based pixels, brightest first) and solved with
    ``solve-field --no-plots --overwrite --crpix-center --tweak-order <sip_degree> --cpulimit
    <t>`` using the installed index files (Debian ``astrometry-data-tycho2``, series
    4107-4119) or ``index_dirs``. With a position hint and a field narrower than ~30 arcmin
    (the stock Tycho-2 indexes hold no quads that small), the small-field path builds indexes
    from the Tycho-2 stars around the hint (`build_field_indexes`, cached on disk) and solves
    with them (``--odds-to-solve 1e6``, as the catalogue is sparse). When the field size is
    unknown both paths are tried, stock first. The whole call is bounded by ``timeout_s``:
    solver processes are killed (whole process group) when it runs out.

    When the pixels are known (an image, or ``image`` with a star table), the stock path also
    tries the sources astrometry.net's own extractor finds (``image2xy``, what plain
    ``solve-field`` uses, `extract_sources`): it keeps the elongated and blended stars of
    wide-angle fields that DAOFIND's shape bounds reject. The DAOFIND list goes first (with
    half the time left when the other follows); the small-field path uses only the DAOFIND
    list, whose hot-pixel rejection it needs. A position hint restricts the stock
    search to quads centred within ``radius_deg`` plus the field's half diagonal of the hint
    (astrometry.net checks the centre of the matched quad, which lies anywhere in a wide
    field); without a scale hint the hinted search keeps the radius and a last attempt
    (``'wide'``) searches wide fields anywhere.

    Parameters
    ----------
    data_or_star_table : array_like (ny, nx) or astropy.table.Table
        Image, or a star table with ``x``, ``y`` (0-based) and preferably ``flux``.
    image_shape : (int, int), optional
        ``(ny, nx)``; required with a star table.
    ra_hint, dec_hint : float or str, optional
        Approximate field centre: degrees, or sexagesimal strings (RA in hours).
    radius_deg : float, optional
        Search radius around the hint: default 2 deg (stock path, plus the field's half
        diagonal when the scale is known) and 1 deg (small-field path, index built to match).
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
        Brightest stars of the given (or DAOFIND) list passed to the solver; the image2xy list
        is passed whole, as plain solve-field does.
    sip_degree : int, optional
        Degree of the SIP distortion polynomial fitted by astrometry.net's tweak step, which
        astrometry.net calls the tweak order (``--tweak-order``; 0 disables SIP:
        ``--no-tweak``). When fewer stars are matched than a SIP fit of that degree supports
        (9 for degree 2, see `refine_wcs`), the matched pairs are refitted with
        ``fit_wcs_from_points`` at the highest supported degree or as pure TAN: a SIP tweak
        from a handful of stars extrapolates by tens of arcsec at the corners (measured on the
        Stargate frames, 8 matches).
    detect_kwargs : mapping, optional
        Passed to `detect_stars` when an image is given.
    odds_to_solve : float, optional
        Override astrometry.net's acceptance odds (default 1e9 stock, 1e6 small-field).
    min_matched : int, optional
        Solutions with fewer matched catalogue stars are rejected as unreliable.
    image : array_like (ny, nx), optional
        The pixels of the frame a star table was measured on, for the ``image2xy`` source
        list (see above); ignored when ``data_or_star_table`` is itself the image.

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
    ra_hint, dec_hint, scale_low, scale_high, scale_units = _merged_hints(
        hints, ra_hint, dec_hint, scale_low, scale_high, scale_units
    )
    if not timeout_s or timeout_s <= 0:
        raise ParamError("timeout_s", f"must be > 0, got {timeout_s}")
    solver = shutil.which("solve-field")
    if solver is None:
        raise PlateSolveError(
            "solve-field not found on PATH; install astrometry.net "
            "(apt-get install astrometry.net astrometry-data-tycho2)"
        )
    x, y, flux, shape = _star_list(data_or_star_table, image_shape, detect_kwargs, max_stars)
    if not isinstance(data_or_star_table, Table):
        image = data_or_star_table
        t_start = time.monotonic()  # the time bound is for solving, not for star detection
    ny, nx = shape
    s_lo, s_hi = scale_bounds_arcsec(scale_low, scale_high, scale_units, nx)
    hinted = ra_hint is not None
    paths = _paths_to_try(hinted and small_field, s_lo, s_hi, max(nx, ny), hinted=hinted)
    stock = _stock_indexes(index_dirs)
    job = _SolveJob(
        solver=solver, shape=shape, t_start=t_start, deadline=t_start + float(timeout_s),
        ra=ra_hint, dec=dec_hint, radius_deg=radius_deg, s_lo=s_lo, s_hi=s_hi,
        scale_args=scale_args(scale_low, scale_high, scale_units),
        stock=stock, index_dirs=index_dirs, cache_dir=cache_dir,
        sip_degree=sip_degree, odds_to_solve=odds_to_solve, min_matched=min_matched,
    )
    attempts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="starloom-solve-") as td:
        work = Path(td)
        lists = _source_lists(work, x, y, flux, image, shape, job, attempts)
        if not any(n >= 4 for n in lists.values()):
            raise PlateSolveError(f"only {max(lists.values(), default=0)} stars available; plate "
                                  "solving needs at least 4 (lower threshold_sigma or check the image)")
        for kind, xylist, share in _plan(paths, lists):
            result = _attempt(kind, job, work, attempts, xylist, share)
            if result is not None:
                return result
    raise PlateSolveError(_no_solution_message(job, lists, timeout_s, attempts))


@dataclass
class _SolveJob:
    """The checked inputs of one `plate_solve` call, shared by its attempts."""

    solver: str
    shape: tuple[int, int]
    t_start: float
    deadline: float
    ra: float | None
    dec: float | None
    radius_deg: float | None
    s_lo: float | None  # pixel-scale bounds in arcsec/px, None when unknown
    s_hi: float | None
    scale_args: list
    stock: list
    index_dirs: Sequence | None
    cache_dir: object
    sip_degree: int
    odds_to_solve: float | None
    min_matched: int


def _merged_hints(hints, ra_hint, dec_hint, scale_low, scale_high, scale_units):
    """Fill the position and scale arguments left as None from ``hints``; position in degrees.

    Returns ``(ra_hint, dec_hint, scale_low, scale_high, scale_units)``.
    """
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
    return ra_hint, dec_hint, scale_low, scale_high, scale_units


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


def _paths_to_try(small_field_allowed, s_lo, s_hi, n_max, hinted=False) -> list[str]:
    """``'stock'``, ``'small-field'`` and ``'wide'`` in the order to try them.

    The field width from the scale bounds decides; when it may be on either side of
    `SMALL_FIELD_ARCMIN`, both are tried, stock first. A search of unknown scale also tries
    ``'wide'``, wide fields anywhere (see `_stock_args`): last when hinted, first when blind.
    """
    if s_hi is None:
        is_small = None
    elif s_hi * n_max / 60.0 < SMALL_FIELD_ARCMIN:
        is_small = True
    elif s_lo * n_max / 60.0 >= SMALL_FIELD_ARCMIN:
        is_small = False
    else:
        is_small = None
    if not small_field_allowed or is_small is False:
        paths = ["stock"]
    else:
        paths = ["small-field", "stock"] if is_small else ["stock", "small-field"]
    if s_hi is None:  # blind: wide first (see `_plan`); hinted: wide last
        return paths + ["wide"] if hinted else ["wide"] + paths
    return paths


def _source_lists(work: Path, x, y, flux, image, shape, job, attempts) -> dict:
    """Write the star lists to try as xylists in ``work``: ``{name: number of sources}``.

    ``'daofind'``: the given (or `detect_stars`) list; ``'image2xy'``: astrometry.net's own
    extractor on ``image`` (see `extract_sources`), when the pixels are known.
    """
    lists = {}
    if len(x):
        write_xylist(work / "daofind.xyls", x, y, flux)
        lists["daofind"] = len(x)
    if image is not None:
        img = np.asarray(image)
        if img.shape != tuple(shape):
            raise ParamError("image", f"shape {img.shape} differs from the star list's image {shape}")
        t0 = time.monotonic()
        ix, iy, iflux = extract_sources(img, work, job.deadline - t0)
        attempts.append(f"image2xy: {len(ix)} sources in {time.monotonic() - t0:.1f} s")
        if len(ix):
            write_xylist(work / "image2xy.xyls", ix, iy, iflux)
            lists["image2xy"] = len(ix)
    return lists


def _plan(paths, lists: dict):
    """``(path, list name, share of the time left)`` of each attempt, in order.

    Every path first with the DAOFIND list (it solves the fields that solved before image2xy
    was added), then the stock and wide paths again with image2xy's: the small-field path
    never takes image2xy's list (hot pixels, which image2xy keeps, would ruin the match with
    a sparse field index). A DAOFIND attempt on the stock or wide path gets half the time
    left when an image2xy attempt follows (an unbounded blind search would leave it none).
    A blind solve starts with ``'wide'`` on image2xy's list (plain solve-field's) for
    `WIDE_FIRST_SHARE` of the time.
    """
    usable = [n for n in ("daofind", "image2xy") if lists.get(n, 0) >= 4]
    if usable and paths[0] == "wide" and len(paths) > 1:  # blind: a short wide search first
        return [("wide", usable[-1], WIDE_FIRST_SHARE)] + _plan(paths[1:], lists)
    plan = [(p, usable[0], 1.0) for p in paths] if usable else []
    if len(usable) == 2:
        plan = [(p, n, 1.0 if p == "small-field" else 0.5) for p, n, _ in plan]
        plan += [(p, "image2xy", 1.0) for p in paths if p != "small-field"]
    elif usable == ["image2xy"]:
        plan = [(p, n, s) for p, n, s in plan if p != "small-field"]
    return plan


def _stock_indexes(index_dirs) -> list:
    """The installed index files; both paths need them (the small-field path reads its stars
    from them)."""
    stock = find_index_files(index_dirs)
    if not stock:
        where = (
            ", ".join(map(str, index_dirs))
            if index_dirs
            else ", ".join(str(d) for d in (default_index_dirs() or ["/usr/share/astrometry"]))
        )
        raise PlateSolveError(
            f"no astrometry.net index files found in {where}; install the Debian "
            "package astrometry-data-tycho2 or pass index_dirs"
        )
    return stock


def _stock_args(job: _SolveJob, kind: str = "stock") -> list:
    """solve-field arguments of the stock and wide paths: position hint, scale band, odds.

    astrometry.net accepts a match only when the centre of its quad lies within ``--radius``
    of the hint; in a wide field that centre can be anywhere in the frame, so the radius
    (default 2 deg) is widened by the field's half diagonal at the largest scale (measured: a
    simulated 64 deg field with a +-10 % scale hint failed in 13 s with 2 deg, solved in 6 s
    widened). Without a scale the field size is unknown and ``'stock'`` keeps the 2 deg; the
    last attempt, ``'wide'``, then searches fields wider than 0.75 `WIDE_FIELD_DEG` anywhere,
    with the brightest `WIDE_OBJS` sources.
    """
    ny, nx = job.shape
    extra = []
    if kind == "wide":
        lo = 0.75 * WIDE_FIELD_DEG * 3600.0 / max(nx, ny)
        extra = ["--scale-low", f"{lo:.6g}", "--scale-high", f"{180 * 3600.0 / max(nx, ny):.6g}",
                 "--scale-units", "arcsecperpix", "--objs", str(WIDE_OBJS)]
    elif job.ra is not None:
        half_diag = job.s_hi * float(np.hypot(nx, ny)) / 7200.0 if job.s_hi else 0.0
        radius = min(180.0, (job.radius_deg if job.radius_deg is not None else 2.0) + half_diag)
        extra = position_args(job.ra, job.dec, radius)
    if job.odds_to_solve is not None:
        extra += ["--odds-to-solve", f"{job.odds_to_solve:g}"]
    return extra


def _small_field_setup(job: _SolveJob, time_left: float, attempts: list):
    """Field indexes of the needed quad sizes and solve-field arguments of the small-field path.

    Returns ``(indexes, args, index_cache_hit)``, or None after noting in ``attempts`` why the
    path cannot be tried.
    """
    ny, nx = job.shape
    if job.s_lo is not None:
        min_dim = job.s_lo * min(nx, ny) / 60.0
        diag = job.s_hi * float(np.hypot(nx, ny)) / 60.0
    else:  # unknown scale: every band of a field narrower than SMALL_FIELD_ARCMIN
        min_dim, diag = 2.0, SMALL_FIELD_ARCMIN * 1.25
    rad = float(job.radius_deg if job.radius_deg is not None else 1.0)
    try:
        built, cache_hit = build_field_indexes(
            job.ra,
            job.dec,
            rad + diag / 120.0,  # the search radius plus the field's half diagonal, in deg
            cache_dir=job.cache_dir,
            index_dirs=job.index_dirs,
            timeout_s=time_left,
        )
    except (PlateSolveError, CatalogError) as exc:
        attempts.append(f"small-field: index build failed ({exc})")
        return None
    indexes = [built[b] for b in quad_bands(min_dim, diag) if b in built]
    if not indexes:
        attempts.append(
            f"small-field: no index of the needed quad sizes could be built "
            f"(built presets {sorted(built)})"
        )
        return None
    # the field index is as sparse as Tycho-2: right solutions match few stars, so lower odds
    args = position_args(job.ra, job.dec, rad) + ["--odds-to-solve", f"{(job.odds_to_solve or 1e6):g}"]
    return indexes, args, cache_hit


def _attempt(kind: str, job: _SolveJob, work: Path, attempts: list, source: str, share: float):
    """Solve on one path (``'stock'``, ``'small-field'``, ``'wide'``) with one star list
    (``source``: ``'daofind'`` or ``'image2xy'``) within ``share`` of the time left.

    Returns the `SolveResult`, or None after noting in ``attempts`` what happened.
    """
    name = f"{kind} ({source})"
    left = job.deadline - time.monotonic()
    if left < 0.5:
        attempts.append(f"{name}: skipped, time bound used up")
        return None
    t0 = time.monotonic()
    until = t0 + left * share
    if kind == "small-field":
        setup = _small_field_setup(job, until - t0, attempts)
        if setup is None:
            return None
        indexes, extra, cache_hit = setup
    else:  # astrometry.net tries index files in the listed order: largest quads first if wide
        indexes = sorted(job.stock, key=lambda f: Path(f).name, reverse=kind == "wide")
        extra, cache_hit = _stock_args(job, kind), None
    left = until - time.monotonic()
    if left < 0.5:
        attempts.append(f"{name}: no time left after preparing indexes")
        return None
    rc, log, out_dir = solve_field(
        job.solver, work, f"{kind}-{source}", indexes, job.shape, time_left=left,
        sip_degree=job.sip_degree, extra_args=[*job.scale_args, *extra], xylist=f"{source}.xyls",
    )
    dt = time.monotonic() - t0
    if rc is None:
        attempts.append(f"{name}, {len(indexes)} indexes: killed at the time bound after {dt:.1f} s")
        return None
    if not has_solution(out_dir):
        tail = " ".join(log.strip().splitlines()[-1:]) if rc else "no solution"
        attempts.append(f"{name}, {len(indexes)} indexes: no solution in {dt:.1f} s ({tail})")
        return None
    wcs, matches, index, log_odds, rot, parity = read_solution(out_dir, log, job.shape)
    if len(matches) < job.min_matched:
        attempts.append(
            f"{name}: rejected a solution with only {len(matches)} matched stars "
            f"(min_matched={job.min_matched})"
        )
        return None
    attempts.append(f"{name}, {len(indexes)} indexes: solved with {index} in {dt:.1f} s")
    if wcs.sip is not None and len(matches) < min_sip_pairs(job.sip_degree):
        wcs = _refit_matches(matches, job.sip_degree, job.shape, attempts)
    path = "small-field" if kind == "small-field" else "stock"  # the index set that solved it
    return _solve_result(job, wcs, matches, index, log_odds, rot, parity, path, cache_hit, attempts)


def _refit_matches(matches: Table, sip_degree: int, shape, attempts: list) -> WCS:
    """Refit the matched pairs at the highest SIP degree they support, else as pure TAN.

    astrometry.net's SIP tweak from too few matches extrapolates wildly at the corners.
    ``matches['sep_arcsec']`` is updated to the new WCS and the refit is noted in ``attempts``.
    """
    ny, nx = shape
    degree = max([d for d in range(2, int(sip_degree) + 1) if len(matches) >= min_sip_pairs(d)] or [0])
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
    matches["sep_arcsec"] = sky.separation(SkyCoord(matches["ra"] * u.deg, matches["dec"] * u.deg)).arcsec
    attempts.append(
        f"SIP degree {sip_degree} needs >= {min_sip_pairs(sip_degree)} matches, got "
        f"{len(matches)}: refitted the matches as " + (f"TAN-SIP degree {degree}" if degree else "TAN")
    )
    return wcs


def _solve_result(job, wcs, matches, index, log_odds, rot, parity, kind, cache_hit, attempts):
    """The `SolveResult` of an accepted solution: scale, centre and field size from ``wcs``."""
    ny, nx = job.shape
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
        solve_time_s=time.monotonic() - job.t_start,
        index=index,
        path=kind,
        matches=matches,
        log_odds=log_odds,
        attempts=attempts,
        index_cache_hit=cache_hit,
    )


def _no_solution_message(job: _SolveJob, lists: dict, timeout_s, attempts) -> str:
    """Why no path solved: the inputs, every attempt and what the caller can change."""
    ny, nx = job.shape
    hint = (
        f"hint RA {job.ra:.4f}, Dec {job.dec:.4f} deg"
        if job.ra is not None
        else "no position hint (blind)"
    )
    scale_txt = f"scale {job.s_lo:.3g}-{job.s_hi:.3g} arcsec/px" if job.s_lo else "no scale hint"
    return (
        f"no plate solution within the time bound of {float(timeout_s):g} s (used "
        f"{time.monotonic() - job.t_start:.1f} s; "
        + ", ".join(f"{n} stars ({k})" for k, n in lists.items())
        + f", {nx}x{ny} px, {hint}, {scale_txt}). Tried: "
        + "; ".join(attempts)
        + ". Give a position hint (RA/Dec) and pixel scale, raise timeout_s, or check the star list."
    )
