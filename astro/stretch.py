"""Display stretches, preview thumbnails and PNG writing.

Stretches are the astropy.visualization intervals and stretches
(https://docs.astropy.org/en/stable/visualization/normalization.html); PNG files are written
with pypng.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import png

from .fileio import atomic_write

__all__ = ["STRETCH_METHODS", "stretch", "write_png", "thumbnail"]

STRETCH_METHODS = ("linear", "asinh", "zscale", "histeq")


def _check_image(image: np.ndarray, name: str) -> None:
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[0] == 3)):
        raise ValueError(f"{name} must be 2-D (ny, nx) or planar RGB (3, ny, nx), "
                         f"got shape {image.shape}")


def stretch(data, method="asinh", *, percentile_low=0.25, percentile_high=99.75, asinh_a=0.1,
            mask=None) -> np.ndarray:
    """Map an image to [0, 1] for display.

    Methods (astropy.visualization, "Image stretching and normalization"):

    - ``'linear'``: AsymmetricPercentileInterval(percentile_low, percentile_high), LinearStretch;
    - ``'asinh'``: the same interval, then AsinhStretch(a=asinh_a);
    - ``'zscale'``: ZScaleInterval (the IRAF zscale algorithm), LinearStretch;
    - ``'histeq'``: the percentile interval, then HistEqStretch built from the valid pixels.

    Parameters
    ----------
    data : array_like
        Image of shape ``(ny, nx)`` or planar RGB ``(3, ny, nx)``, any real dtype, any unit. For
        RGB one interval is computed from the pixels of all three channels together and applied
        to each, so the colour balance of the input is kept.
    method : {'linear', 'asinh', 'zscale', 'histeq'}
        Stretch to apply.
    percentile_low, percentile_high : float
        Percentiles (0-100) of the valid pixels mapped to 0 and 1, for 'linear', 'asinh' and
        'histeq'.
    asinh_a : float
        The ``a`` parameter of AsinhStretch (the transition from linear to logarithmic, in the
        normalised [0, 1] scale), > 0.
    mask : array_like of bool, optional
        True for bad pixels, shape ``(ny, nx)`` (applied to every channel) or the shape of
        ``data``. A masked array's own mask is added to it.

    Returns
    -------
    numpy.ndarray
        float32 array of the shape of ``data`` with values in [0, 1]. Masked and non-finite
        pixels are excluded from the interval and drawn as 0. If no pixel is valid, or all valid
        pixels are equal, the result is all zeros.

    Raises
    ------
    ValueError
        If ``method`` is unknown (the message lists the valid ones), ``data`` or ``mask`` has the
        wrong shape, the percentiles are not ``0 <= low < high <= 100`` or ``asinh_a <= 0``.
    """
    if method not in STRETCH_METHODS:
        raise ValueError(f"unknown stretch method {method!r}; valid methods: "
                         f"{', '.join(STRETCH_METHODS)}")
    if not 0 <= percentile_low < percentile_high <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= percentile_low < percentile_high <= 100, "
                         f"got {percentile_low}, {percentile_high}")
    if not asinh_a > 0:
        raise ValueError(f"asinh_a must be > 0, got {asinh_a}")
    bad = np.ma.getmaskarray(data)
    values = np.asarray(np.ma.getdata(data), dtype=np.float64)
    _check_image(values, "data")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape not in (values.shape, values.shape[-2:]):
            raise ValueError(f"mask shape {mask.shape} does not match data shape {values.shape}")
        bad = bad | mask
    bad = np.broadcast_to(bad, values.shape) | ~np.isfinite(values)
    valid = values[~bad]
    out = np.zeros(values.shape, dtype=np.float32)
    if valid.size == 0:
        return out
    # imported where used: astropy.visualization costs ~0.1 s of every command's startup
    from astropy.visualization import (AsinhStretch, AsymmetricPercentileInterval,
                                       HistEqStretch, LinearStretch, ManualInterval,
                                       ZScaleInterval)

    if method == "zscale":
        vmin, vmax = ZScaleInterval().get_limits(valid)
    else:
        vmin, vmax = AsymmetricPercentileInterval(percentile_low, percentile_high).get_limits(valid)
    if not vmax > vmin:
        return out
    interval = ManualInterval(vmin, vmax)
    if method == "asinh":
        stretcher = AsinhStretch(a=asinh_a)
    elif method == "histeq":
        stretcher = HistEqStretch(interval(valid, clip=True))
    else:
        stretcher = LinearStretch()
    result = stretcher(interval(np.where(bad, vmin, values), clip=True), clip=True)
    out[...] = np.where(bad, 0.0, np.clip(result, 0.0, 1.0))
    return out


def write_png(path, image01, bit_depth=8) -> Path:
    """Write a [0, 1] image as a grayscale or RGB PNG.

    FITS stores row 0 at the bottom of the image, PNG stores the top row first, so rows are
    flipped: array row 0 becomes the bottom row of the PNG, and the picture looks as it does in
    DS9 or matplotlib ``imshow(origin='lower')``.

    Parameters
    ----------
    path : str or os.PathLike
        Output file. It is written to a temporary file in the same folder and renamed over
        ``path`` (``os.replace``), so readers never see a partial file.
    image01 : array_like
        float array of shape ``(ny, nx)`` (grayscale) or planar RGB ``(3, ny, nx)``, values in
        [0, 1]; values outside are clipped and NaN is written as 0.
    bit_depth : {8, 16}
        Bits per sample; a value v is stored as ``round(v * (2**bit_depth - 1))``.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``bit_depth`` is not 8 or 16 or the image has the wrong shape.
    OSError
        If the folder cannot be written.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    image = np.asarray(image01, dtype=np.float64)
    _check_image(image, "image01")
    top = 2**bit_depth - 1
    levels = np.round(np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0) * top)
    levels = levels.astype(np.uint8 if bit_depth == 8 else np.uint16)
    if levels.ndim == 3:
        levels = np.moveaxis(levels, 0, -1)  # planar -> interleaved, as PNG rows are RGBRGB...
    rows = levels[::-1].reshape(levels.shape[0], -1)
    writer = png.Writer(width=levels.shape[1], height=levels.shape[0],
                        greyscale=levels.ndim == 2, bitdepth=bit_depth)
    path = Path(path)
    with atomic_write(path, "wb") as f:
        writer.write(f, rows)
    return path


