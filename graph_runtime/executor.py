"""Executors: where per-frame work runs.

The graph walk (:mod:`starloom.graph_runtime.run`) is the same everywhere; an executor only
decides where the independent per-frame computations of one node run. :class:`LocalExecutor`
runs them in this process, in order. A Dask executor implements the same ``map`` with
``client.map``: the tasks it receives read their inputs from files and write their results into
the on-disk cache, so they need no shared memory.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Iterator


class Executor(ABC):
    """Runs independent tasks; yields ``(index, result)`` as each finishes."""

    @abstractmethod
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Apply ``fn`` to each item. Exceptions propagate to the caller."""


class LocalExecutor(Executor):
    """Runs tasks one after another in the calling process (the default)."""

    def map(self, fn, items):
        for i, item in enumerate(items):
            yield i, fn(item)
