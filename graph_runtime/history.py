"""What changed in an edited graph, and how changes are undone, redone and announced.

:class:`Change` records say what changed. :class:`History` keeps the undo and redo stacks and
delivers the records to subscribers; it knows nothing else about graphs. A command is a list of
steps. A step is a function that changes the document and returns the step that reverts that
change (which in turn returns the step that re-applies it). Undo runs a command's steps in
reverse order and keeps what they return; redo does exactly the same again.
:class:`~starloom.graph_runtime.editing.EditableGraph` records its commands here.
"""
from __future__ import annotations

import enum
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator

Step = Callable[[], "Step"]


class ChangeKind(enum.StrEnum):
    """What a :class:`Change` record announces."""

    DOCUMENT_REPLACED = "document_replaced"
    """A whole new document (``EditableGraph.replace``): redraw everything."""
    NODE_ADDED = "node_added"
    """``node`` was inserted (its edges follow as EDGE_ADDED)."""
    NODE_REMOVED = "node_removed"
    """``node`` was removed (its edges went first, as EDGE_REMOVED)."""
    NODE_RENAMED = "node_renamed"
    """Node ``old`` is now ``node``; its edges and binds were rewritten."""
    NODE_MOVED = "node_moved"
    """``node``'s ``ui.x``/``ui.y`` changed."""
    LABEL_CHANGED = "label_changed"
    """``node``'s ``ui.label`` changed."""
    PARAM_CHANGED = "param_changed"
    """Parameter ``name`` of ``node`` was set or cleared."""
    EDGE_ADDED = "edge_added"
    """``edge`` (``("node.port", "node.port")``) was added."""
    EDGE_REMOVED = "edge_removed"
    """``edge`` was removed."""
    GRAPH_PARAMETER_CHANGED = "graph_parameter_changed"
    """Graph parameter ``name`` was created, removed, bound, unbound or set."""
    METADATA_CHANGED = "metadata_changed"
    """The graph's name or description changed."""
    CANVAS_CHANGED = "canvas_changed"
    """The groups or comments drawn on the canvas (the document's ``ui``) changed."""
    SAVED = "saved"
    """The document was saved: ``EditableGraph.modified`` is now False."""


@dataclass(frozen=True)
class Change:
    """One change of the document, as passed to subscribers.

    Attributes
    ----------
    kind : ChangeKind
    node : str or None
        The node concerned (its new id for a rename).
    name : str or None
        The parameter (PARAM_CHANGED) or graph parameter (GRAPH_PARAMETER_CHANGED).
    edge : (str, str) or None
        ``("node.port", "node.port")`` of EDGE_ADDED and EDGE_REMOVED.
    old : str or None
        The node's previous id (NODE_RENAMED).
    """

    kind: ChangeKind
    node: str | None = None
    name: str | None = None
    edge: tuple[str, str] | None = None
    old: str | None = None


@dataclass
class _Command:
    text: str
    merge_key: Hashable | None
    steps: list[Step]

    def replay(self):
        """Undo the command (or redo it, after an undo)."""
        self.steps = [step() for step in reversed(self.steps)]


class History:
    """The undo and redo stacks of a document, and the subscribers to its changes.

    Changes are announced (:meth:`announce`) while a command runs and delivered to subscribers
    when it ends, in order. A subscriber may start another command: its changes are delivered
    after the ones being delivered, so every subscriber sees every change in the same order.
    """

    def __init__(self):
        self._subscribers: list[Callable[[Any], None]] = []
        self._pending: list[Any] = []
        self._delivering = False
        self._open: _Command | None = None
        self._undo: list[_Command] = []
        self._redo: list[_Command] = []
        self._may_merge = False

    @contextmanager
    def command(self, text: str, merge_key: Hashable | None = None) -> Iterator[None]:
        """Record the steps made inside the ``with`` block as one command.

        A command inside another joins it. If the block raises, its steps are reverted, their
        changes are never delivered, and the exception propagates. A command with the same
        ``merge_key`` (not None) as the previous one, with no undo, redo or :meth:`seal` in
        between, joins it.
        """
        if self._open is not None:
            yield
            return
        cmd = self._open = _Command(text, merge_key, [])
        announced = len(self._pending)
        try:
            yield
        except BaseException:
            cmd.replay()
            del self._pending[announced:]  # nobody has heard of these changes: nobody will
            raise
        finally:
            self._open = None
        if cmd.steps:
            top = self._undo[-1] if self._undo else None
            if self._may_merge and merge_key is not None and top and top.merge_key == merge_key:
                top.steps += cmd.steps
            else:
                self._undo.append(cmd)
            self._redo.clear()
            self._may_merge = True
        self.deliver()

    def record(self, step: Step):
        """Add the step reverting a change just made to the open command.

        Raises
        ------
        RuntimeError
            If no command is open.
        """
        if self._open is None:
            raise RuntimeError("a change was made outside a command")
        self._open.steps.append(step)

    def announce(self, change: Any):
        """Queue a change record for the subscribers (see :meth:`deliver`)."""
        self._pending.append(change)

    def deliver(self):
        """Pass the queued change records to the subscribers, unless already doing so."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                change = self._pending.pop(0)
                for callback in list(self._subscribers):
                    callback(change)
        finally:
            self._delivering = False
            self._pending.clear()

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(change)`` for every change; returns a function that stops it."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def clear(self):
        """Forget every command (a new document)."""
        self._undo, self._redo, self._may_merge = [], [], False

    def seal(self):
        """Let the next command not merge with the last one (e.g. after a save)."""
        self._may_merge = False

    @property
    def undo_text(self) -> str | None:
        """Text of the command :meth:`undo` would undo, or None."""
        return self._undo[-1].text if self._undo else None

    @property
    def redo_text(self) -> str | None:
        """Text of the command :meth:`redo` would redo, or None."""
        return self._redo[-1].text if self._redo else None

    def undo(self) -> str | None:
        """Undo the last command; its text, or None if there was none.

        Raises
        ------
        RuntimeError
            If a command is open.
        """
        return self._replay(self._undo, self._redo)

    def redo(self) -> str | None:
        """Redo the last undone command; its text, or None if there was none.

        Raises
        ------
        RuntimeError
            If a command is open.
        """
        return self._replay(self._redo, self._undo)

    def _replay(self, source: list[_Command], target: list[_Command]) -> str | None:
        if self._open is not None:
            raise RuntimeError("undo or redo while a command is open")
        if not source:
            return None
        cmd = source.pop()
        cmd.replay()
        target.append(cmd)
        self._may_merge = False
        self.deliver()
        return cmd.text
