"""Reading and writing frames: FITS through astropy, JPEG/PNG/TIFF through Pillow.

Real camera software writes headers that break the FITS standard in small ways (a decimal comma
in ``EXPTIME``, numbers stored as strings, no ``IMAGETYP`` at all). This module repairs what can be
repaired when reading, tells the user about each repair with a :class:`HeaderRepairWarning`, and
never writes to an input file. Every read failure is a
:class:`~starloom.astro.errors.FrameReadError` naming the file.

Conventions: the FITS Standard version 4.0 (IAU FITS Working Group, 2018; "FITS 4.0" below),
astropy's ``CCDData`` FITS layout (``MASK`` and ``UNCERT`` image
extensions, ``UTYPE`` naming the uncertainty class; see the astropy.nddata "CCDData" docs).
"""
from __future__ import annotations

import re
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import astropy.units as u
from astropy.io import fits
from astropy.io.fits.verify import VerifyError, VerifyWarning
from astropy.nddata import (CCDData, InverseVariance, StdDevUncertainty,
                            VarianceUncertainty)
from astropy.wcs import WCS, FITSFixedWarning

from .errors import FrameReadError, FrameWriteError, HeaderRepairWarning
from .fileio import atomic_write
from .keywords import FRAME_KEYWORDS, FRAME_TYPES

__all__ = [
    "FRAME_KEYWORDS", "FRAME_TYPES", "HeaderRepairWarning", "FrameWriteError",
    "normalize_imagetyp", "infer_frame_type", "read_header", "frame_metadata",
    "read_frame", "write_frame", "read_image_any",
]

_FLOAT_KEYS = ("EXPTIME", "GAIN", "EGAIN", "CCD-TEMP", "SET-TEMP", "OFFSET", "FOCALLEN", "AIRMASS")
_INT_KEYS = ("XBINNING", "YBINNING")

# IMAGETYP spellings (lower case, separators as single spaces, a trailing "frame" and a leading
# "master" removed) seen from MaxIm DL, SGP, N.I.N.A., KStars/INDI, ASIAIR, DSS and IRAF.
_IMAGETYP_WORDS = {
    "light": "light", "lights": "light", "object": "light", "science": "light",
    "bias": "bias", "biases": "bias", "zero": "bias", "offset": "bias",
    "dark": "dark", "darks": "dark",
    # A dark flat is a dark frame (shutter closed) exposed as long as the flats; it is matched
    # to the flats by EXPTIME like any other dark, so it is a "dark" here.
    "darkflat": "dark", "darkflats": "dark", "dark flat": "dark", "dark flats": "dark",
    "flatdark": "dark", "flatdarks": "dark", "flat dark": "dark", "flat darks": "dark",
    "flat": "flat", "flats": "flat", "flat field": "flat", "flatfield": "flat",
    "sky flat": "flat", "skyflat": "flat", "dome flat": "flat", "domeflat": "flat",
    "twilight flat": "flat",
}
# Words trusted in file and folder names. "offset", "zero" and "object" are left out: file names
# such as "Light_gain120_offset30_0001.fit" carry camera settings, not frame types.
_NAME_WORDS = {w: t for w, t in _IMAGETYP_WORDS.items() if w not in ("offset", "zero", "object")}
_NAME_PARENTS = 3  # folder levels above the file searched by infer_frame_type

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([ED][+-]?\d+)?", re.IGNORECASE)
_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2},\d{3}")
_PILLOW_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
# Keywords that describe the stored array, not the frame; astropy sets them from the data.
_STORAGE_KEYS = ("BZERO", "BSCALE", "BLANK", "CHECKSUM", "DATASUM", "XTENSION", "PCOUNT",
                 "GCOUNT", "EXTNAME", "EXTVER")


def normalize_imagetyp(value) -> str | None:
    """Map an ``IMAGETYP`` (or ``FRAME``) header value to one of :data:`FRAME_TYPES`.

    Parameters
    ----------
    value : str or None
        The header value, e.g. ``'Light Frame'``, ``'BIAS'``, ``'Zero'`` (IRAF), ``'Offset'``
        (DeepSkyStacker), ``'Flat Field'``, ``'Object'``, ``'DARKFLAT'`` (N.I.N.A.).

    Returns
    -------
    str or None
        ``'bias'``, ``'dark'``, ``'flat'`` or ``'light'``; None when the value is empty, not a
        string or not recognised. A dark flat (``'DARKFLAT'``, ``'Flat Dark'``) is ``'dark'``:
        it is a dark frame whose exposure matches the flats, told apart by ``EXPTIME``.
    """
    if not isinstance(value, str):
        return None
    words = re.sub(r"[\s_\-]+", " ", value).strip().lower()
    words = re.sub(r"^master ", "", words)
    words = re.sub(r" frames?$", "", words)
    return _IMAGETYP_WORDS.get(words)


