"""Image preview and viewer: thumbnails for node items, and a window that shows an image output
or a FITS file with stretch controls, pixel and sky read-out, a coordinate grid and the header.

Drawing uses matplotlib (astropy's WCSAxes draws the RA/Dec grid when the image has a celestial
WCS); stretches are Starloom's own (:func:`starloom.astro.stretch.stretch`).
"""
from __future__ import annotations

import numpy as np
from astropy.coordinates import Angle
from astropy.nddata import CCDData
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Qt
from qtpy.QtGui import QFont
from qtpy.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QSpinBox,
                            QSplitter, QVBoxLayout, QWidget)

from starloom.astro import fits as fitsio
from starloom.astro.frames import FrameSeries
from starloom.astro.stretch import stretch, thumbnail

VIEWER_STRETCHES = ("asinh", "linear", "zscale", "histeq")


def as_image(value, index: int = 0) -> CCDData | None:
    """The ``CCDData`` shown for an output value: the image, or frame ``index`` of a series."""
    if isinstance(value, CCDData):
        return value
    if isinstance(value, FrameSeries) and len(value):
        return value[min(max(index, 0), len(value) - 1)]
    return None


def preview_image(value, max_size: int = 128, method: str = "asinh") -> np.ndarray | None:
    """An 8-bit thumbnail of an image output, top row first (FITS row 0 at the bottom).

    Parameters
    ----------
    value : CCDData or FrameSeries
        An output value (the first frame of a series is shown).
    max_size : int
        Largest side of the thumbnail, pixels.
    method : str
        Stretch, see :func:`starloom.astro.stretch.stretch`.

    Returns
    -------
    numpy.ndarray or None
        uint8 array ``(ny, nx)`` or ``(ny, nx, 3)``; None if the value is not an image.
    """
    ccd = as_image(value)
    if ccd is None:
        return None
    data = np.asarray(ccd.data, dtype=np.float32)
    if ccd.mask is not None:
        data = np.where(ccd.mask, np.nan, data)  # masked pixels neither set the range nor show
    img = stretch(thumbnail(data, max_size), method)
    img = np.round(img * 255).astype(np.uint8)
    if img.ndim == 3:
        img = np.moveaxis(img, 0, -1)
    return np.ascontiguousarray(img[::-1])


def _sky(wcs, x: float, y: float) -> str:
    ra, dec = wcs.celestial.pixel_to_world_values(x, y)
    return (f"RA {Angle(float(ra), 'deg').to_string('hourangle', sep=':', precision=2)}  "
            f"Dec {Angle(float(dec), 'deg').to_string(sep=':', precision=1, alwayssign=True)}")


def header_text(ccd: CCDData) -> str:
    """The header cards of an image, then the cards of its WCS (kept apart by CCDData)."""
    text = ccd.header.tostring(sep="\n", padding=False)
    if ccd.wcs is not None:
        text += "\n\n/ WCS\n" + ccd.wcs.to_header(relax=True).tostring(sep="\n", padding=False)
    return text


