"""Groups (titled frames) and comments on the canvas, drawn from the document's ``ui``.

Like the nodes, they are a mirror of the document: every change (add, move, retitle, remove)
goes through :class:`~starloom.graph_runtime.canvas_notes.CanvasNotes` operations of the
:class:`~starloom.graph_runtime.editing.EditableGraph` (so it is undoable and saved), and the
items are drawn again from the document after each change.
"""
from __future__ import annotations

from qtpy.QtCore import QObject, QPointF, QRectF, Qt
from qtpy.QtGui import QBrush, QColor, QFont, QPen
from qtpy.QtWidgets import (QGraphicsItem, QGraphicsRectItem, QGraphicsSimpleTextItem,
                            QGraphicsTextItem, QInputDialog, QMenu)

from starloom.graph_runtime.editing import ChangeKind, EditRefused

GROUP_Z, COMMENT_Z = -100, 50  # groups behind the nodes, comments above them


class _Movable:
    """Mix-in of the note items: a drag ends in one document edit (the item's new place)."""

    def _moved_to(self, pos: QPointF):
        raise NotImplementedError

    def mouseReleaseEvent(self, event):  # noqa: N802 (Qt naming)
        super().mouseReleaseEvent(event)
        if self.pos() != self.origin:
            self._moved_to(self.pos())


class GroupItem(_Movable, QGraphicsRectItem):
    """A group drawn as a tinted rectangle with its title in its top-left corner; dragged by
    its title strip (elsewhere a press selects nodes as on the bare canvas)."""

    canvas_background = True  # a double-click on it opens the palette (ryven_adapter)
    TITLE_STRIP = 36  # px from the top that drag the group

    def __init__(self, notes: "CanvasNotesView", index: int, group):
        super().__init__(0, 0, group.w, group.h)
        self.notes, self.index = notes, index
        self.origin = QPointF(group.x, group.y)
        self.setPos(self.origin)
        color = QColor(group.color)
        self.setPen(QPen(color.darker(130), 2))
        color.setAlpha(60)
        self.setBrush(QBrush(color))
        self.setZValue(GROUP_Z)
        self.setFlag(QGraphicsItem.ItemIsMovable)
        self.title = QGraphicsSimpleTextItem(group.title, self)
        self.title.setFont(QFont("Sans", 14, QFont.Bold))
        self.title.setPos(6, 4)
        self.setToolTip(f"group '{group.title}': drag to move, right-click to rename or remove")

    def mousePressEvent(self, event):  # noqa: N802 (Qt naming)
        if event.pos().y() > self.TITLE_STRIP or event.button() != Qt.LeftButton:
            event.ignore()  # to the view: rubber-band selection inside the group
            return
        # A group carries the nodes lying wholly inside it, as frames do in other node editors.
        ed, frame = self.notes.editor, self.sceneBoundingRect()
        self.carried = {nid: ed.mirror.top_left(nid) for nid in ed.node_ids()
                        if frame.contains(ed.item(nid).sceneBoundingRect())}
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):  # noqa: N802 (Qt naming)
        super().mouseMoveEvent(event)
        delta = self.pos() - self.origin
        for nid, (x, y) in getattr(self, "carried", {}).items():
            self.notes.editor.mirror.place(nid, x + delta.x(), y + delta.y())

    def _moved_to(self, pos):
        delta = pos - self.origin
        carried = {nid: (float(round(x + delta.x())), float(round(y + delta.y())))
                   for nid, (x, y) in getattr(self, "carried", {}).items()}
        graph = self.notes.graph
        try:
            with graph.group(f"move group '{graph.groups[self.index].title}'"):
                graph.update_group(self.index, x=round(pos.x()), y=round(pos.y()))
                if carried:
                    graph.move_nodes(carried)
        except EditRefused as e:  # cannot happen for drawn items; the redraw puts them back
            self.notes.show_refusal(e)

    def contextMenuEvent(self, event):  # noqa: N802 (Qt naming)
        menu = QMenu()
        menu.addAction("Rename group…", lambda: self.notes.rename_group(self.index))
        menu.addAction("Remove group", lambda: self.notes.editor_call(
            self.notes.graph.remove_group, self.index))
        menu.exec(event.screenPos())
        event.accept()


