"""Ports coloured by type, a legend, and the ports a dragged wire may reach highlighted.

Ryven draws every port the same (its ports are untyped "data"); a dot in the colour of the
port's Starloom type is laid over each pin. While a wire is dragged, the dots of ports it may
connect to grow and get a ring, the others fade.
"""
from __future__ import annotations

import html

from qtpy.QtCore import QMarginsF, QRectF, Qt
from qtpy.QtGui import QBrush, QColor, QPen
from qtpy.QtWidgets import QGraphicsEllipseItem

PORT_COLORS = {"Image": "#1e88e5", "FrameSeries": "#8e24aa", "Table": "#f4511e",
               "Transform": "#00897b", "Path": "#6d4c41", "number": "#fbc02d"}
OTHER_COLOR = "#757575"


def port_color(types) -> str:
    """Colour of a port accepting or giving ``types`` (its first known type)."""
    for t in types:
        if t in PORT_COLORS:
            return PORT_COLORS[t]
        if t in ("float", "int", "Quantity"):
            return PORT_COLORS["number"]
    return OTHER_COLOR


def legend_html() -> str:
    """A one-line HTML legend of the port colours."""
    return "&nbsp;&nbsp;".join(f"<span style='color:{c}; font-size:14pt'>\u25cf</span>"
                               f"&nbsp;{html.escape(t)}" for t, c in PORT_COLORS.items())


class PortDot(QGraphicsEllipseItem):
    """The coloured dot over one pin; it lets every click through to the pin."""

    def __init__(self, pin, port, output: bool):
        self.rect0 = QRectF(pin.padding, pin.padding, pin.width_no_padding(),
                            pin.height_no_padding()).marginsRemoved(QMarginsF(2, 2, 2, 2))
        super().__init__(self.rect0, pin)
        self.port, self.output = port, output
        self.color = QColor(port_color(port.types))
        self.setAcceptedMouseButtons(Qt.NoButton)
        self.setAcceptHoverEvents(False)
        self.setToolTip("/".join(port.types))
        self.show_state(None)

    def show_state(self, fits: bool | None):
        """Normal (None), reachable by the dragged wire (True), or not (False)."""
        self.setBrush(QBrush(self.color))
        if fits:
            self.setRect(self.rect0.marginsAdded(QMarginsF(3, 3, 3, 3)))
            self.setPen(QPen(QColor("#ffb300"), 2.5))
            self.setOpacity(1.0)
        else:
            self.setRect(self.rect0)
            self.setPen(QPen(Qt.NoPen))
            self.setOpacity(0.25 if fits is False else 1.0)


def add_port_dots(item, inputs: dict, outputs: dict) -> list[PortDot]:
    """Lay a :class:`PortDot` over each pin of a node item; the dots, inputs first."""
    dots = []
    for port_items, ports, output in ((item.inputs, inputs, False), (item.outputs, outputs, True)):
        for port_item, port in zip(port_items, ports.values()):
            dots.append(PortDot(port_item.pin, port, output))
    return dots


def highlight(dots, dragged, output: bool):
    """Show which dots a wire dragged from port ``dragged`` (an output if ``output``) may reach;
    ``dragged`` None shows them all normally again."""
    for dot in dots:
        if dragged is None:
            dot.show_state(None)
        elif dot.output == output:
            dot.show_state(False)
        else:
            fits = dot.port.accepts(dragged) if output else dragged.accepts(dot.port)
            dot.show_state(fits)
