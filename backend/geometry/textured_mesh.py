"""A UV-textured triangle mesh and its differentiable render (through `mesh_raster`).

UVs have their origin at the bottom-left (Blender/OBJ/trimesh); `texture` is an image with row 0
at the top, so texel row = (1 − v)·T. Stage 2 optimises `texture` through `render_mesh`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import mesh_raster
from .cameras import Cameras


@dataclass
class TexturedMesh:
    vertices: Tensor  # [V, 3] float32, world (Z up)
    faces: Tensor  # [F, 3] int64
    uvs: Tensor  # [V, 2] float32 in [0, 1]
    texture: Tensor  # [T, T, 3] float32 in [0, 1]
    normals: Tensor | None = None  # [V, 3] unit, outward

    def __post_init__(self) -> None:
        v = self.vertices.shape[0]
        if self.vertices.shape != (v, 3) or self.uvs.shape != (v, 2):
            raise ValueError(f"vertices {tuple(self.vertices.shape)} and uvs {tuple(self.uvs.shape)} must be "
                             "[V, 3] and [V, 2]")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must be [F, 3], got {tuple(self.faces.shape)}")
        if self.texture.ndim != 3 or self.texture.shape[-1] != 3:
            raise ValueError(f"texture must be [H, W, 3], got {tuple(self.texture.shape)}")

    def to(self, device: torch.device | str) -> TexturedMesh:
        return TexturedMesh(self.vertices.to(device), self.faces.to(device), self.uvs.to(device),
                            self.texture.to(device), None if self.normals is None else self.normals.to(device))


@dataclass
class MeshRender:
    rgb: Tensor  # [C, H, W, 3] over the background
    alpha: Tensor  # [C, H, W, 1] 1 where a triangle covers the pixel centre
    fragments: mesh_raster.Fragments


def render_mesh(mesh: TexturedMesh, cameras: Cameras, *, backgrounds: Tensor | None = None,
                backend: str = "auto") -> MeshRender:
    """Unlit albedo render (what the texture holds), differentiable w.r.t. `mesh.texture`."""
    cameras = cameras.to(mesh.vertices.device)
    frags = mesh_raster.rasterize(mesh.vertices, mesh.faces, cameras.viewmats, cameras.Ks, cameras.width,
                                  cameras.height, backend=backend)
    uv = mesh_raster.interpolate(mesh.uvs, frags, mesh.faces)
    colour = mesh_raster.sample_texture(mesh.texture, uv)
    alpha = frags.mask[..., None].to(colour.dtype)
    rgb = colour * alpha
    if backgrounds is not None:
        bg = torch.as_tensor(backgrounds, dtype=rgb.dtype, device=rgb.device).reshape(-1, 1, 1, 3)
        rgb = rgb + bg * (1 - alpha)
    return MeshRender(rgb, alpha, frags)
