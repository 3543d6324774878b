"""FITS header keywords Starloom reads for every frame, and the frame types (IMAGETYP values).

Plain constants, in a module of their own so that node declarations can name them without
importing astropy (see :mod:`starloom.astro.fits`, which reads them).
"""
from __future__ import annotations

FRAME_KEYWORDS = (
    "IMAGETYP", "FILTER", "EXPTIME", "GAIN", "EGAIN", "CCD-TEMP", "SET-TEMP", "OFFSET",
    "XBINNING", "YBINNING", "FOCALLEN", "AIRMASS", "BAYERPAT", "ROWORDER", "DATE-OBS", "INSTRUME",
)
FRAME_TYPES = ("bias", "dark", "flat", "light")
