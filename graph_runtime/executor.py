"""Executors: where the frames of a per-frame node are computed.

The graph walk (:mod:`starloom.graph_runtime.run`) is the same everywhere; an executor only
decides where the independent frames of one per-frame node (calibrate, register, detect stars,
solve, ...) run. Each frame is a :class:`~.frame_task.FrameTask` given to
:func:`~.frame_task.compute_frame`, which reads its inputs from files, writes its result into
the on-disk cache and returns references, so no memory is shared between processes.

- :class:`LocalExecutor`: one frame after another in the run's process (the library default,
  ``Run(...)`` without an executor, and ``--workers 1``).
- :class:`ProcessExecutor`: a pool of worker processes on this machine (the default of the
  command line and the editor: one per core, ``STARLOOM_WORKERS`` or ``starloom run --workers
  N``).
- :class:`~.executor_dask.DaskExecutor`: Dask tasks on a ``LocalCluster`` or an existing
  cluster (``starloom run --executor dask [--scheduler ADDRESS]``); the stack's row bands
  become tasks too (:meth:`Executor.band_map`).

Process start method: ``fork`` when the calling process runs a single Python thread (the
command line): it is the cheapest start (no re-import; workers begin with the modules the run
has loaded). From a process with other threads (the editor runs graphs in a worker thread)
``forkserver`` is used, because forking a multi-threaded process copies locks other threads may
hold at that instant (a child can deadlock on them); the fork server is a fresh single-threaded
process that preloads the engine once per run. (The command line's progress bars run without
tqdm's monitor thread for this reason.) Workers end with the run, also when it is killed
(:func:`_die_with_parent`). Frames of a node class that cannot be pickled (defined inside a
function) and a node with a single frame to compute run in the run's process.
"""
from __future__ import annotations

import os
import signal
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Iterator

from starloom.astro.errors import StarloomError


class Executor(ABC):
    """Runs independent tasks; yields ``(index, result)`` as each finishes.

    ``in_process`` is True when tasks run in the calling process (they may then use the run
    itself as their host, see :func:`~.frame_task.compute_frame`).
    """

    in_process = False

    @abstractmethod
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Apply ``fn`` to each item. Exceptions propagate to the caller; closing the
        generator early (a cancelled run) cancels the tasks not yet started."""

    def band_map(self) -> Callable | None:
        """The mapper a whole-image node gives its chunked work (the stack's row bands, see
        :meth:`~.context.NodeContext.band_map`), or None to keep that work in the run's process
        on the node's own threads: on one machine, threads sharing the frames' bands beat
        sending each band to another process. The Dask executor returns its :meth:`map`."""
        return None

    def band_slots(self) -> int:
        """How many tasks of :meth:`band_map` run at once (1 without a band map)."""
        return 1

    def start(self) -> None:
        """Start the workers now (e.g. while the process is still single-threaded, see the
        module docstring); by default they start on the first :meth:`map`."""

    def close(self) -> None:
        """Release workers (they start again on the next :meth:`map`)."""


class LocalExecutor(Executor):
    """Runs tasks one after another in the calling process."""

    in_process = True

    def map(self, fn, items):
        for i, item in enumerate(items):
            yield i, fn(item)


class ProcessExecutor(Executor):
    """A pool of ``workers`` processes on this machine, started on first use, kept until
    :meth:`close` (the run closes it when it ends).

    Parameters
    ----------
    workers : int
        Number of worker processes (>= 1).
    start_method : {"fork", "forkserver", "spawn"}, optional
        Default: ``fork`` from a single-threaded process, else ``forkserver`` (see the module
        docstring).
    """

    def __init__(self, workers: int, start_method: str | None = None):
        self.workers = int(workers)
        self.start_method = start_method
        self._pool = None

    def _get_pool(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            method = self.start_method or (
                "fork" if threading.active_count() == 1 else "forkserver")
            ctx = multiprocessing.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload(["starloom.graph_runtime.frame_task"])
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                             initializer=_die_with_parent,
                                             initargs=(os.getpid(), method == "fork"))
        return self._pool

    def start(self) -> None:
        self._get_pool().submit(os.getpid).result()

    def map(self, fn, items):
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool
        pool = self._get_pool()
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        try:
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    self.close()
                    raise StarloomError("a worker process died while computing frames (out "
                                        "of memory?); try fewer workers (--workers, "
                                        "STARLOOM_WORKERS)") from None
                yield futures[fut], result
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _die_with_parent(run: int, forked: bool) -> None:
    """Worker start: end this worker when the run's process ends, even by SIGKILL.

    Otherwise the workers of a killed ``starloom run`` would wait forever on a queue nobody
    feeds, holding copies of its open files (its output pipes, its locks). A forked worker
    asks Linux for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``); a worker of the fork
    server (whose parent outlives the run) watches the run's process instead.
    """
    if forked:
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PDEATHSIG
        except (OSError, AttributeError):
            pass  # not Linux: the pool ends its workers when the run ends normally
        if os.getppid() != run:
            os._exit(1)  # the run died before prctl took effect
        return
    threading.Thread(target=_watch_run, args=(run,), daemon=True).start()


def _watch_run(run: int) -> None:
    import time
    while _alive(run):
        time.sleep(1.0)
    os._exit(1)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed process not yet reaped, a zombie, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def make_executor(kind: str = "local", workers: int | str | None = None,
                  scheduler: str | None = None) -> Executor:
    """The executor the command line asks for.

    Parameters
    ----------
    kind : {"local", "dask"}
        ``local``: worker processes on this machine (in-process for one worker); ``dask``:
        a Dask cluster.
    workers : int or str, optional
        Worker processes (default ``STARLOOM_WORKERS``, else the cores); for Dask, the
        workers of the ``LocalCluster`` it starts.
    scheduler : str, optional
        Address of a running Dask scheduler (implies ``dask``).

    Raises
    ------
    StarloomError
        A bad worker count or executor name.
    """
    from .frame_task import worker_count
    if scheduler or kind == "dask":
        from .executor_dask import DaskExecutor
        return DaskExecutor(scheduler, worker_count(workers))
    if kind != "local":
        raise StarloomError(f"--executor: expected 'local' or 'dask', got '{kind}'")
    n = worker_count(workers)
    return LocalExecutor() if n == 1 else ProcessExecutor(n)
