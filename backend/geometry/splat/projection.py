"""Projection of 3D Gaussians to screen space and SH colour evaluation, in plain PyTorch.

These follow gsplat 1.5's pinhole path exactly (EWA splatting with the Jacobian clamped to 1.3×
the field of view, `eps2d` dilation, 3.33σ per-axis radii, the same validity rules), so the torch
renderer and `gsplat.rasterization` agree and gsplat's densification reads the same metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Real SH basis constants of the original 3DGS code (gsplat uses the same basis).
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
SH_C0 = 0.28209479177387814


@dataclass
class Projected:
    """Per-camera screen-space Gaussians (dense layout, gsplat's `packed=False`)."""

    means2d: Tensor  # [C, N, 2] pixel coordinates (the tensor whose .grad drives densification)
    conics: Tensor  # [C, N, 3] inverse 2D covariance (a, b, c) of a·dx² + 2b·dx·dy + c·dy²
    depths: Tensor  # [C, N] camera z
    radii: Tensor  # [C, N, 2] int32 half-extent in pixels (x, y); 0 = culled


def quat_to_rotmat(quats: Tensor) -> Tensor:  # [N, 4] wxyz → [N, 3, 3]
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def covariances(quats: Tensor, scales: Tensor) -> Tensor:  # [N, 4], [N, 3] → [N, 3, 3]
    m = quat_to_rotmat(quats) * scales[:, None, :]
    return m @ m.transpose(1, 2)


def project(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
            *, near: float = 0.01, far: float = 1e10, eps2d: float = 0.3) -> Projected:
    """means [N,3], quats [N,4], scales [N,3] (activated), viewmats [C,4,4], Ks [C,3,3]."""
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # [C, N, 3]
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covariances(quats, scales), R)  # R Σ Rᵀ

    x, y, z_raw = means_c.unbind(-1)
    # Gaussians at or behind the near plane are culled below, but their terms still sit in the dense
    # [C, N] tensors: at z = 0 the Jacobian is infinite and the backward pass multiplies their zero
    # gradient by it (0 · inf = NaN), which Adam then writes into the parameters. They are evaluated
    # at a harmless depth instead (gsplat's kernel skips them altogether).
    in_front = z_raw > near
    z = torch.where(in_front, z_raw, torch.ones_like(z_raw))
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    # Clamp the Jacobian's evaluation point to 1.3× the frustum, as gsplat does, so Gaussians far
    # off-screen do not get absurd footprints.
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    tx = z * torch.clamp(x / z, min=-(cx / fx + 0.3 * tan_x), max=(width - cx) / fx + 0.3 * tan_x)
    ty = z * torch.clamp(y / z, min=-(cy / fy + 0.3 * tan_y), max=(height - cy) / fy + 0.3 * tan_y)
    zeros = torch.zeros_like(z)
    J = torch.stack([fx / z, zeros, -fx * tx / z**2, zeros, fy / z, -fy * ty / z**2], dim=-1)
    J = J.reshape(*z.shape, 2, 3)
    cov2d = J @ covars_c @ J.transpose(-1, -2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det = a * c - b * b
    det_safe = det.clamp(min=1e-10)
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)

    with torch.no_grad():
        radius = torch.stack([torch.ceil(3.33 * a.clamp_min(0).sqrt()), torch.ceil(3.33 * c.clamp_min(0).sqrt())], -1)
        valid = (det > 0) & in_front & (z < far)
        inside = ((means2d[..., 0] + radius[..., 0] > 0) & (means2d[..., 0] - radius[..., 0] < width)
                  & (means2d[..., 1] + radius[..., 1] > 0) & (means2d[..., 1] - radius[..., 1] < height))
        radii = torch.where((valid & inside)[..., None], radius, torch.zeros_like(radius)).int()
    return Projected(means2d, conics, z_raw, radii)


def eval_sh(degree: int, sh: Tensor, dirs: Tensor) -> Tensor:
    """Colour from SH coefficients sh [..., K, 3] seen along dirs [..., 3]; gsplat's activation
    (SH + 0.5, clamped at 0)."""
    out = SH_C0 * sh[..., 0, :]
    if degree > 0:
        x, y, z = torch.nn.functional.normalize(dirs, dim=-1)[..., None].unbind(-2)
        out = out - _C1 * y * sh[..., 1, :] + _C1 * z * sh[..., 2, :] - _C1 * x * sh[..., 3, :]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            out = (out + _C2[0] * xy * sh[..., 4, :] + _C2[1] * yz * sh[..., 5, :]
                   + _C2[2] * (2 * zz - xx - yy) * sh[..., 6, :] + _C2[3] * xz * sh[..., 7, :]
                   + _C2[4] * (xx - yy) * sh[..., 8, :])
            if degree > 2:
                out = (out + _C3[0] * y * (3 * xx - yy) * sh[..., 9, :] + _C3[1] * xy * z * sh[..., 10, :]
                       + _C3[2] * y * (4 * zz - xx - yy) * sh[..., 11, :]
                       + _C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[..., 12, :]
                       + _C3[4] * x * (4 * zz - xx - yy) * sh[..., 13, :]
                       + _C3[5] * z * (xx - yy) * sh[..., 14, :] + _C3[6] * x * (xx - 3 * yy) * sh[..., 15, :])
    return torch.clamp_min(out + 0.5, 0.0)


def view_colors(sh: Tensor, degree: int, means: Tensor, camtoworlds: Tensor) -> Tensor:  # → [C, N, 3]
    """Per-camera colours; degree 0 skips the directions (view-independent)."""
    if degree == 0:
        return eval_sh(0, sh, means).expand(camtoworlds.shape[0], -1, -1)
    dirs = means[None] - camtoworlds[:, None, :3, 3]
    return eval_sh(degree, sh[None].expand(camtoworlds.shape[0], -1, -1, -1), dirs)
