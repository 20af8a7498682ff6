"""The arrays of a received `mesh` message, made safe and ready for Blender (bpy-free).

Conventions (the project's, README "The 3D engine"): Blender's world (+Z up); UVs per vertex with
the origin at the bottom-left (seams are split vertices); the texture is an image with row 0 at
the TOP (what the backend bakes and writes into its GLB). Blender's `Image.pixels` starts with the
bottom row, so the TGA written here stores the rows bottom first.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class MeshArrays:
    """The arrays of a `protocol.Mesh` message, for callers that have no message (tests, bench)."""

    vertices: np.ndarray                       # [V, 3] float32
    faces: np.ndarray                          # [F, 3] uint32 | int32
    uvs: np.ndarray | None = None              # [V, 2] float32, origin bottom-left
    normals: np.ndarray | None = None          # [V, 3] float32 | float16
    vertex_colors: np.ndarray | None = None    # [V, 3|4] uint8 sRGB
    texture: np.ndarray | None = None          # [H, W, 3|4] uint8 sRGB, row 0 = top


def checked_arrays(mesh: Any) -> MeshArrays:
    """The arrays of `mesh` (anything with the MeshArrays attributes) as numpy, shapes and index
    ranges checked up front: Blender trusts loop vertex indices, so an out-of-range one would
    crash it rather than raise. Raises ValueError naming the problem."""
    arrays = MeshArrays(**{name: _optional_array(mesh, name) for name in MeshArrays.__dataclass_fields__})
    v, f = arrays.vertices, arrays.faces
    if v is None or v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices must be a non-empty [V, 3] array, got {None if v is None else v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite values")
    if f is None or f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
        raise ValueError(f"faces must be an integer [F, 3] array, got {None if f is None else f.shape}")
    if len(f) and (int(f.min()) < 0 or int(f.max()) >= len(v)):
        raise ValueError(f"face indices span [{f.min()}, {f.max()}] but there are {len(v)} vertices")
    for name, widths in (("uvs", (2,)), ("normals", (3,)), ("vertex_colors", (3, 4))):
        a = getattr(arrays, name)
        if a is not None and (a.ndim != 2 or len(a) != len(v) or a.shape[1] not in widths):
            raise ValueError(f"{name} must be [V={len(v)}, {'|'.join(map(str, widths))}], got {a.shape}")
    if arrays.vertex_colors is not None and arrays.vertex_colors.dtype != np.uint8:
        raise ValueError(f"vertex_colors must be uint8 sRGB, got {arrays.vertex_colors.dtype}")
    t = arrays.texture
    if t is not None and (t.dtype != np.uint8 or t.ndim != 3 or t.shape[2] not in (3, 4) or 0 in t.shape
                          or max(t.shape[:2]) > 65535):  # TGA's 16-bit width and height
        raise ValueError(f"texture must be uint8 [H, W, 3|4] (sides up to 65535), got {t.dtype} {t.shape}")
    if t is not None and arrays.uvs is None:
        raise ValueError("a texture needs per-vertex uvs")
    return arrays


def _optional_array(mesh: Any, name: str) -> np.ndarray | None:
    value = getattr(mesh, name, None)
    return None if value is None else np.asarray(value)


def without_degenerate(faces: np.ndarray) -> np.ndarray:
    """faces [F, 3] minus triangles that use a vertex twice: Blender's edit mode cannot represent
    them (`Mesh.validate()` would delete them too, at ~20x the cost of this check)."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    degenerate = (a == b) | (b == c) | (a == c)
    return faces[~degenerate] if degenerate.any() else faces


def placement(points: np.ndarray, target_size: float | None) -> tuple[float, np.ndarray]:
    """(scale, anchor [3]) for points [N, 3]: `(points - anchor) * scale` puts the bbox bottom
    centre at the origin with the largest bbox dimension = `target_size` (scale 1 for None or a
    zero-size bbox). The live preview is placed by the same rule, so the mesh replaces it in place."""
    p = points.astype(np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    anchor = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    extent = float((hi - lo).max())
    scale = target_size / extent if target_size is not None and extent > 0 else 1.0
    return scale, anchor


def placed_vertices(vertices: np.ndarray, target_size: float | None) -> np.ndarray:
    """[V, 3] float32 placed by `placement`."""
    scale, anchor = placement(vertices, target_size)
    return ((vertices.astype(np.float64) - anchor) * scale).astype(np.float32)


def tga_bytes(texture: np.ndarray) -> bytes:
    """[H, W, 3|4] uint8 RGB(A), row 0 = top → an uncompressed true-colour TGA file. TGA stores
    BGR(A) rows bottom first (origin bottom-left, descriptor bit 5 clear), which is also the order
    of `Image.pixels`, so the rows are reversed once here."""
    h, w, c = texture.shape
    header = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, w, h, 8 * c, 8 if c == 4 else 0)
    body = texture[::-1, :, (2, 1, 0, 3)[:c]]  # [H, W, c] BGR(A), bottom row first
    return header + np.ascontiguousarray(body).tobytes()


def is_translucent(texture: np.ndarray) -> bool:
    """texture [H, W, 3|4] uint8 has an alpha below 255 somewhere: only then is Alpha linked (an
    opaque asset should not pay for transparency in EEVEE; same rule as the backend's GLB)."""
    return texture.shape[2] == 4 and bool((texture[..., 3] < 255).any())
