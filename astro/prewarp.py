"""Prewarp: registered frames resampled once onto one common canvas, with coverage masks.

Interface with the tile pipeline (``nodes/tiles.py``): the output is a FrameSeries of CCDData
on one canvas ``(ny, nx)`` (or ``(nc, ny, nx)``); ``mask`` is True where a frame has no data
(outside its footprint, or masked on input), so its coverage is ``~mask``; masked pixels hold 0.
Cards: ``PWCANVAS`` (grow/crop/reference), ``PWOFFX``/``PWOFFY`` (px: canvas = reference + offset),
``REGAPPL = T``.

The transform of each frame comes from its header (``REG-A00`` .. ``REG-A12``: the 2x3 affine
matrix taking its pixel coordinates (x, y) to the reference's, written by registration); cards
``REGAPPL = T`` (or the older ``REG-DX`` alone) mean the frame was already resampled onto the
reference grid, so only the canvas offset remains. A frame without registration cards is taken
as on the reference grid.

Canvas (tile_compile, doc/v3/process_flow/phase_1_registration.md, "Canvas-Expansion"):
``grow`` is the bounding box of every frame's transformed pixel centres (nothing is cut);
``crop`` the largest axis-aligned rectangle covered by every frame (the common area);
``reference`` the reference frame's grid. CFA (``BAYERPAT``) mosaics are warped per Bayer
sub-plane (:func:`starloom.astro.cfa.warp_cfa`, as tile_compile's
``warp_cfa_mosaic_via_subplanes``) on an even canvas with even offsets, so every pixel keeps
its colour.
Resampling: scikit-image ``warp`` (spline interpolation of order 1, 3 or 5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.nddata import CCDData

from .errors import StarloomError
from .frames import as_header

_CARDS = ("REG-A00", "REG-A01", "REG-A02", "REG-A10", "REG-A11", "REG-A12")
CANVAS_MODES = ("grow", "crop", "reference")


def write_transform_cards(header, matrix: np.ndarray, applied: bool, method: str = "") -> None:
    """Record a registration transform (3x3, frame px -> reference px) in ``header``."""
    m = np.asarray(matrix, float)
    for card, v in zip(_CARDS, m[:2].ravel()):
        header[card] = (float(v), "registration matrix, frame px -> reference px")
    header["REGAPPL"] = (bool(applied), "transform already applied (resampled)")
    if method:
        header["REGMETH"] = (method, "registration method")


def read_transform(header) -> tuple[np.ndarray, bool]:
    """The frame's transform (3x3) still to apply, and whether it was already applied.

    An applied transform (``REGAPPL = T``, or old ``REG-DX`` cards without a matrix, written
    by star_align when it always resampled) leaves the identity to apply.
    """
    applied = bool(header.get("REGAPPL", "REG-DX" in header))
    if applied or _CARDS[0] not in header:
        return np.eye(3), applied
    m = np.eye(3)
    m[:2] = np.array([float(header[c]) for c in _CARDS]).reshape(2, 3)
    return m, False


@dataclass(frozen=True)
class Canvas:
    """The common canvas: ``shape`` (ny, nx) and ``offset`` (ox, oy): canvas = reference + offset."""

    shape: tuple[int, int]
    offset: tuple[int, int]

    def matrix(self, m: np.ndarray) -> np.ndarray:
        """Frame px -> canvas px."""
        t = np.eye(3)
        t[:2, 2] = self.offset
        return t @ m


def _corners(shape, m):
    ny, nx = shape
    c = np.array([[0, 0, 1], [nx - 1, 0, 1], [0, ny - 1, 1], [nx - 1, ny - 1, 1]], float)
    return (m @ c.T)[:2].T


def coverage(shape_in, m: np.ndarray, canvas: Canvas) -> np.ndarray:
    """Bool ``canvas.shape`` map of the canvas pixels whose centre maps inside the frame.

    ``m`` takes frame px to reference px; a canvas pixel is covered when its centre, mapped back
    into the frame, lies within the frame's pixel centres (no extrapolation).
    """
    inv = np.linalg.inv(canvas.matrix(m))
    ny, nx = canvas.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    x = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    y = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    eps = 1e-6
    return (x >= -eps) & (x <= shape_in[1] - 1 + eps) & (y >= -eps) & (y <= shape_in[0] - 1 + eps)


def _largest_common_rect(valid: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of an all-valid rectangle: the valid bounding box, peeled greedily.

    Each step drops the border row or column with the most invalid pixels; exact when the
    common area is itself a rectangle (translations), close to the largest for rotations.
    """
    rows, cols = np.flatnonzero(valid.any(1)), np.flatnonzero(valid.any(0))
    if not len(rows):
        raise StarloomError("prewarp: the frames have no pixel in common (canvas 'crop')")
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    while y1 > y0 and x1 > x0:
        sub = ~valid[y0:y1, x0:x1]
        if not sub.any():
            return int(y0), int(y1), int(x0), int(x1)
        bad = [sub[0].sum(), sub[-1].sum(), sub[:, 0].sum(), sub[:, -1].sum()]
        k = int(np.argmax(bad))
        y0, y1, x0, x1 = (y0 + (k == 0), y1 - (k == 1), x0 + (k == 2), x1 - (k == 3))
    raise StarloomError("prewarp: the frames have no rectangle in common (canvas 'crop')")


