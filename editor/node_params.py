"""The main parameters of a node, editable on the node itself.

A few parameters per node type (its ``main_params`` attribute if it declares one, else the
editor's choice below) get a compact editor in the node's body; the full form stays in the
Parameters panel. Values go through the document like the form's (checked, undoable, a bound
parameter sets its graph parameter), and a refused value is shown on the node.
"""
from __future__ import annotations

from qtpy.QtWidgets import QFormLayout, QLabel, QWidget

from .forms import field_editor

# What users change most per node type; types not listed show none (their form has them all).
MAIN_PARAMS = {
    "io.load_frames": ("path", "frame_type"), "io.save_fits": ("filename",),
    "io.save_png": ("filename", "stretch"), "plots.annotated_image": ("filename",),
    "stacking.combine": ("method", "rejection"), "calibration.master_bias": ("method",),
    "calibration.master_dark": ("method",), "calibration.master_flat": ("method",),
    "registration.select_reference": ("method",), "astrometry.reproject_coadd": ("method",),
    "simulate.session": ("n_lights",), "astrometry.catalog": ("source",),
}


def main_params(cls) -> tuple[str, ...]:
    """Names of the parameters shown on nodes of type ``cls`` (at most three)."""
    names = getattr(cls, "main_params", None) or MAIN_PARAMS.get(cls.type_id, ())
    return tuple(n for n in names if n in cls.Params.model_fields)[:3]


class NodeParams:
    """Editors of one node's main parameters, laid in its body.

    Parameters
    ----------
    editor : GraphEditor
    node_id : str
    body : NodeBody
        The node's body widget; the editors go below its id line.
    """

    def __init__(self, editor, node_id: str, body):
        self.editor, self.spec = editor, editor.doc.node(node_id)
        cls = editor.node_type(node_id)
        self.fields = {}
        names = main_params(cls) if cls is not None else ()
        self.widget = QWidget()
        form = QFormLayout(self.widget)
        form.setContentsMargins(0, 0, 0, 0)
        form.setSpacing(2)
        for name in names:
            fe = field_editor(cls, name, lambda v, n=name: self.commit(n, v))
            fe.input.setStyleSheet("font-size: 8pt;")
            label = QLabel(name)
            label.setStyleSheet("color: #3c4043; font-size: 8pt;")
            form.addRow(label, fe.input)  # the input only: a path's buttons do not fit
            self.fields[name] = fe
        body.add_params(self.widget)  # parented first: a parentless widget shown is a window
        self.widget.setVisible(bool(names))
        self.refresh()

    def commit(self, name: str, value):
        """Set a parameter as its editor does; a refused value puts the node's back."""
        if self.editor.set_param(self.spec.id, name, value) is not None:
            self.refresh()

    def refresh(self):
        """Show the values the document holds."""
        if not any(s is self.spec for s in self.editor.doc.nodes):
            return  # the node was deleted
        for name, fe in self.fields.items():
            fe.show(self.editor.param_value(self.spec.id, name))
