"""The HTML report of a run (``artifacts/report.html``): one self-contained page with status,
guard-rail decisions, node table, timeline, a section per node (its plots embedded and its
diagnostics as tables), outputs and the graph with its parameters
(:mod:`.report_sections`, :mod:`.report_timeline`).

The run writes it when it starts (status ``running``) and when it ends; ``starloom report``
writes it again at any time, e.g. for a run that was killed, which then reads ``interrupted``
(see :mod:`.runs`). A resumed run directory shows its last attempt and lists the earlier ones.
"""
from __future__ import annotations

import html
from pathlib import Path

from starloom.astro.fileio import write_text_atomic

from . import report_sections as sections
from .events import Event
from .report_timeline import timeline_svg
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


_STYLE = """
body {font-family: system-ui, sans-serif; margin: 2em; color: #222; background: #fafafa; max-width: 1400px}
h1 span {font-size: 0.6em; padding: 0.2em 0.6em; border-radius: 0.3em; color: white}
nav a {margin-right: 0.8em}
table {border-collapse: collapse; margin: 0.4em 0} td, th {border: 1px solid #ccc; padding: 0.25em 0.6em}
th {background: #eee; text-align: left} table.diag td, table.kv td {font-size: 0.85em}
tr.cached td:nth-child(3) {color: #27a} tr.done td:nth-child(3) {color: #2a7}
tr.failed td {background: #fdd} tr.interrupted td {background: #fed} .msg {color: #c33; white-space: pre-wrap}
.st-failed {color: #c33} .st-done {color: #2a7} .st-cached {color: #27a}
section.node {border-top: 2px solid #ccd; margin-top: 1.5em} h3 small {font-weight: normal; color: #555}
figure {display: inline-block; margin: 0.5em; vertical-align: top} img {max-width: 560px; border: 1px solid #999}
figure.wide img {max-width: 100%} small {color: #666} pre {white-space: pre-wrap}
td.pass {color: #2a7} td.reduced {color: #d80} td.abort {color: #c33}
"""


def _node_table(nodes: dict[str, dict]) -> str:
    """The summary table: one row per node with state, time, frames and messages."""
    esc = html.escape
    return "".join(
        f"<tr class='{esc(n['state'])}'><td>{esc(nid)}</td><td>{esc(n['type'])}</td>"
        f"<td>{esc(n['state'])}</td><td>{n['seconds']}</td>"
        + (f"<td>{n['frames']} computed / {n['cached_frames']} cached"
           + (f" / {n['rejected']} rejected" if n["rejected"] else "") + "</td>"
           if n["frames"] or n["cached_frames"] else "<td></td>")
        + f"<td class='msg'>{esc(str(n['message']))}</td></tr>" for nid, n in nodes.items())


def _guard_rail_section(diags: dict[str, dict]) -> str:
    rows = sections.guard_rails(diags)
    if not rows:
        return ""
    esc = html.escape
    body = "".join(f"<tr><td>{esc(str(r.get('node')))}</td><td>{esc(str(r.get('rule')))}</td>"
                   f"<td class='{esc(str(r.get('decision')))}'>{esc(str(r.get('decision')))}</td>"
                   f"<td>{esc(str(r.get('reason')))}</td></tr>" for r in rows)
    return ("<h2 id='guard-rails'>Guard rails</h2><table><tr><th>node</th><th>rule</th>"
            f"<th>decision</th><th>reason</th></tr>{body}</table>")


def _outputs(run_dir: Path) -> tuple[str, str]:
    """The outputs list (links) and the output images, embedded."""
    esc = html.escape
    files = sorted(p for p in (run_dir / "outputs").glob("*") if p.is_file())
    links = "".join(f"<li><a href='../outputs/{esc(p.name)}'>{esc(p.name)}</a> "
                    f"({p.stat().st_size / 1e6:.2f} MB)</li>" for p in files)
    figs = "".join(sections.figure(p, p.relative_to(run_dir).as_posix())
                   for p in files if p.suffix.lower() == ".png")
    return links, figs


