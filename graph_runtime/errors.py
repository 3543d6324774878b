"""Errors of the engine: a node that failed while running, a cancelled run.

The errors every layer shares (:class:`~starloom.astro.errors.StarloomError` and its kin) live in
the lowest layer, :mod:`starloom.astro.errors`.
"""
from __future__ import annotations

from starloom.astro.errors import StarloomError


class NodeError(StarloomError):
    """A node failed while running; names the node id (and frame, when per frame)."""

    def __init__(self, node_id: str, message: str, frame: str | None = None):
        self.node_id = node_id
        self.frame = frame
        where = f"node '{node_id}'" + (f", frame {frame}" if frame else "")
        super().__init__(f"{where}: {message}")


class Cancelled(StarloomError):
    """The run was cancelled by the user."""
