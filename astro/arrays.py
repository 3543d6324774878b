"""Checks of array inputs shared by the science library."""
from __future__ import annotations

import numpy as np

from .errors import StarloomError


def plane(data, what: str) -> np.ndarray:
    """``data`` as a 2-D float64 array (a copy only when the dtype differs).

    Parameters
    ----------
    data : array_like, shape (ny, nx)
        Image.
    what : str
        Who needs the image, for the message (e.g. ``"photometry"``, ``"node input 'flat'"``).

    Returns
    -------
    numpy.ndarray, shape (ny, nx), float64

    Raises
    ------
    StarloomError
        ``"<what>: a 2-D image is needed, got shape <shape>"`` when ``data`` is not 2-D.
    """
    img = np.asarray(data, dtype=float)
    if img.ndim != 2:
        raise StarloomError(f"{what}: a 2-D image is needed, got shape {img.shape}")
    return img
