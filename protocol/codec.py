"""Envelope codec: `[msgpack header, msgpack body, *raw frames]`.

The header is `{v: [major, minor], type, msg_id, job_id}`. The body maps field names to
scalars, or, for arrays and blobs, to a descriptor `{"frame": k, "dtype", "shape"}` /
`{"frame": k, "nbytes"}` pointing at raw frame `k` (0-based after the body). Arrays decode as
read-only numpy views on the received frames (zero copy). Nothing here imports zmq: frames are
anything exposing the buffer protocol, or a `.buffer` attribute (pyzmq's `Frame`).

Versions: a message of another major version is refused (`unsupported_version`, naming both).
Within a major, header keys and body fields this side does not know are ignored (with any frame
they describe), and a field left out takes its default — so a newer minor version can add
optional fields, and an older peer's messages still decode. Fields without a default stay
required, and every known field is checked as strictly as ever.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .errors import ProtocolError
from .limits import MAX_BODY_BYTES, MAX_FRAMES, MAX_HEADER_BYTES, MAX_ID_CHARS, PROTOCOL_VERSION, ProtocolVersion
from .messages import MESSAGE_TYPES, Message
from .schema import WIRE_DTYPES, FieldSchema, check_array_shape, check_scalar, default_of, schema_of

HEADER_KEYS = frozenset({"v", "type", "msg_id", "job_id"})
"""The keys every header has; a newer minor version may add more, which are ignored."""
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")

# Message ids: a per-process random prefix plus a counter is unique enough and ~10x cheaper
# than uuid4 on the hot path of preview streaming.
_ID_PREFIX = os.urandom(4).hex()
_ID_COUNTER = itertools.count(1)


def new_id() -> str:
    return f"{_ID_PREFIX}-{next(_ID_COUNTER)}"


@dataclass(frozen=True)
class Envelope:
    message: Message
    msg_id: str
    job_id: str | None = None
    version: ProtocolVersion = PROTOCOL_VERSION
    """The sender's protocol version (same major as this side's; the minor may differ)."""

    @property
    def type(self) -> str:
        return self.message.TYPE


def encode(message: Message, job_id: str | None = None, msg_id: str | None = None) -> list[Any]:
    """Frames for `message`. Array frames are memoryviews of the arrays (send with copy=False)."""
    cls = type(message)
    if MESSAGE_TYPES.get(cls.TYPE) is not cls:
        raise ProtocolError(f"{cls.__name__} is not a protocol message")
    _check_id(job_id, "job_id", optional=True)
    header = {"v": list(PROTOCOL_VERSION), "type": cls.TYPE, "msg_id": msg_id or new_id(), "job_id": job_id}
    body: dict[str, Any] = {}
    frames: list[Any] = []
    dims: dict[str, int] = {}
    where = cls.TYPE
    for field in schema_of(cls):
        value = getattr(message, field.name)
        if field.kind == "array" and value is not None:
            arr = _wire_array(value, field, where)
            check_array_shape(field, arr.shape, dims, cls.DIM_LIMITS, where)
            body[field.name] = {"frame": len(frames), "dtype": arr.dtype.str, "shape": list(arr.shape)}
            frames.append(memoryview(arr).cast("B") if arr.size else b"")
        elif field.kind == "bytes" and value is not None:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise ProtocolError(f"{where}: field '{field.name}' must be bytes, got {type(value).__name__}")
            _check_blob_size(field, len(value), where)
            body[field.name] = {"frame": len(frames), "nbytes": len(value)}
            frames.append(value)
        elif field.kind in ("array", "bytes"):
            check_scalar(field, None, where)  # raises unless optional
            body[field.name] = None
        elif field.kind == "record" and value is not None and not isinstance(value, field.record):
            raise ProtocolError(f"{where}: field '{field.name}' must be a {field.record.__name__}, "
                                f"got {type(value).__name__}")
        else:
            body[field.name] = check_scalar(field, value, where)
    message.validate_outgoing()  # after the per-field checks, which it relies on
    return [msgpack.packb(header), msgpack.packb(body), *frames]


def decode(frames: Sequence[Any]) -> Envelope:
    """Validate and decode received frames. Raises ProtocolError with a clear reason."""
    if len(frames) < 2:
        raise ProtocolError(f"a message needs at least 2 frames (header, body), got {len(frames)}")
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(f"a message may have at most {MAX_FRAMES} frames, got {len(frames)}", "too_large")
    buffers = [_buffer(f) for f in frames]
    header = _unpack(buffers[0], MAX_HEADER_BYTES, "header")
    cls, msg_id, job_id, version = _check_header(header)
    body = _unpack(buffers[1], MAX_BODY_BYTES, f"{cls.TYPE} body")
    if not isinstance(body, dict):
        raise ProtocolError(f"{cls.TYPE}: the body must be a map, got {type(body).__name__}")
    message = _decode_body(cls, body, buffers[2:])
    return Envelope(message=message, msg_id=msg_id, job_id=job_id, version=version)


def _decode_body(cls: type[Message], body: dict[str, Any], data_frames: list[memoryview]) -> Message:
    where = cls.TYPE
    schema = schema_of(cls)
    names = {f.name for f in schema}
    missing = sorted(f.name for f in schema if f.name not in body and not f.has_default)
    if missing:
        raise ProtocolError(f"{where}: missing field(s) {missing}")
    values: dict[str, Any] = {}
    used: set[int] = set()
    dims: dict[str, int] = {}
    for name in body.keys() - names:  # a newer minor version's field: skipped, with its frame
        _claim_unknown_frame(where, name, body[name], data_frames, used)
    for field in schema:
        if field.name not in body:
            values[field.name] = default_of(cls, field.name)
            continue
        raw = body[field.name]
        if field.kind in ("array", "bytes") and raw is not None:
            values[field.name] = _decode_frame_field(cls, field, raw, data_frames, used, dims)
        else:
            values[field.name] = check_scalar(field, raw, where)
    if len(used) != len(data_frames):
        raise ProtocolError(f"{where}: {len(data_frames) - len(used)} frame(s) are not described by any field")
    message = cls(**values)
    message.validate()
    return message


def _claim_unknown_frame(where: str, name: Any, raw: Any, data_frames: list[memoryview], used: set[int]) -> None:
    """An unknown field that describes a frame owns that frame: it must exist and not be shared."""
    if not isinstance(raw, dict) or "frame" not in raw:
        return
    index = raw["frame"]
    if not _is_int(index) or not 0 <= index < len(data_frames) or index in used:
        raise ProtocolError(f"{where}: unknown field {str(name)[:40]!r} refers to frame {index!r:.20}, which "
                            f"does not exist or is claimed twice")
    used.add(index)


def _decode_frame_field(cls: type[Message], field: FieldSchema, raw: Any, data_frames: list[memoryview],
                        used: set[int], dims: dict[str, int]) -> Any:
    where = cls.TYPE
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: field '{field.name}' must be a frame descriptor map")
    wanted = {"frame", "dtype", "shape"} if field.kind == "array" else {"frame", "nbytes"}
    if raw.keys() != wanted:
        raise ProtocolError(f"{where}: descriptor of '{field.name}' must have exactly the keys {sorted(wanted)}")
    index = raw["frame"]
    if not _is_int(index) or not 0 <= index < len(data_frames):
        raise ProtocolError(f"{where}: field '{field.name}' refers to frame {index!r}, "
                            f"but the message has {len(data_frames)} data frame(s)")
    if index in used:
        raise ProtocolError(f"{where}: frame {index} is claimed by more than one field")
    used.add(index)
    buf = data_frames[index]
    if field.kind == "bytes":
        nbytes = raw["nbytes"]
        if not _is_int(nbytes):
            raise ProtocolError(f"{where}: '{field.name}'.nbytes must be an integer")
        _check_blob_size(field, nbytes, where)
        if nbytes != buf.nbytes:
            raise ProtocolError(f"{where}: '{field.name}' declares {nbytes} bytes but its frame has {buf.nbytes}")
        return buf.tobytes()
    dtype, shape = raw["dtype"], raw["shape"]
    if not isinstance(dtype, str) or dtype not in field.array.dtypes:
        allowed = sorted(field.array.dtypes)
        raise ProtocolError(f"{where}: array '{field.name}' has dtype {dtype!r}; allowed: {allowed}")
    if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
        raise ProtocolError(f"{where}: array '{field.name}' shape must be a list of non-negative integers")
    check_array_shape(field, tuple(shape), dims, cls.DIM_LIMITS, where)
    itemsize = np.dtype(dtype).itemsize
    expected = itemsize * _product(shape)
    if expected != buf.nbytes:
        raise ProtocolError(f"{where}: array '{field.name}' declares {expected} bytes "
                            f"(shape {shape}, {dtype}) but its frame has {buf.nbytes}")
    arr = np.frombuffer(buf, dtype=np.dtype(dtype)) if buf.nbytes else np.empty(0, np.dtype(dtype))
    arr = arr.reshape(shape)
    arr.flags.writeable = False
    return arr


def _check_header(header: Any) -> tuple[type[Message], str, str | None, ProtocolVersion]:
    if not isinstance(header, dict):
        raise ProtocolError("the header must be a map")
    if not HEADER_KEYS <= header.keys():
        raise ProtocolError(f"the header must have the keys {sorted(HEADER_KEYS)}, got {sorted(map(str, header.keys()))}")
    version = peer_version(header["v"])
    if version.major != PROTOCOL_VERSION.major:
        raise ProtocolError(f"the other side speaks Lift3D protocol {version} and this side speaks "
                            f"{PROTOCOL_VERSION}; install the same Lift3D release (or one with protocol "
                            f"{PROTOCOL_VERSION.major}.x) for the Blender add-on and the backend", "unsupported_version")
    kind = header["type"]
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r:.80}")
    _check_id(header["msg_id"], "msg_id", optional=False)
    _check_id(header["job_id"], "job_id", optional=True)
    return cls, header["msg_id"], header["job_id"], version


def peer_version(value: Any) -> ProtocolVersion:
    """Header 'v' → (major, minor). Release 1 sent a bare integer, read as (n, 0) so that it is
    refused with both versions named instead of as malformed."""
    if _is_int(value) and value >= 0:
        return ProtocolVersion(value, 0)
    if isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v >= 0 for v in value):
        return ProtocolVersion(*value)
    raise ProtocolError(f"header 'v' must be [major, minor], got {value!r:.40}")


def _check_id(value: Any, name: str, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS or not set(value) <= _ID_CHARS:
        raise ProtocolError(f"header '{name}' must be 1-{MAX_ID_CHARS} characters of [A-Za-z0-9-_.:], "
                            f"got {value!r:.80}")


def _unpack(buf: memoryview, limit: int, what: str) -> Any:
    if buf.nbytes > limit:
        raise ProtocolError(f"the {what} is {buf.nbytes} bytes (limit {limit})", "too_large")
    try:
        return msgpack.unpackb(buf, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:  # malformed msgpack or UTF-8
        raise ProtocolError(f"the {what} is not valid msgpack ({type(exc).__name__}: {exc})") from None


def _reject_ext(code: int, data: bytes) -> None:
    raise ProtocolError(f"msgpack extension types are not allowed (ext {code})")


def _buffer(frame: Any) -> memoryview:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        view = memoryview(frame)
    elif hasattr(frame, "buffer"):
        view = frame.buffer  # zmq.Frame received with copy=False: no copy
    else:
        raise ProtocolError(f"a frame must be bytes-like, got {type(frame).__name__}")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _wire_array(value: Any, field: FieldSchema, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ProtocolError(f"{where}: field '{field.name}' must be a numpy array, got {type(value).__name__}")
    arr = value
    big_endian = arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big")
    if big_endian:  # the wire is little-endian
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype.str not in WIRE_DTYPES or arr.dtype.str not in field.array.dtypes:
        raise ProtocolError(f"{where}: array '{field.name}' has dtype {arr.dtype.str}; "
                            f"allowed: {sorted(field.array.dtypes)}")
    return np.ascontiguousarray(arr)


def _check_blob_size(field: FieldSchema, nbytes: int, where: str) -> None:
    if field.max_bytes is not None and nbytes > field.max_bytes:
        raise ProtocolError(f"{where}: '{field.name}' is {nbytes / 2**20:.1f} MiB "
                            f"(limit {field.max_bytes / 2**20:.0f} MiB)", "too_large")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _product(shape: list[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def peek_ids(header_frame: Any) -> tuple[str | None, str | None]:
    """Best-effort (msg_id, job_id) of a message that failed to decode, for the error reply."""
    try:
        header = _unpack(_buffer(header_frame), MAX_HEADER_BYTES, "header")
    except ProtocolError:
        return None, None
    if not isinstance(header, dict):
        return None, None
    ids = []
    for key in ("msg_id", "job_id"):
        value = header.get(key)
        try:
            _check_id(value, key, optional=False)
        except ProtocolError:
            value = None
        ids.append(value)
    return ids[0], ids[1]
