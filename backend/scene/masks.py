"""What a new keyframe must inpaint: the pixels the scene so far does not explain.

A pixel of the new view is *observed* when the current Gaussians cover it (rendered alpha at least
`alpha_threshold`) and the surface point its rendered depth puts there was seen by some earlier
keyframe: projected into that keyframe, the point lands inside its image at the depth the keyframe
stored there (within `depth_tolerance`, relative). Its depth is then taken from those keyframes
(`Observation.depth`). Everything else is inpainted:

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
    """Unexplained pixels with fewer than this many unexplained pixels in their 3×3 block (specks of
    noise in the depth test, one-pixel seams) are dropped before dilation (`_drop_specks`)."""


def seen_by(points: Tensor, cameras: Cameras, depths: Tensor, valid: Tensor, tolerance: float
            ) -> tuple[Tensor, Tensor]:
    """points [N, 3] → (bool [N]: some camera, with its stored depth [C, H, W] and valid [C, H, W],
    sees each point at the depth it stored (relative `tolerance`); the points moved along each
    seeing camera's ray onto its stored depth, averaged over the cameras that see them [N, 3])."""
    seen = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    if len(cameras) == 0 or points.shape[0] == 0:
        return seen, points.clone()
    cameras = cameras.to(points.device)
    pixels, z = project_points(points, cameras)
    centres = cameras.centers.to(points.dtype)
    moved_sum, count = torch.zeros_like(points), torch.zeros(points.shape[0], dtype=points.dtype,
                                                             device=points.device)
    for c in range(len(cameras)):
        col, row = pixels[c, :, 0].floor().long(), pixels[c, :, 1].floor().long()
        inside = (col >= 0) & (col < cameras.width) & (row >= 0) & (row < cameras.height) & (z[c] > 1e-6)
        row, col = row.clamp(0, cameras.height - 1), col.clamp(0, cameras.width - 1)
        stored, ok = depths[c, row, col], valid[c, row, col]
        hit = inside & ok & ((z[c] - stored).abs() <= tolerance * stored)
        # Along a camera's ray the depth grows linearly with the distance from its centre.
        ratio = torch.where(hit, stored / z[c].clamp_min(1e-9), torch.ones_like(stored))
        moved_sum += torch.where(hit[:, None], centres[c] + (points - centres[c]) * ratio[:, None], 0.0)
        count += hit.to(points.dtype)
        seen |= hit
    moved = torch.where(seen[:, None], moved_sum / count.clamp_min(1)[:, None], points)
    return seen, moved


@dataclass(frozen=True)
class Observation:
    seen: Tensor  # [H, W] bool: the pixels the scene explains
    depth: Tensor  # [H, W] on seen pixels, their depth by the keyframes that saw them (0 elsewhere)


def observed(alpha: Tensor, depth: Tensor, camera: Cameras, support_cameras: Cameras, support_depths: Tensor,
             support_valid: Tensor, config: MaskConfig) -> Observation:
    """alpha, depth [H, W] rendered at `camera` → which pixels the scene explains, and their depth as
    the keyframes that saw them stored it. That depth, not the render's, is what a new keyframe is
    aligned to: the Gaussians' expected depth sits a little in front of the surface (their blobs
    are hit front first), and aligning to it would compound keyframe after keyframe."""
    covered = (alpha >= config.alpha_threshold) & (depth > 0)
    points = unproject_depth(depth.float(), camera)[covered]
    seen, moved = seen_by(points, support_cameras, support_depths, support_valid, config.depth_tolerance)
    out = torch.zeros_like(covered)
    out[covered] = seen
    stored = torch.zeros_like(depth, dtype=torch.float32)
    _, z = project_points(moved, camera.to(moved.device))
    stored[covered] = torch.where(seen, z[0].float(), 0.0)
    return Observation(out, stored)


def _dilate(mask: Tensor, radius: int) -> Tensor:
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    return F.max_pool2d(mask[None, None].float(), k, stride=1, padding=radius)[0, 0] > 0.5


def _drop_specks(mask: Tensor, min_px: int) -> Tensor:
    """Keep an unexplained pixel only when at least `min_px` of its 3×3 block (itself included) are
    unexplained: isolated specks go, and so do one-pixel cracks, which are the seams where smeared
    splats of two surfaces meet. Inpainting those adds a line of new Gaussians along every depth edge,
    slightly in front of the background; in the oracle benchmark it cost the outdoor scene's first
    view 0.8 dB by the last keyframe (1.77 against 0.93 dB), and replay closes the seams anyway."""
    if min_px <= 1:
        return mask
    # A sum over the block with zero padding (outside the image counts as explained).
    counts = F.avg_pool2d(mask[None, None].float(), 3, stride=1, padding=1, count_include_pad=True)[0, 0] * 9
    return mask & (counts >= min_px - 0.5)


def inpaint_mask(observed_pixels: Tensor, config: MaskConfig) -> Tensor:
    """bool [H, W] observed → bool [H, W] to inpaint: the unexplained pixels (specks dropped), dilated."""
    return _dilate(_drop_specks(~observed_pixels, config.min_region_px), config.dilate_px)


def well_observed(observed_pixels: Tensor, config: MaskConfig) -> Tensor:
    """Observed pixels farther than `dilate_px` from any unexplained one: the mask never touches them."""
    return ~_dilate(~observed_pixels, config.dilate_px)
