"""The visual editor, driven for real: a Qt application on the offscreen platform (or a display),
the Ryven flow view, the Starloom runtime in a worker thread. Skipped when the 'editor' extra
(PySide6, ryvencore-qt) is not installed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import CCDData

if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtWidgets", reason="the editor needs PySide6")
pytest.importorskip("ryvencore_qt", reason="the editor needs ryvencore-qt")

from conftest import shared  # noqa: E402
from PySide6.QtCore import QEventLoop, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from starloom.editor.app import EditorWindow, main  # noqa: E402
from starloom.editor.viewer import ImageViewer  # noqa: E402
from starloom.cli import main as cli  # noqa: E402
from starloom.graph_runtime.graph import created_with  # noqa: E402
from starloom.graph_runtime.registry import default_registry  # noqa: E402
from starloom.serialization import GraphDocument, load_graph, parse_graph  # noqa: E402
from starloom.serialization.text_style import format_graph, text_style  # noqa: E402

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "example_graphs").glob("*.json"))
DEMO = next(p for p in EXAMPLES if p.name == "demo.json")


@pytest.fixture(scope="module")
def app():
    return QApplication.instance() or QApplication([])


@pytest.fixture
def window(app, tmp_path):
    w = EditorWindow(cache_dir=tmp_path / "cache", runs_dir=tmp_path / "runs")
    w.ask_before_discarding = False
    w.resize(1400, 850)
    w.show()
    yield w
    w.close()
    w.deleteLater()


def wait(signal, start=None, timeout=120.0):
    """Run the event loop until ``signal`` fires (after calling ``start``); its arguments."""
    got = []
    loop = QEventLoop()

    def done(*args):
        got.append(args)
        loop.quit()

    signal.connect(done)
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    try:
        if start is not None:
            start()
        if not got:
            timer.start(int(timeout * 1000))
            loop.exec()
    finally:
        timer.stop()
        signal.disconnect(done)
    assert got, f"timed out after {timeout} s"
    return got[0]


def run(window, **kw):
    """Run the graph from the editor and wait for the end; the RunResult."""
    return wait(window.editor.run_finished, lambda: window.editor.run(**kw))[0]


def type_in(line_edit, text):
    """Replace a line edit's text by typing, then press Enter, as a user does."""
    line_edit.selectAll()
    QTest.keyClicks(line_edit, text)
    QTest.keyClick(line_edit, Qt.Key_Return)


def test_node_list_shows_every_registered_type_by_category(window):
    # Starloom's own palette in the dock (not Ryven's list): every type, grouped by category.
    listed = window.node_list.types_listed()
    reg = default_registry()
    assert sorted(listed) == sorted(cls.type_id for cls in reg)
    categories = [reg.get(t).category for t in listed]
    assert categories == sorted(categories)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_opens_legibly_and_saves_unchanged(window, tmp_path, path):
    window.open(path)
    ed = window.editor
    assert not ed.modified
    rects = {nid: ed.item(nid).sceneBoundingRect() for nid in ed.node_ids()}
    assert all(r.left() >= 0 and r.top() >= 0 for r in rects.values())
    ids = list(rects)
    overlaps = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]
                if rects[a].intersects(rects[b])]
    assert not overlaps
    for e in ed.doc.edges:  # left-to-right flow
        assert rects[e.source[0]].right() < rects[e.target[0]].left(), (e.from_, e.to)
    out = ed.save(tmp_path / path.name)
    assert out.read_bytes() == path.read_bytes()  # an unedited save is byte-identical


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_parameter_changed_through_its_widget_is_saved(window, tmp_path, path):
    window.open(path)
    ed = window.editor
    for nid in ed.node_ids():
        ed.select(nid)
        name, field = next(((n, f) for n, f in window.form.fields.items()
                            if f.kind == "enum" and not ed.bound_parameter(nid, n)), (None, None))
        if name:
            break
    assert window.form.node_id == nid
    old = ed.param_value(nid, name)
    new = next(c for c in field.choices if c != old)
    field.input.setCurrentIndex(field.choices.index(new))
    assert ed.modified and "*" in window.windowTitle()
    expected = load_graph(path)
    expected.node(nid).params[name] = new
    # An edited graph records the Starloom and node-type versions it was written with.
    expected.metadata.created_with = created_with(expected, ed.registry)
    assert expected.metadata.created_with["nodes"][expected.node(nid).type] >= 1
    ed.save(tmp_path / path.name)
    assert load_graph(tmp_path / path.name) == expected
    # The file's layout (one line per node) is kept.
    assert (tmp_path / path.name).read_text() == format_graph(expected,
                                                              text_style(path.read_text()))
    # Undo back to the saved state clears the modified mark, in the title too.
    field.input.setCurrentIndex(field.choices.index(old))
    assert ed.modified and "*" in window.windowTitle()
    ed.undo()
    assert not ed.modified and "*" not in window.windowTitle()


