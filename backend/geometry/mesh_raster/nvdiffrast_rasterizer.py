"""nvdiffrast's CUDA rasteriser behind the project's interface (optional: its licence is
non-commercial, see the README).

OpenCV cameras become clip space directly: with pixel coordinates u = fx·x/z + cx and
v = fy·y/z + cy, the clip vector (2fx/W·x + (2cx/W − 1)·z, 2fy/H·y + (2cy/H − 1)·z, ·, z) gives
NDC x = 2u/W − 1 and y = 2v/H − 1. nvdiffrast writes NDC y = −1 to output row 0, which is pixel
row v = 0, the top: no flip needed, and the two backends produce identical image layouts.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

_CONTEXTS: dict[torch.device, object] = {}


def nvdiffrast_importable() -> bool:
    return importlib.util.find_spec("nvdiffrast") is not None


def _context(device: torch.device):
    import nvdiffrast.torch as dr

    if device not in _CONTEXTS:  # one CUDA context per device; creating one costs ~100 ms
        _CONTEXTS[device] = dr.RasterizeCudaContext(device=device)
    return _CONTEXTS[device]


def opencv_to_clip(vertices: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int, near: float,
                   far: float) -> tuple[Tensor, Tensor]:
    """vertices [C,V,3] world → clip positions [C,V,4] and camera depth [C,V]."""
    cam = torch.einsum("cij,cvj->cvi", viewmats[:, :3, :3], vertices) + viewmats[:, None, :3, 3]
    x, y, z = cam.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    clip = torch.stack([2 * fx / width * x + (2 * cx / width - 1) * z,
                        2 * fy / height * y + (2 * cy / height - 1) * z,
                        (far + near) / (far - near) * z - 2 * far * near / (far - near),
                        z], dim=-1)
    return clip.contiguous(), z


def rasterize_nvdiffrast(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
                         near: float, far: float) -> tuple[Tensor, Tensor, Tensor]:
    """vertices [C,V,3] on CUDA → triangle ids [C,H,W], barycentrics [C,H,W,3], depth [C,H,W]."""
    import nvdiffrast.torch as dr

    clip, z = opencv_to_clip(vertices.float(), viewmats.float(), Ks.float(), width, height, near, far)
    tri = faces.int().contiguous()
    rast, _ = dr.rasterize(_context(vertices.device), clip, tri, resolution=(height, width))
    u, v = rast[..., 0], rast[..., 1]
    ids = rast[..., 3].long() - 1  # nvdiffrast stores triangle id + 1, 0 = empty
    # nvdiffrast interpolates as u·a0 + v·a1 + (1 − u − v)·a2 (perspective-correct).
    bary = torch.stack([u, v, 1 - u - v], -1) * (ids >= 0)[..., None]
    depth, _ = dr.interpolate(z[..., None].contiguous(), rast, tri)
    return ids, bary, depth[..., 0] * (ids >= 0)
