"""Running a graph: the run directory, the event log, the node context and the graph walk.

A run directory holds::

    graph.json          the graph as run (after --param/--set, paths resolved)
    environment.json    versions of Python and the libraries, host, start and end
    status.json         running (pid, host, start; see :mod:`.runs`), then ok | failed |
                        validation_failed | cancelled, failing node and message
    outputs/            what save nodes wrote, moved in from .staging/<node_id>/ when the
                        node succeeded (a failed node leaves nothing here)
    artifacts/          <node_id>.json diagnostics, plots, report.html
    logs/run_events.jsonl

The walk keeps a node's output values in memory only until the last node that reads them has
run; :meth:`Run.node_outputs` (and :attr:`RunResult.outputs`) load freed values again from the
cache.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import pickle
import platform
import secrets
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from starloom.astro.errors import StarloomError
from starloom.astro.fileio import sha256_json

from .cache import Cache, code_identity, node_key
from .context import NodeContext
from .errors import Cancelled, NodeError
from .events import Event
from .executor import Executor, LocalExecutor
from .frame_task import FrameTask, check_outputs, compute_frame
from .graph import Plan, PlannedNode
from .node import key_params
from .versions import library_version
from .runs import now_utc, write_json, write_running

__all__ = ["NodeContext", "Run", "RunOutputs", "RunResult", "STAGING", "library_versions",
           "new_run_dir"]

#: Folder of the run directory where nodes write their outputs until they succeed.
STAGING = ".staging"

LIBRARIES = ("starloom", "numpy", "scipy", "astropy", "ccdproc", "astroalign", "photutils",
             "reproject", "pydantic", "matplotlib", "scikit-image")


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries a run's results depend on, for environment.json and manifests."""
    return {name: library_version(name) for name in LIBRARIES}


