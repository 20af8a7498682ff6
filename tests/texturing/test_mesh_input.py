"""Meshes that cannot be textured are refused with a message naming the problem and a hint."""

from __future__ import annotations

import re

import numpy as np
import pytest
import trimesh

from backend.texturing.mesh_input import MeshInputError, check_mesh


def box():
    mesh = trimesh.creation.box()
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)


def test_a_plain_mesh_passes_with_its_arrays_typed():
    vertices, faces = box()
    mesh = check_mesh(vertices, faces.astype(np.uint32))
    assert mesh.faces.dtype == np.int64 and mesh.vertices.dtype == np.float32 and mesh.corner_uvs is None
    assert mesh.radius == pytest.approx(np.sqrt(3) / 2) and np.allclose(mesh.centre, 0)


@pytest.mark.parametrize("case, message, hint", [
    ("no faces", "has no faces", "point cloud"),
    ("nan vertex", "NaN or infinite", "Clean Up"),
    ("too many faces", "texturing takes at most 10", "Decimate"),
    ("index out of range", "face indices span", "index the vertices"),
    ("zero area", "zero area", "Merge by Distance"),
    ("uv shape", "one (u, v) per face corner", "per triangle corner"),
])
def test_bad_meshes_are_refused_with_what_to_do(case, message, hint):
    vertices, faces = box()
    uvs, max_faces = None, 100
    if case == "no faces":
        faces = faces[:0]
    elif case == "nan vertex":
        vertices[3] = np.nan
    elif case == "too many faces":
        max_faces = 10
    elif case == "index out of range":
        faces[0, 0] = len(vertices)
    elif case == "zero area":
        vertices[:] = 1.0
    elif case == "uv shape":
        uvs = np.zeros((len(faces), 2), np.float32)
    with pytest.raises(MeshInputError, match=re.escape(message)) as info:
        check_mesh(vertices, faces, uvs, max_faces=max_faces)
    assert hint in info.value.hint
    assert info.value.code == ("too_large" if case == "too many faces" else "invalid_request")


def test_normals_that_do_not_fit_are_dropped_not_fatal():
    vertices, faces = box()
    assert check_mesh(vertices, faces, normals=np.zeros((3, 3), np.float32)).normals is None
    nan_normals = np.ones_like(vertices)
    nan_normals[0] = np.nan
    assert check_mesh(vertices, faces, normals=nan_normals).normals is None
