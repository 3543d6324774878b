"""The editor's node tools (issue 12), driven with pytest-qt: run to the selected node, the node
log and the run report, recent files, clearing one node's cache and recomputing it, frame
selected and the minimap, groups and comments on the canvas, comparing two outputs."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from editor_window import window  # noqa: F401  (the fixture; skips without Qt)
from PySide6.QtCore import QPoint, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QContextMenuEvent, QDesktopServices  # noqa: E402
from PySide6.QtWidgets import QApplication, QInputDialog  # noqa: E402
from starloom.editor.app import EditorWindow  # noqa: E402
from starloom.editor.viewer import ImageViewer  # noqa: E402
from starloom.serialization import load_graph  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "example_graphs"
DEMO = EXAMPLES / "demo.json"


def menu(window, title):
    return next(a.menu() for a in window.menuBar().actions() if a.text() == title)


def action(m, text):
    return next(a for a in m.actions() if a.text().replace("&", "").startswith(text))


def right_click_node(qtbot, ed, node_id, entry):
    """Right-click a node's title and choose ``entry`` in the menu that opens."""
    chosen = []

    def pick():
        popup = QApplication.activePopupWidget()
        if popup is None:
            QTimer.singleShot(20, pick)
            return
        hit = next(a for a in popup.actions() if a.text() == entry)
        chosen.append(hit.text())
        popup.close()
        hit.trigger()

    QTimer.singleShot(20, pick)
    rect = ed.view.mapFromScene(ed.item(node_id).sceneBoundingRect()).boundingRect()
    pos = QPoint(rect.center().x(), rect.top() + 12)  # on the title
    vp = ed.view.viewport()
    qtbot.mouseClick(vp, Qt.RightButton, pos=pos)
    # QTest's click does not make the context-menu event the window system sends after it.
    QApplication.sendEvent(vp, QContextMenuEvent(QContextMenuEvent.Mouse, pos, vp.mapToGlobal(pos)))
    qtbot.waitUntil(lambda: chosen == [entry])


def run_with_key(qtbot, window, key, modifier=Qt.NoModifier):
    with qtbot.waitSignal(window.editor.run_finished, timeout=120_000) as got:
        qtbot.keyClick(window.editor.view, key, modifier)
    return got.args[0]


def test_run_to_node_its_log_report_cache_clearing_and_recompute(window, qtbot, tmp_path,
                                                                 monkeypatch):
    ed = window.editor
    window.open(DEMO)
    ed.select("master_dark")
    result = run_with_key(qtbot, window, Qt.Key_F6)  # Run > Run to selected node
    assert result.status == "ok", result.error
    assert sorted(result.executed) == ["master_bias", "master_dark", "simulate"]
    assert "stack" not in ed.states and ed.states["master_dark"] == "done"

    # The node log shows the selected node's events; the run log is the whole run's.
    window.docks["Node log"].raise_()
    assert "done in" in window.node_log.toPlainText()
    ed.select("stack")
    assert "not run yet" in window.node_log.toPlainText()

    # The run's report opens in the browser.
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    qtbot.keyClick(ed.view, Qt.Key_R, Qt.ControlModifier)
    assert opened and opened[0].toLocalFile() == str(
        (result.run_dir / "artifacts" / "report.html").resolve())

    # Right-click > Clear cached results: the node's entry goes, its ancestors' stay.
    key = window.run_tools.keys["master_dark"]
    entry = tmp_path / "cache" / "objects" / key[:2] / key
    assert entry.is_dir()
    right_click_node(qtbot, ed, "master_dark", "Clear cached results")
    assert not entry.exists()
    ed.select("master_dark")
    result = run_with_key(qtbot, window, Qt.Key_F6)
    assert result.executed == ["master_dark"]
    assert sorted(result.cached) == ["master_bias", "simulate"]

    # Right-click > Recompute: the whole graph runs, that node recomputed though cached.
    with qtbot.waitSignal(ed.run_finished, timeout=120_000) as got:
        right_click_node(qtbot, ed, "master_bias", "Recompute")
    result = got.args[0]
    assert result.status == "ok", result.error
    assert "master_bias" in result.executed and "simulate" in result.cached
    assert "stack" in result.executed

    # View > Compare two outputs: the two selected nodes' images side by side.
    ed.view.select_items([ed.item("stack"), ed.item("master_bias")])
    action(menu(window, "&View"), "Compare two outputs").trigger()
    viewer = window.viewers[-1]
    assert isinstance(viewer, ImageViewer) and viewer.isVisible()
    assert "stack.image" in viewer.windowTitle() and "master_bias." in viewer.windowTitle()
    assert viewer.other is not None


