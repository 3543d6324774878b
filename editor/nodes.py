"""Ryven node classes generated from the Starloom node registry.

Each registered node type becomes one ryvencore ``Node`` subclass (its ports named and ordered as
the Starloom type declares them) with a ryvencore-qt ``NodeGUI`` subclass (title, colour, help
text) and a small body widget showing the node's id, run state, progress, messages and a
thumbnail of its latest image output. The classes carry no behaviour: nodes never run inside
Ryven, the Starloom runtime runs the graph (see :mod:`starloom.editor.run_controller`).
"""
from __future__ import annotations

import html
import textwrap

import numpy as np
from astropy.nddata import CCDData
from astropy.table import Table
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QFont, QFontMetricsF, QImage, QPixmap
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget
from ryvencore import Data, Node, NodeInputType, NodeOutputType
from ryvencore_qt import NodeGUI, NodeMainWidget

from starloom.astro.frames import FrameSeries

from .ports import add_port_dots
from .ryven_adapter import drop_collapse_button, hide_node_internals
from .text import plain_description

CATEGORY_COLORS = {"io": "#3d7fd1", "simulate": "#8a8f98", "calibration": "#c98a1b",
                   "registration": "#8559c9", "stacking": "#2f9e5c"}
STATE_COLORS = {"pending": "#8a8f98", "running": "#2b6fd6", "cached": "#13857f",
                "done": "#23883f", "failed": "#c62828", "cancelled": "#a05a00"}
IMAGE_TYPES = ("Image", "FrameSeries")
BODY_WIDTH = 176
TITLE_FONT = "Segoe UI"  # as FlowTheme_Fusion paints titles (any fallback font is measured)


def wrap_title(title: str) -> str:
    """A long node title broken into lines of at most 30 characters."""
    return textwrap.fill(title, 30) or title


class _ClickableLabel(QLabel):
    clicked = Signal()

    def mousePressEvent(self, event):  # noqa: N802 (Qt naming)
        self.clicked.emit()
        event.accept()


class NodeBody(NodeMainWidget, QWidget):
    """The body of a node item: id, state line, progress bar, message and thumbnail."""

    def __init__(self, params):
        NodeMainWidget.__init__(self, params)
        QWidget.__init__(self)
        self.setAttribute(Qt.WA_TranslucentBackground)
        self.setStyleSheet("QLabel { background: transparent; }")
        self.setFixedWidth(BODY_WIDTH)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 0, 2, 2)
        layout.setSpacing(2)
        self.id_label = QLabel()
        self.id_label.setStyleSheet("color: #59606a; font-size: 8pt;")
        self.state_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setFixedHeight(10)
        self.progress.setTextVisible(False)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #c62828; font-size: 8pt;")
        self.thumb = _ClickableLabel()
        self.thumb.setAlignment(Qt.AlignCenter)
        self.thumb.setToolTip("Click to open the image viewer")
        self.thumb.setCursor(Qt.PointingHandCursor)
        self.thumb.clicked.connect(lambda: self.node_gui.view_output())
        for w in (self.id_label, self.state_label, self.progress, self.message, self.thumb):
            layout.addWidget(w)
        for w in (self.state_label, self.progress, self.message, self.thumb):
            w.hide()
        self.state = None

    def add_params(self, widget: QWidget):
        """Put the editors of the node's main parameters below its id line."""
        self.layout().insertWidget(1, widget)
        self.param_editors = widget

    def set_node_id(self, node_id: str):
        """Show the node's id."""
        self.id_label.setText(f"id: {node_id}")

    def set_state(self, state: str | None, detail: str = "", done: int | None = None,
                  total: int | None = None):
        """Show a run state (pending, running, cached, done, failed, cancelled) or none."""
        self.state = state
        self.state_label.setVisible(state is not None)
        if state is not None:
            text = state + (f"  {detail}" if detail else "")
            self.state_label.setText(f"<b style='color:{STATE_COLORS.get(state, '#333')}'>"
                                     f"\u25cf</b> {html.escape(text)}")
        show_bar = state == "running" and total is not None and total > 0
        self.progress.setVisible(show_bar)
        if show_bar:
            self.progress.setRange(0, total)
            self.progress.setValue(done or 0)

    def set_message(self, text: str):
        """Show an error or refusal message on the node (empty text hides it)."""
        self.message.setText(text)
        self.message.setToolTip(text)
        self.message.setVisible(bool(text))
        if text:  # word-wrapped labels in a graphics scene need their height set
            lines = self.message.fontMetrics().lineSpacing()
            self.message.setFixedHeight(min(self.message.heightForWidth(BODY_WIDTH - 4),
                                            6 * lines))

    def set_thumbnail(self, image: np.ndarray | None):
        """Show an 8-bit image, ``(ny, nx)`` grey or ``(ny, nx, 3)`` RGB, top row first."""
        if image is None:
            self.thumb.clear()
            self.thumb.hide()
            return
        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        fmt = QImage.Format_RGB888 if image.ndim == 3 else QImage.Format_Grayscale8
        qimg = QImage(image.data, w, h, image.strides[0], fmt).copy()
        self.thumb.setPixmap(QPixmap.fromImage(qimg))
        self.thumb.show()


