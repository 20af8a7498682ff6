import io
import json
import os
import struct

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.geometry import export
from backend.geometry.export import export_glb, mesh_arrays
from backend.geometry.uv_atlas import unwrap
from protocol import Mesh, decode, encode


def _quad_mesh():
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]], np.float32)  # upright in Blender's Z-up world
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0.1, 0.2], [0.9, 0.2], [0.9, 0.8], [0.1, 0.8]], np.float32)
    texture = (np.random.default_rng(0).random((16, 8, 3)) * 255).astype(np.uint8)
    return v, f, uv, texture


def _cube_with_seams():
    box = trimesh.creation.box()
    m = unwrap(np.asarray(box.vertices, np.float32), np.asarray(box.faces), resolution=64)
    texture = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    return m, texture


def _read_glb(path):
    """(glTF JSON, {accessor index: array}) straight from the file, without trimesh."""
    data = path.read_bytes()
    magic, _, _ = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF"
    json_len, _ = struct.unpack_from("<II", data, 12)
    gltf = json.loads(data[20:20 + json_len])
    bin_start = 20 + json_len + 8
    types = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}
    dtypes = {5126: np.float32, 5125: np.uint32}
    arrays = {}
    for i, acc in enumerate(gltf["accessors"]):
        view = gltf["bufferViews"][acc["bufferView"]]
        start = bin_start + view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        count = acc["count"] * types[acc["type"]]
        arrays[i] = np.frombuffer(data, dtypes[acc["componentType"]], count, start).reshape(acc["count"], -1)
    return gltf, arrays, data[bin_start:]


def test_glb_round_trip_keeps_uvs_texture_and_orientation(tmp_path):
    m, texture = _cube_with_seams()
    path = export_glb(tmp_path / "asset.glb", m.vertices, m.faces, m.uvs, texture)
    loaded = trimesh.load(path, force="mesh")
    assert len(loaded.vertices) == len(m.vertices) and len(loaded.faces) == len(m.faces)
    assert np.allclose(loaded.visual.uv, m.uvs, atol=1e-6)
    image = np.asarray(loaded.visual.material.baseColorTexture.convert("RGB"))
    assert np.array_equal(image, texture)
    # glTF is Y-up: Blender's (x, y, z) becomes (x, z, −y).
    assert np.allclose(loaded.vertices, m.vertices[:, [0, 2, 1]] * [1, 1, -1], atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["asset.glb"]
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_file_itself_follows_gltf_conventions(tmp_path):
    """TEXCOORD_0 has its origin at the top-left, like the image rows: the texel an artist's
    (u, v) names in our texture (row ⌊(1 − v)·H⌋) is the texel glTF's (u, 1 − v) names in the
    embedded image (row ⌊v_gltf·H⌋)."""
    v, f, uv, texture = _quad_mesh()
    normals = np.tile([[0.0, -1.0, 0.0]], (4, 1))
    path = export_glb(tmp_path / "quad.glb", v, f, uv, texture, normals=normals)
    gltf, arrays, _ = _read_glb(path)
    attributes = gltf["meshes"][0]["primitives"][0]["attributes"]
    gltf_uv = arrays[attributes["TEXCOORD_0"]]
    assert np.allclose(gltf_uv, np.stack([uv[:, 0], 1 - uv[:, 1]], 1), atol=1e-7)
    assert np.allclose(arrays[attributes["NORMAL"]], [[0.0, 0.0, 1.0]] * 4)  # −Y (towards the front) → +Z
    image_index = gltf["textures"][0]["source"]
    view = gltf["bufferViews"][gltf["images"][image_index]["bufferView"]]
    _, _, binary = _read_glb(path)
    embedded = np.asarray(Image.open(io.BytesIO(binary[view.get("byteOffset", 0):][:view["byteLength"]])))
    h, w = texture.shape[:2]
    ours = texture[((1 - uv[:, 1]) * h).astype(int), (uv[:, 0] * w).astype(int)]
    theirs = embedded[(gltf_uv[:, 1] * h).astype(int), (gltf_uv[:, 0] * w).astype(int)]
    assert np.array_equal(ours, theirs)
    assert "NORMAL" not in _read_glb(export_glb(tmp_path / "plain.glb", v, f, uv, texture))[0]["meshes"][0][
        "primitives"][0]["attributes"]


def test_an_rgba_texture_keeps_its_alpha(tmp_path):
    v, f, uv, texture = _quad_mesh()
    rgba = np.concatenate([texture, np.full(texture.shape[:2] + (1,), 128, np.uint8)], axis=2)
    path = export_glb(tmp_path / "glass.glb", v, f, uv, rgba)
    material = trimesh.load(path, force="mesh").visual.material
    assert np.array_equal(np.asarray(material.baseColorTexture), rgba)
    assert _read_glb(path)[0]["materials"][0]["alphaMode"] == "BLEND"


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    v, f, uv, texture = _quad_mesh()
    with pytest.raises(ValueError, match="uint8"):
        export_glb(tmp_path / "bad.glb", v, f, uv, texture.astype(np.float32))
    with pytest.raises(ValueError, match="uvs"):
        export_glb(tmp_path / "bad.glb", v, f, uv[:3], texture)
    with pytest.raises(OSError):
        export_glb(tmp_path / "missing-dir" / "x.glb", v, f, uv, texture)
    assert list(tmp_path.iterdir()) == []
    # A failure after the data is written (here: the rename) leaves an older file untouched.
    target = tmp_path / "asset.glb"
    target.write_bytes(b"previous")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(export.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        export_glb(target, v, f, uv, texture)
    assert [p.name for p in tmp_path.iterdir()] == ["asset.glb"] and target.read_bytes() == b"previous"


def test_mesh_arrays_travel_through_the_protocol():
    v, f, uv, texture = _quad_mesh()
    normals = np.tile([[0.0, -1.0, 0.0]], (4, 1))
    arrays = mesh_arrays(np.asfortranarray(v.astype(np.float64)), f.astype(np.int64), uvs=uv, normals=normals,
                         texture=texture[:, ::-1])
    assert {k: a.dtype for k, a in arrays.items()} == {"vertices": np.float32, "faces": np.uint32,
                                                       "uvs": np.float32, "normals": np.float32,
                                                       "texture": np.uint8}
    assert all(a.flags.c_contiguous for a in arrays.values())
    message = decode(encode(Mesh(kind="final", **arrays))).message
    assert np.array_equal(message.vertices, v) and np.array_equal(message.faces, f)
    assert np.array_equal(message.uvs, uv) and np.array_equal(message.normals, normals)
    assert np.array_equal(message.texture, texture[:, ::-1])
    geometry_only = mesh_arrays(v, f)
    assert set(geometry_only) == {"vertices", "faces"}
    decode(encode(Mesh(kind="geometry", **geometry_only)))
    with pytest.raises(ValueError, match="normals"):
        mesh_arrays(v, f, normals=normals[:2])
