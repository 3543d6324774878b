"""Graphs carried inside the images they made ("share a result, get its workflow").

Save nodes embed the graph as run (parameters given, paths resolved, the Starloom version in
``metadata.created_with``) into every FITS file (a binary-table extension ``STARLOOM-GRAPH``)
and PNG file (an ``iTXt`` chunk ``starloom-graph``) they write. :func:`load_any_graph` reads a
graph from a graph file or from such an image, validated like any graph file.
"""
from __future__ import annotations

from pathlib import Path

from starloom.astro import embed
from starloom.serialization import GraphDocument, GraphFileError, load_graph, parse_graph

from .versions import starloom_version

KEY = "starloom-graph"


def carries_graph(path) -> bool:
    """Whether ``path`` is a FITS or PNG file name (one that may carry a graph)."""
    name = Path(path).name.lower()
    return name.endswith(embed.FITS_SUFFIXES) or name.endswith(".png")


def embed_graph(path, graph_text: str):
    """Embed a graph's JSON text into the FITS or PNG file ``path``."""
    embed.add_text(path, KEY, graph_text, {"STLMVER": starloom_version() or "unknown"})


def embedded_graph_text(path) -> str | None:
    """The graph JSON text embedded in a FITS or PNG file, or None."""
    return embed.read_text(path, KEY)


def load_any_graph(path) -> GraphDocument:
    """Read a graph from a graph file, or from the FITS or PNG file a save node wrote.

    Raises
    ------
    GraphFileError
        If the file cannot be read, carries no graph, or its graph is not valid (the same
        checks as for a graph file).
    """
    path = Path(path)
    if not carries_graph(path):
        return load_graph(path)
    try:
        text = embedded_graph_text(path)
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise GraphFileError(f"{path}: cannot read an embedded graph: {e}") from None
    if text is None:
        raise GraphFileError(f"{path}: this image carries no Starloom graph (only files written "
                             f"by Starloom's save nodes do)")
    return parse_graph(text, f"{path} (embedded graph)")
