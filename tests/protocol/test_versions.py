"""Protocol evolution: within a major version peers of different minor versions understand each
other (unknown fields ignored, missing fields defaulted); another major is refused naming both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import msgpack
import numpy as np
import pytest

from protocol import PROTOCOL_VERSION, Hello, Mesh, MeshMetadata, ProtocolError, Welcome, decode, encode
from protocol import messages as wire
from protocol.schema import U8, array, text


@dataclass(frozen=True, kw_only=True)
class HelloNext(wire.Message):
    """`hello` as a later 2.x might define it: an optional string and an optional array."""

    TYPE: ClassVar[str] = "hello"
    DIM_LIMITS: ClassVar[dict[str, int]] = {"N": 16}
    client: str = text(200)
    locale: str = text(16, default="en")
    thumbnail: np.ndarray | None = array(("N", 3), {U8}, default=None)


@pytest.fixture
def newer_hello(monkeypatch):
    """Swap in the newer definition of `hello` (what a peer of a higher minor version encodes and decodes)."""
    def use(cls):
        monkeypatch.setitem(wire.MESSAGE_TYPES, "hello", cls)
    return use


def with_version(frames, version):
    header = msgpack.unpackb(frames[0])
    header["v"] = version
    return [msgpack.packb(header), *frames[1:]]


def test_a_newer_minor_peers_message_decodes_here_ignoring_what_this_side_does_not_know(newer_hello):
    newer_hello(HelloNext)
    frames = encode(HelloNext(client="blender 6.1", locale="de", thumbnail=np.zeros((4, 3), np.uint8)))
    frames = with_version(frames, [PROTOCOL_VERSION.major, PROTOCOL_VERSION.minor + 3])
    header = msgpack.unpackb(frames[0])
    header["trace"] = "abc"  # a header key added later
    frames = [msgpack.packb(header), *frames[1:]]
    newer_hello(Hello)  # this side: the current definition
    envelope = decode([bytes(f) for f in frames])
    assert envelope.message == Hello(client="blender 6.1")
    assert envelope.version == (PROTOCOL_VERSION.major, PROTOCOL_VERSION.minor + 3)


def test_an_older_minor_peers_message_decodes_on_a_newer_side_with_defaults(newer_hello):
    frames = encode(Hello(client="blender 4.2"))  # sent by this (older) side
    newer_hello(HelloNext)  # received by a newer one
    message = decode([bytes(f) for f in frames]).message
    assert message == HelloNext(client="blender 4.2", locale="en", thumbnail=None)


def test_fields_without_a_default_stay_required_and_known_fields_stay_strict():
    body = msgpack.unpackb(encode(Hello(client="x"))[1])
    del body["client"]
    with pytest.raises(ProtocolError, match=r"missing field\(s\) \['client'\]"):
        decode([encode(Hello(client="x"))[0], msgpack.packb(body)])
    frames = encode(Hello(client="x"))
    body = msgpack.unpackb(frames[1])
    body["client"], body["later"] = 7, "fine"
    with pytest.raises(ProtocolError, match="'client' must be a string"):
        decode([frames[0], msgpack.packb(body)])


def test_the_welcome_of_an_older_backend_without_kinds_and_options_still_decodes():
    welcome = Welcome(protocol="2.0", backend_version="0.1", device="cpu", gpu_name=None, gpu_memory_mb=None,
                      model_preset="tiny", quality_presets=["draft"], heartbeat_interval_s=1.0)
    frames = encode(welcome)
    body = msgpack.unpackb(frames[1])
    del body["options"], body["request_kinds"]
    decoded = decode([frames[0], msgpack.packb(body)]).message
    assert decoded == welcome and decoded.options == [] and decoded.request_kinds == []


def test_mesh_metadata_is_typed_keeps_the_full_prompt_and_ignores_unknown_keys():
    prompt = "a weathered bronze statue of a lion " * 50  # 1,800 characters: no more cutting at 200
    mesh = Mesh(kind="final", vertices=np.zeros((3, 3), np.float32), faces=np.array([[0, 1, 2]], np.uint32),
                metadata=MeshMetadata(prompt=prompt, seed=7, quality="draft", models="tiny", tiny=True,
                                      cache={"geometry": "hit", "texture": "miss"}))
    frames = encode(mesh)
    decoded = decode([bytes(f) for f in frames]).message.metadata
    assert decoded == mesh.metadata and decoded.prompt == prompt
    body = msgpack.unpackb(frames[1])
    body["metadata"]["licence"] = "CC-BY"  # added by a later minor version
    del body["metadata"]["captioned"]  # left out by an earlier one
    decoded = decode([frames[0], msgpack.packb(body), *map(bytes, frames[2:])]).message.metadata
    assert decoded == mesh.metadata
    body["metadata"]["seed"] = "7"
    with pytest.raises(ProtocolError, match="'seed' must be an integer"):
        decode([frames[0], msgpack.packb(body), *map(bytes, frames[2:])])
    with pytest.raises(ProtocolError, match="must be a MeshMetadata"):
        encode(Mesh(kind="final", vertices=mesh.vertices, faces=mesh.faces, metadata={"prompt": "x"}))


@pytest.mark.parametrize("version, shown", [([PROTOCOL_VERSION.major + 1, 0], f"{PROTOCOL_VERSION.major + 1}.0"),
                                            (1, "1.0")])
def test_another_major_version_is_refused_naming_both(version, shown):
    frames = with_version(encode(Hello(client="x")), version)
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.code == "unsupported_version"
    assert f"protocol {shown} and this side speaks {PROTOCOL_VERSION}" in str(info.value)


def test_failure_codes_a_newer_backend_adds_are_received_but_never_sent():
    frames = encode(wire.Failed(code="pipeline_error", message="m"))
    body = msgpack.unpackb(frames[1])
    body["code"] = "quota_exceeded"
    assert decode([frames[0], msgpack.packb(body)]).message.code == "quota_exceeded"
    with pytest.raises(ProtocolError, match="unknown code"):
        encode(wire.Failed(code="quota_exceeded", message="m"))


def test_every_field_added_to_a_message_has_a_default_or_was_there_when_it_was_introduced():
    # The required fields of each message type when it was introduced (2.0; 2.1 for `enhance` and
    # `enhanced_image`; 2.2 for the texture kind's; 2.5 for the scene kind's); anything later must come with a default (see
    # protocol/messages.py).
    required_at_introduction = {
        "hello": {"client"}, "welcome": {"protocol", "backend_version", "device", "gpu_name", "gpu_memory_mb",
                                         "model_preset", "quality_presets", "heartbeat_interval_s"},
        "generate": {"image", "prompt", "quality", "seed"}, "accepted": {"queue_position"},
        "progress": {"stage", "step", "total"}, "preview": {"step", "positions", "colors", "opacities", "scales",
                                                              "rotations"},
        "mesh": {"kind", "vertices", "faces"}, "failed": {"code", "message"}, "cancel": set(), "cancelled": set(),
        "heartbeat": set(),
        # 2.1
        "enhance": {"image"}, "enhanced_image": {"image"},
        # 2.2
        "texture": {"vertices", "faces", "prompt"}, "texture_preview": {"step", "total", "texture"}, "painted_texture": {"texture"},
        # 2.5
        "scene": {"prompt"}, "scene_result": {"vertices", "faces", "vertex_colors", "cameras", "keyframes"},
    }
    from protocol.schema import schema_of

    assert set(wire.MESSAGE_TYPES) == set(required_at_introduction)
    for name, cls in wire.MESSAGE_TYPES.items():
        required = {f.name for f in schema_of(cls) if not f.has_default}
        new = required - required_at_introduction[name]
        assert not new, f"{name}: new required fields {new}"


def test_a_2_0_backend_answers_an_enhance_with_a_reason_and_its_welcome_does_not_list_it():
    """A 2.0 peer does not know the `enhance` type: decoding it there is a bad_message naming the
    type (the add-on never sends one to a backend whose welcome lacks "enhance")."""
    frames = encode(wire.Enhance(image=b"\x89PNG\r\n\x1a\n"), job_id="j")
    old_types = {name: cls for name, cls in wire.MESSAGE_TYPES.items() if name not in ("enhance", "enhanced_image")}
    import unittest.mock

    with unittest.mock.patch.dict(wire.MESSAGE_TYPES, old_types, clear=True):
        with pytest.raises(ProtocolError, match="unknown message type 'enhance'") as info:
            decode(frames)
    assert info.value.code == "bad_message"
    old_welcome = Welcome(protocol="2.0", backend_version="0.1", device="cpu", gpu_name=None, gpu_memory_mb=None,
                          model_preset="tiny", quality_presets=["draft"], heartbeat_interval_s=1.0,
                          request_kinds=["generate"])
    assert "enhance" not in decode(encode(old_welcome)).message.request_kinds


@dataclass(frozen=True, kw_only=True)
class RecordWithoutDefault(wire.Record):
    prompt: str = text(10)


def test_records_need_scalar_fields_with_defaults():
    from protocol.schema import schema_of

    with pytest.raises(TypeError, match="record fields must be scalars with a default"):
        schema_of(RecordWithoutDefault)
