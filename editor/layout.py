"""Where nodes go: columns by depth, left to right, and the place of a node added to a graph."""
from __future__ import annotations

from starloom.serialization import GraphDocument

LAYER_DX, ROW_GAP, MARGIN = 290, 40, 40


def depths(doc: GraphDocument) -> dict[str, int]:
    """Each node's column: 0 for nodes fed by none, else one more than its deepest feeder (an
    edge closing a cycle is ignored)."""
    preds: dict[str, list[str]] = {n.id: [] for n in doc.nodes}
    for e in doc.edges:
        if e.source[0] in preds and e.target[0] in preds:
            preds[e.target[0]].append(e.source[0])
    depth: dict[str, int] = {}

    def d(nid: str, seen: tuple = ()) -> int:
        if nid not in depth:
            depth[nid] = 1 + max((d(p, seen + (nid,)) for p in preds[nid] if p not in seen),
                                 default=-1)
        return depth[nid]

    return {nid: d(nid) for nid in preds}


def arranged(doc: GraphDocument, heights: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Top-left corners of the nodes laid out in columns by :func:`depths`, each column stacked
    in document order without overlap (``heights`` gives each node's height)."""
    bottom: dict[int, float] = {}
    positions = {}
    for nid, col in depths(doc).items():
        y = bottom.get(col, MARGIN)
        positions[nid] = (float(MARGIN + col * LAYER_DX), float(y))
        bottom[col] = y + heights.get(nid, 0.0) + ROW_GAP
    return positions


def next_position(doc: GraphDocument) -> tuple[float, float]:
    """Where a node added without a position goes: right of the rightmost node."""
    if not doc.nodes:
        return float(MARGIN), float(MARGIN)
    return max(n.ui.x for n in doc.nodes) + LAYER_DX, float(MARGIN)
