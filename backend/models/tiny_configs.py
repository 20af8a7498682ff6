"""Tiny random-weight versions of the shared diffusion building blocks (`tiny` preset only).

Same classes and the same downsampling factors as the real models (the VAE maps 256² images to
32² latents, like Stable Diffusion's), just few channels and layers, so every shape the
pipeline sees is the real one.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

# Stable Diffusion's noise schedule (the real Zero123 and SD 1.5 schedulers use it).
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def tiny_unet(*, in_channels: int, cross_attention_dim: int, sample_size: int = 32) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_attention_dim,
        attention_head_dim=8, norm_num_groups=32)


def tiny_vae() -> AutoencoderKL:
    # Four blocks → three ×2 downsamplings = ×8, Stable Diffusion's VAE factor.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=256, scaling_factor=0.18215)


def tiny_ddim_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**SD_SCHEDULE)
