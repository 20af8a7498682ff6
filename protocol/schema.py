"""Field schemas derived from the message dataclasses, and the value checks behind them.

Each message is a frozen dataclass; its annotations say what a field may hold:
`str`, `int`, `float`, `bool`, `list[str]`, `dict[str, str]`, `Json` (a small JSON-like dict), a
`Record` (a frozen dataclass of scalar fields, sent as a map), `bytes` (a blob carried as a raw
frame) and `np.ndarray` (an array carried as a raw frame and described by an `ArraySpec`).
`X | None` makes a field nullable. The codec reads the schema once per class, so encoding and
decoding apply exactly the same rules.

Evolving a message within a protocol major version: add fields with a default only. A receiver
fills a missing field from its default and ignores fields it does not know (see `codec`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Union

import numpy as np

from .errors import ProtocolError
from .limits import MAX_NESTING, MAX_OPTIONS, MAX_TEXT_CHARS

Json = dict[str, Any]

# Canonical little-endian dtype strings allowed on the wire (numpy's `dtype.str`).
U8, I8, U32, I32, F16, F32 = "|u1", "|i1", "<u4", "<i4", "<f2", "<f4"
WIRE_DTYPES = frozenset({U8, I8, U32, I32, F16, F32})

Dim = int | str | tuple[int, ...]  # exact size, a symbol shared across fields, or a set of sizes


@dataclass(frozen=True)
class ArraySpec:
    """Allowed dtypes and shape of an array field.

    A `str` dimension is a symbol (for example "N" splats) that must take the same value in
    every field of one message and stay within the message's `DIM_LIMITS`.
    """

    shape: tuple[Dim, ...]
    dtypes: frozenset[str]


class Record:
    """Base of the typed maps a message field can hold (e.g. `MeshMetadata`): a frozen
    dataclass whose fields are scalars with defaults, sent as a msgpack map."""


@dataclass(frozen=True)
class FieldSchema:
    name: str
    kind: str  # "str" | "int" | "float" | "bool" | "list[str]" | "map[str]" | "json" | "record" | "bytes" | "array"
    optional: bool
    """Nullable: None is a valid value."""
    has_default: bool = False
    """May be left out by a sender (an older minor version); the receiver fills in the default."""
    max_chars: int = MAX_TEXT_CHARS
    min_value: int | None = None
    max_value: int | None = None
    max_bytes: int | None = None
    array: ArraySpec | None = None
    record: type | None = None


_KINDS: dict[Any, str] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    list[str]: "list[str]",
    dict[str, str]: "map[str]",
    Json: "json",
    bytes: "bytes",
    np.ndarray: "array",
}


def text(max_chars: int = MAX_TEXT_CHARS, **kw: Any) -> Any:
    return dataclasses.field(metadata={"max_chars": max_chars}, **kw)


def integer(min_value: int | None = None, max_value: int | None = None, **kw: Any) -> Any:
    return dataclasses.field(metadata={"min_value": min_value, "max_value": max_value}, **kw)


def blob(max_bytes: int, **kw: Any) -> Any:
    return dataclasses.field(metadata={"max_bytes": max_bytes}, **kw)


def array(shape: tuple[Dim, ...], dtypes: set[str], **kw: Any) -> Any:
    assert set(dtypes) <= WIRE_DTYPES, dtypes
    return dataclasses.field(metadata={"array": ArraySpec(tuple(shape), frozenset(dtypes))}, **kw)


@cache
def schema_of(cls: type) -> tuple[FieldSchema, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        annotation, optional = _strip_optional(hints[f.name])
        meta = dict(f.metadata)
        if isinstance(annotation, type) and issubclass(annotation, Record):
            kind = "record"
            meta["record"] = annotation
            schema_of(annotation)  # its fields are checked now, not at the first message
        else:
            kind = _KINDS.get(annotation)
        if kind is None:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported wire type {annotation!r}")
        if kind == "array" and "array" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name}: array fields need protocol.schema.array(...)")
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if issubclass(cls, Record) and (kind in ("bytes", "array", "record") or not has_default):
            raise TypeError(f"{cls.__name__}.{f.name}: record fields must be scalars with a default")
        out.append(FieldSchema(name=f.name, kind=kind, optional=optional, has_default=has_default, **meta))
    return tuple(out)


def default_of(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls` (for a field a sender left out)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def check_scalar(field: FieldSchema, value: Any, where: str) -> Any:
    """Check a non-frame value against its schema; returns it (ints widened to float for floats)."""
    if value is None:
        if field.optional:
            return None
        raise ProtocolError(f"{where}: field '{field.name}' is required but was null")
    kind = field.kind
    if kind == "str":
        _expect(isinstance(value, str), field, value, "a string", where)
        if len(value) > field.max_chars:
            raise ProtocolError(
                f"{where}: field '{field.name}' has {len(value)} characters (limit {field.max_chars})",
                "too_large",
            )
    elif kind == "int":
        _expect(isinstance(value, int) and not isinstance(value, bool), field, value, "an integer", where)
        if (field.min_value is not None and value < field.min_value) or (
            field.max_value is not None and value > field.max_value
        ):
            raise ProtocolError(
                f"{where}: field '{field.name}' = {value} is outside [{field.min_value}, {field.max_value}]"
            )
    elif kind == "float":
        _expect(isinstance(value, (int, float)) and not isinstance(value, bool), field, value, "a number", where)
        value = float(value)
        if not math.isfinite(value):
            raise ProtocolError(f"{where}: field '{field.name}' must be finite, got {value}")
    elif kind == "bool":
        _expect(isinstance(value, bool), field, value, "true or false", where)
    elif kind == "list[str]":
        _expect(isinstance(value, list) and all(isinstance(v, str) for v in value), field, value,
                "a list of strings", where)
        if len(value) > MAX_OPTIONS or any(len(v) > field.max_chars for v in value):
            raise ProtocolError(f"{where}: field '{field.name}' is too long", "too_large")
    elif kind == "map[str]":
        _expect(isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()),
                field, value, "a map of strings to strings", where)
        if len(value) > MAX_OPTIONS or any(len(k) > 64 or len(v) > field.max_chars for k, v in value.items()):
            raise ProtocolError(f"{where}: field '{field.name}' is too long", "too_large")
    elif kind == "json":
        _expect(isinstance(value, dict), field, value, "a map", where)
        budget = [MAX_OPTIONS]
        _check_json(value, 0, budget, f"{where}: field '{field.name}'")
    elif kind == "record":
        value = _check_record(field, value, where)
    else:  # pragma: no cover - frames are checked by the codec
        raise AssertionError(kind)
    return value


def _check_record(field: FieldSchema, value: Any, where: str) -> Any:
    """A record instance (encoding: returned as a checked map) or a received map (decoding:
    returned as the record; unknown keys ignored, missing ones take their defaults)."""
    cls = field.record
    inner = f"{where}: field '{field.name}'"
    if isinstance(value, cls):
        return {sub.name: check_scalar(sub, getattr(value, sub.name), inner) for sub in schema_of(cls)}
    _expect(isinstance(value, dict), field, value, f"a {cls.__name__} map", where)
    if len(value) > MAX_OPTIONS:
        raise ProtocolError(f"{inner} has more than {MAX_OPTIONS} entries", "too_large")
    values = {sub.name: check_scalar(sub, value[sub.name], inner) for sub in schema_of(cls) if sub.name in value}
    return cls(**values)


def _check_json(value: Any, depth: int, budget: list[int], where: str) -> None:
    """JSON-like values only (no bytes, no extension types), bounded in size and depth."""
    if depth > MAX_NESTING:
        raise ProtocolError(f"{where} is nested deeper than {MAX_NESTING} levels", "too_large")
    if isinstance(value, dict):
        items = list(value.items())
        for key, _ in items:
            if not isinstance(key, str) or len(key) > 64:
                raise ProtocolError(f"{where}: keys must be strings of at most 64 characters, got {key!r:.80}")
        children = [v for _, v in items]
    elif isinstance(value, list):
        children = value
    elif value is None or isinstance(value, (bool, int)):
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ProtocolError(f"{where} holds a non-finite number")
        return
    elif isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise ProtocolError(f"{where} holds a string over {MAX_TEXT_CHARS} characters", "too_large")
        return
    else:
        raise ProtocolError(f"{where} holds a {type(value).__name__}; only JSON-like values are allowed")
    budget[0] -= len(children)
    if budget[0] < 0:
        raise ProtocolError(f"{where} has more than {MAX_OPTIONS} entries", "too_large")
    for child in children:
        _check_json(child, depth + 1, budget, where)


def _expect(ok: bool, field: FieldSchema, value: Any, what: str, where: str) -> None:
    if not ok:
        raise ProtocolError(f"{where}: field '{field.name}' must be {what}, got {type(value).__name__}")


def check_array_shape(field: FieldSchema, shape: tuple[int, ...], dims: dict[str, int],
                      limits: dict[str, int], where: str) -> None:
    """Match `shape` against the field's spec, binding symbols in `dims` (shared per message)."""
    spec = field.array
    assert spec is not None
    if len(shape) != len(spec.shape):
        raise ProtocolError(
            f"{where}: array '{field.name}' must have {len(spec.shape)} dimensions, got shape {list(shape)}"
        )
    for axis, (size, want) in enumerate(zip(shape, spec.shape)):
        if isinstance(want, int) and size != want:
            raise ProtocolError(f"{where}: array '{field.name}' axis {axis} must be {want}, got {size}")
        if isinstance(want, tuple) and size not in want:
            raise ProtocolError(f"{where}: array '{field.name}' axis {axis} must be one of {want}, got {size}")
        if isinstance(want, str):
            limit = limits.get(want)
            if limit is not None and size > limit:
                raise ProtocolError(
                    f"{where}: array '{field.name}' has {want}={size}, over the limit of {limit}", "too_large"
                )
            bound = dims.setdefault(want, size)
            if bound != size:
                raise ProtocolError(
                    f"{where}: array '{field.name}' has {want}={size} but another field has {want}={bound}"
                )