def thumbnail(data, max_size=256) -> np.ndarray:
    """Block-average an image so its larger side is at most ``max_size`` pixels.

    Parameters
    ----------
    data : array_like
        Image ``(ny, nx)`` or planar RGB ``(3, ny, nx)``; NaN pixels are ignored in the averages.
    max_size : int
        Largest allowed side of the result, >= 1.

    Returns
    -------
    numpy.ndarray
        float32 array. With integer factor ``f = ceil(max(ny, nx) / max_size)`` each output pixel
        is the NaN-ignoring mean of an ``f x f`` block (partial blocks at the top and right edges
        average what they hold), giving ``(ceil(ny/f), ceil(nx/f))``; blocks with no finite pixel
        are NaN. If the image already fits, a float32 copy is returned.

    Raises
    ------
    ValueError
        If ``max_size < 1`` or the image has the wrong shape.
    """
    if int(max_size) != max_size or max_size < 1:
        raise ValueError(f"max_size must be an integer >= 1, got {max_size!r}")
    image = np.asarray(data, dtype=np.float64)
    _check_image(image, "data")
    factor = -(-max(image.shape[-2:]) // int(max_size))
    if factor <= 1:
        return image.astype(np.float32)
    block = (factor, factor) if image.ndim == 2 else (1, factor, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks: NaN is the answer
        from skimage.measure import block_reduce  # imported where used (startup time)

        small = block_reduce(image, block_size=block, func=np.nanmean, cval=np.nan)
    return small.astype(np.float32)
