"""A collection of frame files: scan headers, select by header values, order and group.

What ccdproc's ``ImageFileCollection`` does for a folder of FITS files, for a list of files
(FITS or JPEG/PNG/TIFF pictures), giving the references of a lazy
:class:`~starloom.astro.frames.FrameSeries` without reading pixels.
"""
from __future__ import annotations

import fnmatch
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from astropy.table import Table

from . import fits as fitsio
from .fileio import sha256_json
from .frames import FrameRef, FrameSeries

FRAME_TYPES = ("light", "bias", "dark", "flat")


@dataclass
class Collection:
    """The frames selected from a list of files.

    Attributes
    ----------
    series : FrameSeries
        The selected frames, in order (group by group when grouped).
    repairs : dict of str to list of str
        Each kind of header repair (see ``fits.HeaderRepairWarning``) and the files it was made
        in, so a caller can warn once per kind rather than once per file.
    groups : list of dict
        One dict per group (the grouping keywords' values and ``n_frames``); empty if not grouped.
    group_of : list of int
        The group index of each frame of ``series``.
    """

    series: FrameSeries
    repairs: dict[str, list[str]] = field(default_factory=dict)
    groups: list[dict] = field(default_factory=list)
    group_of: list[int] = field(default_factory=list)

    def by_type(self) -> dict[str, int]:
        """Number of frames of each IMAGETYP (``"unknown"`` when it is not known)."""
        counts: dict[str, int] = {}
        for r in self.series.refs:
            kind = r.meta.get("IMAGETYP") or "unknown"
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def metadata(self) -> Table:
        """One row per frame: name, path, the frame metadata keywords and its group."""
        table = self.series.metadata
        table["group"] = self.group_of
        return table


def header_matches(value, wanted) -> bool:
    """Whether a header value matches a selection value, as ``ImageFileCollection`` matches.

    ``"*"`` means the keyword is present; numbers compare with ``numpy.isclose``; strings
    compare case-insensitively with shell wildcards (``fnmatch``).
    """
    if wanted == "*":
        return value is not None
    if value is None:
        return False
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        try:
            return bool(np.isclose(float(value), float(wanted)))
        except (TypeError, ValueError):
            return False
    return fnmatch.fnmatch(str(value).strip().lower(), str(wanted).strip().lower())


def _read_header(path: str, repairs: dict[str, list[str]]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fitsio.HeaderRepairWarning)
        header = (fitsio.read_image_any(path).header if fitsio.is_picture(path)
                  else fitsio.read_header(path))
    for w in caught:
        if issubclass(w.category, fitsio.HeaderRepairWarning):
            repairs.setdefault(str(w.message).replace(f"{path}: ", ""), []).append(path)
    return header


def _frame_meta(path: str, header, frame_type: str) -> tuple[dict, dict]:
    """The frame's metadata and the header updates applied on read (IMAGETYP)."""
    meta = fitsio.frame_metadata(header, path)
    updates = {}
    if frame_type != "header":
        updates["IMAGETYP"] = meta["IMAGETYP"] = frame_type
    elif meta.get("IMAGETYP") and fitsio.normalize_imagetyp(header.get("IMAGETYP")) is None:
        updates["IMAGETYP"] = meta["IMAGETYP"]  # inferred from the file or folder name
    return meta, updates


_COMPRESSED = (".gz", ".fz", ".bz2")


def frame_name(path) -> str:
    """A frame's display name: its file name without the extension (and a compression
    suffix), keeping other dots, e.g. ``Light_M_94_10.0s_IRCUT_2025.fit`` ->
    ``Light_M_94_10.0s_IRCUT_2025``."""
    name = os.path.basename(path)
    stem, ext = os.path.splitext(name)
    if ext.lower() in _COMPRESSED:
        stem = os.path.splitext(stem)[0]
    return stem


def collect_frames(files: Sequence[str], *, hash_file: Callable[[str], str],
                   frame_type: str = "header", imagetyp: str = "any",
                   where: Mapping[str, str | float] | None = None, sort_by: str = "",
                   group_by: Sequence[str] = ()) -> Collection:
    """Read the headers of ``files`` and select, order and group the frames.

    Parameters
    ----------
    files : sequence of str
        FITS files or pictures. They are never modified.
    hash_file : callable(str) -> str
        Content hash of a file (sha256 hex); it makes each frame's key.
    frame_type : {"header", "light", "bias", "dark", "flat"}
        ``"header"``: IMAGETYP from the header, or inferred from the folder and file name when
        missing (``fits.infer_frame_type``); otherwise IMAGETYP of every frame is set to this.
    imagetyp : {"any", "light", "bias", "dark", "flat"}
        Keep only frames of this type (after ``frame_type`` is applied).
    where : mapping, optional
        Header values to select on (see :func:`header_matches`).
    sort_by : str, optional
        Header keyword to order frames by (frames without it last); default: the order of
        ``files``.
    group_by : sequence of str, optional
        Keywords to group frames by (``FrameSeries.group_by``): frames are ordered group by
        group.

    Returns
    -------
    Collection
        Possibly with no frames; the caller decides whether that is an error.

    Raises
    ------
    FrameReadError
        A file cannot be read as FITS or as a picture (names the file).
    """
    refs, repairs = [], {}
    for path in files:
        header = _read_header(path, repairs)
        meta, updates = _frame_meta(path, header, frame_type)
        if imagetyp != "any" and meta.get("IMAGETYP") != imagetyp:
            continue
        if not all(header_matches(meta.get(k.upper(), header.get(k)), v)
                   for k, v in (where or {}).items()):
            continue
        # The key is the file's content (not its path) plus what is changed on read; only
        # selected files are hashed.
        refs.append(FrameRef(key=sha256_json([hash_file(path), updates]),
                             name=frame_name(path),
                             path=os.path.abspath(path), header_updates=updates, meta=meta))
    if sort_by:
        refs.sort(key=lambda r: (r.meta.get(sort_by) is None, str(r.meta.get(sort_by))))
    series, groups, group_of = FrameSeries(refs), [], [0] * len(refs)
    if group_by and refs:
        parts = series.group_by(group_by)
        series = FrameSeries([r for g in parts.values() for r in g.refs])
        group_of = [i for i, g in enumerate(parts.values()) for _ in g.refs]
        groups = [dict(zip(group_by, k), n_frames=len(g)) for k, g in parts.items()]
    return Collection(series, repairs, groups, group_of)
