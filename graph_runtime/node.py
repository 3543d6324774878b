"""The node contract: what a node type declares and how the runtime calls it.

A node type is a subclass of :class:`Node` with class attributes ``type_id``, ``version``,
``title``, ``category``, a pydantic ``Params`` model, ``inputs`` and ``outputs`` (port name ->
:class:`Port`) and a pure :meth:`Node.run`. The editor's classes, ``starloom node TYPE`` and the
graph JSON Schema all derive from this one declaration.
"""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Port types. A value of each: Image -> astropy.nddata.CCDData; FrameSeries -> FrameSeries;
# Table -> astropy.table.Table; Transform -> 3x3 float ndarray (homogeneous affine, pixels);
# Path -> str; Number -> float; Integer -> int; String -> str; Boolean -> bool.
PORT_TYPES = ("Image", "FrameSeries", "Table", "Transform", "Path", "Number", "Integer", "String",
              "Boolean")


@dataclass(frozen=True)
class Port:
    """A typed input or output of a node.

    ``type`` is one of :data:`PORT_TYPES`; an input may accept several (a tuple). ``optional``
    inputs may stay unconnected (the node then gets ``None``).
    """

    type: str | tuple[str, ...]
    description: str = ""
    optional: bool = False

    @property
    def types(self) -> tuple[str, ...]:
        return (self.type,) if isinstance(self.type, str) else tuple(self.type)

    def accepts(self, other: "Port") -> bool:
        """Whether an output port ``other`` may connect to this input port."""
        return any(t in self.types for t in other.types)


class Params(BaseModel):
    """Base of every node's parameter model: unknown names are refused, values validated on set.

    Non-finite numbers (``Infinity``, ``NaN``, ``"inf"``) are refused for every float parameter:
    no built-in computation means anything by them, and deep in a library they end in an error
    that names no parameter. A node whose parameter gives them a meaning allows them for that
    field, ``Field(..., allow_inf_nan=True)`` (or for its whole model in its ``model_config``).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False,
                              defer_build=True)


def _path_field(**kw):
    extra = kw.pop("json_schema_extra", {}) | {"format": "path"}
    return Field(json_schema_extra=extra, **kw)


def PathParam(default: Any = ..., **kw):
    """A parameter holding a file system path (or glob, or comma-separated list of them).

    Relative paths in a graph file resolve against the graph file's folder; on the command
    line, against the current folder (see :func:`resolve_path_value`).
    """
    return _path_field(default=default, **kw)


def _to_unit(unit: str):
    def convert(v):
        # pydantic reports only ValueError (and AssertionError) as a validation error; astropy
        # raises TypeError for text that is no quantity, so every failure becomes a ValueError.
        if isinstance(v, (int, float)) or not isinstance(v, str) and "astropy.units" not in \
                sys.modules:
            return v  # a plain number (the graph file's form) needs no astropy
        try:
            import astropy.units as u
            if isinstance(v, u.Quantity):
                return float(v.to_value(unit))
            if isinstance(v, str):
                try:
                    return float(v)
                except ValueError:
                    return float(u.Quantity(v).to_value(unit))
        except (TypeError, ValueError) as e:
            raise ValueError(f"expected a number in {_unit_name(unit)} or a quantity such as "
                             f"'2 {_unit_name(unit)}': {e}") from None
        return v
    return convert


def _unit_name(unit: str) -> str:
    """The canonical spelling of an astropy unit string (``"day"`` -> ``"d"``)."""
    import astropy.units as u
    return u.Unit(unit).to_string()


def Quantity(unit: str, **field_kw):
    """An annotated float parameter measured in ``unit`` (an astropy unit string).

    The graph file stores a plain number in ``unit``; a string with another compatible unit
    (``"2 min"`` for a field in ``s``) is converted on validation. The JSON Schema carries the
    unit as ``"unit"`` so the editor and ``starloom node`` can show it.

    astropy.units (~0.4 s to import) is only imported to convert a string or a quantity, or to
    write the schema: declaring a node and validating plain numbers do not need it.
    """
    extra = field_kw.pop("json_schema_extra", {})

    def schema_extra(schema: dict) -> None:
        schema.update(extra, unit=_unit_name(unit))

    return Annotated[float, Field(json_schema_extra=schema_extra, **field_kw),
                     BeforeValidator(_to_unit(unit))]


def Knob(default: Any = ..., **field_kw):
    """A parameter that does not change the node's result: a memory, speed or thread knob.

    Like Meshroom's ``invalidate=False``: the runtime leaves it out of the node's cache key (and
    out of the provenance HISTORY), so changing it keeps the node cached. Only for parameters
    whose every value gives the same output values, e.g. the rows processed at once. The JSON
    Schema carries ``"invalidate": false``.
    """
    extra = field_kw.pop("json_schema_extra", {}) | {"invalidate": False}
    return Field(default, json_schema_extra=extra, **field_kw)


def is_knob(params_cls: type[BaseModel], name: str) -> bool:
    """Whether parameter ``name`` was declared with :func:`Knob` (does not change the result)."""
    extra = params_cls.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and extra.get("invalidate") is False


def key_params(params: BaseModel) -> dict[str, Any]:
    """The parameter values that identify a node's result: JSON, without the knobs."""
    cls = type(params)
    return {k: v for k, v in params.model_dump(mode="json").items() if not is_knob(cls, k)}


