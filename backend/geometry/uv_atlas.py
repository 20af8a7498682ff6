"""UV atlas with xatlas (MIT), packed for a square texture of a given resolution.

UVs are in [0, 1] with the origin at the bottom-left (Blender, OBJ, trimesh): texel row
⌊(1 − v)·H⌋, column ⌊u·W⌋. One UV unit is exactly `resolution` texels, so xatlas's padding (in
texels) is the padding in the final texture.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import xatlas

log = logging.getLogger(__name__)

# xatlas's time grows superlinearly with the face count (~2.5 s at 20k faces on 2 cores, minutes
# at 200k); the pipeline decimates first, and anything far above this is a mistake.
MAX_FACES = 200_000
# Repacks allowed to bring an atlas that xatlas made too large down to the texture's size.
MAX_REPACKS = 8
REPACK_SHRINK = 0.99


@dataclass
class UVMesh:
    vertices: np.ndarray  # [V', 3] float32, seams split into separate vertices
    faces: np.ndarray  # [F, 3] int64 into the V' vertices
    uvs: np.ndarray  # [V', 2] float32 in [0, 1], origin bottom-left
    source_vertex: np.ndarray  # [V'] int64, index of each vertex in the input mesh
    utilization: float  # fraction of the resolution² texture covered by charts (with padding)


def _pack_options(resolution: int, padding: int, texels_per_unit: float = 0.0) -> xatlas.PackOptions:
    options = xatlas.PackOptions()
    options.resolution = resolution
    options.texels_per_unit = texels_per_unit
    options.padding = padding
    options.bilinear = True  # keep texels a bilinear lookup reaches inside the chart's own space
    return options


def _texel_uvs(atlas: xatlas.Atlas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertex mapping [V'], faces [F,3], UVs in texels [V',2]): the binding divides xatlas's
    texel coordinates by the atlas's own, generally non-square, width and height; undo that."""
    mapping, faces, uvs = atlas[0]
    size = np.array([atlas.width, atlas.height], np.float32)
    return mapping.astype(np.int64), faces.astype(np.int64), uvs * size


def _fit(texel_uvs: np.ndarray, faces: np.ndarray, side: int, covered: float, resolution: int, padding: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Repack an atlas of `side` texels with `covered` texels used (texel UVs [V,2], faces [F,3])
    until it fits in resolution² texels → (mapping [V'] into the given vertices, faces, texel
    UVs, covered texels). Repacking treats it as a UV mesh: xatlas keeps the charts and only
    moves and scales them (~0.15 s at 20k faces)."""
    best = (np.arange(len(texel_uvs)), faces, texel_uvs, covered, side)
    scale = 1.0
    for _ in range(MAX_REPACKS):
        scale *= min(1.0, resolution / side) * REPACK_SHRINK
        atlas = xatlas.Atlas()
        atlas.add_uv_mesh(texel_uvs, faces.astype(np.uint32))
        atlas.generate(pack_options=_pack_options(0, padding, texels_per_unit=scale))
        side = max(atlas.width, atlas.height)
        if side < best[4]:
            best = (*_texel_uvs(atlas), float(atlas.utilization) * atlas.width * atlas.height, side)
        if side <= resolution:
            return best[:4]
    # Many charts on a tiny texture: their padding alone overflows it. Shrink the tightest
    # packing to fit, which thins the padding below what was asked for.
    mapping, faces, texel_uvs, covered, side = best
    shrink = resolution / side
    log.warning("the charts do not fit %d² texels with %d texels of padding; padding shrinks to %.1f texels",
                resolution, padding, padding * shrink)
    return mapping, faces, texel_uvs * np.float32(shrink), covered * shrink**2


def unwrap(vertices: np.ndarray, faces: np.ndarray, *, resolution: int = 1024, padding: int = 2,
           max_faces: int = MAX_FACES) -> UVMesh:
    """vertices [V,3], faces [F,3] → the mesh cut into charts packed into one resolution²
    texture with at least `padding` empty texels between charts (bilinear-safe)."""
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"need vertices [V, 3] and faces [F, 3], got {vertices.shape} and {faces.shape}")
    if len(faces) == 0 or len(vertices) == 0:
        raise ValueError("cannot unwrap an empty mesh (no vertices or no faces)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"face indices span [{faces.min()}, {faces.max()}] "
                         f"but there are {len(vertices)} vertices")
    if len(faces) > max_faces:
        raise ValueError(f"{len(faces)} faces is too many to unwrap (xatlas is superlinear: minutes); "
                         f"decimate to at most {max_faces} first")
    if resolution < 8 or padding < 0:
        raise ValueError(f"need resolution ≥ 8 and padding ≥ 0, got {resolution} and {padding}")
    vertices = vertices.astype(np.float32)
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices, faces.astype(np.uint32))
    # xatlas sizes charts for `resolution` assuming 75 % utilisation and lets the atlas grow past
    # it when packing does worse (typically by 10–20 %); `_fit` then shrinks it to size.
    atlas.generate(pack_options=_pack_options(resolution, padding))
    source, new_faces, texel_uvs = _texel_uvs(atlas)
    side = max(atlas.width, atlas.height)
    covered = float(atlas.utilization) * atlas.width * atlas.height
    if side > resolution:
        mapping, new_faces, texel_uvs, covered = _fit(texel_uvs, new_faces, side, covered, resolution,
                                                      padding)
        source = source[mapping]
    uvs = (texel_uvs / resolution).astype(np.float32)
    return UVMesh(vertices[source], new_faces, uvs, source, covered / resolution**2)
