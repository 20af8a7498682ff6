"""Score distillation (DreamFusion), shared by every diffusion prior of stage 1: the timestep
schedule and the loss whose gradient is the weighted noise residual.

Both priors (Zero123's novel views, Stable Diffusion's text prior) encode renders to latents, add
noise at a timestep, predict it with classifier-free guidance and push the latents along
w(t)·(ε̂ − ε); only the noise prediction differs, so it is passed in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor


def sds_timesteps(num_train_timesteps: int, batch: int, *, t_range: tuple[float, float] = (0.02, 0.98),
                  step_ratio: float | None = None, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> Tensor:  # → [B] long
    """Annealed (DreamGaussian: t = (1 − step_ratio)·T, clipped to the range) when a step ratio is
    given, uniform in the range otherwise."""
    lo, hi = (int(num_train_timesteps * r) for r in t_range)
    if not 0 <= lo <= hi < num_train_timesteps:
        raise ValueError(f"t_range must satisfy 0 ≤ lo ≤ hi < 1, got {t_range}")
    if step_ratio is not None:
        t = round((1.0 - step_ratio) * num_train_timesteps)
        return torch.full((batch,), min(max(t, lo), hi), dtype=torch.long, device=device)
    return torch.randint(lo, hi + 1, (batch,), generator=generator, device="cpu").to(device)


def score_distillation(latents: Tensor, timesteps: Tensor, alphas_cumprod: Tensor,
                       predict_noise: Callable[[Tensor, Tensor], Tensor],
                       generator: torch.Generator | None = None) -> Tensor:
    """latents [B, 4, h, w] (requires grad), timesteps [B] → the scalar SDS loss
    ½‖z − sg(z − w(t)(ε̂ − ε))‖², so ∂loss/∂z = w(t)(ε̂ − ε) with w(t) = 1 − ᾱ_t.

    `predict_noise(noisy [B, 4, h, w], t [B])` is the prior's guided noise prediction; it runs
    without gradients (the U-Net's Jacobian is skipped, as in DreamFusion)."""
    with torch.no_grad():
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        alphas = alphas_cumprod.to(latents.device)[timesteps].view(-1, 1, 1, 1)
        # DDPM forward noising, the same for every scheduler of these models (ε-prediction).
        noisy = alphas.sqrt().to(latents.dtype) * latents + (1 - alphas).sqrt().to(latents.dtype) * noise
        predicted = predict_noise(noisy, timesteps)
        # A non-finite prediction (half-precision overflow) contributes nothing rather than ±3e38.
        grad = torch.nan_to_num((1 - alphas) * (predicted.float() - noise.float()), nan=0.0, posinf=0.0,
                                neginf=0.0)
    target = (latents.float() - grad).detach()
    return 0.5 * F.mse_loss(latents.float(), target, reduction="sum")

