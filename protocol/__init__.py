"""Lift3D wire protocol: message dataclasses, a versioned envelope codec, wire limits, and the
contracts both sides share: request kinds and stage names (`kinds`) and every request option
(`options`).

Imports only the standard library, msgpack and numpy. `protocol.client` (the ZeroMQ client)
is a separate module and is not imported here, so the codec stays free of zmq.
"""

from .codec import Envelope, decode, encode, new_id, peek_ids
from .errors import ProtocolError
from .kinds import RequestKind, Stage
from .limits import DEFAULT_ADDRESS, DEFAULT_HOST, DEFAULT_PORT, MAX_ENHANCE_SIDE, PROTOCOL_VERSION, ProtocolVersion
from .messages import (
    FAILURE_CODES,
    MESSAGE_TYPES,
    Accepted,
    Cancel,
    Cancelled,
    Enhance,
    EnhancedImage,
    Failed,
    Generate,
    Heartbeat,
    Hello,
    Mesh,
    MeshMetadata,
    Message,
    PaintedTexture,
    Preview,
    Progress,
    REQUEST_TYPES,
    Scene,
    SceneResult,
    Texture,
    TexturePreview,
    Welcome,
    image_format,
    is_result,
    is_terminal,
    request_kind,
)
from .options import OptionError

__all__ = [
    "DEFAULT_ADDRESS", "DEFAULT_HOST", "DEFAULT_PORT", "FAILURE_CODES", "MAX_ENHANCE_SIDE", "MESSAGE_TYPES",
    "PROTOCOL_VERSION", "REQUEST_TYPES", "Accepted", "Cancel", "Cancelled", "Enhance", "EnhancedImage",
    "Envelope", "Failed", "Generate", "Heartbeat", "Hello", "Mesh", "MeshMetadata", "Message",
    "OptionError", "PaintedTexture", "Preview", "Progress", "ProtocolError", "ProtocolVersion", "RequestKind", "Scene",
    "SceneResult", "Stage",
    "Texture", "TexturePreview", "Welcome", "decode", "encode", "image_format", "is_result", "is_terminal", "new_id", "peek_ids",
    "request_kind",
]
