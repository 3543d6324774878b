"""The kinds of run events, named once.

Every event a :class:`~starloom.graph_runtime.run.Run` emits is a dict with ``"t"`` (UTC time),
``"event"`` (one of :class:`Event`) and kind-specific fields such as ``node``, ``frame``, ``key``,
``seconds`` or ``message``. The same records are written to ``logs/run_events.jsonl`` (except
``progress``) and passed to the run's listeners.

:class:`Event` is a :class:`enum.StrEnum`, so its members compare equal to the plain strings
stored in the event log (``Event.NODE_FINISHED == "node_finished"``); readers of old logs and
listeners written against strings keep working.
"""
from __future__ import annotations

import enum


class Event(enum.StrEnum):
    """Kind of a run event (the value of its ``"event"`` field)."""

    RUN_STARTED = "run_started"
    """The walk begins; ``nodes`` lists the node ids in execution order."""
    NODE_STARTED = "node_started"
    """A node is computed (not found in the cache); ``key`` is its cache key."""
    NODE_CACHED = "node_cached"
    """A node's outputs came from the cache; ``key`` is its cache key."""
    NODE_FINISHED = "node_finished"
    """A node was computed; ``seconds`` is its wall time."""
    NODE_FAILED = "node_failed"
    """A node (or one of its frames, ``frame``) failed; ``message`` says why."""
    FRAME_CACHED = "frame_cached"
    """One frame of a per-frame node came from the cache."""
    FRAME_COMPUTED = "frame_computed"
    """One frame of a per-frame node was computed (or rejected) in ``seconds``."""
    FRAME_REJECTED = "frame_rejected"
    """A per-frame node dropped one frame (``message`` says why); the run goes on."""
    PROGRESS = "progress"
    """``done`` of ``total`` steps; only passed to listeners, not logged."""
    WARNING = "warning"
    """A node reported a problem that does not stop it (``message``)."""
    RUN_CANCELLED = "run_cancelled"
    """The run stopped at a node or frame boundary because it was cancelled."""
    RUN_FINISHED = "run_finished"
    """The walk ended; ``status`` is ok, failed or cancelled."""
