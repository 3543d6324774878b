"""Choosing masters from a calibration library for a series of light frames.

The rules are those of PixInsight's WBPP and Siril's calibration matching: a master must have
been taken with the same camera settings as the lights (instrument, binning, gain, offset,
image size; the filter too for a flat), exactly, because none of them can be corrected for;
among those, the master closest in sensor temperature and in date is taken, within tolerances
(the dark current doubles every ~6 C; dust on the optics moves between nights, so flats age
fastest). A master dark must have the lights' exposure; when none has it, the dark of the
nearest exposure is scaled by the exposure ratio (which needs a bias-subtracted dark and a
master bias, as ``ccdproc.subtract_dark(scale=True)`` assumes; Craig et al., "CCD Data
Reduction Guide", section "Dark current and hot pixels").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from .errors import StarloomError
from .library import Master

__all__ = ["Tolerances", "Choice", "Selection", "LightSettings", "light_settings",
           "select_masters"]

#: Settings that must be equal between lights and a master (catalogue field, header keyword).
EXACT = (("instrument", "INSTRUME"), ("xbinning", "XBINNING"), ("ybinning", "YBINNING"),
         ("gain", "GAIN"), ("offset", "OFFSET"), ("naxis1", "NAXIS1"), ("naxis2", "NAXIS2"))
MAX_LISTED = 20  # near misses listed in an error message


@dataclass
class Tolerances:
    """How far a master may be from the lights.

    Attributes
    ----------
    temperature : float
        Largest sensor temperature difference for bias and darks, deg C (``SET-TEMP`` when
        both have one, else ``CCD-TEMP``).
    days_bias_dark, days_flat : float
        Largest age difference (days, either direction) of bias and darks, and of flats.
    exposure : float
        Exposures closer than this (s) count as equal; otherwise a dark is scaled.
    """

    temperature: float = 2.0
    days_bias_dark: float = 365.0
    days_flat: float = 30.0
    exposure: float = 0.5


@dataclass
class LightSettings:
    """What the lights of a series share, and what varies (exposures, filters)."""

    exact: dict
    set_temp: float | None
    ccd_temp: float | None
    date: datetime | None
    exposures: list[float]
    filters: list[str | None]

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.exact.items()]
        if self.ccd_temp is not None:
            parts.append(f"CCD-TEMP={self.ccd_temp:g} C")
        if self.set_temp is not None:
            parts.append(f"SET-TEMP={self.set_temp:g} C")
        if self.date is not None:
            parts.append(f"DATE-OBS={self.date.date().isoformat()}")
        return ", ".join(parts)


@dataclass
class Choice:
    """A master chosen, what it is for (an exposure or a filter) and why."""

    master: Master
    reason: str
    scaled: bool = False
    target: str = ""

    def to_json(self) -> dict:
        return {"id": self.master.id, "type": self.master.type, "file": self.master.file,
                "target": self.target, "scaled": self.scaled, "reason": self.reason}


@dataclass
class Selection:
    """The masters chosen for a series of lights."""

    bias: Choice | None = None
    darks: list[Choice] = field(default_factory=list)
    flats: list[Choice] = field(default_factory=list)

    def choices(self) -> list[Choice]:
        return ([self.bias] if self.bias else []) + self.darks + self.flats


def parse_date(text) -> datetime | None:
    """A DATE-OBS value as an aware UTC datetime, or None when absent or unparseable."""
    if not text:
        return None
    try:
        d = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def light_settings(metas: list[dict], shape: tuple[int, ...]) -> LightSettings:
    """The settings a series of lights shares.

    Parameters
    ----------
    metas : list of dict
        Each light's metadata (:func:`starloom.astro.fits.frame_metadata` keys).
    shape : tuple of int
        The lights' array shape, ``(ny, nx)``.

    Returns
    -------
    LightSettings
        Exact settings, median temperatures and date, the distinct exposures and filters.

    Raises
    ------
    StarloomError
        The lights differ in a setting that must match exactly (names it and two values).
    """
    exact = {}
    for name, key in EXACT[:5]:
        values = {m.get(key) for m in metas}
        if len(values) > 1:
            raise StarloomError(f"the lights mix several {key} values ({sorted(map(repr, values))}"
                                f"): select one camera setting per calibration")
        exact[key] = values.pop()
    exact["NAXIS1"], exact["NAXIS2"] = int(shape[-1]), int(shape[-2])
    dates = [parse_date(m.get("DATE-OBS")) for m in metas]
    dates = sorted(d for d in dates if d is not None)
    exposures = sorted({round(float(m["EXPTIME"]), 6) for m in metas
                        if m.get("EXPTIME") is not None})
    filters = sorted({m.get("FILTER") for m in metas}, key=lambda f: (f is None, str(f)))
    return LightSettings(exact=exact, set_temp=_median([m.get("SET-TEMP") for m in metas]),
                         ccd_temp=_median([m.get("CCD-TEMP") for m in metas]),
                         date=dates[len(dates) // 2] if dates else None,
                         exposures=exposures, filters=filters)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
    return a == b


def _temperature(m: Master, lights: LightSettings):
    """(difference in deg C or None, which keyword) between a master and the lights."""
    if m.set_temp is not None and lights.set_temp is not None:
        return abs(m.set_temp - lights.set_temp), "SET-TEMP"
    if m.ccd_temp is not None and lights.ccd_temp is not None:
        return abs(m.ccd_temp - lights.ccd_temp), "CCD-TEMP"
    return None, "CCD-TEMP"


def _days(m: Master, lights: LightSettings):
    d = parse_date(m.date_obs)
    if d is None or lights.date is None:
        return None
    return abs((d - lights.date).total_seconds()) / 86400.0


def _check(m: Master, lights: LightSettings, tol: Tolerances, filt=None):
    """(failures, distance, notes) of master ``m`` for the lights, apart from exposure."""
    failures, notes = [], []
    for name, key in EXACT:
        mine, theirs = getattr(m, name), lights.exact[key]
        if not _same(mine, theirs):
            failures.append(f"{key} {mine!r} != {theirs!r}")
    if m.type == "flat" and not _same(m.filter, filt):
        failures.append(f"FILTER {m.filter!r} != {filt!r}")
    dtemp, tkey = _temperature(m, lights)
    if m.type != "flat":
        if dtemp is None:
            notes.append("temperature unknown")
        elif dtemp > tol.temperature:
            failures.append(f"{tkey} differs by {dtemp:.1f} C > {tol.temperature:g} C")
        else:
            notes.append(f"{tkey} within {dtemp:.1f} C")
    days = _days(m, lights)
    limit = tol.days_flat if m.type == "flat" else tol.days_bias_dark
    if days is None:
        notes.append("date unknown")
    elif days > limit:
        failures.append(f"DATE-OBS {days:.0f} days apart > {limit:g}")
    else:
        notes.append(f"{days:.1f} days apart")
    return failures, ((dtemp or 0.0) if m.type != "flat" else 0.0, days or 0.0), notes


def _no_fit(kind: str, what: str, lights: LightSettings, misses: list[tuple[Master, list[str]]]):
    if not misses:
        return StarloomError(f"the library has no master {kind}: save one first "
                             f"(library.save_masters)")
    lines = [f"no master {kind} in the library fits {what} (lights: {lights.describe()}); "
             f"{len(misses)} candidate(s):"]
    for m, failed in misses[:MAX_LISTED]:
        lines.append(f"  {m.id}  {m.describe()}: {'; '.join(failed)}")
    if len(misses) > MAX_LISTED:
        lines.append(f"  ... and {len(misses) - MAX_LISTED} more")
    return StarloomError("\n".join(lines))


def _best(cands):
    """The candidate with the smallest (temperature, days) distance, with its notes."""
    return min(cands, key=lambda c: c[1])


def _pick_bias(masters, lights, tol) -> Choice:
    cands, misses = [], []
    for m in masters:
        failed, dist, notes = _check(m, lights, tol)
        (misses.append((m, failed)) if failed else cands.append((m, dist, notes)))
    if not cands:
        raise _no_fit("bias", "the lights", lights, misses)
    m, _, notes = _best(cands)
    return Choice(m, f"same camera settings; {', '.join(notes)}; best of {len(cands)}")


def _pick_dark(masters, lights, tol, exposure: float, with_bias: bool) -> Choice:
    exact, scalable, misses = [], [], []
    for m in masters:
        failed, dist, notes = _check(m, lights, tol)
        if not failed and m.bias_subtracted != with_bias:
            failed = ["not bias-subtracted: cannot be used with a master bias"
                      if with_bias else "bias-subtracted: needs a master bias, none is used"]
        if failed:
            misses.append((m, failed))
        elif abs(m.exptime - exposure) <= tol.exposure:
            exact.append((m, dist, notes))
        elif with_bias:
            scalable.append((m, dist, notes))
        else:
            misses.append((m, [f"EXPTIME {m.exptime:g} s != {exposure:g} s and no master bias "
                               f"to scale it with"]))
    if exact:
        m, _, notes = _best(exact)
        return Choice(m, f"exposure {m.exptime:g} s matches; {', '.join(notes)}; "
                         f"best of {len(exact)}", target=f"{exposure:g} s")
    if scalable:
        # Nearest exposure first; on a tie the longer dark (less noise once scaled down).
        m, _, notes = min(scalable, key=lambda c: (abs(c[0].exptime - exposure), -c[0].exptime,
                                                   c[1]))
        return Choice(m, f"no {exposure:g} s dark: the {m.exptime:g} s dark (nearest exposure) "
                         f"is scaled by {exposure / m.exptime:.4g}; {', '.join(notes)}",
                      scaled=True, target=f"{exposure:g} s")
    raise _no_fit("dark", f"the {exposure:g} s lights", lights, misses)


def _pick_flat(masters, lights, tol, filt) -> Choice:
    cands, misses = [], []
    for m in masters:
        failed, dist, notes = _check(m, lights, tol, filt)
        (misses.append((m, failed)) if failed else cands.append((m, (dist[1],), notes)))
    if not cands:
        raise _no_fit("flat", f"FILTER {filt!r}", lights, misses)
    m, _, notes = _best(cands)
    return Choice(m, f"filter {filt!r}; {', '.join(notes)}; best of {len(cands)}",
                  target=str(filt))


def select_masters(masters: list[Master], lights: LightSettings, tol: Tolerances | None = None,
                   *, bias: bool = True, darks: bool = True, flats: bool = True) -> Selection:
    """Choose a master bias, a master dark per exposure and a master flat per filter.

    Parameters
    ----------
    masters : list of Master
        The library's catalogue (:meth:`starloom.astro.library.Library.masters`).
    lights : LightSettings
        From :func:`light_settings`.
    tol : Tolerances, optional
    bias, darks, flats : bool
        Which masters to choose.

    Returns
    -------
    Selection
        Each choice with its reason (exact or scaled exposure, temperature and date
        differences, number of candidates).

    Raises
    ------
    StarloomError
        A needed master has no fitting candidate; the message lists each near miss on its own
        line with the keys that failed (e.g. ``GAIN 120.0 != 0.0``), or says the library has
        no master of that type. Also when darks are needed and a light has no EXPTIME.
    """
    tol = tol or Tolerances()
    by_type = {t: [m for m in masters if m.type == t] for t in ("bias", "dark", "flat")}
    out = Selection()
    if bias:
        out.bias = _pick_bias(by_type["bias"], lights, tol)
    if darks:
        if not lights.exposures:
            raise StarloomError("the lights have no EXPTIME header key: cannot choose a dark")
        chosen = {}
        for exposure in lights.exposures:
            c = _pick_dark(by_type["dark"], lights, tol, exposure, with_bias=bias)
            chosen.setdefault(c.master.id, c)  # one dark may serve several exposures
        out.darks = list(chosen.values())
    if flats:
        out.flats = [_pick_flat(by_type["flat"], lights, tol, f) for f in lights.filters]
    return out
