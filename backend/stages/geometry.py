"""Stage 1: 3D Gaussians optimised against the reference view, score distillation from a
novel-view model, the six pseudo-ground-truth views and monocular depth.

Every step renders the reference camera, one random novel camera and one pseudo-view camera in a
single call (so gsplat's densification sees one set of screen-space gradients), at a resolution
that grows with the step (128 → 256 → 512). The guidance is an interface: the pipeline passes
Zero123, the oracle benchmark passes renders of a known object.

With progressive fixing (Difix3D, `geometry/progressive_fix.py`; build it with
`progressive_fix_for`), fix rounds run at the schedule's steps — renders at the largest render
size from poses moving from the reference and pseudo-view poses toward uncovered poses, fixed by
a single-step fixer — and a step also renders one fixed view (with the schedule's probability) in
the same call, weighted like a pseudo view times `schedule.weight`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry import gaussians as gs
from ..geometry.cameras import Cameras, OrbitPose, cameras_from_poses, random_orbit_poses, reference_camera
from ..geometry.optimize import GaussianTrainer
from ..geometry.progressive_fix import (
    FixSchedule,
    ProgressiveFix,
    ViewFixer,
    concat_poses,
    pose_count,
    pose_subset,
    uncovered_poses,
    view_angles,
)
from ..geometry.splat import render_splats
from .config import GeometryConfig
from .losses import pearson_depth_loss


class Guidance(Protocol):
    def sds_loss(self, images: Tensor, poses: OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        """Score-distillation loss for renders images [B, 3, H, W] seen from absolute `poses`."""
        ...


class NovelViewPrior(Protocol):
    """A further loss on the step's novel-view render (the text prior, the CLIP loss): logged as
    `name`, weighted by `weight`."""

    name: str
    weight: float

    def loss(self, images: Tensor, poses: OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        """Unweighted loss for renders images [B, 3, H, W] seen from absolute `poses`."""
        ...


@dataclass
class ReferenceTargets:
    image: Tensor  # [3, S, S] in [0, 1], object on white
    mask: Tensor  # [S, S] float in {0, 1}
    depth: Tensor  # [S, S] monocular inverse depth (0 outside the mask)


@dataclass
class PseudoViews:
    images: Tensor  # [V, 3, S, S] in [0, 1] on white
    masks: Tensor  # [V, S, S] float
    depth: Tensor | None  # [V, S, S] monocular inverse depth, or None
    poses: OrbitPose  # absolute poses [V]
    fovy_deg: float


@dataclass
class GeometryResult:
    gaussians: gs.Gaussians
    losses: dict[str, list[float]] = field(default_factory=dict)


def render_size(config: GeometryConfig, step_ratio: float) -> int:
    small, medium, large = config.render_sizes
    return small if step_ratio < 0.3 else medium if step_ratio < 0.6 else large


def _resize(image: Tensor, size: int) -> Tensor:  # [..., H, W] → [..., size, size]
    shape = image.shape
    flat = image.reshape(-1, 1, *shape[-2:]).float()
    if shape[-1] != size:
        flat = F.interpolate(flat, (size, size), mode="bilinear", align_corners=False, antialias=shape[-1] > size)
    return flat.reshape(*shape[:-2], size, size)


MIN_TARGET_GAP_DEG = 15.0
"""Target poses closer than this to a training pose are dropped (an input elevation can cover one)."""


def progressive_fix_for(reference: ReferenceTargets, pseudo: PseudoViews | None, config: GeometryConfig,
                        fixer: ViewFixer, schedule: FixSchedule, *, target_poses: OrbitPose | None = None,
                        seed: int = 0) -> ProgressiveFix:
    """Progressive fixing for stage 1: training poses are the reference camera (azimuth 0, the
    input's elevation) and the pseudo views' poses, with their images (on white, at the largest
    render size) as the fixer's references; targets default to `progressive_fix.uncovered_poses`
    at the camera radius, less any within MIN_TARGET_GAP_DEG of a training pose."""
    size = config.render_sizes[-1]
    radius = float(config.camera_radius)
    poses = [OrbitPose(torch.tensor([float(config.reference_elevation_deg)]), torch.zeros(1), torch.tensor([radius]))]
    images = [_resize(reference.image.float(), size)[None]]
    if pseudo is not None:
        poses.append(pseudo.poses)
        images.append(_resize(pseudo.images.float(), size))
    training = concat_poses(poses)
    targets = uncovered_poses(radius) if target_poses is None else target_poses
    far = (view_angles(targets, training).min(dim=1).values >= MIN_TARGET_GAP_DEG).nonzero().flatten()
    if len(far) == 0:
        raise ValueError("every target pose is already covered by a training pose")
    if len(far) < pose_count(targets):
        targets = pose_subset(targets, far)
    return ProgressiveFix(schedule, fixer, training, targets, references=torch.cat([i.cpu() for i in images]),
                          fovy_deg=config.fovy_deg, seed=seed)


def optimise_gaussians(reference: ReferenceTargets, guidance: Guidance | None, pseudo: PseudoViews | None,
                       config: GeometryConfig, *, seed: int = 0, device: torch.device | str = "cpu",
                       splat_backend: str = "auto",
                       on_step: Callable[[int, int, gs.Gaussians, dict[str, float]], None] | None = None,
                       progressive: ProgressiveFix | None = None,
                       on_fix: Callable[[int, int, gs.Gaussians, str], None] | None = None,
                       priors: Sequence[NovelViewPrior] = ()) -> GeometryResult:
    """Optimise Gaussians from scratch; `on_step(step, total, gaussians, losses)` runs after each
    step (progress, previews, cancellation: raise from it to stop).

    With `progressive` (see `progressive_fix_for`), fix rounds run before the schedule's steps;
    `on_fix(step, total, gaussians, message)` runs before every view of a round and once after it
    (progress, previews, cancellation: raise from it to stop a round between two views).
    Each of `priors` adds its weighted loss on the novel-view render, logged under its name."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    # Fixed views draw from their own generator, so the rest of a run draws what it would without.
    fix_generator = torch.Generator().manual_seed(seed + 1)
    gaussians = gs.random_in_sphere(config.initial_gaussians, config.initial_radius, generator=generator).to(device)
    # The scene scale DreamGaussian uses for its learning rates and densification thresholds.
    trainer = GaussianTrainer(gaussians, config.optim, config.steps, scene_scale=1.0)
    white = torch.ones(3, device=device)
    use_sds = guidance is not None and config.sds_weight > 0
    use_pseudo = pseudo is not None and config.multiview_weight > 0
    history: dict[str, list[float]] = {}

    fixed_weight = config.multiview_weight if config.multiview_weight > 0 else config.rgb_weight

    for step in range(config.steps):
        if progressive is not None and progressive.due(step, config.steps):
            _fix_round(progressive, gaussians, step, config, splat_backend, on_fix)
        ratio = (step + 1) / config.steps
        size = render_size(config, ratio)
        ref_camera = reference_camera(config.reference_elevation_deg, config.camera_radius, fovy_deg=config.fovy_deg,
                                      width=size, height=size)
        novel = random_orbit_poses(1, elevation_range_deg=(config.reference_elevation_deg + config.novel_elevation_range_deg[0],
                                                           config.reference_elevation_deg + config.novel_elevation_range_deg[1]),
                                   radius=config.camera_radius, generator=generator)
        cameras = [ref_camera, cameras_from_poses(novel, fovy_deg=config.fovy_deg, width=size, height=size)]
        view = step % len(pseudo.images) if use_pseudo else -1
        if use_pseudo:
            pose = OrbitPose(pseudo.poses.elevation_deg[view:view + 1], pseudo.poses.azimuth_deg[view:view + 1],
                             pseudo.poses.radius[view:view + 1])
            cameras.append(cameras_from_poses(pose, fovy_deg=pseudo.fovy_deg, width=size, height=size))
        fixed = progressive.sample(fix_generator) if progressive is not None else None
        if fixed is not None:
            cameras.append(progressive.camera(fixed, size))
        render = render_splats(gaussians, Cameras.cat(cameras), backgrounds=white, backend=splat_backend)
        rgb = render.rgb.permute(0, 3, 1, 2)  # [C, 3, S, S]
        alpha, depth = render.alpha[..., 0], render.depth[..., 0]  # [C, S, S]

        terms: dict[str, Tensor] = {}
        ramp = ratio if config.reference_warmup else 1.0
        ref_image, ref_mask = _resize(reference.image, size).to(device), _resize(reference.mask, size).to(device)
        terms["reference rgb"] = config.rgb_weight * ramp * F.mse_loss(rgb[0], ref_image)
        terms["reference mask"] = config.mask_weight * ramp * F.mse_loss(alpha[0], ref_mask)
        if config.depth_weight > 0:
            ref_depth = _resize(reference.depth, size).to(device)
            terms["depth"] = config.depth_weight * pearson_depth_loss(depth[0], ref_depth, (ref_mask > 0.5) & (alpha[0] > 0.5))
        if use_sds:
            terms["sds"] = config.sds_weight * guidance.sds_loss(rgb[1:2], novel, ratio, generator)
        for prior in priors:
            terms[prior.name] = prior.weight * prior.loss(rgb[1:2], novel, ratio, generator)
        if use_pseudo:
            target = _resize(pseudo.images[view], size).to(device)
            terms["multiview"] = config.multiview_weight * F.mse_loss(rgb[2], target)
            if config.depth_weight > 0 and pseudo.depth is not None:
                mask = (_resize(pseudo.masks[view], size).to(device) > 0.5) & (alpha[2] > 0.5)
                terms["depth"] = terms.get("depth", 0.0) + config.depth_weight * pearson_depth_loss(
                    depth[2], _resize(pseudo.depth[view], size).to(device), mask)
        if fixed is not None:
            terms["fixed view"] = fixed_weight * progressive.loss(rgb[-1], fixed, "mse")
        loss = sum(terms.values())
        trainer.before_backward(step, render)
        loss.backward()
        trainer.after_backward(step, render)
        values = {name: float(term.detach()) for name, term in terms.items()}
        for name, value in values.items():
            history.setdefault(name, []).append(value)
        if on_step is not None:
            on_step(step + 1, config.steps, gaussians, values)
    return GeometryResult(gaussians, history)


def _fix_round(progressive: ProgressiveFix, gaussians: gs.Gaussians, step: int, config: GeometryConfig,
               splat_backend: str, on_fix: Callable[[int, int, gs.Gaussians, str], None] | None) -> None:
    """One fix round at the largest render size, reporting before every view and at the end."""
    views = min(progressive.schedule.views, progressive.targets)
    rounds = len(progressive.round_steps(config.steps))
    label = f"fixing novel views, round {progressive.rounds_done + 1}/{rounds}"
    done = [0]

    def check() -> None:
        if on_fix is not None:
            on_fix(step, config.steps, gaussians, f"{label}: view {done[0] + 1}/{views}")

    def on_view(count: int, total: int) -> None:
        done[0] = count

    size = config.render_sizes[-1]
    report = progressive.run_round(gaussians, width=size, step=step, check=check, on_view=on_view,
                                   backend=splat_backend)
    if on_fix is not None:
        on_fix(step, config.steps, gaussians, f"{label}: {len(report.views)} views fixed in {report.seconds:.1f} s")


def preview_arrays(gaussians: gs.Gaussians, max_splats: int) -> dict[str, np.ndarray]:
    """The live-preview payload: the `max_splats` most opaque splats in compact dtypes
    (float16 positions/scales/rotations, uint8 colours and opacities)."""
    with torch.no_grad():
        opacities = gaussians.opacities
        keep = torch.topk(opacities, min(max_splats, len(opacities))).indices if len(opacities) > max_splats \
            else torch.arange(len(opacities), device=opacities.device)
        colors = (gaussians.base_colors[keep].clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        return {"positions": gaussians.means[keep].half().cpu().numpy(),
                "colors": colors.cpu().numpy(),
                "opacities": (opacities[keep].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy(),
                "scales": gaussians.scales[keep].half().cpu().numpy(),
                "rotations": gaussians.quats[keep].half().cpu().numpy()}


def gaussians_payload(gaussians: gs.Gaussians) -> dict[str, np.ndarray]:
    """The Gaussians' parameters as arrays, for the result cache."""
    return {k: v.detach().cpu().numpy() for k, v in gaussians.params.items()}


def gaussians_from_payload(arrays: dict[str, np.ndarray], device: torch.device | str) -> gs.Gaussians:
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.from_numpy(np.array(v)).to(device))
                                     for k, v in arrays.items()})
    degree = int(round((arrays["shN"].shape[1] + 1) ** 0.5)) - 1
    return gs.Gaussians(params, sh_degree=degree)
