"""Per-frame statistics of a stack (background levels for normalization, noise for weights)
and the stack's rejection map (how many values each pixel lost, as an image and a picture)."""
from __future__ import annotations

import numpy as np

from .frames import FrameSeries


def frame_statistics(frames: FrameSeries, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Background level and noise of every frame: sigma-clipped median and standard deviation.

    Parameters
    ----------
    frames : FrameSeries
        Frames, read one at a time; masked pixels are left out.
    progress : callable(done, total), optional
        Called after each frame.

    Returns
    -------
    background, noise : ndarray, shape (n_frames,), float32
        ``astropy.stats.sigma_clipped_stats`` (3 sigma, 5 iterations) median and standard
        deviation, in the frames' unit.
    """
    from astropy.stats import sigma_clipped_stats  # imported where used (startup time)

    n = len(frames)
    med, std = np.zeros(n, np.float32), np.ones(n, np.float32)
    for i, ccd in enumerate(frames):
        _, med[i], std[i] = sigma_clipped_stats(ccd.data, mask=ccd.mask, sigma=3.0, maxiters=5)
        if progress is not None:
            progress(i + 1, n)
    return med, std


def noise_weights(noise: np.ndarray) -> np.ndarray:
    """Inverse-variance weights ``1 / sigma**2`` (float64) of frames of noise ``sigma``."""
    return 1.0 / np.maximum(noise.astype(np.float64), 1e-12) ** 2


def rejection_map_image(rejected: np.ndarray, n_frames: int, method: str):
    """The rejection map as an image: how many values each pixel lost to rejection.

    Parameters
    ----------
    rejected : numpy.ndarray of uint16, shape (2, ...)
        Values rejected below (``[0]``) and above (``[1]``) the kept ones per pixel, as
        ``CombineResult.rejected`` of :func:`starloom.astro.combiner.combine_bands`.
    n_frames : int
        Frames stacked (written as NCOMBINE).
    method : str
        The rejection method (written as REJECT).

    Returns
    -------
    astropy.nddata.CCDData
        uint16 data of the frame shape, ``rejected[0] + rejected[1]``, unit ``count``; the
        header carries REJECT, NCOMBINE and the totals REJLOW / REJHIGH.
    """
    from astropy import units as u
    from astropy.io import fits
    from astropy.nddata import CCDData

    header = fits.Header()
    header["REJECT"] = (method, "pixel rejection method of the stack")
    header["NCOMBINE"] = (int(n_frames), "number of frames combined")
    header["REJLOW"] = (int(rejected[0].sum(dtype=np.uint64)), "values rejected low")
    header["REJHIGH"] = (int(rejected[1].sum(dtype=np.uint64)), "values rejected high")
    # each pixel loses at most n_frames <= 32767 values: the uint16 sum cannot overflow
    return CCDData(np.add(rejected[0], rejected[1], dtype=np.uint16), unit=u.count, meta=header)


def rejection_map_rgb(rejected: np.ndarray, max_pixels: int = 2**18) -> np.ndarray:
    """A picture of the rejection map: red = values rejected high (satellite and aircraft
    trails, hot pixels, cosmic rays), blue = rejected low (cold pixels, dust shadows).

    Parameters
    ----------
    rejected : numpy.ndarray, shape (2, ny, nx) or (2, nc, ny, nx)
        Low and high rejection counts per pixel (colour planes are summed).
    max_pixels : int
        Larger maps are reduced by the smallest integer factor that brings them to at most this
        many pixels, each output pixel the maximum of its block, so a single rejected value
        stays visible (and the PNG stays quick to write: the stack node writes one every run).

    Returns
    -------
    numpy.ndarray of float32, shape (3, ny', nx')
        Planar RGB in [0, 1] for :func:`starloom.astro.stretch.write_png`: each channel is
        ``sqrt(count / max_count)`` (square root so that one rejected value stays visible when
        some pixels lost many).
    """
    counts = rejected.sum(axis=1) if rejected.ndim == 4 else rejected
    ny, nx = counts.shape[-2:]
    f = int(np.ceil(np.sqrt(ny * nx / max_pixels)))  # the reduction factor
    if f > 1:
        pooled = np.zeros((2, -(-ny // f), -(-nx // f)), counts.dtype)
        for dy in range(f):  # strided maxima: much faster than a reshaped max over two axes
            for dx in range(f):
                part = counts[:, dy::f, dx::f]
                view = pooled[:, :part.shape[1], :part.shape[2]]
                np.maximum(view, part, out=view)
        counts = pooled
    counts = counts.astype(np.float32)
    top = max(float(counts.max(initial=0.0)), 1.0)
    low, high = np.sqrt(counts / top)
    return np.stack([high, np.zeros_like(high), low])


def rejection_summary(rejected: np.ndarray, n_frames: int) -> dict:
    """Numbers of a rejection map for a run's diagnostics (JSON-able).

    Parameters
    ----------
    rejected : numpy.ndarray of uint16, shape (2, ...)
        Low and high rejection counts per pixel.
    n_frames : int
        Frames stacked.

    Returns
    -------
    dict
        ``rejected_low`` / ``rejected_high``: values rejected below / above, as fractions of
        all ``n_frames x pixels`` values; ``pixels_with_rejection``: fraction of pixels that
        lost at least one value; ``max_rejected``: the most values one pixel lost.
    """
    lost = np.add(rejected[0], rejected[1], dtype=np.uint16)
    total = max(int(n_frames) * lost.size, 1)
    return {"rejected_low": int(rejected[0].sum(dtype=np.uint64)) / total,
            "rejected_high": int(rejected[1].sum(dtype=np.uint64)) / total,
            "pixels_with_rejection": float(np.count_nonzero(lost)) / max(lost.size, 1),
            "max_rejected": int(lost.max(initial=0))}