def make_canvas(shape, matrices, mode: str = "grow", cfa: bool = False) -> Canvas:
    """The common canvas of frames of ``shape`` (ny, nx) with transforms ``matrices``.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the (reference-grid) input frames.
    matrices : list of ndarray, shape (3, 3)
        Frame px -> reference px, one per frame.
    mode : {"grow", "crop", "reference"}
    cfa : bool
        Even offsets and sizes (so the Bayer phase of a canvas pixel is the reference's).

    Raises
    ------
    StarloomError
        Unknown ``mode``; no common area for ``crop``.
    """
    if mode not in CANVAS_MODES:
        raise StarloomError(f"parameter 'canvas': unknown mode '{mode}' (one of {CANVAS_MODES})")
    ny, nx = shape
    if mode == "reference":
        return Canvas((ny, nx), (0, 0))
    pts = np.vstack([_corners(shape, m) for m in matrices] + [_corners(shape, np.eye(3))])
    lo = np.floor(pts.min(0) + 1e-6).astype(int)  # corners a rounding error off an integer
    hi = np.ceil(pts.max(0) - 1e-6).astype(int)   # stay on it
    if cfa:
        lo -= lo % 2
        hi += (hi - lo + 1) % 2
    grow = Canvas((int(hi[1] - lo[1] + 1), int(hi[0] - lo[0] + 1)), (int(-lo[0]), int(-lo[1])))
    if mode == "grow":
        return grow
    common = np.logical_and.reduce([coverage(shape, m, grow) for m in matrices])
    y0, y1, x0, x1 = _largest_common_rect(common)
    if cfa:  # shrink inward to even origin (in reference px) and even size
        x0 += (x0 - grow.offset[0]) % 2
        y0 += (y0 - grow.offset[1]) % 2
        x1 -= (x1 - x0) % 2
        y1 -= (y1 - y0) % 2
    return Canvas((int(y1 - y0), int(x1 - x0)), (grow.offset[0] - int(x0), grow.offset[1] - int(y0)))


