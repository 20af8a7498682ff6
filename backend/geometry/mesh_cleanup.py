"""Mesh clean-up after marching cubes: merge, drop junk, keep the object, decimate.

All functions take and return numpy arrays (vertices [V,3] float32, faces [F,3] int64).
"""

from __future__ import annotations

import numpy as np
import trimesh


def _as_trimesh(vertices: np.ndarray, faces: np.ndarray, process: bool) -> trimesh.Trimesh:
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"need vertices [V, 3] and faces [F, 3], got {vertices.shape} and {faces.shape}")
    if len(faces) == 0:
        raise ValueError("the mesh has no faces")
    return trimesh.Trimesh(vertices, faces, process=process)


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, *, keep_fraction: float = 1.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Merge duplicate vertices, drop degenerate and duplicate faces and unreferenced vertices, and
    keep connected components with at least `keep_fraction` of the largest one's faces (1.0:
    the largest only, which also drops the inner wall of a hollow shell of Gaussians)."""
    mesh = _as_trimesh(vertices, faces, process=True)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        largest = max(len(p.faces) for p in parts)
        mesh = trimesh.util.concatenate([p for p in parts if len(p.faces) >= keep_fraction * largest])
    trimesh.repair.fix_normals(mesh)  # consistent winding, outward for closed surfaces
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge collapse (fast-simplification, MIT) to about `target_faces`; no-op below it."""
    import fast_simplification

    if target_faces < 4:
        raise ValueError(f"target face count must be at least 4, got {target_faces}")
    if len(faces) <= target_faces:
        return np.asarray(vertices, np.float32), np.asarray(faces, np.int64)
    v, f = fast_simplification.simplify(np.asarray(vertices, np.float32), np.asarray(faces, np.int32),
                                        target_reduction=1.0 - target_faces / len(faces))
    return np.asarray(v, np.float32), np.asarray(f, np.int64)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V,3] float32 (follow the face winding)."""
    return np.asarray(_as_trimesh(vertices, faces, process=False).vertex_normals, np.float32)
