"""Every message type survives encode → decode unchanged, including arrays of every wire dtype."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocol import (
    MESSAGE_TYPES,
    REQUEST_TYPES,
    Enhance,
    EnhancedImage,
    Envelope,
    Generate,
    Message,
    PaintedTexture,
    Scene,
    SceneResult,
    RequestKind,
    Stage,
    Texture,
    TexturePreview,
    decode,
    encode,
    is_result,
    is_terminal,
    new_id,
    request_kind,
)
from protocol.kinds import progress_spans, stage_of
from protocol.errors import ProtocolError
from protocol.messages import FAILURE_CODES, MESH_KINDS, SCENE_TRAJECTORIES
from protocol.schema import WIRE_DTYPES, schema_of

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=20)
JSON = st.dictionaries(st.text(max_size=10), JSON_SCALARS | st.lists(JSON_SCALARS, max_size=3), max_size=6)

IMAGE_FILES = st.sampled_from([PNG_MAGIC, b"\xff\xd8\xff\xe0", b"RIFF\0\0\0\0WEBPVP8 "]).flatmap(
    lambda magic: st.binary(max_size=256).map(lambda tail: magic + tail))
# Values a field must take for the message's cross-field rules to hold.
SPECIAL = {
    ("mesh", "kind"): st.sampled_from(MESH_KINDS),
    ("failed", "code"): st.sampled_from(FAILURE_CODES),
    ("generate", "image"): IMAGE_FILES,
    ("enhance", "image"): IMAGE_FILES,
    ("enhance", "reference"): st.none() | IMAGE_FILES,
    ("texture", "image"): st.none() | IMAGE_FILES,
    ("scene", "image"): st.none() | IMAGE_FILES,
}


@st.composite
def messages(draw, cls: type[Message]) -> Message:
    dims = {"N": draw(st.integers(0, 40)), "V": draw(st.integers(1, 40)), "F": draw(st.integers(0, 40)),
            "H": draw(st.integers(1, 8)), "W": draw(st.integers(1, 8)), "P": draw(st.integers(1, 10)),
            "K": draw(st.integers(0, 5))}
    values = {}
    for field in schema_of(cls):
        special = SPECIAL.get((cls.TYPE, field.name))
        if special is not None:
            values[field.name] = draw(special)
            continue
        if field.optional and draw(st.booleans()):
            values[field.name] = None
            continue
        values[field.name] = draw(_value(cls, field, dims))
    if cls.TYPE == "progress" and values["total"]:
        values["step"] = min(values["step"], values["total"])
    if cls.TYPE in ("mesh", "texture", "scene_result"):
        values["faces"] = values["faces"] % len(values["vertices"])
    if cls.TYPE == "scene_result":
        values["keyframes"] = values["keyframes"] % len(values["cameras"])
    if cls.TYPE == "scene":  # poses go with trajectory "camera" and only with it
        values["trajectory"] = "camera" if values["poses"] is not None else draw(
            st.sampled_from(SCENE_TRAJECTORIES[:-1]))
    if cls.TYPE == "mesh":
        if values["texture"] is not None and values["uvs"] is None:
            values["texture"] = None
    return cls(**values)


def _value(cls, field, dims):
    kind = field.kind
    if kind == "str":
        return st.text(max_size=min(field.max_chars, 50))
    if kind == "int":
        return st.integers(field.min_value if field.min_value is not None else -(2**40),
                           field.max_value if field.max_value is not None else 2**40)
    if kind == "float":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "bool":
        return st.booleans()
    if kind == "list[str]":
        return st.lists(st.text(max_size=20), max_size=5)
    if kind == "json":
        return JSON
    if kind == "map[str]":
        return st.dictionaries(st.text(max_size=20), st.text(max_size=min(field.max_chars, 16)), max_size=5)
    if kind == "record":
        return st.builds(field.record, **{sub.name: _value(field.record, sub, dims) for sub in schema_of(field.record)})
    if kind == "bytes":
        return st.binary(max_size=256)
    assert kind == "array"
    spec = field.array
    shape = tuple(dims[d] if isinstance(d, str) else d if isinstance(d, int) else d[-1] for d in spec.shape)
    return st.sampled_from(sorted(spec.dtypes)).flatmap(
        lambda dtype: hnp.arrays(np.dtype(dtype), shape, elements=_elements(dtype)))


def _elements(dtype: str):
    if dtype == "<f2":
        return st.floats(-1000, 1000, width=16)
    if dtype == "<f4":
        return st.floats(-1e6, 1e6, width=32)
    return None


def assert_same(a: Message, b: Message) -> None:
    assert type(a) is type(b)
    for field in schema_of(type(a)):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y, field.name


@pytest.mark.parametrize("type_name", sorted(MESSAGE_TYPES))
def test_every_message_type_round_trips(type_name):
    cls = MESSAGE_TYPES[type_name]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages(cls), st.none() | st.just("job-1") | st.text("abc123-_.:", min_size=1, max_size=64))
    def check(message, job_id):
        frames = encode(message, job_id=job_id)
        envelope = decode([bytes(f) for f in frames])
        assert isinstance(envelope, Envelope)
        assert envelope.job_id == job_id and envelope.type == type_name
        assert_same(message, envelope.message)

    check()


def test_every_wire_dtype_is_exercised_by_some_field():
    used = {d for cls in MESSAGE_TYPES.values() for f in schema_of(cls) if f.array for d in f.array.dtypes}
    assert used == WIRE_DTYPES


def test_every_symbolic_dimension_has_a_limit():
    for cls in MESSAGE_TYPES.values():
        for field in schema_of(cls):
            if field.array:
                for dim in field.array.shape:
                    if isinstance(dim, str):
                        assert dim in cls.DIM_LIMITS, f"{cls.TYPE}.{field.name}: {dim} has no limit"


def test_arrays_decode_as_zero_copy_read_only_views():
    positions = np.arange(30, dtype=np.float32).reshape(10, 3)
    from protocol import Preview

    frames = encode(Preview(step=1, positions=positions, colors=np.zeros((10, 4), np.uint8),
                            opacities=np.ones(10, np.float16), scales=np.ones((10, 3), np.float32),
                            rotations=np.zeros((10, 4), np.int8)))
    received = [bytes(f) for f in frames]
    decoded = decode(received).message
    # The array shares memory with the received frame rather than owning a copy.
    assert not decoded.positions.flags.owndata
    assert np.shares_memory(decoded.positions, np.frombuffer(received[2], np.uint8))
    assert not decoded.positions.flags.writeable
    np.testing.assert_array_equal(decoded.positions, positions)


def test_non_contiguous_and_big_endian_arrays_are_sent_as_little_endian_contiguous():
    from protocol import Mesh

    vertices = np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2]  # big-endian and strided
    faces = np.array([[0, 1, 2], [1, 2, 3]], dtype=">u4")
    mesh = Mesh(kind="final", vertices=vertices, faces=faces)
    decoded = decode(encode(mesh)).message
    np.testing.assert_array_equal(decoded.vertices, vertices)
    np.testing.assert_array_equal(decoded.faces, faces)
    assert decoded.faces.dtype.str == "<u4" and decoded.vertices.dtype.str == "<f4"


def test_message_ids_are_unique():
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    env = decode(encode(Generate(image=PNG_MAGIC, prompt="", quality="draft", seed=0), job_id="j"))
    assert env.msg_id and env.version == (2, 5) and str(env.version) == "2.5"


def test_an_enhance_and_its_result_round_trip_with_both_images_as_frames():
    reference = b"\xff\xd8\xff\xe0" + bytes(100)
    frames = encode(Enhance(image=PNG_MAGIC + bytes(50), reference=reference, seed=9, options={"fixer": "difix-ref"}),
                    job_id="job-7")
    assert len(frames) == 4  # header, body, image, reference
    envelope = decode([bytes(f) for f in frames])
    message = envelope.message
    assert isinstance(message, Enhance) and envelope.job_id == "job-7" and request_kind(message) == RequestKind.ENHANCE
    assert message.image == PNG_MAGIC + bytes(50) and message.reference == reference and message.seed == 9
    assert message.options == {"fixer": "difix-ref"} and not is_terminal(message)
    # No reference: no frame for it, and the defaults fill in what a sender leaves out.
    frames = encode(Enhance(image=PNG_MAGIC), job_id="job-8")
    assert len(frames) == 3
    assert decode(frames).message == Enhance(image=PNG_MAGIC, reference=None, seed=0, options={})

    pixels = np.random.default_rng(0).integers(0, 256, (37, 21, 4), dtype=np.uint8)
    result = EnhancedImage(image=pixels, fixer="difix", used_reference=False, seed=9, models="tiny", tiny=True)
    decoded = decode([bytes(f) for f in encode(result, job_id="job-7")]).message
    assert isinstance(decoded, EnhancedImage) and decoded.image.shape == (37, 21, 4)
    np.testing.assert_array_equal(decoded.image, pixels)
    assert (decoded.fixer, decoded.used_reference, decoded.seed, decoded.models, decoded.tiny) == \
        ("difix", False, 9, "tiny", True)
    assert is_terminal(decoded) and is_result(decoded) and request_kind(decoded) is None
    rgb = decode(encode(EnhancedImage(image=pixels[..., :3]))).message
    assert rgb.image.shape == (37, 21, 3) and rgb.fixer == "" and rgb.tiny is False


def test_each_request_kind_has_its_message_and_stage_spans():
    assert REQUEST_TYPES == {RequestKind.GENERATE: Generate, RequestKind.ENHANCE: Enhance,
                             RequestKind.TEXTURE: Texture, RequestKind.SCENE: Scene}
    assert progress_spans(RequestKind.SCENE) == {Stage.PREPROCESS: (0.0, 0.05), Stage.KEYFRAMES: (0.05, 0.95),
                                                 Stage.MESH: (0.95, 1.0)}
    assert Stage.KEYFRAMES.label == "Keyframes" and stage_of("keyframes") is Stage.KEYFRAMES
    assert progress_spans(RequestKind.ENHANCE) == {Stage.ENHANCE: (0.0, 1.0)}
    assert Stage.ENHANCE.label == "Enhance" and stage_of("enhance") is Stage.ENHANCE
    assert progress_spans(RequestKind.TEXTURE) == {Stage.UV: (0.0, 0.1), Stage.PAINT: (0.1, 0.9),
                                                   Stage.TEXTURE: (0.9, 1.0)}
    assert Stage.UV.label == "UVs" and stage_of("paint") is Stage.PAINT


def test_a_texture_request_its_previews_and_its_result_round_trip():
    rng = np.random.default_rng(1)
    vertices = rng.normal(size=(30, 3)).astype(np.float32)
    faces = rng.integers(0, 30, (40, 3)).astype(np.uint32)
    uvs = rng.random((40, 3, 2)).astype(np.float32)
    request = Texture(vertices=vertices, faces=faces, uvs=uvs, prompt="rusty iron", image=PNG_MAGIC + bytes(9),
                      seed=4, options={"views": 6})
    frames = encode(request, job_id="t-1")
    assert len(frames) == 2 + 4  # vertices, faces, uvs, image (no normals: no frame)
    message = decode([bytes(f) for f in frames]).message
    assert request_kind(message) == RequestKind.TEXTURE and not is_terminal(message)
    np.testing.assert_array_equal(message.uvs, uvs)  # kept bit for bit on the wire
    assert message.normals is None and message.prompt == "rusty iron" and message.options == {"views": 6}
    with pytest.raises(Exception, match="face indices span"):
        encode(Texture(vertices=vertices, faces=faces + 30, prompt="x"))

    preview = TexturePreview(step=1, total=10, texture=np.zeros((8, 8, 3), np.uint8), coverage=0.25, uvs=uvs)
    decoded = decode(encode(preview, job_id="t-1")).message
    assert not is_terminal(decoded) and decoded.coverage == 0.25 and decoded.uvs.shape == (40, 3, 2)
    result = PaintedTexture(texture=np.full((16, 16, 3), 7, np.uint8), uvs=None, uv_note="kept the mesh's own UVs",
                            coverage=0.99)
    decoded = decode(encode(result, job_id="t-1")).message
    assert is_terminal(decoded) and is_result(decoded) and decoded.uvs is None and decoded.texture[0, 0, 0] == 7


def test_a_scene_request_and_its_result_round_trip():
    poses = np.repeat(np.eye(4, dtype=np.float32)[None], 7, 0)
    poses[:, 0, 3] = np.arange(7)
    request = Scene(prompt="a quiet library", image=PNG_MAGIC + bytes(9), trajectory="camera", poses=poses,
                    fov_deg=50.0, quality="standard", seed=4, options={"frames": 3})
    decoded = decode([bytes(f) for f in encode(request, job_id="job-9")]).message
    assert isinstance(decoded, Scene) and request_kind(decoded) is RequestKind.SCENE
    np.testing.assert_array_equal(decoded.poses, poses)
    assert (decoded.trajectory, decoded.fov_deg, decoded.quality, decoded.options) == ("camera", 50.0, "standard",
                                                                                       {"frames": 3})
    preset = decode(encode(Scene(prompt="x"))).message
    assert preset.trajectory == "orbit" and preset.poses is None and preset.quality == "draft"
    with pytest.raises(ProtocolError, match="camera poses go with trajectory 'camera'"):
        encode(Scene(prompt="x", poses=poses))
    with pytest.raises(ProtocolError, match="unknown trajectory"):
        encode(Scene(prompt="x", trajectory="spiral"))
    result = SceneResult(vertices=np.zeros((3, 3), np.float32), faces=np.array([[0, 1, 2]], np.uint32),
                         vertex_colors=np.full((3, 3), 9, np.uint8), cameras=poses,
                         keyframes=np.array([0, 3, 6], np.int32), fov_deg=50.0, gaussians=12)
    back = decode(encode(result, job_id="job-9")).message
    assert isinstance(back, SceneResult) and is_terminal(back) and is_result(back)
    np.testing.assert_array_equal(back.cameras, poses)
    assert back.keyframes.tolist() == [0, 3, 6] and back.gaussians == 12
    with pytest.raises(ProtocolError, match="keyframe indices"):
        encode(SceneResult(vertices=result.vertices, faces=result.faces, vertex_colors=result.vertex_colors,
                           cameras=poses, keyframes=np.array([0, 7], np.int32)))
