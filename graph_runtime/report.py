"""The HTML report of a run (``artifacts/report.html``): status, per-node timeline, images.

The run writes it when it starts (status ``running``) and when it ends; ``starloom report``
writes it again at any time, e.g. for a run that was killed, which then reads ``interrupted``
(see :mod:`.runs`). A resumed run directory shows its last attempt and lists the earlier ones.
"""
from __future__ import annotations

import html
from pathlib import Path

from starloom.astro.fileio import write_text_atomic

from .events import Event
from .runs import count_attempts, last_attempt, read_events, read_json, read_status


# Badge colour of each run status.
_COLOURS = {"ok": "#2a7", "running": "#27a", "interrupted": "#d80", "cancelled": "#777"}


def _node_states(graph: dict, events: list[dict], interrupted: bool = False) -> dict[str, dict]:
    """Each node's state, time, frame counts and messages, from the last attempt's events.

    A node still ``running`` when the run was interrupted is shown as ``interrupted``.
    """
    events = last_attempt(events)
    nodes: dict[str, dict] = {n["id"]: {"type": n["type"], "state": "pending", "seconds": "",
                                        "frames": 0, "cached_frames": 0, "message": "",
                                        "rejected": 0}
                              for n in graph.get("nodes", [])}
    for ev in events:
        n = nodes.get(ev.get("node"))
        if n is None:
            continue
        kind = ev["event"]
        if kind == Event.NODE_CACHED:
            n["state"] = "cached"
        elif kind == Event.NODE_STARTED:
            n["state"] = "running"
        elif kind == Event.NODE_FINISHED:
            n["state"], n["seconds"] = "done", ev.get("seconds", "")
        elif kind == Event.NODE_FAILED:
            n["state"], n["message"] = "failed", ev.get("message", "")
        elif kind == Event.FRAME_COMPUTED:
            n["frames"] += 1
        elif kind == Event.FRAME_CACHED:
            n["cached_frames"] += 1
        elif kind == Event.FRAME_REJECTED:
            n["rejected"] += 1
            n["message"] = (n["message"] + "\n" if n["message"] else "") + \
                f"rejected {ev.get('frame')}: {ev.get('message', '')}"
        elif kind == Event.WARNING:
            n["message"] = (n["message"] + "\n" if n["message"] else "") + "warning: " + ev.get("message", "")
    if interrupted:
        for n in nodes.values():
            if n["state"] == "running":
                n["state"] = "interrupted"
    return nodes


def _status_note(run_dir: Path, status: dict) -> str:
    """What a running or interrupted run's reader should know, and earlier attempts."""
    esc = html.escape
    st = status.get("status")
    note = ""
    if st == "running":
        note = (f"<p>Running since {esc(str(status.get('started')))} (pid {status.get('pid')} on "
                f"{esc(str(status.get('host')))}). This page was written when the run started and "
                f"is written again when it ends; <code>starloom runs</code> tells whether the "
                f"process is still alive.</p>")
    elif st == "interrupted":
        note = (f"<p>The run did not finish. Finished nodes and frames are in the cache: "
                f"<code>starloom resume {esc(str(run_dir))}</code> continues it.</p>")
    n = count_attempts(run_dir)
    if n:
        note += f"<p><small>Resumed: {n} earlier attempt(s), see logs/attempts.jsonl.</small></p>"
    return note


def write_report(run_dir: Path) -> Path:
    """Write ``artifacts/report.html`` from the run directory's files; returns its path."""
    status = read_status(run_dir)
    env = read_json(run_dir / "environment.json") or {}
    graph = read_json(run_dir / "graph.json") or {}
    nodes = _node_states(graph, read_events(run_dir), status.get("status") == "interrupted")
    esc = html.escape
    rows = "".join(
        f"<tr class='{esc(n['state'])}'><td>{esc(nid)}</td><td>{esc(n['type'])}</td>"
        f"<td>{esc(n['state'])}</td><td>{n['seconds']}</td>"
        + (f"<td>{n['frames']} computed / {n['cached_frames']} cached"
           + (f" / {n['rejected']} rejected" if n["rejected"] else "") + "</td>"
           if n["frames"] or n["cached_frames"] else "<td></td>")
        + f"<td class='msg'>{esc(str(n['message']))}</td></tr>" for nid, n in nodes.items())
    images = sorted(p for p in run_dir.glob("outputs/*.png")) + sorted(run_dir.glob("artifacts/**/*.png"))
    figs = "".join(
        f"<figure><img src='../{esc(p.relative_to(run_dir).as_posix())}'>"
        f"<figcaption>{esc(p.relative_to(run_dir).as_posix())}</figcaption></figure>" for p in images)
    outputs = "".join(f"<li><a href='../outputs/{esc(p.name)}'>{esc(p.name)}</a> "
                      f"({p.stat().st_size / 1e6:.2f} MB)</li>"
                      for p in sorted((run_dir / "outputs").glob("*")) if p.is_file())
    libs = ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items() if v)
    st = status.get("status", "unknown")
    message = f"<p class='msg'>{esc(str(status.get('message')))}</p>" if status.get("message") else ""
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Starloom run {esc(run_dir.name)}</title>
<style>
body {{font-family: system-ui, sans-serif; margin: 2em; color: #222; background: #fafafa}}
h1 span {{font-size: 0.6em; padding: 0.2em 0.6em; border-radius: 0.3em; color: white;
          background: {_COLOURS.get(st, '#c33')}}}
table {{border-collapse: collapse}} td, th {{border: 1px solid #ccc; padding: 0.3em 0.7em}}
tr.cached td:nth-child(3) {{color: #27a}} tr.done td:nth-child(3) {{color: #2a7}}
tr.failed td {{background: #fdd}} tr.interrupted td {{background: #fed}} .msg {{color: #c33; white-space: pre-wrap}}
figure {{display: inline-block; margin: 0.5em}} img {{max-width: 420px; border: 1px solid #999}}
small {{color: #666}}
</style></head><body>
<h1>{esc(graph.get('metadata', {}).get('name') or 'Starloom run')} <span>{esc(st)}</span></h1>
<p>Run <code>{esc(run_dir.name)}</code>{f", {status['seconds']} s" if 'seconds' in status else ''};
{len(status.get('executed', []))} node(s) executed, {len(status.get('cached', []))} from cache.</p>
{message}{_status_note(run_dir, status)}
<h2>Nodes</h2>
<table><tr><th>node</th><th>type</th><th>state</th><th>seconds</th><th>frames</th><th>message</th></tr>
{rows}</table>
<h2>Outputs</h2><ul>{outputs or '<li>none</li>'}</ul>
{figs}
<h2>Environment</h2><p><small>Python {esc(str(env.get('python')))} on {esc(str(env.get('platform')))};
{esc(libs)}</small></p>
</body></html>
"""
    out = run_dir / "artifacts" / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, doc)  # a browser may be showing the previous report
    return out
