import numpy as np
import pytest
import trimesh
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from backend.geometry.uv_atlas import unwrap


def _icosphere(subdivisions):
    s = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(s.vertices, np.float32), np.asarray(s.faces, np.int64)


def _rasterise(uvs, faces, resolution):
    """Texel-centre coverage: [F] lists of flat texel indices (row 0 = top, v up) inside each face."""
    texels = []
    for tri in uvs[faces] * resolution:
        lo = np.floor(tri.min(0)).astype(int)
        hi = np.ceil(tri.max(0)).astype(int)
        xs, ys = np.meshgrid(np.arange(lo[0], hi[0]) + 0.5, np.arange(lo[1], hi[1]) + 0.5)
        p = np.stack([xs.ravel(), ys.ravel()], 1)
        a, b, c = tri
        area = np.cross(b - a, c - a)
        w0, w1, w2 = (np.cross(q - p0, p - p0) / area for p0, q in ((b, c), (c, a), (a, b)))
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        cols, rows = p[inside, 0].astype(int), resolution - 1 - p[inside, 1].astype(int)
        texels.append(rows * resolution + cols)
    return texels


def _charts(faces, n_vertices):  # [F] chart id: faces sharing a (seam-split) vertex are one chart
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_vertices, n_vertices))
    return connected_components(graph, directed=False)[1][faces[:, 0]]


def test_unwrap_a_sphere_keeps_the_surface_and_fills_the_unit_square():
    v, f = _icosphere(3)
    m = unwrap(v, f, resolution=256)
    assert m.faces.shape == f.shape and m.faces.dtype == np.int64 and m.uvs.dtype == np.float32
    assert np.array_equal(m.vertices, v[m.source_vertex])
    assert np.allclose(m.vertices[m.faces], v[f])  # every face keeps its corners (seams only split vertices)
    assert m.uvs.min() >= 0 and m.uvs.max() <= 1
    a, b, c = (m.uvs[m.faces[:, i]] for i in range(3))
    uv_area = np.abs(np.cross(b - a, c - a))
    assert (uv_area > 0).all() and 0.3 < m.utilization <= 1.0
    # Texel density is even: UV area over 3D area varies little across the faces.
    xyz_area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    ratio = uv_area / xyz_area
    assert np.percentile(ratio, 95) / np.percentile(ratio, 5) < 2.0


def test_charts_do_not_overlap_and_keep_their_padding():
    v, f = _icosphere(2)
    resolution, padding = 128, 2
    m = unwrap(v, f, resolution=resolution, padding=padding)
    texels = _rasterise(m.uvs, m.faces, resolution)
    counts = np.bincount(np.concatenate(texels), minlength=resolution**2)
    assert counts.sum() > 0.3 * resolution**2
    assert (counts > 1).sum() <= 0.002 * (counts > 0).sum()  # only texel centres on shared edges
    chart = _charts(m.faces, len(m.vertices))
    assert chart.max() > 0  # several charts, so padding means something
    owner = np.full(resolution**2, -1)
    for face_texels, c in zip(texels, chart):
        owner[face_texels] = c
    owner = owner.reshape(resolution, resolution)
    # xatlas grows each chart by the texels a bilinear lookup reaches (1) and then by `padding`,
    # and packs the grown charts without overlap: two charts' texels are more than
    # 2·(padding + 1) texels apart, if one UV unit is exactly `resolution` texels.
    for c in range(chart.max() + 1):
        halo = ndimage.binary_dilation(owner == c, np.ones((3, 3), bool), iterations=2 * (padding + 1))
        assert not ((owner >= 0) & (owner != c) & halo).any(), f"chart {c} is too close to another"


def test_a_planar_rectangle_keeps_its_shape():
    v = np.array([[0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    m = unwrap(v, f, resolution=128)
    # A similarity: every UV distance is the 3D distance times one factor.
    i, j = np.triu_indices(len(m.vertices), 1)
    uv_length = np.linalg.norm(m.uvs[i] - m.uvs[j], axis=1)
    scale = uv_length / np.linalg.norm(m.vertices[i] - m.vertices[j], axis=1)
    assert scale.max() / scale.min() == pytest.approx(1.0, abs=0.03)
    extent = m.uvs.max(0) - m.uvs.min(0)
    assert max(extent) / min(extent) == pytest.approx(2.0, rel=0.03)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="empty"):
        unwrap(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))
    v, f = _icosphere(1)
    with pytest.raises(ValueError, match="decimate"):
        unwrap(v, f, max_faces=50)
    with pytest.raises(ValueError, match="face indices"):
        unwrap(v, f + 1000)


def test_a_texture_too_small_for_the_padding_still_gets_an_atlas(caplog):
    v, f = _icosphere(3)
    with caplog.at_level("WARNING", logger="backend.geometry.uv_atlas"):
        m = unwrap(v, f, resolution=16, padding=2)
    assert "padding shrinks" in caplog.text
    assert m.uvs.min() >= 0 and m.uvs.max() <= 1 and np.allclose(m.vertices[m.faces], v[f])
