"""Putting a monocular depth estimate into the scene's scale.

A monocular depth model (Depth Anything V2) gives *relative inverse depth*: the true disparity up
to an unknown scale and shift. On the pixels the scene already explains, the rendered depth says
what the disparity must be, so scale and shift are solved there by least squares in disparity
(Text2Room's `scale_shift_linear`), made robust by iteratively reweighting with Tukey's biweight
(a few wrong rendered pixels at edges must not tilt the fit). What remains at the border between
known and new pixels (the model's error is not exactly affine) is carried into the new region and
faded out with distance (LucidDreamer's depth compensation, as a smooth field), so the new surface
meets the old one without a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_PIXELS = 64
MIN_SPREAD = 0.05
"""Known disparities varying less than this (std / mean) fit a scale only."""


class AlignmentError(ValueError):
    """Too few known pixels, or a fit that makes no sense (disparity that shrinks with the model's)."""


@dataclass(frozen=True)
class Alignment:
    scale: float
    shift: float
    inliers: float
    """Share of the fitting pixels the robust fit kept (weight above one half)."""
    residual: float
    """Median absolute relative disparity error on the fitting pixels after the fit."""
    scale_only: bool = False
    """The known pixels' disparity range was too narrow to fit a shift too."""


def fit_scale_shift(predicted: Tensor, target: Tensor, mask: Tensor, iterations: int = 8,
                    scale_only: bool | None = None) -> Alignment:
    """predicted, target disparity [H, W] (target = 1 / rendered depth), mask bool [H, W] → the
    scale s and shift t minimising Σ w·(s·predicted + t − target)² with Tukey weights.

    When the known pixels span too narrow a disparity range to tell scale from shift (a flat wall
    seen head-on has one depth), the fit is scale only (t = 0): relative depth models are trained
    to give disparity up to a small shift, so that is the better guess. So is a scale-and-shift fit
    that comes out with a negative scale (the estimate disagrees with the render about what is
    near): the scale-only fit still places the new pixels at the right distance on average."""
    # On the CPU in float64: a few thousand values, and some accelerators (Apple's MPS) have no float64.
    x, y = predicted[mask].detach().cpu().double(), target[mask].detach().cpu().double()
    if x.numel() < MIN_PIXELS:
        raise AlignmentError(f"only {x.numel()} known pixels to align the depth on (need {MIN_PIXELS})")
    if scale_only is None:
        scale_only = bool(y.std() < MIN_SPREAD * y.abs().mean())
    A = torch.stack([x, torch.ones_like(x)], dim=1)[:, :1 if scale_only else 2]
    # A robust start (the median ratio, no shift), so a band of outliers cannot pull the first
    # least-squares solution far enough that Tukey's weights keep the outliers and drop the rest.
    ratio = (y / x.where(x.abs() > 1e-12, torch.full_like(x, 1e-12))).median()
    solution = torch.cat([ratio[None], torch.zeros(A.shape[1] - 1, dtype=x.dtype, device=x.device)])
    for _ in range(iterations):
        residual = (A @ solution - y) / y.abs().clamp_min(1e-9)
        spread = 4.685 * 1.4826 * residual.abs().median().clamp_min(1e-4)
        weights = (1 - (residual / spread).square()).clamp_min(0).square()
        Aw = A * weights[:, None]
        solution = torch.linalg.lstsq(Aw.T @ A, Aw.T @ y[:, None]).solution[:, 0]
    residual = (A @ solution - y) / y.abs().clamp_min(1e-9)
    scale, shift = float(solution[0]), 0.0 if scale_only else float(solution[1])
    if not scale > 0 and not scale_only:
        return fit_scale_shift(predicted, target, mask, iterations, scale_only=True)
    if not scale > 0:
        raise AlignmentError(f"the depth estimate runs against the scene's depth (fitted scale {scale:.3g})")
    return Alignment(scale, shift, float((weights > 0.5).double().mean()), float(residual.abs().median()),
                     scale_only)


def _blur(values: Tensor, sigma: float) -> Tensor:  # [H, W] → [H, W], separable Gaussian
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    v = F.conv2d(values[None, None], kernel.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(v, kernel.view(1, 1, -1, 1), padding=(radius, 0))[0, 0]


def border_correction(residual: Tensor, known: Tensor, new: Tensor, sigma_px: float) -> Tensor:
    """A smooth field [H, W] over the `new` pixels: the disparity `residual` (target − aligned) of
    the known pixels next to them, spread by normalised convolution (σ = `sigma_px`), so it equals
    the residual at the border and fades to 0 farther in; 0 elsewhere."""
    known = known.to(residual.dtype)
    numerator = _blur(torch.where(known > 0, residual, 0.0), sigma_px)
    support = _blur(known, sigma_px)
    field = numerator / support.clamp_min(1e-6)
    # Fade: full strength where the known pixels are dense around, nothing where none are near.
    fade = (support / 0.25).clamp(max=1.0)
    return torch.where(new, field * fade, torch.zeros_like(field))


def aligned_depth(predicted: Tensor, rendered_depth: Tensor, known: Tensor, new: Tensor, *,
                  blend_px: float = 6.0, max_depth: float = 1e4) -> tuple[Tensor, Alignment]:
    """predicted relative disparity [H, W], the render's depth [H, W], known and new pixel masks →
    (depth [H, W] in the scene's scale: the rendered depth on known pixels, the aligned and
    border-blended estimate on new ones, 0 where the estimate is at infinity), the fit."""
    target = torch.where(known, 1.0 / rendered_depth.clamp_min(1e-9), 0.0)
    fit = fit_scale_shift(predicted, target, known & (rendered_depth > 0))
    disparity = fit.scale * predicted + fit.shift
    residual = torch.where(known, target - disparity, 0.0)
    disparity = disparity + border_correction(residual, known, new, blend_px)
    depth = torch.where(disparity > 1.0 / max_depth, 1.0 / disparity.clamp_min(1e-12), 0.0)
    return torch.where(known, rendered_depth, torch.where(new, depth, 0.0)), fit


def first_frame_depth(predicted: Tensor, median_depth: float, far_share: float = 0.02) -> Tensor:
    """The first keyframe has nothing to align to: its relative disparity [H, W] is read as inverse
    depth (shift 0) and scaled so the median depth is `median_depth`; disparities below `far_share`
    of the median (sky, at infinity) get depth 0 (no surface)."""
    positive = predicted[predicted > 0]
    if positive.numel() < MIN_PIXELS:
        raise AlignmentError("the depth estimate is empty (no positive disparity)")
    median = positive.median()
    depth = median_depth * median / predicted.clamp_min(1e-12)
    return torch.where(predicted > far_share * median, depth, torch.zeros_like(depth))
