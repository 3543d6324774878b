"""Distortion map of an optical system from the SIP terms of its WCS solutions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import StarloomError


@dataclass
class DistortionMap:
    """Result of :func:`distortion_map`.

    Attributes
    ----------
    x, y : ndarray, shape (m, n)
        Grid of pixel positions (0-based).
    dx, dy : ndarray, shape (m, n)
        Mean SIP displacement over the solutions, px (focal-plane minus pixel position).
    scatter : ndarray, shape (m, n)
        Standard deviation of the displacement's length over the solutions, px (0 for one).
    n_solutions : int
    """

    x: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    scatter: np.ndarray
    n_solutions: int

    @property
    def max_displacement(self) -> float:
        return float(np.max(np.hypot(self.dx, self.dy)))


def sip_displacement(wcs, x, y) -> tuple[np.ndarray, np.ndarray]:
    """SIP distortion at pixel positions: ``u + f(u, v) - u`` and ``v + g(u, v) - v``, px.

    Evaluated with astropy's ``WCS.sip_pix2foc`` (the SIP convention of Shupe et al. 2005,
    "The SIP Convention for Representing Distortion in FITS Image Headers"), 0-based pixels.
    A WCS without SIP gives zeros.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if wcs.sip is None:
        return np.zeros_like(x), np.zeros_like(y)
    # 1-based pixels in, focal-plane coordinates relative to CRPIX out: u + f(u, v)
    pix1 = np.column_stack([x.ravel(), y.ravel()]) + 1.0
    foc = wcs.sip_pix2foc(pix1, 1)
    d = foc - (pix1 - np.asarray(wcs.wcs.crpix, dtype=float))
    return d[:, 0].reshape(x.shape), d[:, 1].reshape(y.shape)


def distortion_map(wcs_list, shape, *, grid: int = 12) -> DistortionMap:
    """Mean SIP displacement field of several solutions of one optical system.

    Parameters
    ----------
    wcs_list : sequence of astropy.wcs.WCS
        Celestial WCS solutions with SIP terms (frames of one camera and telescope).
    shape : (int, int)
        Image shape (ny, nx) the solutions belong to.
    grid : int
        Grid points along the longer side.

    Returns
    -------
    DistortionMap

    Raises
    ------
    StarloomError
        No solution carries SIP terms.
    """
    ny, nx = shape
    with_sip = [w for w in wcs_list if w.sip is not None]
    if not with_sip:
        raise StarloomError("distortion map: none of the WCS solutions has SIP distortion "
                            "terms (solve with sip_degree >= 2)")
    step = max(nx, ny) / grid
    ys, xs = np.arange(step / 2, ny, step), np.arange(step / 2, nx, step)
    x, y = np.meshgrid(xs, ys)
    d = np.array([sip_displacement(w, x, y) for w in with_sip])  # (k, 2, m, n)
    length = np.hypot(d[:, 0], d[:, 1])
    return DistortionMap(x=x, y=y, dx=d[:, 0].mean(0), dy=d[:, 1].mean(0),
                         scatter=length.std(0), n_solutions=len(with_sip))


def plot_distortion(path, dm: DistortionMap, shape, *, dpi: int = 100):
    """Quiver plot of the mean displacement, arrows scaled up for visibility, coloured by the
    scatter over the solutions."""
    from .plots import _figure

    ny, nx = shape
    fig = _figure((7, 7 * ny / nx + 0.8))
    ax = fig.add_subplot(1, 1, 1)
    top = dm.max_displacement or 1.0
    scale = 0.08 * max(nx, ny) / top  # the longest arrow spans 8% of the field
    arrows = (dm.x, dm.y, dm.dx * scale, dm.dy * scale)
    if dm.n_solutions > 1:
        q = ax.quiver(*arrows, dm.scatter, angles="xy", scale_units="xy", scale=1, cmap="plasma")
        fig.colorbar(q, ax=ax, label="scatter over solutions, px", shrink=0.8)
    else:
        ax.quiver(*arrows, angles="xy", scale_units="xy", scale=1, color="tab:blue")
    ax.set_xlim(0, nx)
    ax.set_ylim(0, ny)
    ax.set_aspect("equal")
    ax.set_xlabel("x, px")
    ax.set_ylabel("y, px")
    ax.set_title(f"SIP distortion, mean of {dm.n_solutions} solution(s); longest "
                 f"{top:.2f} px (arrows x{scale:.0f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
