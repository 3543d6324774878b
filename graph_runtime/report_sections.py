"""Parts of the run report: embedded images, node diagnostics as tables, guard rails, the graph.

Everything here returns HTML text; images are embedded as ``data:`` URIs so ``report.html`` is
one self-contained file that can be mailed or archived.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

esc = html.escape

#: At most this many per-frame artifact images of one node are embedded (the rest are listed).
MAX_IMAGES_PER_NODE = 12
#: Table rows shown per diagnostics table.
MAX_ROWS = 300
#: Output PNGs larger than this are linked, not embedded (a full-size stack can be tens of MB).
MAX_EMBED_BYTES = 8 * 2**20


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes (RFC 2397)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(path: Path, caption: str) -> str:
    """An embedded ``<figure>`` of a PNG file, or a link when it is too large or unreadable."""
    try:
        size = path.stat().st_size
        if size > MAX_EMBED_BYTES:
            return f"<p><a href='../{esc(caption)}'>{esc(caption)}</a> ({size / 1e6:.1f} MB)</p>"
        src = data_uri(path.read_bytes())
    except OSError:
        return ""
    return f"<figure><img src='{src}' alt='{esc(caption)}'><figcaption>{esc(caption)}</figcaption></figure>"


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if _is_scalar(v):
        return esc(str(v)) if v is not None else ""
    text = json.dumps(v, default=str)
    return esc(text if len(text) <= 40 else text[:37] + "...")


def table(rows: list[dict], first: str | None = None) -> str:
    """An HTML table of dict rows, columns in first-seen order (at most :data:`MAX_ROWS`)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    if first and first in cols:
        cols.remove(first)
        cols.insert(0, first)
    head = "".join(f"<th>{esc(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>"
                   for r in rows[:MAX_ROWS])
    more = (f"<p><small>{len(rows) - MAX_ROWS} more rows in the node's JSON.</small></p>"
            if len(rows) > MAX_ROWS else "")
    return f"<table class='diag'><tr>{head}</tr>{body}</table>{more}"


def _flat(d: dict) -> dict:
    """One level of nested dicts flattened into ``outer.inner`` keys (for table rows)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and all(_is_scalar(x) for x in v.values()) and len(v) <= 8:
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def diagnostics_html(diag: dict, depth: int = 0) -> str:
    """A node's diagnostics summarized: scalars as a key/value table, per-frame dicts and lists
    of records as tables, other nesting as sub-blocks (two levels), the rest as short JSON."""
    if not isinstance(diag, dict) or not diag:
        return ""
    scalars = {k: v for k, v in diag.items() if _is_scalar(v) or
               (isinstance(v, list) and all(_is_scalar(x) for x in v) and len(v) <= 12)}
    parts = []
    if scalars:
        parts.append("<table class='kv'>" + "".join(
            f"<tr><th>{esc(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in scalars.items())
            + "</table>")
    for k, v in diag.items():
        if k in scalars or k == "guard_rails":
            continue
        title = f"<h4>{esc(str(k))}</h4>"
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            rows = [{"": name, **_flat(x)} for name, x in v.items()]
            parts.append(title + table(rows, first=""))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            parts.append(title + table([_flat(x) for x in v]))
        elif isinstance(v, list) and all(_is_scalar(x) for x in v):
            parts.append(title + "<ul>" + "".join(f"<li>{_cell(x)}</li>" for x in v[:MAX_ROWS]) + "</ul>")
        elif isinstance(v, dict) and depth < 2:
            parts.append(title + diagnostics_html(v, depth + 1))
        else:
            parts.append(title + f"<pre>{_cell(v)}</pre>")
    return "".join(parts)


def guard_rails(diags: dict[str, dict]) -> list[dict]:
    """Every node's ``guard_rails`` records, with the node id, in graph order."""
    rows = []
    for nid, d in diags.items():
        for r in (d or {}).get("guard_rails", []) if isinstance(d, dict) else []:
            if isinstance(r, dict):
                rows.append({"node": nid, **r})
    return rows


def node_images(run_dir: Path, nid: str) -> str:
    """The node's artifact PNGs embedded (``artifacts/<nid>/**``), the first few per-frame ones."""
    folder = run_dir / "artifacts" / nid
    pngs = sorted(folder.rglob("*.png")) if folder.is_dir() else []
    shown = pngs[:MAX_IMAGES_PER_NODE]
    figs = "".join(figure(p, p.relative_to(run_dir).as_posix()) for p in shown)
    rest = pngs[MAX_IMAGES_PER_NODE:]
    if rest:
        figs += f"<p><small>{len(rest)} more image(s) in artifacts/{esc(nid)}/.</small></p>"
    return figs


def node_section(run_dir: Path, nid: str, state: dict, diag: dict | None) -> str:
    """One node's section: heading with its state, its figures, its diagnostics."""
    secs = f", {state['seconds']} s" if state.get("seconds") not in ("", None) else ""
    body = node_images(run_dir, nid) + diagnostics_html(diag or {})
    msg = (f"<p class='msg'>{esc(str(state['message']))}</p>" if state.get("message") else "")
    return (f"<section class='node' id='node-{esc(nid)}'><h3>{esc(nid)} <small>{esc(state['type'])}"
            f" &middot; <span class='st-{esc(state['state'])}'>{esc(state['state'])}</span>{secs}"
            f"</small></h3>{msg}{body or '<p><small>no diagnostics</small></p>'}</section>")


def graph_html(graph: dict) -> str:
    """The graph as run: its parameters, each node's type and parameters, and its edges."""
    params = graph.get("parameters") or {}
    prows = [{"parameter": k, "type": v.get("type"), "value": v.get("default"),
              "binds": ", ".join(v.get("binds", []))} for k, v in params.items() if isinstance(v, dict)]
    nrows = [{"node": n.get("id"), "type": n.get("type"), "version": n.get("version"),
              "parameters": ", ".join(f"{k}={json.dumps(v, default=str)}"
                                      for k, v in (n.get("params") or {}).items())}
             for n in graph.get("nodes", [])]
    edges = "".join(f"<li><code>{esc(str(e.get('from')))}</code> &rarr; <code>{esc(str(e.get('to')))}"
                    f"</code></li>" for e in graph.get("edges", []))
    return ((f"<h3>Parameters</h3>{table(prows)}" if prows else "")
            + f"<h3>Nodes</h3>{table(nrows)}<h3>Edges</h3><ul class='edges'>{edges}</ul>")