def show_value(output, text: str):
    """Set the text Ryven shows when the mouse is over an output's pin (or a pin it feeds)."""
    output.val = Data(f"{output.label_str}: {text}")


def describe(value) -> str:
    """A one-line description of an output value."""
    if isinstance(value, CCDData):
        return f"Image {' x '.join(map(str, value.shape[::-1]))} {value.dtype} [{value.unit}]"
    if isinstance(value, FrameSeries):
        return f"{len(value)} frames" + (f": {', '.join(value.names[:3])}…" if value.refs else "")
    if isinstance(value, Table):
        return f"Table, {len(value)} rows: {', '.join(value.colnames[:6])}"
    return f"{type(value).__name__}: {str(value)[:200]}"


#: Entries of a node's right-click menu that act on its cached results (see
#: :mod:`.run_tools`); Ryven calls the action's method by name, hence one method and the text.
NODE_ACTIONS = ("Run to here", "Recompute", "Clear cached results")


class StarloomNodeGUI(NodeGUI):
    """GUI class shared by the generated nodes; subclassed per type for title, colour and help.

    The node's document entry is ``node.starloom_spec`` (set by the flow mirror before the GUI
    is made). User requests made on the node are only signalled: whoever drew the node
    (:class:`~starloom.editor.flow_mirror.FlowMirror`) acts on them.
    """

    main_widget_class = NodeBody
    main_widget_pos = "below ports"
    title_edited = Signal(str)    # a title typed in Ryven's "change title" dialog
    view_requested = Signal(object)  # output port name to show in a viewer, or None
    action_requested = Signal(str)   # a run action asked for from the node's menu (NODE_ACTIONS)

    def __init__(self, params):
        super().__init__(params)
        del self.actions["hide unconnected ports"]
        hide_node_internals(self)
        for name, port in self.node.starloom_outputs.items():
            if any(t in IMAGE_TYPES for t in port.types):
                self.actions[f"view {name}"] = {"method": self.view_output, "data": name}
        for text in NODE_ACTIONS:
            self.actions[text] = {"method": self.request_action, "data": text}
        self.display_title = wrap_title(self.node.starloom_spec.ui.label or self.node.title)

    def initialized(self):
        self.item.main_widget.set_node_id(self.node.starloom_spec.id)
        drop_collapse_button(self.item)
        self.port_dots = add_port_dots(self.item, self.node.starloom_inputs,
                                       self.node.starloom_outputs)
        # Ryven leaves the item's animator without a parent: it outlives the item and then
        # writes colours into a deleted item. Tie it to the item.
        self.item.animator.animation.setParent(self.item.animator)
        self.item.animator.setParent(self.item)
        # Ryven sizes titles with Poppins 15 metrics; the light theme paints them in 10 pt
        # Segoe UI (or a fallback font): measure that font, with a margin.
        title = self.item.widget.title_label
        title.fm = QFontMetricsF(QFont(TITLE_FONT, 12))
        title.update_shape()
        for items, ports in ((self.item.inputs, self.node.starloom_inputs),
                             (self.item.outputs, self.node.starloom_outputs)):
            for item, (name, port) in zip(items, ports.items()):
                opt = " (optional)" if getattr(port, "optional", False) else ""
                item.label.setToolTip(f"{name}: {'/'.join(port.types)}{opt}\n{port.description}")
        for out, (name, port) in zip(self.node.outputs, self.node.starloom_outputs.items()):
            show_value(out, f"{'/'.join(port.types)}: {port.description}")

    def set_display_title(self, t: str):
        """Ryven's "change title" action: ask for the label to become ``t`` (see
        :attr:`title_edited`); the title shown changes when the document's label does."""
        self.title_edited.emit(t)

    def show_title(self, label: str | None):
        """Show ``label`` (or the type's title, for None) as the node's title."""
        NodeGUI.set_display_title(self, wrap_title(label or self.node.title))

    def view_output(self, port: str | None = None):
        """Ask for the image viewer on an image output (default: the thumbnail's)."""
        self.view_requested.emit(port)

    def request_action(self, text: str):
        """Ask for one of :data:`NODE_ACTIONS` on this node (see :attr:`action_requested`)."""
        self.action_requested.emit(text)


