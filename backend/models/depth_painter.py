"""The texture painter's generator: Stable Diffusion 1.5 with ControlNet depth
(`lllyasviel/control_v11f1p_sd15_depth`), inpainting one view of the artist's mesh.

The view's depth (as disparity, near = bright, the convention ControlNet depth was trained on)
holds the generated image to the mesh's shape; the inpainting mask says which pixels to paint and
the others are kept (diffusers' ControlNet inpaint pipeline re-imposes the known latents at every
step for a plain 4-channel UNet, RePaint style). The Stable Diffusion components are shared with
the texture stage's `PromptRefiner` (one copy of SD 1.5 in memory); only the ControlNet is extra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .weights import torch_variant

StepCallback = Callable[[int, int], None]
NEGATIVE_PROMPT = "blurry, low quality, text, watermark, harsh shadows, strong reflections"


class DepthControlNet:
    """The ControlNet depth model, loaded from a local snapshot."""

    def __init__(self, model) -> None:
        self.model = model

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> DepthControlNet:
        from diffusers import ControlNetModel

        path = Path(path)
        model = ControlNetModel.from_pretrained(path, dtype=dtype, variant=torch_variant(path, ("",)))
        return cls(model.to(device))

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return (self.model,)


class DepthPainter:
    """SD 1.5 + ControlNet depth inpainting of one view at a time."""

    def __init__(self, stable_diffusion_pipe, controlnet: DepthControlNet) -> None:
        from diffusers import StableDiffusionControlNetInpaintPipeline, UniPCMultistepScheduler

        components = {name: getattr(stable_diffusion_pipe, name) for name in ("vae", "text_encoder", "tokenizer", "unet")}
        # UniPC: good images in 20-30 steps, the scheduler ControlNet's own examples use.
        scheduler = UniPCMultistepScheduler.from_config(stable_diffusion_pipe.scheduler.config)
        self.pipe = StableDiffusionControlNetInpaintPipeline(
            **components, controlnet=controlnet.model, scheduler=scheduler, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
        self.pipe.set_progress_bar_config(disable=True)
        self.device, self.dtype = self.pipe.unet.device, self.pipe.unet.dtype

    @torch.no_grad()
    def paint(self, image: Tensor, mask: Tensor, depth: Tensor, prompt: str, *, steps: int = 25,
              strength: float = 1.0, guidance_scale: float = 7.5, conditioning_scale: float = 1.0,
              negative_prompt: str = NEGATIVE_PROMPT, generator: torch.Generator | None = None,
              on_step: StepCallback | None = None) -> Tensor:
        """image [1, 3, H, W] in [0, 1] (the view as painted so far), mask [1, 1, H, W] (1: paint),
        depth [1, 3, H, W] in [0, 1] (disparity, near = 1) → the painted view [1, 3, H, W] in [0, 1].
        Sides must be multiples of 8. `on_step(step, total)` after each denoising step (raise to stop)."""
        for name, tensor, channels in (("image", image, 3), ("mask", mask, 1), ("depth", depth, 3)):
            if tensor.ndim != 4 or tensor.shape[1] != channels or tuple(tensor.shape[-2:]) != tuple(image.shape[-2:]):
                raise ValueError(f"{name} must be [1, {channels}, H, W] at the image's size, got {tuple(tensor.shape)}")
        if image.shape[-1] % 8 or image.shape[-2] % 8:
            raise ValueError(f"image sides must be multiples of 8, got {tuple(image.shape[-2:])}")
        height, width = image.shape[-2:]

        def callback(pipe, step: int, timestep, kwargs: dict) -> dict:
            if on_step is not None:
                on_step(step + 1, pipe.num_timesteps)
            return kwargs

        out = self.pipe(prompt=prompt, negative_prompt=negative_prompt, image=image.to(self.device, self.dtype),
                        mask_image=mask.to(self.device, self.dtype), control_image=depth.to(self.device, self.dtype),
                        height=height, width=width, strength=strength, num_inference_steps=steps,
                        guidance_scale=guidance_scale, controlnet_conditioning_scale=conditioning_scale,
                        generator=generator, output_type="pt", callback_on_step_end=callback)
        return out.images.float().clamp(0, 1)


def save_tiny_controlnet_depth(folder: Path) -> None:
    """ControlNet's architecture matched to the tiny SD 1.5 UNet (`refiners.save_tiny_sd15`: same
    blocks, 32-wide text), with small random weights, saved as the real repository lays it out."""
    from diffusers import ControlNetModel

    from .tiny_configs import tiny_unet

    torch.manual_seed(0)
    # The conditioning embedding downsamples the control image ×8 (three stride-2 convolutions) to
    # the latent size, like the real one; only its widths are small.
    controlnet = ControlNetModel.from_unet(tiny_unet(in_channels=4, cross_attention_dim=32),
                                           conditioning_embedding_out_channels=(8, 8, 8, 16))
    controlnet.half().save_pretrained(folder, variant="fp16")
