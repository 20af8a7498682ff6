import numpy as np
import pytest
import trimesh

from backend.geometry.mesh_cleanup import clean_mesh, decimate, vertex_normals


def _sphere(subdivisions=4, radius=1.0, offset=(0.0, 0.0, 0.0)):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(s.vertices + offset, np.float32), np.asarray(s.faces, np.int64)


def test_clean_keeps_the_object_and_drops_junk():
    v, f = _sphere()
    blob_v, blob_f = _sphere(subdivisions=1, radius=0.05, offset=(3.0, 0.0, 0.0))
    vertices = np.concatenate([v, blob_v, v[:5]])  # duplicated vertices at the end
    degenerate = np.array([[0, 0, 1], [2, 3, 2]])
    faces = np.concatenate([f, blob_f + len(v), degenerate, f[:10]])  # plus duplicate faces
    cv, cf = clean_mesh(vertices, faces)
    assert len(cf) == len(f) and len(cv) == len(v)
    assert np.linalg.norm(cv, axis=1).max() < 1.01  # the far blob is gone
    assert trimesh.Trimesh(cv, cf).is_watertight


def test_keep_fraction_keeps_comparable_components():
    v1, f1 = _sphere(subdivisions=2)
    v2, f2 = _sphere(subdivisions=2, offset=(3.0, 0.0, 0.0))
    cv, cf = clean_mesh(np.concatenate([v1, v2]), np.concatenate([f1, f2 + len(v1)]), keep_fraction=0.5)
    assert len(cf) == len(f1) + len(f2)


def test_decimate_hits_the_target_and_keeps_the_shape():
    v, f = _sphere(subdivisions=5)  # 20,480 faces
    dv, df = decimate(v, f, 5000)
    assert abs(len(df) - 5000) <= 0.05 * 5000
    assert np.abs(np.linalg.norm(dv, axis=1) - 1.0).max() < 0.02
    same_v, same_f = decimate(v, f, 50_000)
    assert len(same_f) == len(f)
    with pytest.raises(ValueError):
        decimate(v, f, 2)


def test_vertex_normals_point_outwards_on_a_sphere():
    v, f = _sphere(subdivisions=3)
    n = vertex_normals(v, f)
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    assert (np.einsum("ij,ij->i", n, v / np.linalg.norm(v, axis=1, keepdims=True)) > 0.99).all()


def test_empty_mesh_is_refused():
    with pytest.raises(ValueError, match="no faces"):
        clean_mesh(np.zeros((3, 3), np.float32), np.zeros((0, 3), np.int64))
