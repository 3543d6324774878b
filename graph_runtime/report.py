"""The HTML report of a run (``artifacts/report.html``): status, per-node timeline, images."""
from __future__ import annotations

import html
import json
from pathlib import Path

from starloom.astro.fileio import write_text_atomic

from .events import Event


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _node_states(graph: dict, events: list[dict]) -> dict[str, dict]:
    """Each node's state, time, frame counts and messages, from the run's event log."""
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
    return nodes


def write_report(run_dir: Path) -> Path:
    """Write ``artifacts/report.html`` from the run directory's files; returns its path."""
    status = _read_json(run_dir / "status.json", {})
    env = _read_json(run_dir / "environment.json", {})
    graph = _read_json(run_dir / "graph.json", {})
    events = []
    log = run_dir / "logs" / "run_events.jsonl"
    if log.is_file():
        events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    nodes = _node_states(graph, events)
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
          background: {'#2a7' if st == 'ok' else '#c33'}}}
table {{border-collapse: collapse}} td, th {{border: 1px solid #ccc; padding: 0.3em 0.7em}}
tr.cached td:nth-child(3) {{color: #27a}} tr.done td:nth-child(3) {{color: #2a7}}
tr.failed td {{background: #fdd}} .msg {{color: #c33; white-space: pre-wrap}}
figure {{display: inline-block; margin: 0.5em}} img {{max-width: 420px; border: 1px solid #999}}
small {{color: #666}}
</style></head><body>
<h1>{esc(graph.get('metadata', {}).get('name') or 'Starloom run')} <span>{esc(st)}</span></h1>
<p>Run <code>{esc(run_dir.name)}</code>, {status.get('seconds', '?')} s;
{len(status.get('executed', []))} node(s) executed, {len(status.get('cached', []))} from cache.</p>
{message}
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
