"""Run directories as records: the ``running`` status, interrupted runs, listing, resuming.

A run writes ``status.json`` twice: ``running`` when it starts (with the process id, the host
and the start time) and its final status (ok, failed, cancelled) when it ends. A process killed
by SIGKILL, a crash or a power cut never writes the second, so a reader decides whether a
``running`` status is still true:

* **Same host** (``host`` equals this machine's name): running while the process ``pid`` exists,
  is not a zombie and, on Linux, has the start time recorded as ``pid_start`` (so a new process
  that was given the same pid after a reboot does not keep a dead run alive).
* **Another host** (a run folder on a shared disk): its processes cannot be seen from here, so
  the run counts as running until its newest sign of life, the modification time of
  ``status.json`` or ``logs/run_events.jsonl`` (written at every node and frame), is older than
  :data:`STALE_AFTER` (24 hours); after that it is ``interrupted``.

``interrupted`` is only ever derived by readers (:func:`read_status`), except after Ctrl+C, where
the command line writes it (:func:`mark_interrupted`).

``starloom resume`` continues a run **in its own run directory** (as tile_compile does), so the
folder a user knows ends up with the finished outputs and one row in ``starloom runs``. Nothing
of the earlier attempt is lost: its status (as read, e.g. ``interrupted``) and its start and end
are appended to ``logs/attempts.jsonl`` before the new attempt begins, and the event log is
appended to, each attempt starting with a ``run_started`` event.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from starloom.astro.errors import StarloomError
from starloom.astro.fileio import write_text_atomic
from starloom.serialization import load_graph

from .events import Event
from .graph import GraphValidationError, Plan, plan
from .registry import Registry

STALE_AFTER = dt.timedelta(hours=24)
"""A ``running`` run of another host with no sign of life for this long is ``interrupted``."""

STATUSES = ("ok", "failed", "validation_failed", "cancelled", "running", "interrupted")


def now_utc() -> str:
    """The current UTC time, ISO 8601 with milliseconds (the time stamps of run files)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_environment(run_dir: str | os.PathLike) -> dict:
    """``run_dir/environment.json`` as a dict (empty when missing or unreadable)."""
    env = read_json(Path(run_dir) / "environment.json")
    return env if isinstance(env, dict) else {}


def write_json(path: Path, obj: Any):
    """Write ``obj`` as indented JSON to ``path`` atomically (the run directory's files)."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def _parse_time(text: Any) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


# --- is the process alive? -------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a Linux process, None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
    return fields[0], fields[19]


def process_start(pid: int | None = None) -> str | None:
    """Start time of process ``pid`` (default: this one) as Linux records it, or None."""
    stat = _proc_stat(os.getpid() if pid is None else pid)
    return stat[1] if stat else None


def pid_alive(pid: Any, pid_start: str | None = None) -> bool:
    """Whether process ``pid`` of this host still runs (and is the one started at ``pid_start``).

    Parameters
    ----------
    pid : int
        Process id recorded by the run.
    pid_start : str, optional
        Its start time from :func:`process_start`; a process with the same pid but another
        start time is a different process.

    Returns
    -------
    bool
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        return state not in ("Z", "X") and (pid_start is None or start == pid_start)
    if Path("/proc/self/stat").exists():
        return False  # Linux without an entry for pid: no such process
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes
        k32 = ctypes.windll.kernel32
        handle = k32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        k32.GetExitCodeProcess(handle, ctypes.byref(code))
        k32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


# --- status ----------------------------------------------------------------------------------
def running_status(started: str | None = None, graph_file: str | None = None) -> dict:
    """The ``status.json`` of a run that has started: ``running``, pid, host, start time."""
    return {"status": "running", "pid": os.getpid(), "pid_start": process_start(),
            "host": platform.node(), "started": started or now_utc(), "graph_file": graph_file}


def write_running(run_dir: Path, started: str | None = None,
                  graph_file: str | None = None) -> dict:
    """Write ``run_dir/status.json`` as ``running`` (atomically); returns what was written."""
    status = running_status(started, graph_file)
    write_json(Path(run_dir) / "status.json", status)
    return status


