"""The scale-and-shift-invariant depth loss, shared by stage 1 (`stages/losses.py` re-exports it)
and the multi-view fit (`optimize.fit_to_views`)."""

from __future__ import annotations

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
