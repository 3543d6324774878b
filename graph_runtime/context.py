"""The node context: what a node's ``run`` may touch (files, progress, diagnostics, history).

The same class serves a node run in the run's process and one frame of a per-frame node run in
a worker process (:mod:`.frame_task`): it only needs a *host* with ``dir``, ``cache``,
``staging(node_id)``, ``check_cancelled()``, ``emit(event, **fields)`` and ``plan_document``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NodeError
from .events import Event
from .versions import starloom_version

if TYPE_CHECKING:
    from astropy.nddata import CCDData

    from .provenance import Notes


class NodeContext:
    """What a node's ``run`` may touch: its output and artifact files, progress, diagnostics.

    Attributes
    ----------
    node_id : str
        Id of the running node.
    frame : str or None
        Name of the frame, for one frame of a per-frame node.
    diagnostics : dict
        JSON-able results the node records (``artifacts/<node_id>.json``, cached with it).
    files : dict of str to Path
        Files the node wrote through ``output_path``/``artifact_path``, by run-relative path.
    notes : list of (CCDData or None, str)
        Provenance notes given to :meth:`history`, read by the runtime.
    """

    def __init__(self, run, node_id: str, frame: str | None = None):
        self._run = run
        self.node_id = node_id
        self.frame = frame
        self.diagnostics: dict[str, Any] = {}
        self.files: dict[str, Path] = {}
        self.notes: "Notes" = []

    def output_path(self, filename: str) -> Path:
        """Path for a file this node writes into ``outputs/`` (recorded so the cache restores it).

        The path is in the run's staging folder (``.staging/<node_id>/outputs/``): the runtime
        moves the file into ``outputs/`` only when the node succeeds (and rewrites the node's
        ``Path`` outputs naming it), so a failed or killed node leaves nothing half-written
        there.
        """
        return self._file("outputs", filename, staged=True)

    def artifact_path(self, filename: str) -> Path:
        """Path in ``artifacts/<node_id>/`` for a plot or other diagnostic file."""
        return self._file(f"artifacts/{self.node_id}", filename)

    def _file(self, folder: str, filename: str, staged: bool = False) -> Path:
        rel = Path(folder) / filename
        if Path(filename).is_absolute() or ".." in Path(filename).parts:
            raise NodeError(self.node_id, f"file name '{filename}' must stay inside {folder}/")
        path = (self._run.staging(self.node_id) if staged else self._run.dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files[rel.as_posix()] = path
        return path

    def hash_file(self, path) -> str:
        """What identifies an input file in keys: sha256 of its content (memoized by the
        cache), or of its path, size and modification time in a run without a cache."""
        hash_input = getattr(self._run, "hash_input", None)  # a worker's host has none
        return (hash_input or self._run.cache.hash_file)(path)

    def cache_dir(self, name: str) -> Path:
        """A persistent folder for data a node reuses across runs, e.g. plate-solving indexes.

        Not a node output and not part of any cache key: only for data that speeds up work
        without changing its result. ``name`` is one plain folder name shared by the nodes that
        use it (see :meth:`Cache.scratch_dir`).
        """
        return self._run.cache.scratch_dir(name)

    def history(self, note: str, image: "CCDData | None" = None):
        """Add a line to the provenance HISTORY the runtime writes into the image outputs.

        Parameters
        ----------
        note : str
            E.g. ``"stacked 8 frames"``; written as ``HISTORY   stacked 8 frames`` after the
            node's type, version and parameters.
        image : CCDData, optional
            Only for this image (an output, or a frame of a ``FrameSeries`` output), e.g. one of
            several master darks; default: every image output of this call.
        """
        self.notes.append((image, note))

    def progress(self, done: int, total: int):
        """Report ``done`` of ``total`` steps (and stop here if the run was cancelled)."""
        self._run.check_cancelled()
        self._run.emit(Event.PROGRESS, node=self.node_id, frame=self.frame, done=done,
                       total=total, log=False)

    @property
    def band_map(self):
        """Where a whole-image node computes its chunked work (e.g. the stack's row bands): a
        callable ``band_map(fn, items)`` yielding ``(index, fn(item))`` as tasks finish, on the
        run executor's workers (a Dask cluster), or None to use the node's own threads (local
        executors). ``fn`` and the items must be picklable and read files all workers see; see
        :func:`starloom.astro.combiner.combine_bands`."""
        executor = getattr(self._run, "executor", None)  # a worker's host has none
        return executor.band_map() if executor is not None else None

    @property
    def band_tasks(self) -> int:
        """Tasks of :attr:`band_map` that run at once (the least number to split work into)."""
        executor = getattr(self._run, "executor", None)
        return executor.band_slots() if executor is not None else 1

    def graph_json(self) -> str | None:
        """The graph as run (parameters given, paths resolved) as JSON text, with the running
        Starloom version in ``metadata.created_with``: what save nodes embed in the images they
        write (see :mod:`.embedded`). None outside :meth:`Run.execute`."""
        doc = getattr(self._run, "plan_document", None)
        if doc is None:
            return None
        doc = doc.model_copy(deep=True)
        doc.metadata.created_with = {**doc.metadata.created_with, "starloom": starloom_version()}
        return doc.to_json()

    def warn(self, message: str):
        """Record a warning in the diagnostics and show it (the node goes on)."""
        self.diagnostics.setdefault("warnings", []).append(message)
        self._run.emit(Event.WARNING, node=self.node_id, frame=self.frame, message=message)
