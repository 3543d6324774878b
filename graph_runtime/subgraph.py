"""The part of a graph a node depends on, to run up to that node only.

"Run to here" in a node editor computes a node and what feeds it, nothing downstream: the graph
is trimmed to the node's ancestors and run as usual, so every node it keeps has the same cache
key as in a whole run (its key depends only on its type, parameters and inputs).
"""
from __future__ import annotations

from typing import Iterable

from starloom.serialization import GraphDocument


def ancestors(doc: GraphDocument, node_ids: Iterable[str]) -> set[str]:
    """The given node ids and every node they depend on through edges.

    Parameters
    ----------
    doc : GraphDocument
    node_ids : iterable of str
        Ids of nodes of ``doc``.

    Returns
    -------
    set of str
    """
    feeders: dict[str, set[str]] = {}
    for e in doc.edges:
        feeders.setdefault(e.target[0], set()).add(e.source[0])
    found, todo = set(), list(node_ids)
    while todo:
        nid = todo.pop()
        if nid not in found:
            found.add(nid)
            todo.extend(feeders.get(nid, ()))
    return found


def upstream_document(doc: GraphDocument, node_ids: Iterable[str]) -> GraphDocument:
    """A copy of ``doc`` with only the given nodes and their ancestors.

    Edges between kept nodes stay; a graph parameter keeps its binds to kept nodes and is
    left out when it binds none of them (an unused parameter would be a validation problem).

    Parameters
    ----------
    doc : GraphDocument
    node_ids : iterable of str

    Returns
    -------
    GraphDocument
        A new document (``doc`` is not changed).

    Raises
    ------
    KeyError
        If a given id is not a node of ``doc``.
    """
    wanted = list(node_ids)
    for nid in wanted:
        doc.node(nid)  # raises KeyError for an unknown id
    keep = ancestors(doc, wanted)
    part = doc.model_copy(deep=True)
    part.nodes = [n for n in part.nodes if n.id in keep]
    part.edges = [e for e in part.edges if e.source[0] in keep and e.target[0] in keep]
    parameters = {}
    for name, gp in part.parameters.items():
        binds = [b for b in gp.binds if b.split(".")[0] in keep]
        if binds:
            parameters[name] = gp.model_copy(update={"binds": binds})
    part.parameters = parameters
    return part
