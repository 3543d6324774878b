"""Image preview and viewer: thumbnails for node items, and a window that shows an image output
or a FITS file: zoom and pan, a histogram with black and white points, stretches, RGB, pixel
and sky read-out, an RA/Dec grid, the header, and a second image side by side.

Drawing uses pyqtgraph (an ``ImageItem`` in a ``ViewBox``: wheel zoom, drag pan; a
``HistogramLUTItem`` for the black and white points) rather than hand-written zoom code; the
stretches are Starloom's own (:func:`starloom.astro.stretch.stretch`), applied before display.
"""
from __future__ import annotations

import numpy as np
from astropy.coordinates import Angle
from astropy.io import fits
from astropy.nddata import CCDData
import pyqtgraph as pg
from qtpy.QtCore import QRectF, Qt
from qtpy.QtGui import QFont
from qtpy.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QSpinBox,
                            QSplitter, QVBoxLayout, QWidget)

from starloom.astro import fits as fitsio
from starloom.astro.colour import COLOUR_STRETCHES, colour_stretch
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
    """The header cards of an image, then the cards of its WCS (kept apart by CCDData).

    The NAXIS cards are those of the data shown: a node's output keeps the header of its first
    input (a co-add of another size kept the first frame's NAXIS1/NAXIS2), and the FITS writer
    sets them from the data too.
    """
    header = fits.Header(ccd.header)  # a copy; CCDData's meta may be a plain dict
    shape = np.shape(ccd.data)
    old = int(header.get("NAXIS", 0) or 0)
    header["NAXIS"] = len(shape)
    for i, n in enumerate(shape[::-1], start=1):
        header[f"NAXIS{i}"] = n
    for i in range(len(shape) + 1, old + 1):
        header.remove(f"NAXIS{i}", ignore_missing=True)
    text = header.tostring(sep="\n", padding=False)
    if ccd.wcs is not None:
        text += "\n\n/ WCS\n" + ccd.wcs.to_header(relax=True).tostring(sep="\n", padding=False)
    return text


class _ImagePane:
    """One image in the viewer: a ViewBox (wheel zoom, drag pan, square pixels) and its
    ImageItem, pixel centres on integer coordinates with FITS row 0 at the bottom."""

    def __init__(self, layout, col: int):
        self.view = layout.addViewBox(row=0, col=col, lockAspect=True, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.grid: list = []

    def show(self, img: np.ndarray, reset: bool):
        ny, nx = img.shape[:2]
        self.image.setImage(img, autoLevels=False, levels=(0, 1))
        self.image.setRect(QRectF(-0.5, -0.5, nx, ny))
        if reset:
            self.view.autoRange(padding=0.02)

    def draw_grid(self, wcs, shape):
        for item in self.grid:
            self.view.removeItem(item)
        self.grid = []
        if wcs is None:
            return
        pen = pg.mkPen("#7fd4ff", width=1)
        for xs, ys in _grid_lines(wcs, shape):
            curve = pg.PlotCurveItem(xs, ys, pen=pen, connect="finite")
            self.view.addItem(curve)
            self.grid.append(curve)


def _grid_lines(wcs, shape, n: int = 6, samples: int = 100):
    """Pixel coordinates of about ``n`` RA and ``n`` Dec lines across an image (NaN-separated
    where a line leaves the sky)."""
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 12), np.linspace(0, ny - 1, 12))
    ra, dec = wcs.pixel_to_world_values(gx.ravel(), gy.ravel())
    ra = np.asarray(ra, float)
    if np.ptp(ra) > 180:  # the image straddles RA 0h: count from -180 degrees instead
        ra = np.where(ra > 180, ra - 360, ra)
    lines = []
    for fixed, other, is_ra in ((ra, dec, True), (np.asarray(dec, float), ra, False)):
        lo, hi = np.nanmin(other), np.nanmax(other)
        sweep = np.linspace(lo, hi, samples)
        for value in np.linspace(np.nanmin(fixed), np.nanmax(fixed), n + 2)[1:-1]:
            r, d = (np.full(samples, value), sweep) if is_ra else (sweep, np.full(samples, value))
            xs, ys = wcs.world_to_pixel_values(np.mod(r, 360), d)
            lines.append((np.asarray(xs, float), np.asarray(ys, float)))
    return lines


