"""Growing a Gaussian scene along a camera path (3D-SceneDreamer's loop, on our Gaussians):

    first keyframe   the given image, or text-to-image from the prompt; its monocular depth read
                     as inverse depth at a conventional scale; one Gaussian per (sampled) pixel
    each next one    render the scene there (RGB, alpha, depth) → the pixels it does not explain
                     (`masks`) → inpaint them under the prompt → monocular depth of the completed
                     image aligned to the render (`align`) → Gaussians for the inpainted pixels
    after each       optimise all Gaussians on batches drawn from every keyframe so far (the
                     support database: replay, so old views are not forgotten) with RGB, depth
                     and opacity terms, densifying as stage 1 does

The models come in through two small protocols, so the benchmark's oracles and the real models
(`pipelines/scene.py`) drive the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from ..geometry import gaussians as gs
from ..geometry.cameras import Cameras
from ..geometry.optimize import DensifyConfig, GaussianTrainer, OptimConfig
from ..geometry.splat import SplatRender, render_splats
from .align import Alignment, AlignmentError, aligned_depth, first_frame_depth
from .masks import MaskConfig, inpaint_mask, observed
from .support import SupportDatabase, SupportEntry
from .trajectory import Trajectory, keyframe_indices

Check = Callable[[], None]


class Inpainter(Protocol):
    def first_frame(self, prompt: str, camera: Cameras, generator: torch.Generator) -> Tensor:
        """→ the first keyframe [H, W, 3] in [0, 1] at the camera's size (text-to-image)."""

    def inpaint(self, image: Tensor, mask: Tensor, prompt: str, camera: Cameras,
                generator: torch.Generator) -> Tensor:
        """image [H, W, 3] (the render), mask [H, W] bool (True: fill) → the completed image [H, W, 3]."""


class DepthModel(Protocol):
    def estimate(self, image: Tensor, camera: Cameras) -> Tensor:
        """image [H, W, 3] → relative disparity [H, W] (the true one up to scale and shift)."""


# The original 3D Gaussian Splatting learning rates (a room is metres across, not an object in a
# unit ball: positions move at 1.6e-4 of the scene's extent per step).
SCENE_OPTIM = OptimConfig(means_lr=1.6e-4, means_lr_final=1.6e-5, scales_lr=5e-3, quats_lr=1e-3,
                          opacities_lr=5e-2, sh0_lr=2.5e-3, shN_lr=1.25e-4,
                          densify=DensifyConfig(refine_start=20, refine_every=40, refine_stop=10_000,
                                                reset_every=100_000, prune_scale3d=1.0))


@dataclass(frozen=True)
class SceneConfig:
    size: int = 256
    """Side of the square keyframes (a multiple of 8: the inpainting model's VAE)."""
    keyframes: int = 12
    first_steps: int = 80
    """Optimisation steps on the first keyframe alone."""
    steps_per_keyframe: int = 40
    """Replay steps after each later keyframe."""
    views_per_step: int = 1
    newest_share: float = 0.5
    depth_weight: float = 0.3
    """Weight of the relative depth error |z_target / z_rendered − 1| against the RGB L1."""
    opacity_weight: float = 0.1
    """Weight of (1 − alpha): a scene seen from inside is opaque everywhere."""
    first_median_depth: float = 3.0
    """The first keyframe's median depth in metres: the scene's scale (a room seen from its middle)."""
    far_factor: float = 10.0
    """Depth is capped at this many times the first keyframe's median (sky and far things)."""
    points_per_keyframe: int = 40_000
    initial_opacity: float = 0.8
    blend_px: float = 6.0
    mask: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = SCENE_OPTIM
    seed: int = 0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.size % 8 or self.size < 64:
            raise ValueError(f"the keyframe size must be a multiple of 8 from 64, got {self.size}")


@dataclass
class KeyframeStats:
    keyframe: int
    path_index: int
    inpainted: float
    """Share of the keyframe's pixels that were inpainted."""
    alignment: Alignment | None
    gaussians: int
    seconds: float
    note: str = ""
    """A warning for the artist (the keyframe could not be aligned to the scene)."""


@dataclass
class GrownScene:
    gaussians: gs.Gaussians
    support: SupportDatabase
    stats: list[KeyframeStats]
    trajectory: Trajectory
    keyframes: list[int]


