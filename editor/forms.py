"""Parameter forms generated from a node type's pydantic ``Params`` model (through its JSON
Schema): numbers with their range and unit, enums as drop-downs, booleans as check boxes, paths
with a file dialog, and free text (JSON for dicts and lists). Every edit goes through
:meth:`GraphEditor.set_param`; a refused value is shown and the field goes back to the value the
node holds, so the form never shows a value the node does not have.
"""
from __future__ import annotations

import html
import json
from typing import Any, Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                            QLineEdit, QMenu, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from .text import html_description, plain_description

_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
           ("exclusiveMaximum", "<"))


def _resolve(prop: dict, schema: dict) -> dict:
    if "$ref" in prop:
        prop = {**schema["$defs"][prop["$ref"].split("/")[-1]], **prop}
    if "allOf" in prop and len(prop["allOf"]) == 1:
        prop = {**_resolve(prop["allOf"][0], schema), **prop}
    return prop


def field_kind(prop: dict, schema: dict) -> tuple[str, list | None, bool]:
    """(kind, choices, nullable) of a JSON Schema property; kind is one of 'enum', 'bool',
    'int', 'path', 'text' (numbers and strings, converted by pydantic) or 'json'."""
    prop = _resolve(prop, schema)
    branches = [_resolve(b, schema) for b in prop.get("anyOf", [])]
    nullable = any(b.get("type") == "null" for b in branches)
    consts = [b["const"] for b in branches if "const" in b]
    choices = prop.get("enum") or consts or next((b["enum"] for b in branches if "enum" in b), None)
    if choices:
        return "enum", list(choices) + ([None] if nullable else []), nullable
    real = [b for b in branches if b.get("type") != "null"]
    if len(real) == 1:
        prop = {**prop, **real[0]}
    kind = prop.get("type")
    if kind == "boolean":
        return "bool", None, nullable
    if kind == "integer" and not nullable:
        return "int", None, nullable
    if kind == "string" and prop.get("format") == "path":
        return "path", None, nullable
    if kind in ("number", "integer", "string"):
        return "text", None, nullable
    return "json", None, nullable


