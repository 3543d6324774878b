"""The ``starloom`` command line."""
from __future__ import annotations

import argparse
import inspect
import json
import platform
import sys
from importlib import resources
from pathlib import Path

from starloom.astro.errors import StarloomError

from .cache_commands import add_cache_parser
from .library_commands import add_library_parser
from starloom.graph_runtime.events import Event
from starloom.graph_runtime.registry import default_registry

# Each command imports what it uses (issue 13, startup): `nodes` only the registry, `validate`
# the planner too, `run` the runtime and cache as well (the science comes with the nodes).
# GraphFileError and GraphValidationError are StarloomErrors, which main() reports.


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"starloom: {flag} takes NAME=VALUE, got '{item}'")
        out[name.strip()] = value
    return out


class _Progress:
    """tqdm bars: one per node with per-frame work or reported progress."""

    def __init__(self, stream=sys.stderr):
        from tqdm import tqdm
        # No monitor thread: a single-threaded process can fork its frame workers (executor).
        tqdm.monitor_interval = 0
        self._tqdm, self.stream, self.bar, self.node = tqdm, stream, None, None

    def __call__(self, ev: dict):
        kind, node = ev["event"], ev.get("node")
        if kind == Event.PROGRESS:
            if self.bar is None or self.node != node or self.bar.total != ev["total"]:
                self._close()
                self.bar = self._tqdm(total=ev["total"], desc=node, file=self.stream,
                                      leave=False, dynamic_ncols=True, disable=None)
                self.node = node
            self.bar.n = ev["done"]
            self.bar.refresh()
            return
        if kind in (Event.NODE_CACHED, Event.NODE_FINISHED, Event.NODE_FAILED):
            self._close()
            label = {Event.NODE_CACHED: "cached",
                     Event.NODE_FINISHED: f"done in {ev.get('seconds')} s",
                     Event.NODE_FAILED: "FAILED"}[kind]
            print(f"  {node:<24} {label}", file=self.stream)
        elif kind == Event.WARNING:
            self._close()
            print(f"  {node}: warning: {ev.get('message')}", file=self.stream)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _load_plan(path: str, params=None, sets=None, check_inputs: bool = False):
    from starloom.graph_runtime.embedded import load_any_graph
    from starloom.graph_runtime.graph import plan
    doc = load_any_graph(path)  # a graph file, or the FITS/PNG file a save node wrote
    return plan(doc, default_registry(), base_dir=Path(path).resolve().parent, params=params,
                sets=sets, source=path, check_inputs=check_inputs)


def _print_warnings(path: str, p) -> None:
    """The plan's warnings, one line each on stderr (the graph still runs)."""
    for w in p.warnings:
        print(f"starloom: {path}: warning: {w}", file=sys.stderr)


def cmd_run(args) -> int:
    from starloom.graph_runtime import runs as runs_mod
    from starloom.graph_runtime.cache import Cache
    from starloom.graph_runtime.graph import GraphValidationError
    from starloom.graph_runtime.run import Run, new_run_dir
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(Path(args.runs))
    try:
        p = _load_plan(args.graph, _pairs(args.param, "--param"), _pairs(args.set, "--set"))
    except GraphValidationError as e:
        runs_mod.write_validation_failure(run_dir, e, args.graph)
        print(f"starloom: {e}", file=sys.stderr)
        return 2
    unknown = set(args.force or []) - {n.spec.id for n in p.nodes}
    if unknown:
        print(f"starloom: --force names no node of the graph: {', '.join(sorted(unknown))}",
              file=sys.stderr)
        return 2
    _print_warnings(args.graph, p)
    print(f"Running {args.graph} ({len(p.nodes)} nodes) in {run_dir}", file=sys.stderr)
    run = Run(run_dir, None if args.no_cache else Cache(args.cache),
              executor=_executor(args), force=set(args.force or []),
              listeners=[_Progress()], graph_file=args.graph)
    return _execute(run, p, run_dir)


