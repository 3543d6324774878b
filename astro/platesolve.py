"""Offline plate solving with astrometry.net's ``solve-field`` (Lang, Hogg, Mierle, Blanton &
Roweis 2010, AJ 139, 1782), TAN-SIP solutions (Shupe et al. 2005, ASP Conf. Ser. 347, 491).

This module runs the attempts and judges their outcome; what to try, in which order, with which
star lists and arguments is `starloom.astro.platesolve_plan`; running astrometry.net's programs
and reading their files is `starloom.astro.astrometry_net`, building indexes for small fields
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

from .astrometry_net import PlateSolveError, has_solution, read_solution, solve_field
from .catalogs import default_index_dirs, find_index_files
from .errors import ParamError
from .hints import scale_args, scale_bounds_arcsec
from .platesolve_plan import (
    SolveJob,
    SourceLists,
    merge_hints,
    paths_to_try,
    plan_attempts,
    small_field_setup,
    star_arrays,
    stock_args,
)
from .wcsfit import min_sip_pairs

__all__ = ["PlateSolveError", "SolveResult", "plate_solve"]


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
        Wall time of the whole call, index building included, waiting for star detection
        excluded.
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
    stars : astropy.table.Table or None
        The `detect_stars` table when `plate_solve` was given an image (all stars, not only
        the ``max_stars`` passed to the solver), else None.
    detection : dict or None
        Its metrics (`detect_stars`), else None.
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
    stars: Table | None = None
    detection: dict | None = None

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
    image2xy: bool = True,
) -> SolveResult:
    """Plate-solve an image or a star list offline with astrometry.net's ``solve-field``.

    The stars are written as xylists (FITS table X, Y, FLUX in astrometry.net's 1-based
    pixels, brightest first) and solved with ``solve-field --no-plots --overwrite --crpix-center
    --tweak-order <sip_degree> --cpulimit <t>`` using the installed index files (Debian
    ``astrometry-data-tycho2``, series 4107-4119) or ``index_dirs``. With a position hint and a
    field narrower than ~30 arcmin (the stock Tycho-2 indexes hold no quads that small), the
    small-field path builds indexes from the Tycho-2 stars around the hint
    (`build_field_indexes`, cached on disk) and solves with them (``--odds-to-solve 1e6``, as
    the catalogue is sparse). When the field size is unknown both paths are tried, stock first.
    The solving is bounded by ``timeout_s``: solver processes are killed (whole process group)
    when it runs out.

    Two star lists are used when the pixels are known (an image, or ``image`` with a star
    table): DAOFIND's (`detect_stars`, or the given table) and the sources astrometry.net's own
    extractor finds (``image2xy``, what plain ``solve-field`` uses, `SourceExtraction`), which
    keeps the elongated and blended stars of wide-angle fields that DAOFIND's shape bounds
    reject. From an image both extractions run at once, image2xy in its own process and DAOFIND
    in a thread, and each attempt waits only for the list it needs (`SourceLists`): the two
    lists are the same as when made one after the other, so are the solutions, and a blind
    solve (which starts on image2xy's list) overlaps DAOFIND with solving instead of waiting
    for it. Building one list from the other was not taken: image2xy's alone fails on the
    Pleiades JPEG (plain solve-field does not solve it), DAOFIND's alone on the distorted
    wide fields, and the caller's diagnostics need DAOFIND's FWHM measurements anyway.

    The order of the attempts is `plan_attempts`': DAOFIND's list first on every path (with
    half the time left when image2xy's follows); the small-field path uses only the DAOFIND
    list, whose hot-pixel rejection it needs. A position hint restricts the stock search to
    quads centred within ``radius_deg`` plus the field's half diagonal of the hint
    (astrometry.net checks the centre of the matched quad, which lies anywhere in a wide
    field); without a scale hint the hinted search keeps the radius and a last attempt
    (``'wide'``) searches wide fields anywhere; a blind solve starts with it.

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
        Passed to `detect_stars` when an image is given (``fwhm``, ``threshold_sigma``,
        ``mask``, ...).
    odds_to_solve : float, optional
        Override astrometry.net's acceptance odds (default 1e9 stock, 1e6 small-field).
    min_matched : int, optional
        Solutions with fewer matched catalogue stars are rejected as unreliable.
    image : array_like (ny, nx), optional
        The pixels of the frame a star table was measured on, for the ``image2xy`` source
        list (see above); ignored when ``data_or_star_table`` is itself the image.
    image2xy : bool, optional
        Use image2xy's source list when the pixels are known (False: DAOFIND's only).

    Returns
    -------
    SolveResult
        With the DAOFIND table and metrics (``stars``, ``detection``) when an image was given.

    Raises
    ------
    PlateSolveError
        ``solve-field`` is not installed, no index files, too few stars, or no solution within
        ``timeout_s`` (the message lists every attempt and the bound). When an image was
        given, its ``detection`` attribute holds DAOFIND's metrics (else None).
    ParamError
        Bad arguments.
    """
    t_start = time.monotonic()
    ra_hint, dec_hint, scale_low, scale_high, scale_units = merge_hints(
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
    table, image, shape = _inputs(data_or_star_table, image_shape, image)
    ny, nx = shape
    s_lo, s_hi = scale_bounds_arcsec(scale_low, scale_high, scale_units, nx)
    hinted = ra_hint is not None
    paths = paths_to_try(hinted and small_field, s_lo, s_hi, max(nx, ny), hinted=hinted)
    job = SolveJob(
        solver=solver, shape=shape, t_start=t_start, deadline=t_start + float(timeout_s),
        ra=ra_hint, dec=dec_hint, radius_deg=radius_deg, s_lo=s_lo, s_hi=s_hi,
        scale_args=scale_args(scale_low, scale_high, scale_units),
        stock=_stock_indexes(index_dirs), index_dirs=index_dirs, cache_dir=cache_dir,
        sip_degree=sip_degree, odds_to_solve=odds_to_solve, min_matched=min_matched,
    )
    attempts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="starloom-solve-") as td:
        lists = SourceLists(Path(td), max_stars, attempts)
        try:
            if table is not None:
                lists.add("daofind", *star_arrays(table, max_stars))
            if image is not None:
                lists.start(image, detect_kwargs, daofind=table is None, image2xy=image2xy)
            for kind, source, share in plan_attempts(paths, lists.names()):
                result = _attempt(kind, source, share, job, lists, float(timeout_s))
                if result is not None:
                    result.stars, result.detection = lists.stars, lists.detection
                    return result
            lists.finish(float(timeout_s))
        finally:
            lists.close()
    if not any(n >= 4 for n in lists.counts.values()):
        msg = (f"only {max(lists.counts.values(), default=0)} stars available; plate solving "
               "needs at least 4 (lower threshold_sigma or check the image)")
    else:
        msg = _no_solution_message(job, lists.counts, timeout_s, attempts)
    error = PlateSolveError(msg)
    error.detection = lists.detection
    raise error


def _inputs(data_or_star_table, image_shape, image):
    """``(star table or None, image or None, (ny, nx))`` of `plate_solve`'s arguments."""
    if isinstance(data_or_star_table, Table):
        if image_shape is None:
            raise ParamError("image_shape", "required when a star table is given")
        shape = (int(image_shape[0]), int(image_shape[1]))
        if image is not None:
            image = np.asarray(image)
            if image.shape != shape:
                raise ParamError("image", f"shape {image.shape} differs from the star list's image {shape}")
        star_arrays(data_or_star_table, 1)  # checks the columns before anything starts
        return data_or_star_table, image, shape
    image = np.asarray(data_or_star_table)
    if image.ndim != 2:
        raise ParamError(
            "data_or_star_table", f"expected a 2-D image or a star Table, got shape {image.shape}"
        )
    return None, image, (int(image.shape[0]), int(image.shape[1]))


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


def _attempt(kind: str, source: str, share: float, job: SolveJob, lists: SourceLists, bound_s: float):
    """Solve on one path (``'stock'``, ``'small-field'``, ``'wide'``) with one star list
    (``source``: ``'daofind'`` or ``'image2xy'``) within ``share`` of the time left.

    Time spent waiting for the list to be extracted moves the time bound (``job.t_start``,
    ``job.deadline``) on: the bound is for solving. Returns the `SolveResult`, or None after
    noting in ``lists.notes`` (the call's attempts) what happened.
    """
    attempts, work = lists.notes, lists.work
    name = f"{kind} ({source})"
    waited = lists.wait(source, bound_s)
    job.t_start += waited
    job.deadline += waited
    if lists.counts.get(source, 0) < 4:
        attempts.append(f"{name}: skipped, {lists.counts.get(source, 0)} stars")
        return None
    left = job.deadline - time.monotonic()
    if left < 0.5:
        attempts.append(f"{name}: skipped, time bound used up")
        return None
    t0 = time.monotonic()
    until = t0 + left * share
    if kind == "small-field":
        setup = small_field_setup(job, until - t0, attempts)
        if setup is None:
            return None
        indexes, extra, cache_hit = setup
    else:  # astrometry.net tries index files in the listed order: largest quads first if wide
        indexes = sorted(job.stock, key=lambda f: Path(f).name, reverse=kind == "wide")
        extra, cache_hit = stock_args(job, kind), None
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
    job.t_start += lists.finish(bound_s)  # the caller's DAOFIND table; no thread left running
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


def _no_solution_message(job: SolveJob, lists: dict, timeout_s, attempts) -> str:
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