class ImageViewer(QWidget):
    """A window showing an image (or a series, frame by frame) with display controls.

    Parameters
    ----------
    value : CCDData or FrameSeries
        What to show.
    title : str
        Window title (e.g. ``"stack.image"`` or a file name).
    """

    def __init__(self, value, title: str = "", parent=None):
        super().__init__(parent, Qt.Window)
        self.value, self.ccd, self.data = value, None, None
        self.setWindowTitle(f"Starloom viewer: {title}")
        self.resize(1200, 750)
        self.stretch_box = QComboBox()
        self.stretch_box.addItems(VIEWER_STRETCHES)
        self.stretch_box.currentTextChanged.connect(lambda _: self.redraw())
        self.grid_box = QCheckBox("RA/Dec grid")
        self.grid_box.toggled.connect(lambda _: self.redraw())
        self.frame_box = QSpinBox()
        self.frame_box.setPrefix("frame ")
        self.frame_box.valueChanged.connect(self._show_frame)
        self.frame_name = QLabel()
        self.readout = QLabel("move the mouse over the image")
        self.readout.setFont(QFont("monospace"))
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.header = QPlainTextEdit()
        self.header.setReadOnly(True)
        self.header.setLineWrapMode(QPlainTextEdit.NoWrap)  # one 80-character card a line
        self.header.setFont(QFont("monospace"))
        self.figure = Figure(figsize=(6, 5), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.mpl_connect("motion_notify_event", self._mouse)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Stretch"))
        controls.addWidget(self.stretch_box)
        controls.addWidget(self.grid_box)
        controls.addWidget(self.frame_box)
        controls.addWidget(self.frame_name)
        controls.addStretch()
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.addLayout(controls)
        lv.addWidget(self.canvas, 1)
        lv.addWidget(self.readout)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.header)
        split.setSizes([700, 500])
        QVBoxLayout(self).addWidget(split)
        n = len(value) if isinstance(value, FrameSeries) else 1
        self.frame_box.setRange(0, max(n - 1, 0))
        self.frame_box.setVisible(n > 1)
        self._show_frame(0)

    @classmethod
    def from_file(cls, path, parent=None):
        """A viewer of a FITS (or JPEG/PNG/TIFF) file."""
        return cls(fitsio.read_image_any(path), str(path), parent)

    @property
    def has_wcs(self) -> bool:
        """Whether the shown image has a celestial WCS."""
        return self.ccd is not None and self.ccd.wcs is not None and \
            self.ccd.wcs.has_celestial

    def set_stretch(self, method: str):
        """Show the image with another stretch ('asinh', 'linear', 'zscale', 'histeq')."""
        self.stretch_box.setCurrentText(method)

    def _show_frame(self, index: int):
        self.ccd = as_image(self.value, index)
        self.data = np.asarray(self.ccd.data)
        if isinstance(self.value, FrameSeries):
            self.frame_name.setText(self.value.refs[index].name)
        self.grid_box.setEnabled(self.has_wcs)
        if not self.has_wcs:
            self.grid_box.setChecked(False)
        self.header.setPlainText(header_text(self.ccd))
        self.redraw()

    def redraw(self):
        """Draw the image with the chosen stretch (and grid)."""
        self.figure.clear()
        img = stretch(self.data, self.stretch_box.currentText(), mask=self.ccd.mask)
        if img.ndim == 3:
            img = np.moveaxis(img, 0, -1)
        if self.has_wcs:
            ax = self.figure.add_subplot(projection=self.ccd.wcs.celestial)
            ax.coords[0].set_axislabel("RA")
            ax.coords[1].set_axislabel("Dec")
            if self.grid_box.isChecked():
                ax.coords.grid(color="#7fd4ff", alpha=0.7, linestyle="solid", linewidth=0.6)
        else:
            ax = self.figure.add_subplot()
            ax.set_xlabel("x (pixel)")
            ax.set_ylabel("y (pixel)")
        ax.imshow(img, origin="lower", cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        self.canvas.draw_idle()

    def readout_at(self, x: float, y: float) -> str:
        """The read-out text for pixel position (x, y) (0-based, FITS row 0 at bottom)."""
        ix, iy = int(round(x)), int(round(y))
        ny, nx = self.data.shape[-2:]
        if not (0 <= ix < nx and 0 <= iy < ny):
            return ""
        v = self.data[..., iy, ix]
        value = ", ".join(f"{float(c):.6g}" for c in np.atleast_1d(v))
        text = f"x {ix}  y {iy}  value {value} {self.ccd.unit or ''}"
        if self.has_wcs:
            text += "  " + _sky(self.ccd.wcs, x, y)
        return text

    def _mouse(self, event):
        if event.inaxes is not None and event.xdata is not None:
            self.readout.setText(self.readout_at(event.xdata, event.ydata))
