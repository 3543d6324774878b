"""Running a graph: the run directory, the event log, the node context and the graph walk.

A run directory holds::

    graph.json          the graph as run (after --param/--set, paths resolved)
    environment.json    versions of Python and the libraries, host, start and end
    status.json         ok | failed | validation_failed | cancelled, failing node and message
    outputs/            what save nodes wrote
    artifacts/          <node_id>.json diagnostics, plots, report.html
    logs/run_events.jsonl
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import shutil
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version as pkg_version
from pathlib import Path
from typing import Any, Callable

from astropy.nddata import CCDData

from starloom.astro import fits as fitsio
from .cache import Cache, node_key, value_key
from starloom.astro.errors import FrameRejected, StarloomError

from .errors import Cancelled, NodeError
from .executor import Executor, LocalExecutor
from starloom.astro.frames import FrameRef, FrameSeries, sha256_json
from .graph import GraphValidationError, Plan, PlannedNode

LIBRARIES = ("starloom", "numpy", "scipy", "astropy", "ccdproc", "astroalign", "photutils",
             "reproject", "pydantic", "matplotlib", "scikit-image")


def library_versions() -> dict[str, str | None]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = pkg_version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _json_write(path: Path, obj: Any):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class NodeContext:
    """What a node's ``run`` may touch: its output and artifact files, progress, diagnostics."""

    def __init__(self, run: "Run", node_id: str, frame: str | None = None):
        self.run = run
        self.node_id = node_id
        self.frame = frame
        self.diagnostics: dict[str, Any] = {}
        self.files: dict[str, Path] = {}

    def output_path(self, filename: str) -> Path:
        """Path in ``outputs/`` for a file this node writes (recorded so the cache restores it)."""
        return self._file("outputs", filename)

    def artifact_path(self, filename: str) -> Path:
        """Path in ``artifacts/<node_id>/`` for a plot or other diagnostic file."""
        return self._file(f"artifacts/{self.node_id}", filename)

    def _file(self, folder: str, filename: str) -> Path:
        rel = Path(folder) / filename
        if Path(filename).is_absolute() or ".." in Path(filename).parts:
            raise NodeError(self.node_id, f"file name '{filename}' must stay inside {folder}/")
        path = self.run.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files[rel.as_posix()] = path
        return path

    def hash_file(self, path) -> str:
        """sha256 of a file's content (memoized by the cache)."""
        return self.run.cache.hash_file(path)

    def progress(self, done: int, total: int):
        self.run.check_cancelled()
        self.run.emit("progress", node=self.node_id, frame=self.frame, done=done, total=total,
                      log=False)

    def warn(self, message: str):
        self.diagnostics.setdefault("warnings", []).append(message)
        self.run.emit("warning", node=self.node_id, frame=self.frame, message=message)


