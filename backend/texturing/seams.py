"""Seam error: how much the colour jumps across the UV seams of a textured mesh.

A seam is a mesh edge whose two triangles put it in different places in the texture. Both sides
are sampled at the same points along the edge, bilinearly, exactly where a renderer samples them
for the pixels on the seam: the lookup straddles the chart's border, so what the gutter holds
counts (a black or stale gutter is a visible seam). The mean absolute colour difference is the
seam error (0..1 per channel).
"""

from __future__ import annotations

import numpy as np

SAMPLES_PER_EDGE = 5


def _bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """texture [T, T, C] float, uv [N, 2] (origin bottom-left) → [N, C]."""
    size_y, size_x = texture.shape[:2]
    x = np.clip(uv[:, 0] * size_x - 0.5, 0, size_x - 1)
    y = np.clip((1.0 - uv[:, 1]) * size_y - 0.5, 0, size_y - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, size_x - 1), np.minimum(y0 + 1, size_y - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def seam_edges(faces: np.ndarray, corner_uvs: np.ndarray) -> np.ndarray:
    """[S, 2, 3]: for each seam edge, (face, corner of the edge's first vertex, corner of its second)
    on side A and side B. `faces` [F, 3] index the mesh's own (unsplit) vertices."""
    F = len(faces)
    face_ids = np.repeat(np.arange(F), 3)
    start_corner = np.tile(np.arange(3), F)
    end_corner = (start_corner + 1) % 3
    a, b = faces[face_ids, start_corner], faces[face_ids, end_corner]
    key = np.stack([np.minimum(a, b), np.maximum(a, b)], 1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, face_ids, start_corner, end_corner, a = key[order], face_ids[order], start_corner[order], end_corner[order], a[order]
    same = (key[1:] == key[:-1]).all(1)
    i = np.nonzero(same)[0]  # pairs (i, i+1) share an edge (manifold edges; extra sharers are ignored)
    first = np.stack([face_ids[i], start_corner[i], end_corner[i]], 1)
    second = np.stack([face_ids[i + 1], start_corner[i + 1], end_corner[i + 1]], 1)
    # Orient side B like side A (same vertex first).
    flip = a[i] != a[i + 1]
    second[flip, 1], second[flip, 2] = second[flip, 2].copy(), second[flip, 1].copy()
    uv_a = corner_uvs[first[:, 0], first[:, 1]], corner_uvs[first[:, 0], first[:, 2]]
    uv_b = corner_uvs[second[:, 0], second[:, 1]], corner_uvs[second[:, 0], second[:, 2]]
    seam = (np.abs(uv_a[0] - uv_b[0]).max(1) > 1e-6) | (np.abs(uv_a[1] - uv_b[1]).max(1) > 1e-6)
    return np.stack([first[seam], second[seam]], 1)


def seam_error(texture: np.ndarray, faces: np.ndarray, corner_uvs: np.ndarray, inset_texels: float = 0.0) -> float:
    """Mean absolute colour difference across the UV seams (texture [T, T, 3] float 0..1 or uint8
    → 0..1 units); 0.0 for a mesh without seams. `inset_texels` > 0 samples that far inside each
    triangle instead (the gutter is then not read)."""
    tex = np.asarray(texture, np.float32)
    if texture.dtype == np.uint8:
        tex = tex / 255.0
    edges = seam_edges(np.asarray(faces), np.asarray(corner_uvs, np.float64))
    if len(edges) == 0:
        return 0.0
    t = (np.arange(SAMPLES_PER_EDGE) + 0.5) / SAMPLES_PER_EDGE
    inset = inset_texels / tex.shape[0]
    samples = []
    for side in (0, 1):
        face, c0, c1 = edges[:, side, 0], edges[:, side, 1], edges[:, side, 2]
        uv0, uv1 = corner_uvs[face, c0], corner_uvs[face, c1]
        centroid = corner_uvs[face].mean(1)
        points = uv0[:, None] + (uv1 - uv0)[:, None] * t[None, :, None]  # [S, K, 2]
        towards = centroid[:, None] - points
        points = points + towards / np.maximum(np.linalg.norm(towards, axis=-1, keepdims=True), 1e-12) * inset
        samples.append(_bilinear(tex, points.reshape(-1, 2)))
    return float(np.abs(samples[0] - samples[1]).mean())