def test_a_failed_node_shows_its_message_in_the_node_log(window, qtbot, tmp_path):
    ed = window.editor
    nid = ed.add_node("io.load_frames", 40, 40)
    (tmp_path / "empty").mkdir()
    ed.set_param(nid, "path", str(tmp_path / "empty"))
    ed.select(nid)
    result = run_with_key(qtbot, window, Qt.Key_F6)
    assert result.status == "failed"
    text = window.node_log.toPlainText()
    assert "FAILED: " in text and "no files match" in text and "Traceback" not in text


def test_recent_files(window, qtbot, tmp_path):
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"g{i}.json")
        shutil.copy(DEMO, paths[-1])
        window.open(paths[-1])
    recent = menu(window, "&File").actions()
    entry = next(a for a in recent if a.text() == "Open &Recent").menu()
    entry.aboutToShow.emit()
    listed = [a.data() for a in entry.actions()]
    assert listed == [str(p.resolve()) for p in reversed(paths)][:10]
    paths[10].unlink()  # a file gone is dropped from the list
    entry.aboutToShow.emit()
    listed = [a.data() for a in entry.actions()]
    assert str(paths[10].resolve()) not in listed and len(listed) == 9
    next(a for a in entry.actions() if a.data() == str(paths[5].resolve())).trigger()
    assert window.editor.path == paths[5]
    # A new window reads the same settings.
    other = EditorWindow()
    qtbot.addWidget(other)
    assert other.recent.paths()[0] == str(paths[5].resolve())


def test_frame_selected_and_minimap(window, qtbot):
    ed = window.editor
    window.open(DEMO)
    fitted = ed.view.transform().m11()
    ed.select("master_flat")
    ed.view.setFocus()
    qtbot.keyClick(ed.view, Qt.Key_F)
    assert ed.view.transform().m11() > fitted
    vp = ed.view.viewport().rect()
    assert vp.contains(ed.view.mapFromScene(ed.item("master_flat").sceneBoundingRect())
                       .boundingRect())
    # While the palette's search field has the focus, F types an "f".
    ed.view.scale(0.5, 0.5)
    scale = ed.view.transform().m11()
    qtbot.mouseDClick(ed.view.viewport(), Qt.LeftButton, pos=QPoint(5, vp.height() - 5))
    qtbot.waitUntil(ed.palette.search.hasFocus)
    qtbot.keyClick(ed.palette.search, Qt.Key_F)
    assert ed.palette.search.text() == "f" and ed.view.transform().m11() == scale
    qtbot.keyClick(ed.palette.search, Qt.Key_Escape)
    ed.view.scale(2, 2)
    scale = ed.view.transform().m11()
    assert not window.minimap.isVisible()  # hidden until asked for
    action(menu(window, "&View"), "Minimap").trigger()
    mini = window.minimap
    qtbot.waitUntil(mini.isVisible)
    mini.fit()
    target = ed.item("save_png").sceneBoundingRect().center()
    qtbot.mouseClick(mini.viewport(), Qt.LeftButton, pos=mini.mapFromScene(target))
    centre = ed.view.mapToScene(ed.view.viewport().rect().center())
    assert abs(centre.x() - target.x()) < 60 and abs(centre.y() - target.y()) < 60
    assert ed.view.transform().m11() == scale
    assert mini.visible_rect().contains(target)