class CommentItem(_Movable, QGraphicsTextItem):
    """A comment drawn as text on a pale yellow note."""

    def __init__(self, notes: "CanvasNotesView", index: int, comment):
        super().__init__(comment.text)
        self.notes, self.index = notes, index
        self.origin = QPointF(comment.x, comment.y)
        self.setPos(self.origin)
        self.setTextWidth(max(120.0, min(320.0, self.boundingRect().width())))
        self.setZValue(COMMENT_Z)
        self.setFlag(QGraphicsItem.ItemIsMovable)
        self.setToolTip("comment: drag to move, right-click to edit or remove")

    def paint(self, painter, option, widget=None):
        painter.fillRect(self.boundingRect(), QColor("#fff6b0"))
        super().paint(painter, option, widget)

    def mouseDoubleClickEvent(self, event):  # noqa: N802 (Qt naming)
        self.notes.edit_comment(self.index)
        event.accept()

    def _moved_to(self, pos):
        self.notes.editor_call(self.notes.graph.update_comment, self.index, x=round(pos.x()),
                               y=round(pos.y()))

    def contextMenuEvent(self, event):  # noqa: N802 (Qt naming)
        menu = QMenu()
        menu.addAction("Edit comment…", lambda: self.notes.edit_comment(self.index))
        menu.addAction("Remove comment", lambda: self.notes.editor_call(
            self.notes.graph.remove_comment, self.index))
        menu.exec(event.screenPos())
        event.accept()


class CanvasNotesView(QObject):
    """Draws the document's groups and comments in the flow view's scene and edits them.

    Parameters
    ----------
    editor : GraphEditor
    """

    def __init__(self, editor):
        super().__init__(editor)
        self.editor, self.graph = editor, editor.graph
        self.items: list[QGraphicsItem] = []
        self.graph.subscribe(self._on_change)
        self.redraw()

    def editor_call(self, operation, *args, **fields):
        """Run a notes operation; a refusal is shown like any refused edit."""
        try:
            return operation(*args, **fields)
        except EditRefused as e:
            self.show_refusal(e)
            return None

    def show_refusal(self, e: EditRefused):
        """Show why an edit of the notes was refused, as for any refused edit."""
        self.editor.message.emit(f"refused: {e}")
        self.editor.refused.emit(str(e))

    def add_group(self, title: str | None = None) -> int | None:
        """Add a group around the selected nodes (else at the view's centre), asking for its
        title when none is given; returns its index, or None if cancelled."""
        if title is None:
            title, ok = QInputDialog.getText(self.editor.view, "New group", "Title:")
            if not ok:
                return None
        rect = QRectF()
        for nid in self.editor.selected():
            rect = rect.united(self.editor.item(nid).sceneBoundingRect())
        if rect.isNull():
            view = self.editor.view
            centre = view.mapToScene(view.viewport().rect().center())
            rect = QRectF(centre.x() - 150, centre.y() - 100, 300, 200)
        else:
            rect = rect.adjusted(-30, -50, 30, 30)  # room for the title above the nodes
            # Ryven's scene starts at (0, 0): anything left of or above it cannot be seen.
            rect.moveTo(max(rect.x(), 0.0), max(rect.y(), 0.0))
        return self.editor_call(self.graph.add_group, title, round(rect.x()), round(rect.y()),
                                round(rect.width()), round(rect.height()))

    def add_comment(self, text: str | None = None) -> int | None:
        """Add a comment at the view's centre, asking for its text when none is given."""
        if text is None:
            text, ok = QInputDialog.getMultiLineText(self.editor.view, "New comment", "Comment:")
            if not ok or not text.strip():
                return None
        view = self.editor.view
        centre = view.mapToScene(view.viewport().rect().center())
        return self.editor_call(self.graph.add_comment, text, round(centre.x()),
                                round(centre.y()))

    def rename_group(self, index: int):
        """Ask for a group's new title."""
        title, ok = QInputDialog.getText(self.editor.view, "Rename group", "Title:",
                                         text=self.graph.groups[index].title)
        if ok:
            self.editor_call(self.graph.update_group, index, title=title)

    def edit_comment(self, index: int):
        """Ask for a comment's new text."""
        text, ok = QInputDialog.getMultiLineText(self.editor.view, "Edit comment", "Comment:",
                                                 self.graph.comments[index].text)
        if ok:
            self.editor_call(self.graph.update_comment, index, text=text)

    def redraw(self):
        """Draw the groups and comments of the document anew."""
        scene = self.editor.view.scene()
        for item in self.items:
            scene.removeItem(item)
        # Kept alive until the next redraw: the change may come from an item's own mouse event.
        self._retired = self.items
        self.items = [GroupItem(self, i, g) for i, g in enumerate(self.graph.groups)]
        self.items += [CommentItem(self, i, c) for i, c in enumerate(self.graph.comments)]
        for item in self.items:
            scene.addItem(item)

    def _on_change(self, change):
        if change.kind in (ChangeKind.CANVAS_CHANGED, ChangeKind.DOCUMENT_REPLACED):
            self.redraw()
