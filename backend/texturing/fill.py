"""Texels no view saw (crevices, the inside of a handle): filled so nothing is black or stale.

1. **Propagation over the mesh** (Hunyuan3D-Paint's vertex inpainting): the painted texels give
   their triangles' vertices a colour; vertices without one take the mean of their coloured
   neighbours, ring after ring, across UV seams (neighbours are found on the request's own
   vertices, not the split ones); an unseen texel then takes its triangle's vertex colours,
   interpolated.
2. **Pull-push in UV space** for what is still empty (a part no view and no neighbour reaches):
   a mean pyramid of the known texels, filled back down level by level.
3. **Gutters**: texels outside every chart take the nearest chart texel's colour (dilation), so
   bilinear filtering and mipmaps never pull in black across a seam.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry.bake import fill_from_nearest
from .texels import TexelSurface

MAX_RINGS = 256


def propagate_over_mesh(colours: Tensor, known: Tensor, surface: TexelSurface, faces: np.ndarray,
                        source_vertex: np.ndarray) -> tuple[Tensor, Tensor]:
    """colours [P, 3] with `known` [P] bool → (colours, known) with unseen texels of triangles that
    propagation reaches filled in. `faces` [F, 3] index the split vertices; `source_vertex` maps
    them to the request's vertices."""
    if known.all() or not known.any():
        return colours, known
    corners = torch.from_numpy(source_vertex[faces]).to(colours.device)  # [F, 3] request vertices
    n_vertices = int(source_vertex.max()) + 1
    # Vertex colours from the known texels of the triangles around them, weighted by barycentrics.
    texel_corners = corners[surface.triangles[known]]  # [K, 3]
    weights = surface.barycentrics[known].clamp_min(0)  # [K, 3] (ring texels extrapolate: clamp)
    colour_sum = torch.zeros(n_vertices, 3, device=colours.device, dtype=colours.dtype)
    weight_sum = torch.zeros(n_vertices, device=colours.device, dtype=colours.dtype)
    colour_sum.index_add_(0, texel_corners.reshape(-1), (weights[..., None] * colours[known][:, None, :]).reshape(-1, 3))
    weight_sum.index_add_(0, texel_corners.reshape(-1), weights.reshape(-1))
    coloured = weight_sum > 1e-6
    vertex_colour = colour_sum / weight_sum.clamp_min(1e-6)[:, None]

    edges = torch.cat([corners[:, [0, 1]], corners[:, [1, 2]], corners[:, [2, 0]]])
    edges = torch.cat([edges, edges.flip(1)])  # both directions
    for _ in range(MAX_RINGS):
        missing = ~coloured
        if not missing.any():
            break
        source_ok = coloured[edges[:, 0]] & missing[edges[:, 1]]
        if not source_ok.any():
            break
        src, dst = edges[source_ok, 0], edges[source_ok, 1]
        ring_sum = torch.zeros_like(colour_sum).index_add_(0, dst, vertex_colour[src])
        ring_count = torch.zeros_like(weight_sum).index_add_(0, dst, torch.ones_like(dst, dtype=weight_sum.dtype))
        reached = ring_count > 0
        vertex_colour[reached] = ring_sum[reached] / ring_count[reached, None]
        coloured = coloured | reached

    unseen = ~known
    tri_corners = corners[surface.triangles[unseen]]  # [U, 3]
    corner_ok = coloured[tri_corners].to(colours.dtype)  # [U, 3]
    w = surface.barycentrics[unseen].clamp_min(0) * corner_ok
    total = w.sum(-1)
    reachable = total > 1e-6
    interpolated = (w[..., None] * vertex_colour[tri_corners]).sum(1) / total.clamp_min(1e-6)[:, None]
    colours = colours.clone()
    idx = torch.nonzero(unseen, as_tuple=True)[0]
    colours[idx[reachable]] = interpolated[reachable]
    known = known.clone()
    known[idx[reachable]] = True
    return colours, known


def pull_push(texture: Tensor, known: Tensor) -> Tensor:
    """Fill texels not `known` [T, T] of texture [T, T, 3] from a mean pyramid of the known ones."""
    if known.all() or not known.any():
        return texture
    levels = [(texture * known[..., None], known.float())]
    while min(levels[-1][1].shape) > 1:
        colour, weight = levels[-1]
        colour = F.avg_pool2d(colour.permute(2, 0, 1)[None], 2, ceil_mode=True)[0].permute(1, 2, 0)
        weight = F.avg_pool2d(weight[None, None], 2, ceil_mode=True)[0, 0]
        levels.append((colour, weight))
    # Pushing down: each level's empty texels take the (normalised) coarser level's colour.
    colour, weight = levels[-1]
    filled = colour / weight.clamp_min(1e-12)[..., None]
    for colour, weight in reversed(levels[:-1]):
        up = F.interpolate(filled.permute(2, 0, 1)[None], size=weight.shape, mode="bilinear",
                           align_corners=False)[0].permute(1, 2, 0)
        own = colour / weight.clamp_min(1e-12)[..., None]
        alpha = weight.clamp(0, 1)[..., None]
        filled = own * alpha + up * (1 - alpha) if weight is not levels[0][1] else torch.where(
            (weight > 0)[..., None], own, up)
    return torch.where(known[..., None], texture, filled)


def finish_texture(surface: TexelSurface, colours: Tensor, known: Tensor, faces: np.ndarray,
                   source_vertex: np.ndarray) -> tuple[Tensor, Tensor]:
    """Per-texel colours [P, 3] (valid where `known`) → the full texture [T, T, 3] with unseen
    texels and gutters filled, and the mask [T, T] of chart texels that were painted by a view."""
    painted = (surface.image(known[:, None].float())[..., 0] > 0) & surface.chart
    colours, reached = propagate_over_mesh(colours, known, surface, faces, source_vertex)
    texture = surface.image(colours)
    texture = pull_push(texture, surface.image(reached[:, None].float())[..., 0] > 0) if surface.count else texture
    texture = torch.where(surface.mask[..., None], texture, 0.0)
    return fill_from_nearest(texture, surface.mask), painted
