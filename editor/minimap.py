"""An overview of a large graph: a small second view of the flow's scene over the corner of the
main view, with the part the main view shows outlined; a click centres the main view there."""
from __future__ import annotations

from qtpy.QtCore import QEvent, QRectF, Qt, QTimer
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QGraphicsView


class Minimap(QGraphicsView):
    """A non-interactive view of ``main``'s scene, fitted to ``bounds()``.

    Parameters
    ----------
    main : QGraphicsView
        The view it gives an overview of (and moves on a click).
    bounds : callable
        Returns the scene rectangle to show (the nodes' bounding box).
    """

    def __init__(self, main: QGraphicsView, bounds):
        # Drawn over the main view's bottom-right corner, as in other node editors.
        super().__init__(main.scene(), main)
        self.main, self.bounds = main, bounds
        self.setInteractive(False)  # the overview only moves the main view, never the nodes
        self.setRenderHint(QPainter.Antialiasing)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setFixedSize(260, 170)
        self.setBackgroundBrush(QColor("#f4f4f4"))
        self.setStyleSheet("border: 1px solid #909090;")
        self.setToolTip("Minimap: click or drag to move the view")
        main.installEventFilter(self)
        self.hide()
        # The scene changes on every edit and every run state: refit at most 5 times a second.
        self._refit = QTimer(self, singleShot=True, interval=200, timeout=self.fit)
        # Bound methods, not lambdas: Qt drops the connections when the minimap goes.
        main.scene().changed.connect(self._scene_changed)
        for bar in (main.horizontalScrollBar(), main.verticalScrollBar()):
            bar.valueChanged.connect(self._main_scrolled)

    def _scene_changed(self, _regions):
        if self.isVisible():
            self._refit.start()

    def _main_scrolled(self, _value):
        self.viewport().update()

    def eventFilter(self, obj, event):  # noqa: N802 (Qt naming)
        if obj is self.main and event.type() == QEvent.Resize:
            self.place()
        return False

    def place(self):
        """Keep to the main view's bottom-right corner, clear of its scroll bars."""
        area = self.main.viewport().geometry()
        self.move(area.right() - self.width() - 8, area.bottom() - self.height() - 8)

    def fit(self):
        """Show the whole graph."""
        rect = self.bounds()
        if rect.isValid():
            self.fitInView(rect.adjusted(-60, -60, 60, 60), Qt.KeepAspectRatio)
        self.viewport().update()

    def showEvent(self, event):  # noqa: N802 (Qt naming)
        super().showEvent(event)
        self.place()
        self.raise_()
        self.fit()

    def resizeEvent(self, event):  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self.fit()

    def visible_rect(self) -> QRectF:
        """The scene rectangle the main view shows."""
        return self.main.mapToScene(self.main.viewport().rect()).boundingRect()

    def drawForeground(self, painter, rect):  # noqa: N802 (Qt naming)
        pen = QPen(QColor("#d04020"))
        pen.setCosmetic(True)
        pen.setWidth(2)
        painter.setPen(pen)
        painter.setBrush(Qt.NoBrush)
        painter.drawRect(self.visible_rect())

    def mousePressEvent(self, event):  # noqa: N802 (Qt naming)
        self.main.centerOn(self.mapToScene(event.position().toPoint()))
        self.viewport().update()
        event.accept()

    def mouseMoveEvent(self, event):  # noqa: N802 (Qt naming)
        if event.buttons() & Qt.LeftButton:  # drag to pan the main view
            self.mousePressEvent(event)

    def wheelEvent(self, event):  # noqa: N802 (Qt naming)
        event.accept()  # the overview always shows the whole graph
