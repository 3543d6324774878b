"""A corpus of bad inputs (issue 11, "Bad input"): each ends in one clear message naming the
file, node or parameter at fault, with the documented exit status and never a traceback.

Graph files live in ``tests/bad_inputs/``; the ones too large to keep (200,000 nested lists) and
the damaged FITS files are made here.
"""
from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_context import FakeContext
from astropy.io import fits

from starloom.cli.main import main

CORPUS = Path(__file__).resolve().parent / "bad_inputs"


def _cli(*args, cwd=CORPUS):
    """The CLI in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "starloom.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _main(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process: exit status, stdout, stderr (an exception fails the test)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# --- graph files that cannot be read: one line naming the file, exit 2 ------------------------

UNREADABLE = {
    "nonutf8.json": "not a UTF-8 text file (byte 0xff at offset 76); graph files are UTF-8 JSON",
    "bigint.json": "not valid JSON: an integer longer than 4300 digits",
    "not_json.json": "not valid JSON: Expecting value: line 1 column 40 (char 39)",
    "empty.json": "empty file, not a Starloom graph",
    "top_level_list.json": 'not a Starloom graph file (expected "format": "starloom.graph")',
    "not_a_graph.json": 'not a Starloom graph file (expected "format": "starloom.graph")',
    "newer_schema.json": "written with graph schema version 99, but this Starloom reads up to "
                         "version 1; upgrade Starloom to open it",
    "bad_edge.json": "invalid graph document: edges.0.from: String should match pattern "
                     "'^[^.]+\\.[^.]+$'; edges.0.to: String should match pattern '^[^.]+\\.[^.]+$'",
    "nan_position.json": "invalid graph document: nodes.0.ui.x: Input should be a finite number",
}


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_graph_file_is_one_line_naming_it(name, capsys, monkeypatch):
    monkeypatch.chdir(CORPUS)
    for command in ("validate", "run"):
        code, out, err = _main(capsys, command, name, "--run-dir", "/nonexistent/never") \
            if command == "run" else _main(capsys, command, name)
        assert code == 2
        assert err == f"starloom: {name}: {UNREADABLE[name]}\n"


def test_deeply_nested_json_is_refused(tmp_path, capsys, monkeypatch):
    """200,000 nested lists exhaust json's C stack: a message, not a RecursionError."""
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (tmp_path / "deep_params.json").write_text(json.dumps(
        {"format": "starloom.graph", "schema_version": 1, "nodes": [
            {"id": "sim", "type": "simulate.session", "version": 1,
             "params": {"seed": json.loads("[" * 100 + "]" * 100)}}]}))
    monkeypatch.chdir(tmp_path)
    for name in ("deep.json", "deep_params.json"):
        code, _, err = _main(capsys, "validate", name)
        assert code == 2
        assert err == f"starloom: {name}: nested more than 64 levels deep; not a Starloom graph file\n"


def test_missing_and_folder_graph_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.json").mkdir()
    code, _, err = _main(capsys, "validate", "nothing.json")
    assert (code, err) == (2, "starloom: nothing.json: cannot read graph file: No such file or "
                              "directory\n")
    code, _, err = _main(capsys, "validate", "folder.json")
    assert (code, err) == (2, "starloom: folder.json: cannot read graph file: Is a directory\n")


@pytest.mark.parametrize("name", ["nonutf8.json", "bigint.json"])
def test_cli_process_prints_no_traceback(name):
    res = _cli("validate", name)
    assert res.returncode == 2
    assert res.stderr == f"starloom: {name}: {UNREADABLE[name]}\n"