def _name_tokens(name: str) -> list[str]:
    # Split on separators, letter/digit changes and camelCase: "Bias_ASIImg_frame0001" ->
    # bias, asi, img, frame, 0001; "MasterDark" -> master, dark; "darkness" stays whole.
    return [t.lower() for t in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]


def _type_from_name(name: str) -> str | None:
    tokens = _name_tokens(name)
    pairs = {_NAME_WORDS.get(f"{a} {b}") for a, b in zip(tokens, tokens[1:])} - {None}
    if len(pairs) == 1:  # "dark_flat" is one thing, not a dark and a flat
        return pairs.pop()
    found = {_NAME_WORDS.get(t) for t in tokens} - {None}
    return found.pop() if len(found) == 1 else None


def infer_frame_type(path) -> str | None:
    """Guess the frame type from the file name, then from up to 3 parent folder names.

    Names are split into words at separators, letter/digit changes and camelCase humps, and
    whole words are compared (``'Bias_ASIImg_frame0001.fit'`` is bias, ``'dark_10s'`` is dark,
    ``'darkness'`` is nothing). A name holding words of two types (``'flats_and_darks'``) tells
    nothing and the next folder up is tried.

    Parameters
    ----------
    path : str or os.PathLike
        The frame's path; the file need not exist.

    Returns
    -------
    str or None
        One of :data:`FRAME_TYPES`, or None when no name matches.
    """
    path = Path(path)
    # Suffix words ("fit", "fits", "fz") never name a type, so whole names are searched.
    names = [path.name] + [p.name for p in path.parents][:_NAME_PARENTS]
    for name in names:
        kind = _type_from_name(name)
        if kind:
            return kind
    return None


