"""Editing the groups and comments drawn on a graph's canvas (the document's ``ui``).

They mean nothing to the runtime but are part of the document a user edits, so they are
changed like everything else in it: as undoable commands of
:class:`~starloom.graph_runtime.editing.EditableGraph` (which mixes :class:`CanvasNotes` in),
each announced as one ``CANVAS_CHANGED`` change.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import ValidationError

from starloom.serialization import CanvasUI, CommentUI, GroupUI

from .edit_rules import EditRefused
from .history import ChangeKind, Step


class CanvasNotes:
    """Groups and comments of an :class:`EditableGraph` (a mix-in: it uses the graph's
    document, history and change announcements)."""

    @property
    def groups(self) -> list[GroupUI]:
        """The groups on the canvas (read only: edit them with the methods below)."""
        return list(self._doc.ui.groups) if self._doc.ui else []

    @property
    def comments(self) -> list[CommentUI]:
        """The comments on the canvas (read only)."""
        return list(self._doc.ui.comments) if self._doc.ui else []

    def add_group(self, title: str, x: float, y: float, w: float = 300.0, h: float = 200.0,
                  color: str = "#8fb3e0") -> int:
        """Add a titled group (frame) with its top-left corner at ``(x, y)``; returns its index.

        Raises
        ------
        EditRefused
            If the size is not positive or the colour is not ``#rrggbb``.
        """
        group = _made(GroupUI, title=title, x=x, y=y, w=w, h=h, color=color)
        self._set_notes(self.groups + [group], self.comments, f"add group '{title}'")
        return len(self.groups) - 1

    def add_comment(self, text: str, x: float, y: float) -> int:
        """Add a comment at ``(x, y)``; returns its index."""
        comment = _made(CommentUI, text=text, x=x, y=y)
        self._set_notes(self.groups, self.comments + [comment], "add comment")
        return len(self.comments) - 1

    def update_group(self, index: int, **fields: Any):
        """Change fields of group ``index`` (``title``, ``x``, ``y``, ``w``, ``h``, ``color``).

        Raises
        ------
        EditRefused
            If there is no such group or a value is invalid.
        """
        groups = self.groups
        old = _at(groups, index, "group")
        groups[index] = _made(GroupUI, **{**old.model_dump(), **fields})
        self._set_notes(groups, self.comments, f"edit group '{groups[index].title}'",
                        merge_key=("group", index, tuple(sorted(fields))))

    def update_comment(self, index: int, **fields: Any):
        """Change fields of comment ``index`` (``text``, ``x``, ``y``)."""
        comments = self.comments
        old = _at(comments, index, "comment")
        comments[index] = _made(CommentUI, **{**old.model_dump(), **fields})
        self._set_notes(self.groups, comments, "edit comment",
                        merge_key=("comment", index, tuple(sorted(fields))))

    def remove_group(self, index: int):
        """Remove group ``index`` (the nodes inside it stay)."""
        groups = self.groups
        _at(groups, index, "group")
        del groups[index]
        self._set_notes(groups, self.comments, "remove group")

    def remove_comment(self, index: int):
        """Remove comment ``index``."""
        comments = self.comments
        _at(comments, index, "comment")
        del comments[index]
        self._set_notes(self.groups, comments, "remove comment")

    def _set_notes(self, groups: list, comments: list, text: str, merge_key=None):
        canvas = CanvasUI(groups=groups, comments=comments) if groups or comments else None
        with self._edit(text, merge_key):
            self._do(self._set_canvas, canvas)

    def _set_canvas(self, canvas: CanvasUI | None) -> Step:
        # The ui object is never changed in place: undo puts the previous object back.
        old, self._doc.ui = self._doc.ui, canvas
        self._emit(ChangeKind.CANVAS_CHANGED)
        return partial(self._set_canvas, old)


def _made(model, **fields):
    try:
        return model(**fields)
    except ValidationError as e:
        raise EditRefused("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                                    for err in e.errors())) from None


def _at(items: list, index: int, what: str):
    if not 0 <= index < len(items):
        raise EditRefused(f"there is no {what} {index}")
    return items[index]