@dataclass
class RunResult:
    status: str
    run_dir: Path
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
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
    executor : Executor
        Where per-frame work runs.
    force : set of str
        Node ids to recompute even when cached.
    listeners : list of callable(event: dict)
        Called for every event (progress bars, the editor).
    """

    def __init__(self, run_dir: str | os.PathLike, cache: Cache | None = None,
                 executor: Executor | None = None, force: set[str] = frozenset(),
                 listeners: list[Callable[[dict], None]] = ()):
        self.dir = Path(run_dir)
        for sub in ("outputs", "artifacts", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._tmp_cache = None
        if cache is None:
            self._tmp_cache = tempfile.mkdtemp(prefix=".cache-", dir=self.dir)
            cache = Cache(self._tmp_cache)
        self.cache = cache
        self.executor = executor or LocalExecutor()
        self.force = set(force)
        self.listeners = list(listeners)
        self._events = open(self.dir / "logs" / "run_events.jsonl", "a", encoding="utf-8")
        self._cancel = threading.Event()

    def cancel(self):
        """Ask the run to stop at the next node or frame boundary (thread-safe)."""
        self._cancel.set()

    def check_cancelled(self):
        if self._cancel.is_set():
            raise Cancelled("run cancelled")

    def emit(self, event: str, log: bool = True, **fields):
        rec = {"t": _now(), "event": event, **{k: v for k, v in fields.items() if v is not None}}
        if log:
            self._events.write(json.dumps(rec, default=str) + "\n")
            self._events.flush()
        for fn in self.listeners:
            fn(rec)

    # --- the walk ----------------------------------------------------------------------------
    def execute(self, plan: Plan) -> RunResult:
        """Run every node of ``plan`` in order; never raises for node failures (see status)."""
        _json_write(self.dir / "graph.json", plan.document.model_dump(mode="json", by_alias=True))
        started = _now()
        env = {"python": platform.python_version(), "platform": platform.platform(),
               "host": platform.node(), "libraries": library_versions(), "started": started,
               "cache": str(self.cache.root)}
        _json_write(self.dir / "environment.json", env)
        result = RunResult("ok", self.dir)
        self.emit("run_started", nodes=[n.spec.id for n in plan.nodes])
        values: dict[str, dict[str, Any]] = {}
        keys: dict[str, str] = {}
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Repairs are reported once, by the node that loads the files.
                warnings.simplefilter("ignore", fitsio.HeaderRepairWarning)
                for pn in plan.nodes:
                    self.check_cancelled()
                    values[pn.spec.id], keys[pn.spec.id] = self._node(pn, values, keys, result)
            result.outputs = values
        except Cancelled as e:
            result.status, result.error = "cancelled", str(e)
            self.emit("run_cancelled")
        except Exception as e:
            result.status = "failed"
            result.failed_node = getattr(e, "node_id", None)
            result.error = str(e) if isinstance(e, StarloomError) else f"{type(e).__name__}: {e}"
        status = {"status": result.status, "node": result.failed_node, "message": result.error,
                  "seconds": round(time.perf_counter() - t0, 3), "executed": result.executed,
                  "cached": result.cached, "frames_computed": result.frames_computed,
                  "frames_cached": result.frames_cached}
        _json_write(self.dir / "status.json", status)
        env["finished"] = _now()
        _json_write(self.dir / "environment.json", env)
        self.emit("run_finished", status=result.status, seconds=status["seconds"])
        from .report import write_report
        write_report(self.dir)
        self.close()
        return result

    def close(self):
        if not self._events.closed:
            self._events.close()
        if self._tmp_cache:
            shutil.rmtree(self._tmp_cache, ignore_errors=True)

    def _node(self, pn: PlannedNode, values, keys, result: RunResult):
        nid, cls = pn.spec.id, pn.cls
        inputs = {port: values[src][sp] for port, (src, sp) in pn.inputs.items()}
        for port in cls.inputs:
            inputs.setdefault(port, None)
        in_keys = {port: keys[src][sp] for port, (src, sp) in pn.inputs.items()}
        params_json = pn.params.model_dump(mode="json")
        try:
            fp = cls.fingerprint(pn.params, self.cache.hash_file)
            key, pre = node_key(cls.type_id, cls.version, params_json, in_keys, fp)
        except StarloomError as e:
            self.emit("node_failed", node=nid, message=str(e))
            raise NodeError(nid, str(e)) from e
        use_cache = cls.cacheable and nid not in self.force
        if use_cache and self.cache.has(key):
            out = self.cache.get(key)
            manifest = self.cache.manifest(key)
            self.cache.restore_files(key, self.dir)
            self._write_artifact(nid, manifest.get("diagnostics", {}))
            result.cached.append(nid)
            self.emit("node_cached", node=nid, key=key)
            return out, manifest["port_keys"]
        self.emit("node_started", node=nid, key=key)
        t0 = time.perf_counter()
        try:
            if cls.per_frame:
                out, diagnostics, files = self._per_frame(pn, inputs, in_keys, fp, params_json,
                                                          result)
            else:
                ctx = NodeContext(self, nid)
                out = cls().run(ctx, pn.params, **inputs)
                _check_outputs(pn, out)
                diagnostics, files = ctx.diagnostics, ctx.files
        except (Cancelled, NodeError):
            raise
        except Exception as e:
            msg = str(e) if isinstance(e, StarloomError) else f"{type(e).__name__}: {e}"
            self.emit("node_failed", node=nid, message=msg, traceback=traceback.format_exc())
            raise NodeError(nid, msg) from e
        seconds = time.perf_counter() - t0
        port_keys = {port: value_key(v) for port, v in out.items()}
        manifest = {"pre_image": pre, "node": nid, "seconds": seconds, "port_keys": port_keys,
                    "libraries": library_versions(), "diagnostics": diagnostics}
        if cls.cacheable:
            out = self.cache.put(key, out, manifest, files)
        self._write_artifact(nid, diagnostics)
        result.executed.append(nid)
        self.emit("node_finished", node=nid, key=key, seconds=round(seconds, 3))
        return out, port_keys

    def _per_frame(self, pn: PlannedNode, inputs, in_keys, fp, params_json, result):
        nid, cls, port = pn.spec.id, pn.cls, pn.cls.per_frame
        series: FrameSeries = inputs[port]
        if not isinstance(series, FrameSeries):
            raise NodeError(nid, f"input '{port}' must be a FrameSeries")
        shared_keys = {p: k for p, k in in_keys.items() if p != port}
        shared = {p: v for p, v in inputs.items() if p != port}
        out_ports = list(cls.outputs)
        refs: dict[str, list[FrameRef | None]] = {p: [None] * len(series) for p in out_ports}
        diagnostics: dict[str, Any] = {}
        files: dict[str, Path] = {}  # every frame's artifacts, so a cached node restores them
        todo = []
        for i, ref in enumerate(series.refs):
            fkey, fpre = node_key(cls.type_id, cls.version, params_json,
                                  {port: ref.key, **shared_keys}, fp)
            if nid not in self.force and self.cache.has(fkey):
                man = self.cache.manifest(fkey)
                files.update({rel: self.dir / rel for rel in man.get("files", [])})
                self.cache.restore_files(fkey, self.dir)
                if man.get("rejected") is None:
                    for p in out_ports:
                        refs[p][i] = FrameRef.from_json(man["frames"][p])
                diagnostics[ref.name] = man.get("diagnostics", {})
                result.frames_cached += 1
                self.emit("frame_cached", node=nid, frame=ref.name)
            else:
                todo.append((i, ref, fkey, fpre))

        def compute(task):
            i, ref, fkey, fpre = task
            self.check_cancelled()
            ctx = NodeContext(self, nid, frame=ref.name)
            t0 = time.perf_counter()
            try:
                out = cls().run(ctx, pn.params, **{port: ref.read()}, **shared)
                _check_outputs(pn, out, per_frame=True)
            except FrameRejected as e:
                ctx.diagnostics["rejected"] = str(e)
                self.cache.put(fkey, {}, {"pre_image": fpre, "node": nid, "frame": ref.name,
                                          "rejected": str(e), "diagnostics": ctx.diagnostics},
                               files=ctx.files, remember=False)
                self.emit("frame_rejected", node=nid, frame=ref.name, message=str(e))
                return None, ctx.diagnostics, time.perf_counter() - t0, ctx.files
            except (Cancelled, NodeError):
                raise
            except Exception as e:
                msg = str(e) if isinstance(e, StarloomError) else f"{type(e).__name__}: {e}"
                self.emit("node_failed", node=nid, frame=ref.name, message=msg,
                          traceback=traceback.format_exc())
                raise NodeError(nid, msg, frame=ref.name) from e
            frames = {}
            for p, ccd in out.items():
                path = self.cache.entry_dir(fkey) / f"{p}.fits"
                frames[p] = FrameRef(key=sha256_json([fkey, p]), name=ref.name, path=str(path),
                                     meta={**fitsio.frame_metadata(ccd.header), "path": ref.meta.get("path")})
                frames[p] = frames[p].to_json()
            seconds = time.perf_counter() - t0
            self.cache.put(fkey, out, {"pre_image": fpre, "node": nid, "frame": ref.name,
                                       "seconds": seconds, "frames": frames,
                                       "diagnostics": ctx.diagnostics},
                           files=ctx.files, remember=False)
            return frames, ctx.diagnostics, seconds, ctx.files

        for n_done, (j, (frames, diag, seconds, frame_files)) in enumerate(
                self.executor.map(compute, todo), 1):
            i, ref = todo[j][0], todo[j][1]
            files.update(frame_files)
            if frames is not None:
                for p in out_ports:
                    refs[p][i] = FrameRef.from_json(frames[p])
            diagnostics[ref.name] = diag
            result.frames_computed += 1
            self.emit("frame_computed", node=nid, frame=ref.name, seconds=round(seconds, 3))
            self.emit("progress", node=nid, done=n_done, total=len(todo), log=False)
        kept = {p: [r for r in rs if r is not None] for p, rs in refs.items()}
        if series.refs and not any(kept.values()):
            raise NodeError(nid, f"every frame was rejected (e.g. {series.refs[0].name}: "
                                 f"{diagnostics[series.refs[0].name].get('rejected')})")
        return {p: FrameSeries(r) for p, r in kept.items()}, {"frames": diagnostics}, files

    def _write_artifact(self, nid: str, diagnostics: dict):
        if diagnostics:
            _json_write(self.dir / "artifacts" / f"{nid}.json", diagnostics)


def _check_outputs(pn: PlannedNode, out, per_frame: bool = False):
    nid = pn.spec.id
    if not isinstance(out, dict):
        raise NodeError(nid, f"run() returned {type(out).__name__}, expected a dict of outputs")
    missing = set(pn.cls.outputs) - set(out)
    extra = set(out) - set(pn.cls.outputs)
    if missing or extra:
        raise NodeError(nid, f"run() returned ports {sorted(out)}, declared {sorted(pn.cls.outputs)}")
    if per_frame:
        for p, v in out.items():
            if not isinstance(v, CCDData):
                raise NodeError(nid, f"per-frame output '{p}' must be one CCDData frame")


def new_run_dir(parent: str | os.PathLike = "runs") -> Path:
    """``parent/<UTC timestamp>-<random>``: sortable and unique."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(parent) / f"{stamp}-{secrets.token_hex(3)}"


def run_graph(plan: Plan, run_dir: str | os.PathLike | None = None, *, cache: Cache | None = None,
              no_cache: bool = False, executor: Executor | None = None,
              force: set[str] = frozenset(), listeners=()) -> RunResult:
    """Execute a validated plan in a new run directory; see :class:`Run`."""
    run = Run(run_dir or new_run_dir(), None if no_cache else (cache or Cache()),
              executor=executor, force=force, listeners=listeners)
    return run.execute(plan)


def write_validation_failure(run_dir: Path, err: GraphValidationError):
    """Leave a run directory that says why nothing ran."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _json_write(run_dir / "status.json", {"status": "validation_failed", "message": str(err),
                                          "problems": [str(p) for p in err.problems]})
