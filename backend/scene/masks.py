"""What a new keyframe must inpaint: the pixels the scene so far does not explain.

A pixel of the new view is *observed* when the current Gaussians cover it (rendered alpha at least
`alpha_threshold`) and the surface point its rendered depth puts there was seen by some earlier
keyframe: projected into that keyframe, the point lands inside its image at the depth the keyframe
stored there (within `depth_tolerance`, relative). Everything else is inpainted:

- *unseen* pixels: nothing rendered there (low alpha);
- *disoccluded or stretched* pixels: something rendered, but at a depth no earlier keyframe saw —
  Gaussians smeared across a depth discontinuity into space that was hidden behind a foreground
  edge, which is exactly where a warped view stretches.

The mask is then dilated by `dilate_px` so the inpainting blends into the known part. Well-observed
pixels (observed, and more than `dilate_px` from any unexplained one) are never in the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry.cameras import Cameras, project_points
from ..geometry.gaussians import unproject_depth


@dataclass(frozen=True)
class MaskConfig:
    alpha_threshold: float = 0.9
    depth_tolerance: float = 0.03
    """Relative depth difference within which an earlier keyframe counts as having seen a point."""
    dilate_px: int = 2
    min_region_px: int = 4
    """Unexplained specks smaller than this many pixels (isolated noise in the depth test) are dropped
    before dilation, so no view is repainted for a single stray pixel."""


def seen_by(points: Tensor, cameras: Cameras, depths: Tensor, valid: Tensor, tolerance: float) -> Tensor:
    """points [N, 3] → bool [N]: some camera (with its stored depth [C, H, W] and valid [C, H, W])
    sees each point at the depth it stored (relative `tolerance`)."""
    seen = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    if len(cameras) == 0 or points.shape[0] == 0:
        return seen
    pixels, z = project_points(points, cameras.to(points.device))
    for c in range(len(cameras)):
        col, row = pixels[c, :, 0].floor().long(), pixels[c, :, 1].floor().long()
        inside = (col >= 0) & (col < cameras.width) & (row >= 0) & (row < cameras.height) & (z[c] > 1e-6)
        row, col = row.clamp(0, cameras.height - 1), col.clamp(0, cameras.width - 1)
        stored, ok = depths[c, row, col], valid[c, row, col]
        seen |= inside & ok & ((z[c] - stored).abs() <= tolerance * stored)
    return seen


def observed(alpha: Tensor, depth: Tensor, camera: Cameras, support_cameras: Cameras, support_depths: Tensor,
             support_valid: Tensor, config: MaskConfig) -> Tensor:
    """alpha, depth [H, W] rendered at `camera` → bool [H, W]: the pixels the scene explains."""
    covered = (alpha >= config.alpha_threshold) & (depth > 0)
    points = unproject_depth(depth.float(), camera)[covered]
    out = torch.zeros_like(covered)
    out[covered] = seen_by(points, support_cameras, support_depths, support_valid, config.depth_tolerance)
    return out


def _dilate(mask: Tensor, radius: int) -> Tensor:
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    return F.max_pool2d(mask[None, None].float(), k, stride=1, padding=radius)[0, 0] > 0.5


def _drop_specks(mask: Tensor, min_px: int) -> Tensor:
    """Remove unexplained pixels with fewer than `min_px` unexplained pixels in their 3×3 block."""
    if min_px <= 1:
        return mask
    counts = F.avg_pool2d(mask[None, None].float(), 3, stride=1, padding=1, count_include_pad=False)[0, 0] * 9
    return mask & (counts >= min_px - 0.5)


def inpaint_mask(observed_pixels: Tensor, config: MaskConfig) -> Tensor:
    """bool [H, W] observed → bool [H, W] to inpaint: the unexplained pixels (specks dropped), dilated."""
    return _dilate(_drop_specks(~observed_pixels, config.min_region_px), config.dilate_px)


def well_observed(observed_pixels: Tensor, config: MaskConfig) -> Tensor:
    """Observed pixels farther than `dilate_px` from any unexplained one: the mask never touches them."""
    return ~_dilate(~observed_pixels, config.dilate_px)
