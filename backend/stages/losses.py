"""Loss terms of both stages, as pure functions of tensors."""

from __future__ import annotations

from torch import Tensor

from ..geometry.depth_loss import pearson_depth_loss

__all__ = ["pearson_depth_loss", "foreground_mask", "clip_consistency_loss"]


def foreground_mask(images: Tensor, background: float, threshold: float = 0.04) -> Tensor:
    """[B, 3, H, W] → [B, H, W] bool: pixels that differ from a uniform background colour (the
    generated pseudo views carry no alpha)."""
    return (images - background).abs().amax(dim=1) > threshold


def clip_consistency_loss(render_embeddings: Tensor, targets: Tensor) -> Tensor:
    """Mean of 1 − cos between unit embeddings [B, D] and each target [T, D] (reference image,
    prompt): keeps every view semantically the same object."""
    return (1.0 - render_embeddings @ targets.T).mean()