def to_text(value: Any) -> str:
    """How a value is written in a text field (floats exactly, dicts and lists as JSON)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class FieldEditor:
    """One parameter's widget: :attr:`widget` to put in a form, :meth:`show` to display a value;
    user edits call ``commit(value)``."""

    def __init__(self, kind: str, prop: dict, commit: Callable[[Any], None],
                 choices: list | None = None, nullable: bool = False):
        self.kind, self.choices, self.nullable = kind, choices, nullable
        if kind == "enum":
            self.input = QComboBox()
            self.input.addItems(["(none)" if c is None else str(c) for c in choices])
            self.input.currentIndexChanged.connect(lambda i: commit(choices[i]))
        elif kind == "bool":
            self.input = QCheckBox()
            self.input.toggled.connect(lambda on: commit(bool(on)))
        elif kind == "int":
            self.input = QSpinBox()
            low = prop.get("minimum", prop.get("exclusiveMinimum", -2**31) + 1)
            high = prop.get("maximum", prop.get("exclusiveMaximum", 2**31 - 1) - 1)
            self.input.setRange(max(int(low), -2**31), min(int(high), 2**31 - 1))
            self.input.setKeyboardTracking(False)  # commit on Enter, focus out or arrows
            self.input.valueChanged.connect(lambda v: commit(int(v)))
        else:
            self.input = QLineEdit()
            self.input.editingFinished.connect(lambda: commit(self.parse(self.input.text())))
        self.widget = self.input
        if kind == "path":
            self.widget = QWidget()
            row = QHBoxLayout(self.widget)
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(self.input, 1)
            for text, pick in (("Folder…", QFileDialog.getExistingDirectory),
                               ("File…", lambda p, c, d: QFileDialog.getOpenFileName(p, c, d)[0])):
                button = QPushButton(text)
                button.setToolTip(f"Choose a {text[:-1].lower()}")
                button.clicked.connect(lambda _=False, pick=pick: self._browse(pick, commit))
                row.addWidget(button)

    def parse(self, text: str) -> Any:
        """The value typed in a text field (JSON for dicts and lists, None for empty if allowed)."""
        if text.strip() == "" and self.nullable:
            return None
        if self.kind == "json":
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return text  # refused by the model, with its message
        return text

    def _browse(self, pick, commit):
        chosen = pick(self.widget, "Choose a path", self.input.text())
        if chosen:
            self.input.setText(chosen)
            commit(chosen)

    def show(self, value: Any):
        """Display ``value`` without triggering a commit."""
        self.input.blockSignals(True)
        try:
            if self.kind == "enum":
                index = self.choices.index(value) if value in self.choices else -1
                self.input.setCurrentIndex(index)
            elif self.kind == "bool":
                self.input.setChecked(bool(value))
            elif self.kind == "int":
                self.input.setValue(int(value))
            else:
                self.input.setText(to_text(value))
                self.input.setCursorPosition(0)  # show the start of long values
        finally:
            self.input.blockSignals(False)


def field_editor(cls, name: str, commit: Callable[[Any], None]) -> FieldEditor:
    """The editor of parameter ``name`` of node type ``cls``."""
    schema = cls.Params.model_json_schema()
    prop = _resolve(schema["properties"][name], schema)
    kind, choices, nullable = field_kind(prop, schema)
    return FieldEditor(kind, prop, commit, choices, nullable)


def _hint(prop: dict) -> str:
    bounds = " ".join(f"{op} {prop[k]:g}" for k, op in _BOUNDS
                      if isinstance(prop.get(k), (int, float)))
    unit = prop.get("unit", "")
    return ", ".join(x for x in (bounds, unit and f"[{unit}]") if x)


class _Form(QWidget):
    """Common layout: a header, a form, and a line for refusals."""

    def __init__(self, editor, header: str):
        super().__init__()
        self.editor = editor
        self.fields: dict[str, FieldEditor] = {}
        layout = QVBoxLayout(self)
        self.header = QLabel(header)
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.RichText)
        layout.addWidget(self.header)
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        layout.addLayout(self.form)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #c62828;")
        layout.addWidget(self.message)
        layout.addStretch()
        editor.params_changed.connect(self._changed)

    def _row(self, label: str, widget: QWidget, tooltip: str = "", hint: str = ""):
        text = QLabel(f"{html.escape(label)}" + (f"<br><small style='color:#6a7079'>"
                                                  f"{html.escape(hint)}</small>" if hint else ""))
        text.setToolTip(tooltip)
        widget.setToolTip(tooltip)
        self.form.addRow(text, widget)
        return text

    def _result(self, error: str | None):
        self.message.setText(f"Refused: {error}" if error else "")
        self.refresh()

    def _changed(self, node_id: str):
        self.refresh()

    def refresh(self):
        """Show the values the document holds."""


class ParamForm(_Form):
    """The form of one node: id, label and every parameter of its type.

    Parameters
    ----------
    editor : GraphEditor
    node_id : str
    """

    def __init__(self, editor, node_id: str):
        self.spec = editor.doc.node(node_id)
        cls = editor.node_type(node_id)
        title = cls.title if cls else f"Unknown type {self.spec.type}"
        descr = html_description(cls.description) if cls else html.escape(
            "This node type is not installed: its parameters are kept as they are in the file.")
        super().__init__(editor, f"<b>{html.escape(title)}</b> <code>{html.escape(self.spec.type)}"
                                 f"</code> v{self.spec.version}<br><small style='color:#555'>"
                                 f"{descr}</small>")
        self.id_edit = QLineEdit()
        self.id_edit.editingFinished.connect(
            lambda: self._result(editor.rename_node(self.spec.id, self.id_edit.text().strip())))
        self._row("id", self.id_edit, "Node id: edges and graph parameters refer to it")
        self.label_edit = QLineEdit()
        self.label_edit.setPlaceholderText(title)
        self.label_edit.editingFinished.connect(
            lambda: self._result(editor.set_label(self.spec.id, self.label_edit.text())))
        self._row("label", self.label_edit, "Title shown on the node")
        if cls is not None:
            schema = cls.Params.model_json_schema()
            for name, field in cls.Params.model_fields.items():
                prop = _resolve(schema["properties"][name], schema)
                fe = field_editor(cls, name, lambda v, n=name: self.commit(n, v))
                self.fields[name] = fe
                hint = _hint(prop)
                bound = editor.bound_parameter(self.spec.id, name)
                if bound:
                    hint = (hint + ", " if hint else "") + f"graph parameter '{bound}'"
                label = self._row(name, fe.widget, plain_description(field.description), hint)
                label.setContextMenuPolicy(Qt.CustomContextMenu)
                label.customContextMenuRequested.connect(
                    lambda pos, n=name, w=label: self.param_menu(n).exec(w.mapToGlobal(pos)))
        self.refresh()

    @property
    def node_id(self) -> str:
        """The node's id (it follows renames)."""
        return self.spec.id

    def param_menu(self, name: str) -> QMenu:
        """The right-click menu of a parameter's label: expose it as a graph parameter, bind
        it to one of the same type, or unbind it."""
        menu, ed, nid = QMenu(self), self.editor, self.node_id
        bound = ed.bound_parameter(nid, name)
        if bound:
            menu.addAction(f"Unbind from graph parameter '{bound}'",
                           lambda: self._result(ed.unbind_param(nid, name)))
            return menu
        menu.addAction("Expose as graph parameter",
                       lambda: self._result(ed.expose_param(nid, name)))
        for gp in ed.doc.parameters:
            menu.addAction(f"Bind to graph parameter '{gp}'",
                           lambda g=gp: self._result(ed.bind_param(g, nid, name)))
        return menu

    def commit(self, name: str, value: Any) -> str | None:
        """Set a parameter as its widget does; returns the refusal, if any."""
        error = self.editor.set_param(self.node_id, name, value)
        self._result(error)
        return error

    def refresh(self):
        if not any(s is self.spec for s in self.editor.doc.nodes):
            return  # the node was deleted
        self.id_edit.setText(self.spec.id)
        self.label_edit.setText(self.spec.ui.label or "")
        for name, fe in self.fields.items():
            fe.show(self.editor.param_value(self.node_id, name))


