"""Degraded guidance for the oracle benchmark (ORACLE EVIDENCE): ground truth spoilt the way real
generative models spoil it, so a mechanism's value shows where guidance is imperfect.

Real novel-view and multi-view models give views that are plausible but do not agree: each has
its own colour cast, softness, a camera a few degrees off the one asked for, and its own noise.
`degrade` renders the truth that way; `shared=True` draws one colour cast and one pose error for a
whole set (what a *joint* multi-view model gives: its views agree with each other, if not with the
truth), `shared=False` draws them per view (six independent samples). Pixel noise is always drawn
per view. Also here: `colour_spread`, the cross-view consistency metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.bench.reconstruct import WHITE, gaussian_blur, render_antialiased
from backend.geometry import cameras as cm
from backend.geometry import mesh_raster as mr
from backend.geometry.textured_mesh import TexturedMesh


@dataclass(frozen=True)
class Degradation:
    colour_shift: float = 0.08
    """Std of a view's per-channel gain (around 1) and, halved, of its offset."""
    blur_px: float = 1.5
    """Gaussian blur sigma in pixels at 256² (scaled with the image size)."""
    jitter_deg: float = 2.5
    """Pose error: elevation and azimuth each off by up to this, uniformly."""
    noise: float = 0.03
    """Std of independent per-pixel noise inside the object."""


DEFAULT = Degradation()


def degrade(truth: TexturedMesh, poses: cm.OrbitPose, fovy_deg: float, size: int, degradation: Degradation,
            generator: torch.Generator, *, shared: bool) -> tuple[Tensor, Tensor]:
    """→ images [B, 3, size, size] on white and masks [B, size, size]: the truth at `poses`, each view
    (or the whole set, `shared`) with its own pose error and colour cast, blurred, plus noise."""
    count = len(poses.azimuth_deg)
    draws = 1 if shared else count

    def uniform(scale: float) -> Tensor:
        return ((torch.rand(draws, generator=generator) * 2 - 1) * scale).expand(count)

    jittered = cm.OrbitPose(poses.elevation_deg + uniform(degradation.jitter_deg),
                            poses.azimuth_deg + uniform(degradation.jitter_deg), poses.radius)
    cameras = cm.cameras_from_poses(jittered, fovy_deg=fovy_deg, width=size, height=size)
    rgb, alpha = render_antialiased(truth, cameras, backgrounds=torch.zeros(3))  # premultiplied colour
    rgb, alpha = rgb.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2)  # [B, 3|1, S, S]
    gain = 1 + torch.randn(draws, 3, generator=generator) * degradation.colour_shift
    offset = torch.randn(draws, 3, generator=generator) * degradation.colour_shift / 2
    gain, offset = gain.expand(count, 3)[..., None, None], offset.expand(count, 3)[..., None, None]
    # The cast applies to the object's colour c = rgb/α, kept in [0, 1]: in premultiplied terms
    # rgb·gain + offset·α, clamped to [0, α]; the background is untouched.
    rgb = torch.minimum((rgb * gain + offset * alpha).clamp_min(0), alpha)
    sigma = degradation.blur_px * size / 256
    rgb, alpha = gaussian_blur(rgb, sigma), gaussian_blur(alpha, sigma)
    rgb = rgb + torch.randn(rgb.shape, generator=generator) * degradation.noise * alpha
    images = (rgb + WHITE.view(1, 3, 1, 1) * (1 - alpha)).clamp(0, 1)
    return images, alpha[:, 0]


def colour_spread(truth: TexturedMesh, renders: Tensor, cameras: cm.Cameras, *, points: int = 20_000,
                  seed: int = 0) -> float:
    """Cross-view consistency of renders [C, H, W, 3] at `cameras`: for surface points of the truth
    seen by at least two of the views, the standard deviation of the rendered colour at their
    pixels across those views (mean over points and channels). A consistent object scores the
    truth's own spread (sampling only); view-dependent colour or misplaced geometry scores more."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        vertices, faces = truth.vertices, truth.faces
        corners = vertices[faces]  # [F, 3, 3]
        areas = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).norm(dim=-1)
        chosen = torch.multinomial(areas, points, replacement=True, generator=generator)
        weights = torch.rand(points, 2, generator=generator)
        flip = weights.sum(-1) > 1
        weights[flip] = 1 - weights[flip]
        a, b, c = corners[chosen].unbind(1)
        samples = a + weights[:, :1] * (b - a) + weights[:, 1:] * (c - a)
        fragments = mr.rasterize(vertices, faces, cameras.viewmats, cameras.Ks, cameras.width, cameras.height)
        pixels, visible = mr.visible_points(samples, cameras, fragments, 0.01)  # [C, P, 2], [C, P]
        grid = torch.stack([pixels[..., 0] / cameras.width * 2 - 1, pixels[..., 1] / cameras.height * 2 - 1], -1)
        colours = F.grid_sample(renders.permute(0, 3, 1, 2).float(), grid[:, :, None].float(), mode="bilinear",
                                align_corners=False)[..., 0].permute(0, 2, 1)  # [C, P, 3]
        seen = visible.float()[..., None]
        count = seen.sum(0)  # [P, 1]
        keep = count[:, 0] >= 2
        mean = (colours * seen).sum(0) / count.clamp_min(1)
        variance = (((colours - mean) ** 2) * seen).sum(0) / (count - 1).clamp_min(1)
        return float(variance[keep].sqrt().mean())
