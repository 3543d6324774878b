"""The visual editor (``starloom edit``): Starloom graphs built, edited, run and inspected in a
Ryven flow view. Needs the ``editor`` extra (ryvencore-qt, PySide6).

The document and every edit of it live in :mod:`starloom.graph_runtime.editing` (no Qt); this
package is a view and controller over it. Modules: :mod:`.app` (window, ``main``),
:mod:`.graph_editor` (the controller: user actions to document operations, refusals shown),
:mod:`.flow_mirror` (the Ryven flow kept equal to the document), :mod:`.run_controller` (runs in a
worker thread, run state on the nodes), :mod:`.layout` (where nodes go), :mod:`.ryven_adapter`
(the only use of Ryven's private members), :mod:`.nodes` (Ryven node classes generated from the
registry), :mod:`.forms` (parameter forms), :mod:`.viewer` (thumbnails and the image viewer,
on pyqtgraph), :mod:`.palette` (the searchable node palette that replaces Ryven's node list),
:mod:`.ports` (port colours and wire-drag highlighting), :mod:`.text` (descriptions without
reStructuredText markup), :mod:`.window_extras` (the window's further menus and panels:
:mod:`.run_tools` run to a node, node log, report, clearing a node's cache; :mod:`.recent` recent
files; :mod:`.minimap`; :mod:`.canvas_notes` groups and comments). Needs ``pyqtgraph`` too.
"""
import os

# ryvencore-qt reaches Qt through qtpy, whose default binding is not PySide6.
os.environ.setdefault("QT_API", "pyside6")
