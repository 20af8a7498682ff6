"""Splat rendering behind one interface: RGB, alpha and expected depth for a batch of cameras.

`backend="auto"` uses `gsplat.rasterization` for CUDA tensors and the project's tiled PyTorch
renderer everywhere else; both return gsplat-compatible metadata (`means2d`, `radii`, `width`,
`height`, `n_cameras`, `gaussian_ids=None`), so gsplat's `DefaultStrategy` densifies with either
(always `packed=False`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..cameras import Cameras
from ..gaussians import Gaussians
from .gsplat_renderer import gsplat_usable, rasterize_gsplat
from .projection import project, view_colors
from .torch_renderer import rasterize_tiled, rasterize_untiled

BACKENDS = ("auto", "gsplat", "torch", "torch-untiled")


@dataclass
class SplatRender:
    rgb: Tensor  # [C, H, W, 3] composited over the background
    alpha: Tensor  # [C, H, W, 1]
    depth: Tensor  # [C, H, W, 1] expected camera-space depth (Σwz / Σw; 0 where nothing is hit)
    meta: dict  # gsplat-compatible; meta["means2d"] [C, N, 2] carries the densification gradient
    backend: str


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown splat backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "gsplat" if gsplat_usable(device) else "torch"
    if backend == "gsplat" and not gsplat_usable(device):
        raise RuntimeError("the gsplat backend needs CUDA tensors, a CUDA GPU and `pip install gsplat`; "
                           "use backend='torch' on this machine")
    return backend


def _backgrounds(backgrounds: Tensor | None, n_cameras: int, like: Tensor) -> Tensor | None:
    if backgrounds is None:
        return None
    bg = torch.as_tensor(backgrounds, dtype=like.dtype, device=like.device)
    if bg.shape == (3,):
        bg = bg.expand(n_cameras, 3)
    if bg.shape != (n_cameras, 3):
        raise ValueError(f"backgrounds must be [3] or [{n_cameras}, 3], got {tuple(bg.shape)}")
    return bg.contiguous()


def render_splats(gaussians: Gaussians, cameras: Cameras, *, backgrounds: Tensor | None = None,
                  sh_degree: int | None = None, backend: str = "auto", near: float = 0.01, far: float = 1e10,
                  eps2d: float = 0.3) -> SplatRender:
    """Render `gaussians` from every camera. `sh_degree` (≤ the Gaussians' degree) lets training
    raise the active SH degree over time; `backgrounds` [3] or [C, 3]."""
    device = gaussians.device
    degree = gaussians.sh_degree if sh_degree is None else sh_degree
    if not 0 <= degree <= gaussians.sh_degree:
        raise ValueError(f"sh_degree {degree} exceeds the Gaussians' degree {gaussians.sh_degree}")
    name = resolve_backend(backend, device)
    cameras = cameras.to(device)
    viewmats, Ks = cameras.viewmats.float().contiguous(), cameras.Ks.float().contiguous()
    C, W, H = len(cameras), cameras.width, cameras.height
    means, quats, scales, opacities, sh = (gaussians.means, gaussians.quats, gaussians.scales,
                                           gaussians.opacities, gaussians.sh)
    bg = _backgrounds(backgrounds, C, means)
    if name == "gsplat":
        rgb, alpha, depth, meta = rasterize_gsplat(means, quats, scales, opacities, sh, degree, viewmats, Ks,
                                                   W, H, bg, near, far, eps2d)
        return SplatRender(rgb, alpha, depth, meta, name)

    proj = project(means, quats, scales, viewmats, Ks, W, H, near=near, far=far, eps2d=eps2d)
    colors = view_colors(sh, degree, means, torch.linalg.inv(viewmats))
    features = torch.cat([colors, proj.depths[..., None]], dim=-1)  # depth rides along as a 4th channel
    rasterize = rasterize_tiled if name == "torch" else rasterize_untiled
    rendered, alpha = rasterize(proj, opacities, features, W, H)
    rgb, depth_sum = rendered[..., :3], rendered[..., 3:4]
    depth = depth_sum / alpha.clamp_min(1e-10)  # gsplat's "ED"
    if bg is not None:
        rgb = rgb + bg[:, None, None, :] * (1.0 - alpha)
    meta = {"means2d": proj.means2d, "radii": proj.radii, "depths": proj.depths, "conics": proj.conics,
            "opacities": opacities, "width": W, "height": H, "n_cameras": C, "gaussian_ids": None,
            "camera_ids": None}
    return SplatRender(rgb, alpha, depth, meta, name)
