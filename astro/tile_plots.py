"""Figures of the tile pipeline: per-tile heatmaps, maps and clusters (matplotlib, Agg).

matplotlib is imported inside the functions (startup time of ``starloom nodes``).
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

__all__ = ["tile_value_grid", "plot_tile_values", "plot_map", "plot_clusters"]


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def tile_value_grid(grid: Table, values) -> tuple[np.ndarray, list, list]:
    """Per-tile ``values`` (one per grid row) arranged as a (tile rows, tile columns) array,
    NaN for tiles not used, with the sorted tile row starts and column starts (px)."""
    ys, xs = sorted(set(np.asarray(grid["y0"], int))), sorted(set(np.asarray(grid["x0"], int)))
    out = np.full((len(ys), len(xs)), np.nan)
    used = np.asarray(grid["used"], bool)
    for y0, x0, v, u in zip(grid["y0"], grid["x0"], np.asarray(values, float), used):
        if u:
            out[ys.index(int(y0)), xs.index(int(x0))] = v
    return out, ys, xs


def plot_tile_values(path, grid: Table, values, *, title: str, label: str, cmap="viridis",
                     outlines: bool = False, dpi: int = 90):
    """Heatmap of one value per tile over the image (colours span the 2nd to 98th percentile),
    grey where a tile is not used or has no value (NaN); with ``outlines``,
    each tile's rectangle is drawn. Writes ``path`` (PNG) and returns it."""
    arr, ys, xs = tile_value_grid(grid, values)
    ny, nx = int(grid.meta.get("NY", max(grid["y1"]))), int(grid.meta.get("NX", max(grid["x1"])))
    # each tile drawn from its start to the next tile's start: the overlaps split evenly
    xe, ye = np.array(xs + [nx], float), np.array(ys + [ny], float)
    fig = _figure((6.0, 6.0 * ny / nx + 0.8))
    ax = fig.add_subplot()
    ax.set_facecolor("0.8")
    finite = arr[np.isfinite(arr)]
    # a few outlying tiles (a star on a mask edge) must not flatten the colour scale
    lo, hi = np.percentile(finite, [2, 98]) if finite.size else (None, None)
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(arr), cmap=cmap, shading="flat",
                         vmin=lo, vmax=hi if hi is None or hi > lo else None)
    if outlines:
        from matplotlib.patches import Rectangle

        for x0, y0, x1, y1, u in zip(grid["x0"], grid["y0"], grid["x1"], grid["y1"], grid["used"]):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=0.6,
                                   ec="white" if u else "red", alpha=0.7))
    ax.set(xlim=(0, nx), ylim=(0, ny), aspect="equal", title=title, xlabel="x (px)", ylabel="y (px)")
    fig.colorbar(mesh, ax=ax, label=label, shrink=0.8)
    fig.savefig(path, dpi=dpi)
    return path


def plot_map(path, data: np.ndarray, *, title: str, label: str, cmap="magma", dpi: int = 90,
             percentile: float | None = None):
    """A per-pixel map (usage, weight, rejection) with a colour bar; ``percentile`` clips the
    colour range to that percentile of the finite values."""
    fig = _figure((6.0, 6.0 * data.shape[0] / data.shape[1] + 0.8))
    ax = fig.add_subplot()
    finite = data[np.isfinite(data)]
    vmax = np.percentile(finite, percentile) if percentile and finite.size else None
    im = ax.imshow(data, origin="lower", cmap=cmap, vmax=vmax, interpolation="nearest")
    ax.set(title=title, xlabel="x (px)", ylabel="y (px)")
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    fig.savefig(path, dpi=dpi)
    return path


def plot_clusters(path, features: np.ndarray, labels: np.ndarray, names, *, title: str,
                  axes_labels=("global weight G", "mean local quality"), dpi: int = 90):
    """Frames in the plane of their first two state-vector components, coloured by cluster."""
    fig = _figure((6.0, 4.5))
    ax = fig.add_subplot()
    sc = ax.scatter(features[:, 0], features[:, 1], c=labels, cmap="tab10", s=30)
    for (x, y), n in zip(features[:, :2], names):
        ax.annotate(str(n)[-12:], (x, y), fontsize=6, alpha=0.6)
    ax.set(title=title, xlabel=axes_labels[0], ylabel=axes_labels[1])
    fig.colorbar(sc, ax=ax, label="cluster")
    fig.savefig(path, dpi=dpi)
    return path