def _executor(args):
    """Where per-frame work runs: worker processes (--workers, STARLOOM_WORKERS, else one per
    core) or a Dask cluster (--executor dask, --scheduler ADDRESS)."""
    from starloom.graph_runtime.executor import make_executor
    return make_executor(getattr(args, "executor", "local"), getattr(args, "workers", None),
                         getattr(args, "scheduler", None))


def _execute(run, p, run_dir: Path) -> int:
    """Run the plan, then say what happened; the exit code (0 ok, 1 failed, 130 Ctrl+C)."""
    from starloom.graph_runtime import runs as runs_mod
    try:
        res = run.execute(p)
    except KeyboardInterrupt:
        run.close()
        runs_mod.mark_interrupted(run_dir, "interrupted by the user (Ctrl+C)")
        from starloom.graph_runtime.report import write_report
        write_report(run_dir)
        print(f"starloom: interrupted; finished nodes are cached, 'starloom resume {run_dir}' "
              f"continues", file=sys.stderr)
        return 130
    outputs = sorted((run_dir / "outputs").glob("*"))
    if res.status != "ok":
        print(f"starloom: run {res.status}: {res.error}", file=sys.stderr)
        print(f"  details: {run_dir / 'logs' / 'run_events.jsonl'}", file=sys.stderr)
        return 1
    print(f"Finished: {len(res.executed)} node(s) executed, {len(res.cached)} from cache "
          f"({res.frames_computed} frame(s) computed, {res.frames_cached} from cache).")
    print(f"Run directory: {run_dir}")
    for o in outputs:
        print(f"  outputs/{o.name}")
    print(f"Report: {run_dir / 'artifacts' / 'report.html'}")
    return 0


def cmd_validate(args) -> int:
    """Exit 0: the graph can run (warnings, e.g. an input a --param may still give, go to
    stderr); 2: it cannot (every problem listed, including inputs that do not exist)."""
    from starloom.graph_runtime.graph import GraphValidationError
    try:
        p = _load_plan(args.graph, _pairs(args.param, "--param"), _pairs(args.set, "--set"),
                       check_inputs=True)
    except GraphValidationError as e:
        print(f"starloom: {e}", file=sys.stderr)
        return 2
    _print_warnings(args.graph, p)
    print(f"{args.graph}: valid, {len(p.nodes)} nodes in order: "
          f"{' -> '.join(n.spec.id for n in p.nodes)}")
    return 0


def cmd_nodes(args) -> int:
    reg = default_registry()
    category = None
    for cls in reg:
        if cls.category != category:
            category = cls.category
            print(f"\n{category}")
        print(f"  {cls.type_id:<32} v{cls.version}  {cls.title}")
    for name, err in reg.load_errors.items():
        print(f"\nnode package '{name}' failed to load: {err}", file=sys.stderr)
    return 0


def cmd_node(args) -> int:
    cls = default_registry().get(args.type)
    print(f"{cls.type_id} (version {cls.version}): {cls.title}\n")
    if cls.description:
        print(inspect.cleandoc(cls.description) + "\n")
    if cls.per_frame:
        print(f"Maps over the frames of input '{cls.per_frame}', caching each frame.\n")
    for label, ports in (("Inputs", cls.inputs), ("Outputs", cls.outputs)):
        print(label + ":" + ("" if ports else " none"))
        for name, port in ports.items():
            opt = " (optional)" if port.optional else ""
            print(f"  {name:<16} {'/'.join(port.types):<22}{opt} {port.description}")
    print("Parameters:")
    schema = cls.Params.model_json_schema()
    for name, field in cls.Params.model_fields.items():
        prop = schema["properties"].get(name, {})
        unit = f" [{prop['unit']}]" if prop.get("unit") else ""
        choices = prop.get("enum") or [x.get("const") for x in prop.get("anyOf", []) if "const" in x]
        bounds = "".join(f" {k}={prop[k]}" for k in ("minimum", "exclusiveMinimum", "maximum",
                                                    "exclusiveMaximum") if k in prop)
        extra = f" one of {choices}" if choices else ""
        default = json.dumps(field.get_default(call_default_factory=True), default=str)
        print(f"  {name:<20} default {default}{unit}{bounds}{extra}"
              f"\n      {field.description or ''}")
    return 0


