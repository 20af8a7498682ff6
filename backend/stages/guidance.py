"""Stage 1's guidance from the models: Zero123 score distillation, the six pseudo views, and
Make-It-3D's text prior and CLIP loss at the novel view; stage 2's refinement targets."""

from __future__ import annotations

import torch
from torch import Tensor

from ..geometry.cameras import OrbitPose, relative_pose
from ..models import records
from ..models.text_prior import DirectionalPrompts, TextPrior
from ..models.zero123 import ReferenceEmbedding, StepCallback, Zero123
from .config import GeometryConfig, TextureConfig
from .geometry import PseudoViews
from .losses import clip_consistency_loss, foreground_mask


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


def pseudo_views(registry, reference: ReferenceEmbedding, reference_image: Tensor, config: GeometryConfig, *,
                 generator: torch.Generator, on_step: StepCallback | None = None) -> PseudoViews:
    """The six fixed views from the configured generator, with foreground masks and monocular
    depth (the depth model runs on the generated images)."""
    from ..models.multiview import Zero123MultiView

    if config.multiview_generator == "zero123++":
        views = registry.get(records.MULTIVIEW).generate(reference_image, steps=config.multiview_samples,
                                                         generator=generator, on_step=on_step)
    elif config.multiview_generator == "zero123":
        views = Zero123MultiView(registry.get(records.NOVEL_VIEW)).generate(
            reference, radius=config.camera_radius, steps=config.multiview_samples,
            guidance_scale=config.guidance_scale, generator=generator, on_step=on_step)
    else:
        raise ValueError(f"unknown multi-view generator {config.multiview_generator!r}; use zero123 or zero123++")
    images = views.images.float().cpu()
    masks = foreground_mask(images, views.background).float()
    # Lift3D renders on white: move a grey generator background (Zero123++) to white.
    images = images * masks[:, None] + (1 - masks[:, None]) if views.background != 1.0 else images
    depth = registry.get(records.DEPTH).predict(images).cpu() * masks if config.depth_weight > 0 else None
    return PseudoViews(images, masks, depth, views.poses, views.fovy_deg)


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
