"""Colour-magnitude (H-R) diagram from two filter images of one field."""
from __future__ import annotations

import numpy as np

from .errors import StarloomError
from .photometry import aperture_photometry


def colour_magnitude(blue, red, stars, wcs_blue, wcs_red, *, radius: float,
                     annulus: tuple[float, float], zero_points: tuple[float, float]):
    """Calibrated magnitudes of the same stars in two bands.

    Parameters
    ----------
    blue, red : ndarray, shape (ny, nx)
        Images in the bluer and the redder filter (linear flux units).
    stars : astropy.table.Table
        ``x``, ``y`` of the stars on the red image (px).
    wcs_blue, wcs_red : astropy.wcs.WCS or None
        Their celestial WCS; when both are given and differ, positions are carried from the red
        image to the blue one through the sky; otherwise the images must share their grid.
    radius, annulus
        Aperture and background annulus radii, px (see
        :func:`.photometry.aperture_photometry`).
    zero_points : (float, float)
        Zero points of the blue and red image: ``mag = zp - 2.5 log10(flux)``.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` (red image), ``mag_blue``, ``mag_red``, ``colour`` (blue - red) and their
        errors ``err_blue``, ``err_red`` (``1.0857 flux_err / flux``), stars with a positive
        flux in both bands only. ``meta``: ``ra``/``dec`` columns added when the red image has
        a WCS.

    Raises
    ------
    StarloomError
        When the grids differ without WCS, or no star has a positive flux in both bands.
    """
    xr, yr = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    xb, yb = xr, yr
    if wcs_blue is not None and wcs_red is not None:
        xb, yb = wcs_blue.world_to_pixel(wcs_red.pixel_to_world(xr, yr))
    elif np.shape(blue) != np.shape(red):
        raise StarloomError(f"colour-magnitude: the images differ in shape ({np.shape(blue)} vs "
                            f"{np.shape(red)}) and have no WCS to carry positions between them")
    pr = aperture_photometry(red, xr, yr, radius=radius, annulus=annulus)
    pb = aperture_photometry(blue, xb, yb, radius=radius, annulus=annulus)
    ok = (np.asarray(pr["flux"]) > 0) & (np.asarray(pb["flux"]) > 0)
    if not ok.any():
        raise StarloomError("colour-magnitude: no star has a positive flux in both images")
    t = pr[ok]["x", "y"]
    t["mag_blue"] = zero_points[0] + np.asarray(pb["mag_inst"])[ok]
    t["mag_red"] = zero_points[1] + np.asarray(pr["mag_inst"])[ok]
    t["colour"] = t["mag_blue"] - t["mag_red"]
    t["err_blue"] = 1.0857 * np.asarray(pb["flux_err"])[ok] / np.asarray(pb["flux"])[ok]
    t["err_red"] = 1.0857 * np.asarray(pr["flux_err"])[ok] / np.asarray(pr["flux"])[ok]
    if wcs_red is not None:
        sky = wcs_red.pixel_to_world(np.asarray(t["x"]), np.asarray(t["y"]))
        t["ra"], t["dec"] = sky.ra.deg, sky.dec.deg
    return t


def plot_colour_magnitude(path, t, *, bands=("g", "r"), catalog=None, dpi: int = 100):
    """Colour (blue - red) against red magnitude, bright at the top; catalogue stars (their
    ``mag`` against ``bv``) on a second panel when given, since their bands differ."""
    from .plots import _figure

    with_cat = catalog is not None and len(catalog) and "bv" in catalog.colnames
    fig = _figure((10 if with_cat else 6, 5.5))
    ax = fig.add_subplot(1, 2 if with_cat else 1, 1)
    good = np.asarray(t["err_red"]) < 0.2
    ax.plot(t["colour"][good], t["mag_red"][good], ".", ms=4, label="measured (err < 0.2 mag)")
    ax.plot(t["colour"][~good], t["mag_red"][~good], ".", ms=3, color="0.7", label="faint")
    ax.invert_yaxis()
    ax.set_xlabel(f"{bands[0]} - {bands[1]}, mag")
    ax.set_ylabel(f"{bands[1]}, mag")
    ax.set_title(f"Colour-magnitude diagram, {len(t)} stars", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if with_cat:
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.plot(catalog["bv"], catalog["mag"], "*", color="tab:orange", ms=6)
        ax2.invert_yaxis()
        ax2.set_xlabel("B - V (catalogue)")
        ax2.set_ylabel(f"{catalog.meta.get('mag_band', 'mag')} (catalogue)")
        ax2.set_title(f"catalogue stars in the field ({len(catalog)})", fontsize=10)
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
