"""Text → scene's image models: Stable Diffusion 1.5 inpainting fills what a new keyframe does not
show yet, and Stable Diffusion 1.5 text-to-image draws the first keyframe when no image is given.

The inpainting model (`stable-diffusion-v1-5/stable-diffusion-inpainting`, CreativeML OpenRAIL-M)
is its own checkpoint: a UNet with 9 input channels (noisy latent, mask, masked-image latent),
used through diffusers' `StableDiffusionInpaintPipeline` as it is. Text-to-image runs on the
texture stage's already loaded SD 1.5 components (`PromptRefiner`), so no second copy is held.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .refiners import _step_adapter
from .weights import torch_variant

StepCallback = Callable[[int, int], None]
NEGATIVE_PROMPT = "blurry, low quality, text, watermark, frame, border, distorted"


def _check(name: str, tensor: Tensor, channels: int, size: tuple[int, int] | None = None) -> None:
    if tensor.ndim != 4 or tensor.shape[0] != 1 or tensor.shape[1] != channels:
        raise ValueError(f"{name} must be [1, {channels}, H, W], got {tuple(tensor.shape)}")
    if size is not None and tuple(tensor.shape[-2:]) != size:
        raise ValueError(f"{name} must be {size[0]} × {size[1]} like the image, got {tuple(tensor.shape[-2:])}")
    if tensor.shape[-1] % 8 or tensor.shape[-2] % 8:
        raise ValueError(f"image sides must be multiples of 8 (the VAE's factor), got {tuple(tensor.shape[-2:])}")


class SceneInpainter:
    """Stable Diffusion 1.5 inpainting, loaded from a local snapshot."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.device, self.dtype = pipe.unet.device, pipe.unet.dtype

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> SceneInpainter:
        from diffusers import StableDiffusionInpaintPipeline

        path = Path(path)
        pipe = StableDiffusionInpaintPipeline.from_pretrained(
            path, dtype=dtype, variant=torch_variant(path, ("unet", "vae", "text_encoder")), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe.to(device))

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return self.pipe.unet, self.pipe.vae, self.pipe.text_encoder

    @torch.no_grad()
    def inpaint(self, image: Tensor, mask: Tensor, prompt: str, *, steps: int = 30, guidance_scale: float = 7.5,
                negative_prompt: str = NEGATIVE_PROMPT, generator: torch.Generator | None = None,
                on_step: StepCallback | None = None) -> Tensor:
        """image [1, 3, H, W] in [0, 1], mask [1, 1, H, W] (1: fill) → [1, 3, H, W] in [0, 1].
        Outside the mask the result is the model's reconstruction; callers paste the known pixels
        back."""
        _check("image", image, 3)
        _check("mask", mask, 1, tuple(image.shape[-2:]))
        height, width = image.shape[-2:]
        out = self.pipe(prompt=prompt, negative_prompt=negative_prompt, image=image.to(self.device, self.dtype),
                        mask_image=mask.to(self.device, self.dtype), height=height, width=width, strength=1.0,
                        num_inference_steps=steps, guidance_scale=guidance_scale, generator=generator,
                        output_type="pt", callback_on_step_end=_step_adapter(on_step))
        return out.images.float().clamp(0, 1)


@torch.no_grad()
def text_to_image(stable_diffusion_pipe, prompt: str, size: int, *, steps: int = 30, guidance_scale: float = 7.5,
                  negative_prompt: str = NEGATIVE_PROMPT, generator: torch.Generator | None = None,
                  on_step: StepCallback | None = None) -> Tensor:
    """An image [1, 3, size, size] in [0, 1] from the prompt, on a loaded SD 1.5 pipeline's components."""
    from diffusers import StableDiffusionPipeline

    if size % 8:
        raise ValueError(f"the image side must be a multiple of 8, got {size}")
    components = {name: getattr(stable_diffusion_pipe, name)
                  for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt=prompt, negative_prompt=negative_prompt, height=size, width=size, num_inference_steps=steps,
               guidance_scale=guidance_scale, generator=generator, output_type="pt",
               callback_on_step_end=_step_adapter(on_step))
    return out.images.float().clamp(0, 1)


def save_tiny_sd_inpainting(folder: Path) -> None:
    """SD 1.5 inpainting's layout: the tiny SD 1.5 components with a 9-channel UNet, PNDM, and the
    inpainting pipeline's `model_index.json`."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline

    from .refiners import _save_tiny_stable_diffusion
    from .tiny_configs import SD_SCHEDULE

    schedule = {k: v for k, v in SD_SCHEDULE.items() if k != "clip_sample"}
    _save_tiny_stable_diffusion(folder, PNDMScheduler(skip_prk_steps=True, **schedule), unet_in_channels=9,
                                pipeline=StableDiffusionInpaintPipeline)