def _warp_plain(data, mask, m, shape, order):
    """Resample ``data`` (2-D or planar) by ``m`` (input px -> output px) onto ``shape``.

    Edge pixels replicate outward for the spline (``mode='edge'``), so pixels exactly on the
    frame's border keep their values; what lies outside is masked by :func:`coverage`. NaN
    input and masked input pixels (warped bilinearly, any weight over 1 %) are masked.
    """
    from skimage.transform import ProjectiveTransform, warp
    tf = ProjectiveTransform(matrix=m)
    planes = data[None] if data.ndim == 2 else data
    kw = dict(inverse_map=tf.inverse, output_shape=shape, order=order, mode="edge",
              preserve_range=True)
    out = np.stack([warp(np.asarray(p, np.float64), **kw) for p in planes]).astype(np.float32)
    bad = ~np.isfinite(out).all(axis=0)
    if mask is not None and np.any(mask):
        m2d = mask if mask.ndim == 2 else mask.any(0)
        bad |= warp(m2d.astype(np.float64), **{**kw, "order": 1}) > 0.01
    out = out[0] if data.ndim == 2 else out
    return out, np.broadcast_to(bad, out.shape).copy()


def _warp_cfa(data, mask, m, shape, order):
    """Warp a 2-D Bayer mosaic sub-plane by sub-plane (:func:`starloom.astro.cfa.warp_cfa`);
    masked input pixels enter as NaN, and every non-finite output pixel is masked."""
    from skimage.transform import ProjectiveTransform

    from .cfa import warp_cfa
    data = np.asarray(data, np.float64)
    if mask is not None and np.any(mask):
        data = np.where(mask, np.nan, data)
    out = warp_cfa(data, ProjectiveTransform(matrix=m).inverse, order=order, output_shape=shape)
    return out.astype(np.float32), ~np.isfinite(out)


def warp_to_canvas(ccd: CCDData, m: np.ndarray, canvas: Canvas, *, order: int = 3,
                   cfa: bool = False) -> CCDData:
    """Resample ``ccd`` onto ``canvas`` (frame px -> reference px by ``m``), mask what is empty.

    Parameters
    ----------
    ccd : CCDData
        Frame ``(ny, nx)`` or planar ``(nc, ny, nx)``; its mask is carried along.
    m : ndarray, shape (3, 3)
    canvas : Canvas
    order : int
        Spline order (1 bilinear, 3 bicubic, 5 quintic).
    cfa : bool
        ``ccd`` is a 2-D Bayer mosaic: warp per sub-plane (canvas must be even).

    Returns
    -------
    CCDData
        float32, ``mask`` True outside the frame's footprint (and where masked on input),
        masked pixels 0; header copied with ``PWOFFX``/``PWOFFY``/``REGAPPL``.
    """
    full = canvas.matrix(m)
    if cfa:
        if ccd.data.ndim != 2 or canvas.shape[0] % 2 or canvas.shape[1] % 2:
            raise StarloomError("prewarp: a CFA mosaic must be 2-D on an even canvas")
        data, mask = _warp_cfa(ccd.data, ccd.mask, full, canvas.shape, order)
    else:
        data, mask = _warp_plain(ccd.data, ccd.mask, full, canvas.shape, order)
    mask |= ~coverage(ccd.shape[-2:], m, canvas)
    data = np.where(mask, 0.0, data).astype(np.float32)
    header = as_header(ccd.header).copy()
    header["PWOFFX"] = (canvas.offset[0], "canvas x = reference x + PWOFFX, px")
    header["PWOFFY"] = (canvas.offset[1], "canvas y = reference y + PWOFFY, px")
    header["REGAPPL"] = (True, "transform already applied (resampled)")
    for k, n in (("NAXIS1", canvas.shape[1]), ("NAXIS2", canvas.shape[0])):
        if k in header:  # cards read from the input file describe its old size
            header[k] = n
    return CCDData(data, unit=ccd.unit, mask=mask, meta=header)


def shifted_wcs(wcs, canvas: Canvas):
    """``wcs`` of the reference grid moved onto the canvas (CRPIX + offset), or None."""
    if wcs is None:
        return None
    out = wcs.deepcopy()
    out.wcs.crpix = out.wcs.crpix + np.array(canvas.offset, float)
    if out.pixel_shape is not None:
        out.pixel_shape = (canvas.shape[1], canvas.shape[0])
    return out
