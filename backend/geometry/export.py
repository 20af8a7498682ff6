"""Exports: a textured GLB file, and plain arrays for the protocol's `mesh` message.

Lift3D's world is Blender's (+Z up); glTF is +Y up, so the GLB is rotated on the way out (every
glTF importer, Blender's included, rotates it back). UVs stay bottom-left-origin here; trimesh
flips them to glTF's top-left convention on export and back on import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

# (x, y, z) Blender → (x, z, −y) glTF.
_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=np.float32)


def export_glb(path: str | Path, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: np.ndarray,
               normals: np.ndarray | None = None) -> Path:
    """Write a GLB with a PBR material whose base colour is `texture` [H,W,3|4] uint8 (row 0 = top).
    The file appears complete or not at all (temporary file + rename)."""
    texture = np.asarray(texture)
    if texture.dtype != np.uint8 or texture.ndim != 3 or texture.shape[2] not in (3, 4):
        raise ValueError(f"texture must be uint8 [H, W, 3|4], got {texture.dtype} {texture.shape}")
    vertices = np.asarray(vertices, np.float32) @ _Z_UP_TO_Y_UP.T
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(texture), metallicFactor=0.0,
                                                   roughnessFactor=0.9)
    mesh = trimesh.Trimesh(vertices, np.asarray(faces, np.int64), process=False,
                           vertex_normals=None if normals is None else np.asarray(normals, np.float32) @ _Z_UP_TO_Y_UP.T,
                           visual=trimesh.visual.TextureVisuals(uv=np.asarray(uvs, np.float32), material=material))
    data = mesh.export(file_type="glb")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def mesh_arrays(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None = None,
                normals: np.ndarray | None = None, texture: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Contiguous arrays with the dtypes `protocol.Mesh` accepts (world stays +Z up for Blender)."""
    def as_array(a, dtype):
        return None if a is None else np.ascontiguousarray(np.asarray(a), dtype=dtype)

    arrays = {"vertices": as_array(vertices, np.float32), "faces": as_array(faces, np.uint32),
              "uvs": as_array(uvs, np.float32), "normals": as_array(normals, np.float32),
              "texture": as_array(texture, np.uint8)}
    return {k: v for k, v in arrays.items() if v is not None}
