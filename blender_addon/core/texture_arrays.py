"""Texture Selected's arrays without Blender: what a `texture` request carries for a mesh, and how a
`painted_texture` goes back into it.

Blender keeps a mesh as polygons whose corners are *loops*; the request sends triangles (Blender's
`loop_triangles`, each naming three vertices and the three loops they come from). UVs live per loop,
so the request's per-corner UVs are the loops' UVs gathered through each triangle, and the UVs a
backend returns per corner are scattered back onto the loops the same way. A polygon split into
several triangles shares loops between them (a quad's first and third corner are in both of its
triangles): UVs that disagree there cannot be stored per loop (the backend would have to cut a UV
seam through the polygon), and `loop_uvs` counts those loops so the artist can be told.

Texture images travel top row first (as image files store them); Blender's `Image.pixels` start
at the bottom row, with the UV origin at the bottom left: the rows are flipped on the way in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .wire import protocol

MAX_FACES = protocol.limits.MAX_TEXTURE_REQUEST_FACES
MAX_VERTICES = protocol.limits.MAX_TEXTURE_REQUEST_VERTICES
UV_DISAGREEMENT = 1e-6
"""UVs further apart than this (in UV units) on one loop count as a seam through a polygon."""


class TextureMeshError(ValueError):
    """A mesh that cannot be textured as it is; the message says what to do."""


@dataclass(frozen=True)
class TextureMesh:
    """One mesh as a `texture` request sends it, plus what is needed to put the result back."""

    vertices: np.ndarray  # [V, 3] float32, object space
    faces: np.ndarray  # [F, 3] uint32: the loop triangles' vertices
    tri_loops: np.ndarray  # [F, 3] int32: the loops each triangle corner comes from
    n_loops: int
    n_polygons: int
    uvs: np.ndarray | None = None  # [F, 3, 2] float32 per triangle corner; None: no UV layer
    normals: np.ndarray | None = None  # [V, 3] float32
    uv_layer: str = ""
    """The UV layer `uvs` come from ('' when the mesh has none)."""

    @property
    def n_faces(self) -> int:
        return len(self.faces)


def check_counts(object_name: str, n_vertices: int, n_polygons: int, n_triangles: int) -> None:
    """Refuse a mesh the backend cannot texture, before anything is sent."""
    if n_polygons == 0 or n_triangles == 0:
        raise TextureMeshError(f"'{object_name}' has no faces to paint (only vertices or edges): "
                               "add faces, or texture another mesh")
    if n_triangles > MAX_FACES or n_vertices > MAX_VERTICES:
        raise TextureMeshError(f"'{object_name}' has {n_triangles:,} triangles and {n_vertices:,} vertices; a texture "
                               f"request takes up to {MAX_FACES:,} and {MAX_VERTICES:,}: decimate it (or a copy) first")


def triangles(tri_vertices: np.ndarray, tri_loops: np.ndarray, n_vertices: int,
              n_loops: int) -> tuple[np.ndarray, np.ndarray]:
    """(faces [F, 3] uint32, tri_loops [F, 3] int32) from the flat `vertices` and `loops` arrays of
    Blender's loop triangles; raises TextureMeshError for indices out of range (a damaged mesh)."""
    faces = np.asarray(tri_vertices, np.int64).reshape(-1, 3)
    loops = np.asarray(tri_loops, np.int64).reshape(-1, 3)
    if len(faces) != len(loops):
        raise TextureMeshError("the mesh's triangles and their corners do not match")
    if len(faces) and (faces.min() < 0 or faces.max() >= n_vertices or loops.min() < 0 or loops.max() >= n_loops):
        raise TextureMeshError("the mesh's triangles point past its vertices: run Mesh > Clean Up > Validate "
                               "(or re-import the mesh) first")
    return faces.astype(np.uint32), loops.astype(np.int32)


def corner_uvs(loop_uvs: np.ndarray, tri_loops: np.ndarray) -> np.ndarray:
    """Per-loop UVs [L, 2] (a UV layer's data) → per-triangle-corner UVs [F, 3, 2] float32."""
    uv = np.asarray(loop_uvs, np.float32).reshape(-1, 2)
    return uv[np.asarray(tri_loops).reshape(-1, 3)]


def loop_uvs(uvs: np.ndarray, tri_loops: np.ndarray, n_loops: int) -> tuple[np.ndarray, int]:
    """Per-corner UVs [F, 3, 2] (a `painted_texture`'s) → (per-loop UVs [L, 2] float32, loops whose
    triangles disagree). Every loop of a polygon lies in one of its triangles; a loop two triangles
    share takes the later one's value, and counts as a disagreement when the two differ."""
    uvs = np.asarray(uvs, np.float32).reshape(-1, 3, 2)
    loops = np.asarray(tri_loops, np.int64).reshape(-1, 3)
    if len(uvs) != len(loops):
        raise TextureMeshError(f"the backend returned UVs for {len(uvs):,} triangles; {len(loops):,} were sent")
    if not np.isfinite(uvs).all():
        raise TextureMeshError("the backend returned UVs that are not finite numbers")
    out = np.zeros((n_loops, 2), np.float32)
    out[loops.ravel()] = uvs.reshape(-1, 2)
    # Gather back through the triangles: a loop whose corners all carried its final value agrees.
    differs = np.abs(out[loops] - uvs).max(axis=-1) > UV_DISAGREEMENT  # [F, 3]
    return out, int(np.unique(loops[differs]).size)


def blender_pixels(texture: np.ndarray) -> np.ndarray:
    """A texture [H, W, 3|4] uint8, top row first → `Image.pixels` order: float32 RGBA, bottom row
    first, flat [H * W * 4] (alpha 1 when the texture has none)."""
    texture = np.asarray(texture)
    if texture.ndim != 3 or texture.shape[2] not in (3, 4) or texture.dtype != np.uint8:
        raise ValueError(f"a texture must be [H, W, 3|4] uint8, got {texture.shape} {texture.dtype}")
    height, width, channels = texture.shape
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :channels] = texture[::-1] * np.float32(1 / 255)
    return rgba.ravel()


def texture_from_pixels(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """The inverse of `blender_pixels` (for checks): flat float RGBA bottom row first → [H, W, 3]
    uint8, top row first."""
    rgba = np.asarray(pixels, np.float32).reshape(height, width, 4)
    return np.round(rgba[::-1, :, :3] * 255).astype(np.uint8)


def bounds(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) corners of [V, 3] positions (zeros for none)."""
    v = np.asarray(vertices, np.float32).reshape(-1, 3)
    if not len(v):
        return np.zeros(3, np.float32), np.zeros(3, np.float32)
    return v.min(axis=0), v.max(axis=0)


def shape_differs(base_count: int, base_bounds: tuple, evaluated_count: int, evaluated_bounds: tuple,
                  tolerance: float = 1e-4) -> bool:
    """Whether the evaluated mesh (modifiers, shape keys) is not the base mesh the texture is painted
    on: another vertex count, or a bounding box that moved by more than `tolerance` of its size."""
    if base_count != evaluated_count:
        return True
    lo, hi = (np.asarray(b, np.float64) for b in base_bounds)
    elo, ehi = (np.asarray(b, np.float64) for b in evaluated_bounds)
    size = max(float((hi - lo).max()), 1e-6)
    return bool(max(np.abs(lo - elo).max(), np.abs(hi - ehi).max()) > tolerance * size)


def modifier_warning(object_name: str) -> str:
    return (f"the texture is painted on the base mesh of '{object_name}' (without its modifiers and shape keys), "
            "which differs from what the viewport shows: modifiers that move, add or remove geometry may move "
            "the texture")
