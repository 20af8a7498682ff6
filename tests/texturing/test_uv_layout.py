"""The mesh's own UVs are kept bit for bit when they can hold a texture, and replaced (with a note
saying why) when they cannot: none, overlapping, tiled outside 0..1, NaN, collapsed."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.geometry.uv_atlas import unwrap
from backend.texturing.mesh_input import check_mesh
from backend.texturing.uv_layout import layout, overlap_ratio, split_by_corner_uvs, uv_problem


@pytest.fixture(scope="module")
def sphere():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    vertices, faces = np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)
    atlas = unwrap(vertices, faces, resolution=512)
    assert np.array_equal(atlas.source_vertex[atlas.faces], faces)  # xatlas keeps the triangles' order
    corner_uvs = atlas.uvs[atlas.faces].astype(np.float32)
    # An artist's UVs are not on a texel grid: nudge them by amounts float32 can hold exactly.
    corner_uvs = corner_uvs * np.float32(0.999) + np.float32(1e-4)
    return vertices, faces, corner_uvs


def test_good_uvs_are_kept_bit_for_bit(sphere):
    vertices, faces, corner_uvs = sphere
    result = layout(check_mesh(vertices, faces, corner_uvs), 512)
    assert result.kept and result.note == "kept the mesh's own UVs"
    assert result.corner_uvs.tobytes() == corner_uvs.tobytes()
    # The split-vertex mesh the texture is painted on carries exactly those UVs at every corner.
    assert result.uvs[result.faces].tobytes() == corner_uvs.tobytes()
    assert np.array_equal(result.source_vertex[result.faces], faces)
    assert overlap_ratio(corner_uvs) == pytest.approx(1.0, abs=0.03)


def test_splitting_shares_vertices_only_where_the_uv_is_the_same():
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    same = np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], np.float32)
    source, split_faces, uvs = split_by_corner_uvs(faces, same)
    assert len(source) == 4 and np.array_equal(uvs[split_faces], same)
    seam = same.copy()
    seam[1, 0] = [0.5, 0.5]  # vertex 0 has two UVs: a seam
    source, split_faces, uvs = split_by_corner_uvs(faces, seam)
    assert len(source) == 5 and sorted(source.tolist()) == [0, 0, 1, 2, 3] and np.array_equal(uvs[split_faces], seam)


@pytest.mark.parametrize("damage, reason", [
    ("none", "no UVs"),
    ("mirrored", "overlap"),
    ("tiled", "outside 0..1"),
    ("nan", "NaN"),
    ("collapsed", "no area"),
])
def test_unusable_uvs_are_replaced_with_a_reason(sphere, damage, reason):
    vertices, faces, corner_uvs = sphere
    uvs = corner_uvs.copy()
    if damage == "none":
        uvs = None
    elif damage == "mirrored":  # the second half of the triangles reuses the first half's texture space
        half = len(uvs) // 2
        uvs[half:2 * half] = uvs[:half]
    elif damage == "tiled":
        uvs[:10] += 1.0
    elif damage == "nan":
        uvs[5, 1, 0] = np.nan
    elif damage == "collapsed":
        uvs[: len(uvs) // 4] = 0.25
    mesh = check_mesh(vertices, faces, uvs)
    assert reason in (uv_problem(mesh) or "")
    result = layout(mesh, 512)
    assert not result.kept and result.note.startswith("unwrapped with xatlas: ") and reason in result.note
    assert result.corner_uvs.shape == (len(faces), 3, 2) and np.isfinite(result.corner_uvs).all()
    assert result.corner_uvs.min() >= 0 and result.corner_uvs.max() <= 1
    assert overlap_ratio(result.corner_uvs) < 1.03 and np.array_equal(result.source_vertex[result.faces], faces)
