"""Write the README screenshot: an example graph open in the editor after a run.

Usage: ``python -m starloom.editor.screenshot [OUT.png] [--graph GRAPH.json] [--select NODE]
[--param NAME=VALUE ...]`` (default: ``docs/editor.png`` of the demo graph, run with a scratch
cache, node ``stack`` selected). Runs offscreen when no display is set. The README's picture::

    python -m starloom.editor.screenshot docs/editor.png \
        --graph example_graphs/register_and_stack.json --param lights=../shared/data/stargate
"""
from __future__ import annotations

import os
import sys
import tempfile
from importlib import resources
from pathlib import Path


def write_screenshot(out, graph=None, select: str | None = "stack", params=None, cache_dir=None,
                     runs_dir=None, size=(1800, 1000), timeout: float = 300,
                     shot: str = "editor") -> Path:
    """Open ``graph`` in an editor window, run it, select a node and save the window as PNG.

    Parameters
    ----------
    out : path
        PNG file to write.
    graph : path, optional
        Graph file (default: the bundled demo graph).
    select : str, optional
        Node whose parameter form is shown.
    params : dict, optional
        Graph parameter values set (as in the form) before the run.
    cache_dir, runs_dir : path, optional
        Cache and run folders (default: a temporary folder, removed afterwards).
    size : (int, int)
        Window size, pixels.
    timeout : float
        Seconds to wait for the run.
    shot : {"editor", "palette", "viewer"}
        The window; the window with the node palette open and searched; or the image viewer of
        the selected node's output (zoomed, its histogram set), beside the first frame of the
        node feeding it.

    Returns
    -------
    Path
        ``out``.
    """
    from qtpy.QtCore import QEventLoop, QRectF, Qt, QTimer
    from qtpy.QtWidgets import QApplication

    from .app import EditorWindow

    _app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841 (kept alive)
    with tempfile.TemporaryDirectory() as tmp, \
            resources.as_file(resources.files("starloom.example_graphs") / "demo.json") as demo:
        window = EditorWindow(cache_dir=cache_dir or Path(tmp, "cache"),
                              runs_dir=runs_dir or Path(tmp, "runs"))
        window.ask_before_discarding = False
        window.resize(*size)
        window.open(graph or demo)
        for name, value in (params or {}).items():
            error = window.editor.set_graph_param(name, value)
            if error:
                raise ValueError(error)
        window.show()
        loop, timer = QEventLoop(), QTimer()
        window.editor.run_finished.connect(lambda _: loop.quit())
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        timer.start(int(timeout * 1000))
        if window.editor.run():
            loop.exec()
        if select in window.editor.node_ids():
            window.editor.select(select)
        window.resizeDocks([window.docks["Nodes"], window.docks["Parameters"]], [270, 340],
                           Qt.Horizontal)
        window.resizeDocks([window.docks["Run log"]], [150], Qt.Vertical)
        timer.start(100)  # let the docks take their sizes
        loop.exec()
        view = window.editor.view
        rect = QRectF()
        for item in view.node_items.values():
            rect = rect.united(item.sceneBoundingRect())
        rect.adjust(-30, -30, 30, 30)
        scale = min(1.0, view.viewport().width() / rect.width(),
                    view.viewport().height() / rect.height())
        view.resetTransform()
        view.scale(scale, scale)
        view.centerOn(rect.center())
        shown = {"editor": lambda w: w, "palette": _palette_in_use,
                 "viewer": lambda w: _viewer_in_use(w, select)}[shot](window)
        timer.start(300)  # let the window paint
        loop.exec()
        timer.stop()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shown.grab().save(str(out))
        if shown is not window:
            shown.close()
        window.close()
    return out


def _palette_in_use(window):
    """The window with the node palette opened by a wire dragged from the stack's output and
    searched for "png"."""
    from qtpy.QtCore import QPoint
    ed = window.editor
    item = ed.item("stack") if "stack" in ed.node_ids() else None
    port = ed.node("stack").outputs[0] if item is not None else None
    at = ed.view.mapFromScene(item.sceneBoundingRect().bottomRight()) + QPoint(30, 20) \
        if item is not None else QPoint(300, 200)
    ed.open_palette(at, port)
    ed.palette.search.setText("png")
    return window


def _viewer_in_use(window, node_id):
    """A viewer of the node's image output, zoomed in, with its black and white points set,
    beside the first frame of the node feeding it."""
    ed = window.editor
    feeding = next((e.source[0] for e in ed.doc.edges if e.target[0] == node_id), None)
    viewer = window.compare_outputs(node_id, feeding) if feeding else None
    viewer = viewer or window.view_output(node_id)
    viewer.resize(1500, 800)
    viewer.set_stretch("asinh")
    viewer.set_levels(0.05, 0.85)
    viewer.zoom(1.6)
    viewer.readout.setText(viewer.readout_at(300, 200))
    return viewer


if __name__ == "__main__":
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import argparse
    ap = argparse.ArgumentParser(prog="python -m starloom.editor.screenshot")
    ap.add_argument("out", nargs="?", default="docs/editor.png")
    ap.add_argument("--graph")
    ap.add_argument("--select", default="stack")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--shot", choices=("editor", "palette", "viewer"), default="editor")
    a = ap.parse_args()
    values = dict(p.split("=", 1) for p in a.param)
    values = {k: str(Path(v).resolve()) if Path(v).exists() else v for k, v in values.items()}
    print(write_screenshot(a.out, a.graph, a.select, values, shot=a.shot))
