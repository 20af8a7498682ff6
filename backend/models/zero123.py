"""Novel-view diffusion (Zero123 / Zero123-XL / Stable Zero123) in its diffusers layout.

The repositories (`ashawkey/zero123-xl-diffusers`, `ashawkey/stable-zero123-diffusers`) hold a
UNet with 8 input channels (4 noisy latent + 4 reference latent, "c_concat"), a VAE, a CLIP
image encoder, a `clip_camera_projection` layer (CLIP embedding ++ 4-d pose → cross-attention
context) and a DDIM scheduler. The components are loaded one by one with their own diffusers /
transformers classes, so no remote code runs. Classifier-free guidance drops both conditions
(zeros), as the model was trained.

Images are float [B, 3, H, W] in [0, 1], composited on white; the model works at 256².
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from ..geometry.cameras import OrbitPose, stable_zero123_pose_encoding, zero123_pose_encoding
from .sds import score_distillation, sds_timesteps
from .weights import torch_variant

IMAGE_SIZE = 256
StepCallback = Callable[[int, int], None]
"""Called after each denoising step with (step, total); raise from it to stop (cancellation)."""


class CLIPCameraProjection(ModelMixin, ConfigMixin):
    """CLIP image embedding ++ pose → cross-attention context (the repositories' own class name,
    so their saved config loads without a warning)."""

    @register_to_config
    def __init__(self, embedding_dim: int = 768, additional_embeddings: int = 4):
        super().__init__()
        self.proj = torch.nn.Linear(embedding_dim + additional_embeddings, embedding_dim)

    def forward(self, embedding: Tensor) -> Tensor:  # [B, 1, D + 4] → [B, 1, D]
        return self.proj(embedding)


@dataclass
class ReferenceEmbedding:
    """The input view, encoded once per job."""

    clip: Tensor  # [1, 1, D] CLIP image embedding
    latent: Tensor  # [1, 4, h, w] VAE latent mode, unscaled (the UNet's concatenated condition)
    elevation_deg: float  # elevation of the input camera (Stable Zero123 conditions on it)


@dataclass
class SDSResult:
    loss: Tensor  # scalar; its gradient w.r.t. the latents is w(t)·(ε̂ − ε)
    timesteps: Tensor  # [B] the diffusion timesteps used


class Zero123:
    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, image_encoder, camera_projection:
                 CLIPCameraProjection, scheduler: DDIMScheduler, clip_mean: list[float], clip_std: list[float],
                 clip_size: int, *, stable: bool):
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        self.camera_projection, self.scheduler_config = camera_projection, scheduler.config
        self.stable = stable
        self.device, self.dtype = unet.device, unet.dtype
        self._clip_mean = torch.tensor(clip_mean, device=self.device).view(1, 3, 1, 1)
        self._clip_std = torch.tensor(clip_std, device=self.device).view(1, 3, 1, 1)
        self._clip_size = clip_size
        self.alphas_cumprod = scheduler.alphas_cumprod.to(self.device)
        self.num_train_timesteps = scheduler.config.num_train_timesteps
        for module in (unet, vae, image_encoder, camera_projection):
            module.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, stable: bool = False, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> Zero123:
        """Load from a local snapshot folder (the HF cache's, or a tiny one laid out the same)."""
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        path = Path(path)
        variant = torch_variant(path, ("unet", "vae"))
        kwargs = dict(dtype=dtype, variant=variant)
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kwargs)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kwargs)
        projection = CLIPCameraProjection.from_pretrained(path, subfolder="clip_camera_projection", **kwargs)
        encoder = CLIPVisionModelWithProjection.from_pretrained(path, subfolder="image_encoder", dtype=dtype)
        processor = CLIPImageProcessor.from_pretrained(path, subfolder="feature_extractor")
        scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler")
        size = processor.crop_size["height"] if processor.do_center_crop else processor.size["shortest_edge"]
        model = cls(unet, vae, encoder, projection, scheduler, processor.image_mean, processor.image_std, size,
                    stable=stable)
        return model.to(device)

    def to(self, device: torch.device | str) -> Zero123:
        for module in (self.unet, self.vae, self.image_encoder, self.camera_projection):
            module.to(device)
        self.device = torch.device(device)
        self._clip_mean, self._clip_std = self._clip_mean.to(device), self._clip_std.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return self.unet, self.vae, self.image_encoder, self.camera_projection

    # --- encoding -------------------------------------------------------------------------------

    def _to_model(self, images: Tensor) -> Tensor:  # [B,3,H,W] [0,1] → [B,3,256,256] [−1,1], model dtype
        _check_images(images)
        images = F.interpolate(images.to(self.device, torch.float32), (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                               align_corners=False, antialias=images.shape[-1] > IMAGE_SIZE)
        return (images * 2 - 1).to(self.dtype)

    def encode_images(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B,3,H,W] → scaled latents [B,4,h,w], a posterior sample drawn with `generator`; differentiable."""
        posterior = self.vae.encode(self._to_model(images)).latent_dist
        return posterior.sample(generator) * self.vae.config.scaling_factor

    def decode_latents(self, latents: Tensor) -> Tensor:  # [B,4,h,w] → [B,3,256,256] in [0,1], float32
        images = self.vae.decode(latents.to(self.dtype) / self.vae.config.scaling_factor).sample
        return (images.float() / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def encode_reference(self, image: Tensor, elevation_deg: float = 0.0) -> ReferenceEmbedding:
        """image [1, 3, H, W] in [0, 1] (object on white) → the conditions for every later call."""
        if image.shape[0] != 1:
            raise ValueError(f"encode one reference image at a time, got a batch of {image.shape[0]}")
        clip_in = F.interpolate(image.to(self.device, torch.float32), (self._clip_size, self._clip_size),
                                mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        clip_in = ((clip_in - self._clip_mean) / self._clip_std).to(self.dtype)
        clip = self.image_encoder(pixel_values=clip_in).image_embeds[:, None]  # [1, 1, D]
        latent = self.vae.encode(self._to_model(image)).latent_dist.mode()
        return ReferenceEmbedding(clip, latent, float(elevation_deg))

    def pose_embedding(self, reference: ReferenceEmbedding, relative: OrbitPose) -> Tensor:  # → [C, 1, 4]
        if self.stable:
            pose = stable_zero123_pose_encoding(relative, reference.elevation_deg)
        else:
            pose = zero123_pose_encoding(relative)
        return pose[:, None].to(self.device, self.dtype)

    def _conditions(self, reference: ReferenceEmbedding, relative: OrbitPose) -> tuple[Tensor, Tensor]:
        """→ context [2B, 1, D] and concatenated latents [2B, 4, h, w]: conditional, then the
        unconditional half (zeros) for classifier-free guidance."""
        pose = self.pose_embedding(reference, relative)
        batch = len(pose)
        context = self.camera_projection(torch.cat([reference.clip.expand(batch, -1, -1), pose], dim=-1))
        concat = reference.latent.expand(batch, -1, -1, -1)
        return torch.cat([context, torch.zeros_like(context)]), torch.cat([concat, torch.zeros_like(concat)])

    def _guided_noise(self, latents: Tensor, timesteps: Tensor, context: Tensor, concat: Tensor,
                      guidance_scale: float) -> Tensor:
        model_in = torch.cat([torch.cat([latents] * 2).to(self.dtype), concat], dim=1)
        noise = self.unet(model_in, torch.cat([timesteps] * 2), encoder_hidden_states=context).sample
        conditional, unconditional = noise.float().chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    # --- score distillation ---------------------------------------------------------------------

    def sds_timesteps(self, batch: int, *, t_range: tuple[float, float] = (0.02, 0.98), step_ratio: float | None = None,
                      generator: torch.Generator | None = None) -> Tensor:  # → [B] long
        """`sds.sds_timesteps` on this model's schedule."""
        return sds_timesteps(self.num_train_timesteps, batch, t_range=t_range, step_ratio=step_ratio,
                             generator=generator, device=self.device)

    def sds(self, images: Tensor, reference: ReferenceEmbedding, relative: OrbitPose, *, guidance_scale: float = 5.0,
            t_range: tuple[float, float] = (0.02, 0.98), step_ratio: float | None = None,
            generator: torch.Generator | None = None) -> SDSResult:
        """Score distillation for renders `images` [B, 3, H, W] (requires grad) seen from the
        `relative` poses [B]: loss = ½‖z − sg(z − w(t)(ε̂ − ε))‖², so ∂loss/∂z = w(t)(ε̂ − ε) with
        w(t) = 1 − ᾱ_t."""
        if len(relative.azimuth_deg) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(relative.azimuth_deg)} poses")
        latents = self.encode_images(images, generator)
        t = self.sds_timesteps(len(latents), t_range=t_range, step_ratio=step_ratio, generator=generator)
        context, concat = self._conditions(reference, relative)
        loss = score_distillation(latents, t, self.alphas_cumprod,
                                  lambda noisy, steps: self._guided_noise(noisy, steps, context, concat, guidance_scale),
                                  generator)
        return SDSResult(loss, t)

    # --- sampling -------------------------------------------------------------------------------

    def _scheduler(self) -> DDIMScheduler:  # a fresh one per call: set_timesteps mutates it
        return DDIMScheduler.from_config(self.scheduler_config)

    def _denoise(self, latents: Tensor, scheduler: DDIMScheduler, timesteps: Tensor, context: Tensor,
                 concat: Tensor, guidance_scale: float, generator: torch.Generator | None,
                 on_step: StepCallback | None) -> Tensor:
        for i, t in enumerate(timesteps):
            t_batch = t.to(self.device).expand(len(latents))
            noise = self._guided_noise(latents, t_batch, context, concat, guidance_scale)
            latents = scheduler.step(noise, t, latents, generator=generator).prev_sample
            if on_step is not None:
                on_step(i + 1, len(timesteps))
        return latents

    @torch.no_grad()
    def sample(self, reference: ReferenceEmbedding, relative: OrbitPose, *, steps: int = 50,
               guidance_scale: float = 5.0, generator: torch.Generator | None = None,
               on_step: StepCallback | None = None) -> Tensor:
        """Novel views from pure noise at the `relative` poses → [B, 3, 256, 256] in [0, 1]."""
        scheduler = self._scheduler()
        scheduler.set_timesteps(steps, device=self.device)
        context, concat = self._conditions(reference, relative)
        shape = (len(context) // 2, self.unet.config.out_channels, *reference.latent.shape[-2:])
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        latents = latents * scheduler.init_noise_sigma
        latents = self._denoise(latents, scheduler, scheduler.timesteps, context, concat, guidance_scale,
                                generator, on_step)
        return self.decode_latents(latents)

    @torch.no_grad()
    def refine(self, images: Tensor, reference: ReferenceEmbedding, relative: OrbitPose, *, strength: float = 0.2,
               steps: int = 50, guidance_scale: float = 5.0, generator: torch.Generator | None = None,
               on_step: StepCallback | None = None) -> Tensor:
        """SDEdit: noise the renders `images` [B, 3, H, W] to `strength` of the schedule (diffusers'
        img2img convention: 1 = pure noise) and denoise them back in round(steps·strength) steps
        → [B, 3, 256, 256] in [0, 1]. DreamGaussian's stage 2 uses strength ≈ 0.2 → 0.05."""
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        if len(relative.azimuth_deg) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(relative.azimuth_deg)} poses")
        scheduler = self._scheduler()
        scheduler.set_timesteps(steps, device=self.device)
        run = max(1, round(steps * strength))
        timesteps = scheduler.timesteps[steps - run:]
        latents = self.encode_images(images)
        noise = randn_tensor(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        latents = scheduler.add_noise(latents, noise, timesteps[:1].expand(len(latents)))
        context, concat = self._conditions(reference, relative)
        latents = self._denoise(latents, scheduler, timesteps, context, concat, guidance_scale, generator, on_step)
        return self.decode_latents(latents)


def _check_images(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W] RGB in [0, 1], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1], got {images.dtype}")