def test_groups_and_comments_are_undoable_and_saved(window, qtbot, tmp_path, monkeypatch):
    ed = window.editor
    path = tmp_path / "demo.json"
    shutil.copy(DEMO, path)
    window.open(path)
    ed.view.select_items([ed.item("master_bias"), ed.item("master_dark")])
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Masters", True))
    monkeypatch.setattr(QInputDialog, "getMultiLineText", lambda *a, **k: ("check flats", True))
    qtbot.keyClick(ed.view, Qt.Key_G, Qt.ControlModifier)
    [group] = ed.graph.groups
    assert group.title == "Masters"
    box = ed.item("master_bias").sceneBoundingRect()
    assert group.x < box.x() and group.y < box.y()
    qtbot.keyClick(ed.view, Qt.Key_M, Qt.ControlModifier)
    assert [c.text for c in ed.graph.comments] == ["check flats"]
    assert len(window.notes.items) == 2
    # A double-click inside a group is one on the canvas: the palette opens.
    frame = window.notes.items[0]
    inside = next(p for p in (ed.view.mapFromScene(group.x + dx, group.y + dy)
                              for dx in range(10, int(group.w), 20)
                              for dy in range(50, int(group.h), 20))
                  if ed.view.itemAt(p) is frame)  # not on a node or wire
    qtbot.mouseDClick(ed.view.viewport(), Qt.LeftButton, pos=inside)
    qtbot.waitUntil(ed.palette.isVisible)
    qtbot.keyClick(ed.palette.search, Qt.Key_Escape)
    # A double-click on a comment edits it.
    monkeypatch.setattr(QInputDialog, "getMultiLineText", lambda *a, **k: ("edited", True))
    note = window.notes.items[1]
    qtbot.mouseDClick(ed.view.viewport(), Qt.LeftButton, pos=ed.view.mapFromScene(
        note.sceneBoundingRect().center()))
    assert [c.text for c in ed.graph.comments] == ["edited"]

    # Drag the group by its title: one undoable move.
    item = window.notes.items[0]
    start = ed.view.mapFromScene(item.mapToScene(item.title.pos()) + item.title.boundingRect()
                                 .center())
    qtbot.mousePress(ed.view.viewport(), Qt.LeftButton, pos=start)
    qtbot.mouseMove(ed.view.viewport(), pos=start + type(start)(30, 20))
    qtbot.mouseMove(ed.view.viewport(), pos=start + type(start)(60, 40))
    qtbot.mouseRelease(ed.view.viewport(), Qt.LeftButton, pos=start + type(start)(60, 40))
    moved = ed.graph.groups[0]
    assert moved.x > group.x and moved.y > group.y
    # It carried the nodes inside it, in the same undoable step.
    bias = ed.doc.node("master_bias").ui
    assert (bias.x, bias.y) == (340 + moved.x - group.x, 40 + moved.y - group.y)
    assert ed.mirror.top_left("master_bias") == pytest.approx((bias.x, bias.y))
    assert ed.doc.node("simulate").ui.x == 40
    ed.undo()
    assert ed.graph.groups[0].x == group.x and ed.doc.node("master_bias").ui.x == 340

    window.save()
    assert load_graph(path).ui.groups[0].title == "Masters"
    window.open(path)
    assert [type(i).__name__ for i in window.notes.items] == ["GroupItem", "CommentItem"]
    ed.undo()  # nothing to undo after opening
    qtbot.keyClick(ed.view, Qt.Key_Z, Qt.ControlModifier)
    assert len(ed.graph.groups) == 1
    ed.graph.remove_group(0)
    ed.graph.remove_comment(0)
    assert ed.doc.ui is None  # empty: left out of the file again
    ed.undo()
    ed.undo()
    assert len(ed.graph.groups) == 1 and len(ed.graph.comments) == 1
