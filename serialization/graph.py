"""The Starloom graph file: pydantic models of the document, loading, saving and migration.

A graph file is one JSON document (``"format": "starloom.graph"``) that the editor opens and the
runtime executes. It is data only: loading one parses JSON and validates it against these models;
no code runs and nothing is unpickled. This module knows nothing about astronomy or node types (of the science library it
uses only the shared errors and the atomic file writer);
per-node parameter upgrades happen in :mod:`starloom.graph_runtime`.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_serializer)

from starloom.astro.errors import StarloomError
from starloom.astro.fileio import write_text_atomic

FORMAT = "starloom.graph"
SCHEMA_VERSION = 1
_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"


class GraphFileError(StarloomError):
    """A graph file cannot be read: not JSON, not a Starloom graph, too new, or invalid.

    The message names the file and, where known, the key at fault.
    """


class _Model(BaseModel):
    # Infinity and NaN are JSON extensions that Python reads but other tools do not, and a node
    # placed at x=NaN cannot be drawn: the document refuses them.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class UI(_Model):
    """Editor-only placement of a node; ignored by the runtime."""

    x: float = 0.0
    y: float = 0.0
    label: str | None = None


class NodeSpec(_Model):
    """One node of the graph: an instance of a registered node type with its parameters."""

    id: str = Field(pattern=_ID_PATTERN, description="Unique node id within the graph")
    type: str = Field(description="Registered node type id, e.g. 'calibration.master_bias'")
    version: int = Field(ge=1, description="Version of the node type's Params shape")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameter values by name")
    ui: UI = Field(default_factory=UI)


class EdgeSpec(_Model):
    """A connection from an output port to an input port, written ``"node_id.port"``."""

    from_: str = Field(alias="from", pattern=r"^[^.]+\.[^.]+$")
    to: str = Field(pattern=r"^[^.]+\.[^.]+$")

    @property
    def source(self) -> tuple[str, str]:
        node, port = self.from_.split(".")
        return node, port

    @property
    def target(self) -> tuple[str, str]:
        node, port = self.to.split(".")
        return node, port


class GraphParameter(_Model):
    """A named graph-level value bound to one or more node parameters (``node_id.param``)."""

    type: Literal["path", "string", "number", "integer", "boolean"] = "string"
    default: Any = None
    binds: list[str] = Field(min_length=1)
    description: str = ""

    @field_validator("binds")
    @classmethod
    def _binds_are_node_params(cls, v: list[str]) -> list[str]:
        for b in v:
            if b.count(".") != 1:
                raise ValueError(f"bind '{b}' must be written 'node_id.param'")
        return v


class Metadata(_Model):
    name: str = ""
    description: str = ""
    created_with: dict[str, Any] = Field(default_factory=dict)


class GroupUI(_Model):
    """A titled frame drawn behind nodes on the canvas (editor only; ignored by the runtime)."""

    title: str = ""
    x: float = 0.0
    y: float = 0.0
    w: float = Field(default=300.0, gt=0)
    h: float = Field(default=200.0, gt=0)
    color: str = Field(default="#8fb3e0", pattern=r"^#[0-9A-Fa-f]{6}$")


class CommentUI(_Model):
    """A note written on the canvas (editor only; ignored by the runtime)."""

    text: str = ""
    x: float = 0.0
    y: float = 0.0


class CanvasUI(_Model):
    """Editor-only drawing of the graph besides its nodes: groups (frames) and comments."""

    groups: list[GroupUI] = Field(default_factory=list)
    comments: list[CommentUI] = Field(default_factory=list)


class GraphDocument(_Model):
    """The whole graph document, schema version 1.

    ``ui`` (groups and comments on the canvas) is optional and left out of the file when it
    holds nothing, so files written before it existed read and write back unchanged.
    """

    format: Literal["starloom.graph"] = FORMAT
    schema_version: Literal[1] = SCHEMA_VERSION
    metadata: Metadata = Field(default_factory=Metadata)
    parameters: dict[str, GraphParameter] = Field(default_factory=dict)
    nodes: list[NodeSpec] = Field(default_factory=list)
    edges: list[EdgeSpec] = Field(default_factory=list)
    ui: CanvasUI | None = Field(default=None, description="Editor-only groups and comments")

    @model_serializer(mode="wrap")
    def _omit_empty_ui(self, handler):
        data = handler(self)
        if isinstance(data, dict) and not (self.ui and (self.ui.groups or self.ui.comments)):
            data.pop("ui", None)
        return data

    def node(self, node_id: str) -> NodeSpec:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def to_json(self) -> str:
        """The canonical text of the document: 2-space indent, keys in model order."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2) + "\n"


# Document upgrades: _MIGRATIONS[v] turns a raw schema-v document into a schema-(v+1) one.
# Schema 1 is the first published version, so the chain is empty; an entry is added, never
# edited, each time SCHEMA_VERSION goes up.
_MIGRATIONS: dict[int, Callable[[dict], dict]] = {}


