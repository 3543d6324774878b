"""Plots of images with WCS: annotated sky images and astrometric residuals (matplotlib Agg,
WCSAxes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS




def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def plot_annotated(
    path,
    data,
    wcs: WCS | None,
    stars: Table | None = None,
    catalog: Table | None = None,
    *,
    title: str | None = None,
    max_catalog: int = 300,
    percent: float = 99.5,
    dpi: int = 100,
    label_mag: float | None = None,
    label_column: str | None = None,
):
    """Save a stretched image with a celestial grid, detected stars and catalogue stars.

    Uses astropy's WCSAxes (``projection=wcs``) on a matplotlib Agg figure and an
    ``ImageNormalize`` with a percentile interval and an asinh stretch.

    Parameters
    ----------
    path : path-like
        Output file (format from the suffix: png, pdf, svg, ...).
    data : array_like (ny, nx)
        Image.
    wcs : astropy.wcs.WCS or None
        Celestial WCS of ``data``; None: plain pixel axes (then no ``catalog``).
    stars : astropy.table.Table, optional
        Detected stars (``x``, ``y`` 0-based): green circles of radius 1.5 FWHM (3..30 px).
    catalog : astropy.table.Table, optional
        Catalogue stars (``ra``, ``dec``, optional ``mag``): red crosses, the brightest
        ``max_catalog`` inside the image.
    title : str, optional
    max_catalog : int, optional
    percent : float, optional
        Percentile interval of the display stretch.
    dpi : int, optional
    label_mag : float, optional
        Write the magnitude next to catalogue stars brighter than this.
    label_column : str, optional
        Write this column's value next to each detected star and catalogue row having it
        (e.g. object names).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval

    img = np.asarray(data, dtype=float)
    ny, nx = img.shape
    fig = _figure((8.0, 8.0 * ny / nx + 0.6))
    if wcs is None:
        ax = fig.add_subplot(1, 1, 1)
        ax.set_xlabel("x, px")
        ax.set_ylabel("y, px")
    else:
        ax = fig.add_subplot(1, 1, 1, projection=wcs.celestial)
        ax.coords.grid(True, color="cyan", alpha=0.45, linestyle=":")
        ax.coords[0].set_axislabel("RA")
        ax.coords[1].set_axislabel("Dec")
    finite = img[np.isfinite(img)]
    norm = ImageNormalize(
        finite if finite.size else np.zeros(1),
        interval=PercentileInterval(percent),
        stretch=AsinhStretch(0.1),
    )
    ax.imshow(img, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
    handles = []
    if stars is not None and len(stars):
        from matplotlib.collections import PatchCollection
        from matplotlib.lines import Line2D
        from matplotlib.patches import Circle

        size = (
            np.asarray(stars["fwhm"], dtype=float) if "fwhm" in stars.colnames else np.full(len(stars), 3.0)
        )
        radius = np.clip(np.where(np.isfinite(size), 1.5 * size, 4.5), 3.0, 30.0)
        circles = [
            Circle((float(a), float(b)), float(r))
            for a, b, r in zip(stars["x"], stars["y"], radius, strict=True)
        ]
        ax.add_collection(PatchCollection(circles, facecolors="none", edgecolors="lime", linewidths=0.8))
        handles.append(
            Line2D([], [], marker="o", ls="none", mfc="none", mec="lime", label=f"detected ({len(stars)})")
        )
        if label_column in stars.colnames:
            for a, b, r, text in zip(stars["x"], stars["y"], radius, stars[label_column]):
                ax.text(float(a) + r, float(b) + r, str(text), color="lime", fontsize=7)
    if catalog is not None and len(catalog):
        sky = SkyCoord(np.asarray(catalog["ra"]) * u.deg, np.asarray(catalog["dec"]) * u.deg)
        px, py = wcs.world_to_pixel(sky)
        inside = (
            np.isfinite(px) & np.isfinite(py) & (px > -0.5) & (px < nx - 0.5) & (py > -0.5) & (py < ny - 0.5)
        )
        idx = np.nonzero(inside)[0][:max_catalog]
        h = ax.scatter(
            px[idx], py[idx], marker="+", s=60, c="red", linewidths=0.9, label=f"catalogue ({len(idx)})"
        )
        handles.append(h)
        if label_column in catalog.colnames:
            for i in idx:
                ax.text(px[i] + 6, py[i] + 6, str(catalog[label_column][i]), color="orange",
                        fontsize=7)
        elif label_mag is not None and "mag" in catalog.colnames:
            for i in idx:
                m = float(catalog["mag"][i])
                if np.isfinite(m) and m <= label_mag:
                    ax.text(px[i] + 6, py[i] + 6, f"{m:.1f}", color="orange", fontsize=7)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.6)
    if title:
        ax.set_title(title)
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_residuals(
    path, residual_table: Table, *, image_shape=None, title: str | None = None, dpi: int = 100
):
    """Save an astrometric residual plot: vector map over the image and residual histogram.

    Parameters
    ----------
    path : path-like
        Output file.
    residual_table : astropy.table.Table
        From `refine_wcs`: ``x``, ``y``, ``dx_px``, ``dy_px``, ``total_arcsec``.
    image_shape : (int, int), optional
        ``(ny, nx)`` for the axis limits.
    title : str, optional
    dpi : int, optional

    Returns
    -------
    pathlib.Path
    """
    t = residual_table
    x, y = np.asarray(t["x"], dtype=float), np.asarray(t["y"], dtype=float)
    dx, dy = np.asarray(t["dx_px"], dtype=float), np.asarray(t["dy_px"], dtype=float)
    tot = np.asarray(t["total_arcsec"], dtype=float)
    fig = _figure((12.0, 5.0))
    ax = fig.add_subplot(1, 2, 1)
    if image_shape is not None:
        ny, nx = image_shape
    else:
        nx, ny = (x.max() + 1 if len(x) else 1), (y.max() + 1 if len(y) else 1)
    length = np.hypot(dx, dy)
    ref = float(np.nanmedian(length)) if len(length) and np.nanmedian(length) > 0 else 1.0
    gain = 0.08 * max(nx, ny) / ref  # median arrow = 8 % of the image size
    q = ax.quiver(
        x, y, dx * gain, dy * gain, tot, angles="xy", scale_units="xy", scale=1, cmap="viridis", width=0.004
    )
    # key below the x-axis label, so that neither overlaps
    ax.quiverkey(q, 0.80, -0.25, ref * gain, f"{ref:.2f} px (median)", labelpos="W", coordinates="axes")
    fig.colorbar(q, ax=ax, label="residual (arcsec)")
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_title(f"catalogue minus detected (arrows x{gain:.0f})", fontsize=10)
    ax2 = fig.add_subplot(1, 2, 2)
    if len(tot):
        ax2.hist(tot, bins=max(5, min(40, len(tot) // 2)), color="steelblue")
        rms = float(np.sqrt(np.mean(tot**2)))
        ax2.axvline(rms, color="red", label=f'rms {rms:.2f}"')
        ax2.legend()
    ax2.set_xlabel("residual (arcsec)")
    ax2.set_ylabel("stars")
    fig.suptitle(title or f"astrometric residuals, {len(t)} stars")
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
