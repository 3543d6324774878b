"""Per-frame statistics of a stack: background levels for normalization, noise for weights."""
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
