"""Mesh rasterisation behind one interface: per-pixel triangle ids, barycentrics and depth,
attribute interpolation and texture sampling, differentiable w.r.t. textures and attributes.

Cameras follow `backend.geometry.cameras` (OpenCV world→camera `viewmats`, pixel `Ks`, row 0 at
the top), exactly as the splat renderer, so the same `Cameras` drive both. UVs have their origin
at the bottom-left (Blender/OBJ/trimesh); textures are images with row 0 at the top, so texel
row = (1 − v)·H and column = u·W.

`backend="auto"` uses nvdiffrast for CUDA tensors when it is installed (non-commercial licence)
and the project's PyTorch rasteriser otherwise; both give the same `Fragments`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .nvdiffrast_rasterizer import nvdiffrast_importable, rasterize_nvdiffrast
from .torch_rasterizer import rasterize_torch

BACKENDS = ("auto", "nvdiffrast", "torch")


@dataclass(frozen=True)
class Fragments:
    triangle_ids: Tensor  # [C, H, W] int64, −1 where no triangle covers the pixel centre
    barycentrics: Tensor  # [C, H, W, 3] perspective-correct weights of the triangle's vertices (0 outside)
    depth: Tensor  # [C, H, W] camera-space z (OpenCV), 0 outside

    @property
    def mask(self) -> Tensor:  # [C, H, W] bool
        return self.triangle_ids >= 0


def available_backends() -> list[str]:
    names = ["torch"]
    if nvdiffrast_importable() and torch.cuda.is_available():
        names.append("nvdiffrast")
    return names


def resolve_backend(name: str, device: torch.device) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown mesh rasteriser {name!r}; choose one of {BACKENDS}")
    if name == "auto":
        return "nvdiffrast" if device.type == "cuda" and "nvdiffrast" in available_backends() else "torch"
    if name == "nvdiffrast" and (device.type != "cuda" or "nvdiffrast" not in available_backends()):
        raise RuntimeError("the nvdiffrast rasteriser needs CUDA tensors, a CUDA GPU and `pip install "
                           "diffrp-nvdiffrast` (NVIDIA Source Code License: non-commercial use only); "
                           "use backend='torch' otherwise")
    return name


def rasterize(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
              near: float = 0.01, far: float = 100.0, backend: str = "auto") -> Fragments:
    """vertices [V,3] or [C,V,3] in the world, faces [F,3] int, viewmats [C,4,4], Ks [C,3,3]."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    C = viewmats.shape[0]
    if vertices.ndim == 2:
        vertices = vertices[None].expand(C, -1, -1)
    if vertices.ndim != 3 or vertices.shape[0] != C or vertices.shape[2] != 3:
        raise ValueError(f"vertices must be [V, 3] or [{C}, V, 3], got {tuple(vertices.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.is_floating_point:
        raise ValueError(f"faces must be an integer [F, 3] tensor, got {faces.dtype} {tuple(faces.shape)}")
    if len(faces) and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]):
        raise ValueError(f"face indices must lie in [0, {vertices.shape[1]}), got [{int(faces.min())}, "
                         f"{int(faces.max())}]")
    faces = faces.long().to(vertices.device)
    viewmats, Ks = viewmats.to(vertices.device), Ks.to(vertices.device)
    name = resolve_backend(backend, vertices.device)
    run = rasterize_nvdiffrast if name == "nvdiffrast" else rasterize_torch
    ids, bary, depth = run(vertices, faces, viewmats, Ks, width, height, near, far)
    return Fragments(ids, bary, depth)


def visible_points(points: Tensor, cameras, fragments: Fragments, depth_tolerance: float) -> tuple[Tensor, Tensor]:
    """Where world points [P, 3] land in each view of `cameras` (pixel coordinates [C, P, 2],
    centres at +0.5) and whether each is the visible surface there [C, P]: inside the image, on a
    covered pixel, and within `depth_tolerance` × its depth of that pixel's depth in `fragments`
    (the same cameras' rasterisation of the mesh the points lie on)."""
    from ..cameras import project_points

    pixels, depth = project_points(points, cameras)  # [C, P, 2], [C, P]
    rows = pixels[..., 1].long().clamp(0, cameras.height - 1)
    cols = pixels[..., 0].long().clamp(0, cameras.width - 1)
    view = torch.arange(len(cameras), device=points.device)[:, None]
    inside = ((pixels[..., 0] >= 0) & (pixels[..., 0] < cameras.width)
              & (pixels[..., 1] >= 0) & (pixels[..., 1] < cameras.height))
    surface_depth = fragments.depth[view, rows, cols]
    visible = inside & fragments.mask[view, rows, cols] & ((depth - surface_depth).abs() <= depth_tolerance * depth)
    return pixels, visible


def uv_space_fragments(faces: Tensor, uvs: Tensor, size: int) -> Fragments:
    """Rasterise a mesh in UV space at size² texels: for each texel centre, the triangle and
    barycentrics covering it (uvs [V, 2], origin bottom-left; texel row = (1 − v)·size)."""
    # A camera at the origin looking down +z at the plane z = 1 maps (u, 1 − v) to texel
    # coordinates; this reuses the perspective rasteriser for an orthographic UV-space pass.
    plane = torch.stack([uvs[:, 0], 1.0 - uvs[:, 1], torch.ones_like(uvs[:, 0])], dim=-1)
    viewmat = torch.eye(4, dtype=plane.dtype, device=plane.device)[None]
    K = torch.tensor([[[size, 0.0, 0.0], [0.0, size, 0.0], [0.0, 0.0, 1.0]]], dtype=plane.dtype, device=plane.device)
    return rasterize(plane, faces, viewmat, K, size, size)


def interpolate(attributes: Tensor, fragments: Fragments, faces: Tensor) -> Tensor:
    """Per-vertex attributes [V,D] or [C,V,D] → per-pixel values [C,H,W,D] (zeros outside)."""
    C = fragments.triangle_ids.shape[0]
    if attributes.ndim == 2:
        attributes = attributes[None].expand(C, -1, -1)
    corners = faces.long().to(attributes.device)[fragments.triangle_ids.clamp_min(0)]  # [C,H,W,3]
    batch = torch.arange(C, device=attributes.device)[:, None, None, None]
    values = attributes[batch, corners]  # [C,H,W,3,D]
    weights = fragments.barycentrics.to(attributes.dtype) * fragments.mask[..., None]
    return (weights[..., None] * values).sum(-2)


def sample_texture(texture: Tensor, uv: Tensor, *, filter: str = "bilinear", boundary: str = "clamp") -> Tensor:
    """texture [Ht,Wt,D] or [C,Ht,Wt,D], uv [C,H,W,2] → [C,H,W,D]; differentiable w.r.t. both."""
    if filter not in ("bilinear", "nearest"):
        raise ValueError(f"filter must be 'bilinear' or 'nearest', got {filter!r}")
    if boundary not in ("clamp", "wrap"):
        raise ValueError(f"boundary must be 'clamp' or 'wrap', got {boundary!r}")
    C = uv.shape[0]
    if texture.ndim == 3:
        texture = texture[None].expand(C, -1, -1, -1)
    if boundary == "wrap":
        uv = torch.remainder(uv, 1.0)
    # grid_sample: x = −1 is the left edge of column 0, y = −1 the top edge of row 0.
    grid = torch.stack([uv[..., 0] * 2 - 1, (1 - uv[..., 1]) * 2 - 1], dim=-1)
    out = torch.nn.functional.grid_sample(texture.permute(0, 3, 1, 2), grid.to(texture.dtype), mode=filter,
                                          padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1)
