"""The Dask executor: the frames of per-frame nodes and the stack's row bands as Dask tasks.

``starloom run GRAPH --executor dask`` starts a ``dask.distributed.LocalCluster`` (one
single-threaded worker process per core, or ``--workers N``); ``--scheduler ADDRESS`` (e.g.
``tcp://10.0.0.5:8786``) uses a running cluster instead, e.g. one dask-jobqueue started on
SLURM or PBS. Each frame is one task (``client.map`` of
:func:`~.frame_task.compute_frame`, ``pure=False``) that reads its frame from its file, stores
its result in the cache and returns references; the run itself (planning, whole-image nodes,
the run directory) stays in the ``starloom`` process.

The band reduction of the stack (``stacking.combine``) is split into chunked tasks: the node
takes :meth:`DaskExecutor.band_map` through ``ctx.band_map`` and gives it to
:func:`starloom.astro.combiner.combine_bands`, which cuts the rows into ranges (each within the
node's ``memory_limit``, at least one per worker thread) and maps its range task over them. Each
task reads its rows of every frame from the frames' files, with the per-frame normalization
and weights computed before the bands (they travel with the task, pickled by cloudpickle), and
returns the combined rows, which ``combine_bands`` copies to their place as they arrive (the
order tasks finish in does not matter). A killed worker's range is computed again. Every pixel is computed the same
way whatever the range, so the image, its uncertainty and the rejection map are the bits of
the local run (``tests/test_dask_bands.py``). Local executors return no band map: on one
machine the stack's own threads share the bands in memory, which beats sending them to other
processes.

What every worker must see at the same paths: the graph's input files, the cache folder
(``--cache`` or ``STARLOOM_CACHE``) and the run directory (workers write per-frame artifacts
there). A task whose worker dies (killed, out of memory) is run again on another worker by the
scheduler (up to ``distributed.scheduler.allowed-failures`` times); a task that raises is
retried ``retries`` times. A recomputed frame gives the same bits: nodes are deterministic and
the cache's per-key lock makes a second computation of one key wait and reuse the first.
"""
from __future__ import annotations

import dataclasses

from .executor import Executor


class DaskExecutor(Executor):
    """Frames as tasks on a Dask cluster (started on first use, closed by :meth:`close`).

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler; default: start a ``LocalCluster``.
    workers : int
        Worker processes of the ``LocalCluster`` (one thread each).
    retries : int
        Times a task that raised is tried again.
    client : distributed.Client, optional
        An existing client to use (not closed by :meth:`close`).
    """

    def __init__(self, scheduler: str | None = None, workers: int = 1, retries: int = 2,
                 client=None):
        self.scheduler, self.workers, self.retries = scheduler, workers, retries
        self._client, self._own = client, client is None
        self._cluster = None

    @property
    def client(self):
        if self._client is None:
            from distributed import Client, LocalCluster
            if self.scheduler:
                self._client = Client(self.scheduler)
            else:
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                             processes=True, dashboard_address=None)
                self._client = Client(self._cluster)
        return self._client

    def map(self, fn, items):
        from distributed import as_completed
        items, kwargs = list(items), {}
        shared = getattr(items[0], "shared", None) if items else None
        if shared and all(getattr(t, "shared", None) is shared for t in items):
            # The frames' common inputs (e.g. a master bias) go to the workers once, not once
            # per task; compute_frame puts them back into each task.
            kwargs["shared"] = self.client.scatter([shared], broadcast=True, hash=False)[0]
            items = [dataclasses.replace(t, shared={}) for t in items]
        futures = self.client.map(fn, items, retries=self.retries, pure=False, **kwargs)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                yield index[fut.key], fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def band_map(self):
        return self.map  # a whole-image node's row bands become tasks too

    def band_slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def close(self) -> None:
        if self._own and self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
