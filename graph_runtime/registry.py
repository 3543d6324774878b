"""The node registry: built-in node types and third-party packages found by entry point.

A node package exposes, in the entry-point group ``starloom.nodes``, a callable taking the
registry (``register_all(registry)``) that calls :meth:`Registry.add` for each of its node types.
Starloom's own nodes are registered the same way (``builtin = starloom.nodes:register_all``).
"""
from __future__ import annotations

import logging
from importlib.metadata import entry_points

from starloom.astro.errors import StarloomError
from .node import Node

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "starloom.nodes"


class Registry:
    """Node types by ``type_id``."""

    def __init__(self):
        self._types: dict[str, type[Node]] = {}
        self.load_errors: dict[str, str] = {}

    def add(self, node_cls: type[Node]) -> type[Node]:
        """Register a node class (usable as a decorator). A duplicate type id is an error."""
        tid = node_cls.type_id
        if tid in self._types and self._types[tid] is not node_cls:
            raise StarloomError(f"node type '{tid}' registered twice "
                                f"({self._types[tid].__module__} and {node_cls.__module__})")
        self._types[tid] = node_cls
        return node_cls

    def get(self, type_id: str) -> type[Node]:
        try:
            return self._types[type_id]
        except KeyError:
            raise StarloomError(f"unknown node type '{type_id}'") from None

    def __contains__(self, type_id: str) -> bool:
        return type_id in self._types

    def __iter__(self):
        return iter(sorted(self._types.values(), key=lambda c: (c.category, c.type_id)))

    def __len__(self) -> int:
        return len(self._types)


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, filled from every ``starloom.nodes`` entry point on first use.

    A plugin that fails to import is skipped with its error kept in ``load_errors`` (shown by
    ``starloom nodes``), so one broken package does not stop Starloom.
    """
    global _default
    if _default is None:
        reg = Registry()
        eps = entry_points(group=ENTRY_POINT_GROUP)
        if not any(ep.value.startswith("starloom.nodes") for ep in eps):
            raise StarloomError("Starloom's built-in nodes are not registered: install Starloom "
                                "(pip install -e .) so its 'starloom.nodes' entry point exists")
        for ep in eps:
            try:
                ep.load()(reg)
            except Exception as e:  # a broken plugin must not take the built-ins down
                if ep.value.startswith("starloom.nodes"):
                    raise
                reg.load_errors[ep.name] = f"{type(e).__name__}: {e}"
                log.warning("node package '%s' failed to load: %s", ep.name, e)
        _default = reg
    return _default
