"""One frame of a per-frame node as a self-contained task, runnable in any process.

The graph walk (:mod:`.run`) turns each frame still to compute into a :class:`FrameTask`: the node
class (pickled by reference), its validated parameters, the node's other inputs, the frame's
reference, the frame's cache key and the folders of the run and the cache. :func:`compute_frame`
claims the key in the on-disk cache, runs the node, stores the output frame and returns a
:class:`FrameResult` holding only references, diagnostics and the names of the files it wrote, so
the result travels back cheaply from a worker process or a Dask worker on another host.

What a node does through its context in a worker (``ctx.warn``, the cache's repair warnings,
``FRAME_REJECTED``) is recorded there as events and replayed by the run in its own process, in
order, after the frame; ``ctx.progress`` inside one frame is not relayed (the run reports
progress frame by frame). In the run's own process (:class:`~.executor.LocalExecutor`) the run
itself is the host and events are emitted as they happen.
"""
from __future__ import annotations

import dataclasses
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starloom.astro.errors import FrameRejected, StarloomError

from .context import NodeContext
from .errors import Cancelled, NodeError
from .events import Event

if TYPE_CHECKING:  # the engine is imported by a fully cached run, which needs no science
    from starloom.astro.frames import FrameRef


@dataclass
class FrameTask:
    """Everything one frame of a per-frame node needs (all picklable)."""

    node_cls: type
    node_id: str
    params: Any
    shared: dict[str, Any]
    ref: FrameRef
    key: str
    pre: dict
    force: bool
    run_dir: str
    cache_root: str
    document: Any = None  # the plan's GraphDocument, for ctx.graph_json


@dataclass
class FrameResult:
    """What computing (or finding) one frame gave.

    ``frames`` are the output frame references by port (None for a rejected frame);
    ``seconds`` is None when another process stored the frame while this one waited for its
    key; ``events`` are ``(event, fields)`` recorded in a worker; ``error`` and ``trace`` are
    set when the node failed on this frame.
    """

    frames: dict[str, FrameRef] | None
    diagnostics: dict
    seconds: float | None
    files: dict[str, Path]
    events: list[tuple[str, dict]] = field(default_factory=list)
    error: str | None = None
    trace: str | None = None


_CACHES: dict[str, Any] = {}  # one Cache object per store and worker process


class WorkerHost:
    """The part of a run a node context needs, in a process that is not the run's."""

    def __init__(self, task: FrameTask):
        from .cache import Cache
        if task.cache_root not in _CACHES:
            _CACHES[task.cache_root] = Cache(task.cache_root)
        self.cache = _CACHES[task.cache_root]
        self.dir = Path(task.run_dir)
        self.plan_document = task.document
        self.events: list[tuple[str, dict]] = []
        self.cache.on_warning = lambda message, node: self.emit(
            Event.WARNING, node=node or "cache", message=message)

    def staging(self, node_id: str) -> Path:
        from .run import STAGING
        return self.dir / STAGING / node_id

    def check_cancelled(self) -> None:
        """Cancelling is the run's: it stops handing out frames (see the executors)."""

    def emit(self, event: Event, log: bool = True, **fields) -> None:
        if log:  # progress within one frame is not relayed
            self.events.append((str(event), {k: v for k, v in fields.items() if v is not None}))


def compute_frame(task: FrameTask, host=None, shared: dict | None = None) -> FrameResult:
    """Compute and store one frame of a per-frame node (see the module docstring).

    Parameters
    ----------
    task : FrameTask
    host : Run, optional
        The run, when called in its process; None in a worker process.
    shared : dict, optional
        The node's other inputs, when sent once for all frames (Dask scatters them) instead
        of in every task.

    Returns
    -------
    FrameResult
        A failure of the node is returned (``error``, ``trace``), not raised, so it crosses
        process boundaries as plain text; the run raises it as a :class:`NodeError`.
    """
    if shared is not None:
        task = dataclasses.replace(task, shared=shared)
    host = host or WorkerHost(task)
    cache = host.cache
    host.check_cancelled()
    entry = cache.claim(task.key, force=task.force)
    if entry is not None:
        return FrameResult(entry.frames, entry.diagnostics, None,
                           entry.restore_files(Path(task.run_dir)), _events(host))
    ctx = NodeContext(host, task.node_id, frame=task.ref.name)
    manifest = {"pre_image": task.pre, "node": task.node_id, "frame": task.ref.name}
    t0 = time.perf_counter()
    try:
        out = task.node_cls().run(ctx, task.params, frame=task.ref.read(), **task.shared)
        check_outputs(task.node_id, task.node_cls, out, per_frame=True)
    except FrameRejected as e:
        ctx.diagnostics["rejected"] = str(e)
        cache.put_rejected(task.key, str(e), {**manifest, "diagnostics": ctx.diagnostics},
                           ctx.files)
        host.emit(Event.FRAME_REJECTED, node=task.node_id, frame=task.ref.name, message=str(e))
        return FrameResult(None, ctx.diagnostics, time.perf_counter() - t0, ctx.files,
                           _events(host))
    except Cancelled:
        cache.release(task.key)
        raise
    except Exception as e:
        cache.release(task.key)
        msg = str(e) if isinstance(e, StarloomError) else f"{type(e).__name__}: {e}"
        if isinstance(e, NodeError):  # already names the node
            msg = msg.split(": ", 1)[-1]
        return FrameResult(None, ctx.diagnostics, None, ctx.files, _events(host), msg,
                           traceback.format_exc())
    from .provenance import add_provenance
    out = add_provenance(out, task.node_cls, task.params, ctx.notes)
    seconds = time.perf_counter() - t0
    frames = cache.put_frame(
        task.key, out, {**manifest, "seconds": seconds, "diagnostics": ctx.diagnostics},
        ctx.files, name=task.ref.name, meta={"path": task.ref.meta.get("path")})
    return FrameResult(frames, ctx.diagnostics, seconds, ctx.files, _events(host))


def _events(host) -> list:
    events = getattr(host, "events", None)
    if events is None:
        return []
    taken = list(events)
    events.clear()
    return taken


def check_outputs(node_id: str, node_cls, out, per_frame: bool = False) -> None:
    """Raise a :class:`NodeError` unless ``out`` is a dict with exactly the declared ports."""
    if not isinstance(out, dict):
        raise NodeError(node_id, f"run() returned {type(out).__name__}, expected a dict of "
                                 "outputs")
    if set(out) != set(node_cls.outputs):
        raise NodeError(node_id, f"run() returned ports {sorted(out)}, declared "
                                 f"{sorted(node_cls.outputs)}")
    if per_frame:
        from astropy.nddata import CCDData
        for p, v in out.items():
            if not isinstance(v, CCDData):
                raise NodeError(node_id, f"per-frame output '{p}' must be one CCDData frame")


def worker_count(workers: int | str | None = None) -> int:
    """Processes for per-frame work: ``workers``, else ``STARLOOM_WORKERS``, else the cores.

    Raises
    ------
    StarloomError
        Not a positive integer (names the setting).
    """
    source = "--workers"
    if workers is None:
        workers, source = os.environ.get("STARLOOM_WORKERS"), "STARLOOM_WORKERS"
    if workers in (None, ""):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    try:
        n = int(workers)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise StarloomError(f"{source}: expected a positive number of worker processes, "
                            f"got '{workers}'")
    return n