def save_tiny_zero123(folder: Path) -> None:
    """The Zero123 architecture with tiny random weights, saved like the real repository."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from .tiny_configs import tiny_ddim_scheduler, tiny_unet, tiny_vae

    torch.manual_seed(0)
    width = 32  # cross-attention width (768 in the real model)
    tiny_unet(in_channels=8, cross_attention_dim=width).save_pretrained(folder / "unet")
    tiny_vae().save_pretrained(folder / "vae")
    CLIPCameraProjection(embedding_dim=width, additional_embeddings=4).save_pretrained(
        folder / "clip_camera_projection")
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        image_size=224, patch_size=32, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, projection_dim=width)).save_pretrained(folder / "image_encoder")
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
        folder / "feature_extractor")
    tiny_ddim_scheduler().save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(_MODEL_INDEX)


# The repositories' index (their custom pipeline class; Lift3D loads the parts itself).
_MODEL_INDEX = """{
  "_class_name": "Zero123Pipeline",
  "clip_camera_projection": ["zero123", "CLIPCameraProjection"],
  "feature_extractor": ["transformers", "CLIPImageProcessor"],
  "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
  "scheduler": ["diffusers", "DDIMScheduler"],
  "unet": ["diffusers", "UNet2DConditionModel"],
  "vae": ["diffusers", "AutoencoderKL"]
}
"""