def test_invalid_value_is_refused_and_the_form_keeps_the_node_value(window):
    ed = window.editor
    nid = ed.add_node("stacking.combine", 40, 40)
    ed.select(nid)
    field = window.form.fields["sigma_low"]
    refusals = []
    ed.refused.connect(refusals.append)
    type_in(field.input, "0")
    assert refusals and "sigma_low" in refusals[0] and "greater than 0" in refusals[0]
    assert "Refused" in window.form.message.text()
    body = ed.item(nid).main_widget
    assert not body.message.isHidden() and "sigma_low" in body.message.text()
    assert field.input.text() == "3.0" and "sigma_low" not in ed.doc.node(nid).params
    type_in(field.input, "2.5")
    assert ed.doc.node(nid).params["sigma_low"] == 2.5 and field.input.text() == "2.5"
    assert window.form.message.text() == "" and body.message.isHidden()
    # A quantity in another unit is converted to the field's unit.
    dark = ed.add_node("calibration.master_dark", 40, 300)
    ed.select(dark)
    type_in(window.form.fields["exposure_tolerance"].input, "0.01 min")
    assert ed.doc.node(dark).params["exposure_tolerance"] == pytest.approx(0.6)
    ed.undo()
    assert "exposure_tolerance" not in ed.doc.node(dark).params
    assert window.form.fields["exposure_tolerance"].input.text() == "0.5"


def test_incompatible_ports_are_refused_with_a_message(window):
    ed = window.editor
    load = ed.add_node("io.load_frames", 40, 40)
    png = ed.add_node("io.save_png", 340, 40)
    stack = ed.add_node("stacking.combine", 340, 240)
    assert not ed.connect(f"{load}.frames", f"{png}.image")
    assert "FrameSeries" in ed.last_refusal and "Image" in ed.last_refusal
    assert "FrameSeries" in ed.item(png).main_widget.message.text()
    assert ed.doc.edges == []
    assert ed.connect(f"{load}.frames", f"{stack}.frames")
    assert ed.connect(f"{stack}.image", f"{png}.image")
    assert [(e.from_, e.to) for e in ed.doc.edges] == [
        (f"{load}.frames", f"{stack}.frames"), (f"{stack}.image", f"{png}.image")]
    assert ed.item(png).main_widget.message.isHidden()
    ed.disconnect(f"{stack}.image", f"{png}.image")
    assert len(ed.doc.edges) == 1


def test_run_from_the_editor_then_rerun_from_cache(window):
    window.open(DEMO)
    ed = window.editor
    seen, ticks = {}, []
    ed.run_event.connect(lambda ev: seen.setdefault(ev.get("node"), set()).add(ev["event"]))
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(50)
    result = run(window)
    timer.stop()
    assert result.status == "ok", result.error
    assert ed.states == {nid: "done" for nid in ed.node_ids()}
    assert all("node_started" in seen[nid] for nid in ed.node_ids())
    assert len(ticks) > 10  # the GUI thread kept running while the graph ran
    body = ed.item("stack").main_widget
    assert not body.thumb.isHidden() and not body.thumb.pixmap().isNull()
    assert "done" in body.state_label.text()
    assert ed.node("stack").outputs[0].val.payload.startswith("image: Image 600 x 400 float32")
    assert "view image" in ed.node("stack").gui.actions  # context menu

    result = run(window)
    assert result.status == "ok" and sorted(result.cached) == sorted(ed.node_ids())
    assert ed.states == {nid: "cached" for nid in ed.node_ids()}

    viewer = window.view_output("stack")
    assert isinstance(viewer, ImageViewer) and viewer.isVisible()
    viewer.set_stretch("zscale")
    assert viewer.readout_at(10, 20).startswith("x 10  y 20  value ")
    assert "stacking.combine" in viewer.header.toPlainText()
    assert not viewer.grid_box.isEnabled()  # the simulated session has no WCS


def test_a_failing_node_shows_its_message(window, tmp_path):
    ed = window.editor
    nid = ed.add_node("io.load_frames", 40, 40)
    ed.select(nid)
    (tmp_path / "empty").mkdir()
    type_in(window.form.fields["path"].input, str(tmp_path / "empty"))
    result = run(window)
    assert result.status == "failed" and result.failed_node == nid
    assert ed.states[nid] == "failed"
    assert "no files match" in ed.item(nid).main_widget.message.text()


