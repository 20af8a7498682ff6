"""Text-conditioned image refiners for the texture stage.

* `PromptRefiner`: Stable Diffusion img2img (SDEdit), multi-step, driven by the prompt.
* `TurboFixer`: SD-Turbo run as a single-step image-to-image fixer at a low noise level (timestep
  199 of 1000, no guidance): the `sd-turbo` fixer, the commercial alternative to Difix
  (`difix.py`), which is SD-Turbo fine-tuned for exactly this and adds no fresh noise.

Both take and return float images [B, 3, H, W] in [0, 1] and work at the pipeline's resolution
(a multiple of 8); the diffusers pipelines are used as they are, with a step callback for
progress and cancellation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .weights import torch_variant

if TYPE_CHECKING:
    from .text_prior import TextPrior

StepCallback = Callable[[int, int], None]
FIXER_TIMESTEP = 199  # Difix's noise level: its ablation peaks between 200 and 10
FIXER_PROMPT = "remove degradation"  # Difix's prompt, used for SD-Turbo too


def _load_img2img(path: Path, device, dtype):
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        path, dtype=dtype, variant=torch_variant(path, ("unet", "vae", "text_encoder")),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _check(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images must be float [B, 3, H, W] in [0, 1], got {images.dtype} {tuple(images.shape)}")
    if images.shape[-1] % 8 or images.shape[-2] % 8:
        raise ValueError(f"image sides must be multiples of 8 (the VAE's factor), got {tuple(images.shape[-2:])}")


def _step_adapter(on_step: StepCallback | None):
    if on_step is None:
        return None

    def callback(pipe, step: int, timestep, kwargs: dict) -> dict:
        on_step(step + 1, pipe.num_timesteps)  # the scheduler's count (PNDM adds a step)
        return kwargs

    return callback


class _Img2Img:
    """A diffusers img2img pipeline loaded from a local snapshot (SD layout)."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.device, self.dtype = pipe.unet.device, pipe.unet.dtype

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32):
        return cls(_load_img2img(Path(path), device, dtype))

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return self.pipe.unet, self.pipe.vae, self.pipe.text_encoder


class PromptRefiner(_Img2Img):
    """Stable Diffusion img2img: renders in, prompt-consistent renders out. Its components also
    serve as stage 1's text prior (`text_prior`)."""

    @cached_property
    def text_prior(self) -> TextPrior:
        """Score distillation under a prompt on this pipeline's UNet, VAE and text encoder."""
        from .text_prior import TextPrior

        return TextPrior.from_pipeline(self.pipe)

    @torch.no_grad()
    def refine(self, images: Tensor, prompt: str, *, strength: float = 0.3, steps: int = 20,
               guidance_scale: float = 7.5, negative_prompt: str = "blurry, low quality, artifacts",
               generator: torch.Generator | None = None, on_step: StepCallback | None = None) -> Tensor:
        """images [B, 3, H, W] in [0, 1] → [B, 3, H, W] in [0, 1]; `strength` is the fraction of
        the noise schedule (1 = ignore the input), round(steps·strength) steps run."""
        _check(images)
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        batch = images.shape[0]
        out = self.pipe(prompt=[prompt] * batch, negative_prompt=[negative_prompt] * batch,
                        image=images.to(self.device, self.dtype), strength=strength, num_inference_steps=steps,
                        guidance_scale=guidance_scale, generator=generator, output_type="pt",
                        callback_on_step_end=_step_adapter(on_step))
        return out.images.float().clamp(0, 1)


class TurboFixer(_Img2Img):
    """SD-Turbo as a one-step artefact remover: img2img from timestep 199 with fresh noise (the
    `sd-turbo` fixer, for commercial use; Difix itself is in `difix.py`)."""

    uses_reference = False

    @torch.no_grad()
    def fix(self, images: Tensor, references: Tensor | None = None, *,
            generator: torch.Generator | None = None) -> Tensor:
        """images [B, 3, H, W] in [0, 1] → one denoising step from timestep 199 → [B, 3, H, W];
        `references` are ignored (SD-Turbo has no reference input)."""
        _check(images)
        batch = images.shape[0]
        train_steps = self.pipe.scheduler.config.num_train_timesteps
        # img2img with strength s and n steps starts at timestep ≈ s·T and runs s·n steps: one
        # step at T·0.2 = 200 gives Difix's noise level.
        strength = (FIXER_TIMESTEP + 1) / train_steps
        steps = round(1 / strength)
        out = self.pipe(prompt=[FIXER_PROMPT] * batch, image=images.to(self.device, self.dtype),
                        strength=strength, num_inference_steps=steps, guidance_scale=0.0, generator=generator,
                        output_type="pt")
        return out.images.float().clamp(0, 1)


def save_tiny_sd15(folder: Path) -> None:
    """SD 1.5's layout: PNDM scheduler, as in its repository."""
    from diffusers import PNDMScheduler

    from .tiny_configs import SD_SCHEDULE

    schedule = {k: v for k, v in SD_SCHEDULE.items() if k != "clip_sample"}
    _save_tiny_stable_diffusion(folder, PNDMScheduler(skip_prk_steps=True, **schedule))


def save_tiny_sd_turbo(folder: Path) -> None:
    """SD-Turbo's layout: Euler with trailing timesteps, so 5 steps are 999, 799, …, 199."""
    from diffusers import EulerDiscreteScheduler

    from .tiny_configs import SD_SCHEDULE

    schedule = {k: v for k, v in SD_SCHEDULE.items() if k not in ("clip_sample", "set_alpha_to_one")}
    _save_tiny_stable_diffusion(folder, EulerDiscreteScheduler(timestep_spacing="trailing", **schedule))


def _save_tiny_stable_diffusion(folder: Path, scheduler, *, unet_in_channels: int = 4, pipeline=None) -> None:
    """Stable Diffusion's architecture (UNet, VAE, CLIP text encoder and tokenizer) with tiny
    random weights, saved as the real repositories lay it out (fp16 weight files); `pipeline` is
    the class whose `model_index.json` is written (img2img unless given)."""
    from diffusers import StableDiffusionImg2ImgPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from .tiny_configs import tiny_unet, tiny_vae
    from .tiny_tokenizers import CLIP_VOCAB_SIZE, clip_tokenizer

    pipeline = pipeline or StableDiffusionImg2ImgPipeline

    torch.manual_seed(0)
    width = 32  # text width = cross-attention width (768 in SD 1.5, 1024 in SD-Turbo)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, hidden_size=width, intermediate_size=37,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77))
    pipe = pipeline(
        vae=tiny_vae(), text_encoder=text, tokenizer=clip_tokenizer(),
        unet=tiny_unet(in_channels=unet_in_channels, cross_attention_dim=width),
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.half()  # the real repositories' fp16 files hold half-precision weights
    pipe.save_pretrained(folder, variant="fp16")
