"""Registration: star images for matching, the best reference frame, star alignment.

Alignment uses astroalign (Beroiz, Cabral & Sanchez 2020, Astronomy and Computing 32, 100384):
asterism (star-triangle) matching gives a similarity transform (rotation, scale, translation),
applied with scikit-image's ``warp`` (spline interpolation of chosen order). Star counts for
choosing a reference use sep (Barbary 2016, JOSS 1, 58), SExtractor's algorithm (Bertin &
Arnouts 1996, A&AS 117, 393).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import astroalign
import numpy as np
import sep
from astropy.nddata import CCDData
from scipy.ndimage import median_filter
from skimage.transform import warp as warp_image

from .errors import StarloomError

#: Spline order of each interpolation name (scikit-image ``warp``'s ``order``).
INTERPOLATION_ORDER = {"bilinear": 1, "bicubic": 3, "quintic": 5}

#: Largest fraction of NaN/inf pixels a frame may have to be a reference or be aligned: beyond
#: it the stars found describe less than half the field (a failed readout, a bad calibration).
MAX_NONFINITE = 0.5


def nonfinite_fraction(ccd: CCDData) -> float:
    """Fraction of the pixels of ``ccd`` that are NaN or infinite (0 for an empty frame)."""
    data = np.asarray(ccd.data)
    return float(np.count_nonzero(~np.isfinite(data)) / data.size) if data.size else 0.0


def too_nonfinite(ccd: CCDData, name: str = "frame",
                  max_fraction: float = MAX_NONFINITE) -> str | None:
    """Why ``ccd`` is unusable for registration (over ``max_fraction`` non-finite), or None."""
    frac = nonfinite_fraction(ccd)
    if frac <= max_fraction:
        return None
    return (f"frame '{name}': {frac:.0%} of its pixels are NaN or infinite (at most "
            f"{max_fraction:.0%} allowed)")


def detection_image(ccd: CCDData) -> np.ndarray:
    """2-D float32 image for star finding: luminance of RGB, single hot pixels removed.

    Parameters
    ----------
    ccd : CCDData
        Frame ``(ny, nx)`` or planar ``(nc, ny, nx)``; masked and non-finite pixels are
        replaced by the median of the finite ones (0 when none is).

    Returns
    -------
    ndarray, shape (ny, nx), float32

    Notes
    -----
    A 3x3 median filter removes isolated hot pixels and cosmic rays, which would otherwise be
    taken for stars on uncalibrated frames, while leaving stars (several pixels wide) in place.
    """
    data = np.asarray(ccd.data, dtype=np.float32)
    if data.ndim == 3:
        data = data.mean(axis=0)
    finite = np.isfinite(data)
    if not finite.all():  # the median costs 0.1 s on 2048x2048: only when there is a hole
        # Not np.nanmedian: it skips NaN but not inf, and an inf median fills the whole frame.
        fill = np.median(data[finite]) if finite.any() else 0.0
        data = np.where(finite, data, fill)
    if ccd.mask is not None:
        data = np.where(ccd.mask if ccd.mask.ndim == 2 else ccd.mask.any(axis=0), np.median(data), data)
    return median_filter(data, size=3)


#: ``(digest of pixels and mask, star image)`` of the last reference, one per process; a
#: single tuple, read and replaced whole, so threads sharing the module never mix two.
_LAST_REFERENCE: list = [None]


def reference_detection_image(ccd: CCDData) -> np.ndarray:
    """:func:`detection_image` of a registration reference, kept for the next frame.

    A per-frame registration aligns every frame to the same reference; its 3x3 median filter
    (about 1 s on 2048x2048) is computed once per process instead of once per frame. The
    reference is recognised by a BLAKE2b digest of its data and mask (about 0.02 s); the
    returned array is shared and read-only.
    """
    digest = hashlib.blake2b(digest_size=16)
    for arr in (ccd.data, ccd.mask):
        if arr is not None:
            arr = np.ascontiguousarray(arr)
            digest.update(f"{arr.dtype.str}{arr.shape}".encode())
            digest.update(arr.reshape(-1).view(np.uint8))
    key = digest.hexdigest()
    last = _LAST_REFERENCE[0]
    if last is None or last[0] != key:
        image = detection_image(ccd)
        image.flags.writeable = False
        last = _LAST_REFERENCE[0] = (key, image)
    return last[1]


def count_stars(image: np.ndarray, threshold: float = 5.0,
                mask: np.ndarray | None = None) -> tuple[int, float]:
    """Number of sources above ``threshold`` sigma and their median half-light radius.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Star image (see :func:`detection_image`).
    threshold : float
        Detection threshold in units of the global background RMS (``sep.extract``).
    mask : ndarray of bool, shape (ny, nx), optional
        Pixels to leave out of the background and the detection (e.g. non-finite ones).

    Returns
    -------
    n : int
        Sources of at least 5 pixels.
    radius : float
        Their median half-flux radius (``sep.flux_radius``), pixels; NaN when none.
    """
    img = np.ascontiguousarray(image, dtype=np.float64)
    m = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    bkg = sep.Background(img, mask=m)
    objs = sep.extract(img - bkg.back(), threshold, err=bkg.globalrms, minarea=5, mask=m)
    if len(objs) == 0:
        return 0, float("nan")
    r, _ = sep.flux_radius(img - bkg.back(), objs["x"], objs["y"], 6.0 * objs["a"], 0.5,
                           subpix=5)
    return len(objs), float(np.nanmedian(r))


def reference_score(ccd: CCDData, name: str = "frame",
                    max_nonfinite: float = MAX_NONFINITE) -> dict:
    """How good ``ccd`` is as a registration reference, from its finite pixels only.

    Parameters
    ----------
    ccd : CCDData
        Frame ``(ny, nx)`` or planar ``(nc, ny, nx)``.
    name : str
        The frame's name, for the reason.
    max_nonfinite : float
        Largest fraction of NaN/inf pixels of a usable frame.

    Returns
    -------
    dict
        ``stars`` (count at 5 sigma, non-finite pixels masked), ``half_light_radius_px``
        (median, NaN when none), ``nonfinite_fraction`` and ``rejected``: None, or why the
        frame cannot be the reference (then it is not searched for stars).
    """
    frac = nonfinite_fraction(ccd)
    reason = too_nonfinite(ccd, name, max_nonfinite)
    score = {"stars": 0, "half_light_radius_px": float("nan"),
             "nonfinite_fraction": round(frac, 6), "rejected": reason}
    if reason is None:
        finite = np.isfinite(np.asarray(ccd.data))
        bad = ~(finite.all(axis=0) if finite.ndim == 3 else finite)
        n, r = count_stars(detection_image(ccd), mask=bad if bad.any() else None)
        score.update(stars=n, half_light_radius_px=r)
    return score


@dataclass
class Alignment:
    """A frame aligned to a reference: the resampled frame and its transform.

    ``frame`` is on the reference's pixel grid (float32, with the reference's WCS); pixels with
    no data after the shift are masked and set to 0. ``info`` holds the 3x3 ``matrix``
    (homogeneous, pixels), ``dx``, ``dy`` (px), ``rotation_deg``, ``scale`` and
    ``matched_stars``.
    """

    frame: CCDData
    info: dict


def _warp(ccd: CCDData, tf, shape, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Resampled data (planes kept) and the mask of pixels without data."""
    planes = ccd.data[None] if ccd.data.ndim == 2 else ccd.data
    # skimage's warp, as astroalign.apply_transform uses, called directly so the
    # interpolation order is a parameter (astroalign's is fixed).
    warp = dict(inverse_map=tf.inverse, output_shape=shape, order=order,
                mode="constant", cval=np.nan, preserve_range=True)
    if ccd.data.ndim == 2 and ccd.header.get("BAYERPAT") is not None:
        # A CFA mosaic: each colour's sub-plane is warped on its own so colours never mix
        # and the pattern stays valid (starloom.astro.cfa.warp_cfa).
        from .cfa import warp_cfa
        data = warp_cfa(ccd.data, tf.inverse, order=order, output_shape=shape)[None]
    else:
        data = np.stack([warp_image(np.asarray(p, np.float64), **warp) for p in planes])
    data = data.astype(np.float32)
    footprint = ~np.isfinite(data).all(axis=0)
    if ccd.mask is not None:
        m2d = ccd.mask if ccd.mask.ndim == 2 else ccd.mask.any(0)
        footprint |= warp_image(m2d.astype(np.float64), **{**warp, "order": 1, "cval": 1.0}) > 0.01
    data = data[0] if ccd.data.ndim == 2 else data
    mask = np.broadcast_to(footprint, data.shape).copy()
    return np.where(mask, 0.0, data).astype(np.float32), mask