@dataclass
class SceneCallbacks:
    """Hooks for the orchestrator (progress, previews, cancellation) and the benchmark."""
    check: Check = lambda: None
    on_step: Callable[[int, int], None] = lambda step, total: None
    on_keyframe: Callable[[KeyframeStats, SupportEntry, gs.Gaussians], None] = lambda stats, entry, g: None


def render_scene(gaussians: gs.Gaussians, cameras: Cameras, backend: str) -> SplatRender:
    """RGB, alpha and depth over black (a scene has no backdrop: uncovered pixels stay dark)."""
    return render_splats(gaussians, cameras, backgrounds=torch.zeros(3, device=gaussians.device), backend=backend)


def _new_gaussians(entry_image: Tensor, depth: Tensor, pixels: Tensor, camera: Cameras, config: SceneConfig,
                   generator: torch.Generator) -> gs.Gaussians | None:
    pick = pixels & (depth > 0)
    if not pick.any():
        return None
    return gs.from_depth(entry_image, depth, pick, camera, max_points=config.points_per_keyframe,
                         opacity=config.initial_opacity, generator=generator)


class SceneGrower:
    """Runs the loop; holds the Gaussians and the support database between keyframes."""

    def __init__(self, trajectory: Trajectory, prompt: str, inpainter: Inpainter, depth_model: DepthModel,
                 config: SceneConfig, callbacks: SceneCallbacks | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.trajectory, self.prompt, self.config = trajectory, prompt, config
        self.device = torch.device(device)
        self.inpainter, self.depth_model = inpainter, depth_model
        self.callbacks = callbacks or SceneCallbacks()
        self.keyframes = keyframe_indices(len(trajectory), config.keyframes)
        self.cameras = trajectory.cameras(config.size, self.keyframes).to(self.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.support = SupportDatabase()
        self.gaussians: gs.Gaussians | None = None
        self.trainer: GaussianTrainer | None = None
        self.stats: list[KeyframeStats] = []
        self.total_steps = config.first_steps + config.steps_per_keyframe * (len(self.keyframes) - 1)
        self.steps_done = 0
        self.max_depth = config.first_median_depth * config.far_factor

    def grow(self, first_image: Tensor | None = None) -> GrownScene:
        """first_image [H, W, 3] in [0, 1] at the keyframe size, or None to generate it."""
        self._first(first_image)
        for k in range(1, len(self.keyframes)):
            self._next(k)
        return GrownScene(self.gaussians, self.support, self.stats, self.trajectory, self.keyframes)

    # --- the first keyframe -------------------------------------------------------------------

    def _first(self, first_image: Tensor | None) -> None:
        started = time.perf_counter()
        camera, config = self.cameras[0], self.config
        image = first_image if first_image is not None else self.inpainter.first_frame(
            self.prompt, camera, self.generator)
        if tuple(image.shape) != (config.size, config.size, 3):
            raise ValueError(f"the first keyframe must be [{config.size}, {config.size}, 3], got {tuple(image.shape)}")
        image = image.to(self.device, torch.float32)
        self.callbacks.check()
        disparity = self.depth_model.estimate(image, camera).to(self.device, torch.float32)
        depth = first_frame_depth(disparity, config.first_median_depth)
        depth = torch.where(depth > 0, depth.clamp(max=self.max_depth), torch.full_like(depth, self.max_depth))
        everything = torch.ones_like(depth, dtype=torch.bool)
        entry = SupportEntry(self.keyframes[0], camera, image.float(), depth.float(), everything)
        self.gaussians = _new_gaussians(entry.image, entry.depth, everything, camera, config, self.generator)
        means = self.gaussians.means.detach()
        extent = float((means - means.mean(0)).norm(dim=-1).quantile(0.9))
        # One optimiser for the whole growth: its moments and the position learning rate's decay run
        # across keyframes, and new Gaussians join it (`GaussianTrainer.append`).
        self.trainer = GaussianTrainer(self.gaussians, config.optim, self.total_steps, scene_scale=max(extent, 1e-3))
        self.support.add(entry)
        self._replay(config.first_steps)
        self._record(0, entry, 1.0, None, started)

    # --- each next keyframe -------------------------------------------------------------------

    def _next(self, k: int) -> None:
        started = time.perf_counter()
        camera, config = self.cameras[k], self.config
        with torch.no_grad():
            render = render_scene(self.gaussians, camera, config.backend)
        rgb, alpha, depth = render.rgb[0].clamp(0, 1), render.alpha[0, ..., 0], render.depth[0, ..., 0]
        support = self.support
        observation = observed(alpha, depth, camera, support.cameras, support.depths, support.depths > 0,
                               config.mask)
        seen, seen_depth = observation.seen, observation.depth
        mask = inpaint_mask(seen, config.mask)
        known = seen & ~mask
        note = ""
        self.callbacks.check()
        if mask.any():
            completed = self.inpainter.inpaint(rgb, mask, self.prompt, camera, self.generator).to(self.device)
            image = torch.where(mask[..., None], completed.float().clamp(0, 1), rgb)
            self.callbacks.check()
            disparity = self.depth_model.estimate(image, camera).to(self.device, torch.float32)
            try:
                new_depth, fit = aligned_depth(disparity, seen_depth, known, mask, blend_px=config.blend_px,
                                               max_depth=self.max_depth)
            except AlignmentError as exc:
                # Nothing (reliable) in common with the scene so far: a path that jumps. The keyframe
                # is placed as the first one was, at the scene's conventional scale, and said so.
                note = (f"keyframe {k + 1} shares too little with the scene so far to align its depth ({exc}); "
                        f"placed at the first keyframe's scale: add keyframes for a closer fit")
                try:
                    fallback = first_frame_depth(disparity, config.first_median_depth).clamp(max=self.max_depth)
                except AlignmentError as empty:
                    raise AlignmentError(f"keyframe {k + 1} of {len(self.keyframes)} (path pose {self.keyframes[k]}) "
                                         f"cannot be placed: {exc}, and {empty}") from None
                new_depth, fit = torch.where(known, seen_depth, torch.where(mask, fallback, 0.0)), None
            new_depth = torch.where(mask & (new_depth <= 0), torch.full_like(new_depth, self.max_depth), new_depth)
            added = _new_gaussians(image, new_depth, mask, camera, config, self.generator)
            if added is not None:
                self.trainer.append(added)
        else:  # nothing new: the view still joins the replay set
            image, new_depth, fit = rgb, seen_depth, None
        entry = SupportEntry(self.keyframes[k], camera, image, new_depth.float(), mask)
        self.support.add(entry)
        self._replay(config.steps_per_keyframe)
        self._record(k, entry, float(mask.float().mean()), fit, started, note)

    def _record(self, k: int, entry: SupportEntry, inpainted: float, fit: Alignment | None, started: float,
                note: str = "") -> None:
        stats = KeyframeStats(k, self.keyframes[k], inpainted, fit, len(self.gaussians), time.perf_counter() - started,
                              note)
        self.stats.append(stats)
        self.callbacks.on_keyframe(stats, entry, self.gaussians)

    # --- replay -------------------------------------------------------------------------------

    def _replay(self, steps: int) -> None:
        """Optimise every Gaussian on batches from the whole support database."""
        config, support, trainer = self.config, self.support, self.trainer
        images, depths, cameras = support.images, support.depths, support.cameras
        for _ in range(steps):
            self.callbacks.check()
            step = self.steps_done
            batch = support.sample(config.views_per_step, config.newest_share, self.generator)
            render = render_scene(self.gaussians, cameras[torch.tensor(batch)], config.backend)
            if render.rgb.requires_grad:  # else no Gaussian is in view: nothing to optimise this step
                loss = self._replay_loss(render, images[batch], depths[batch])
                trainer.before_backward(step, render)
                loss.backward()
                trainer.after_backward(step, render)
            self.steps_done += 1
            self.callbacks.on_step(self.steps_done, self.total_steps)

    def _replay_loss(self, render: SplatRender, target: Tensor, target_depth: Tensor) -> Tensor:
        """RGB L1, relative depth error where the render is solid, and (1 − alpha) where there is
        a surface to cover."""
        config = self.config
        valid = (target_depth > 0).float()
        alpha = render.alpha[..., 0]
        loss = (render.rgb - target).abs().mean()
        depth_ok = valid * (alpha > 0.5).float()
        relative = (target_depth / render.depth[..., 0].clamp_min(1e-6) - 1).abs().clamp(max=1.0)
        loss = loss + config.depth_weight * (relative * depth_ok).sum() / depth_ok.sum().clamp_min(1)
        return loss + config.opacity_weight * ((1 - alpha) * valid).mean()
