"""The painting loop's generator on the real models: each view request becomes one call of the
depth-conditioned inpainting model (`models/depth_painter.DepthPainter`).

* The **control image** is the view's depth as disparity normalised over the object (near = 1,
  far side of the object = `FAR_DISPARITY`, backdrop = 0), the convention ControlNet depth was
  trained on (MiDaS-style maps).
* The **prompt** gets the view's direction ("front view", …, TEXTure's view-dependent prompting).
* A **reference image** steers the first view: it is fitted into the object's outline and used as
  the starting image at `REFERENCE_STRENGTH` (its colours and layout survive, the depth reshapes
  it); every later view continues from what earlier views painted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..models.depth_painter import DepthPainter
from .painting import BACKGROUND, ViewRequest

FAR_DISPARITY = 0.25
REFERENCE_STRENGTH = 0.8
GUIDANCE_SCALE = 7.5


def disparity_image(depth: Tensor, mask: Tensor) -> Tensor:
    """depth [H, W] (camera z, 0 off the object), mask [H, W] → control image [H, W, 3] in [0, 1]."""
    if not mask.any():
        return torch.zeros(*depth.shape, 3, device=depth.device)
    inverse = torch.where(mask, 1.0 / depth.clamp_min(1e-6), 0.0)
    near, far = inverse[mask].max(), inverse[mask].min()
    scaled = FAR_DISPARITY + (1 - FAR_DISPARITY) * (inverse - far) / (near - far).clamp_min(1e-9)
    return torch.where(mask, scaled, 0.0)[..., None].expand(-1, -1, 3).contiguous()


def fit_reference(reference: np.ndarray, mask: Tensor) -> Tensor:
    """The reference RGBA [h, w, 4] uint8 scaled (aspect kept) into the bounding box of `mask`
    [H, W] over the white backdrop → [H, W, 3] in [0, 1]."""
    H, W = mask.shape
    canvas = torch.full((H, W, 3), BACKGROUND)
    rows, cols = torch.nonzero(mask, as_tuple=True)
    if len(rows) == 0:
        return canvas
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    image = Image.fromarray(np.ascontiguousarray(reference))
    box = image.getbbox() if image.mode == "RGBA" and reference[..., 3].min() < 255 else None
    if box is not None:  # a cut-out: fit what is opaque, not the empty margin
        image = image.crop(box)
    scale = min((bottom - top) / image.height, (right - left) / image.width)
    width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    resized = np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), np.float32) / 255.0
    rgb, alpha = resized[..., :3], resized[..., 3:4] if resized.shape[-1] == 4 else np.ones_like(resized[..., :1])
    y0, x0 = top + (bottom - top - height) // 2, left + (right - left - width) // 2
    patch = torch.from_numpy(rgb * alpha + BACKGROUND * (1 - alpha))
    canvas[y0:y0 + height, x0:x0 + width] = patch
    return canvas


class DiffusionViewPainter:
    """`ViewPainter` over a DepthPainter. `on_step(view_index, step, total)` after each denoising
    step (raise from it to cancel)."""

    def __init__(self, painter: DepthPainter, prompt: str, *, steps: int, seed: int,
                 reference: np.ndarray | None = None,
                 on_step: Callable[[int, int, int], None] | None = None) -> None:
        self.painter, self.prompt, self.steps = painter, prompt, steps
        self.reference = reference
        self.on_step = on_step
        self.generator = torch.Generator("cpu").manual_seed(seed)

    def paint(self, request: ViewRequest) -> Tensor:
        image, mask, strength = request.image, request.mask, 1.0
        if request.first and self.reference is not None:
            image = fit_reference(self.reference, request.object_mask)
            mask, strength = request.object_mask, REFERENCE_STRENGTH
        control = disparity_image(request.depth, request.object_mask)
        prompt = f"{self.prompt}, {request.view.direction}" if self.prompt else request.view.direction

        def step(done: int, total: int) -> None:
            if self.on_step is not None:
                self.on_step(request.index, done, total)

        painted = self.painter.paint(
            image.permute(2, 0, 1)[None].float(), mask[None, None].float(), control.permute(2, 0, 1)[None].float(),
            prompt, steps=self.steps, strength=strength, guidance_scale=GUIDANCE_SCALE,
            generator=self.generator, on_step=step)
        return painted[0].permute(1, 2, 0)
