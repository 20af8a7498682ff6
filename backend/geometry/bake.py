"""Texture bake: colours of the Gaussians transferred onto a UV-mapped mesh.

Texel-centric back-projection. The mesh is rasterised once in UV space to find each texel's 3D
point and normal; every bake view then looks that point up in its own Gaussian render, keeps it
only where the mesh is visible from the view (depth test against the view's mesh depth buffer),
and weights it by how squarely the view sees the surface (cos^`angle_power`). Every covered texel
that some view sees gets a value without holes from resolution mismatch; texels no view sees and
the gutter between charts take the colour of the nearest baked texel, so bilinear and mipmapped
sampling never bleed background across seams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from . import mesh_raster
from .cameras import Cameras, orbit_cameras
from .gaussians import Gaussians
from .splat import render_splats


@dataclass(frozen=True)
class BakeConfig:
    texture_size: int = 1024
    """Side of the square texture in texels."""
    render_size: int = 512
    """Side of the Gaussian renders the colours are taken from."""
    angle_power: float = 2.0
    """View weight = cos(angle between normal and view ray) ** angle_power: grazing views count little."""
    min_cos: float = 0.1
    """Views seeing the surface at a grazing angle beyond this cosine are ignored."""
    depth_tolerance: float = 0.01
    """Depth-test slack as a fraction of the camera distance (the point must be the visible surface)."""
    views_per_batch: int = 4


@dataclass
class BakedTexture:
    texture: Tensor  # [T, T, 3] float in [0, 1], row 0 = top of the image
    coverage: Tensor  # [T, T] bool, texels inside a UV chart that at least one view saw
    chart_mask: Tensor  # [T, T] bool, texels inside a UV chart


def bake_cameras(radius: float, *, fovy_deg: float = 49.1, size: int = 512) -> Cameras:
    """16 views around the object: 6 at the horizon, 4 above and below at ±45°, and the two poles."""
    elevations = [0.0] * 6 + [45.0] * 4 + [-45.0] * 4 + [89.0, -89.0]
    azimuths = [a * 60.0 for a in range(6)] + [45.0 + 90 * a for a in range(4)] * 2 + [0.0, 0.0]
    return orbit_cameras(elevations, azimuths, radius, fovy_deg=fovy_deg, width=size, height=size)


def texel_surface(vertices: Tensor, faces: Tensor, uvs: Tensor, normals: Tensor, size: int
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Rasterise the mesh in UV space: for each texel centre, the 3D point [T,T,3], unit normal
    [T,T,3] and whether it lies inside a chart [T,T]."""
    frags = mesh_raster.uv_space_fragments(faces, uvs, size)
    points = mesh_raster.interpolate(vertices, frags, faces)[0]
    texel_normals = torch.nn.functional.normalize(mesh_raster.interpolate(normals, frags, faces)[0], dim=-1)
    return points, texel_normals, frags.mask[0]


def sample_pixels(image: Tensor, pixels: Tensor) -> Tensor:
    """Bilinear lookup of image [C,H,W,D] at pixel coordinates [C,P,2] (u, v with centres at +0.5)."""
    C, H, W, D = image.shape
    grid = torch.stack([pixels[..., 0] / W * 2 - 1, pixels[..., 1] / H * 2 - 1], dim=-1)[:, :, None, :]
    out = torch.nn.functional.grid_sample(image.permute(0, 3, 1, 2), grid, mode="bilinear",
                                          padding_mode="border", align_corners=False)
    return out[..., 0].permute(0, 2, 1)  # [C, P, D]


@torch.no_grad()
def bake_texture(gaussians: Gaussians, vertices: Tensor, faces: Tensor, uvs: Tensor, normals: Tensor,
                 cameras: Cameras, config: BakeConfig = BakeConfig(), *, splat_backend: str = "auto",
                 check: Callable[[], None] | None = None) -> BakedTexture:
    """vertices [V,3], faces [F,3], uvs [V,2] (origin bottom-left), normals [V,3] outward.
    `check()` runs before each batch of views (raise from it to cancel)."""
    device = gaussians.device
    vertices, normals, uvs = vertices.float().to(device), normals.float().to(device), uvs.float().to(device)
    faces = faces.long().to(device)
    size = config.texture_size
    points, texel_normals, chart = texel_surface(vertices, faces, uvs, normals, size)
    p, n = points[chart], texel_normals[chart]  # [P, 3]
    colour_sum = torch.zeros_like(p)
    weight_sum = torch.zeros(p.shape[0], device=device)

    cameras = cameras.to(device)
    for start in range(0, len(cameras), config.views_per_batch):
        if check is not None:
            check()
        views = cameras[start:start + config.views_per_batch]
        splats = render_splats(gaussians, views, backgrounds=torch.zeros(3, device=device), backend=splat_backend)
        colours = (splats.rgb / splats.alpha.clamp_min(1e-4)).clamp(0, 1)  # un-premultiplied
        frags = mesh_raster.rasterize(vertices, faces, views.viewmats, views.Ks, views.width, views.height)
        pixels, visible = mesh_raster.visible_points(p, views, frags, config.depth_tolerance)  # [C, P, 2], [C, P]
        to_camera = torch.nn.functional.normalize(views.centers[:, None, :] - p[None], dim=-1)
        cos = (to_camera * n[None]).sum(-1)
        sampled = sample_pixels(torch.cat([colours, splats.alpha], -1), pixels)
        weight = torch.where(visible & (cos > config.min_cos), cos.clamp_min(0) ** config.angle_power, 0.0)
        weight = weight * sampled[..., 3]  # trust a view less where the Gaussians are thin
        colour_sum += (weight[..., None] * sampled[..., :3]).sum(0)
        weight_sum += weight.sum(0)

    seen = weight_sum > 1e-6
    texture = torch.zeros(size, size, 3, device=device)
    coverage = torch.zeros(size, size, dtype=torch.bool, device=device)
    texture[chart] = torch.where(seen[:, None], colour_sum / weight_sum.clamp_min(1e-6)[:, None], 0.0)
    coverage[chart] = seen
    return BakedTexture(fill_from_nearest(texture, coverage), coverage, chart)


def fill_from_nearest(texture: Tensor, filled: Tensor) -> Tensor:
    """Every texel not in `filled` [T,T] takes the value of the nearest filled texel (seam and
    gutter filling, so filtering never pulls in background)."""
    if not filled.any() or filled.all():
        return texture
    _, (rows, cols) = ndimage.distance_transform_edt(~filled.cpu().numpy(), return_indices=True)
    index = torch.from_numpy((rows * filled.shape[1] + cols).astype(np.int64)).to(texture.device)
    return texture.reshape(-1, texture.shape[-1])[index.reshape(-1)].reshape(texture.shape)