def test_an_invalid_graph_names_the_problem_on_the_node(window):
    ed = window.editor
    nid = ed.add_node("stacking.combine", 40, 40)
    problem = run(window)
    assert not hasattr(problem, "status") and problem.problems
    assert ed.states[nid] == "failed"
    assert "required input is not connected" in ed.item(nid).main_widget.message.text()


def test_a_run_can_be_cancelled(window):
    window.open(DEMO)
    ed = window.editor

    def cancel_early(ev):
        if ev["event"] == "node_started" and ev["node"] == "master_dark":
            ed.cancel(wait=False)

    assert run(window).status == "ok"
    thumb = ed.item("stack").main_widget.thumb
    assert not thumb.isHidden()
    ed.run_event.connect(cancel_early)
    result = run(window, force=set(ed.node_ids()))
    assert result.status == "cancelled"
    assert ed.states["master_bias"] == "done"
    assert not ed.item("master_bias").main_widget.thumb.isHidden()
    assert ed.states["stack"] == "cancelled" and not ed.running
    # The last run's image is not shown as the result of the cancelled node.
    assert thumb.isHidden() and ed.image_output("stack") is None


def test_viewer_header_is_that_of_the_image_shown(app):
    ccd = CCDData(np.zeros((30, 40), np.float32), unit="adu",
                  meta={"NAXIS": 2, "NAXIS1": 100, "NAXIS2": 50, "OBJECT": "M31"})
    viewer = ImageViewer(ccd, "coadd")
    try:
        text = viewer.header.toPlainText()
        assert "NAXIS1  =                   40" in text and "NAXIS2  =                   30" in text
        assert "OBJECT" in text
    finally:
        viewer.close()


def test_graph_parameters_ids_and_labels_are_edited_in_the_document(window):
    window.open(DEMO)
    ed = window.editor
    ed.select(None)
    type_in(window.form.fields["n_lights"].input, "0")  # simulate.n_lights is >= 1
    assert "n_lights" in window.form.message.text()
    assert ed.doc.parameters["n_lights"].default == 8
    type_in(window.form.fields["n_lights"].input, "4")
    assert ed.doc.parameters["n_lights"].default == 4
    ed.select("simulate")
    assert window.form.fields["n_lights"].input.text() == "4"  # the bound value is shown
    type_in(window.form.id_edit, "sim")
    assert "sim.seed" in ed.doc.parameters["seed"].binds
    assert {"sim.bias", "sim.lights"} <= {e.from_ for e in ed.doc.edges}
    type_in(window.form.id_edit, "master_bias")
    assert "taken" in window.form.message.text() and ed.doc.node("sim")
    type_in(window.form.label_edit, "Simulated night")
    assert ed.doc.node("sim").ui.label == "Simulated night"
    assert ed.node("sim").gui.display_title == "Simulated night"
    ed.undo()  # the label, then the id
    assert ed.doc.node("sim").ui.label is None
    assert ed.node("sim").gui.display_title == ed.node("sim").title
    ed.undo()
    assert ed.doc.node("simulate").params == {}
    assert "simulate.seed" in ed.doc.parameters["seed"].binds


def test_nodes_are_placed_removed_and_undone(window):
    ed = window.editor
    a = ed.add_node("io.load_frames", 40, 40)
    b = ed.add_node("stacking.combine", 340, 40)
    ed.connect(f"{a}.frames", f"{b}.frames")
    doc = ed.document()
    assert [n.id for n in doc.nodes] == [a, b] and doc.node(b).ui.x == 340
    ed.remove_node(a)
    assert ed.node_ids() == [b] and ed.doc.edges == []
    ed.undo()
    assert ed.document() == doc
    ed.item(b).moveBy(100, 50)
    assert ed.document().node(b).ui.x == 440 and ed.doc.node(b).ui.y == 90


def test_unknown_node_types_are_kept(window, tmp_path):
    doc = GraphDocument.model_validate(json.loads(DEMO.read_text()))
    doc.nodes.append(doc.nodes[-1].model_copy(update={"id": "denoise", "type": "acme.denoise"},
                                              deep=True))
    doc.nodes[-1].ui.y = 600
    doc.edges.append(doc.edges[-1].model_copy(update={"to": "denoise.image"}))
    path = tmp_path / "plugin.json"
    path.write_text(doc.to_json())
    window.open(path)
    assert window.editor.node("denoise").title == "Unknown: acme.denoise"
    window.editor.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == doc.to_json()


