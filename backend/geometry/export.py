"""Exports: a textured GLB file, a vertex-coloured one (scenes), and plain arrays for the protocol's `mesh` message.

Conventions in: Blender's world (+Z up), UVs with the origin at the bottom-left, texture row 0 =
the top of the image. glTF is +Y up with the UV origin at the top-left, so on the way out the
vertices are rotated (every glTF importer, Blender's included, rotates them back) and trimesh
writes TEXCOORD_0 as (u, 1 − v) (and flips it back on import; checked in the tests against the
raw accessor). The image itself is stored as is, row 0 first, which is what glTF expects.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from .cameras import Z_UP_TO_Y_UP

_Z_UP_TO_Y_UP = Z_UP_TO_Y_UP.numpy().astype(np.float64)


def _check_arrays(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None, normals: np.ndarray | None,
                  texture: np.ndarray | None) -> None:
    n = len(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or n == 0:
        raise ValueError(f"vertices must be a non-empty [V, 3] array, got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0 or faces.dtype.kind not in "iu":
        raise ValueError(f"faces must be a non-empty integer [F, 3] array, got {faces.dtype} {faces.shape}")
    if faces.min() < 0 or faces.max() >= n:
        raise ValueError(f"face indices span [{faces.min()}, {faces.max()}] but there are {n} vertices")
    for name, array, width in (("uvs", uvs, 2), ("normals", normals, 3)):
        if array is not None and array.shape != (n, width):
            raise ValueError(f"{name} must be [V, {width}] = [{n}, {width}] (one per vertex), "
                             f"got {array.shape}")
    if texture is not None and (texture.dtype != np.uint8 or texture.ndim != 3
                                or texture.shape[2] not in (3, 4)):
        raise ValueError(f"texture must be uint8 [H, W, 3|4], got {texture.dtype} {texture.shape}")


def _write_atomically(path: Path, data: bytes) -> None:
    """The file appears complete or not at all: a temporary file in the same folder, renamed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def export_glb(path: str | Path, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray,
               texture: np.ndarray, normals: np.ndarray | None = None) -> Path:
    """Write a GLB: vertices [V,3] (+Z up), faces [F,3], uvs [V,2] (origin bottom-left) and a PBR
    material whose base colour is `texture` uint8 [H,W,3|4] (row 0 = top; an alpha channel with
    any value below 255 makes the material alpha-blended). Optional normals [V,3] are written too.
    Returns the path."""
    vertices, faces, uvs, texture = (np.asarray(a) for a in (vertices, faces, uvs, texture))
    normals = None if normals is None else np.asarray(normals)
    _check_arrays(vertices, faces, uvs, normals, texture)
    translucent = texture.shape[2] == 4 and bool((texture[..., 3] < 255).any())
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(texture), metallicFactor=0.0, roughnessFactor=0.9,
        alphaMode="BLEND" if translucent else "OPAQUE")
    mesh = trimesh.Trimesh(
        vertices.astype(np.float64) @ _Z_UP_TO_Y_UP.T, faces.astype(np.int64), process=False,
        vertex_normals=None if normals is None else normals.astype(np.float64) @ _Z_UP_TO_Y_UP.T,
        visual=trimesh.visual.TextureVisuals(uv=uvs.astype(np.float64), material=material))
    data = mesh.export(file_type="glb", include_normals=normals is not None)
    path = Path(path)
    _write_atomically(path, data)
    return path


def export_vertex_colour_glb(path: str | Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> Path:
    """Write a GLB of a vertex-coloured mesh (the text → scene result): vertices [V,3] (+Z up),
    faces [F,3], sRGB colours uint8 [V,3] as COLOR_0 under an unlit-looking rough material."""
    vertices, faces, colors = np.asarray(vertices), np.asarray(faces), np.asarray(colors)
    _check_arrays(vertices, faces, None, None, None)
    if colors.shape != (len(vertices), 3) or colors.dtype != np.uint8:
        raise ValueError(f"colors must be uint8 [V, 3] = [{len(vertices)}, 3], got {colors.dtype} {colors.shape}")
    rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
    mesh = trimesh.Trimesh(vertices.astype(np.float64) @ _Z_UP_TO_Y_UP.T, faces.astype(np.int64), process=False,
                           vertex_colors=rgba)
    data = mesh.export(file_type="glb", include_normals=False)
    path = Path(path)
    _write_atomically(path, data)
    return path


def mesh_arrays(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None = None,
                normals: np.ndarray | None = None, texture: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:
    """Contiguous arrays with the dtypes `protocol.Mesh` accepts: vertices [V,3] f32, faces [F,3]
    u32, uvs [V,2] f32, normals [V,3] f32, texture [H,W,3|4] u8; absent ones are left out. The
    world stays +Z up (Blender builds the mesh from these directly)."""
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    uvs, normals, texture = (None if a is None else np.asarray(a) for a in (uvs, normals, texture))
    _check_arrays(vertices, faces, uvs, normals, texture)
    arrays = {"vertices": (vertices, np.float32), "faces": (faces, np.uint32), "uvs": (uvs, np.float32),
              "normals": (normals, np.float32), "texture": (texture, np.uint8)}
    return {name: np.ascontiguousarray(a, dtype=dtype)
            for name, (a, dtype) in arrays.items() if a is not None}