def _last_sign_of_life(run_dir: Path) -> dt.datetime | None:
    times = []
    for p in (run_dir / "status.json", run_dir / "logs" / "run_events.jsonl"):
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            pass
    return dt.datetime.fromtimestamp(max(times), dt.timezone.utc) if times else None


def _why_not_running(status: dict, run_dir: Path, now: dt.datetime) -> str | None:
    """None while a ``running`` status is believable, else why the run is interrupted."""
    host, pid = status.get("host"), status.get("pid")
    if host == platform.node():
        if pid_alive(pid, status.get("pid_start")):
            return None
        return (f"the process (pid {pid} on {host}) ended without finishing: killed, crashed "
                f"or its machine stopped")
    last = _last_sign_of_life(run_dir)
    if last is not None and now - last < STALE_AFTER:
        return None
    hours = STALE_AFTER.total_seconds() / 3600
    return (f"started on another host ({host}) and no sign of life for over {hours:g} h, "
            f"so taken as interrupted")


def read_status(run_dir: str | os.PathLike, now: dt.datetime | None = None) -> dict:
    """``run_dir/status.json`` as it stands now: a dead ``running`` run reads ``interrupted``.

    Parameters
    ----------
    run_dir : path
        A run directory.
    now : datetime, optional
        The present (for tests of the other-host rule).

    Returns
    -------
    dict
        The status record; ``status`` is one of :data:`STATUSES` or ``unknown`` (no or an
        unreadable ``status.json``; ``message`` names the file).
    """
    run_dir = Path(run_dir)
    path = run_dir / "status.json"
    if not path.exists():
        if (run_dir / "logs" / "run_events.jsonl").is_file():
            return {"status": "interrupted",
                    "message": f"{path}: missing: the run stopped before writing its status "
                               f"(or was made by an older Starloom)"}
        return {"status": "unknown", "message": f"{path}: missing"}
    status = read_json(path)
    if not isinstance(status, dict) or "status" not in status:
        return {"status": "unknown", "message": f"{path}: unreadable or not a status record"}
    if status["status"] == "running":
        why = _why_not_running(status, run_dir, now or dt.datetime.now(dt.timezone.utc))
        if why is not None:
            status = {**status, "status": "interrupted", "message": why}
    return status


def write_validation_failure(run_dir: str | os.PathLike, err: GraphValidationError,
                             graph_file: str | os.PathLike | None = None):
    """Leave a run directory that says why nothing ran (and, for ``starloom runs``, when and
    which graph file)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "status.json", {
        "status": "validation_failed", "message": str(err),
        "problems": [str(p) for p in err.problems], "started": now_utc(),
        "graph_file": os.path.abspath(graph_file) if graph_file else None})


def mark_interrupted(run_dir: str | os.PathLike, reason: str):
    """Record that this process stops a run it was running (Ctrl+C): status ``interrupted``."""
    path = Path(run_dir) / "status.json"
    status = read_json(path)
    if isinstance(status, dict) and status.get("status") == "running":
        write_json(path, {**status, "status": "interrupted", "message": reason,
                           "finished": now_utc()})


# --- listing ---------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """One row of ``starloom runs``.

    Attributes
    ----------
    run : str
        Name of the run directory.
    path : str
        Its path.
    status : str
        One of :data:`STATUSES`, or ``unknown``.
    started : str or None
        UTC start time (ISO 8601).
    seconds : float or None
        Duration: of the run when it ended, so far while running, up to its last event when
        interrupted.
    graph : str
        The graph's ``metadata.name``, else its file name.
    node : str or None
        The failing node; for a running or interrupted run, the node it was computing.
    message : str or None
        Error message, or why the run counts as interrupted.
    attempts : int
        Earlier attempts of this run directory (``starloom resume``), from
        ``logs/attempts.jsonl``.
    """

    run: str
    path: str
    status: str
    started: str | None
    seconds: float | None
    graph: str
    node: str | None
    message: str | None
    attempts: int

    def as_dict(self) -> dict:
        """The row as a JSON-able dict (``starloom runs --json``)."""
        return asdict(self)


def read_events(run_dir: Path) -> list[dict]:
    """The event log's records (a line cut short by a kill is skipped)."""
    out = []
    try:
        lines = (run_dir / "logs" / "run_events.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def last_attempt(events: list[dict]) -> list[dict]:
    """The events of the last attempt: from the last ``run_started`` on."""
    starts = [i for i, e in enumerate(events) if e.get("event") == Event.RUN_STARTED]
    return events[starts[-1]:] if starts else events


def _open_node(events: list[dict]) -> str | None:
    """The node that started and neither finished nor failed (the one being computed)."""
    node = None
    for e in events:
        if e.get("event") == Event.NODE_STARTED:
            node = e.get("node")
        elif e.get("event") in (Event.NODE_FINISHED, Event.NODE_FAILED):
            node = None
    return node


def count_attempts(run_dir: Path) -> int:
    """Number of earlier attempts of a run directory (lines of ``logs/attempts.jsonl``)."""
    try:
        text = (Path(run_dir) / "logs" / "attempts.jsonl").read_text(encoding="utf-8")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if line.strip())


