"""Stable Diffusion 1.5 as a text prior for stage 1: score distillation conditioned on the prompt
at novel views (DreamFusion's SDS; the coarse stage of Make-It-3D, which guides the novel views
with a text-to-image model besides the reference view).

It runs on the components the refiner already holds (`refiners.PromptRefiner`), so turning it on
loads no second copy of Stable Diffusion. Renders are upsampled to SD's 512² before encoding, as
DreamFusion's and threestudio's Stable Diffusion guidance do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry.cameras import OrbitPose
from .sds import score_distillation, sds_timesteps
from .zero123 import SDSResult

IMAGE_SIZE = 512
FRONT_HALF_ANGLE_DEG = 45.0
"""Views within this azimuth of the input view are "front", within it of the opposite "back"."""
OVERHEAD_ELEVATION_DEG = 60.0


def view_direction(elevation_deg: float, azimuth_deg: float) -> str:
    """DreamFusion's view-dependent prompting: which side of the object a camera sees, relative to
    the input view (azimuth 0 = the side the photo shows)."""
    if elevation_deg > OVERHEAD_ELEVATION_DEG:
        return "overhead"
    azimuth = (azimuth_deg + 180.0) % 360.0 - 180.0
    if abs(azimuth) <= FRONT_HALF_ANGLE_DEG:
        return "front"
    if abs(azimuth) >= 180.0 - FRONT_HALF_ANGLE_DEG:
        return "back"
    return "side"


DIRECTIONS = ("front", "side", "back", "overhead")


def directional_prompt(prompt: str, direction: str) -> str:
    return f"{prompt}, {direction} view"


class TextPrior:
    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.device, self.dtype = unet.device, unet.dtype
        # Frozen: SDS differentiates through the VAE encoder to the render only (the refiner's
        # multi-step calls run without gradients, so sharing these modules costs them nothing).
        for module in (unet, vae, text_encoder):
            module.requires_grad_(False)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(self.device)
        self.num_train_timesteps = scheduler.config.num_train_timesteps

    @classmethod
    def from_pipeline(cls, pipe) -> TextPrior:
        """From a loaded diffusers Stable Diffusion pipeline (the refiner's img2img pipeline)."""
        return cls(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Tensor:  # → [N, L, D]
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(tokens)[0].to(self.dtype)

    def encode_images(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B, 3, H, W] in [0, 1] → scaled latents [B, 4, 64, 64], a posterior sample drawn with
        `generator` (seeded jobs give seeded geometry)."""
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"images must be float [B, 3, H, W] in [0, 1], got {images.dtype} {tuple(images.shape)}")
        images = F.interpolate(images.to(self.device, torch.float32), (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                               align_corners=False, antialias=images.shape[-1] > IMAGE_SIZE)
        posterior = self.vae.encode((images * 2 - 1).to(self.dtype)).latent_dist
        return posterior.sample(generator) * self.vae.config.scaling_factor

    def sds(self, images: Tensor, text: Tensor, unconditional: Tensor, *, guidance_scale: float = 100.0,
            t_range: tuple[float, float] = (0.02, 0.98), step_ratio: float | None = None,
            generator: torch.Generator | None = None) -> SDSResult:
        """SDS for renders `images` [B, 3, H, W] (requires grad) under text embeddings `text`
        [B, L, D] (one per render: view-dependent prompts differ), with `unconditional` [1, L, D]
        (the empty prompt) for classifier-free guidance."""
        if text.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {text.shape[0]} text embeddings")
        latents = self.encode_images(images, generator)
        t = sds_timesteps(self.num_train_timesteps, len(latents), t_range=t_range, step_ratio=step_ratio,
                          generator=generator, device=self.device)
        context = torch.cat([text, unconditional.expand_as(text)]).to(self.dtype)

        def predict(noisy: Tensor, steps: Tensor) -> Tensor:
            noise = self.unet(torch.cat([noisy] * 2).to(self.dtype), torch.cat([steps] * 2),
                              encoder_hidden_states=context).sample
            # In float32: at CFG 100 a half-precision difference would overflow.
            conditional, unconditional_noise = noise.float().chunk(2)
            return unconditional_noise + guidance_scale * (conditional - unconditional_noise)

        return SDSResult(score_distillation(latents, t, self.alphas_cumprod, predict, generator), t)


class DirectionalPrompts:
    """The prompt's text embeddings for each view direction (and the empty prompt), encoded once."""

    def __init__(self, prior: TextPrior, prompt: str, *, view_dependent: bool = True):
        if not prompt.strip():
            raise ValueError("the text prior needs a prompt (or a caption of the image)")
        self.prior, self.view_dependent = prior, view_dependent
        texts = [directional_prompt(prompt, d) for d in DIRECTIONS] if view_dependent else [prompt]
        embeddings = prior.encode_prompts(texts + [""])
        self.texts = texts
        self._embeddings, self.unconditional = embeddings[:-1], embeddings[-1:]

    def for_poses(self, poses: OrbitPose) -> Tensor:  # → [B, L, D]
        if not self.view_dependent:
            return self._embeddings[:1].expand(len(poses.azimuth_deg), -1, -1)
        index = [DIRECTIONS.index(view_direction(float(e), float(a)))
                 for e, a in zip(poses.elevation_deg.tolist(), poses.azimuth_deg.tolist())]
        return self._embeddings[torch.tensor(index, device=self._embeddings.device)]
