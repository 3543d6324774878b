"""The boundary to astrometry.net's programs (Lang, Hogg, Mierle, Blanton & Roweis 2010, AJ 139,
1782): running them under a wall-time bound, writing ``solve-field``'s input and reading its
output.

astrometry.net counts pixels from 1; the conversion to and from Starloom's 0-based pixels
happens here and nowhere else.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from .errors import StarloomError


class PlateSolveError(StarloomError):
    """Plate solving failed: no solution within the time bound, or the solver is unavailable."""


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_bounded(cmd, timeout_s, cwd=None):
    """Run a command in its own process group; kill the whole group on timeout.

    ``solve-field`` starts helper processes (``astrometry-engine``) that outlive a plain kill of
    the parent, hence the process group.

    Parameters
    ----------
    cmd : sequence
        Program and arguments (converted with ``str``).
    timeout_s : float
        Wall-time bound in seconds (at least 0.1 s is granted).
    cwd : path-like, optional
        Working directory.

    Returns
    -------
    (int or None, str)
        Return code (None when killed at the bound) and the combined stdout and stderr.
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


def position_args(ra_deg, dec_deg, radius_deg) -> list[str]:
    """solve-field's position hint: search only within ``radius_deg`` of (ra, dec)."""
    return ["--ra", f"{ra_deg:.6f}", "--dec", f"{dec_deg:.6f}", "--radius", f"{float(radius_deg):.4f}"]


def write_xylist(path, x, y, flux) -> None:
    """Write stars as the xylist ``solve-field`` searches: FITS table ``X``, ``Y`` (1-based),
    ``FLUX``, already filtered and ordered as astrometry.net would (see `solver_order`).

    ``solve_field`` then runs with ``--no-remove-lines --uniformize 0`` and no sort column:
    astrometry.net's ``augment-xylist`` would otherwise start two Python programs per run
    (``removelines``, ``uniformize``), which cost 2.7 of the 3.1 s of a solved wide-field run
    on the shared 2-core machine (0.4 s without them, the same solution).

    Parameters
    ----------
    path : path-like
        Output FITS file.
    x, y : numpy.ndarray of float, shape (n,)
        0-based pixel positions.
    flux : numpy.ndarray of float, shape (n,)
        Brightness (larger is brighter).
    """
    x1, y1 = np.asarray(x, dtype=np.float64) + 1.0, np.asarray(y, dtype=np.float64) + 1.0
    order = solver_order(x1, y1, np.asarray(flux, dtype=np.float64))
    Table({"X": x1[order], "Y": y1[order], "FLUX": np.asarray(flux, dtype=np.float64)[order]}).write(
        path, format="fits")


def solver_order(x, y, flux, boxes: int = 10, logcut: float = -100.0):
    """Indices of the sources in the order ``solve-field`` searches them.

    What astrometry.net's ``augment-xylist`` does to a source list by default, in its order,
    reimplemented with numpy (its ``removelines.py`` and ``uniformize.py``, Lang et al. 2010):

    1. drop rows and columns of sources: a 1-px histogram bin of x (or y) holding k + 1
       sources is spurious (a bleed trail, a bad column) when ``k log(m) - m - k(k-1)/2 <
       logcut``, m the mean k of the occupied bins;
    2. sort by flux, brightest first (stable);
    3. uniformize: split the sources' bounding box into about ``boxes`` cells and take the
       brightest source of every cell, then the second brightest of every cell, and so on
       (each round in brightness order), so that the first sources searched cover the field.

    Parameters
    ----------
    x, y : numpy.ndarray of float, shape (n,)
        Positions in pixels (finite).
    flux : numpy.ndarray of float, shape (n,)
        Brightness.
    boxes : int, optional
        Approximate number of cells (solve-field's ``--uniformize``, default 10).
    logcut : float, optional
        Significance cut of step 1 (``removelines.py``'s default -100).

    Returns
    -------
    numpy.ndarray of int
    """
    keep = np.nonzero(_not_on_lines(x, logcut) & _not_on_lines(y, logcut))[0]
    keep = keep[np.argsort(-flux[keep], kind="stable")]
    if len(keep) == 0:
        return keep
    kx, ky = x[keep], y[keep]
    w, h = np.ptp(kx), np.ptp(ky)
    if w == 0 or h == 0:
        return keep
    nx = int(max(1, np.round(w / np.sqrt(w * h / float(boxes)))))
    ny = int(max(1, np.round(boxes / float(nx))))
    ix = np.clip(np.floor((kx - kx.min()) / w * nx), 0, nx - 1).astype(int)
    iy = np.clip(np.floor((ky - ky.min()) / h * ny), 0, ny - 1).astype(int)
    cell = iy * nx + ix
    # rank of each source within its cell (0: the cell's brightest); round r takes rank r
    by_cell = np.lexsort((np.arange(len(cell)), cell))
    start = np.r_[0, np.flatnonzero(np.diff(cell[by_cell])) + 1]
    rank = np.empty(len(cell), dtype=int)
    rank[by_cell] = np.arange(len(cell)) - np.repeat(start, np.diff(np.r_[start, len(cell)]))
    return keep[np.lexsort((np.arange(len(cell)), rank))]


