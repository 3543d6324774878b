"""Provenance: the HISTORY cards the runtime writes into every image a node outputs.

As ccdproc's ``log_to_metadata`` does for its functions, each image output (a ``CCDData``, one
output frame of a per-frame node, or an in-memory frame of a ``FrameSeries`` output) gets::

    HISTORY starloom <type_id> v<version>
    HISTORY   params {<non-default parameters>}
    HISTORY   <note>

The params line is left out when every parameter has its default, the note line when the node
gave none (``ctx.history``). There is no timestamp: identical inputs must give identical outputs,
because outputs are keyed by content.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from astropy.nddata import CCDData

from starloom.astro.frames import FrameRef, FrameSeries, as_header

from .node import is_knob

# (image or None for every image of the call, note)
Notes = list[tuple[CCDData | None, str]]


def history_lines(node_cls, params, note: str = "") -> list[str]:
    """The HISTORY lines naming ``node_cls``, its version and the non-default ``params``.

    ``path`` parameters are left out (a run's paths are in graph.json), and so are knobs, which
    do not change the result (and are not in the cache key either).
    """
    cls = type(params)
    changed = {k: v for k, v in params.model_dump(mode="json").items()
               if v != cls.model_fields[k].default and k != "path" and not is_knob(cls, k)}
    lines = [f"starloom {node_cls.type_id} v{node_cls.version}"]
    if changed:
        lines.append(f"  params {changed}"[:2000])
    if note:
        lines.append(f"  {note}")
    return lines


def add_provenance(outputs: dict[str, Any], node_cls, params, notes: Notes = ()) -> dict[str, Any]:
    """``outputs`` with the provenance HISTORY added to every image in them.

    Parameters
    ----------
    outputs : dict
        A node's output values by port.
    node_cls : type[Node]
        The node type.
    params : Params
        Its validated parameters.
    notes : list of (CCDData or None, str)
        Notes from ``ctx.history``: for one image (matched by identity), or for all when None.

    Returns
    -------
    dict
        The outputs; images are new ``CCDData`` objects sharing the arrays but with their own
        header, so an input image passed through unchanged is never altered in place. In-memory
        frames of a series get a new content key, as ``FrameSeries.from_frames`` computes it.
    """
    def stamp(ccd: CCDData) -> CCDData:
        header = as_header(ccd.meta).copy()
        for line in history_lines(node_cls, params) + [f"  {n}" for img, n in notes
                                                        if n and (img is None or img is ccd)]:
            header.add_history(line)
        out = copy.copy(ccd)  # shallow: shares data, mask, uncertainty and WCS
        out.meta = header
        return out

    def stamp_ref(ref: FrameRef) -> FrameRef:
        data = stamp(ref.data)
        fresh = FrameSeries.from_frames([data], [ref.name]).refs[0]
        return dataclasses.replace(ref, key=fresh.key, data=data, meta={**ref.meta, **fresh.meta})

    out = {}
    for port, value in outputs.items():
        if isinstance(value, CCDData):
            value = stamp(value)
        elif isinstance(value, FrameSeries) and any(r.data is not None for r in value.refs):
            value = FrameSeries([stamp_ref(r) if r.data is not None else r for r in value.refs])
        out[port] = value
    return out