def _parse_number(value):
    """int or float from a header value (a decimal comma accepted), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _THOUSANDS.fullmatch(text):  # "1,000" could be a thousand or one: refuse to guess
        return None
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    if not _NUMBER.fullmatch(text):
        return None
    text = text.upper().replace("D", "E")  # FITS allows a D exponent (FITS 4.0 section 4.2.4)
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)


def _repair_header(header: fits.Header, path) -> fits.Header:
    """Copy of ``header`` with fixable cards fixed and numeric strings converted; warns each."""
    notes = {}  # card index -> astropy's words on what it fixed
    drop = []
    # astropy fixes a bad card on first access and says so with VerifyWarnings; record them per
    # card so that one HeaderRepairWarning per key can name the file and the key. (Like all
    # catch_warnings use before Python 3.14, this swaps process-wide warning state briefly.)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VerifyWarning)
        for i, card in enumerate(header.cards):
            n = len(caught)
            try:
                card.verify("fix")
            except VerifyError:
                drop.append(i)
            words = [str(w.message).strip() for w in caught[n:]
                     if issubclass(w.category, VerifyWarning)]
            words = [w for w in words
                     if not w.startswith(("Verification reported errors", "Note: astropy"))]
            if words:
                notes[i] = " ".join(words)
        repaired = header.copy()
    for w in caught:
        if not issubclass(w.category, VerifyWarning):
            warnings.warn(w.message)
    numeric = set(_FLOAT_KEYS + _INT_KEYS)
    for i, card in enumerate(repaired.cards):
        if i in drop:
            continue
        number = None
        if isinstance(card.value, str) and (card.keyword in numeric or i in notes):
            number = _parse_number(card.value)
        if number is not None:
            old = card.value
            repaired[i] = number
            warnings.warn(HeaderRepairWarning(
                f"{path}: {card.keyword}: value {old!r} "
                f"{'(not FITS standard) ' if i in notes else ''}read as the number {number!r}"))
        elif i in notes:
            warnings.warn(HeaderRepairWarning(f"{path}: {card.keyword}: {notes[i]}"))
    for i in reversed(drop):
        key = repaired.cards[i].keyword
        del repaired[i]
        warnings.warn(HeaderRepairWarning(f"{path}: {key}: card cannot be fixed; removed"))
    return repaired


def _fail(path, what, exc) -> FrameReadError:
    return FrameReadError(path, f"{what} ({type(exc).__name__}: {exc})")


def _open(path) -> fits.HDUList:
    try:
        return fits.open(path, mode="readonly", memmap=False)
    except (OSError, ValueError, TypeError, VerifyError) as exc:
        raise _fail(path, "not a readable FITS file", exc) from exc


def _image_hdu(hdul, path):
    """First HDU holding an image: the primary, an image extension or a compressed image."""
    try:
        for hdu in hdul:
            # CompImageHDU is an ImageHDU only since astropy 6.1.
            is_image = isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))
            if is_image and hdu.header.get("NAXIS", 0):
                return hdu
    except (OSError, ValueError, TypeError, VerifyError, IndexError) as exc:
        raise _fail(path, "corrupt FITS structure", exc) from exc
    raise FrameReadError(path, "no HDU holds an image")


def read_header(path) -> fits.Header:
    """Read the header of the first image HDU of a FITS file, repaired in memory.

    The image HDU is the primary HDU when it has data, else the first image extension or
    tile-compressed image (for which the header of the uncompressed image is returned).
    Repairs, each announced by a :class:`HeaderRepairWarning` naming the file and keyword:
    cards that astropy's ``verify('fix')`` can fix are fixed (e.g. an unquoted
    ``EXPTIME = 6,4E-05`` becomes a string, FITS 4.0 section 4.2); a string value of a numeric
    keyword of :data:`FRAME_KEYWORDS`, or of a card that had to be fixed, is converted to a number
    when it parses (a decimal comma is accepted, ``'6,4E-05'`` -> ``6.4e-05``); cards that cannot
    be fixed are removed. The file is opened read-only and never written.

    Parameters
    ----------
    path : str or os.PathLike
        A FITS file (``.fits``, ``.fit``, ``.fts``, ``.fz`` ...).

    Returns
    -------
    astropy.io.fits.Header
        A repaired copy of the header.

    Raises
    ------
    FrameReadError
        The file is missing, is not FITS, is corrupt or holds no image HDU.
    """
    with _open(path) as hdul:
        hdu = _image_hdu(hdul, path)
        try:
            return _repair_header(hdu.header, path)
        except (ValueError, TypeError, KeyError, VerifyError) as exc:
            raise _fail(path, "unreadable header", exc) from exc


def _text(value) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def frame_metadata(header, path=None) -> dict:
    """The values of :data:`FRAME_KEYWORDS` (and image size) from a header, in plain types.

    Parameters
    ----------
    header : astropy.io.fits.Header or dict-like
        Usually from :func:`read_header`.
    path : str or os.PathLike, optional
        The frame's file, used to infer the frame type when the header does not tell it.

    Returns
    -------
    dict
        Keyed by header keyword. ``IMAGETYP`` is one of :data:`FRAME_TYPES` or None: from
        ``IMAGETYP``, else the INDI/KStars ``FRAME`` keyword, else :func:`infer_frame_type` of
        ``path``. ``EXPTIME`` (s), ``GAIN``, ``EGAIN`` (e-/ADU), ``CCD-TEMP``, ``SET-TEMP``
        (deg C), ``OFFSET``, ``FOCALLEN`` (mm) and ``AIRMASS`` are float; ``XBINNING``,
        ``YBINNING``, ``NAXIS1``, ``NAXIS2``, ``NAXIS3`` are int; the rest are stripped strings.
        A missing, empty or unparseable value is None. ``'path'`` is ``str(path)`` or None.
    """
    meta = {}
    for key in FRAME_KEYWORDS:
        value = header.get(key)
        if key in _FLOAT_KEYS:
            number = _parse_number(value)
            meta[key] = None if number is None else float(number)
        elif key in _INT_KEYS:
            number = _parse_number(value)
            meta[key] = int(number) if number is not None and float(number).is_integer() else None
        else:
            meta[key] = _text(value)
    kind = normalize_imagetyp(header.get("IMAGETYP")) or normalize_imagetyp(header.get("FRAME"))
    if kind is None and path is not None:
        kind = infer_frame_type(path)
    meta["IMAGETYP"] = kind
    for key in ("NAXIS1", "NAXIS2", "NAXIS3"):
        number = _parse_number(header.get(key))
        meta[key] = None if number is None else int(number)
    meta["path"] = None if path is None else str(path)
    return meta


def _unit(header, path) -> u.UnitBase:
    bunit = header.get("BUNIT")
    if not isinstance(bunit, str) or not bunit.strip():
        return u.adu
    text = bunit.strip()
    # Common non-astropy spellings: "ADU", "Counts", "ELECTRONS", "e-".
    for candidate in (text, text.lower(), text.lower().rstrip("s"),
                      "electron" if text.lower() == "e-" else None):
        if candidate:
            try:
                return u.Unit(candidate)
            except ValueError:
                pass
    warnings.warn(HeaderRepairWarning(f"{path}: BUNIT: unit {text!r} not understood; using adu"))
    return u.adu


def _celestial_wcs(header):
    """(header without WCS keywords, WCS) when the header has a celestial WCS, else (header, None)."""
    # CCDData.read's own helper: builds the WCS and removes the keywords it now holds, so that a
    # later change of the WCS cannot leave stale CDi_j/PCi_j/SIP cards behind. Private API.
    from astropy.nddata.ccddata import _generate_wcs_and_update_header
    if header.get("NAXIS") == 3 and "CTYPE1" in header:
        return _planar_celestial_wcs(header)
    with warnings.catch_warnings():
        # wcslib's notes on fixes (RADECSYS -> RADESYS, MJD-OBS from DATE-OBS) are routine.
        warnings.simplefilter("ignore", FITSFixedWarning)
        stripped, wcs = _generate_wcs_and_update_header(header)
    if wcs is None or not wcs.has_celestial:
        return header, None
    # The helper leaves the old CROTAi cards, which would then contradict the PCi_j written back.
    for key in ("CROTA1", "CROTA2"):
        stripped.remove(key, ignore_missing=True)
    return stripped, wcs


def _planar_celestial_wcs(header):
    """The 2-D celestial WCS of a planar RGB (NAXIS3 = 3) image.

    astropy's helper builds a 3-axis WCS there, which SIP distortion does not allow; the colour
    planes share one sky projection, so the first two axes are the WCS.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, naxis=2, relax=True)
    if not wcs.has_celestial:
        return header, None
    stripped = header.copy()
    for key in list(wcs.to_header(relax=True)) + ["CROTA1", "CROTA2"]:
        stripped.remove(key, ignore_missing=True, remove_all=True)
    for key in list(stripped):
        if key.split("_")[0] in ("A", "B", "AP", "BP") and "_" in key:
            stripped.remove(key, ignore_missing=True, remove_all=True)
    return stripped, wcs


