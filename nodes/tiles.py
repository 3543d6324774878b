"""(being written)"""
from __future__ import annotations

NODES: list = []
