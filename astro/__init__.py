"""Starloom's science library: pure functions and data types on CCDData, tables and WCS.

Nothing here knows of graphs, caches or Qt; every function is usable from a notebook. See the
modules by topic (``fits``, ``frames``, ``combiner``, ``stars``, ``platesolve``, ...).
"""
