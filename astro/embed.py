"""Text carried inside an image file: a FITS text extension, a PNG ``iTXt`` chunk.

Starloom's save nodes use it to put the workflow that made an image into the image (as ComfyUI
does), so that the image alone gives the workflow back. The functions know nothing of graphs:
they store and read UTF-8 text under a name.
"""
from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

from .fileio import atomic_write

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")


def _is_fits(path: Path) -> bool:
    return path.name.lower().endswith(FITS_SUFFIXES)


def add_fits_text(path, name: str, text: str, cards: dict | None = None):
    """Append a binary-table extension ``name`` holding ``text`` to a FITS file.

    Parameters
    ----------
    path : path
        An existing FITS file (rewritten through a temporary file).
    name : str
        EXTNAME of the extension (an extension of that name is replaced).
    text : str
        Stored UTF-8 encoded, as one ``uint8`` array cell (column ``TEXT``), so any length and
        any character survive; FITS string columns are ASCII only.
    cards : dict, optional
        Header cards of the extension (e.g. the writer's version).
    """
    import numpy as np  # here, not at module level: the runtime imports this module at startup
    from astropy.io import fits

    path = Path(path)
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    col = fits.Column(name="TEXT", format=f"{max(len(data), 1)}B", array=data[np.newaxis, :]
                      if len(data) else np.zeros((1, 1), np.uint8))
    hdu = fits.BinTableHDU.from_columns([col], name=name)
    hdu.header["TEXTLEN"] = (len(data), "bytes of UTF-8 text in column TEXT")
    for key, value in (cards or {}).items():
        hdu.header[key] = value
    with fits.open(path) as hdul:
        kept = [h.copy() for h in hdul if h.name != name.upper()]
        out = io.BytesIO()
        fits.HDUList(kept + [hdu]).writeto(out)
    content = out.getvalue()
    if path.name.lower().endswith(".gz"):
        content = gzip.compress(content)
    with atomic_write(path, "wb") as f:
        f.write(content)


def read_fits_text(path, name: str) -> str | None:
    """The text of extension ``name`` written by :func:`add_fits_text`, or None."""
    import numpy as np
    from astropy.io import fits

    with fits.open(path) as hdul:
        if name.upper() not in [h.name for h in hdul]:
            return None
        hdu = hdul[name]
        raw = np.asarray(hdu.data["TEXT"][0], dtype=np.uint8).ravel()
        return raw[: int(hdu.header.get("TEXTLEN", raw.size))].tobytes().decode("utf-8")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks(data: bytes):
    """(type, body) of each chunk of a PNG file's bytes."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        yield kind, data[pos + 8:pos + 8 + length]
        pos += 12 + length


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")


def add_png_text(path, keyword: str, text: str):
    """Put ``text`` in a compressed international text chunk (``iTXt``) of a PNG file, before
    its image end (a chunk with the same keyword is replaced).

    Parameters
    ----------
    path : path
        An existing PNG file (rewritten through a temporary file).
    keyword : str
        1-79 Latin-1 characters, e.g. ``"starloom:graph"``.
    text : str
    """
    path = Path(path)
    key = keyword.encode("latin-1")
    body = key + b"\0" + b"\1\0" + b"\0" + b"\0" + zlib.compress(text.encode("utf-8"))
    out = bytearray(_PNG_SIGNATURE)
    for kind, old in _png_chunks(path.read_bytes()):
        if kind == b"iTXt" and old.split(b"\0", 1)[0] == key:
            continue
        if kind == b"IEND":
            out += _chunk(b"iTXt", body)
        out += _chunk(kind, old)
    with atomic_write(path, "wb") as f:
        f.write(bytes(out))


def read_png_text(path, keyword: str) -> str | None:
    """The text stored under ``keyword`` in a PNG's ``iTXt`` or ``tEXt`` chunks, or None."""
    key = keyword.encode("latin-1")
    for kind, body in _png_chunks(Path(path).read_bytes()):
        if kind == b"tEXt" and body.split(b"\0", 1)[0] == key:
            return body.split(b"\0", 1)[1].decode("latin-1")
        if kind == b"iTXt" and body.split(b"\0", 1)[0] == key:
            rest = body[len(key) + 1:]
            compressed = rest[0] == 1
            _lang, _translated, payload = rest[2:].split(b"\0", 2)
            return (zlib.decompress(payload) if compressed else payload).decode("utf-8")
    return None


def add_text(path, name: str, text: str, cards: dict | None = None):
    """Store ``text`` under ``name`` in a FITS (extension) or PNG (chunk) file, by suffix."""
    path = Path(path)
    if _is_fits(path):
        add_fits_text(path, name, text, cards)
    elif path.suffix.lower() == ".png":
        add_png_text(path, name, text)
    else:
        raise ValueError(f"{path}: only FITS and PNG files carry embedded text")


def read_text(path, name: str) -> str | None:
    """The text stored under ``name`` in a FITS or PNG file (None if it has none, or the file
    is neither)."""
    path = Path(path)
    if _is_fits(path):
        return read_fits_text(path, name)
    if path.suffix.lower() == ".png":
        return read_png_text(path, name)
    return None
