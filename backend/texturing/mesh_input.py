"""The mesh of a `texture` request, checked: every way a mesh cannot be textured gets a message
that names the problem and a hint that says what to do in Blender."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocol.limits import MAX_TEXTURE_REQUEST_FACES


class MeshInputError(ValueError):
    """`code` is the protocol's failure code: too_large for a mesh over the size limit, else
    invalid_request."""

    def __init__(self, message: str, hint: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


@dataclass(frozen=True)
class PaintMesh:
    vertices: np.ndarray  # [V, 3] float32, the object's own space (+Z up)
    faces: np.ndarray  # [F, 3] int64
    corner_uvs: np.ndarray | None  # [F, 3, 2] float32 per face corner (origin bottom-left), as sent
    normals: np.ndarray | None  # [V, 3] float32 or None

    @property
    def radius(self) -> float:
        """Half the bounding box's diagonal: the camera framing's scale."""
        lo, hi = self.vertices.min(0), self.vertices.max(0)
        return float(np.linalg.norm(hi - lo) / 2)

    @property
    def centre(self) -> np.ndarray:  # [3]
        return (self.vertices.min(0) + self.vertices.max(0)) / 2


def check_mesh(vertices: np.ndarray, faces: np.ndarray, corner_uvs: np.ndarray | None = None,
               normals: np.ndarray | None = None, *, max_faces: int = MAX_TEXTURE_REQUEST_FACES) -> PaintMesh:
    """The arrays as a PaintMesh, or MeshInputError. UVs are not judged here (unusable UVs are
    replaced, see `uv_layout`); normals that do not fit the vertices are dropped (they are
    recomputed)."""
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise MeshInputError(f"the mesh arrays have the wrong shape: vertices {vertices.shape}, faces {faces.shape}",
                             "Send vertices [V, 3] and triangles [F, 3].")
    if len(faces) == 0:
        raise MeshInputError("the mesh has no faces: there is no surface to texture",
                             "Texture a mesh with faces (a point cloud or loose edges cannot hold a texture).")
    if len(faces) > max_faces:
        raise MeshInputError(f"the mesh has {len(faces):,} triangles; texturing takes at most {max_faces:,}",
                             "Decimate it first (Decimate modifier, applied), or texture a lower-resolution "
                             "version and bake the texture onto the dense one.", code="too_large")
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise MeshInputError(f"{int(bad.sum()):,} of the mesh's {len(vertices):,} vertices have NaN or infinite "
                             "coordinates", "Fix or delete those vertices (Select > Select All by Trait > "
                             "Non Manifold, or Mesh > Clean Up), then try again.")
    if faces.dtype.kind not in "iu":
        raise MeshInputError(f"face indices must be integers, got {faces.dtype}", "Send integer triangle indices.")
    faces = faces.astype(np.int64)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshInputError(f"face indices span [{faces.min()}, {faces.max()}] but there are {len(vertices)} vertices",
                             "Send triangles that index the vertices sent.")
    vertices = vertices.astype(np.float32)
    corners = vertices[faces]
    areas = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    if not (areas > 0).any():
        raise MeshInputError("every face of the mesh has zero area", "Texture a mesh with a surface "
                             "(Mesh > Clean Up > Merge by Distance may have collapsed it).")
    if corner_uvs is not None:
        corner_uvs = np.asarray(corner_uvs, np.float32)
        if corner_uvs.shape != (len(faces), 3, 2):
            raise MeshInputError(f"the UVs have shape {corner_uvs.shape}; one (u, v) per face corner is "
                                 f"{(len(faces), 3, 2)}", "Send UVs per triangle corner, or none.")
    if normals is not None:
        normals = np.asarray(normals, np.float32)
        if normals.shape != vertices.shape or not np.isfinite(normals).all():
            normals = None
    return PaintMesh(vertices, faces, corner_uvs, normals)

