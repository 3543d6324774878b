"""A calibration library: master bias, darks and flats kept for reuse, with a catalogue.

A library is a folder holding each master as a FITS file and one catalogue file,
``catalogue.json``, with a row per master: its defining metadata (frame type, instrument,
binning, gain, offset, set and measured temperature, exposure, filter, date, number of frames,
image size, CFA pattern) and its content key (sha256 of its pixel data). The masters are
stored in a ``masters/`` sub-folder under names made of that metadata and a short id, so a user
can also find them by eye.

Writers (several runs saving masters at once) take an exclusive lock (``filelock``, a lock file
beside the catalogue) around each read-modify-write of the catalogue, and the catalogue is
replaced atomically (:func:`starloom.astro.fileio.write_text_atomic`), so a reader never sees a
half-written catalogue and no writer loses another's rows. The idea and the metadata follow
what WBPP (PixInsight) and Siril match calibration frames on: instrument, binning, gain/offset,
temperature, exposure and filter.

The library folder is, in order: the folder given, the ``STARLOOM_LIBRARY`` environment
variable, or ``library/`` in the user data folder (``platformdirs.user_data_dir("starloom")``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import fits as fitsio
from .errors import StarloomError
from .fileio import write_text_atomic

__all__ = ["MASTER_TYPES", "Master", "Library", "default_library_dir", "content_key",
           "master_record"]

#: Frame types a library stores.
MASTER_TYPES = ("bias", "dark", "flat")
CATALOGUE = "catalogue.json"
FORMAT = "starloom.library"
FORMAT_VERSION = 1
#: Seconds a writer waits for the catalogue lock before giving up with an error.
LOCK_TIMEOUT = 60.0


def default_library_dir() -> Path:
    """``STARLOOM_LIBRARY`` if set, else ``<user data folder>/starloom/library``."""
    env = os.environ.get("STARLOOM_LIBRARY")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("starloom")) / "library"


def content_key(data: np.ndarray) -> str:
    """sha256 hex digest of an image's pixel values as float32 (dtype and shape included)."""
    arr = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
    h = hashlib.sha256(f"float32{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


@dataclass
class Master:
    """One catalogue row: a stored master and the metadata it is matched on.

    Attributes
    ----------
    id : str
        First 12 hex digits of ``key``; unique in a library (the same data is stored once).
    key : str
        Content key, :func:`content_key` of the pixel data.
    type : {'bias', 'dark', 'flat'}
    file : str
        FITS file, relative to the library folder.
    instrument : str or None
        ``INSTRUME``.
    xbinning, ybinning : int or None
    gain, offset : float or None
        ``GAIN`` and ``OFFSET`` as the camera driver writes them (settings, not e-/ADU).
    set_temp, ccd_temp : float or None
        Set point and measured sensor temperature, deg C (``SET-TEMP``, ``CCD-TEMP``).
    exptime : float or None
        Exposure, s (``EXPTIME``).
    filter : str or None
        ``FILTER``.
    date_obs : str or None
        ``DATE-OBS`` of the master (its first frame), ISO 8601.
    n_frames : int or None
        Frames combined (``NCOMBINE``).
    naxis1, naxis2 : int
        Image width and height, px.
    bayerpat : str or None
        ``BAYERPAT`` when the master is a CFA mosaic.
    bias_subtracted : bool
        For darks: the master bias was subtracted, so the dark can be scaled by exposure.
    added : str
        When it entered the library (UTC, ISO 8601).
    """

    id: str
    key: str
    type: str
    file: str
    instrument: str | None = None
    xbinning: int | None = None
    ybinning: int | None = None
    gain: float | None = None
    offset: float | None = None
    set_temp: float | None = None
    ccd_temp: float | None = None
    exptime: float | None = None
    filter: str | None = None
    date_obs: str | None = None
    n_frames: int | None = None
    naxis1: int = 0
    naxis2: int = 0
    bayerpat: str | None = None
    bias_subtracted: bool = False
    added: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(
        timespec="seconds"))

    @classmethod
    def from_json(cls, d: dict) -> "Master":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        """One line: type, exposure, filter, temperature, gain/offset, instrument, date."""
        parts = [self.type]
        if self.type == "dark" and self.exptime is not None:
            parts.append(f"{self.exptime:g} s")
        if self.type == "flat":
            parts.append(f"filter {self.filter or '-'}")
        if self.ccd_temp is not None:
            parts.append(f"{self.ccd_temp:g} C")
        parts.append(f"gain {_fmt(self.gain)} offset {_fmt(self.offset)}")
        parts.append(f"bin {_fmt(self.xbinning)}x{_fmt(self.ybinning)}")
        parts.append(f"{self.naxis1}x{self.naxis2}")
        parts.append(self.instrument or "unknown instrument")
        parts.append((self.date_obs or "undated")[:10])
        return ", ".join(parts)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _is_bias_subtracted(header) -> bool:
    # ccdproc.subtract_bias records itself in a 'subbias' card (add_keyword default); Starloom
    # also accepts its own BIASSUB flag for masters written elsewhere.
    keys = {str(k).upper() for k in header}
    return "SUBBIAS" in keys or bool(header.get("BIASSUB", False))