def _graph_name(run_dir: Path, status: dict, env: dict) -> str:
    graph = read_json(run_dir / "graph.json")
    meta = graph.get("metadata") if isinstance(graph, dict) else None
    if isinstance(meta, dict) and meta.get("name"):
        return str(meta["name"])
    source = env.get("graph_file") or status.get("graph_file")
    return Path(source).name if source else ""


def run_info(run_dir: str | os.PathLike, now: dt.datetime | None = None) -> RunInfo:
    """What ``starloom runs`` shows of one run directory (see :class:`RunInfo`)."""
    run_dir = Path(run_dir)
    now = now or dt.datetime.now(dt.timezone.utc)
    status = read_status(run_dir, now)
    env = read_environment(run_dir)
    st = status["status"]
    events = last_attempt(read_events(run_dir)) if st in ("running", "interrupted") else []
    started = status.get("started") or env.get("started") or (events[0].get("t") if events else None)
    if started is None:
        started = dt.datetime.fromtimestamp(run_dir.stat().st_mtime, dt.timezone.utc).isoformat(
            timespec="milliseconds")
    seconds = status.get("seconds")
    t0 = _parse_time(started)
    if st == "running" and t0:
        seconds = (now - t0).total_seconds()
    elif st == "interrupted" and t0 and seconds is None:
        t1 = _parse_time(events[-1].get("t")) if events else None
        seconds = (t1 - t0).total_seconds() if t1 else None
    node = status.get("node") or (_open_node(events) if events else None)
    return RunInfo(run_dir.name, str(run_dir), st, started,
                   round(seconds, 3) if isinstance(seconds, (int, float)) else None,
                   _graph_name(run_dir, status, env), node, status.get("message"),
                   count_attempts(run_dir))


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a folder with a run's status, graph, environment or event log."""
    return path.is_dir() and any((path / f).exists() for f in (
        "status.json", "graph.json", "environment.json", "logs/run_events.jsonl"))


