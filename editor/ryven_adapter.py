"""Where the editor reaches into Ryven's flow view beyond its public API: only here.

ryvencore-qt 0.5 (pinned) offers no hook for what a view over a separate document needs. Its
flow view turns each user action (place, delete, move, select a node) into an undo command and
pushes it on its own ``QUndoStack``, which would change the flow behind the document's back and
keep a second, different undo history. So :func:`route_user_actions` takes over
``FlowView.push_undo`` and reads those commands' attributes, and :func:`strip_view` hides
widgets and shortcuts through private members. Check these functions first when upgrading Ryven.
"""
from __future__ import annotations

from typing import Callable

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtGui import QCursor, QKeySequence
from qtpy.QtWidgets import QShortcut
from ryvencore_qt.src.flows.connections.ConnectionItem import ConnectionItem
from ryvencore_qt.src.flows.FlowCommands import (MoveComponents_Command, PlaceNode_Command,
                                                 RemoveComponents_Command,
                                                 SelectComponents_Command)
from ryvencore_qt.src.flows.nodes.NodeItem import NodeItem

# Ryven's copy/paste puts pickled node state on the clipboard; its undo/redo keys would drive
# its own (empty) undo stack and shadow the editor's Undo and Redo.
_DISABLED_KEYS = (QKeySequence.Copy, QKeySequence.Cut, QKeySequence.Paste, QKeySequence.Undo,
                  QKeySequence.Redo)


def strip_view(view):
    """Hide the view's drawing tools and its empty flow menu (not part of a Starloom graph),
    and turn off its own copy, cut, paste, undo and redo shortcuts."""
    view._menu_layout_proxy.hide()
    view._stylus_modes_proxy.hide()
    disabled = [QKeySequence(k) for k in _DISABLED_KEYS]
    for shortcut in view.findChildren(QShortcut):
        if shortcut.key() in disabled:
            shortcut.setEnabled(False)


def route_user_actions(view, *, place: Callable, remove: Callable, moved: Callable):
    """Send the view's user actions to the editor instead of Ryven's undo stack.

    Parameters
    ----------
    view : FlowView
    place : callable
        ``place(node_class, pos)``: a node type chosen in the view (its pop-up list, a drop from
        the node list, Shift+P); ``pos`` is the scene point (QPointF) it was chosen at.
    remove : callable
        ``remove(nodes, connections)``: Delete on a selection of Ryven nodes and connections.
    moved : callable
        ``moved(nodes)``: Ryven nodes dragged, or moved with Shift+arrows; their items are
        already at their new place.

    Notes
    -----
    Selections are done as Ryven does them, but not recorded: they are not edits. Any other
    command (paste, drawings) is dropped. Connections never come here: see
    :func:`route_connection_requests`.
    """
    def push_undo(cmd):
        if isinstance(cmd, SelectComponents_Command):
            cmd.activate()
        elif isinstance(cmd, PlaceNode_Command):
            place(cmd.node_class, cmd.item_pos)
        elif isinstance(cmd, RemoveComponents_Command):
            remove(cmd.nodes, [i.connection for i in cmd.items if isinstance(i, ConnectionItem)])
        elif isinstance(cmd, MoveComponents_Command):
            moved([i.node for i in cmd.items_list if isinstance(i, NodeItem)])

    view.push_undo = push_undo


def route_connection_requests(view, flow, request: Callable[[object, object], None]):
    """Make ``request(output, input)`` handle every connection the user asks for.

    The view asks the flow whether a dragged connection (or its auto-connection of a node placed
    at the end of a drag) may be made, then makes it itself. Here ``request`` is asked instead,
    with the Ryven ports; it edits the document (which draws the connection through the
    mirror), and the view is told "invalid" so that it adds nothing itself.
    """
    view.check_connection_validity_request.disconnect()

    def check(connection, *_):
        try:
            request(*connection)
        finally:
            flow.connection_request_valid.emit(False)

    view.check_connection_validity_request.connect(check)


def route_place_requests(view, open_palette: Callable, wire_dragged: Callable = None):
    """Open Starloom's node palette wherever Ryven would open its node list, and also on a
    double-click or Tab on the empty canvas.

    Ryven's list (a proxy widget in the scene) crashed after filtering and placed the wrong
    node type (issue 12), so it is never shown.

    Parameters
    ----------
    view : FlowView
    open_palette : callable
        ``open_palette(view_pos, port)``: ``view_pos`` a viewport QPoint, ``port`` the Ryven
        port a wire was dragged from (a right-click or Shift+P give None).
    wire_dragged : callable, optional
        ``wire_dragged(port)``: a wire is being dragged from the Ryven ``port``; None when it
        is dropped.
    """
    view._node_list_widget_proxy.hide()

    def show_place_node_widget(pos, nodes=None):
        pin = view._auto_connection_pin
        # Ryven would auto-connect the next node it adds to this pin; the editor connects it
        # through the document instead.
        view._auto_connection_pin = None
        open_palette(pos, pin.port if pin is not None else None)

    view.show_place_node_widget = show_place_node_widget
    view._canvas_requests = _CanvasRequests(view, open_palette, wire_dragged)  # kept alive


