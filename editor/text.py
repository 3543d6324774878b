"""Node descriptions as a user reads them: the reStructuredText markup of docstrings removed.

Node descriptions are written for the documentation (``double backticks``, ``:class:`X```,
```text <url>`_``); the editor shows them as plain text or simple HTML.
"""
from __future__ import annotations

import html
import re

_ROLE = re.compile(r":[a-zA-Z:]+:`~?([^`]+)`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")
_LITERAL = re.compile(r"``([^`]+)``")
_INTERPRETED = re.compile(r"`([^`]+)`_*")
_EMPHASIS = re.compile(r"\*\*([^*]+)\*\*|\*([^*]+)\*")


def plain_description(text: str | None) -> str:
    """``text`` without reStructuredText markup, on one line."""
    text = " ".join((text or "").split())
    text = _ROLE.sub(lambda m: m.group(1).split(".")[-1], text)
    text = _LINK.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    return _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)


def html_description(text: str | None) -> str:
    """``text`` as HTML: literals in ``<code>``, other markup removed, the rest escaped."""
    parts = re.split(r"``([^`]+)``", " ".join((text or "").split()))
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(plain_description(p))
                   for i, p in enumerate(parts))
