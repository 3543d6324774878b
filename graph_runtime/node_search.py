"""Finding node types by what a user types: the search behind the editor's node palette.

Plain functions over a :class:`~starloom.graph_runtime.registry.Registry`, without Qt, so the
ranking is tested on its own and any front end (the editor's palette, a future CLI completion)
ranks alike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+")
# Each searched field, with the score of a whole-word match and of a prefix match; a title word
# outranks a type-id part, which outranks the category, which outranks description words,
# because users type what they read on the node.
_FIELDS = (("title", 100, 60), ("type", 80, 50), ("category", 40, 25), ("description", 10, 4))


@dataclass(frozen=True)
class Match:
    """One node type found.

    Attributes
    ----------
    type_id : str
    title : str
    category : str
    score : int
        Higher is better.
    port : str or None
        With a dragged port, the port of this type that fits it (connected on choice).
    """

    type_id: str
    title: str
    category: str
    score: int
    port: str | None = None


def _words(text: str) -> list[str]:
    return _WORD.findall((text or "").lower())


def _fields(cls) -> dict[str, list[str]]:
    return {"title": _words(cls.title or cls.type_id), "type": _words(cls.type_id),
            "category": _words(cls.category or ""), "description": _words(cls.description)}


def _token_score(token: str, fields: dict[str, list[str]]) -> int:
    """Best score of one typed word over the fields; 0 if it matches none."""
    best = 0
    for name, exact, prefix in _FIELDS:
        for word in fields[name]:
            if word == token:
                best = max(best, exact)
            elif word.startswith(token):
                best = max(best, prefix)
    return best


def score(cls, query: str) -> int:
    """How well node type ``cls`` fits ``query`` (0: it does not).

    Every typed word must match (whole or as a word's prefix) the title, type id, category or
    description; whole-query matches on the title or type id come first.
    """
    tokens = _words(query)
    if not tokens:
        return 1
    fields = _fields(cls)
    total = 0
    for token in tokens:
        s = _token_score(token, fields)
        if s == 0:
            return 0
        total += s
    q = query.strip().lower()
    title, type_id = (cls.title or cls.type_id).lower(), cls.type_id.lower()
    if q in (title, type_id):
        total += 1000
    elif title.startswith(q) or type_id.startswith(q) or type_id.split(".")[-1].startswith(q):
        total += 500
    return total


def fitting_port(cls, port, output: bool) -> str | None:
    """The first port of ``cls`` a dragged port can connect to (None if none).

    Parameters
    ----------
    cls : type[Node]
    port : InputPort or OutputPort
        The port the wire was dragged from.
    output : bool
        Whether ``port`` is an output (then an input of ``cls`` is wanted).
    """
    if output:
        return next((n for n, p in cls.inputs.items() if p.accepts(port)), None)
    return next((n for n, p in cls.outputs.items() if port.accepts(p)), None)


def search(registry, query: str, port=None, output: bool = True) -> list[Match]:
    """Node types matching ``query``, best first (ties by title).

    Parameters
    ----------
    registry : Registry
    query : str
        What the user typed; empty lists every type (by category, then title).
    port : InputPort or OutputPort, optional
        Only types with a port fitting this one (a wire dragged into empty space).
    output : bool
        Whether ``port`` is an output.
    """
    found = []
    for cls in registry:
        s = score(cls, query)
        if s == 0:
            continue
        fit = None
        if port is not None:
            fit = fitting_port(cls, port, output)
            if fit is None:
                continue
        found.append(Match(cls.type_id, cls.title or cls.type_id, cls.category or "other",
                           s, fit))
    if not _words(query):
        return sorted(found, key=lambda m: (m.category, m.title.lower()))
    return sorted(found, key=lambda m: (-m.score, m.title.lower()))