MAX_TIMELINE_NODES = 120  # more bars than a page can show; the node table has the times


def _timeline(events: list[dict], status: str, n_nodes: int) -> str:
    if status == "running":  # the report written as a run starts: nothing to draw yet
        return "<p><small>drawn when the run ends</small></p>"
    if n_nodes > MAX_TIMELINE_NODES:
        return (f"<p><small>{n_nodes} nodes: no timeline above {MAX_TIMELINE_NODES}; the node "
                "table gives each node's time</small></p>")
    try:
        svg = timeline_svg(last_attempt(events))
    except Exception as e:  # noqa: BLE001 - a drawing failure must not cost the report
        return f"<p class='msg'>timeline not drawn: {html.escape(str(e))}</p>"
    if svg is None:
        return "<p><small>no node has started yet</small></p>"
    return (f"<figure class='wide' aria-label='timeline'>{svg}"
            "<figcaption>node timeline: bars from start to end (green computed, blue cached, red "
            "failed, orange running), ticks per frame, red crosses for rejected frames"
            "</figcaption></figure>")


def write_report(run_dir: Path) -> Path:
    """Write ``artifacts/report.html`` from the run directory's files; returns its path.

    One self-contained page (images embedded as data URIs): status, guard-rail decisions, node
    table, timeline of node events, one section per node (its artifact PNGs and diagnostics
    from ``artifacts/<node_id>.json``, per-frame lists as tables), outputs, the graph with its
    parameters, and the environment.
    """
    status = read_status(run_dir)
    env = read_json(run_dir / "environment.json") or {}
    graph = read_json(run_dir / "graph.json") or {}
    events = read_events(run_dir)
    nodes = _node_states(graph, events, status.get("status") == "interrupted")
    diags = {nid: read_json(run_dir / "artifacts" / f"{nid}.json") for nid in nodes}
    esc = html.escape
    links, out_figs = _outputs(run_dir)
    per_node = "".join(sections.node_section(run_dir, nid, n, diags[nid]) for nid, n in nodes.items())
    libs = ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items() if v)
    st = status.get("status", "unknown")
    message = f"<p class='msg'>{esc(str(status.get('message')))}</p>" if status.get("message") else ""
    nav = " ".join(f"<a href='#{a}'>{t}</a>" for a, t in (
        ("nodes", "Nodes"), ("timeline", "Timeline"), ("sections", "Node sections"),
        ("outputs", "Outputs"), ("graph", "Graph"), ("environment", "Environment")))
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Starloom run {esc(run_dir.name)}</title>
<style>{_STYLE} h1 span {{background: {_COLOURS.get(st, '#c33')}}}</style></head><body>
<h1>{esc(graph.get('metadata', {}).get('name') or 'Starloom run')} <span>{esc(st)}</span></h1>
<p>Run <code>{esc(run_dir.name)}</code>{f", {status['seconds']} s" if 'seconds' in status else ''};
{len(status.get('executed', []))} node(s) executed, {len(status.get('cached', []))} from cache.</p>
{message}{_status_note(run_dir, status)}
<nav>{nav}</nav>
{_guard_rail_section(diags)}
<h2 id='nodes'>Nodes</h2>
<table><tr><th>node</th><th>type</th><th>state</th><th>seconds</th><th>frames</th><th>message</th></tr>
{_node_table(nodes)}</table>
<h2 id='timeline'>Timeline</h2>{_timeline(events, st, len(nodes))}
<h2 id='sections'>Node sections</h2>{per_node}
<h2 id='outputs'>Outputs</h2><ul>{links or '<li>none</li>'}</ul>
{out_figs}
<h2 id='graph'>Graph</h2>{sections.graph_html(graph)}
<h2 id='environment'>Environment</h2><p><small>Python {esc(str(env.get('python')))} on {esc(str(env.get('platform')))};
{esc(libs)}</small></p>
</body></html>
"""
    out = run_dir / "artifacts" / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, doc)  # a browser may be showing the previous report
    return out
