"""Optimising Gaussians: one Adam per parameter group, a decaying position learning rate, and
gsplat's `DefaultStrategy` for densification and pruning (works with either splat renderer).

The trainer is loss-agnostic: stage 1 adds SDS and pseudo-ground-truth terms, the reconstruction
benchmark uses photometric losses; both call `before_backward` / `after_backward` around their own
`loss.backward()`. `fit_to_views` is the plain multi-view photometric fit built on it (optionally
with Difix3D's progressive fixing, `progressive_fix.ProgressiveFix`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .cameras import Cameras
from .depth_loss import pearson_depth_loss
from .gaussians import Gaussians
from .progressive_fix import ProgressiveFix, RoundReport
from .splat import SplatRender, render_splats


@dataclass(frozen=True)
class DensifyConfig:
    """gsplat `DefaultStrategy` settings (screen-space gradients are in NDC units)."""

    grow_grad2d: float = 2e-4
    """Average screen-space gradient above which a Gaussian is cloned (small) or split (large)."""
    grow_scale3d: float = 0.01
    """Scale, relative to the scene scale, separating "small" (clone) from "large" (split)."""
    prune_opa: float = 0.005
    """Gaussians fainter than this are removed at every refinement."""
    prune_scale3d: float = 0.1
    """Gaussians larger than this fraction of the scene scale are removed after the first reset."""
    refine_start: int = 100
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    """Opacity reset period (never reached by short fits, which is intended)."""


@dataclass(frozen=True)
class OptimConfig:
    """Learning rates (Adam) and densification. Defaults follow DreamGaussian's fast schedule."""

    means_lr: float = 1e-2
    """Initial position learning rate, multiplied by the scene scale."""
    means_lr_final: float = 2e-4
    """Position learning rate at the last step (exponential decay in between)."""
    scales_lr: float = 5e-3
    quats_lr: float = 5e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 1e-2
    shN_lr: float = 5e-4
    densify: DensifyConfig | None = field(default_factory=DensifyConfig)
    """None disables densification (fixed number of Gaussians)."""


class GaussianTrainer:
    """Adam + learning-rate schedule + densification around a loss the caller computes."""

    def __init__(self, gaussians: Gaussians, config: OptimConfig, total_steps: int, scene_scale: float = 1.0):
        from gsplat import DefaultStrategy  # its densification is pure PyTorch (runs on CPU too)

        self.gaussians, self.config, self.total_steps = gaussians, config, max(total_steps, 1)
        self.scene_scale = scene_scale
        lrs = {"means": config.means_lr * scene_scale, "scales": config.scales_lr, "quats": config.quats_lr,
               "opacities": config.opacities_lr, "sh0": config.sh0_lr, "shN": config.shN_lr}
        params = gaussians.params
        self.optimizers = {k: torch.optim.Adam([{"params": params[k], "lr": lr, "name": k}], eps=1e-15)
                           for k, lr in lrs.items()}
        self.strategy = None
        if config.densify is not None:
            d = config.densify
            self.strategy = DefaultStrategy(
                prune_opa=d.prune_opa, grow_grad2d=d.grow_grad2d, grow_scale3d=d.grow_scale3d,
                prune_scale3d=d.prune_scale3d, refine_start_iter=d.refine_start, refine_stop_iter=d.refine_stop,
                refine_every=d.refine_every, reset_every=d.reset_every)
            self.strategy.check_sanity(params, self.optimizers)
            self.state = self.strategy.initialize_state(scene_scale=scene_scale)

    def append(self, new: Gaussians) -> None:
        """Add `new` Gaussians to the ones being optimised, keeping each optimiser's moments for the
        existing ones (the new rows start at zero moments): a scene grown keyframe by keyframe keeps
        one optimiser, so Adam does not restart and jolt every Gaussian it already fitted. The new
        rows share the group's step count, so Adam's bias correction is already about 1 for them:
        their first steps are larger than a fresh optimiser's (about 3× the learning rate), as for
        the Gaussians gsplat's densification adds."""
        params = self.gaussians.params
        if new.sh_degree != self.gaussians.sh_degree:
            raise ValueError(f"cannot add Gaussians of SH degree {new.sh_degree} to degree {self.gaussians.sh_degree}")
        for key, optimizer in self.optimizers.items():
            old = params[key]
            extra = new.params[key].detach().to(old.device, old.dtype)
            grown = torch.nn.Parameter(torch.cat([old.detach(), extra]))
            state = optimizer.state.pop(old, {})
            for name, value in list(state.items()):
                if torch.is_tensor(value) and value.dim() > 0 and value.shape == old.shape:
                    state[name] = torch.cat([value, torch.zeros_like(extra)])
            optimizer.param_groups[0]["params"] = [grown]
            if state:
                optimizer.state[grown] = state
            params[key] = grown
        if self.strategy is not None:  # its per-Gaussian statistics restart (gsplat builds them lazily)
            for name in ("grad2d", "count", "radii"):
                if name in self.state:
                    self.state[name] = None

    def means_lr(self, step: int) -> float:
        t = min(step / self.total_steps, 1.0)
        start = self.config.means_lr * self.scene_scale
        end = self.config.means_lr_final * self.scene_scale
        return math.exp((1 - t) * math.log(start) + t * math.log(end))

    def before_backward(self, step: int, render: SplatRender) -> None:
        if self.strategy is not None:
            self.strategy.step_pre_backward(self.gaussians.params, self.optimizers, self.state, step, render.meta)

    def after_backward(self, step: int, render: SplatRender) -> None:
        for group in self.optimizers["means"].param_groups:
            group["lr"] = self.means_lr(step)
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if self.strategy is not None:
            self.strategy.step_post_backward(self.gaussians.params, self.optimizers, self.state, step, render.meta,
                                             packed=False)