class GraphForm(_Form):
    """The form of the graph itself: name, description and graph parameters."""

    def __init__(self, editor):
        super().__init__(editor, "<b>Graph</b><br><small style='color:#555'>Select a node to edit "
                                 "its parameters. Graph parameters set node parameters when the "
                                 "graph runs (and with <code>starloom run --param</code>).</small>")
        self.name_edit = QLineEdit()
        self.name_edit.editingFinished.connect(
            lambda: editor.set_metadata(name=self.name_edit.text()))
        self._row("name", self.name_edit)
        self.descr_edit = QLineEdit()
        self.descr_edit.editingFinished.connect(
            lambda: editor.set_metadata(description=self.descr_edit.text()))
        self._row("description", self.descr_edit)
        kinds = {"boolean": "bool", "path": "path"}
        for name, gp in editor.doc.parameters.items():
            fe = FieldEditor(kinds.get(gp.type, "text"), {},
                             lambda v, n=name: self.commit(n, v), nullable=True)
            self.fields[name] = fe
            self._row(name, fe.widget, gp.description, "sets " + ", ".join(gp.binds))
        self.refresh()

    def commit(self, name: str, value: Any) -> str | None:
        """Set a graph parameter as its widget does; returns the refusal, if any."""
        error = self.editor.set_graph_param(name, value)
        self._result(error)
        return error

    def refresh(self):
        for edit, text in ((self.name_edit, self.editor.doc.metadata.name),
                           (self.descr_edit, self.editor.doc.metadata.description)):
            edit.setText(text)
            edit.setCursorPosition(0)
        for name, fe in self.fields.items():
            if name in self.editor.doc.parameters:
                fe.show(self.editor.doc.parameters[name].default)
