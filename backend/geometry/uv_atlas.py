"""UV atlas with xatlas (MIT). UVs have their origin at the bottom-left, like Blender and OBJ."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import xatlas

log = logging.getLogger(__name__)

# xatlas's time grows superlinearly with the face count (5 s at 20k faces on 2 cores); the
# pipeline decimates first, and anything far above this is almost certainly a mistake.
LARGE_MESH_FACES = 200_000


@dataclass
class UVMesh:
    vertices: np.ndarray  # [V', 3] float32, seams split into separate vertices
    faces: np.ndarray  # [F, 3] int64 into the V' vertices
    uvs: np.ndarray  # [V', 2] float32 in [0, 1]
    source_vertex: np.ndarray  # [V'] int64, index of each vertex in the input mesh
    utilization: float  # fraction of the square [0, 1]² UV space covered by charts


def unwrap(vertices: np.ndarray, faces: np.ndarray, *, resolution: int = 1024, padding: int = 2) -> UVMesh:
    """Cut the mesh into charts and pack them into one square atlas of `resolution` texels with
    `padding` texels between charts (bilinear-safe)."""
    vertices, faces = np.asarray(vertices, np.float32), np.asarray(faces)
    if len(faces) == 0 or len(vertices) == 0:
        raise ValueError("cannot unwrap an empty mesh")
    if len(faces) > LARGE_MESH_FACES:
        log.warning("unwrapping %d faces takes xatlas a long time; decimate the mesh first", len(faces))
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices, faces.astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution, pack.padding, pack.bilinear = resolution, padding, True
    atlas.generate(pack_options=pack)
    source, new_faces, uvs = atlas[0]
    source = source.astype(np.int64)
    # xatlas crops its atlas to the used, generally non-square area and normalises u and v by
    # width and height separately; rescale both by the longer side so charts keep their shape
    # on a square texture.
    side = max(atlas.width, atlas.height)
    uvs = uvs * np.array([atlas.width, atlas.height], np.float32) / side
    utilization = float(atlas.utilization) * atlas.width * atlas.height / side**2
    return UVMesh(vertices[source], new_faces.astype(np.int64), uvs.astype(np.float32), source, utilization)
