"""Focal-plane view: star FWHM, eccentricity and orientation across the field, per tile, with
a sensor tilt (plane fitted to FWHM) and field curvature (radial term) estimate."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import plane
from .errors import StarloomError


def measure_sources(data, *, detection_sigma: float = 5.0, min_area: int = 5,
                    min_fwhm: float = 1.5, max_fwhm: float = 30.0):
    """Shape of every source of an image, from its image moments.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Image, ADU; NaN pixels are masked.
    detection_sigma : float
        Threshold above the sigma-clipped background, in background sigma.
    min_area : int
        Minimum connected pixels of a source.
    min_fwhm, max_fwhm : float
        Sources with a smaller moment FWHM (hot pixels, cosmic rays) or a larger one
        (galaxies) are dropped, px.

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` (px, 0-based), ``flux`` (ADU), ``fwhm`` (px: photutils
        ``SourceCatalog.fwhm``, the circularized FWHM of the second moments,
        ``2 sqrt(2 ln 2) sqrt((a^2 + b^2) / 2)``), ``eccentricity`` and ``orientation`` (deg,
        counter-clockwise from +x, in (-90, 90]). Sources are segmented and deblended by
        photutils (``detect_sources``, ``deblend_sources``) so that blends are measured apart.

    Raises
    ------
    StarloomError
        When the image is not 2-D or holds no source.
    """
    from astropy.stats import sigma_clipped_stats
    from astropy.table import Table
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources

    img = plane(data, "focal plane")
    bad = ~np.isfinite(img)
    work = np.where(bad, np.nanmedian(img), img)
    _, med, std = sigma_clipped_stats(work, sigma=3.0, maxiters=10, mask=bad)
    work = work - med
    seg = detect_sources(work, detection_sigma * std, n_pixels=min_area, mask=bad)
    if seg is None:
        raise StarloomError("focal plane: no source found above the detection threshold")
    # Blended pairs would read as one big elongated star.
    seg = deblend_sources(work, seg, n_pixels=min_area, progress_bar=False)
    cat = SourceCatalog(work, seg, mask=bad)
    t = Table({"x": cat.x_centroid, "y": cat.y_centroid, "flux": cat.segment_flux,
               "fwhm": cat.fwhm.value, "eccentricity": cat.eccentricity.value,
               "orientation": cat.orientation.value})
    keep = (np.isfinite(t["fwhm"]) & (t["fwhm"] >= min_fwhm) & (t["fwhm"] <= max_fwhm)
            & (t["flux"] > 0))
    return t[keep]


@dataclass
class FocalPlane:
    """Result of :func:`focal_plane`.

    Attributes
    ----------
    tiles : astropy.table.Table
        One row per tile: ``ix``, ``iy``, centre ``x``, ``y`` (px), ``n_stars``, median ``fwhm``
        (px), median ``eccentricity``, mean ``orientation`` (deg, axial mean), NaN where a tile
        has fewer than ``min_stars``.
    tilt : dict
        Plane ``fwhm = c0 + gx * (x - xc) + gy * (y - yc)`` fitted to the stars: ``gx``, ``gy``
        (px of FWHM per px), ``delta_fwhm`` (px of FWHM across the field along the gradient)
        and ``direction_deg`` (direction of growing FWHM, counter-clockwise from +x).
    curvature : float
        Coefficient ``k`` of ``k * r^2`` (r in units of the half-diagonal) fitted together with
        the plane: px of FWHM from the centre to a corner; positive when the edges are softer.
    """

    tiles: object
    tilt: dict
    curvature: float
    shape: tuple[int, int]


def _axial_mean_deg(angles):
    """Mean of axes (orientations modulo 180 deg): the angle of the mean of 2*theta."""
    t = np.deg2rad(np.asarray(angles, dtype=float)) * 2
    return float(np.rad2deg(np.arctan2(np.mean(np.sin(t)), np.mean(np.cos(t)))) / 2)


def focal_plane(stars, shape, *, n_tiles: tuple[int, int] = (4, 4),
                min_stars: int = 3) -> FocalPlane:
    """Tile statistics of star shapes and the tilt/curvature of FWHM over the field.

    Parameters
    ----------
    stars : astropy.table.Table
        ``x``, ``y``, ``fwhm``, ``eccentricity``, ``orientation`` (as :func:`measure_sources`).
    shape : (int, int)
        Image shape (ny, nx).
    n_tiles : (int, int)
        Tiles along y and x.
    min_stars : int
        Fewer stars leave a tile NaN.

    Returns
    -------
    FocalPlane

    Raises
    ------
    StarloomError
        Fewer than 6 stars (the tilt/curvature fit has 4 unknowns).

    Notes
    -----
    Tilt and curvature: least squares (``numpy.linalg.lstsq``) of FWHM against
    ``1, x - xc, y - yc, r^2``: a tilted sensor sees focus change linearly across it, field
    curvature quadratically with the distance from the optical axis (taken at the centre).
    """
    from astropy.table import Table

    if len(stars) < 6:
        raise StarloomError(f"focal plane: {len(stars)} star(s) measured; at least 6 are needed")
    ny, nx = shape
    x, y, f = (np.asarray(stars[c], dtype=float) for c in ("x", "y", "fwhm"))
    xc, yc, half_diag = (nx - 1) / 2, (ny - 1) / 2, np.hypot(nx, ny) / 2
    r2 = ((x - xc) ** 2 + (y - yc) ** 2) / half_diag ** 2
    design = np.column_stack([np.ones_like(x), x - xc, y - yc, r2])
    coef, *_ = np.linalg.lstsq(design, f, rcond=None)
    gx, gy = float(coef[1]), float(coef[2])
    tilt = {"gx": gx, "gy": gy, "delta_fwhm": float(np.hypot(gx * nx, gy * ny)),
            "direction_deg": float(np.rad2deg(np.arctan2(gy, gx)))}
    rows = []
    tiy, tix = n_tiles
    for iy in range(tiy):
        for ix in range(tix):
            x0, x1 = nx * ix / tix, nx * (ix + 1) / tix
            y0, y1 = ny * iy / tiy, ny * (iy + 1) / tiy
            sel = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
            n = int(sel.sum())
            ok = n >= min_stars
            rows.append({"ix": ix, "iy": iy, "x": (x0 + x1) / 2, "y": (y0 + y1) / 2,
                         "n_stars": n,
                         "fwhm": float(np.median(f[sel])) if ok else np.nan,
                         "eccentricity": float(np.median(stars["eccentricity"][sel]))
                         if ok else np.nan,
                         "orientation": _axial_mean_deg(stars["orientation"][sel])
                         if ok else np.nan})
    return FocalPlane(tiles=Table(rows=rows), tilt=tilt, curvature=float(coef[3]),
                      shape=(ny, nx))


def plot_focal_plane(path, fp: FocalPlane, *, dpi: int = 100):
    """A 3-D surface of the tiles' FWHM beside an ellipse map (each tile's median star shape:
    axis ratio from the eccentricity, angle from the orientation, colour the FWHM) with the
    tilt's direction as an arrow."""
    from matplotlib import cm
    from matplotlib.colors import Normalize
    from matplotlib.patches import Ellipse

    from .plots import _figure

    t = fp.tiles
    ny, nx = fp.shape
    tiy, tix = int(max(t["iy"]) + 1), int(max(t["ix"]) + 1)
    fw = np.asarray(t["fwhm"], dtype=float).reshape(tiy, tix)
    fig = _figure((11, 4.6))
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    finite = np.isfinite(fw)
    norm = Normalize(np.nanmin(fw) if finite.any() else 0, np.nanmax(fw) if finite.any() else 1)
    dx, dy = nx / tix, ny / tiy
    for row in t:  # a bar per tile: empty tiles stay empty instead of hiding their neighbours
        if np.isfinite(row["fwhm"]):
            ax3.bar3d(row["x"] - dx / 2, row["y"] - dy / 2, 0, 0.9 * dx, 0.9 * dy, row["fwhm"],
                      color=cm.viridis(norm(row["fwhm"])), shade=True)
    ax3.set_xlabel("x, px")
    ax3.set_ylabel("y, px")
    ax3.set_zlabel("FWHM, px")
    ax3.set_title("FWHM per tile")
    ax = fig.add_subplot(1, 2, 2)
    size = 0.8 * min(nx / tix, ny / tiy)
    for row in t:
        if not np.isfinite(row["fwhm"]):
            continue
        ratio = np.sqrt(max(0.0, 1 - float(row["eccentricity"]) ** 2))
        ax.add_patch(Ellipse((row["x"], row["y"]), size, size * ratio,
                             angle=float(row["orientation"]),
                             facecolor=cm.viridis(norm(row["fwhm"])), edgecolor="k"))
        ax.text(row["x"], row["y"], f"{row['fwhm']:.2f}", ha="center", va="center", fontsize=7)
    arrow = 0.3 * min(nx, ny)
    d = np.deg2rad(fp.tilt["direction_deg"])
    ax.annotate("", xy=(nx / 2 + arrow * np.cos(d), ny / 2 + arrow * np.sin(d)),
                xytext=(nx / 2, ny / 2), arrowprops={"arrowstyle": "->", "color": "red", "lw": 2})
    ax.set_xlim(0, nx)
    ax.set_ylim(0, ny)
    ax.set_aspect("equal")
    ax.set_title(f"star shape per tile; tilt: FWHM +{fp.tilt['delta_fwhm']:.2f} px across, "
                 f"curvature {fp.curvature:+.2f} px", fontsize=9)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="FWHM, px")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
