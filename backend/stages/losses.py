"""Loss terms of both stages, as pure functions of tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def pearson_depth_loss(rendered: Tensor, monocular: Tensor, mask: Tensor, min_pixels: int = 16) -> Tensor:
    """1 − Pearson correlation between rendered depth [H, W] (larger = farther) and monocular
    *inverse* depth [H, W] (larger = nearer) over `mask` [H, W] bool. Invariant to the monocular
    estimate's unknown scale and shift, as image-to-3D methods use it (Magic123, Make-It-3D,
    FSGS). Zero when the mask is too small or either signal is flat (no information)."""
    mask = mask.bool()
    if int(mask.sum()) < min_pixels:
        return rendered.sum() * 0.0
    x, y = rendered[mask], -monocular[mask].to(rendered)
    x, y = x - x.mean(), y - y.mean()
    denominator = x.norm() * y.norm()
    if float(denominator.detach()) < 1e-12:
        return rendered.sum() * 0.0
    return 1.0 - (x * y).sum() / denominator


def foreground_mask(images: Tensor, background: float, threshold: float = 0.04) -> Tensor:
    """[B, 3, H, W] → [B, H, W] bool: pixels that differ from a uniform background colour (the
    generated pseudo views carry no alpha)."""
    return (images - background).abs().amax(dim=1) > threshold


def clip_consistency_loss(render_embeddings: Tensor, targets: Tensor) -> Tensor:
    """Mean of 1 − cos between unit embeddings [B, D] and each target [T, D] (reference image,
    prompt): keeps every view semantically the same object."""
    return (1.0 - render_embeddings @ targets.T).mean()
