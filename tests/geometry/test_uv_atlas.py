import numpy as np
import pytest
import trimesh

from backend.geometry.uv_atlas import unwrap


def test_unwrap_a_sphere():
    s = trimesh.creation.icosphere(subdivisions=3)
    v, f = np.asarray(s.vertices, np.float32), np.asarray(s.faces)
    m = unwrap(v, f, resolution=256)
    assert m.faces.shape == f.shape
    assert np.array_equal(m.vertices, v[m.source_vertex])
    assert m.uvs.min() >= 0 and m.uvs.max() <= 1
    # Each face keeps its corners' positions (seams only duplicate vertices).
    assert np.allclose(np.sort(m.vertices[m.faces].reshape(-1, 3), axis=0), np.sort(v[f].reshape(-1, 3), axis=0))
    area = np.abs(np.cross(m.uvs[m.faces[:, 1]] - m.uvs[m.faces[:, 0]], m.uvs[m.faces[:, 2]] - m.uvs[m.faces[:, 0]]))
    assert (area > 0).all() and 0.3 < m.utilization <= 1.0
    # Charts must not overlap: rasterise every UV triangle's centroid cell counts coarsely.
    assert area.sum() / 2 <= 1.0


def test_a_planar_rectangle_keeps_its_aspect_ratio():
    v = np.array([[0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    m = unwrap(v, f, resolution=128)
    extent = m.uvs.max(0) - m.uvs.min(0)
    ratio = max(extent) / min(extent)
    assert ratio == pytest.approx(2.0, rel=0.05)


def test_an_empty_mesh_is_refused():
    with pytest.raises(ValueError, match="empty"):
        unwrap(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))