def ryven_node_class(node_cls=None, *, type_id: str | None = None, inputs=None, outputs=None):
    """Make the ryvencore node class (with its GUI class) of one Starloom node type.

    Parameters
    ----------
    node_cls : type[starloom.graph_runtime.node.Node], optional
        The registered node type.
    type_id, inputs, outputs : optional
        For a type not in the registry (a missing plugin): the type id and its ports by name
        (:data:`~starloom.graph_runtime.editing.UNKNOWN_PORT` each, as the graph's edges name
        them). The node is drawn in red and keeps its document entry unchanged.

    Returns
    -------
    type[ryvencore.Node]
        The class, with ``starloom_type`` (the node type or None), ``starloom_type_id``,
        ``starloom_inputs``/``starloom_outputs`` and ``GUI`` attributes.
    """
    if node_cls is not None:
        type_id, category = node_cls.type_id, node_cls.category or "other"
        title = node_cls.title or type_id
        ins, outs = dict(node_cls.inputs), dict(node_cls.outputs)
        help_text = plain_description(node_cls.description)
        color = CATEGORY_COLORS.get(category, "#5b6b7a")
    else:
        category, title = "unknown", f"Unknown: {type_id}"
        ins, outs = dict(inputs or {}), dict(outputs or {})
        help_text = "This node type is not installed; the node is kept as it is in the file."
        color = "#c62828"

    # A class statement (not type()) so that tools calling inspect.getsource keep working.
    class StarloomRyvenNode(Node):
        __doc__ = help_text

        def load(self, data):
            raise RuntimeError("Starloom nodes are loaded from Starloom graph files only")

    StarloomRyvenNode.__name__ = StarloomRyvenNode.__qualname__ = type_id.replace(".", "_")
    StarloomRyvenNode.title = title
    StarloomRyvenNode.tags = [type_id, category] + type_id.replace("_", ".").split(".")
    # The node list groups by the identifier's prefix: make it the category.
    StarloomRyvenNode.identifier = f"{category}.{type_id.replace('.', ':')}"
    StarloomRyvenNode.init_inputs = [NodeInputType(label=p) for p in ins]
    StarloomRyvenNode.init_outputs = [NodeOutputType(label=p) for p in outs]
    StarloomRyvenNode.starloom_type = node_cls
    StarloomRyvenNode.starloom_type_id = type_id
    StarloomRyvenNode.starloom_inputs = ins
    StarloomRyvenNode.starloom_outputs = outs

    def port_rows(ports):
        return "".join(f"<li><b>{html.escape(n)}</b> <i>{'/'.join(p.types)}</i> "
                       f"{html.escape(p.description)}</li>" for n, p in ports.items())

    class GUI(StarloomNodeGUI):
        pass

    GUI.color = color
    GUI.description_html = (
        f"<b>{html.escape(title)}</b> <code>{html.escape(type_id)}</code>"
        + (f" v{node_cls.version}" if node_cls else "") + f"<p>{html.escape(help_text)}</p>"
        + (f"<p>Inputs:<ul>{port_rows(ins)}</ul></p>" if ins else "")
        + (f"<p>Outputs:<ul>{port_rows(outs)}</ul></p>" if outs else ""))
    StarloomRyvenNode.GUI = GUI
    return StarloomRyvenNode


def ryven_node_classes(registry) -> dict[str, type]:
    """Ryven node classes of every type in ``registry``, by Starloom type id."""
    return {cls.type_id: ryven_node_class(cls) for cls in registry}