def _uncertainty(hdul, dtype):
    if "UNCERT" not in hdul:
        return None
    hdu = hdul["UNCERT"]
    kinds = {"StdDevUncertainty": StdDevUncertainty, "VarianceUncertainty": VarianceUncertainty,
             "InverseVariance": InverseVariance}
    kind = kinds.get(hdu.header.get("UTYPE", "StdDevUncertainty"))
    if kind is None:
        raise ValueError(f"UNCERT extension has unknown UTYPE {hdu.header['UTYPE']!r}")
    unc = kind(np.asarray(hdu.data, dtype=dtype))
    return unc if kind is StdDevUncertainty else unc.represent_as(StdDevUncertainty)


def read_frame(path, header_updates=None, dtype=np.float32) -> CCDData:
    """Read the first image of a FITS file as a ``CCDData``.

    Integer data are scaled by ``BZERO``/``BSCALE`` (FITS 4.0 section 4.4.2.5) by astropy, so
    unsigned 16-bit data (``BITPIX = 16``, ``BZERO = 32768``) keep their exact values 0..65535.

    Parameters
    ----------
    path : str or os.PathLike
        A FITS file; the image is found as in :func:`read_header`.
    header_updates : dict, optional
        Keyword -> value set on the repaired header after reading, e.g. ``{"IMAGETYP": "dark"}``
        when the user says what the frame is.
    dtype : numpy dtype, optional
        Data type of the result for 8- and 16-bit integer and ``-32`` float data. Data stored as
        32- or 64-bit integers or ``-64`` floats are float64 whatever is asked, so no value is
        rounded.

    Returns
    -------
    astropy.nddata.CCDData
        ``data`` of shape (ny, nx), or (3, ny, nx) for planar RGB (``NAXIS3 = 3``); a length-1
        third axis is dropped. ``header`` repaired as in :func:`read_header` with WCS keywords
        moved into ``wcs`` when they describe a celestial WCS. ``unit`` from ``BUNIT`` (case
        ignored), ``adu`` when absent or not understood (with a :class:`HeaderRepairWarning`).
        ``mask`` (bool) and ``uncertainty`` (``StdDevUncertainty``) from the ``MASK`` and
        ``UNCERT`` extensions written by :func:`write_frame` or ``CCDData.write``.

    Raises
    ------
    FrameReadError
        The file is missing, not FITS, truncated or corrupt, holds no image, or the image has a
        shape other than 2-D or 3-D with 1 or 3 planes.
    """
    with _open(path) as hdul:
        hdu = _image_hdu(hdul, path)
        try:
            header = _repair_header(hdu.header, path)
        except (ValueError, TypeError, KeyError, VerifyError) as exc:
            raise _fail(path, "unreadable header", exc) from exc
        bitpix = hdu.header.get("BITPIX")
        out = np.float64 if bitpix in (32, 64, -64) else dtype
        try:
            data = np.asarray(hdu.data, dtype=out)
            mask = np.asarray(hdul["MASK"].data, dtype=bool) if "MASK" in hdul else None
            uncertainty = _uncertainty(hdul, out)
        except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise _fail(path, "image data unreadable (truncated or corrupt file?)", exc) from exc
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if not (data.ndim == 2 or (data.ndim == 3 and data.shape[0] == 3)):
        raise FrameReadError(path, f"image of shape {data.shape} is neither 2-D nor 3-plane RGB")
    header.update(header_updates or {})
    header, wcs = _celestial_wcs(header)
    try:
        return CCDData(data, unit=_unit(header, path), header=header, wcs=wcs, mask=mask,
                       uncertainty=uncertainty)
    except (ValueError, TypeError) as exc:
        raise _fail(path, "mask or uncertainty does not fit the image", exc) from exc


