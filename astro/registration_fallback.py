"""Registration with a fallback: star matching first, phase correlation when it fails.

A frame's star match (astroalign asterisms, :mod:`.registration`) is *unreliable* when it has
fewer than ``min_matches`` matched stars or its control points miss their transformed
positions by more than ``max_residual`` px (RMS). Then, as tile_compile's registration cascade
does (jeamy/tile_compile, doc/v3/process_flow/phase_1_registration.md: star triangles first,
phase correlation for frames with too few stars, e.g. under cloud), the translation is
measured by DFT cross-correlation (sub-pixel by upsampled DFT, Guizar-Sicairos, Thurman &
Fienup 2008, Opt. Lett. 33, 156: scikit-image ``phase_cross_correlation``) on band-passed
images; unwhitened (``normalization=None``), because whitening as in classic phase correlation
(Kuglin & Hines 1975) lifts fixed-pattern noise (column pattern, hot pixels), which locks onto
a zero shift, above blurred stars (a difference of Gaussians removes sky gradients, as tile_compile's
Laplacian-of-Gaussian pre-filter does). The phase-correlation shift is accepted when the
normalized cross-correlation (NCC) of the shifted band-passed frame with the reference's is at
least ``min_correlation``; otherwise no method registered the frame and it is rejected with
its reason (tile_compile keeps such frames with an identity warp; Starloom drops them rather
than stack a misaligned frame).

Every result carries ``method`` (``star_match``, ``phase_correlation``), ``matched_stars``,
``residual_px``, ``dx``, ``dy`` (px), ``drift_px`` (shift length), ``rotation_deg``, ``scale``
and, for a fallback, ``fallback_reason`` and ``correlation``.
"""
from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData

from .errors import FrameRejected, StarloomError

#: Default reliability thresholds of a star match: tile_compile's ``star_min_inliers`` (6) and
#: its "minimum" registration residual (< 1 px, methodology v3.3.6 section 2.2).
MIN_MATCHES = 6
MAX_RESIDUAL_PX = 1.0
#: Smallest NCC of band-passed images for a cross-correlation shift to be accepted: at the best
#: of all shifts pure noise frames of 10^4 px reach about 0.1-0.2, a field blurred to 10 px
#: FWHM against a sharp reference 0.5-0.7 (measured on simulated frames).
MIN_CORRELATION = 0.3


def bandpass(image: np.ndarray, small: float = 1.0, large: float = 8.0) -> np.ndarray:
    """Difference of Gaussians (sigma ``small`` minus ``large`` px) of a 2-D image, float64.

    Keeps star-sized structure, removes the sky level and gradients (clouds, light pollution);
    source: Marr & Hildreth 1980 (DoG as a Laplacian-of-Gaussian approximation).
    """
    from scipy.ndimage import gaussian_filter
    img = np.asarray(image, dtype=np.float64)
    return gaussian_filter(img, small) - gaussian_filter(img, large)


def ncc(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Normalized cross-correlation (Pearson r) of two equal-shape images over ``valid`` pixels."""
    sel = np.ones(a.shape, bool) if valid is None else valid
    x, y = a[sel], b[sel]
    if x.size < 2:
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


def match_residual(tf, src: np.ndarray, dst: np.ndarray) -> float:
    """RMS distance (px) between ``tf(src)`` and ``dst``, the matched control points."""
    if len(src) == 0:
        return float("nan")
    d = tf(np.asarray(src, float)) - np.asarray(dst, float)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))


def _star_match(mov: np.ndarray, ref: np.ndarray, **kw):
    """astroalign's transform and info, or None and why it failed."""
    import astroalign
    try:
        tf, (src, dst) = astroalign.find_transform(mov, ref, **kw)
    except (astroalign.MaxIterError, ValueError) as e:
        return None, f"no star match ({e})"
    info = {"matrix": tf.params.tolist(), "dx": float(tf.translation[0]),
            "dy": float(tf.translation[1]), "rotation_deg": float(np.degrees(tf.rotation)),
            "scale": float(tf.scale), "matched_stars": len(src),
            "residual_px": round(match_residual(tf, src, dst), 4)}
    return tf, info


def phase_correlation_shift(mov: np.ndarray, ref: np.ndarray, upsample: int = 20) -> tuple:
    """Translation ``(dx, dy)`` (px) taking ``mov`` onto ``ref``, and the NCC it reaches.

    Parameters
    ----------
    mov, ref : ndarray, shape (ny, nx)
        Star images (e.g. :func:`starloom.astro.registration.detection_image`).
    upsample : int
        Sub-pixel precision 1/``upsample`` px (scikit-image ``phase_cross_correlation``).

    Returns
    -------
    (dx, dy, correlation) : tuple of float
        ``mov`` shifted by ``(dx, dy)`` matches ``ref``; ``correlation`` is the NCC of the
        band-passed images after that (integer-rounded) shift, over the overlap.
    """
    from skimage.registration import phase_cross_correlation
    a, b = bandpass(ref), bandpass(mov)
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=upsample, normalization=None)
    sy, sx = (int(round(v)) for v in shift)
    ny, nx = a.shape
    # overlap of ref[y, x] with mov[y - sy, x - sx]
    ra = a[max(sy, 0):ny + min(sy, 0), max(sx, 0):nx + min(sx, 0)]
    mb = b[max(-sy, 0):ny + min(-sy, 0), max(-sx, 0):nx + min(-sx, 0)]
    return float(shift[1]), float(shift[0]), round(ncc(ra, mb), 4)