def list_runs(runs_dir: str | os.PathLike = "runs") -> list[RunInfo]:
    """The run directories in ``runs_dir``, newest first.

    Parameters
    ----------
    runs_dir : path
        The parent of run directories (``runs/``), or one run directory.

    Returns
    -------
    list of RunInfo

    Raises
    ------
    StarloomError
        ``runs_dir`` is not a folder.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise StarloomError(f"{runs_dir}: no such folder (run directories are made by "
                            f"'starloom run', in runs/ unless --runs or --run-dir says otherwise)")
    if is_run_dir(runs_dir) and not any(is_run_dir(p) for p in runs_dir.iterdir()):
        return [run_info(runs_dir)]
    now = dt.datetime.now(dt.timezone.utc)
    infos = [run_info(p, now) for p in runs_dir.iterdir() if is_run_dir(p)]
    return sorted(infos, key=lambda r: (r.started or "", r.run), reverse=True)


# --- resuming --------------------------------------------------------------------------------
def archive_attempt(run_dir: str | os.PathLike) -> dict:
    """Append the run directory's current status to ``logs/attempts.jsonl``; returns it.

    Called before ``starloom resume`` starts a new attempt, so the old status (e.g. the
    ``interrupted`` a reader derived) stays on record although ``status.json`` is rewritten.
    """
    run_dir = Path(run_dir)
    env = read_environment(run_dir)
    rec = {"archived": now_utc(), **read_status(run_dir),
           "environment": {k: env.get(k) for k in ("started", "finished", "host", "cache")}}
    log = run_dir / "logs" / "attempts.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = log.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    write_text_atomic(log, old + json.dumps(rec, default=str) + "\n")
    return rec


def downstream(p: Plan, node_id: str) -> set[str]:
    """``node_id`` and every node of ``p`` that reads its outputs, directly or not."""
    out = {node_id}
    for pn in p.nodes:  # execution order: a node's sources come before it
        if any(src in out for src, _ in pn.inputs.values()):
            out.add(pn.spec.id)
    return out


def resume_plan(run_dir: str | os.PathLike, registry: Registry,
                from_node: str | None = None) -> tuple[Plan, set[str]]:
    """The plan of a run directory's own ``graph.json`` and the nodes to recompute.

    Parameters
    ----------
    run_dir : path
        The run directory to resume.
    registry : Registry
        Node types.
    from_node : str, optional
        Recompute this node and everything downstream of it (``--from``).

    Returns
    -------
    (Plan, set of str)
        The plan and the node ids to force.

    Raises
    ------
    StarloomError
        No ``graph.json`` (e.g. a run that failed validation), or ``from_node`` is not a node of
        it; :class:`~starloom.serialization.GraphFileError` or
        :class:`~starloom.graph_runtime.graph.GraphValidationError` for a damaged graph.json.
    """
    run_dir = Path(run_dir)
    path = run_dir / "graph.json"
    if not path.is_file():
        hint = (" (the run failed validation before it started: fix the graph file and "
                "'starloom run' it)" if read_status(run_dir).get("status") == "validation_failed"
                else "")
        raise StarloomError(f"{path}: missing, so there is no graph to resume{hint}")
    doc = load_graph(path)
    _pin_parameters(doc)
    p = plan(doc, registry, base_dir=run_dir, source=str(path))
    if from_node is None:
        return p, set()
    ids = [pn.spec.id for pn in p.nodes]
    if from_node not in ids:
        raise StarloomError(f"--from: {path} has no node '{from_node}' (it has: {', '.join(ids)})")
    return p, downstream(p, from_node)


def _pin_parameters(doc):
    """Set each graph parameter's default to the value its bound node ran with.

    graph.json holds every node parameter as run (paths made absolute), but a graph parameter
    keeps the default of the graph file, which may be a relative path of the file's folder;
    re-binding it from the run directory would change the node's value.
    """
    by_id = {n.id: n for n in doc.nodes}
    for gp in doc.parameters.values():
        for bind in gp.binds:
            nid, _, pname = bind.partition(".")
            spec = by_id.get(nid)
            if spec is not None and pname in spec.params:
                gp.default = spec.params[pname]
                break


def resume_cache(run_dir: str | os.PathLike, cache: str | None = None) -> tuple[str | None, str]:
    """The cache folder a resumed run uses, and a sentence saying which and why.

    Parameters
    ----------
    run_dir : path
        The run directory.
    cache : str, optional
        ``--cache``; else the folder recorded in ``environment.json``.

    Returns
    -------
    (str or None, str)
        The folder (None: the run had no cache, ``--no-cache``) and the sentence.

    Raises
    ------
    StarloomError
        ``environment.json`` is missing or unreadable and no ``cache`` is given.
    """
    if cache:
        return cache, f"cache {cache} (from --cache)"
    path = Path(run_dir) / "environment.json"
    env = read_json(path)
    if not isinstance(env, dict) or "cache" not in env:
        raise StarloomError(f"{path}: missing or unreadable, so the run's cache folder is "
                            f"unknown; give it with --cache DIR")
    recorded = env["cache"]
    # Before the run recorded None for --no-cache, it recorded its throwaway cache folder.
    if recorded is None or Path(recorded).name.startswith(".cache-") and \
            Path(recorded).parent.resolve() == Path(run_dir).resolve():
        return None, "no cache (the run was made with --no-cache): every node is recomputed"
    return str(recorded), f"cache {recorded} (recorded in {path.name})"