def cmd_schema(args) -> int:
    from starloom.serialization import json_schema
    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo(args) -> int:
    graph = resources.files("starloom.example_graphs") / "demo.json"
    with resources.as_file(graph) as path:
        args.graph = str(path)
        return cmd_run(args)


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def cmd_runs(args) -> int:
    from starloom.graph_runtime import runs as runs_mod
    infos = runs_mod.list_runs(args.runs_dir)
    if args.json:
        print(json.dumps([r.as_dict() for r in infos], indent=2))
        return 0
    if not infos:
        print(f"no runs in {args.runs_dir}")
        return 0
    rows = [(r.run, r.status + (f" (resumed {r.attempts}x)" if r.attempts else ""),
             (r.started or "-")[:19].replace("T", " "), _duration(r.seconds), r.graph or "-",
             r.node or "") for r in infos]
    head = ("RUN", "STATUS", "STARTED (UTC)", "DURATION", "GRAPH", "NODE")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in (head, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    if any(r.status == "interrupted" for r in infos):
        print("\n'starloom resume RUN_DIR' continues an interrupted run from what finished.")
    return 0


def _run_dir(path: str) -> Path | None:
    """``path`` as a run directory, or None after saying on stderr why it is not one."""
    from starloom.graph_runtime import runs as runs_mod
    run_dir = Path(path)
    if runs_mod.is_run_dir(run_dir):
        return run_dir
    print(f"starloom: {run_dir}: not a run directory (no status.json or graph.json)",
          file=sys.stderr)
    return None


def _resume_modules():
    """(Cache, Run, runs module), imported when a run resumes."""
    from starloom.graph_runtime import runs as runs_mod
    from starloom.graph_runtime.cache import Cache
    from starloom.graph_runtime.run import Run
    return Cache, Run, runs_mod


def cmd_resume(args) -> int:
    Cache, Run, runs_mod = _resume_modules()
    from starloom.graph_runtime.graph import GraphValidationError
    run_dir = _run_dir(args.run_dir)
    if run_dir is None:
        return 2
    old = runs_mod.read_status(run_dir)
    if old["status"] == "running":
        remote = old.get("host") != platform.node()
        print(f"starloom: {run_dir} is still running (pid {old.get('pid')} on "
              f"{old.get('host')}); wait for it to end or stop it first"
              + (f" (a run of another host counts as running until {run_dir / 'status.json'} "
                 f"and its event log are {runs_mod.STALE_AFTER.total_seconds() / 3600:g} h old)"
                 if remote else ""),
              file=sys.stderr)
        return 2
    try:
        p, force = runs_mod.resume_plan(run_dir, default_registry(), args.from_node)
    except GraphValidationError as e:
        print(f"starloom: {e}", file=sys.stderr)  # status.json keeps the run's own status
        return 2
    cache_dir, cache_note = runs_mod.resume_cache(run_dir, args.cache)
    env = runs_mod.read_environment(run_dir)
    runs_mod.archive_attempt(run_dir)
    print(f"Resuming {run_dir} (was {old['status']}; {len(p.nodes)} nodes) with {cache_note}"
          + (f"; recomputing {', '.join(sorted(force))}" if force else ""), file=sys.stderr)
    run = Run(run_dir, Cache(cache_dir) if cache_dir else None, executor=_executor(args),
              force=force, listeners=[_Progress()], graph_file=env.get("graph_file"))
    return _execute(run, p, run_dir)


def cmd_report(args) -> int:
    from starloom.graph_runtime.report import write_report
    run_dir = _run_dir(args.run_dir)
    if run_dir is None:
        return 2
    print(f"Report: {write_report(run_dir)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="starloom", description="Run and inspect Starloom graphs.")
    sub = ap.add_subparsers(dest="command", required=True)

    def run_options(p, graph=True):
        if graph:
            p.add_argument("graph", help="graph file (.json), or a FITS/PNG a save node wrote")
        p.add_argument("--param", action="append", metavar="NAME=VALUE",
                       help="set a graph parameter (repeatable)")
        p.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE",
                       help="set a node parameter (repeatable)")

    def exec_options(p):
        p.add_argument("--run-dir", help="folder of this run (default: runs/<run id>)")
        p.add_argument("--runs", default="runs", help="parent of new run folders (default: runs)")
        p.add_argument("--cache", help="cache folder (default: the user cache folder)")
        p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
        p.add_argument("--force", action="append", metavar="NODE",
                       help="recompute this node even when cached (repeatable)")
        parallel_options(p)

    def parallel_options(p):
        p.add_argument("--workers", metavar="N",
                       help="processes computing the frames of per-frame nodes (default: "
                            "STARLOOM_WORKERS, else one per core; 1: in this process)")
        p.add_argument("--executor", choices=("local", "dask"), default="local",
                       help="where per-frame work runs: worker processes on this machine "
                            "(default) or a Dask cluster (a LocalCluster unless --scheduler)")
        p.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask scheduler, e.g. tcp://host:8786 "
                            "(implies --executor dask; inputs, cache and run folder must be "
                            "on paths every worker sees)")

    p = sub.add_parser("run", help="validate and run a graph")
    run_options(p)
    exec_options(p)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("validate", help="check a graph without running it",
                       description="Check a graph without running it, inputs included. Exit "
                                   "status: 0 it can run (warnings on stderr), 2 it cannot.")
    run_options(p)
    p.set_defaults(fn=cmd_validate)
    sub.add_parser("nodes", help="list node types").set_defaults(fn=cmd_nodes)
    p = sub.add_parser("node", help="describe a node type")
    p.add_argument("type")
    p.set_defaults(fn=cmd_node)
    p = sub.add_parser("schema", help="print the graph file JSON Schema")
    p.add_argument("-o", "--output")
    p.set_defaults(fn=cmd_schema)
    p = sub.add_parser("demo", help="simulate a session and run the demo pipeline on it")
    run_options(p, graph=False)
    exec_options(p)
    p.set_defaults(fn=cmd_demo)
    p = sub.add_parser("runs", help="list run directories: status, start, duration, graph")
    p.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR",
                   help="folder of run directories (default: runs)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(fn=cmd_runs)
    p = sub.add_parser("resume", help="continue a killed or failed run in its run directory")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--from", dest="from_node", metavar="NODE",
                   help="recompute this node and everything downstream of it")
    p.add_argument("--cache", help="cache folder (default: the one the run used)")
    parallel_options(p)
    p.set_defaults(fn=cmd_resume)
    p = sub.add_parser("report", help="write a run directory's report.html again")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(fn=cmd_report)
    add_cache_parser(sub)
    add_library_parser(sub)
    p = sub.add_parser("edit", help="open the visual editor (needs the 'editor' extra)")
    p.add_argument("graph", nargs="?", help="graph file (.json), or a FITS/PNG file a Starloom "
                   "save node wrote (its embedded graph)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="set a graph parameter once opened, as an edit (repeatable)")
    p.set_defaults(fn=cmd_edit)
    return ap


def cmd_edit(args) -> int:
    try:
        from starloom.editor.app import main as editor_main
    except ImportError as e:
        print(f"starloom: the editor needs the 'editor' extra (pip install 'starloom[editor]'): {e}",
              file=sys.stderr)
        return 2
    return editor_main(args.graph, _pairs(args.param, "--param"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except StarloomError as e:  # GraphFileError, GraphValidationError, NodeError, ...
        print(f"starloom: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
