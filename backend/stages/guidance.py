"""Stage 1's guidance from the models: Zero123 score distillation, the six pseudo views, and
Make-It-3D's text prior and CLIP loss at the novel view; stage 2's refinement targets."""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor

from ..geometry.cameras import OrbitPose, relative_pose
from ..models import records
from ..models.catalogue import ModelRecord
from ..models.multiview import ZERO123PP_FOVY_DEG, MultiViewImages
from ..models.text_prior import DirectionalPrompts, TextPrior
from ..models.zero123 import ReferenceEmbedding, StepCallback, Zero123
from .config import GeometryConfig, TextureConfig
from .geometry import PseudoViews
from .losses import clip_consistency_loss, foreground_mask
from .preprocess import PreparedInput

log = logging.getLogger(__name__)


class Zero123Guidance:
    """SDS at absolute poses, converted to the poses relative to the input view Zero123 wants."""

    def __init__(self, zero123: Zero123, reference: ReferenceEmbedding, config: GeometryConfig):
        self.zero123, self.reference, self.config = zero123, reference, config
        self._reference_pose = OrbitPose(torch.tensor([config.reference_elevation_deg]), torch.zeros(1),
                                         torch.tensor([config.camera_radius]))

    def sds_loss(self, images: Tensor, poses: OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        relative = relative_pose(self._reference_pose, poses)
        return self.zero123.sds(images, self.reference, relative, guidance_scale=self.config.guidance_scale,
                                t_range=self.config.t_range,
                                step_ratio=step_ratio if self.config.anneal_timesteps else None,
                                generator=generator).loss


class TextPriorGuidance:
    """Make-It-3D's text prior: Stable Diffusion SDS at the novel view under the prompt (or the
    caption), view-dependent, annealed like the Zero123 term (a `NovelViewPrior`)."""

    name = "text sds"

    def __init__(self, prior: TextPrior, prompt: str, config: GeometryConfig):
        self.prior, self.config, self.weight = prior, config, config.text_sds_weight
        self.prompts = DirectionalPrompts(prior, prompt, view_dependent=config.view_dependent_prompt)

    def loss(self, images: Tensor, poses: OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        return self.prior.sds(images, self.prompts.for_poses(poses), self.prompts.unconditional,
                              guidance_scale=self.config.text_guidance_scale, t_range=self.config.t_range,
                              step_ratio=step_ratio if self.config.anneal_timesteps else None,
                              generator=generator).loss


class ClipReferenceGuidance:
    """Make-It-3D's CLIP loss in the coarse stage: a novel view must be the same object, in CLIP's
    eyes, as the input image (a `NovelViewPrior`)."""

    name = "clip"

    def __init__(self, clip, reference_image: Tensor, weight: float):  # reference [1, 3, S, S] on white
        self.clip, self.weight = clip, weight
        with torch.no_grad():
            self.target = clip.encode_images(reference_image).detach()  # [1, D]

    def loss(self, images: Tensor, poses: OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        return clip_consistency_loss(self.clip.encode_images(images), self.target)


def pseudo_views(registry, reference: ReferenceEmbedding, prepared: PreparedInput, config: GeometryConfig, *,
                 novel_view: ModelRecord[Zero123], generator: torch.Generator,
                 on_step: StepCallback | None = None) -> PseudoViews | None:
    """The six fixed views from the configured generator (None when it is off), with foreground
    masks and monocular depth (the depth model runs on the generated images), on white.

    `prepared` is the recentred cut-out: Zero123++ gets it on its grey, and the object's size in it
    places Zero123++'s cameras (`zero123pp_radius`)."""
    from ..models.multiview import INPUT_BACKGROUND, Zero123MultiView

    if config.multiview_generator == "off":
        return None
    if config.multiview_generator == "zero123pp":
        views = registry.get(records.MULTIVIEW).generate(prepared.image_on(INPUT_BACKGROUND),
                                                         steps=config.multiview_samples, generator=generator,
                                                         on_step=on_step)
    else:
        views = Zero123MultiView(registry.get(novel_view)).generate(
            reference, radius=config.camera_radius, steps=config.multiview_samples,
            guidance_scale=config.guidance_scale, generator=generator, on_step=on_step)
    depth = registry.get(records.DEPTH) if config.depth_weight > 0 else None
    return pseudo_targets(views, torch.from_numpy(prepared.mask), config, depth=depth)


def pseudo_targets(views: MultiViewImages, reference_mask: Tensor, config: GeometryConfig, *,
                   depth=None) -> PseudoViews:
    """Generated views → stage 1's targets: masks from the generator's background, the images moved
    onto white (Lift3D renders on white), the cameras at the generator's field of view, placed at
    the distance that shows the object at the size the views show it, and monocular depth."""
    images = views.images.float().cpu()
    masks = foreground_mask(images, views.background).float()
    images = images * masks[:, None] + (1 - masks[:, None]) if views.background != 1.0 else images
    # Zero123++ frames the object at its own normalised size: its distance is measured.
    radius = zero123pp_radius(reference_mask, masks, config) if views.own_framing else config.camera_radius
    poses = OrbitPose(views.poses.elevation_deg, views.poses.azimuth_deg,
                      torch.full_like(views.poses.radius, radius))
    inverse_depth = depth.predict(images).cpu() * masks if depth is not None else None
    return PseudoViews(images, masks, inverse_depth, poses, views.fovy_deg)


MAX_RADIUS_RATIO = 4.0
"""Bound on how far the estimated pseudo-view distance may stray from the reference's (either way)."""


def zero123pp_radius(reference_mask: Tensor, view_masks: Tensor, config: GeometryConfig) -> float:
    """The camera distance at which Zero123++'s views (fov 30°) show the object as large as they do.

    Zero123++ v1.2 paints the object at its own normalised size whatever the input's framing, so
    its cameras' distance in Lift3D's units is measured: an object's apparent radius, as a fraction
    of the half-frame, is about R / (d·tan(fov/2)), and its area fraction grows with its square, so
    d = d_ref · tan(fov_ref/2)/tan(fov/2) · √(area_ref / mean area of the views). Reference
    mask [S, S], view masks [6, h, w] (area fractions, so their sizes may differ)."""
    reference_area = float(reference_mask.float().mean())
    view_area = float(view_masks.float().mean())
    if reference_area <= 0 or view_area <= 0:
        return float(config.camera_radius)
    ratio = (math.tan(math.radians(config.fovy_deg) / 2) / math.tan(math.radians(ZERO123PP_FOVY_DEG) / 2)
             * math.sqrt(reference_area / view_area))
    if not 1 / MAX_RADIUS_RATIO <= ratio <= MAX_RADIUS_RATIO:
        # Masks this far apart mean the keyed-out grey failed (a grey object, a drifting background).
        log.warning("Zero123++ camera distance estimated at %.2f× the reference's, outside 1/4..4: clamped", ratio)
    return float(config.camera_radius * min(max(ratio, 1 / MAX_RADIUS_RATIO), MAX_RADIUS_RATIO))


class DiffusionTextureGuidance:
    """Stage 2's targets: Zero123 SDEdit of each render (strength annealed over the steps),
    blended with SD img2img driven by the prompt, optionally cleaned by the one-step fixer; and
    CLIP consistency with the reference image and the prompt."""

    def __init__(self, zero123: Zero123, reference: ReferenceEmbedding, reference_image: Tensor,
                 config: TextureConfig, geometry: GeometryConfig, *, prompt: str = "", refiner=None, fixer=None,
                 clip=None, on_denoise_step: StepCallback | None = None):
        self.zero123, self.reference, self.config = zero123, reference, config
        self.prompt, self.refiner, self.fixer, self.clip = prompt.strip(), refiner, fixer, clip
        self.reference_image = reference_image  # [1, 3, S, S]: the input view, Difix-ref's reference
        self.on_denoise_step = on_denoise_step
        self._reference_pose = OrbitPose(torch.tensor([geometry.reference_elevation_deg]), torch.zeros(1),
                                         torch.tensor([geometry.camera_radius]))
        self._clip_targets = None
        if clip is not None:
            with torch.no_grad():
                targets = [clip.encode_images(reference_image)]
                if self.prompt:
                    targets.append(clip.encode_texts([self.prompt]))
            self._clip_targets = torch.cat(targets).detach()

    def targets(self, renders: Tensor, poses: OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        first, last = self.config.strength
        strength = first + (last - first) * step_ratio
        relative = relative_pose(self._reference_pose, poses)
        size = renders.shape[-1]
        refined = self.zero123.refine(renders, self.reference, relative, strength=strength,
                                      steps=self.config.denoise_steps, guidance_scale=self.config.guidance_scale,
                                      generator=generator, on_step=self.on_denoise_step)
        refined = torch.nn.functional.interpolate(refined, (size, size), mode="bilinear", align_corners=False)
        weight = self.config.prompt_refine_weight
        if self.refiner is not None and self.prompt and weight > 0:
            prompted = self.refiner.refine(renders, self.prompt, strength=self.config.prompt_strength,
                                           steps=self.config.prompt_steps, generator=generator,
                                           on_step=self.on_denoise_step)
            refined = (1 - weight) * refined + weight * prompted.to(refined)
        if self.fixer is not None:
            refined = self.fixer.fix(refined, self._fixer_reference(len(refined)), generator=generator).to(refined)
        return refined

    def _fixer_reference(self, count: int) -> Tensor | None:
        """The input view as every target's reference (it is the one real image of the object)."""
        if not getattr(self.fixer, "uses_reference", False):
            return None
        return self.reference_image.expand(count, -1, -1, -1)

    def semantic_loss(self, renders: Tensor) -> Tensor | None:
        if self.clip is None:
            return None
        return clip_consistency_loss(self.clip.encode_images(renders), self._clip_targets)

    def dense_features(self, renders: Tensor) -> Tensor | None:
        """Unit dense CLIP features [B, D, h, w] of renders [B, 3, H, W] (None without CLIP)."""
        return None if self.clip is None else self.clip.dense_features(renders)