class ImageViewer(QWidget):
    """A window showing an image (or a series, frame by frame) with display controls.

    Parameters
    ----------
    value : CCDData or FrameSeries
        What to show.
    title : str
        Window title (e.g. ``"stack.image"`` or a file name).

    Attributes
    ----------
    histogram : pyqtgraph.HistogramLUTItem
        Black and white points of the display (in stretched units, 0 to 1).
    other : CCDData or None
        The image shown beside, see :meth:`compare`.
    """

    def __init__(self, value, title: str = "", parent=None):
        super().__init__(parent, Qt.Window)
        self.value, self.ccd, self.data, self.other = value, None, None, None
        self.setWindowTitle(f"Starloom viewer: {title}")
        self.resize(1200, 750)
        self.stretch_box = QComboBox()
        self.stretch_box.addItems(VIEWER_STRETCHES)
        self.stretch_box.currentTextChanged.connect(lambda _: self.redraw())
        # RGB (3, ny, nx) images: one stretch for all bands, one per band, or Lupton's
        # colour-preserving arcsinh (starloom.astro.colour.colour_stretch).
        self.colour_box = QComboBox()
        self.colour_box.addItems(COLOUR_STRETCHES)
        self.colour_box.setToolTip("Colour display of RGB images: linked (colours as they are), "
                                   "unlinked (each band its own range), Lupton et al. 2004")
        self.colour_box.currentTextChanged.connect(lambda _: self.redraw())
        self.grid_box = QCheckBox("RA/Dec grid")
        self.grid_box.toggled.connect(lambda _: self._draw_grids())
        self.frame_box = QSpinBox()
        self.frame_box.setPrefix("frame ")
        self.frame_box.valueChanged.connect(self._show_frame)
        self.frame_name = QLabel()
        self.readout = QLabel("move the mouse over the image; wheel: zoom, drag: pan")
        self.readout.setFont(QFont("monospace"))
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.header = QPlainTextEdit()
        self.header.setReadOnly(True)
        self.header.setLineWrapMode(QPlainTextEdit.NoWrap)  # one 80-character card a line
        self.header.setFont(QFont("monospace"))
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#202124")
        self.pane = _ImagePane(self.graphics, 0)
        self.second: _ImagePane | None = None
        self.histogram = pg.HistogramLUTItem(image=self.pane.image)
        self.graphics.addItem(self.histogram, row=0, col=2)
        self.histogram.sigLevelsChanged.connect(self._levels_changed)
        self.graphics.scene().sigMouseMoved.connect(self._mouse)
        self._layout(QVBoxLayout(self))
        n = len(value) if isinstance(value, FrameSeries) else 1
        self.frame_box.setRange(0, max(n - 1, 0))
        self.frame_box.setVisible(n > 1)
        self._show_frame(0)

    def _layout(self, outer):
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Stretch"))
        for w in (self.stretch_box, self.colour_box, self.grid_box, self.frame_box,
                  self.frame_name):
            controls.addWidget(w)
        controls.addStretch()
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.addLayout(controls)
        lv.addWidget(self.graphics, 1)
        lv.addWidget(self.readout)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.header)
        split.setSizes([850, 350])
        outer.addWidget(split)

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

    @property
    def is_rgb(self) -> bool:
        """Whether the shown image is planar RGB (3, ny, nx), drawn in colour."""
        return self.data is not None and self.data.ndim == 3

    def set_colour(self, method: str):
        """Show an RGB image with another colour stretch (see COLOUR_STRETCHES)."""
        self.colour_box.setCurrentText(method)

    def set_levels(self, black: float, white: float):
        """Set the black and white points (stretched units, 0 to 1), as the histogram does."""
        self.histogram.setLevels(black, white)

    def zoom(self, factor: float):
        """Show the image at ``factor`` screen pixels per image pixel, around the view centre."""
        vb = self.pane.view
        centre = vb.viewRect().center()
        w, h = vb.width() / factor, vb.height() / factor
        vb.setRange(QRectF(centre.x() - w / 2, centre.y() - h / 2, w, h), padding=0)

    def zoom_factor(self) -> float:
        """Screen pixels per image pixel."""
        return 1.0 / self.pane.view.viewPixelSize()[0]

    def compare(self, value, title: str = ""):
        """Show another image (e.g. a single frame against the stack) beside this one, zoomed
        and panned together, with the same stretch and black and white points."""
        self.other = as_image(value)
        if self.other is None:
            raise ValueError("only an image or a frame series can be compared")
        if self.second is None:
            self.second = _ImagePane(self.graphics, 1)
            self.second.view.setXLink(self.pane.view)
            self.second.view.setYLink(self.pane.view)
        self.setWindowTitle(f"{self.windowTitle()}  |  {title}")
        self.redraw()

    def _show_frame(self, index: int):
        self.ccd = as_image(self.value, index)
        self.data = np.asarray(self.ccd.data)
        if isinstance(self.value, FrameSeries):
            self.frame_name.setText(self.value.refs[index].name)
        self.colour_box.setVisible(self.is_rgb)
        self.grid_box.setEnabled(self.has_wcs)
        if not self.has_wcs:
            self.grid_box.setChecked(False)
        self.header.setPlainText(header_text(self.ccd))
        self.redraw(reset=True)

    def _display(self, ccd) -> np.ndarray:
        data, method = np.asarray(ccd.data), self.stretch_box.currentText()
        if data.ndim == 3:  # planar RGB -> (ny, nx, 3), as pyqtgraph draws colour
            img = colour_stretch(data, self.colour_box.currentText(), stretch=method,
                                 mask=ccd.mask)
            return np.moveaxis(img, 0, -1)
        return stretch(data, method, mask=ccd.mask)

    def redraw(self, reset: bool = False):
        """Draw the image(s) with the chosen stretch, keeping zoom, pan and levels."""
        levels = self.histogram.getLevels()
        self.pane.show(self._display(self.ccd), reset)
        if self.second is not None:
            self.second.show(self._display(self.other), False)
        self.histogram.setLevels(*levels) if not reset else self.histogram.setLevels(0, 1)
        self._draw_grids()

    def _draw_grids(self):
        on = self.grid_box.isChecked() and self.has_wcs
        self.pane.draw_grid(self.ccd.wcs.celestial if on else None, self.data.shape[-2:])

    def _levels_changed(self, *_):
        if self.second is not None:
            self.second.image.setLevels(self.histogram.getLevels())

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

    def _mouse(self, pos):
        for pane in filter(None, (self.pane, self.second)):
            if pane.view.sceneBoundingRect().contains(pos):
                p = pane.view.mapSceneToView(pos)
                self.readout.setText(self.readout_at(p.x(), p.y()) or self.readout.text())
