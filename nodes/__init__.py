"""Starloom's built-in node types, registered through the ``starloom.nodes`` entry point."""
from __future__ import annotations

import importlib

# Palette order. Each module declares its node types in a module-level ``NODES`` list.
MODULES = ("io", "simulate", "calibration", "library", "cosmetic", "flatmodel", "registration",
           "stacking", "tiles_prep", "tiles_reconstruct", "astrometry", "coadd", "colour",
           "background", "pcc", "optics", "sky", "plots")


def register_all(registry) -> None:
    """Add every built-in node type to ``registry``."""
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        for cls in module.NODES:
            registry.add(cls)