def _output_data(ccd, dtype, path):
    data = np.asarray(ccd.data)
    if not (data.ndim == 2 or (data.ndim == 3 and data.shape[0] == 3)):
        raise FrameWriteError(path, f"data of shape {data.shape} is neither 2-D nor 3-plane RGB")
    if dtype is None:
        # float64 data (e.g. from 32-bit integer frames) stays float64; everything else float32.
        dtype = np.float64 if data.dtype == np.float64 else np.float32
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise FrameWriteError(path, f"unknown dtype {dtype!r}") from exc
    if dtype == np.uint16:
        # NaN has no 16-bit integer value; it is written as 0.
        data = np.clip(np.rint(np.nan_to_num(data, nan=0.0)), 0, 65535).astype(np.uint16)
        return data, np.float32
    if dtype not in (np.float32, np.float64):
        raise FrameWriteError(path, f"dtype {dtype} not supported; use uint16, float32, float64")
    # A copy: astropy byteswaps the array in place while writing, which the caller would see.
    return data.astype(dtype), dtype


def write_frame(ccd, path, dtype=None, history=(), overwrite=True) -> Path:
    """Write a ``CCDData`` to a FITS file atomically.

    The file is written to a temporary name in the same folder and renamed over ``path``
    (:func:`starloom.astro.fileio.atomic_write`), so ``path`` is never seen half written; the
    temporary file is removed
    when anything fails.

    Parameters
    ----------
    ccd : astropy.nddata.CCDData
        Data of shape (ny, nx), or (3, ny, nx) for planar RGB (written with ``NAXIS3 = 3``).
        Its header cards are kept; its WCS goes into the header, its unit into ``BUNIT``, its
        mask into a uint8 image extension ``MASK`` and its uncertainty, as standard deviations,
        into an image extension ``UNCERT`` with ``UTYPE = 'StdDevUncertainty'``.
    path : str or os.PathLike
        The output file; its folder must exist.
    dtype : {None, 'uint16', 'float32', 'float64'}, optional
        Storage type. None: float64 data stay float64 (``BITPIX = -64``), any other data are
        written as float32 (``BITPIX = -32``). ``'uint16'``: rounded and clipped to 0..65535,
        NaN written as 0, stored as ``BITPIX = 16`` with ``BZERO = 32768`` (FITS 4.0 table 11).
    history : iterable of str, optional
        Each string becomes a ``HISTORY`` card (long strings span several cards).
    overwrite : bool, optional
        When False and ``path`` exists, raise ``FileExistsError``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FrameWriteError
        Data neither 2-D nor (3, ny, nx), unsupported dtype, or astropy cannot turn the data, header or uncertainty into FITS.
    OSError
        From the file system (``FileExistsError`` when ``overwrite`` is False and the file exists).
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(17, "file exists and overwrite is False", str(path))
    data, extension_dtype = _output_data(ccd, dtype, path)
    try:
        # Header.copy: fits.Header(header) would share the caller's Card objects.
        header = (ccd.header.copy() if isinstance(ccd.header, fits.Header)
                  else fits.Header(ccd.header))
        for key in _STORAGE_KEYS:
            header.remove(key, ignore_missing=True, remove_all=True)
        for line in history:
            header.add_history(str(line))
        # FITS 4.0 section 4.4.2.1: DATE is the UTC time the HDU was created.
        header["DATE"] = (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                          "UTC date this file was written")
        out = CCDData(data, unit=ccd.unit, header=header, wcs=ccd.wcs, mask=ccd.mask)
        hdul = out.to_hdu(hdu_mask="MASK", hdu_uncertainty=None, wcs_relax=True)
        if ccd.uncertainty is not None:
            unc = ccd.uncertainty
            if not isinstance(unc, StdDevUncertainty):
                unc = unc.represent_as(StdDevUncertainty)
            hdr = fits.Header([("UTYPE", "StdDevUncertainty")])
            hdul.append(fits.ImageHDU(np.array(unc.array, dtype=extension_dtype), hdr,
                                      name="UNCERT"))
    except (ValueError, TypeError, AttributeError, VerifyError) as exc:
        raise FrameWriteError(path, f"cannot convert to FITS ({type(exc).__name__}: {exc})") from exc
    try:
        with atomic_write(path, "wb", fsync=True) as f:
            hdul.writeto(f, output_verify="fix")
    except VerifyError as exc:
        raise FrameWriteError(path, f"header not writable as FITS ({exc})") from exc
    return path


def is_picture(path) -> bool:
    """Whether ``path`` names a JPEG, PNG or TIFF picture (read by Pillow) rather than FITS."""
    return Path(path).suffix.lower() in _PILLOW_SUFFIXES


def read_image_any(path) -> CCDData:
    """Read a FITS file with :func:`read_frame`, or a JPEG, PNG or TIFF file with Pillow.

    Parameters
    ----------
    path : str or os.PathLike
        ``.jpg``, ``.jpeg``, ``.png``, ``.tif``, ``.tiff`` (any case) are read with Pillow;
        anything else as FITS.

    Returns
    -------
    astropy.nddata.CCDData
        For Pillow images, unit ``adu`` and data float32: shape (ny, nx) for greyscale images
        (8-, 16-bit or float values as stored), shape (3, ny, nx) planar RGB for colour ones
        (palette and alpha images are converted to RGB; alpha is dropped). EXIF orientation is
        applied, then rows are flipped so that row 0 is the bottom of the picture, as FITS
        images are usually displayed (first pixel at lower left: DS9, matplotlib
        ``origin='lower'``); the header says so with ``ROWORDER = 'BOTTOM-UP'``.

    Raises
    ------
    FrameReadError
        The file is missing or cannot be decoded.
    """
    path = Path(path)
    if path.suffix.lower() not in _PILLOW_SUFFIXES:
        return read_frame(path)
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("1", "LA"):
                img = img.convert("L")
            grey = img.mode in ("L", "I", "F") or img.mode.startswith("I;16")
            if not grey:
                img = img.convert("RGB")
            data = np.asarray(img, dtype=np.float32)
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise _fail(path, "not a readable image", exc) from exc
    if data.ndim == 3:
        data = np.moveaxis(data, -1, 0)
    data = np.ascontiguousarray(data[..., ::-1, :])
    header = fits.Header([("ROWORDER", "BOTTOM-UP", "row 0 is the bottom of the picture")])
    return CCDData(data, unit=u.adu, header=header)