def star_align(ccd: CCDData, reference: CCDData, *, name: str = "frame",
               max_control_points: int = 50, detection_sigma: float = 5.0, min_area: int = 5,
               interpolation: str = "bicubic") -> Alignment:
    """Align ``ccd`` to ``reference`` by matching star asterisms (astroalign) and resampling.

    Parameters
    ----------
    ccd, reference : CCDData
        Frames with the same ``(ny, nx)`` (planar RGB ``(3, ny, nx)`` allowed); stars are
        matched on their :func:`detection_image`.
    name : str
        The frame's name, for messages.
    max_control_points, detection_sigma, min_area
        astroalign's ``find_transform`` parameters: brightest stars used, detection threshold
        in background sigma, minimum star area in pixels.
    interpolation : {"bilinear", "bicubic", "quintic"}
        Spline order 1, 3 or 5 of the resampling.

    Returns
    -------
    Alignment

    Raises
    ------
    StarloomError
        The shapes differ, or no star match was found (names the frame).
    """
    if ccd.shape[-2:] != reference.shape[-2:]:
        raise StarloomError(f"frame '{name}' has shape {ccd.shape}, reference {reference.shape}")
    try:
        tf, (src, _) = astroalign.find_transform(
            detection_image(ccd), reference_detection_image(reference),
            max_control_points=max_control_points, detection_sigma=detection_sigma,
            min_area=min_area)
    except (astroalign.MaxIterError, ValueError) as e:
        raise StarloomError(f"frame '{name}': no star match with the reference ({e})") from None
    data, mask = _warp(ccd, tf, reference.shape[-2:], INTERPOLATION_ORDER[interpolation])
    frame = CCDData(data, unit=ccd.unit, mask=mask, meta=ccd.header.copy(), wcs=reference.wcs)
    info = {"matrix": tf.params.tolist(), "dx": float(tf.translation[0]),
            "dy": float(tf.translation[1]), "rotation_deg": float(np.degrees(tf.rotation)),
            "scale": float(tf.scale), "matched_stars": int(len(src))}
    return Alignment(frame, info)
