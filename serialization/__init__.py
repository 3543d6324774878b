"""Graph-file document models (no astronomy, no node types): :mod:`.graph`."""
from .graph import (FORMAT, SCHEMA_FILE, SCHEMA_VERSION, CanvasUI, CommentUI, EdgeSpec,
                    GraphDocument, GraphFileError, GraphParameter, GroupUI, Metadata, NodeSpec, UI,
                    json_schema, load_graph, migrate, parse_graph, save_graph)

__all__ = ["FORMAT", "SCHEMA_FILE", "SCHEMA_VERSION", "CanvasUI", "CommentUI", "EdgeSpec",
           "GraphDocument", "GraphFileError", "GraphParameter", "GroupUI", "Metadata", "NodeSpec",
           "UI", "json_schema", "load_graph", "migrate", "parse_graph", "save_graph"]