def _not_on_lines(v, logcut):
    """False for sources in 1-px bins far more crowded than Poisson (``removelines.py``)."""
    if len(v) == 0:
        return np.ones(0, dtype=bool)
    b = np.floor(v + 0.5).astype(int)  # bins [i - 0.5, i + 0.5)
    b -= b.min()
    counts = np.bincount(b)
    occupied = np.nonzero(counts > 1)[0]
    if len(occupied) == 0:
        return np.ones(len(v), dtype=bool)
    k = counts[occupied] - 1.0
    mean = k.sum() / len(occupied)
    logp = k * np.log(mean) - mean - k * (k - 1) / 2.0
    bad = np.zeros(len(counts), dtype=bool)
    bad[occupied[logp < logcut]] = True
    return ~bad[b]


class SourceExtraction:
    """astrometry.net's own source extractor, ``image2xy`` (simplexy), running in the background.

    This is the source list plain ``solve-field`` builds from an image: a smoothed-peak
    detector that keeps elongated and blended stars which DAOFIND's sharpness and roundness
    bounds reject (the distorted stars of wide-angle fields). The image is written as a float32
    FITS file in ``work`` (non-finite pixels set to the image median) and ``image2xy`` started
    in its own process group; `result` waits for its list. Nothing is started when
    ``image2xy`` is not installed.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Image pixels (row 0 is FITS row 1).
    work : pathlib.Path
        Scratch folder (``image.fits``, ``image.xy``).
    """

    def __init__(self, image, work: Path):
        self.work = Path(work)
        self.proc = None
        exe = shutil.which("image2xy")
        if exe is None:
            return
        data = np.asarray(image, dtype=np.float32)
        bad = ~np.isfinite(data)
        if bad.any():
            data = np.where(bad, np.nanmedian(data) if (~bad).any() else 0.0, data).astype(np.float32)
        fits.writeto(self.work / "image.fits", data, overwrite=True)
        self.proc = subprocess.Popen(
            [exe, "-O", "-o", "image.xy", "image.fits"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=self.work, start_new_session=True,
        )

    def result(self, time_left: float):
        """Wait at most ``time_left`` seconds for the sources.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray, numpy.ndarray)
            ``x``, ``y`` (0-based px) and ``flux``, brightest first; empty when image2xy is
            missing, fails or runs out of time (it is then killed).
        """
        empty = np.zeros(0)
        if self.proc is None:
            return empty, empty, empty
        try:
            rc = self.proc.wait(timeout=max(0.1, time_left))
        except subprocess.TimeoutExpired:
            self.cancel()
            return empty, empty, empty
        if rc != 0 or not (self.work / "image.xy").exists():
            return empty, empty, empty
        t = fits.getdata(self.work / "image.xy", 1)
        x = np.asarray(t["X"], dtype=float) - 1.0  # astrometry.net is 1-based
        y = np.asarray(t["Y"], dtype=float) - 1.0
        flux = np.asarray(t["FLUX"], dtype=float)
        order = np.argsort(-flux, kind="stable")
        return x[order], y[order], flux[order]

    def cancel(self) -> None:
        """Kill image2xy (its whole process group) if it is still running."""
        if self.proc is not None and self.proc.poll() is None:
            _kill_group(self.proc)
            self.proc.wait()


def extract_sources(image, work: Path, time_left: float):
    """Sources of an image found by ``image2xy``, waiting for them (see `SourceExtraction`).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Image pixels (row 0 is FITS row 1).
    work : pathlib.Path
        Scratch folder.
    time_left : float
        Wall-time bound (s).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ``x``, ``y`` (0-based px) and ``flux``, brightest first; empty when image2xy is missing,
        fails or runs out of time.
    """
    return SourceExtraction(image, work).result(time_left)


def solve_field(
    solver,
    work: Path,
    name: str,
    indexes: Sequence,
    shape: tuple[int, int],
    *,
    time_left: float,
    sip_degree: int,
    extra_args: Sequence = (),
    xylist: str = "field.xyls",
):
    """Run ``solve-field`` once on ``work/<xylist>`` with the given index files.

    The index files are listed in a config file of their own, so that only they are searched
    (not those of the system-wide ``astrometry.cfg``). Outputs go to ``work/<name>/field.*``;
    the plots, the new FITS file and the match files are not written.

    Parameters
    ----------
    solver : path-like
        The ``solve-field`` executable.
    work : pathlib.Path
        Folder holding ``field.xyls`` (see `write_xylist`); also solve-field's temp folder.
    name : str
        Name of this run (``'stock'``, ``'small-field'``): output folder and config file.
    indexes : sequence of path-like
        Index files to search.
    shape : (int, int)
        Image shape ``(ny, nx)``.
    time_left : float
        Wall-time bound (s); also solve-field's ``--cpulimit`` (whole seconds, at least 1).
    sip_degree : int
        astrometry.net's ``--tweak-order`` (0: ``--no-tweak``).
    extra_args : sequence
        Further arguments (scale and position hints, ``--odds-to-solve``).
    xylist : str
        Name of the star list in ``work`` (see `write_xylist`).

    Returns
    -------
    (int or None, str, pathlib.Path)
        Return code (None when killed at the time bound), log, output folder.
    """
    ny, nx = shape
    cfg = work / f"{name}.cfg"
    # one 'index' line per file, not 'add_path' + 'autoindex': measured, the blind Pleiades
    # solve that takes 5 s this way did not finish in 49 s with autoindex
    listing = "".join(f"index {Path(p).resolve()}\n" for p in indexes)
    cfg.write_text(f"cpulimit {max(1, int(time_left))}\n" + listing)
    out_dir = work / name
    out_dir.mkdir(exist_ok=True)
    cmd = [
        solver, work / xylist,
        "--width", nx, "--height", ny,
        "--x-column", "X", "--y-column", "Y",  # in `solver_order` already: no sort column
        "--no-remove-lines", "--uniformize", 0,
        "--no-plots", "--overwrite", "--crpix-center",
        *(["--tweak-order", int(sip_degree)] if sip_degree else ["--no-tweak"]),
        "--cpulimit", max(1, int(time_left)),
        "--config", cfg, "--dir", out_dir, "--out", "field",
        "--new-fits", "none", "--index-xyls", "none", "--rdls", "none", "--match", "none",
        "--temp-dir", work,
        *extra_args,
    ]
    rc, log = run_bounded(cmd, time_left, cwd=work)
    return rc, log, out_dir


def has_solution(out_dir: Path) -> bool:
    """Whether a `solve_field` run wrote a solution (``field.solved`` and ``field.wcs``)."""
    return (out_dir / "field.solved").exists() and (out_dir / "field.wcs").exists()


def read_solution(workdir: Path, log: str, shape):
    """Build the WCS and the matched-star table from solve-field's outputs.

    Parameters
    ----------
    workdir : pathlib.Path
        Output folder of a solved `solve_field` run.
    log : str
        solve-field's output, parsed for the index, log-odds, rotation and parity.
    shape : (int, int)
        Image shape ``(ny, nx)``.

    Returns
    -------
    tuple
        ``(wcs, matches, index, log_odds, rotation_deg, parity)``: the WCS (``pixel_shape``
        set); a Table of ``x``, ``y`` (0-based), ``ra``, ``dec`` (index star, deg) and
        ``sep_arcsec`` (separation under the WCS) from the corr file; the index file name
        (``'?'`` when not in the log); the last log-odds, "up is N degrees E of N" and the
        parity (``'pos'``/``'neg'``), each None when not in the log.
    """
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
