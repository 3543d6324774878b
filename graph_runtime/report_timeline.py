"""The run report's timeline: node spans from the event log, drawn as a Gantt-like chart."""
from __future__ import annotations

import datetime as dt

from .events import Event


def _time(text) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


def node_spans(events: list[dict]) -> list[dict]:
    """Per node, in order of first event: ``node``, ``start``/``end`` (s from the run start),
    ``state`` (done, cached, failed, running) and the frame event times ``frames``."""
    times = [(_time(e.get("t")), e) for e in events]
    times = [(t, e) for t, e in times if t is not None]
    if not times:
        return []
    t0 = times[0][0]
    spans: dict[str, dict] = {}
    last = 0.0
    for t, e in times:
        s = (t - t0).total_seconds()
        last = max(last, s)
        nid = e.get("node")
        if not nid:
            continue
        sp = spans.setdefault(nid, {"node": nid, "start": s, "end": None, "state": "running",
                                    "frames": [], "rejected": []})
        kind = e.get("event")
        if kind == Event.NODE_STARTED:
            sp["start"] = s
        elif kind == Event.NODE_CACHED:
            sp.update(start=s, end=s, state="cached")
        elif kind == Event.NODE_FINISHED:
            sp.update(end=s, state="done")
        elif kind == Event.NODE_FAILED:
            sp.update(end=s, state="failed")
        elif kind in (Event.FRAME_COMPUTED, Event.FRAME_CACHED):
            sp["frames"].append(s)
        elif kind == Event.FRAME_REJECTED:
            sp["rejected"].append(s)
    for sp in spans.values():
        if sp["end"] is None:
            sp["end"] = last
    return list(spans.values())


_COLOURS = {"done": "#2a7", "cached": "#27a", "failed": "#c33", "running": "#d80"}


def timeline_png(events: list[dict]) -> bytes | None:
    """PNG bytes of the timeline (one bar per node, ticks for frames, red for rejections), or
    None when no node has an event yet (drawn by :func:`starloom.astro.trend_plots.gantt_png`)."""
    spans = node_spans(events)
    if not spans:
        return None
    from starloom.astro.trend_plots import gantt_png
    bars = [{"label": f"{sp['node']} ({sp['state']})", "start": sp["start"], "end": sp["end"],
             "colour": _COLOURS.get(sp["state"], "#777"), "ticks": sp["frames"],
             "crosses": sp["rejected"]} for sp in spans]
    return gantt_png(bars, xlabel="seconds since the run started")