def _translation(dx: float, dy: float):
    from skimage.transform import SimilarityTransform
    return SimilarityTransform(translation=(dx, dy))


def find_transform_with_fallback(ccd: CCDData, reference: CCDData, *, name: str = "frame",
                                 fallback: str = "phase_correlation",
                                 min_matches: int = MIN_MATCHES,
                                 max_residual: float = MAX_RESIDUAL_PX,
                                 min_correlation: float = MIN_CORRELATION,
                                 max_control_points: int = 50, detection_sigma: float = 5.0,
                                 min_area: int = 5):
    """The transform taking ``ccd`` onto ``reference``: star match, else phase correlation.

    Parameters
    ----------
    ccd, reference : CCDData
        Frames with the same ``(ny, nx)`` (planar ``(nc, ny, nx)`` allowed).
    name : str
        The frame's name, for messages.
    fallback : {"phase_correlation", "none"}
        What to do when the star match fails or is unreliable; with ``"none"`` an unreliable
        match is kept (with its numbers) and only a failed one rejects the frame.
    min_matches : int
        Fewest matched stars of a reliable star match.
    max_residual : float
        Largest RMS control-point residual (px) of a reliable star match.
    min_correlation : float
        Smallest band-passed NCC that accepts a phase-correlation shift.
    max_control_points, detection_sigma, min_area
        astroalign ``find_transform`` parameters.

    Returns
    -------
    tf : skimage.transform.SimilarityTransform
        Maps ``ccd`` pixel coordinates (x, y) to ``reference`` ones.
    info : dict
        See the module docstring.

    Raises
    ------
    FrameRejected
        No method registered the frame; the message gives each method's reason.
    StarloomError
        The shapes differ or ``fallback`` is unknown.
    """
    from .registration import detection_image, reference_detection_image
    if ccd.shape[-2:] != reference.shape[-2:]:
        raise StarloomError(f"frame '{name}' has shape {ccd.shape}, reference {reference.shape}")
    if fallback not in ("phase_correlation", "none"):
        raise StarloomError(f"parameter 'fallback': unknown method '{fallback}'")
    mov, ref = detection_image(ccd), reference_detection_image(reference)
    tf, info = _star_match(mov, ref, max_control_points=max_control_points,
                           detection_sigma=detection_sigma, min_area=min_area)
    if tf is not None:
        problems = []
        if info["matched_stars"] < min_matches:
            problems.append(f"{info['matched_stars']} matched stars < {min_matches}")
        if info["residual_px"] > max_residual:
            problems.append(f"residual {info['residual_px']:.2f} px > {max_residual} px")
        if not problems or fallback == "none":
            info.update(method="star_match", drift_px=round(float(np.hypot(info["dx"], info["dy"])), 4))
            if problems:
                info["unreliable"] = "; ".join(problems)
            return tf, info
        why = "star match unreliable: " + "; ".join(problems)
    else:
        why = info
    if fallback == "none":
        raise FrameRejected(f"frame '{name}': {why}")
    dx, dy, corr = phase_correlation_shift(mov, ref)
    if corr < min_correlation:
        raise FrameRejected(f"frame '{name}': {why}; phase correlation {corr:.3f} < "
                            f"{min_correlation} (no usable structure)")
    tf = _translation(dx, dy)
    stars = info.get("matched_stars", 0) if isinstance(info, dict) else 0
    return tf, {"matrix": tf.params.tolist(), "dx": dx, "dy": dy, "rotation_deg": 0.0,
                "scale": 1.0, "matched_stars": stars, "residual_px": None,
                "method": "phase_correlation", "fallback_reason": why, "correlation": corr,
                "drift_px": round(float(np.hypot(dx, dy)), 4)}


def align_with_fallback(ccd: CCDData, reference: CCDData, *, name: str = "frame",
                        interpolation: str = "bicubic", resample: bool = True, **kw):
    """Register ``ccd`` to ``reference`` (see :func:`find_transform_with_fallback`).

    Parameters
    ----------
    resample : bool
        True: resample onto the reference's pixel grid (pixels without data masked and 0, as
        :func:`starloom.astro.registration.star_align`); False: keep the pixels as they are and
        only record the transform (``REGAPPL = F``), for :mod:`.prewarp` to apply once.
    interpolation : {"bilinear", "bicubic", "quintic"}
        Spline order 1, 3 or 5 of the resampling.
    **kw
        Passed to :func:`find_transform_with_fallback`.

    Returns
    -------
    starloom.astro.registration.Alignment
    """
    from .frames import as_header
    from .prewarp import write_transform_cards
    from .registration import INTERPOLATION_ORDER, Alignment, _warp
    tf, info = find_transform_with_fallback(ccd, reference, name=name, **kw)
    if resample:
        data, mask = _warp(ccd, tf, reference.shape[-2:], INTERPOLATION_ORDER[interpolation])
        frame = CCDData(data, unit=ccd.unit, mask=mask, meta=as_header(ccd.header).copy(), wcs=reference.wcs)
    else:
        frame = CCDData(np.asarray(ccd.data, np.float32), unit=ccd.unit, mask=ccd.mask,
                        meta=as_header(ccd.header).copy(), wcs=ccd.wcs)
    write_transform_cards(frame.header, np.asarray(info["matrix"]), applied=resample,
                          method=info["method"])
    return Alignment(frame, info)