@dataclass(frozen=True)
class FitConfig:
    """A photometric multi-view fit (reconstruction benchmark, tests)."""

    steps: int = 600
    views_per_step: int = 2
    mask_weight: float = 1.0
    """Weight of the L1 between rendered alpha and the target mask (silhouette supervision)."""
    depth_weight: float = 0.0
    """Weight of 1 − Pearson(rendered depth, target inverse depth) inside the mask, when depth
    targets are given (stage 1's monocular-depth term: invariant to their scale and shift)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0


def fit_to_views(gaussians: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, config: FitConfig,
                 *, background: Tensor | None = None, backend: str = "auto",
                 on_step: Callable[[int, float], None] | None = None,
                 progressive: ProgressiveFix | None = None,
                 on_round: Callable[[RoundReport], None] | None = None,
                 check: Callable[[], None] | None = None, depths: Tensor | None = None) -> list[float]:
    """Fit `gaussians` in place to images [C,H,W,3] and masks [C,H,W] seen by `cameras` (and,
    with `depths` [C,H,W] inverse depth and `config.depth_weight`, their depth up to scale and shift).

    Each step renders a random subset of views over a random background colour (so the alpha has
    to be right, not just the colour), takes an L1 on RGB plus a mask L1, and densifies.
    With `progressive`, fix rounds run at its schedule's steps (at the cameras' resolution;
    `check()` between their views, raise to cancel; `on_round(report)` after each), and a step
    also renders one fixed view on white, with probability `schedule.probability`, in the same
    render call, adding `schedule.weight` × its RGB L1 (no mask term: a fixer gives only colour).
    Returns the per-step losses.
    """
    if images.shape[:3] != masks.shape or images.shape[0] != len(cameras):
        raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} must match "
                         f"{len(cameras)} cameras")
    generator = torch.Generator().manual_seed(config.seed)
    # Fixed views draw from their own generator: the training views' draws stay those of a run
    # without fixing.
    fix_generator = torch.Generator().manual_seed(config.seed + 1)
    extent = (gaussians.means.detach() - gaussians.means.detach().mean(0)).norm(dim=-1).max().item()
    trainer = GaussianTrainer(gaussians, config.optim, config.steps, scene_scale=max(extent, 1e-3))
    masks = masks.float()
    losses = []
    for step in range(config.steps):
        if progressive is not None and progressive.due(step, config.steps):
            report = progressive.run_round(gaussians, width=cameras.width, height=cameras.height, step=step,
                                           check=check, backend=backend)
            if on_round is not None:
                on_round(report)
        views = torch.randperm(len(cameras), generator=generator)[: config.views_per_step]
        bg = torch.rand(3, generator=generator) if background is None else background
        target = images[views] * masks[views, ..., None] + bg * (1 - masks[views, ..., None])
        fixed = progressive.sample(fix_generator) if progressive is not None else None
        step_cameras, backgrounds = cameras[views], bg.expand(len(views), 3)
        if fixed is not None:
            step_cameras = Cameras.cat([step_cameras, progressive.camera(fixed, cameras.width, cameras.height)])
            backgrounds = torch.cat([backgrounds, torch.ones(1, 3, dtype=bg.dtype, device=bg.device)])
        render = render_splats(gaussians, step_cameras, backgrounds=backgrounds, backend=backend)
        n = len(views)
        loss = (render.rgb[:n] - target).abs().mean() + \
            config.mask_weight * (render.alpha[:n, ..., 0] - masks[views]).abs().mean()
        if depths is not None and config.depth_weight > 0:
            loss = loss + config.depth_weight * sum(
                pearson_depth_loss(render.depth[i, ..., 0], depths[view], masks[view] > 0.5)
                for i, view in enumerate(views.tolist())) / n
        if fixed is not None:
            loss = loss + progressive.loss(render.rgb[n], fixed, "l1")
        trainer.before_backward(step, render)
        loss.backward()
        trainer.after_backward(step, render)
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    return losses