def migrate(raw: dict, source: str = "<graph>") -> dict:
    """Upgrade a raw graph document (parsed JSON) to the current schema version.

    Parameters
    ----------
    raw : dict
        The parsed JSON document.
    source : str
        Name of the file, used in error messages.

    Returns
    -------
    dict
        A document at ``SCHEMA_VERSION``.

    Raises
    ------
    GraphFileError
        If it is not a Starloom graph, or its schema version is newer than this Starloom's.
    """
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise GraphFileError(f"{source}: not a Starloom graph file (expected \"format\": \"{FORMAT}\")")
    version = raw.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise GraphFileError(f"{source}: key 'schema_version' must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise GraphFileError(
            f"{source}: written with graph schema version {version}, but this Starloom reads up to "
            f"version {SCHEMA_VERSION}; upgrade Starloom to open it")
    while version < SCHEMA_VERSION:
        try:
            raw = _MIGRATIONS[version](dict(raw))
        except Exception as e:  # a migration meets a malformed old document: name the file
            raise GraphFileError(f"{source}: cannot migrate from graph schema version {version}: "
                                 f"{_one_line(e)}") from None
        version += 1
        raw["schema_version"] = version
    return raw


#: Deepest nesting of lists and objects a graph file may have. A real graph needs about 6; the
#: limit keeps every later step (validation, copies, JSON output) far from Python's recursion
#: limit whatever the file holds.
MAX_DEPTH = 64


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (CLI errors are one line each)."""
    return " ".join(str(e).split()) or type(e).__name__


def _check_depth(raw: Any, source: str) -> None:
    """Refuse documents nested deeper than :data:`MAX_DEPTH` (iteratively: no recursion)."""
    stack = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        children = (value.values() if isinstance(value, dict)
                    else value if isinstance(value, list) else ())
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_DEPTH:
                    raise GraphFileError(f"{source}: nested more than {MAX_DEPTH} levels deep; "
                                         f"not a Starloom graph file")
                stack.append((child, depth + 1))


def parse_graph(text: str, source: str = "<graph>") -> GraphDocument:
    """Parse and validate graph JSON text (after migration); see :func:`load_graph`."""
    if not text.strip():
        raise GraphFileError(f"{source}: empty file, not a Starloom graph")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise GraphFileError(f"{source}: not valid JSON: {e}") from None
    except RecursionError:
        # json's C scanner nests one C call per level: 200,000 '[' exhaust the stack.
        raise GraphFileError(f"{source}: nested more than {MAX_DEPTH} levels deep; not a "
                             f"Starloom graph file") from None
    except ValueError as e:
        # Python refuses integers of more than 4,300 digits (int_max_str_digits), a
        # denial-of-service guard; no parameter needs one.
        reason = (f"an integer longer than {sys.get_int_max_str_digits()} digits"
                  if "digits" in str(e) else _one_line(e))
        raise GraphFileError(f"{source}: not valid JSON: {reason}") from None
    _check_depth(raw, source)
    raw = migrate(raw, source)
    try:
        return GraphDocument.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise GraphFileError(f"{source}: invalid graph document: {_one_line(problems)}") from None


def load_graph(path: str | os.PathLike) -> GraphDocument:
    """Read a graph file.

    Raises
    ------
    GraphFileError
        If the file is missing or unreadable, not UTF-8, not JSON (or JSON nested more than
        :data:`MAX_DEPTH` levels, or with an integer too long to read), not a Starloom graph,
        from a newer schema, or invalid; the message is one line naming the file and the key
        at fault.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GraphFileError(f"{path}: cannot read graph file: {e.strerror or e}") from None
    try:
        # JSON is UTF-8 (RFC 8259); a byte-order mark, as some Windows editors write, is allowed.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise GraphFileError(f"{path}: not a UTF-8 text file (byte 0x{data[e.start]:02x} at "
                             f"offset {e.start}); graph files are UTF-8 JSON") from None
    return parse_graph(text, str(path))


def save_graph(doc: GraphDocument, path: str | os.PathLike) -> Path:
    """Write a graph document atomically (temporary file in the same folder, then rename).

    The file keeps its permission bits (a new file gets the umask's), see
    :func:`starloom.astro.fileio.atomic_write`.
    """
    return write_text_atomic(path, doc.to_json())


def json_schema() -> dict:
    """The published JSON Schema of the graph document (draft 2020-12)."""
    schema = GraphDocument.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://starloom.dev/schema/graph-v{SCHEMA_VERSION}.json"
    schema["title"] = "Starloom graph file"
    return schema


SCHEMA_FILE = Path(__file__).with_name(f"graph.schema.v{SCHEMA_VERSION}.json")
