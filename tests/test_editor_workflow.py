"""The editor's second pass (issue 12), driven with pytest-qt: graph parameters from the
parameter form, copy and paste through JSON, fit to view, port colours, graphs embedded in images
(opened, dropped), ``starloom edit --param``, and the issue's whole "done when" path."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from editor_window import window  # noqa: F401  (the fixture; skips without Qt)
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from starloom.cli import main as cli  # noqa: E402
from starloom.editor.app import EditorWindow  # noqa: E402
from starloom.editor.viewer import ImageViewer  # noqa: E402
from starloom.serialization import load_graph  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "example_graphs"
DEMO = EXAMPLES / "demo.json"


def form_text(window):
    from PySide6.QtWidgets import QLabel
    return " ".join(label.text() for label in window.form.findChildren(QLabel))


def action(menu, text):
    return next(a for a in menu.actions() if a.text().startswith(text))


def add_by_search(qtbot, ed, words, pos, keyboard=True, pick=None):
    """Add a node as a user does: double-click the canvas, type, Enter (or click the entry)."""
    vp = ed.view.viewport()
    qtbot.mouseDClick(vp, Qt.LeftButton, pos=pos)
    qtbot.keyClicks(ed.palette.search, words)
    before = set(ed.node_ids())
    if keyboard:
        qtbot.keyClick(ed.palette.search, Qt.Key_Return)
    else:
        row = ed.palette.types_listed().index(pick)
        rect = ed.palette.list.visualItemRect(ed.palette.list.item(row))
        qtbot.mouseClick(ed.palette.list.viewport(), Qt.LeftButton, pos=rect.center())
    [nid] = set(ed.node_ids()) - before
    return nid


def test_a_parameter_is_exposed_bound_and_unbound_from_its_menu(window, qtbot):
    ed = window.editor
    a = ed.add_node("io.save_png", 40, 40)
    b = ed.add_node("io.save_png", 40, 300)
    ed.select(a)
    action(window.form.param_menu("stretch"), "Expose as graph parameter").trigger()
    assert ed.doc.parameters["stretch"].binds == [f"{a}.stretch"]
    # The form is rebuilt with the bind shown under the parameter's name.
    qtbot.waitUntil(lambda: "graph parameter &#x27;stretch&#x27;" in form_text(window))
    ed.select(b)
    action(window.form.param_menu("stretch"), "Bind to graph parameter 'stretch'").trigger()
    assert ed.doc.parameters["stretch"].binds == [f"{a}.stretch", f"{b}.stretch"]
    ed.set_graph_param("stretch", "zscale")
    ed.select(b)
    qtbot.wait(10)
    action(window.form.param_menu("stretch"), "Unbind").trigger()
    assert ed.doc.parameters["stretch"].binds == [f"{a}.stretch"]
    assert ed.doc.node(b).params["stretch"] == "zscale"  # keeps the value it had
    ed.select(a)
    qtbot.wait(10)
    action(window.form.param_menu("stretch"), "Unbind").trigger()
    assert "stretch" not in ed.doc.parameters
    ed.undo()
    assert ed.doc.parameters["stretch"].binds == [f"{a}.stretch"]


def test_copy_and_paste_between_graphs_keep_params_and_inner_edges(window, qtbot, tmp_path):
    ed = window.editor
    ed.open(DEMO)
    ed.view.select_items([ed.item("reference"), ed.item("register"), ed.item("stack")])
    assert ed.selected() == ["reference", "register", "stack"]
    window.copy()
    text = QApplication.clipboard().text()
    assert json.loads(text)["format"] == "starloom.graph" and "pickle" not in text
    ed.new()
    window.paste()
    assert sorted(ed.node_ids()) == ["reference", "register", "stack"]
    assert ed.doc.node("reference").params == {"method": "best"}
    assert {(e.from_, e.to) for e in ed.doc.edges} >= {("reference.reference",
                                                        "register.reference")}
    assert all(e.source[0] in ed.node_ids() for e in ed.doc.edges)
    new = ed.duplicate()
    assert sorted(new) == ["reference_2", "register_2", "stack_2"]
    assert ed.graph.has_edge("register_2.frames", "stack_2.frames")
    ed.undo()
    assert sorted(ed.node_ids()) == ["reference", "register", "stack"]


def test_fit_to_view_and_port_colours(window, qtbot):
    ed = window.editor
    window.open(DEMO)
    vp = ed.view.viewport().rect()
    for nid in ed.node_ids():  # every node in view after opening
        r = ed.view.mapFromScene(ed.item(nid).sceneBoundingRect()).boundingRect()
        assert vp.contains(r), nid
    ed.view.scale(3, 3)
    action(window.menuBar().actions()[1].menu(), "&Fit to view").trigger()
    assert ed.view.transform().m11() <= 1.0
    assert "Image" in window.legend.text() and "FrameSeries" in window.legend.text()
    dots = ed.node("stack").gui.port_dots
    assert dots[0].brush().color().name() != dots[-1].brush().color().name() or \
        len(dots) == 1
    # A wire dragged from the stack's image output: inputs taking an image light up.
    out = ed.node("stack").outputs[0]
    ed._wire_dragged(out)
    save_png = next(d for d in ed.node("save_png").gui.port_dots if not d.output)
    sim_out = ed.node("simulate").gui.port_dots[-1]
    assert save_png.pen().widthF() > 2 and sim_out.opacity() < 1
    ed._wire_dragged(None)
    assert save_png.pen().style() == Qt.NoPen and sim_out.opacity() == 1


def drop_file(widget, path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    # Qt delivers a drop only after the drag entered the widget and was accepted there.
    enter = QDragEnterEvent(QPoint(200, 200), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    assert QApplication.sendEvent(widget, enter) and enter.isAccepted()
    ev = QDropEvent(QPointF(200, 200), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, ev)


def test_the_done_when_path(window, qtbot, tmp_path):
    """Add three nodes by searching (keyboard and mouse, filtering), connect them, set a
    parameter, expose one as a graph parameter, save, reopen (identical), run, view the output
    zoomed; the saved image carries the graph, opened by a drop on the canvas."""
    ed = window.editor
    sim = add_by_search(qtbot, ed, "simul", QPoint(80, 120))
    bias = add_by_search(qtbot, ed, "bias", QPoint(420, 120), keyboard=False,
                         pick="calibration.master_bias")
    save = add_by_search(qtbot, ed, "png", QPoint(760, 120))
    assert [ed.doc.node(n).type for n in (sim, bias, save)] == \
        ["simulate.session", "calibration.master_bias", "io.save_png"]
    assert ed.connect(f"{sim}.bias", f"{bias}.frames")
    assert ed.connect(f"{bias}.master_bias", f"{save}.image")
    ed.select(sim)
    for name, value in (("width", "96"), ("height", "80"), ("n_bias", "2")):
        field = window.form.fields[name]
        field.input.selectAll()
        qtbot.keyClicks(field.input, value)
        qtbot.keyClick(field.input, Qt.Key_Return)
    assert ed.doc.node(sim).params["width"] == 96
    spin = ed.node_params[sim].fields["n_lights"].input  # on the node itself
    spin.selectAll()
    qtbot.keyClicks(spin, "2")
    qtbot.keyClick(spin, Qt.Key_Return)
    assert ed.doc.node(sim).params["n_lights"] == 2
    action(window.form.param_menu("seed"), "Expose as graph parameter").trigger()
    assert ed.doc.parameters["seed"].binds == [f"{sim}.seed"]
    path = ed.save(tmp_path / "built.json")
    text = path.read_bytes()
    window.open(path)
    assert not ed.modified
    assert ed.save(tmp_path / "again.json").read_bytes() == text
    result = qtbot.waitSignal(ed.run_finished, timeout=120000)
    with result:
        ed.run()
    assert result.args[0].status == "ok", result.args[0].error
    viewer = window.view_output(bias)
    assert isinstance(viewer, ImageViewer)
    viewer.zoom(4.0)
    assert viewer.zoom_factor() == pytest.approx(4.0, rel=0.05)
    viewer.set_stretch("zscale")
    viewer.set_levels(0.2, 0.8)
    assert viewer.readout_at(5, 6).startswith("x 5  y 6  value ")
    viewer.close()
    both = window.compare_outputs(bias, bias)
    assert both.second is not None and both.second.image.image is not None
    both.close()
    png = result.args[0].run_dir / "outputs" / "image.png"
    drop_file(ed.view.viewport(), png)
    assert sorted(ed.node_ids()) == sorted([sim, bias, save]) and ed.path is None
    assert ed.doc.node(sim).params["width"] == 96
    assert load_graph(path).parameters["seed"].binds == [f"{sim}.seed"]


def test_starloom_edit_an_image_and_with_params(qtbot, tmp_path):
    seen = []

    def close_editor(key):
        for w in QApplication.topLevelWidgets():
            if isinstance(w, EditorWindow) and w.isVisible():
                seen.append((key, w.editor.path, dict(w.editor.doc.parameters)))
                w.ask_before_discarding = False
                w.close()

    QTimer.singleShot(500, lambda: close_editor("param"))
    assert cli.main(["edit", str(DEMO), "--param", "n_lights=3"]) == 0
    assert seen and seen[-1][2]["n_lights"].default == 3
    assert cli.main(["edit", str(DEMO), "--param", "nope=3"]) == 2


def test_main_parameters_are_edited_on_the_node(window, qtbot):
    ed = window.editor
    nid = ed.add_node("stacking.combine", 40, 40)
    fields = ed.node_params[nid].fields
    assert list(fields) == ["method", "rejection"]
    combo = fields["method"].input
    assert not ed.item(nid).main_widget.param_editors.isHidden()
    combo.setCurrentIndex(fields["method"].choices.index("median"))  # as a user's pick does
    assert ed.doc.node(nid).params["method"] == "median"
    ed.select(nid)
    assert window.form.fields["method"].input.currentText() == "median"
    ed.undo()
    assert "method" not in ed.doc.node(nid).params and combo.currentText() == "average"
    save = ed.add_node("io.save_png", 40, 300)
    name = ed.node_params[save].fields["filename"].input
    name.selectAll()
    qtbot.keyClicks(name, "../outside.png")  # refused: stays inside outputs/ -- or taken
    qtbot.keyClick(name, Qt.Key_Return)
    value = ed.doc.node(save).params.get("filename", "image.png")
    assert name.text() == value
