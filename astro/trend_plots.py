"""Diagnostic plots (matplotlib, Agg): per-frame trends and 2-D maps.

Used by the tile pipeline's normalization, global-metrics and prewarp nodes; the run report
embeds the PNGs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_trends(path, table, columns, *, title: str = "", highlight: dict | None = None,
                dpi: int = 90) -> Path:
    """Write a PNG with one panel per ``columns`` entry, the value against frame index.

    Parameters
    ----------
    path : str or Path
        PNG to write.
    table : astropy.table.Table or dict of sequences
        One row per frame.
    columns : sequence of str or (str, str)
        Column names, or (column, axis label) pairs; missing or all-NaN columns are skipped.
    title : str
        Figure title.
    highlight : dict of str to sequence of bool, optional
        Per column, frames drawn as red crosses (e.g. rejected or fallback frames).

    Returns
    -------
    Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = [(c, c) if isinstance(c, str) else tuple(c) for c in columns]
    names = table.colnames if hasattr(table, "colnames") else list(table)  # `in` a Table: rows
    cols = [(c, lab) for c, lab in cols if c in names
            and np.isfinite(np.asarray(table[c], float)).any()]
    n = max(len(cols), 1)
    ncol = 2 if n > 3 else 1
    nrow = int(np.ceil(n / ncol))
    fig = Figure(figsize=(5.2 * ncol, 2.2 * nrow + 0.6))
    FigureCanvasAgg(fig)
    for k, (c, lab) in enumerate(cols):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        y = np.asarray(table[c], float)
        x = np.arange(len(y))
        ax.plot(x, y, "o-", ms=3, lw=1, color="#2166ac")
        if highlight and c in highlight:
            h = np.asarray(highlight[c], bool)
            ax.plot(x[h], y[h], "x", color="#d62728", ms=7, mew=2)
        ax.set_ylabel(lab, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.set_xlabel("frame index", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def plot_map(path, image, *, title: str = "", label: str = "", cmap: str = "viridis",
             dpi: int = 90) -> Path:
    """Write a PNG of a 2-D map (coverage, weights) with a colour bar; NaN shown blank."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    img = np.asarray(image, float)
    ny, nx = img.shape
    fig = Figure(figsize=(5.5, 5.5 * ny / max(nx, 1) + 0.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(img, origin="lower", cmap=cmap, interpolation="nearest")
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path
