"""The search plan of `starloom.astro.platesolve.plate_solve`: hints, star lists, paths, arguments.

What to try, in which order and with which solve-field arguments: the position and scale hints
merged from a header, the star lists (DAOFIND's and astrometry.net's own ``image2xy``'s,
extracted concurrently, see `SourceLists`), the index paths (``'stock'``, ``'small-field'``,
``'wide'``) and each attempt's share of the time bound. Running an attempt and judging its
outcome is `starloom.astro.platesolve`; the programs themselves are
`starloom.astro.astrometry_net`. Pixel coordinates are 0-based.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.table import Table

from .astrometry_net import (
    PlateSolveError,
    SourceExtraction,
    position_args,
    write_xylist,
)
from .catalogs import CatalogError
from .errors import ParamError
from .field_index import build_field_indexes, quad_bands
from .hints import parse_dec, parse_ra

#: Fields narrower than this (arcmin) take the small-field path when a position hint is given.
SMALL_FIELD_ARCMIN = 30.0

#: A hinted search of unknown scale that fails is followed by a search of fields wider than
#: about this (deg, longer side) anywhere on the sky (``'wide'``).
WIDE_FIELD_DEG = 5.0

#: Brightest sources searched by the ``'wide'`` attempt (large quads are made of bright
#: stars), and its share of the time when it comes first (a blind solve). Measured on the
#: plate-solving benchmark: the wide attempt solves the 10-64 deg fields in 0.1-0.7 s of
#: solver time, and on 1-2 deg fields it never ends within 30 s (even with 60 sources), so a
#: longer first slice only delays narrow fields (it was 0.15: 15 s of a 100 s bound).
WIDE_OBJS, WIDE_FIRST_SHARE = 150, 0.05


@dataclass
class SolveJob:
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


def merge_hints(hints, ra_hint, dec_hint, scale_low, scale_high, scale_units):
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


def star_arrays(table: Table, max_stars: int):
    """``(x, y, flux)`` of a star table (0-based, finite, brightest ``max_stars`` first)."""
    if not {"x", "y"} <= set(table.colnames):
        raise ParamError("data_or_star_table", f"star table needs columns x, y (has {table.colnames})")
    n = len(table)
    flux = np.asarray(table["flux"], dtype=float) if "flux" in table.colnames else np.arange(n, 0, -1.0)
    x, y = np.asarray(table["x"], dtype=float), np.asarray(table["y"], dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux)
    x, y, flux = x[ok], y[ok], flux[ok]
    order = np.argsort(-flux, kind="stable")[: int(max_stars)]
    return x[order], y[order], flux[order]


def paths_to_try(small_field_allowed, s_lo, s_hi, n_max, hinted=False) -> list[str]:
    """``'stock'``, ``'small-field'`` and ``'wide'`` in the order to try them.

    The field width from the scale bounds decides; when it may be on either side of
    `SMALL_FIELD_ARCMIN`, both are tried, stock first. A search of unknown scale also tries
    ``'wide'``, wide fields anywhere (see `stock_args`): last when hinted, first when blind.
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
    if s_hi is None:  # blind: wide first (see `plan_attempts`); hinted: wide last
        return paths + ["wide"] if hinted else ["wide"] + paths
    return paths


def plan_attempts(paths, lists: Sequence[str]):
    """``(path, list name, share of the time left)`` of each attempt, in order.

    ``lists`` names the star lists the call has (``'daofind'``, ``'image2xy'``); an attempt
    whose list turns out to hold fewer than 4 stars is skipped when its turn comes. Every path
    first with the DAOFIND list (it solves the fields that solved before image2xy was added),
    then the stock and wide paths again with image2xy's: the small-field path never takes
    image2xy's list (hot pixels, which image2xy keeps, would ruin the match with a sparse
    field index). A DAOFIND attempt on the stock or wide path gets half the time left when an
    image2xy attempt follows (an unbounded blind search would leave it none). A blind solve
    starts with ``'wide'`` on image2xy's list (plain solve-field's) for `WIDE_FIRST_SHARE` of
    the time.
    """
    have = [n for n in ("daofind", "image2xy") if n in lists]
    if have and paths[0] == "wide" and len(paths) > 1:  # blind: a short wide search first
        return [("wide", have[-1], WIDE_FIRST_SHARE)] + plan_attempts(paths[1:], lists)
    if have == ["image2xy"]:
        return [(p, "image2xy", 1.0) for p in paths if p != "small-field"]
    plan = [(p, "daofind", 1.0) for p in paths] if have else []
    if len(have) == 2:
        plan = [(p, n, 1.0 if p == "small-field" else 0.5) for p, n, _ in plan]
        plan += [(p, "image2xy", 1.0) for p in paths if p != "small-field"]
    return plan


