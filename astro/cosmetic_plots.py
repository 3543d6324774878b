"""Figures of cosmetic-correction maps (matplotlib, Agg backend, imported where used)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_pixel_map"]

#: Up to this many flagged pixels are ringed; more are drawn as a red layer.
RING_LIMIT = 2000


def plot_pixel_map(data, mask, path, title: str, counts=None, dpi: int = 110) -> Path:
    """Write a PNG of an image (zscale, IRAF's algorithm via astropy) with the pixels of a map
    ringed in red (drawn as a red layer when there are more than ``RING_LIMIT``), and, when ``counts`` is given (in how many frames each pixel was flagged),
    the histogram of those counts beside it.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        The image the map was found in (a master, a frame); FITS row 0 at the bottom.
    mask : ndarray of bool, shape (ny, nx)
    path : str or Path
        PNG to write.
    title : str
    counts : ndarray of int, shape (ny, nx), optional

    Returns
    -------
    Path
    """
    from astropy.visualization import ZScaleInterval
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    a = np.asarray(data, np.float64)
    finite = np.isfinite(a)
    lo, hi = ZScaleInterval().get_limits(a[finite]) if finite.any() else (0, 1)
    ncols = 2 if counts is not None else 1
    fig = Figure(figsize=(7 * ncols, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, ncols, 1)
    ax.imshow(np.where(finite, a, lo), origin="lower", cmap="gray", vmin=lo, vmax=hi,
              interpolation="nearest")
    m = np.asarray(mask, bool)
    ys, xs = np.nonzero(m)
    if ys.size <= RING_LIMIT:
        ax.scatter(xs, ys, s=30, facecolors="none", edgecolors="red", linewidths=0.6)
    else:  # rings would cover the frame: the map itself, in red over the image
        overlay = np.zeros(m.shape + (4,))
        overlay[m] = (1.0, 0.0, 0.0, 0.8)
        ax.imshow(overlay, origin="lower", interpolation="nearest")
    ax.set_title(f"{title}: {ys.size} pixels")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    if counts is not None:
        hx = fig.add_subplot(1, 2, 2)
        c = np.asarray(counts).ravel()
        hx.bar(np.arange(c.max() + 1), np.bincount(c), color="tab:blue")
        hx.set_yscale("log")
        hx.set_xlabel("frames in which the pixel spikes")
        hx.set_ylabel("pixels")
        hx.set_title("spike recurrence")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path
