"""The UVs the texture is painted on: the mesh's own when they are usable, bit for bit; otherwise
a fresh xatlas atlas, and a note that says why.

UVs are usable when every corner has a finite (u, v) inside 0..1 (one texture cannot hold tiles
or UDIMs), the charts cover some area, and no two triangles share texture space: mirrored or
stacked UVs would make one texel hold two places on the surface. Overlap is measured as the sum
of the triangles' UV areas over the area of their union (rasterised at the texture's resolution):
1.0 for a clean layout, 2.0 for a fully mirrored one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..geometry import mesh_raster
from ..geometry.uv_atlas import unwrap
from .mesh_input import PaintMesh

UV_RANGE_SLACK = 1e-4
"""How far outside 0..1 a UV may sit (rounding in exporters) before the layout counts as tiled."""
MAX_OVERLAP = 1.03
"""Sum of triangle UV areas / area of their union above which the UVs overlap (the rasterised
union is exact to a few tenths of a percent at 512² for real layouts)."""
MAX_ZERO_AREA_SHARE = 0.01
"""Share of the surface (by 3D area) whose triangles may have no UV area before the layout counts as
broken (those triangles would all read one texel)."""
OVERLAP_RESOLUTION = 512


@dataclass(frozen=True)
class UVLayout:
    """The split-vertex mesh the texture is laid out on (seams split, as a GPU draws it)."""
    vertices: np.ndarray  # [V', 3] float32
    faces: np.ndarray  # [F, 3] int64, the request's triangles in order
    uvs: np.ndarray  # [V', 2] float32, origin bottom-left
    source_vertex: np.ndarray  # [V'] int64, index into the request's vertices
    corner_uvs: np.ndarray  # [F, 3, 2] float32: the request's own when kept
    kept: bool
    note: str


def uv_areas(corner_uvs: np.ndarray) -> np.ndarray:
    """Area of each triangle in UV space [F] (float64)."""
    uv = corner_uvs.astype(np.float64)
    return 0.5 * np.abs((uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1])
                        - (uv[:, 2, 0] - uv[:, 0, 0]) * (uv[:, 1, 1] - uv[:, 0, 1]))


def overlap_ratio(corner_uvs: np.ndarray, resolution: int = OVERLAP_RESOLUTION) -> float:
    """Σ triangle UV area / area of the union of the triangles (1.0: no overlap)."""
    total = float(uv_areas(corner_uvs).sum())
    if total <= 0:
        return float("inf")
    flat = torch.from_numpy(corner_uvs.reshape(-1, 2).astype(np.float32))
    plane = torch.stack([flat[:, 0], 1.0 - flat[:, 1], torch.ones(len(flat))], dim=-1)
    faces = torch.arange(len(flat)).reshape(-1, 3)
    K = torch.tensor([[[resolution, 0.0, 0.0], [0.0, resolution, 0.0], [0.0, 0.0, 1.0]]])
    fragments = mesh_raster.rasterize(plane, faces, torch.eye(4)[None], K, resolution, resolution, backend="torch")
    union = float(fragments.mask.sum()) / resolution**2
    return total / max(union, 1e-12)


def uv_problem(mesh: PaintMesh) -> str | None:
    """Why the mesh's UVs cannot hold the texture, or None when they can."""
    uv = mesh.corner_uvs
    if uv is None:
        return "the mesh has no UVs"
    if not np.isfinite(uv).all():
        return "some UVs are NaN or infinite"
    if uv.min() < -UV_RANGE_SLACK or uv.max() > 1 + UV_RANGE_SLACK:
        return (f"the UVs reach outside 0..1 (from {uv.min():.2f} to {uv.max():.2f}: tiles or UDIMs), which one "
                "texture cannot hold")
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    surface = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    flat = surface[uv_areas(uv) <= 0.5e-12].sum() / max(surface.sum(), 1e-30)
    if flat > MAX_ZERO_AREA_SHARE:
        return f"{flat:.0%} of the surface has UV triangles with no area (collapsed UVs)"
    ratio = overlap_ratio(uv)
    if ratio > MAX_OVERLAP:
        return (f"the UVs overlap (the triangles' UV area is {ratio:.2f}× the area they cover: mirrored or "
                "stacked islands would share texels)")
    return None


def split_by_corner_uvs(faces: np.ndarray, corner_uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-corner UVs → a split-vertex mesh: (source vertex [V'], faces [F, 3] into V', uvs [V', 2]).
    Corners that share a vertex and the exact same UV share a split vertex."""
    corners = np.concatenate([faces.reshape(-1, 1).astype(np.int64),
                              corner_uvs.reshape(-1, 2).astype(np.float32).view(np.int32).astype(np.int64)], axis=1)
    unique, inverse = np.unique(corners, axis=0, return_inverse=True)
    uvs = unique[:, 1:].astype(np.int32).view(np.float32)
    return unique[:, 0], inverse.reshape(-1, 3).astype(np.int64), np.ascontiguousarray(uvs)


def layout(mesh: PaintMesh, texture_size: int, *, padding: int = 4) -> UVLayout:
    """Keep the mesh's UVs when `uv_problem` finds none; otherwise unwrap with xatlas (charts
    packed for `texture_size`, `padding` texels apart)."""
    problem = uv_problem(mesh)
    if problem is None:
        source, faces, uvs = split_by_corner_uvs(mesh.faces, mesh.corner_uvs)
        return UVLayout(mesh.vertices[source], faces, uvs, source, mesh.corner_uvs, True,
                        "kept the mesh's own UVs")
    atlas = unwrap(mesh.vertices, mesh.faces, resolution=texture_size, padding=padding,
                   max_faces=max(len(mesh.faces), 1))
    corner_uvs = atlas.uvs[atlas.faces].astype(np.float32)
    return UVLayout(atlas.vertices, atlas.faces, atlas.uvs, atlas.source_vertex, corner_uvs, False,
                    f"unwrapped with xatlas: {problem}")
