"""The run report's timeline: node spans from the event log, drawn as a Gantt-like chart."""
from __future__ import annotations

import datetime as dt
import html
import math

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
_ROW, _LABEL_W, _PLOT_W, _TOP = 22, 260, 620, 8  # SVG layout, px


def _nice_step(total: float) -> float:
    """A 1-2-5 step giving about 6 grid lines over ``total`` seconds."""
    step = 10 ** math.floor(math.log10(max(total, 1e-3) / 6))
    return next(m * step for m in (1, 2, 5, 10) if total / (m * step) <= 7)


def timeline_svg(events: list[dict]) -> str | None:
    """The timeline as inline SVG (one bar per node, ticks for frames, red crosses for rejected
    frames), or None when no node has an event yet.

    Drawn as plain SVG rather than with matplotlib: the report is written by every run, also a
    fully cached one, and importing matplotlib would cost such a run more than the rest of it.
    """
    spans = node_spans(events)
    if not spans:
        return None
    total = max(sp["end"] for sp in spans) or 1.0
    scale = _PLOT_W / total
    height = _TOP + _ROW * len(spans) + 30

    def x(t):
        return _LABEL_W + t * scale

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{_LABEL_W + _PLOT_W + 20}' "
           f"height='{height}' font-family='sans-serif' font-size='11' role='img' "
           f"aria-label='timeline'>"]
    step, bottom = _nice_step(total), _TOP + _ROW * len(spans)
    for k in range(int(total / step) + 1):
        gx = x(k * step)
        out.append(f"<line x1='{gx:.1f}' y1='{_TOP}' x2='{gx:.1f}' y2='{bottom}' stroke='#ddd'/>"
                   f"<text x='{gx:.1f}' y='{bottom + 14}' text-anchor='middle'>{k * step:g}</text>")
    out.append(f"<text x='{_LABEL_W + _PLOT_W / 2}' y='{bottom + 27}' text-anchor='middle'>"
               "seconds since the run started</text>")
    for i, sp in enumerate(spans):
        y = _TOP + i * _ROW
        label = html.escape(f"{sp['node']} ({sp['state']})")
        width = max((sp["end"] - sp["start"]) * scale, 2.0)  # instant (cached) nodes stay visible
        out.append(f"<text x='{_LABEL_W - 6}' y='{y + 15}' text-anchor='end'>{label}</text>"
                   f"<rect x='{x(sp['start']):.1f}' y='{y + 4}' width='{width:.1f}' height='14' "
                   f"fill='{_COLOURS.get(sp['state'], '#777')}'><title>{label}: "
                   f"{sp['start']:.2f}-{sp['end']:.2f} s</title></rect>")
        out += [f"<line x1='{x(t):.1f}' y1='{y + 2}' x2='{x(t):.1f}' y2='{y + 20}' "
                f"stroke='#000' stroke-opacity='0.6'/>" for t in sp["frames"]]
        out += [f"<text x='{x(t):.1f}' y='{y + 16}' text-anchor='middle' fill='#c33' "
                f"font-weight='bold'>x</text>" for t in sp["rejected"]]
    out.append("</svg>")
    return "".join(out)
