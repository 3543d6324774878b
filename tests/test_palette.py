"""The node palette (issue 12): searching, ranking, and adding nodes by keyboard and mouse, driven
with pytest-qt through real key presses and clicks, including the paths that crashed Ryven's own
node list (type "load", press Enter) or placed the wrong node (click a filtered entry)."""
from __future__ import annotations

from editor_window import window  # noqa: F401  (the fixture; skips without Qt)
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from starloom.graph_runtime.node_search import search  # noqa: E402
from starloom.graph_runtime.registry import default_registry  # noqa: E402


def canvas(window):
    return window.editor.view.viewport()


def item_rect(palette, type_id):
    """Viewport rectangle of a type's row in a palette's list."""
    row = palette.types_listed().index(type_id)
    return palette.list.visualItemRect(palette.list.item(row))


def test_search_ranks_exact_and_prefix_matches_first():
    reg = default_registry()
    assert search(reg, "load")[0].type_id == "io.load_frames"
    assert search(reg, "save png")[0].type_id == "io.save_png"
    assert search(reg, "master dark")[0].type_id == "calibration.master_dark"
    assert search(reg, "io.save_fits")[0].type_id == "io.save_fits"
    assert search(reg, "calibration")[0].type_id.startswith("calibration.")
    assert search(reg, "zzzz-no-such") == []
    assert len(search(reg, "")) == len(reg)
    # Description words count, below titles.
    dark = [m.type_id for m in search(reg, "dark")]
    assert dark[0] == "calibration.master_dark" and len(dark) > 1


def test_double_click_type_and_enter_places_the_node_where_asked(window, qtbot):
    ed = window.editor
    qtbot.mouseDClick(canvas(window), Qt.LeftButton, pos=QPoint(300, 200))
    assert ed.palette.isVisible()
    qtbot.keyClicks(ed.palette.search, "load")
    assert ed.palette.types_listed()[0] == "io.load_frames"
    qtbot.keyClick(ed.palette.search, Qt.Key_Return)  # crashed Ryven's pop-up
    assert not ed.palette.isVisible()
    [nid] = ed.node_ids()
    assert ed.doc.node(nid).type == "io.load_frames"
    asked = ed.view.mapToScene(QPoint(300, 200))
    assert (ed.doc.node(nid).ui.x, ed.doc.node(nid).ui.y) == (round(asked.x()), round(asked.y()))
    ed.undo()
    assert ed.node_ids() == []


def test_tab_arrows_and_escape(window, qtbot):
    ed = window.editor
    ed.view.setFocus()
    qtbot.keyClick(ed.view, Qt.Key_Tab)
    assert ed.palette.isVisible() and ed.palette.search.hasFocus()
    qtbot.keyClick(ed.palette.search, Qt.Key_Escape)
    assert not ed.palette.isVisible() and ed.node_ids() == []
    qtbot.keyClick(ed.view, Qt.Key_Tab)
    qtbot.keyClicks(ed.palette.search, "master")
    listed = ed.palette.types_listed()
    assert len(listed) >= 2 and all("master" in t for t in listed[:3])
    qtbot.keyClick(ed.palette.search, Qt.Key_Down)
    qtbot.keyClick(ed.palette.search, Qt.Key_Return)
    assert [ed.doc.node(n).type for n in ed.node_ids()] == [listed[1]]


def test_clicking_a_filtered_entry_places_that_node(window, qtbot):
    ed = window.editor
    qtbot.mouseMove(canvas(window), QPoint(500, 300))  # Ryven opens it where the mouse rests
    qtbot.mouseClick(canvas(window), Qt.RightButton, pos=QPoint(500, 300))
    assert ed.palette.isVisible()
    qtbot.keyClicks(ed.palette.search, "frames")
    target = "io.load_frames"
    assert target in ed.palette.types_listed()
    qtbot.mouseClick(ed.palette.list.viewport(), Qt.LeftButton,
                     pos=item_rect(ed.palette, target).center())
    assert [ed.doc.node(n).type for n in ed.node_ids()] == [target]  # not a Master dark


def test_docked_list_filters_and_places_apart(window, qtbot):
    ed, dock = window.editor, window.node_list
    qtbot.keyClicks(dock.search, "save")
    assert set(dock.types_listed()) >= {"io.save_fits", "io.save_png"}
    for type_id in ("io.save_fits", "io.save_png"):
        qtbot.mouseClick(dock.list.viewport(), Qt.LeftButton,
                         pos=item_rect(dock, type_id).center())
    assert sorted(ed.doc.node(n).type for n in ed.node_ids()) == ["io.save_fits", "io.save_png"]
    a, b = (ed.item(n).sceneBoundingRect() for n in ed.node_ids())
    assert not a.intersects(b)  # not piled on the view's centre


def test_wire_dropped_in_empty_space_offers_fitting_nodes_and_connects(window, qtbot):
    ed = window.editor
    load = ed.add_node("io.load_frames", 40, 40)
    out = ed.node(load).outputs[0]  # frames: FrameSeries
    ed.open_palette(QPoint(600, 300), out)  # what a wire dropped in empty space asks for
    listed = ed.palette.types_listed()
    assert "stacking.combine" in listed and "io.load_frames" not in listed
    qtbot.keyClicks(ed.palette.search, "combine")
    qtbot.keyClick(ed.palette.search, Qt.Key_Return)
    stack = next(n for n in ed.node_ids() if n != load)
    assert ed.graph.has_edge(f"{load}.frames", f"{stack}.frames")
    ed.undo()  # one step: the node and its wire
    assert ed.node_ids() == [load] and ed.doc.edges == []


def test_real_wire_drag_into_empty_space_opens_the_filtered_palette(window, qtbot):
    ed = window.editor
    load = ed.add_node("io.load_frames", 40, 40)
    qtbot.wait(50)
    pin = ed.item(load).outputs[0].pin
    start = ed.view.mapFromScene(pin.sceneBoundingRect().center())
    end = QPoint(start.x() + 400, start.y() + 250)
    vp = canvas(window)
    qtbot.mousePress(vp, Qt.LeftButton, pos=start)
    qtbot.mouseMove(vp, QPoint(start.x() + 50, start.y() + 20))
    qtbot.mouseMove(vp, end)
    qtbot.mouseRelease(vp, Qt.LeftButton, pos=end)
    assert ed.palette.isVisible()
    assert "io.load_frames" not in ed.palette.types_listed()
    qtbot.keyClicks(ed.palette.search, "combine")
    qtbot.keyClick(ed.palette.search, Qt.Key_Return)
    stack = next(n for n in ed.node_ids() if n != load)
    assert ed.graph.has_edge(f"{load}.frames", f"{stack}.frames")


def test_node_items_have_no_collapse_arrow_or_ryven_actions(window):
    ed = window.editor
    nid = ed.add_node("stacking.combine", 40, 40)
    gui = ed.node(nid).gui
    assert "update shape" not in gui.actions
    ed.item(nid).widget.update_shape()  # Ryven makes a new arrow on each rebuild
    assert not ed.item(nid).widget.collapse_button.isVisible()
    ed.select(nid)
    assert "``" not in window.form.findChildren(type(window.form.message))[0].text()
