"""Starloom's node palette: a searchable list of node types over the flow view.

Ryven's own node list (the canvas pop-up and the dock) crashed on Enter after filtering and
placed the node at the row of the unfiltered list (issue 12), so it is never shown: the palette
replaces it. It is a plain child widget of the view (not a proxy in the scene, which Ryven's
pop-up was), opened where the user asked (double-click, Tab, right-click, or a wire dropped in
empty space); typing filters (:func:`~starloom.graph_runtime.node_search.search`), arrows move,
Enter or a click places the node there, Esc closes.
"""
from __future__ import annotations

import html

from qtpy.QtCore import QEvent, QPoint, QPointF, Qt, Signal
from qtpy.QtWidgets import QFrame, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout

from starloom.graph_runtime.node_search import search

from .text import plain_description

WIDTH, HEIGHT = 340, 360


class NodePalette(QFrame):
    """The node palette of one flow view.

    Parameters
    ----------
    view : FlowView or QWidget
        Parent; the palette opens over the view's viewport.
    registry : Registry
        Node types listed.
    docked : bool
        A palette always shown in a side panel (the window decides where the node goes).

    Attributes
    ----------
    scene_pos : QPointF
        Where the chosen node goes (its top-left corner), in scene coordinates.
    port, output : optional
        The port a wire was dragged from (only fitting types are listed) and whether it is an
        output.
    """

    chosen = Signal(str, object, object)  # type id, scene QPointF, port of the type to connect

    def __init__(self, view, registry, docked: bool = False):
        super().__init__(view)
        self.registry, self.docked = registry, docked
        self.scene_pos = QPointF()
        self.port, self.output = None, True
        self.setFrameShape(QFrame.StyledPanel)
        self.setAutoFillBackground(True)
        self.setStyleSheet("NodePalette { background: #fbfbfc; border: 1px solid #8a8f98; }")
        if not docked:
            self.setFixedSize(WIDTH, HEIGHT)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search nodes: title, type, category, words…")
        self.search.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.help = QLabel()
        self.help.setWordWrap(True)
        self.help.setStyleSheet("color: #444; font-size: 8pt;")
        self.help.setFixedHeight(64)
        self.help.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        for w in (self.search, self.list, self.help):
            layout.addWidget(w)
        self.search.textChanged.connect(self.refill)
        self.search.installEventFilter(self)
        self.list.itemActivated.connect(self._choose)
        self.list.itemClicked.connect(self._choose)
        self.list.currentItemChanged.connect(self._show_help)
        if docked:
            self.refill()
        else:
            self.hide()

    def open_at(self, view_pos: QPoint, port=None, output: bool = True):
        """Show the palette at a point of the viewport; the node will go there.

        Parameters
        ----------
        view_pos : QPoint
            Viewport coordinates of the requested place.
        port, output : optional
            A dragged port: list only types with a fitting port.
        """
        view = self.parentWidget()
        self.scene_pos = view.mapToScene(view_pos)
        self.port, self.output = port, output
        vp = view.viewport()
        origin = vp.mapTo(view, QPoint(0, 0))
        x = min(max(view_pos.x(), 0), max(vp.width() - WIDTH, 0)) + origin.x()
        y = min(max(view_pos.y(), 0), max(vp.height() - HEIGHT, 0)) + origin.y()
        self.move(x, y)
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        self.refill()
        self.show()
        self.raise_()
        self.search.setFocus(Qt.PopupFocusReason)

    def close_palette(self):
        """Hide the palette and give the keyboard back to the view."""
        if self.isVisible() and not self.docked:
            self.hide()
            self.parentWidget().setFocus()

    def refill(self, *_):
        """List the types matching the search text, best first, the first one current."""
        self.list.clear()
        for m in search(self.registry, self.search.text(), self.port, self.output):
            cls = self.registry.get(m.type_id)
            item = QListWidgetItem(f"{m.title}    [{m.category}]")
            item.setData(Qt.UserRole, (m.type_id, m.port))
            item.setToolTip(f"{m.type_id}\n{plain_description(cls.description)}")
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)
        else:
            self.help.setText("no node type matches" +
                              (" with a fitting port" if self.port is not None else ""))

    def types_listed(self) -> list[str]:
        """Type ids listed, in order."""
        return [self.list.item(i).data(Qt.UserRole)[0] for i in range(self.list.count())]

    def _show_help(self, item, _previous=None):
        if item is None:
            return
        type_id, port = item.data(Qt.UserRole)
        cls = self.registry.get(type_id)
        text = plain_description(cls.description)
        into = f" → <i>{html.escape(port)}</i>" if port else ""
        self.help.setText(f"<code>{html.escape(type_id)}</code>{into}<br>"
                          f"{html.escape(text[:220])}")

    def _choose(self, item):
        if item is None or not self.isVisible():  # a double-click also sends a click
            return
        type_id, port = item.data(Qt.UserRole)
        self.close_palette()
        self.chosen.emit(type_id, self.scene_pos, port)

    def eventFilter(self, obj, event):  # noqa: N802 (Qt naming)
        # The search field keeps the keyboard: arrows move in the list, Enter chooses, Esc
        # closes, so the user never has to leave the keys for the mouse.
        if obj is self.search and event.type() == QEvent.KeyPress:
            key = event.key()
            if key in (Qt.Key_Down, Qt.Key_Up, Qt.Key_PageDown, Qt.Key_PageUp):
                step = {Qt.Key_Down: 1, Qt.Key_Up: -1, Qt.Key_PageDown: 8, Qt.Key_PageUp: -8}
                row = self.list.currentRow() + step[key]
                if self.list.count():
                    self.list.setCurrentRow(min(max(row, 0), self.list.count() - 1))
                return True
            if key in (Qt.Key_Return, Qt.Key_Enter):
                self._choose(self.list.currentItem())
                return True
            if key == Qt.Key_Escape:
                self.close_palette()
                return True
        return super().eventFilter(obj, event)

    def keyPressEvent(self, event):  # noqa: N802 (Qt naming)
        if event.key() == Qt.Key_Escape:
            self.close_palette()
        elif event.key() in (Qt.Key_Return, Qt.Key_Enter):
            self._choose(self.list.currentItem())
        else:
            super().keyPressEvent(event)
