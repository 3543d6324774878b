"""Starloom's built-in node types, registered through the ``starloom.nodes`` entry point."""
from __future__ import annotations


def register_all(registry) -> None:
    """Add every built-in node type to ``registry``."""
    from . import astrometry, calibration, coadd, io, plots, registration, simulate, stacking
    for module in (io, simulate, calibration, registration, stacking, astrometry, coadd, plots):
        for cls in module.NODES:
            registry.add(cls)
