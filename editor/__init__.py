"""The visual editor (``starloom edit``): Starloom graphs built, edited, run and inspected in a
Ryven flow view. Needs the ``editor`` extra (ryvencore-qt, PySide6).

Modules: :mod:`.app` (window, ``main``), :mod:`.graph_editor` (document <-> flow, runs),
:mod:`.nodes` (Ryven node classes generated from the registry), :mod:`.forms` (parameter forms),
:mod:`.viewer` (thumbnails and the image viewer).
"""
import os

# ryvencore-qt reaches Qt through qtpy, whose default binding is not PySide6.
os.environ.setdefault("QT_API", "pyside6")