def test_cli_process_deep_nesting(tmp_path):
    (tmp_path / "deep.json").write_text("{\"a\": " * 200_000 + "1" + "}" * 200_000)
    res = _cli("run", "deep.json", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == ("starloom: deep.json: nested more than 64 levels deep; not a Starloom "
                          "graph file\n")


# --- graphs that read but cannot run: every problem named, exit 2 -----------------------------

INVALID = {
    "cycle.json": ["cycle among nodes: a, b, ref"],
    "unknown_type.json": ["node 'mystery': unknown node type 'io.load_everything'"],
    "newer_node_version.json": ["node 'sim': 'simulate.session' version 99 is newer than the "
                                "installed version 1; upgrade Starloom or the node package"],
    "wrong_port_type.json": ["node 'png', input port 'image': type mismatch: sim.lights gives "
                             "FrameSeries, 'image' takes Image"],
    "infinity_param.json": ["node 'sim', param 'light_exposure': Input should be a finite "
                            "number (got inf)"],
    "bound_invalid.json": ["node 'sim', param 'n_lights': value written in the graph file is "
                           "invalid: Unable to parse input string as an integer, exceeded "
                           "maximum size (got 1e+30); graph parameter 'n_lights' replaces it "
                           "when the graph runs"],
    "missing_input.json": [f"node 'load', param 'path': input not found: "
                           f"{CORPUS / 'no_such_folder'}"],
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_graph_lists_each_problem(name, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(CORPUS)
    code, _, err = _main(capsys, "validate", name)
    problems = INVALID[name]
    assert code == 2
    assert err == (f"starloom: {name}: {len(problems)} problem(s):\n"
                   + "".join(f"  - {p}\n" for p in problems))


def test_run_of_invalid_graph_leaves_validation_failed(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(CORPUS)
    code, _, err = _main(capsys, "run", "infinity_param.json", "--run-dir", str(tmp_path / "r"))
    assert code == 2 and "param 'light_exposure': Input should be a finite number" in err
    assert json.loads((tmp_path / "r" / "status.json").read_text())["status"] == "validation_failed"


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999", "Infinity"])
def test_non_finite_set_on_command_line_is_refused(value, capsys, monkeypatch):
    monkeypatch.chdir(CORPUS)
    code, _, err = _main(capsys, "validate", "bound_conflict.json", "--set",
                         f"sim.light_exposure={value}")
    assert code == 2
    assert "node 'sim', param 'light_exposure': Input should be a finite number" in err


# --- warnings: the graph runs, and says so -----------------------------------------------------

def test_bound_param_written_in_file_warns_which_value_won(capsys, monkeypatch):
    monkeypatch.chdir(CORPUS)
    code, out, err = _main(capsys, "validate", "bound_conflict.json")
    assert code == 0 and out == "bound_conflict.json: valid, 1 nodes in order: sim\n"
    assert err == ("starloom: bound_conflict.json: warning: node 'sim', param 'n_lights': the "
                   "graph file sets 12, but graph parameter 'n_lights' binds it: 8 (its default) "
                   "is used\n")
    code, _, err = _main(capsys, "validate", "bound_conflict.json", "--param", "n_lights=5")
    assert code == 0 and "8 (its default)" not in err and "5 (its --param value) is used" in err


def test_missing_input_bound_to_graph_parameter_warns(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(CORPUS)
    code, out, err = _main(capsys, "validate", "missing_input_bound.json")
    assert code == 0 and "valid, 2 nodes" in out
    assert err == (f"starloom: missing_input_bound.json: warning: node 'load', param 'path': "
                   f"input not found: {CORPUS / 'no_such_lights'} (the default of graph "
                   f"parameter 'lights'; give it with --param lights=PATH)\n")
    # a --param naming nothing is the user's own mistake: an error
    code, _, err = _main(capsys, "validate", "missing_input_bound.json", "--param",
                         f"lights={tmp_path / 'gone'}")
    assert code == 2 and f"input not found: {tmp_path / 'gone'}" in err
    # and one naming a real folder (or a glob that matches) is fine
    (tmp_path / "lights").mkdir()
    for value in (tmp_path / "lights", f"{tmp_path}/li*"):
        code, _, err = _main(capsys, "validate", "missing_input_bound.json", "--param",
                             f"lights={value}")
        assert (code, err) == (0, "")


# --- bad frames: the run fails naming the file, exit 1 -----------------------------------------

def _bias(path: Path, shape=(40, 60), **cards):
    header = fits.Header({"IMAGETYP": "Bias Frame", "EXPTIME": 0.0, **cards})
    data = np.random.default_rng(0).normal(300, 5, shape).astype(np.uint16)
    fits.PrimaryHDU(data, header).writeto(path)


def _patch_card(path: Path, key: str, value):
    """Overwrite a card's value in the file's bytes, as a broken writer would."""
    raw = bytearray(path.read_bytes())
    i = raw.find(key.ljust(8).encode() + b"=")
    raw[i:i + 30] = (key.ljust(8) + "= " + str(value).rjust(20)).encode()
    path.write_bytes(bytes(raw))


def _bias_graph(tmp_path: Path) -> Path:
    folder = tmp_path / "bias"
    folder.mkdir()
    for i in range(3):
        _bias(folder / f"b{i}.fits")
    graph = tmp_path / "bias.json"
    graph.write_text(json.dumps({
        "format": "starloom.graph", "schema_version": 1,
        "nodes": [{"id": "load", "type": "io.load_frames", "version": 1,
                   "params": {"path": "bias"}},
                  {"id": "master", "type": "calibration.master_bias", "version": 1},
                  {"id": "save", "type": "io.save_fits", "version": 1,
                   "params": {"filename": "bias.fits"}}],
        "edges": [{"from": "load.frames", "to": "master.frames"},
                  {"from": "master.master_bias", "to": "save.image"}]}))
    return graph


def _run_fails(capsys, tmp_path, graph) -> str:
    run_dir = tmp_path / "run"
    code, _, err = _main(capsys, "run", str(graph), "--run-dir", str(run_dir), "--no-cache")
    assert code == 1
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    assert not list((run_dir / "outputs").iterdir())
    return err.splitlines()[-2]


def test_truncated_fits(tmp_path, capsys):
    graph = _bias_graph(tmp_path)
    frame = tmp_path / "bias" / "b1.fits"
    frame.write_bytes(frame.read_bytes()[:4000])
    assert _run_fails(capsys, tmp_path, graph) == (
        f"starloom: run failed: node 'master': {frame}: image data unreadable (truncated or "
        f"corrupt file?) (TypeError: buffer is too small for requested array)")


def test_wrong_bitpix(tmp_path, capsys):
    graph = _bias_graph(tmp_path)
    frame = tmp_path / "bias" / "b1.fits"
    _patch_card(frame, "BITPIX", 7)
    line = _run_fails(capsys, tmp_path, graph)
    assert line.startswith(f"starloom: run failed: node 'load': {frame}: not a readable FITS file")


def test_mixed_shapes(tmp_path, capsys):
    graph = _bias_graph(tmp_path)
    (tmp_path / "bias" / "b1.fits").unlink()
    _bias(tmp_path / "bias" / "b1.fits", shape=(50, 60))
    assert _run_fails(capsys, tmp_path, graph) == (
        "starloom: run failed: node 'master': ValueError: frame 'b1' has shape (50, 60), "
        "expected (40, 60) like 'b0'")


def test_contradictory_header_size(tmp_path, capsys):
    """NAXIS1 says 99 columns, the data hold 60 per row: the frame is refused by name."""
    graph = _bias_graph(tmp_path)
    _patch_card(tmp_path / "bias" / "b1.fits", "NAXIS1", 99)
    line = _run_fails(capsys, tmp_path, graph)
    assert line.startswith("starloom: run failed: node 'master': ") and "'b1'" in line


def test_contradictory_frame_type_warns(tmp_path, capsys):
    """A dark among the bias frames (by its header) runs, with a warning naming it."""
    graph = _bias_graph(tmp_path)
    (tmp_path / "bias" / "b1.fits").unlink()
    _bias(tmp_path / "bias" / "b1.fits", IMAGETYP="Dark Frame", EXPTIME=-5.0)
    code, _, _ = _main(capsys, "run", str(graph), "--run-dir", str(tmp_path / "run"),
                       "--no-cache")
    assert code == 0
    diagnostics = json.loads((tmp_path / "run" / "artifacts" / "master.json").read_text())
    assert diagnostics["warnings"] == ["1 frame(s) are not marked 'bias' (e.g. b1)"]


def test_unreadable_frame(tmp_path, capsys, monkeypatch):
    """A frame the user may not read. Tests run as root in CI, where chmod 000 does not stop
    a read, so the refusal is made by ``open`` itself."""
    graph = _bias_graph(tmp_path)
    frame = tmp_path / "bias" / "b1.fits"
    frame.chmod(0)
    real_open = builtins.open

    def refusing_open(file, *args, **kw):
        if str(file) == str(frame):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kw)

    monkeypatch.setattr(builtins, "open", refusing_open)
    line = _run_fails(capsys, tmp_path, graph)
    assert line.startswith("starloom: run failed: node 'load': ")
    assert f"[Errno 13] Permission denied: '{frame}'" in line


# --- non-finite pixels, too few frames -----------------------------------------------------------

def _Ctx(frame=None):
    return FakeContext(frame=frame)


@pytest.fixture(scope="module")
def lights():
    from starloom.astro.simulate import simulate_session
    frames = simulate_session(seed=3, shape=(160, 240), n_bias=1, n_darks=1, n_flats=1,
                              n_lights=3, n_stars=60, dither=4.0)
    out = []
    for ccd in frames["light"]:
        ccd = ccd.copy()
        ccd.data = ccd.data.astype(np.float32)
        out.append(ccd)
    return out


def _spoil(ccd, fraction: float, value=np.nan):
    ccd = ccd.copy()
    ccd.data = ccd.data.copy()
    ccd.data[:, :int(round(ccd.shape[1] * fraction))] = value
    return ccd


def test_mostly_nan_frame_is_never_the_reference(lights):
    from starloom.astro.frames import FrameSeries
    from starloom.nodes.registration import SelectReference
    series = FrameSeries.from_frames([_spoil(lights[0], 0.6), _spoil(lights[1], 0.1, np.inf),
                                      lights[2]], ["nan60", "inf10", "clean"])
    ctx = _Ctx()
    SelectReference().run(ctx, SelectReference.Params(), series)
    scores = ctx.diagnostics["scores"]
    assert ctx.diagnostics["reference"] != "nan60"
    assert scores["nan60"]["rejected"] == ("frame 'nan60': 60% of its pixels are NaN or infinite "
                                           "(at most 50% allowed)")
    # a few inf pixels: scored on the finite ones, not thrown away
    assert scores["inf10"]["rejected"] is None and scores["inf10"]["stars"] > 0
    assert np.isfinite(scores["inf10"]["half_light_radius_px"])
    assert scores["inf10"]["nonfinite_fraction"] == 0.1


def test_every_frame_mostly_nan_is_an_error(lights):
    from starloom.astro.errors import StarloomError
    from starloom.astro.frames import FrameSeries
    from starloom.nodes.registration import SelectReference
    series = FrameSeries.from_frames([_spoil(lights[0], 0.75, np.inf)], ["bad"])
    with pytest.raises(StarloomError, match="no frame can be the reference: each is mostly NaN "
                                            r"or infinite \(e.g. frame 'bad': 75%"):
        SelectReference().run(_Ctx(), SelectReference.Params(), series)
    ctx = _Ctx()
    SelectReference().run(ctx, SelectReference.Params(method="index"), series)
    assert ctx.warnings == ["the chosen reference is a poor one: frame 'bad': 75% of its pixels "
                            "are NaN or infinite (at most 50% allowed)"]


def test_star_align_rejects_a_mostly_nan_frame(lights):
    from starloom.astro.errors import FrameRejected
    from starloom.nodes.registration import StarAlign
    with pytest.raises(FrameRejected, match=r"^frame 'l0': 60% of its pixels are NaN or "
                                            r"infinite \(at most 50% allowed\)$"):
        StarAlign().run(_Ctx("l0"), StarAlign.Params(), frame=_spoil(lights[0], 0.6),
                        reference=lights[1])


@pytest.mark.parametrize("n, rejection, warning", [
    (1, "sigma_clip", "only 1 frame: nothing is combined or rejected; the result is that frame"),
    (2, "sigma_clip", "only 2 frames: rejection 'sigma_clip' needs at least 3 frames to reject "
                      "outliers"),
    (2, "minmax", "only 2 frames: rejection 'minmax' needs at least 3 frames to reject outliers"),
    (2, "none", None),
    (3, "sigma_clip", None)])
def test_few_frames_stack_warns(lights, n, rejection, warning):
    from starloom.astro.frames import FrameSeries
    from starloom.nodes.stacking import Stack
    series = FrameSeries.from_frames(lights[:n], [f"l{i}" for i in range(n)])
    ctx = _Ctx()
    Stack().run(ctx, Stack.Params(rejection=rejection), series)
    assert ctx.warnings == ([warning] if warning else [])


def test_every_float_param_refuses_non_finite_values():
    """Infinity and NaN are refused for each float parameter of each node type, by name."""
    from pydantic import ValidationError
    from starloom.graph_runtime.registry import default_registry
    checked = 0
    for cls in default_registry():
        for name, field in cls.Params.model_fields.items():
            schema = cls.Params.model_json_schema()["properties"][name]
            kinds = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
            if "number" not in kinds:
                continue
            for value in (float("inf"), float("-inf"), float("nan"), "inf"):
                with pytest.raises(ValidationError) as e:
                    cls.Params.model_validate({name: value})
                assert [err["loc"][0] for err in e.value.errors()] == [name], (cls.type_id, name)
                checked += 1
    assert checked > 40  # every node category has float parameters


# --- a failed node leaves nothing in outputs/ ----------------------------------------------------

def _save_series_graph(filename: str) -> dict:
    return {"format": "starloom.graph", "schema_version": 1, "nodes": [
        {"id": "sim", "type": "simulate.session", "version": 1,
         "params": {"width": 64, "height": 64, "n_bias": 2, "n_darks": 1, "n_flats": 1,
                    "n_lights": 1}},
        {"id": "save", "type": "io.save_fits", "version": 1, "params": {"filename": filename}}],
        "edges": [{"from": "sim.bias", "to": "save.image"}]}


def test_failed_node_leaves_no_partial_outputs(tmp_path, capsys):
    """The second bias frame gets the first's name: the node fails after writing one file."""
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(_save_series_graph("bias.fits")))
    line = _run_fails(capsys, tmp_path, graph)
    assert "gives the same name 'bias.fits' to several frames" in line
    assert not (tmp_path / "run" / ".staging").exists()


def test_succeeded_node_outputs_are_moved_in(tmp_path, capsys):
    from starloom.graph_runtime.graph import plan
    from starloom.graph_runtime.registry import default_registry
    from starloom.graph_runtime.run import Run
    from starloom.serialization import GraphDocument
    doc = GraphDocument.model_validate(_save_series_graph("bias_{index}.fits"))
    from starloom.graph_runtime.cache import Cache
    res = Run(tmp_path / "run", Cache(tmp_path / "cache")).execute(plan(doc, default_registry()))
    assert res.status == "ok", res.error
    outputs = tmp_path / "run" / "outputs"
    assert sorted(p.name for p in outputs.iterdir()) == ["bias_0.fits", "bias_1.fits"]
    # the node's Path output names the files where they are now
    assert res.outputs["save"]["path"] == f"{outputs / 'bias_0.fits'},{outputs / 'bias_1.fits'}"
    assert not (tmp_path / "run" / ".staging").exists()


def test_node_killed_while_writing_leaves_nothing_in_outputs(tmp_path):
    """Until its node returns, a file is in .staging/, never in outputs/ (here the node is
    stopped by Ctrl+C right after writing, as SIGKILL would stop it)."""
    from starloom.graph_runtime.graph import plan
    from starloom.graph_runtime.node import Node, Port
    from starloom.graph_runtime.registry import Registry
    from starloom.graph_runtime.run import Run
    from starloom.serialization import GraphDocument

    class WriteThenDie(Node):
        type_id = "test.write_then_die"
        outputs = {"path": Port("Path")}

        def run(self, ctx, params):
            ctx.output_path("half.fits").write_bytes(b"SIMPLE  =")
            raise KeyboardInterrupt

    registry = Registry()
    registry.add(WriteThenDie)
    doc = GraphDocument.model_validate(
        {"nodes": [{"id": "w", "type": "test.write_then_die", "version": 1}]})
    run = Run(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run.execute(plan(doc, registry))
    assert not list((tmp_path / "run" / "outputs").iterdir())
    assert (tmp_path / "run" / ".staging" / "w" / "outputs" / "half.fits").exists()
    run.close()  # what `starloom run` does on Ctrl+C
    assert not (tmp_path / "run" / ".staging").exists()