def hide_node_internals(gui):
    """Remove what Ryven adds to every node that means nothing in Starloom: the collapse arrow
    in the title bar (a click on a short title hit it) and the "update shape" action."""
    gui.actions.pop("update shape", None)


def drop_collapse_button(item):
    """Take the collapse arrow out of a node item's title bar, now and whenever Ryven rebuilds
    the item's layout (it makes a new arrow each time the item changes shape)."""
    widget = item.widget
    build = widget.setup_layout

    def setup_layout():
        layout = build()
        _drop_arrow(widget)
        return layout

    widget.setup_layout = setup_layout
    _drop_arrow(widget)


def _drop_arrow(widget):
    button = widget.collapse_button
    if button is not None and widget.header_layout is not None:
        widget.header_layout.removeItem(button)
        button.hide()
        button.setEnabled(False)


class _CanvasRequests(QObject):
    """Event filter of a flow view: double-click on empty canvas, or Tab, asks for the palette
    at the mouse (Tab) or the click."""

    def __init__(self, view, open_palette: Callable, wire_dragged: Callable | None):
        super().__init__(view)
        self.view, self.open_palette, self.wire_dragged = view, open_palette, wire_dragged
        self.dragging = False
        view.installEventFilter(self)
        view.viewport().installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 (Qt naming)
        kind = event.type()
        if kind in (QEvent.MouseMove, QEvent.MouseButtonRelease) and self.wire_dragged:
            self._follow_wire(kind == QEvent.MouseMove)
        if kind == QEvent.MouseButtonDblClick and obj is self.view.viewport():
            hit = self.view.itemAt(event.pos())
            # A group drawn behind the nodes counts as canvas (canvas_notes.GroupItem).
            if event.button() == Qt.LeftButton and (
                    hit is None or getattr(hit.topLevelItem(), "canvas_background", False)):
                self.open_palette(event.pos(), None)
                return True
        elif kind == QEvent.KeyPress and event.key() == Qt.Key_Tab and \
                not event.modifiers() & ~Qt.KeypadModifier:
            # Tab would move the keyboard focus away from the canvas; here it adds a node at
            # the mouse, or at the view's centre if the mouse is elsewhere.
            vp = self.view.viewport()
            pos = vp.mapFromGlobal(QCursor.pos())
            if not vp.rect().contains(pos):
                pos = vp.rect().center()
            self.open_palette(pos, None)
            return True
        return False

    def _follow_wire(self, moving: bool):
        dragging = moving and self.view._dragging_connection and \
            self.view._selected_pin is not None
        if dragging != self.dragging:
            self.dragging = dragging
            self.wire_dragged(self.view._selected_pin.port if dragging else None)


def route_file_drops(view, open_file: Callable[[str], None]):
    """Call ``open_file(path)`` for a file dropped on the canvas (Ryven's view only takes its
    own node-list drags)."""
    view._file_drops = _FileDrops(view, open_file)  # kept alive with the view


class _FileDrops(QObject):
    def __init__(self, view, open_file: Callable[[str], None]):
        super().__init__(view)
        self.open_file = open_file
        view.viewport().setAcceptDrops(True)  # Qt delivers drops only to widgets taking them
        view.viewport().installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 (Qt naming)
        kind = event.type()
        if kind in (QEvent.DragEnter, QEvent.DragMove, QEvent.Drop):
            urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
            if not urls:
                return False
            event.acceptProposedAction()
            if kind == QEvent.Drop:
                self.open_file(urls[0].toLocalFile())
            return True
        return False


def fit_view(view, rect, max_scale: float = 1.0, min_scale: float = 0.15):
    """Zoom and scroll the view to show the scene rectangle ``rect`` whole (never zoomed in
    beyond ``max_scale``), keeping Ryven's own zoom bookkeeping (used by its wheel zoom and
    pop-ups) in step."""
    vp = view.viewport()
    if rect.isEmpty() or vp.width() < 2 or vp.height() < 2:
        return
    scale = min(vp.width() / rect.width(), vp.height() / rect.height(), max_scale)
    scale = max(scale, min_scale)
    view.resetTransform()
    view.scale(scale, scale)
    view._current_scale = scale
    view._total_scale_div = 1 / scale
    view.centerOn(rect.center())
