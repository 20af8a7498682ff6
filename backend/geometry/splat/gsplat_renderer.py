"""`gsplat.rasterization` (CUDA) behind the project's splat interface."""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor


def gsplat_usable(device: torch.device) -> bool:
    """gsplat's kernels are CUDA-only; on a machine with nvcc but no GPU its JIT build fails late,
    so check for a CUDA device first and only then for the package."""
    return device.type == "cuda" and torch.cuda.is_available() and importlib.util.find_spec("gsplat") is not None


def rasterize_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, sh: Tensor, sh_degree: int,
                     viewmats: Tensor, Ks: Tensor, width: int, height: int, backgrounds: Tensor | None,
                     near: float, far: float, eps2d: float) -> tuple[Tensor, Tensor, Tensor, dict]:
    """Returns rgb [C,H,W,3], alpha [C,H,W,1], expected depth [C,H,W,1], meta."""
    from gsplat import rasterization

    # packed=False keeps the dense [C, N] metadata layout the torch renderer also produces.
    renders, alphas, meta = rasterization(
        means, quats, scales, opacities, sh, viewmats, Ks, width, height, near_plane=near, far_plane=far,
        eps2d=eps2d, sh_degree=sh_degree, packed=False, backgrounds=backgrounds, render_mode="RGB+ED")
    return renders[..., :3], alphas, renders[..., 3:4], meta
