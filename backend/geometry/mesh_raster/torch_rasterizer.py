"""The project's own triangle rasteriser in plain PyTorch (CPU, Apple MPS, CI).

Vectorised over (triangle, pixel-in-bounding-box) pairs, processed in bounded chunks: edge
functions decide coverage at pixel centres, a z-buffer built with `scatter_reduce` picks the
nearest triangle, and the winner's perspective-correct barycentrics are recomputed with autograd
so gradients reach vertex positions. Both windings are drawn (no back-face culling); triangles
with a vertex in front of the near plane are dropped rather than clipped, which is harmless for
an object seen from outside its bounding sphere.
"""

from __future__ import annotations

import torch
from torch import Tensor

PAIRS_PER_CHUNK = 4_000_000  # (triangle, pixel) candidates per chunk: bounds memory at ~200 MB


def _project(vertices: Tensor, viewmat: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """World [V,3] → pixel coordinates [V,2] and camera depth [V]."""
    cam = vertices @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = cam[:, 2]
    uv = torch.stack([K[0, 0] * cam[:, 0] / z + K[0, 2], K[1, 1] * cam[:, 1] / z + K[1, 2]], -1)
    return uv, z


def _edge(a: Tensor, b: Tensor, p: Tensor) -> Tensor:
    """Twice the signed area of (a, b, p); positive when p lies left of a→b in pixel space."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


@torch.no_grad()
def _nearest_triangles(uv: Tensor, z: Tensor, faces: Tensor, width: int, height: int, near: float,
                       far: float) -> Tensor:
    """Index of the nearest triangle covering each pixel centre, −1 for none. Returns [H*W]."""
    device = uv.device
    tri_uv, tri_z = uv[faces], z[faces]  # [F,3,2], [F,3]
    usable = (tri_z > near).all(-1) & (tri_z < far).all(-1) & torch.isfinite(tri_uv).all(-1).all(-1)
    lo = torch.ceil(tri_uv.amin(1) - 0.5).clamp_min(0)
    hi = torch.floor(tri_uv.amax(1) - 0.5)
    hi = torch.minimum(hi, torch.tensor([width - 1.0, height - 1.0], device=device))
    nx, ny = (hi[:, 0] - lo[:, 0] + 1).clamp_min(0).long(), (hi[:, 1] - lo[:, 1] + 1).clamp_min(0).long()
    counts = torch.where(usable, nx * ny, torch.zeros_like(nx))
    tri_ids = torch.nonzero(counts, as_tuple=True)[0]

    best_z = torch.full((height * width,), float("inf"), device=device, dtype=uv.dtype)
    best_tri = torch.full((height * width,), -1, dtype=torch.long, device=device)
    cumulative = torch.cumsum(counts[tri_ids], 0)
    start = 0
    while start < len(tri_ids):
        # Take triangles until the chunk holds PAIRS_PER_CHUNK candidates (at least one triangle).
        before = cumulative[start - 1] if start > 0 else 0
        end = int(torch.searchsorted(cumulative, before + PAIRS_PER_CHUNK, right=True))
        chunk = tri_ids[start:max(end, start + 1)]
        start = max(end, start + 1)

        n = counts[chunk]
        tri = torch.repeat_interleave(chunk, n)
        first = torch.cumsum(n, 0) - n
        local = torch.arange(len(tri), device=device) - torch.repeat_interleave(first, n)
        px = lo[tri, 0].long() + local % nx[tri]
        py = lo[tri, 1].long() + local // nx[tri]
        p = torch.stack([px, py], -1).to(uv.dtype) + 0.5
        a, b, c = tri_uv[tri, 0], tri_uv[tri, 1], tri_uv[tri, 2]
        w0, w1, w2 = _edge(b, c, p), _edge(c, a, p), _edge(a, b, p)
        area = w0 + w1 + w2
        inside = (((w0 >= 0) & (w1 >= 0) & (w2 >= 0)) | ((w0 <= 0) & (w1 <= 0) & (w2 <= 0))) & (area.abs() > 1e-12)
        tri, px, py = tri[inside], px[inside], py[inside]
        w = torch.stack([w0[inside], w1[inside], w2[inside]], -1) / area[inside, None]
        depth = 1.0 / (w / tri_z[tri]).sum(-1)  # perspective-correct depth at the pixel centre
        pixel = py * width + px

        chunk_z = torch.full_like(best_z, float("inf")).scatter_reduce(0, pixel, depth, "amin")
        winner = depth <= chunk_z[pixel]
        chunk_tri = torch.full_like(best_tri, -1).scatter_reduce(0, pixel[winner], tri[winner], "amax")
        closer = chunk_z < best_z
        best_z = torch.where(closer, chunk_z, best_z)
        best_tri = torch.where(closer, chunk_tri, best_tri)
    return best_tri


def rasterize_torch(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
                    near: float, far: float) -> tuple[Tensor, Tensor, Tensor]:
    """vertices [C,V,3] → triangle ids [C,H,W], barycentrics [C,H,W,3], depth [C,H,W]."""
    ids, barys, depths = [], [], []
    for cam in range(viewmats.shape[0]):
        uv, z = _project(vertices[cam], viewmats[cam].to(vertices.dtype), Ks[cam].to(vertices.dtype))
        tri = _nearest_triangles(uv.detach(), z.detach(), faces, width, height, near, far)
        hit = tri >= 0
        pixel = torch.nonzero(hit, as_tuple=True)[0]
        p = torch.stack([pixel % width, pixel // width], -1).to(uv.dtype) + 0.5
        corners = faces[tri[hit]]  # [P, 3]
        a, b, c = uv[corners[:, 0]], uv[corners[:, 1]], uv[corners[:, 2]]
        w = torch.stack([_edge(b, c, p), _edge(c, a, p), _edge(a, b, p)], -1)
        w = w / w.sum(-1, keepdim=True)
        perspective = w / z[corners]  # screen-space weights → perspective-correct ones
        inv_depth = perspective.sum(-1, keepdim=True)
        bary = vertices.new_zeros(height * width, 3).index_put((pixel,), perspective / inv_depth)
        depth = vertices.new_zeros(height * width).index_put((pixel,), 1.0 / inv_depth[:, 0])
        ids.append(tri.reshape(height, width))
        barys.append(bary.reshape(height, width, 3))
        depths.append(depth.reshape(height, width))
    return torch.stack(ids), torch.stack(barys), torch.stack(depths)