def stock_args(job: SolveJob, kind: str = "stock") -> list:
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


def small_field_setup(job: SolveJob, time_left: float, attempts: list):
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


class SourceLists:
    """The star lists of one solve, written as xylists ``<name>.xyls`` in ``work``.

    A given star table is written at once (``'daofind'``). From an image, both extractions
    start together and run concurrently: astrometry.net's ``image2xy`` as a subprocess
    (`SourceExtraction`) and DAOFIND (`detect_stars`) in a worker thread, so the solver can
    start on whichever list its first attempt needs while the other is still being made. On
    the plate-solving benchmark (benchmarks/README.md) DAOFIND takes 0.5-2 s, image2xy
    0.6-2 s and a solved attempt 0.1-0.3 s, so made one after the other the extractions were
    most of the call. Waiting for a list is not counted in the time bound (see `wait`).

    Parameters
    ----------
    work : pathlib.Path
        Scratch folder of the solve.
    max_stars : int
        Brightest DAOFIND stars kept (image2xy's list is kept whole, as solve-field does).
    notes : list of str
        Where a line is added when a list is ready (the solve's ``attempts``).
    """

    def __init__(self, work: Path, max_stars: int, notes: list):
        self.work, self.max_stars, self.notes = Path(work), int(max_stars), notes
        self.counts: dict[str, int] = {}
        self.stars: Table | None = None  # the DAOFIND table, when made here
        self.detection: dict | None = None  # its metrics
        self._daofind: Future | None = None
        self._image2xy: SourceExtraction | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._t0 = time.monotonic()
        self._t_daofind: float | None = None  # when the DAOFIND thread ended

    def add(self, name: str, x, y, flux) -> None:
        """Write a finished list (0-based ``x``, ``y``, ``flux``, brightest first)."""
        self.counts[name] = len(x)
        if len(x):
            write_xylist(self.work / f"{name}.xyls", x, y, flux)

    def start(self, image, detect_kwargs=None, daofind: bool = True, image2xy: bool = True) -> None:
        """Start image2xy (subprocess) and DAOFIND (thread, `detect_stars` with
        ``detect_kwargs``) on ``image``, each when asked for."""
        from .stars import detect_stars

        if image2xy:
            self._image2xy = SourceExtraction(image, self.work)
        if daofind:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="starloom-daofind")
            self._daofind = self._pool.submit(detect_stars, image, **dict(detect_kwargs or {}))
            self._daofind.add_done_callback(lambda _: setattr(self, "_t_daofind", time.monotonic()))

    def names(self) -> list[str]:
        """The lists this solve has or is making."""
        pending = (["daofind"] if self._daofind else []) + (["image2xy"] if self._image2xy else [])
        return list(dict.fromkeys([*self.counts, *pending]))

    def wait(self, name: str, bound_s: float) -> float:
        """Wait until list ``name`` is written; return the seconds spent waiting.

        image2xy is killed after ``bound_s`` (its list is then empty); DAOFIND always runs
        to its end. Errors of DAOFIND (bad parameters) are raised here.
        """
        t0 = time.monotonic()
        if name == "daofind" and self._daofind is not None:
            future, self._daofind = self._daofind, None
            self.stars, self.detection = future.result()
            self.add("daofind", *star_arrays(self.stars, self.max_stars))
            made = (self._t_daofind or time.monotonic()) - self._t0
            self.notes.append(f"DAOFIND: {self.counts['daofind']} stars in {made:.1f} s")
        elif name == "image2xy" and self._image2xy is not None:
            run, self._image2xy = self._image2xy, None
            self.add("image2xy", *run.result(bound_s))
            self.notes.append(f"image2xy: {self.counts['image2xy']} sources by "
                              f"{time.monotonic() - self._t0:.1f} s")
        return time.monotonic() - t0

    def finish(self, bound_s: float) -> float:
        """Wait for every list (the caller's DAOFIND table and metrics, and before reading a
        solution: Python's warning filters are process-wide, not per thread); return the
        seconds spent waiting."""
        return sum(self.wait(name, bound_s) for name in ("daofind", "image2xy"))

    def close(self) -> None:
        """Stop a running image2xy and let the DAOFIND thread end."""
        if self._image2xy is not None:
            self._image2xy.cancel()
            self._image2xy = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