class RunOutputs(Mapping):
    """Output values of a run's nodes, by node id then port, loaded on access.

    Values a run has freed are read again from the cache (:meth:`Run.node_outputs`); after a
    run without a cache (``--no-cache``) they are gone.
    """

    def __init__(self, run: "Run", node_ids: list[str]):
        self._run, self._ids = run, list(node_ids)

    def __getitem__(self, node_id: str) -> dict[str, Any]:
        if node_id not in self._ids:
            raise KeyError(node_id)
        return self._run.node_outputs(node_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass
class RunResult:
    """What :meth:`Run.execute` returns; ``outputs`` is filled when the status is ok."""

    status: str
    run_dir: Path
    outputs: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    failed_node: str | None = None
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    frames_computed: int = 0
    frames_cached: int = 0


class Run:
    """One execution of a plan, owning its run directory.

    Parameters
    ----------
    run_dir : path
        Folder of this run (created).
    cache : Cache or None
        Store of node outputs; None for ``--no-cache`` (a throwaway store inside the run, removed
        at the end, still holds per-frame outputs while the run needs them).
    executor : Executor, optional
        Where the frames of per-frame nodes are computed (:mod:`.executor`); default: in this
        process, one after another. Closed with the run (its worker processes end).
    force : set of str
        Node ids to recompute even when cached.
    listeners : list of callable(event: dict)
        Called for every event (progress bars, the editor); see :class:`Event`.
    graph_file : path, optional
        The graph file run, recorded in ``environment.json`` (for ``starloom runs``).
    """

    def __init__(self, run_dir: str | os.PathLike, cache: Cache | None = None,
                 executor: Executor | None = None, force: set[str] = frozenset(),
                 listeners: list[Callable[[dict], None]] = (),
                 graph_file: str | os.PathLike | None = None):
        self.dir = Path(run_dir)
        self.graph_file = os.path.abspath(graph_file) if graph_file else None
        for sub in ("outputs", "artifacts", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._tmp_cache = None
        if cache is None:
            self._tmp_cache = tempfile.mkdtemp(prefix=".cache-", dir=self.dir)
            cache = Cache(self._tmp_cache)
        self.cache = cache
        # How input files enter keys: their content's hash, memoized by the cache, so that a
        # later run finds the same key; a run without a cache keeps nothing for a later run,
        # so the file's path, size and modification time identify it well enough and its
        # content is not read twice (once to hash, once to compute).
        self.hash_input = _file_identity if self._tmp_cache else cache.hash_file
        # Damaged entries and fingerprint databases are repaired by the cache and reported here.
        cache.on_warning = self._cache_warning
        self.executor = executor or LocalExecutor()
        self.force = set(force)
        self.listeners = list(listeners)
        self._events = open(self.dir / "logs" / "run_events.jsonl", "a", encoding="utf-8")
        self._cancel = threading.Event()
        self.guard_rails: list[dict] = []  # decisions nodes report (e.g. abort/reduced/full)
        # Outputs a later node still reads; a cached node's are loaded when first read (a fully
        # cached run reads none, and so never imports the science libraries).
        self._values: dict[str, dict[str, Any] | Callable[[], dict]] = {}
        self._port_keys: dict[str, dict[str, Any]] = {}  # content key of every output
        self._stored: dict[str, str] = {}  # node id -> key of its cache entry

    def cancel(self):
        """Ask the run to stop at the next node or frame boundary (thread-safe)."""
        self._cancel.set()

    def check_cancelled(self):
        if self._cancel.is_set():
            raise Cancelled("run cancelled")

    def emit(self, event: Event, log: bool = True, **fields):
        rec = {"t": now_utc(), "event": event, **{k: v for k, v in fields.items() if v is not None}}
        if log:
            self._events.write(json.dumps(rec, default=str) + "\n")
            self._events.flush()
        for fn in self.listeners:
            fn(rec)

    def node_outputs(self, node_id: str) -> dict[str, Any]:
        """Output values of a finished node of this run, by port.

        Safe to call from a listener (in the run's thread) when the node's ``node_finished`` or
        ``node_cached`` event arrives, and at any time after: values the walk has already freed
        are loaded again from the cache.

        Parameters
        ----------
        node_id : str
            Id of a node of the plan.

        Returns
        -------
        dict of str to Any
            Values by output port (``CCDData``, ``FrameSeries``, ``Table``, ...).

        Raises
        ------
        KeyError
            The node has not finished in this run, or its values were freed and cannot be
            loaded (a run without a cache, after it ended).
        """
        if node_id in self._values:
            return dict(self._loaded(node_id))
        key = self._stored.get(node_id)
        entry = self.cache.lookup(key) if key is not None else None
        if entry is None:
            raise KeyError(f"node '{node_id}' has no outputs to give in this run")
        return entry.values()

    # --- the walk ----------------------------------------------------------------------------
    def execute(self, plan: Plan) -> RunResult:
        """Run every node of ``plan`` in order; never raises for node failures (see status)."""
        write_json(self.dir / "graph.json", plan.document.model_dump(mode="json", by_alias=True))
        self.plan_document = plan.document  # for NodeContext.graph_json
        env = {"python": platform.python_version(), "platform": platform.platform(),
               "host": platform.node(), "libraries": library_versions(), "started": now_utc(),
               # None for --no-cache: its throwaway store is gone when the run ends.
               "cache": None if self._tmp_cache else os.path.abspath(self.cache.root),
               "graph_file": self.graph_file}
        write_json(self.dir / "environment.json", env)
        # Before any work, so a run killed without a word still says it was running.
        running = write_running(self.dir, env["started"], self.graph_file)
        from .report import write_report
        write_report(self.dir)
        result = RunResult("ok", self.dir)
        self.emit(Event.RUN_STARTED, nodes=[n.spec.id for n in plan.nodes])
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Repairs are reported once, by the node that loads the files.
                from starloom.astro.errors import HeaderRepairWarning
                warnings.simplefilter("ignore", HeaderRepairWarning)
                self._walk(plan, result)
            result.outputs = RunOutputs(self, [pn.spec.id for pn in plan.nodes])
        except Cancelled as e:
            result.status, result.error = "cancelled", str(e)
            self.emit(Event.RUN_CANCELLED)
        except Exception as e:
            result.status = "failed"
            result.failed_node = getattr(e, "node_id", None)
            result.error = str(e) if isinstance(e, StarloomError) else f"{type(e).__name__}: {e}"
        status = {"status": result.status, "node": result.failed_node, "message": result.error,
                  "seconds": round(time.perf_counter() - t0, 3), "executed": result.executed,
                  "cached": result.cached, "frames_computed": result.frames_computed,
                  "frames_cached": result.frames_cached, "started": running["started"],
                  "finished": now_utc(), "host": running["host"], "pid": running["pid"]}
        if self.guard_rails:
            status["guard_rails"] = self.guard_rails
        write_json(self.dir / "status.json", status)
        env["finished"] = now_utc()
        write_json(self.dir / "environment.json", env)
        self.emit(Event.RUN_FINISHED, status=result.status, seconds=status["seconds"])
        write_report(self.dir)
        self.close()
        return result

    def close(self):
        # Keys of nodes that failed or were cancelled: other processes waiting for them go on.
        self.cache.release_claims()
        self.executor.close()  # worker processes or a Dask cluster this run started
        if not self._events.closed:
            self._events.close()
        if self._tmp_cache:
            self.cache.close()
            shutil.rmtree(self._tmp_cache, ignore_errors=True)
        # What is left staged belongs to nodes that failed or were interrupted.
        shutil.rmtree(self.dir / STAGING, ignore_errors=True)

    def staging(self, node_id: str) -> Path:
        """Folder where ``node_id`` writes its outputs until it succeeds (see ``output_path``)."""
        return self.dir / STAGING / node_id

    def _publish(self, pn: PlannedNode, out: dict, files: dict[str, Path]):
        """Move a succeeded node's staged files into place; its ``Path`` outputs follow them.

        Returns the outputs and ``files`` with the final paths.
        """
        stage, moved, final = self.staging(pn.spec.id), {}, {}
        for rel, path in files.items():
            if path.is_relative_to(stage) and path.exists():
                dst = self.dir / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dst)  # same file system: atomic, never a partial file
                moved[str(path)], path = str(dst), dst
            final[rel] = path
        shutil.rmtree(stage, ignore_errors=True)
        if moved:
            out = {port: ",".join(moved.get(part, part) for part in v.split(","))
                   if isinstance(v, str) and "Path" in pn.cls.outputs[port].types else v
                   for port, v in out.items()}
        return out, final

    def _walk(self, plan: Plan, result: RunResult):
        """Run the nodes in order, freeing each output after the last node that reads it."""
        freed_after: dict[int, list[str]] = {}
        last_use = {}
        for i, pn in enumerate(plan.nodes):
            last_use[pn.spec.id] = i  # an output nobody reads is freed right after its node
            for src, _ in pn.inputs.values():
                last_use[src] = i
        for nid, i in last_use.items():
            freed_after.setdefault(i, []).append(nid)
        for i, pn in enumerate(plan.nodes):
            self.check_cancelled()
            self._node(pn, result)
            for nid in freed_after.get(i, ()):
                if nid in self._stored:  # else (not cacheable) nothing could load it again
                    self._values.pop(nid, None)

    def _node(self, pn: PlannedNode, result: RunResult):
        nid, cls = pn.spec.id, pn.cls
        in_keys = {port: self._port_keys[src][sp] for port, (src, sp) in pn.inputs.items()}
        params_json = key_params(pn.params)
        try:
            fp = cls.fingerprint(pn.params, self.hash_input)
            key, pre = node_key(cls.type_id, cls.version, params_json, in_keys, fp,
                                code_identity(cls))
        except (StarloomError, OSError) as e:  # OSError: an input file it may not read
            self.emit(Event.NODE_FAILED, node=nid, message=str(e))
            raise NodeError(nid, str(e)) from e
        entry = self._claim(cls, nid, key)
        if entry is not None:
            entry.restore_files(self.dir)
            self._write_artifact(nid, entry.diagnostics)
            self._keep(nid, entry.values, entry.manifest["port_keys"], key)
            result.cached.append(nid)
            self.emit(Event.NODE_CACHED, node=nid, key=key)
            return
        self.emit(Event.NODE_STARTED, node=nid, key=key)
        t0 = time.perf_counter()
        inputs = {port: self._loaded(src)[sp] for port, (src, sp) in pn.inputs.items()}
        for port in cls.inputs:
            inputs.setdefault(port, None)
        try:
            if cls.per_frame:
                out, diagnostics, files = self._per_frame(pn, inputs, in_keys, fp, params_json,
                                                          result)
            else:
                ctx = NodeContext(self, nid)
                out = cls().run(ctx, pn.params, **inputs)
                check_outputs(nid, cls, out)
                from .provenance import add_provenance
                out = add_provenance(out, cls, pn.params, ctx.notes)
                diagnostics, files = ctx.diagnostics, ctx.files
        except (Cancelled, NodeError):
            raise
        except Exception as e:
            self._fail(nid, e)
        seconds = time.perf_counter() - t0
        out, files = self._publish(pn, out, files)
        from .cache_values import value_key
        port_keys = {port: value_key(v) for port, v in out.items()}
        manifest = {"pre_image": pre, "node": nid, "seconds": seconds, "port_keys": port_keys,
                    "libraries": library_versions(), "diagnostics": diagnostics}
        # Without a cache (--no-cache) the throwaway store only holds what is worth freeing
        # from memory (images, series, tables); plain values stay in memory, no entry written.
        store = cls.cacheable and not (self._tmp_cache and _plain(out))
        if store:
            out = self.cache.put(key, out, manifest, files)  # releases the key _claim took
        self._write_artifact(nid, diagnostics)
        self._keep(nid, out, port_keys, key if store else None)
        result.executed.append(nid)
        self.emit(Event.NODE_FINISHED, node=nid, key=key, seconds=round(seconds, 3))

    def _loaded(self, nid: str) -> dict[str, Any]:
        values = self._values[nid]
        if callable(values):  # a cached entry's loader
            values = self._values[nid] = values()
        return values

    def _keep(self, nid: str, values: dict | Callable[[], dict], port_keys: dict,
              key: str | None):
        # Before the node's event, so a listener can call node_outputs.
        self._values[nid], self._port_keys[nid] = values, port_keys
        if key is not None:
            self._stored[nid] = key

    def _fail(self, nid: str, e: Exception, frame: str | None = None):
        import traceback
        msg = str(e) if isinstance(e, StarloomError) else f"{type(e).__name__}: {e}"
        self.emit(Event.NODE_FAILED, node=nid, frame=frame, message=msg,
                  traceback=traceback.format_exc())
        raise NodeError(nid, msg, frame=frame) from e

    def _per_frame(self, pn: PlannedNode, inputs, in_keys, fp, params_json, result):
        from starloom.astro.frames import FrameSeries
        nid, cls, port = pn.spec.id, pn.cls, pn.cls.per_frame
        series = inputs[port]
        if not isinstance(series, FrameSeries):
            raise NodeError(nid, f"input '{port}' must be a FrameSeries")
        shared_keys = {p: k for p, k in in_keys.items() if p != port}
        shared = {p: v for p, v in inputs.items() if p != port}
        found: dict[int, tuple[dict | None, dict]] = {}  # frame index -> (refs, diagnostics)
        files: dict[str, Path] = {}  # every frame's artifacts, so a cached node restores them
        todo = []
        code = code_identity(cls)
        for i, ref in enumerate(series.refs):
            fkey, fpre = node_key(cls.type_id, cls.version, params_json,
                                  {port: ref.key, **shared_keys}, fp, code)
            entry = None if nid in self.force else self.cache.lookup(fkey)
            if entry is None:
                todo.append((i, FrameTask(cls, nid, pn.params, shared, ref, fkey, fpre,
                                          nid in self.force, str(self.dir.absolute()),
                                          str(self.cache.root),
                                          getattr(self, "plan_document", None))))
                continue
            files.update(entry.restore_files(self.dir))
            found[i] = entry.frames, entry.diagnostics
            result.frames_cached += 1
            self.emit(Event.FRAME_CACHED, node=nid, frame=ref.name)
        self._compute_frames(todo, found, files, result)
        diagnostics = {series.refs[i].name: found[i][1] for i in sorted(found)}
        kept = {p: [found[i][0][p] for i in sorted(found) if found[i][0] is not None]
                for p in cls.outputs}
        if series.refs and not any(kept.values()):
            first = series.refs[0].name
            raise NodeError(nid, f"every frame was rejected (e.g. {first}: "
                                 f"{diagnostics[first].get('rejected')})")
        return {p: FrameSeries(r) for p, r in kept.items()}, {"frames": diagnostics}, \
            dict(sorted(files.items()))

    def _compute_frames(self, todo: list[tuple[int, FrameTask]], found: dict, files: dict,
                        result: RunResult):
        """Compute the frames ``todo`` (frame index, task) with the executor; fills ``found``
        and ``files`` and replays what each frame's node reported in a worker."""
        if not todo:
            return
        local = self.executor.in_process or len(todo) == 1 or not _picklable(todo[0][1])
        fn = functools.partial(compute_frame, host=self) if local else compute_frame
        runner = LocalExecutor() if local else self.executor
        done = runner.map(fn, [task for _, task in todo])
        try:
            for n_done, (j, res) in enumerate(done, 1):
                i, task = todo[j]
                nid, name = task.node_id, task.ref.name
                for event, fields in res.events:
                    self.emit(Event(event), **fields)
                files.update(res.files)
                if res.error is not None:
                    self.emit(Event.NODE_FAILED, node=nid, frame=name, message=res.error,
                              traceback=res.trace)
                    raise NodeError(nid, res.error, frame=name)
                found[i] = res.frames, res.diagnostics
                if res.seconds is None:  # another process stored it while this one waited
                    result.frames_cached += 1
                    self.emit(Event.FRAME_CACHED, node=nid, frame=name)
                else:
                    result.frames_computed += 1
                    self.emit(Event.FRAME_COMPUTED, node=nid, frame=name,
                              seconds=round(res.seconds, 3))
                self.emit(Event.PROGRESS, node=nid, done=n_done, total=len(todo), log=False)
                self.check_cancelled()
        finally:
            done.close()  # cancels the frames not started (a failure, a cancelled run)

    def _claim(self, cls, nid: str, key: str):
        """The node's cache entry, or None to compute it (holding its key, see Cache.claim)."""
        if not cls.cacheable or self._tmp_cache:  # a throwaway store starts empty, unshared
            return None
        if cls.per_frame:  # its frames are claimed one at a time (_frame)
            return None if nid in self.force else self.cache.lookup(key)
        return self.cache.claim(key, force=nid in self.force)

    def _cache_warning(self, message: str, node: str | None):
        self.emit(Event.WARNING, node=node or "cache", message=message)

    def _write_artifact(self, nid: str, diagnostics: dict):
        if diagnostics:
            write_json(self.dir / "artifacts" / f"{nid}.json", diagnostics)
            rails = diagnostics.get("guard_rails")
            if isinstance(rails, list):
                self.guard_rails += [{"node": nid, **r} for r in rails if isinstance(r, dict)]


def _plain(values: dict) -> bool:
    """Whether output values are small JSON-like values (numbers, text, flags, lists)."""
    return all(isinstance(v, (int, float, str, bool, list, dict, type(None)))
               for v in values.values())


def _file_identity(path) -> str:
    """A file's identity without reading it: sha256 of its absolute path, size and
    modification time (for runs whose keys need not outlive them)."""
    st = os.stat(path)
    return sha256_json(["file", os.path.abspath(path), st.st_size, st.st_mtime_ns])


def _picklable(task: FrameTask) -> bool:
    """Whether a task's node class and parameters can go to another process (a class defined
    inside a function cannot; its frames are then computed in the run's process)."""
    try:
        pickle.dumps((task.node_cls, task.params))
    except Exception:
        return False
    return True


def new_run_dir(parent: str | os.PathLike = "runs") -> Path:
    """``parent/<UTC timestamp>-<random>``: sortable and unique."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(parent) / f"{stamp}-{secrets.token_hex(3)}"
