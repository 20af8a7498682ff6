import numpy as np
import pytest
import trimesh

from backend.geometry.export import export_glb, mesh_arrays
from protocol import Mesh, decode, encode


def _quad_mesh():
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]], np.float32)  # upright in Blender's Z-up world
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0.1, 0.2], [0.9, 0.2], [0.9, 0.8], [0.1, 0.8]], np.float32)
    texture = (np.random.default_rng(0).random((16, 8, 3)) * 255).astype(np.uint8)
    return v, f, uv, texture


def test_glb_round_trip_keeps_uvs_texture_and_orientation(tmp_path):
    v, f, uv, texture = _quad_mesh()
    path = export_glb(tmp_path / "asset.glb", v, f, uv, texture)
    loaded = trimesh.load(path, force="mesh")
    assert len(loaded.vertices) == 4 and len(loaded.faces) == 2
    assert np.allclose(loaded.visual.uv, uv, atol=1e-6)
    image = np.asarray(loaded.visual.material.baseColorTexture.convert("RGB"))
    assert np.array_equal(image, texture)
    # glTF is Y-up: Blender's +Z becomes +Y.
    assert np.allclose(loaded.vertices[:, 1], v[:, 2]) and np.allclose(loaded.vertices[:, 2], -v[:, 1])
    assert not [p for p in tmp_path.iterdir() if p.name != "asset.glb"]


def test_failed_export_leaves_nothing_behind(tmp_path):
    v, f, uv, texture = _quad_mesh()
    with pytest.raises(ValueError, match="uint8"):
        export_glb(tmp_path / "bad.glb", v, f, uv, texture.astype(np.float32))
    with pytest.raises(OSError):
        export_glb(tmp_path / "missing-dir" / "x.glb", v, f, uv, texture)
    assert list(tmp_path.iterdir()) == []


def test_mesh_arrays_travel_through_the_protocol():
    v, f, uv, texture = _quad_mesh()
    normals = np.tile([[0.0, -1.0, 0.0]], (4, 1))
    arrays = mesh_arrays(v.astype(np.float64), f, uvs=uv, normals=normals, texture=texture)
    assert arrays["faces"].dtype == np.uint32 and arrays["vertices"].dtype == np.float32
    message = decode(encode(Mesh(kind="final", **arrays)))
    assert np.array_equal(message.message.faces, f)
    assert np.array_equal(message.message.texture, texture)
