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

from qtpy.QtGui import QKeySequence
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
