import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from backend.geometry.mesh_cleanup import clean_mesh, decimate, signed_volume, vertex_normals


def _sphere(subdivisions=4, radius=1.0, offset=(0.0, 0.0, 0.0)):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(s.vertices + offset, np.float32), np.asarray(s.faces, np.int64)


def _surface_samples(vertices, faces, count, seed):
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return points


def test_clean_keeps_the_object_and_drops_junk():
    v, f = _sphere()
    blob_v, blob_f = _sphere(subdivisions=1, radius=0.05, offset=(3.0, 0.0, 0.0))
    # The first five vertices again at the end, used by the first ten faces: the same faces twice
    # once the duplicates merge.
    vertices = np.concatenate([v, blob_v, v[:5]])
    extra = len(v) + len(blob_v)
    remap = np.arange(len(v))
    remap[:5] = extra + np.arange(5)
    degenerate = np.array([[0, 0, 1], [2, 3, 2]])
    faces = np.concatenate([f, blob_f + len(v), degenerate, remap[f[:10]], f[10:20, ::-1]])
    cv, cf = clean_mesh(vertices, faces)
    assert len(cf) == len(f) and len(cv) == len(v)
    assert np.linalg.norm(cv, axis=1).max() < 1.01  # the far blob is gone
    assert np.array_equal(np.unique(cf), np.arange(len(cv)))  # no unreferenced vertices
    mesh = trimesh.Trimesh(cv, cf, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert signed_volume(cv, cf) > 0


def test_min_fraction_keeps_comparable_components():
    v1, f1 = _sphere(subdivisions=2)
    v2, f2 = _sphere(subdivisions=2, offset=(3.0, 0.0, 0.0))
    v3, f3 = _sphere(subdivisions=1, offset=(-3.0, 0.0, 0.0))  # a quarter of the faces
    vertices = np.concatenate([v1, v2, v3])
    faces = np.concatenate([f1, f2 + len(v1), f3 + len(v1) + len(v2)])
    assert len(clean_mesh(vertices, faces, min_fraction=0.5)[1]) == len(f1) + len(f2)
    assert len(clean_mesh(vertices, faces, min_fraction=0.2)[1]) == len(faces)
    with pytest.raises(ValueError, match="min_fraction"):
        clean_mesh(vertices, faces, min_fraction=0.0)


def test_clean_turns_an_inside_out_mesh_outwards_and_fixes_stray_windings():
    v, f = _sphere(subdivisions=3)
    flipped = f[:, ::-1].copy()
    cv, cf = clean_mesh(v, flipped)
    assert signed_volume(cv, cf) > 0
    mixed = f.copy()
    mixed[::7] = mixed[::7, ::-1]
    cv, cf = clean_mesh(v, mixed)
    assert trimesh.Trimesh(cv, cf, process=False).is_winding_consistent and signed_volume(cv, cf) > 0


def test_clean_keeps_a_cavity_facing_into_the_cavity():
    outer_v, outer_f = _sphere(subdivisions=3)
    inner_v, inner_f = _sphere(subdivisions=3, radius=0.5)
    vertices = np.concatenate([outer_v, inner_v])
    faces = np.concatenate([outer_f, inner_f[:, ::-1] + len(outer_v)])  # inner wall faces the cavity
    cv, cf = clean_mesh(vertices, faces, min_fraction=0.5)
    normals = vertex_normals(cv, cf)
    radial = np.einsum("ij,ij->i", normals, cv / np.linalg.norm(cv, axis=1, keepdims=True))
    inner = np.linalg.norm(cv, axis=1) < 0.75
    assert (radial[inner] < -0.99).all() and (radial[~inner] > 0.99).all()


def test_decimate_hits_the_target_and_keeps_the_shape():
    torus = trimesh.creation.torus(0.6, 0.2, major_sections=128, minor_sections=64)  # 16,384 faces
    v, f = np.asarray(torus.vertices, np.float32), np.asarray(torus.faces, np.int64)
    dv, df = decimate(v, f, 3000)
    assert abs(len(df) - 3000) <= 0.05 * 3000
    # Both halves of a Hausdorff distance: the decimated surface to the exact torus, and every
    # original vertex to dense samples of the decimated surface (sampling adds ≲ 0.003).
    samples = _surface_samples(dv, df, 200_000, seed=0)
    to_torus = np.abs(np.hypot(np.hypot(samples[:, 0], samples[:, 1]) - 0.6, samples[:, 2]) - 0.2)
    assert to_torus.max() < 0.01  # < 1 % of the torus's 1.6 width
    assert cKDTree(samples).query(v)[0].max() < 0.012
    assert trimesh.Trimesh(dv, df, process=False).is_watertight


def test_decimate_is_a_no_op_below_the_target():
    v, f = _sphere(subdivisions=2)
    same_v, same_f = decimate(v, f, 50_000)
    assert np.array_equal(same_v, v) and np.array_equal(same_f, f)
    assert same_v.dtype == np.float32 and same_f.dtype == np.int64
    with pytest.raises(ValueError, match="at least 4"):
        decimate(v, f, 2)


def test_vertex_normals_point_outwards_on_a_sphere():
    v, f = _sphere(subdivisions=3)
    n = vertex_normals(v, f)
    assert n.dtype == np.float32 and n.shape == v.shape
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    assert (np.einsum("ij,ij->i", n, v / np.linalg.norm(v, axis=1, keepdims=True)) > 0.99).all()
    lonely = vertex_normals(np.concatenate([v, np.ones((1, 3), np.float32)]), f)
    assert np.array_equal(lonely[-1], np.zeros(3))  # a vertex no face uses gets no direction


def test_bad_meshes_are_refused():
    with pytest.raises(ValueError, match="no faces"):
        clean_mesh(np.zeros((3, 3), np.float32), np.zeros((0, 3), np.int64))
    with pytest.raises(ValueError, match="face indices"):
        clean_mesh(np.zeros((3, 3), np.float32), np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match=r"\[V, 3\]"):
        decimate(np.zeros((3, 2), np.float32), np.array([[0, 1, 2]]), 10)
    with pytest.raises(ValueError, match="degenerate"):
        clean_mesh(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]]))