def master_record(ccd, frame_type: str, file: str = "") -> Master:
    """The catalogue row of a master (its metadata read from its header).

    Parameters
    ----------
    ccd : astropy.nddata.CCDData
        The master, 2-D (a CFA mosaic or mono) or planar RGB ``(3, ny, nx)``.
    frame_type : {'bias', 'dark', 'flat'}
    file : str
        Its file in the library, relative to the library folder.

    Returns
    -------
    Master

    Raises
    ------
    StarloomError
        ``frame_type`` is not one of :data:`MASTER_TYPES`, or a dark has no ``EXPTIME``.
    """
    if frame_type not in MASTER_TYPES:
        raise StarloomError(f"frame type {frame_type!r} is not one of {', '.join(MASTER_TYPES)}")
    header = ccd.header
    meta = fitsio.frame_metadata(header)
    if frame_type == "dark" and meta["EXPTIME"] is None:
        raise StarloomError("master dark has no EXPTIME header key: cannot be matched by exposure")
    key = content_key(ccd.data)
    ncomb = header.get("NCOMBINE")
    return Master(
        id=key[:12], key=key, type=frame_type, file=file, instrument=meta["INSTRUME"],
        xbinning=meta["XBINNING"], ybinning=meta["YBINNING"], gain=meta["GAIN"],
        offset=meta["OFFSET"], set_temp=meta["SET-TEMP"], ccd_temp=meta["CCD-TEMP"],
        exptime=meta["EXPTIME"], filter=meta["FILTER"], date_obs=meta["DATE-OBS"],
        n_frames=int(ncomb) if isinstance(ncomb, (int, np.integer)) else None,
        naxis1=int(ccd.shape[-1]), naxis2=int(ccd.shape[-2]), bayerpat=meta["BAYERPAT"],
        bias_subtracted=frame_type == "dark" and _is_bias_subtracted(header))


def _slug(text) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-") or "x"


class Library:
    """A calibration library folder (see the module docstring).

    Parameters
    ----------
    root : str or os.PathLike, optional
        The library folder; default :func:`default_library_dir`. It is created on the first
        :meth:`add`.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root else default_library_dir()
        self.catalogue = self.root / CATALOGUE

    def __repr__(self) -> str:
        return f"Library({str(self.root)!r})"

    def _lock(self):
        from filelock import FileLock

        return FileLock(str(self.root / ".catalogue.lock"), timeout=LOCK_TIMEOUT)

    def masters(self) -> list[Master]:
        """Every catalogue row, oldest first (an empty list for a missing library).

        Raises
        ------
        StarloomError
            The catalogue is not a Starloom library catalogue (names the file).
        """
        if not self.catalogue.exists():
            return []
        try:
            doc = json.loads(self.catalogue.read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT:
                raise ValueError(f"format is {doc.get('format')!r}, not {FORMAT!r}")
            return [Master.from_json(d) for d in doc["masters"]]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StarloomError(f"library catalogue {self.catalogue} is unreadable: {e}") from e

    def _write(self, masters: list[Master]) -> None:
        doc = {"format": FORMAT, "version": FORMAT_VERSION,
               "masters": [asdict(m) for m in masters]}
        write_text_atomic(self.catalogue, json.dumps(doc, indent=1) + "\n")

    def get(self, ident: str) -> Master:
        """The master whose id starts with ``ident`` (at least 4 characters).

        Raises
        ------
        StarloomError
            No master, or several, match ``ident``.
        """
        hits = [m for m in self.masters() if len(ident) >= 4 and m.id.startswith(ident)]
        if len(hits) != 1:
            what = "no master" if not hits else f"{len(hits)} masters"
            raise StarloomError(f"library {self.root}: {what} with id '{ident}' (see 'starloom "
                                f"library list')")
        return hits[0]

    def path(self, master: Master) -> Path:
        """The FITS file of ``master``."""
        return self.root / master.file

    def read(self, master: Master):
        """The master as a CCDData (float32), via :func:`starloom.astro.fits.read_frame`."""
        return fitsio.read_frame(self.path(master))

    def add(self, ccd, frame_type: str, history=()) -> tuple[Master, bool]:
        """Store a master and index it; the same data already stored is not stored again.

        Parameters
        ----------
        ccd : astropy.nddata.CCDData
            The master; written as float32 FITS with its mask and uncertainty.
        frame_type : {'bias', 'dark', 'flat'}
        history : iterable of str
            HISTORY cards for the stored file.

        Returns
        -------
        master : Master
            Its catalogue row.
        added : bool
            False when a master with the same content key was already there.

        Raises
        ------
        StarloomError
            Bad ``frame_type``, a dark without EXPTIME, an unreadable catalogue, or the lock
            not obtained within :data:`LOCK_TIMEOUT` seconds.
        """
        from filelock import Timeout

        record = master_record(ccd, frame_type)
        parts = [record.type, record.instrument or "camera"]
        if record.type == "dark":
            parts.append(f"{record.exptime:g}s")
        if record.type == "flat" and record.filter:
            parts.append(record.filter)
        record.file = f"masters/{'_'.join(_slug(p) for p in parts)}_{record.id}.fits"
        (self.root / "masters").mkdir(parents=True, exist_ok=True)
        try:
            with self._lock():
                existing = self.masters()
                for m in existing:
                    if m.key == record.key and m.type == record.type and self.path(m).exists():
                        return m, False
                fitsio.write_frame(ccd, self.path(record), dtype="float32", history=history)
                self._write([m for m in existing if m.key != record.key] + [record])
        except Timeout as e:
            raise StarloomError(f"library {self.root}: catalogue locked by another process for "
                                f"{LOCK_TIMEOUT:g} s") from e
        return record, True

    def remove(self, ident: str) -> Master:
        """Delete a master's file and its catalogue row; returns the row removed.

        Raises
        ------
        StarloomError
            As :meth:`get`.
        """
        with self._lock():
            master = self.get(ident)
            self._write([m for m in self.masters() if m.id != master.id])
            self.path(master).unlink(missing_ok=True)
        return master
