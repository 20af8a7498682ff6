"""Stage 2: refine the baked UV texture by multi-step diffusion denoising of rendered views.

Each step renders the textured mesh from a random orbit view, asks the guidance for a cleaner
version of that render (SDEdit through the image-conditioned novel-view model, blended with the
prompt-driven img2img refiner when there is a prompt), and pulls the texture towards it with an
MSE, plus the reference-view MSE and a CLIP semantic-consistency term. Only the texture is
optimised (in logit space, Adam, as DreamGaussian does); the geometry is fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry.cameras import OrbitPose, cameras_from_poses, random_orbit_poses, reference_camera
from ..geometry.textured_mesh import TexturedMesh, render_mesh
from .config import GeometryConfig, TextureConfig
from .cross_view import cross_view_loss, surface_correspondences
from .geometry import ReferenceTargets, _resize


class TextureGuidance(Protocol):
    def targets(self, renders: Tensor, poses: OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        """Cleaner versions [B, 3, H, W] of renders [B, 3, H, W] seen from absolute `poses`."""
        ...

    def semantic_loss(self, renders: Tensor) -> Tensor | None:
        """A differentiable consistency loss on renders [B, 3, H, W] (None: no such term)."""
        ...

    # Optional: `dense_features(renders [B, 3, H, W]) -> Tensor [B, D, h, w] | None`, unit features
    # for the cross-view consistency term (`cross_view.py`).


@dataclass
class TextureResult:
    texture: Tensor  # [T, T, 3] in [0, 1]
    losses: dict[str, list[float]] = field(default_factory=dict)


def _downsample(image: Tensor, size: int) -> Tensor:  # [C, H, W, K] → [C, K, size, size] box-filtered
    image = image.permute(0, 3, 1, 2)
    factor = image.shape[-1] // size
    return F.avg_pool2d(image, factor) if factor > 1 else image


def _logit(x: Tensor, eps: float = 1e-4) -> Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def _cross_view_term(textured: TexturedMesh, poses: OrbitPose, rgb: Tensor, dense, config: TextureConfig,
                     camera: GeometryConfig, fine: int, size: int, white: Tensor, mesh_backend: str) -> Tensor | None:
    """The step's view [1, 3, S, S] against a second view `cross_view_offset_deg` further round:
    dense CLIP features compared where both see the same surface point."""
    second = OrbitPose(poses.elevation_deg, poses.azimuth_deg + config.cross_view_offset_deg, poses.radius)
    view = render_mesh(textured, cameras_from_poses(second, fovy_deg=camera.fovy_deg, width=fine, height=fine),
                       backgrounds=white, backend=mesh_backend)
    both = OrbitPose(torch.cat([poses.elevation_deg, second.elevation_deg]),
                     torch.cat([poses.azimuth_deg, second.azimuth_deg]), torch.cat([poses.radius, second.radius]))
    pairs = surface_correspondences(textured.vertices, textured.faces,
                                    cameras_from_poses(both, fovy_deg=camera.fovy_deg, width=size, height=size),
                                    stride=max(1, size // 64), backend=mesh_backend)
    features = dense(torch.cat([rgb, _downsample(view.rgb, size)]))
    return None if features is None else cross_view_loss(features, pairs, size, size)


def refine_texture(mesh: TexturedMesh, reference: ReferenceTargets, guidance: TextureGuidance,
                   config: TextureConfig, camera: GeometryConfig, *, seed: int = 0,
                   mesh_backend: str = "auto",
                   on_step: Callable[[int, int, dict[str, float]], None] | None = None) -> TextureResult:
    """→ the refined texture; `on_step(step, total, losses)` after each step (raise to stop)."""
    if config.steps <= 0:
        return TextureResult(mesh.texture.detach().clone())
    device = mesh.vertices.device
    generator = torch.Generator().manual_seed(seed)
    logits = _logit(mesh.texture.detach().float()).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=config.learning_rate)
    size, fine = config.render_size, config.render_size * max(1, config.supersample)
    white = torch.ones(3, device=device)
    ref_cam = reference_camera(camera.reference_elevation_deg, camera.camera_radius, fovy_deg=camera.fovy_deg,
                               width=fine, height=fine)
    ref_image, ref_mask = _resize(reference.image, size).to(device), _resize(reference.mask, size).to(device)
    elevations = (camera.reference_elevation_deg + camera.novel_elevation_range_deg[0],
                  camera.reference_elevation_deg + camera.novel_elevation_range_deg[1])
    history: dict[str, list[float]] = {}
    target, poses = None, None
    for step in range(config.steps):
        ratio = (step + 1) / config.steps
        textured = TexturedMesh(mesh.vertices, mesh.faces, mesh.uvs, torch.sigmoid(logits), mesh.normals)
        if target is None or step % config.refine_every == 0:
            poses = random_orbit_poses(1, elevation_range_deg=elevations, radius=camera.camera_radius,
                                       generator=generator)
        view = render_mesh(textured, cameras_from_poses(poses, fovy_deg=camera.fovy_deg, width=fine, height=fine),
                           backgrounds=white, backend=mesh_backend)
        rgb, alpha = _downsample(view.rgb, size), _downsample(view.alpha, size)  # [1, 3|1, S, S]
        if target is None or step % config.refine_every == 0:
            with torch.no_grad():
                target = _resize(guidance.targets(rgb.detach(), poses, ratio, generator).float(), size).to(device)
        terms = {"refinement": F.mse_loss(rgb * alpha, target * alpha)}
        if config.reference_weight > 0:
            ref = render_mesh(textured, ref_cam, backgrounds=white, backend=mesh_backend)
            mask = _downsample(ref.alpha, size)[0, 0] * ref_mask
            diff = (_downsample(ref.rgb, size)[0] - ref_image) * mask
            terms["reference"] = config.reference_weight * diff.square().sum() / (3 * mask.sum().clamp_min(1))
        if config.clip_weight > 0:
            semantic = guidance.semantic_loss(rgb)
            if semantic is not None:
                terms["clip"] = config.clip_weight * semantic
        dense = getattr(guidance, "dense_features", None)
        if config.cross_view_weight > 0 and dense is not None:
            term = _cross_view_term(textured, poses, rgb, dense, config, camera, fine, size, white, mesh_backend)
            if term is not None:
                terms["cross_view"] = config.cross_view_weight * term
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        values = {name: float(term.detach()) for name, term in terms.items()}
        for name, value in values.items():
            history.setdefault(name, []).append(value)
        if on_step is not None:
            on_step(step + 1, config.steps, values)
    return TextureResult(torch.sigmoid(logits).detach(), history)