def test_hand_written_graph_without_positions_is_arranged(window):
    doc = parse_graph(json.dumps({
        "format": "starloom.graph", "schema_version": 1,
        "nodes": [{"id": "save", "type": "io.save_fits", "version": 1},
                  {"id": "stack", "type": "stacking.combine", "version": 1},
                  {"id": "load", "type": "io.load_frames", "version": 1}],
        "edges": [{"from": "load.frames", "to": "stack.frames"},
                  {"from": "stack.image", "to": "save.image"}]}))
    window.editor.load(doc)
    x = {nid: window.editor.item(nid).sceneBoundingRect() for nid in ("load", "stack", "save")}
    assert x["load"].right() < x["stack"].left() and x["stack"].right() < x["save"].left()
    assert window.editor.modified


def test_viewer_shows_sky_coordinates_and_grid_of_a_wcs_image(app):
    viewer = ImageViewer.from_file(shared("platesolve", "randomsky.fits"))
    try:
        assert viewer.has_wcs and viewer.grid_box.isEnabled()
        viewer.grid_box.setChecked(True)
        text = viewer.readout_at(640, 512)
        assert "RA " in text and "Dec " in text
        assert "CRVAL1" in viewer.header.toPlainText()
        for method in ("linear", "asinh", "zscale"):
            viewer.set_stretch(method)
    finally:
        viewer.close()


def test_starloom_edit_opens_the_window(app):
    closed = []

    def close_editor():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, EditorWindow) and w.isVisible() and w.editor.path == DEMO:
                closed.append(w.editor.node_ids())
                w.close()

    QTimer.singleShot(500, close_editor)
    guard = QTimer()  # never hang the test run
    guard.setSingleShot(True)
    guard.timeout.connect(app.quit)
    guard.start(30000)
    try:
        assert cli.main(["edit", str(DEMO)]) == 0
    finally:
        guard.stop()
    assert closed and "stack" in closed[0]
    assert main(str(DEMO.with_name("no-such-graph.json"))) == 2


def test_screenshot_is_written(app, tmp_path):
    from starloom.editor.screenshot import write_screenshot
    out = write_screenshot(tmp_path / "editor.png", DEMO, cache_dir=tmp_path / "cache",
                           runs_dir=tmp_path / "runs", size=(1200, 700))
    from PySide6.QtGui import QImage
    img = QImage(str(out))
    assert (img.width(), img.height()) == (1200, 700)
    grey = np.array([img.pixelColor(x, y).lightness() for x in range(0, 1200, 25)
                     for y in range(0, 700, 25)])
    assert grey.std() > 10  # not a blank window


@pytest.mark.realdata
def test_stargate_pipeline_built_from_an_empty_canvas(window, tmp_path):
    """The issue's 'done when': place and connect the register-and-stack nodes, set the lights
    folder, run, see the stack's preview, save, and `starloom run` the file from the cache."""
    lights = shared("stargate")
    ed = window.editor
    ed.new()
    ids = {t: ed.add_node(t) for t in ("io.load_frames", "registration.select_reference",
                                       "registration.star_align", "stacking.combine",
                                       "io.save_fits", "io.save_png")}
    load, ref, align, stack, fits_, png = ids.values()
    for src, dst in ((f"{load}.frames", f"{ref}.frames"), (f"{load}.frames", f"{align}.frames"),
                     (f"{ref}.reference", f"{align}.reference"),
                     (f"{align}.frames", f"{stack}.frames"), (f"{stack}.image", f"{fits_}.image"),
                     (f"{stack}.image", f"{png}.image")):
        assert ed.connect(src, dst), ed.last_refusal
    ed.select(load)
    type_in(window.form.fields["path"].input, str(lights))
    ed.select(fits_)
    type_in(window.form.fields["filename"].input, "stack.fits")
    result = run(window)
    assert result.status == "ok", result.error
    assert set(ed.states.values()) == {"done"}
    thumb = ed.item(stack).main_widget.thumb
    assert not thumb.isHidden() and thumb.pixmap().width() > 50
    saved = ed.save(tmp_path / "stargate.json")
    assert load_graph(saved).node(load).params["path"] == str(lights)

    run_dir = tmp_path / "cli-run"
    assert cli.main(["run", str(saved), "--cache", str(tmp_path / "cache"),
                     "--run-dir", str(run_dir)]) == 0
    status = json.loads((run_dir / "status.json").read_text())
    assert status["executed"] == [] and sorted(status["cached"]) == sorted(ed.node_ids())
    assert (run_dir / "outputs" / "stack.fits").read_bytes() == \
        (result.run_dir / "outputs" / "stack.fits").read_bytes()