def is_path_field(params_cls: type[BaseModel], name: str) -> bool:
    extra = params_cls.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and extra.get("format") == "path"


def resolve_path_value(value: str, base: str | os.PathLike) -> str:
    """Make each comma-separated component of a path parameter absolute against ``base``."""
    if not isinstance(value, str) or not value:
        return value
    parts = []
    for part in value.split(","):
        part = os.path.expanduser(part.strip())
        parts.append(part if os.path.isabs(part) else os.path.normpath(os.path.join(base, part)))
    return ",".join(parts)


def expand_paths(value: str, patterns: tuple[str, ...] = ("*",)) -> list[str]:
    """Files named by a path parameter: comma-separated folders, globs or files, sorted.

    A folder contributes its files matching any of ``patterns``; a glob its matches (a folder
    matched by a glob contributes its files too).
    """
    out: list[str] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        for hit in sorted(glob.glob(part)) if glob.has_magic(part) else [part]:
            if os.path.isdir(hit):
                out += sorted({f for pat in patterns for f in glob.glob(os.path.join(hit, pat))
                               if os.path.isfile(f)})
            elif os.path.isfile(hit):
                out.append(hit)
    return out


class Node:
    """Base class of node types.

    Class attributes
    ----------------
    type_id : str
        Dotted id, ``category.name`` (e.g. ``calibration.master_bias``).
    version : int
        Version of the ``Params`` shape; bump it and extend :meth:`upgrade` when it changes.
    implementation : int
        Version of what ``run`` computes, part of the cache key. **Bump it whenever a change to
        the node or the library functions it calls can change its output values** (a fix, a
        new default inside the method, a different rounding), so caches built before the
        change are not served; refactorings that keep every output bit-identical keep it.
    libraries : tuple of str
        Distributions (PyPI names) whose code computes the result, e.g.
        ``("ccdproc", "astropy")``: their installed versions are part of the cache key, so an
        upgrade recomputes the node.
    title, category, description : str
        Human name, editor grouping, one-paragraph help.
    Params : type[Params]
        The parameter model.
    inputs, outputs : dict[str, Port]
        Typed ports.
    per_frame : str or None
        Name of a ``FrameSeries`` input the node maps over: ``run`` is then called once per frame
        with that frame (a ``CCDData``) as the keyword argument ``frame`` (not under the input's
        name), the other inputs whole, and must return every ``FrameSeries`` output as one
        ``CCDData`` frame; each frame is cached separately. E.g. for ``per_frame = "lights"``::

            def run(self, ctx, params, frame, bias=None): ...
    cacheable : bool
        False for nodes whose result depends on more than their key (none of the built-ins).
    """

    type_id: ClassVar[str]
    version: ClassVar[int] = 1
    implementation: ClassVar[int] = 1
    libraries: ClassVar[tuple[str, ...]] = ()
    title: ClassVar[str] = ""
    category: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    inputs: ClassVar[dict[str, Port]] = {}
    outputs: ClassVar[dict[str, Port]] = {}
    per_frame: ClassVar[str | None] = None
    cacheable: ClassVar[bool] = True

    def run(self, ctx, params, **inputs) -> dict[str, Any]:
        """Compute the outputs (a dict by output port name) from validated params and inputs.

        Must not read global state; files go through ``ctx`` (``ctx.output_path``,
        ``ctx.artifact_path``, ``ctx.cache_dir``), progress and diagnostics through
        ``ctx.progress``, ``ctx.warn`` and ``ctx.diagnostics``. The runtime writes the provenance
        HISTORY cards (type, version, non-default params) into every image output; a node adds
        its own line with ``ctx.history("stacked 8 frames")``. A per-frame node receives its
        frame as ``frame`` (see ``per_frame``).
        """
        raise NotImplementedError

    @classmethod
    def upgrade(cls, params: dict, from_version: int) -> dict:
        """Turn params written for ``from_version`` into params of ``cls.version``.

        The default knows no older versions: a node type that bumps its version overrides this.
        """
        raise ValueError(f"{cls.type_id}: no upgrade from version {from_version} to {cls.version}")

    @classmethod
    def fingerprint(cls, params, hash_file) -> Any:
        """Extra JSON-able key material, e.g. content hashes of the files a loader reads.

        ``hash_file(path) -> str`` gives a file's sha256, memoized by (path, size, mtime_ns)
        (in a run without a cache: a digest of its path, size and mtime). For a list of input
        files, return :func:`file_fingerprints`.
        """
        return None


def file_fingerprints(files: list[str], hash_file) -> list[list[str]]:
    """``[[path, hash_file(path)], ...]`` of ``files``, hashed in one thread per core (hashlib
    releases the GIL while it hashes): the fingerprint of a node that reads these files."""
    if len(files) < 2:
        return [[f, hash_file(f)] for f in files]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(files), os.cpu_count() or 1)) as pool:
        return [[f, h] for f, h in zip(files, pool.map(hash_file, files))]
