"""The image viewer draws planar RGB (3, ny, nx) images in colour, with the colour stretches
(linked, unlinked, Lupton) and a per-band read-out; on the offscreen Qt platform."""
from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.nddata import CCDData

if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtWidgets", reason="the viewer needs PySide6")

from PySide6.QtWidgets import QApplication  # noqa: E402
from starloom.editor.viewer import ImageViewer, preview_image  # noqa: E402


@pytest.fixture(scope="module")
def app():
    return QApplication.instance() or QApplication([])


def _drawn(viewer, x, y):
    """(r, g, b) the ImageItem drew at image pixel (x, y), FITS row 0 at the bottom."""
    item = viewer.pane.image
    item.render()
    colour = item.qimage.pixelColor(x, y)
    return colour.red(), colour.green(), colour.blue()


def _scene():
    """A red square around (10, 20) and a blue one around (50, 20) on a green-cast sky."""
    rng = np.random.default_rng(0)
    rgb = np.stack([np.full((40, 60), 10.0), np.full((40, 60), 30.0), np.full((40, 60), 5.0)])
    rgb += rng.normal(0, 0.5, rgb.shape)
    rgb[0, 15:25, 5:15] += 500.0
    rgb[2, 15:25, 45:55] += 500.0
    return CCDData(rgb.astype(np.float32), unit="adu")


def test_viewer_shows_rgb_in_colour(app):
    viewer = ImageViewer(_scene(), "rgb")
    viewer.show()
    try:
        assert viewer.is_rgb and viewer.colour_box.isVisible()
        assert viewer.pane.image.image.shape == (40, 60, 3)
        for method in ("linked", "unlinked", "lupton", "lupton_unlinked"):
            viewer.set_colour(method)
            # (unlinked stretches the signal-free green band over its own noise: no check)
            r, g, b = _drawn(viewer, 10, 20)
            assert r > 200 and r > b + 100 and (method == "unlinked" or r > g + 100), (method, r, g, b)
            r, g, b = _drawn(viewer, 50, 20)
            assert b > 200 and b > r + 100 and (method == "unlinked" or b > g + 100), (method, r, g, b)
        values = viewer.readout_at(10, 20).split("value ")[1].split(" adu")[0].split(", ")
        assert len(values) == 3 and float(values[0]) == pytest.approx(510, abs=3)
        viewer.set_stretch("linear")
    finally:
        viewer.close()


def test_grey_image_hides_the_colour_box_and_thumbnails_are_colour(app):
    viewer = ImageViewer(CCDData(np.random.default_rng(1).normal(0, 1, (20, 30)), unit="adu"))
    viewer.show()
    try:
        assert not viewer.is_rgb and not viewer.colour_box.isVisible()
    finally:
        viewer.close()
    thumb = preview_image(_scene(), 32)
    assert thumb.shape == (20, 30, 3)  # 2x2 blocks, top row first
    assert thumb[10, 4, 0] > thumb[10, 4, 2] + 100 and thumb[10, 25, 2] > thumb[10, 25, 0] + 100
