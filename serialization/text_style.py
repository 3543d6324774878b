"""The layout of a graph file's text, kept when an edited graph is saved.

Graph files are meant to be read and diffed by people: the shipped examples put each node, edge
and graph parameter on one line. :func:`text_style` reads how a file is laid out and
:func:`format_graph` writes a document the same way, so an edit changes only the lines it has
to (a file written by :meth:`GraphDocument.to_json <starloom.serialization.GraphDocument.to_json>`
keeps that canonical, fully indented form).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TextStyle:
    """How a graph file is laid out.

    Attributes
    ----------
    indent : int
        Spaces per level.
    inline_depth : int or None
        Containers at this depth or deeper are written on one line (depth 1 is a top-level
        key's value); None indents everything, as :meth:`GraphDocument.to_json` does.
    int_positions : bool
        Whole-number node positions written as integers (``40``, not ``40.0``).
    ascii_only : bool
        Non-ASCII characters written as ``\\u`` escapes.
    final_newline : bool
    """

    indent: int = 2
    inline_depth: int | None = None
    int_positions: bool = False
    ascii_only: bool = True
    final_newline: bool = True


CANONICAL = TextStyle()


def _depth_of_inline(lines: list[str], indent: int) -> int | None:
    """Shallowest depth at which a non-empty container is written on one line."""
    best = None
    for line in lines:
        stripped = line.strip().rstrip(",")
        body = stripped.split(": ", 1)[1] if stripped.startswith('"') and ": " in stripped \
            else stripped
        if len(body) > 2 and body[0] in "[{" and body[-1] in "]}":
            # A "key": {...} line's indent is its value's depth, as for a list item.
            depth = (len(line) - len(line.lstrip(" "))) // max(indent, 1)
            best = depth if best is None else min(best, depth)
    return best


def text_style(text: str) -> TextStyle:
    """The layout of a graph file's text (defaults where the text does not tell)."""
    lines = text.splitlines()
    indents = [len(m.group(1)) for line in lines[1:] if (m := re.match(r"^( +)\S", line))]
    indent = min(indents) if indents else 2
    raw = json.loads(text)
    positions = [v for n in raw.get("nodes", []) if isinstance(n, dict)
                 for k, v in (n.get("ui") or {}).items() if k in ("x", "y")]
    return TextStyle(
        indent=indent,
        inline_depth=_depth_of_inline(lines[1:], indent),
        int_positions=all(isinstance(v, int) for v in positions),
        ascii_only=text.isascii(),
        final_newline=text.endswith("\n"))


def _plain(doc) -> dict:
    """The document as JSON values, without empty labels (``"label": null`` says nothing)."""
    data = doc.model_dump(mode="json", by_alias=True)
    for node in data.get("nodes", []):
        ui = node.get("ui")
        if isinstance(ui, dict) and ui.get("label") is None:
            ui.pop("label", None)
    return data


def _whole(data: dict) -> None:
    canvas = data.get("ui") or {}
    places = [node.get("ui") or {} for node in data.get("nodes", [])]
    places += canvas.get("groups", []) + canvas.get("comments", [])
    for ui in places:
        for k in ("x", "y", "w", "h"):
            if isinstance(ui.get(k), float) and ui[k].is_integer():
                ui[k] = int(ui[k])


def _dump(value: Any, depth: int, style: TextStyle) -> str:
    one_line = json.dumps(value, ensure_ascii=style.ascii_only)
    if not isinstance(value, (dict, list)) or not value or (
            style.inline_depth is not None and depth >= style.inline_depth):
        return one_line
    pad = " " * (style.indent * (depth + 1))
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k, ensure_ascii=style.ascii_only)}: "
                 f"{_dump(v, depth + 1, style)}" for k, v in value.items()]
        open_, close = "{", "}"
    else:
        items = [pad + _dump(v, depth + 1, style) for v in value]
        open_, close = "[", "]"
    return open_ + "\n" + ",\n".join(items) + "\n" + " " * (style.indent * depth) + close


def format_graph(doc, style: TextStyle = CANONICAL) -> str:
    """The text of a graph document laid out in ``style``.

    With :data:`CANONICAL` it is :meth:`GraphDocument.to_json` (labels kept, even empty);
    any other style also leaves out empty labels.
    """
    if style == CANONICAL:
        return doc.to_json()
    data = _plain(doc)
    if style.int_positions:
        _whole(data)
    return _dump(data, 0, style) + ("\n" if style.final_newline else "")
