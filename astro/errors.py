"""Exceptions raised by Starloom.

Every error names what is at fault (file, node, port, parameter or header key) so a user can fix
the input without reading a traceback.
"""
from __future__ import annotations


class StarloomError(Exception):
    """Base class of every error Starloom raises on bad input or a failed run."""


class FrameReadError(StarloomError):
    """A FITS (or image) file cannot be read or lacks what is needed.

    Parameters
    ----------
    path : str or os.PathLike
        The file at fault.
    reason : str
        What is wrong, in words.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class FrameWriteError(StarloomError):
    """A frame cannot be written to ``path`` (bad data, dtype or header); names the file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ParamError(StarloomError):
    """A node parameter has a value the node cannot use (named by node id and parameter)."""

    def __init__(self, param: str, message: str):
        self.param = param
        super().__init__(f"parameter '{param}': {message}")


class FrameRejected(StarloomError):
    """Raised by a per-frame node to drop one frame from its output series, with the reason.

    The rejection is recorded in the node's artifacts and cached like a result, so a re-run with
    the same inputs and parameters does not retry the frame.
    """


class HeaderRepairWarning(UserWarning):
    """A header card was not FITS standard and was repaired in memory (never in the file)."""
