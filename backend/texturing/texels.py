"""Each texel's place on the surface, and what a view sees of it.

The mesh is rasterised once in UV space (an orthographic pass through the perspective rasteriser)
to find, for every texel centre inside a chart, its triangle, barycentrics, 3D point and normal.
A view then sees a texel when the texel's point projects inside the image and is the visible
surface there (depth test against the view's own depth buffer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from ..geometry import mesh_raster
from ..geometry.bake import sample_pixels
from ..geometry.cameras import Cameras


GUTTER_RING = 2
"""Texels around each chart, outside it, that are painted from the surface too (see texel_surface)."""


@dataclass(frozen=True)
class TexelSurface:
    size: int
    chart: Tensor  # [T, T] bool, texel centres inside a UV chart
    mask: Tensor  # [T, T] bool, the texels below: the charts and their gutter ring
    index: Tensor  # [T, T] int64, the texel's row in the per-texel arrays below, −1 elsewhere
    points: Tensor  # [P, 3] surface point of each texel
    normals: Tensor  # [P, 3] unit normal
    triangles: Tensor  # [P] int64 triangle id
    barycentrics: Tensor  # [P, 3] (outside [0, 1] for ring texels: extrapolated on the triangle's plane)
    in_chart: Tensor  # [P] bool, the texel is inside a chart (not the ring)

    @property
    def count(self) -> int:
        return self.points.shape[0]

    def image(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """Per-texel values [P, D] → a texture [T, T, D] (`fill` elsewhere)."""
        out = values.new_full((self.size, self.size, values.shape[-1]), fill)
        out[self.mask] = values
        return out


def _barycentric_2d(p: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Barycentric coordinates [N, 3] of points p [N, 2] in triangles (a, b, c) [N, 2] (unclamped)."""
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    denominator = (d00 * d11 - d01 * d01).clamp_min(1e-20)
    v = (d11 * d20 - d01 * d21) / denominator
    w = (d00 * d21 - d01 * d20) / denominator
    return torch.stack([1 - v - w, v, w], -1)


def texel_surface(vertices: Tensor, faces: Tensor, uvs: Tensor, normals: Tensor, size: int,
                  ring: int = GUTTER_RING) -> TexelSurface:
    """vertices [V, 3], faces [F, 3], uvs [V, 2] (origin bottom-left), normals [V, 3].

    Texels within `ring` texels outside a chart get a surface point too: the nearest chart texel's
    triangle extended beyond its edge (barycentrics extrapolated on its plane). Painting them from
    the views, instead of copying the chart's border outwards, makes a bilinear or mipmapped lookup
    at a UV seam read the surface on both sides, so seams do not show."""
    fragments = mesh_raster.uv_space_fragments(faces, uvs, size)
    chart = fragments.mask[0]
    triangle_map = fragments.triangle_ids[0]
    bary_map = fragments.barycentrics[0]
    mask = chart
    if ring > 0 and chart.any() and not chart.all():
        distance, (rows, cols) = ndimage.distance_transform_edt(~chart.cpu().numpy(), return_indices=True)
        near = torch.from_numpy(distance <= ring).to(chart.device) & ~chart
        nearest = (torch.from_numpy(rows).to(chart.device)[near], torch.from_numpy(cols).to(chart.device)[near])
        ring_triangles = triangle_map[nearest]
        ring_rows, ring_cols = torch.nonzero(near, as_tuple=True)
        centres = torch.stack([(ring_cols.to(uvs.dtype) + 0.5) / size, 1.0 - (ring_rows.to(uvs.dtype) + 0.5) / size], -1)
        corners = uvs[faces[ring_triangles]]  # [R, 3, 2]
        triangle_map = triangle_map.clone()
        bary_map = bary_map.clone()
        triangle_map[near] = ring_triangles
        bary_map[near] = _barycentric_2d(centres, corners[:, 0], corners[:, 1], corners[:, 2]).to(bary_map.dtype)
        mask = chart | near
    triangles, barycentrics = triangle_map[mask], bary_map[mask]
    corners = faces[triangles]  # [P, 3]
    points = (barycentrics[..., None] * vertices[corners]).sum(1)
    texel_normals = F.normalize((barycentrics.clamp_min(0)[..., None] * normals[corners]).sum(1), dim=-1)
    index = torch.full((size, size), -1, dtype=torch.long, device=chart.device)
    index[mask] = torch.arange(int(mask.sum()), device=chart.device)
    return TexelSurface(size, chart, mask, index, points, texel_normals, triangles, barycentrics, chart[mask])


@dataclass(frozen=True)
class TexelView:
    pixels: Tensor  # [P, 2] where each texel lands in the view (pixel units, centres at +0.5)
    visible: Tensor  # [P] bool: the texel is the visible surface there
    cos: Tensor  # [P] |cos| of the angle between the normal and the ray to the camera


def see_texels(surface: TexelSurface, camera: Cameras, fragments: mesh_raster.Fragments,
               depth_tolerance: float = 0.01) -> TexelView:
    """What one view (`camera`, its mesh `fragments`) sees of the texels. The cosine is taken in
    absolute value: artists' meshes often have flipped normals, and the depth test already says
    which side of the surface the camera is on."""
    pixels, visible = mesh_raster.visible_points(surface.points, camera, fragments, depth_tolerance)
    to_camera = F.normalize(camera.centers[0][None] - surface.points, dim=-1)
    cos = (to_camera * surface.normals).sum(-1).abs()
    return TexelView(pixels[0], visible[0], cos)


def sample_image(image: Tensor, pixels: Tensor) -> Tensor:
    """Bilinear lookup of image [H, W, D] at pixel coordinates [P, 2] → [P, D]."""
    return sample_pixels(image[None], pixels[None])[0]
