"""ORACLE stand-ins for the text → scene loop's models (benchmark only; no request reaches them).

- `TruthInpainter`: the first keyframe is the true render; an inpainting returns the true render's
  pixels **inside the mask only** (outside it, the image it was given), so a mask that misses an
  unexplained region leaves the render's holes in place.
- `ConstantInpainter`: fills the mask with one flat grey, to show where masks land: any well-seen
  pixel a mask covered would turn grey.
- `DistortedDepth`: the true disparity under a known random affine distortion (scale a, shift b)
  plus noise, drawn afresh for every keyframe — what a relative monocular depth model gives,
  and what the alignment must undo. The draws are recorded for the benchmark's scale error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from backend.geometry import mesh_raster
from backend.geometry.cameras import Cameras
from backend.geometry.textured_mesh import TexturedMesh

from .reconstruct import render_antialiased

SCALE_RANGE = (0.5, 2.0)
SHIFT_SHARE = 0.03
"""The shift is drawn within ± this share of the view's median true disparity."""
NOISE = 0.01
"""Relative per-pixel noise on the distorted disparity."""
GREY = 0.5


def true_render(truth: TexturedMesh, camera: Cameras) -> Tensor:  # → [H, W, 3]
    rgb, _ = render_antialiased(truth, camera, backgrounds=torch.zeros(3))
    return rgb[0]


def true_depth(truth: TexturedMesh, camera: Cameras) -> Tensor:  # → [H, W], 0 where nothing is hit
    with torch.no_grad():
        fragments = mesh_raster.rasterize(truth.vertices, truth.faces, camera.viewmats, camera.Ks, camera.width,
                                          camera.height, backend="torch")
    return torch.where(fragments.mask[0], fragments.depth[0], 0.0)


class TruthInpainter:
    def __init__(self, truth: TexturedMesh) -> None:
        self.truth = truth

    def first_frame(self, prompt: str, camera: Cameras, generator: torch.Generator) -> Tensor:
        return true_render(self.truth, camera)

    def inpaint(self, image: Tensor, mask: Tensor, prompt: str, camera: Cameras, generator: torch.Generator
                ) -> Tensor:
        return torch.where(mask[..., None], true_render(self.truth, camera), image)


class ConstantInpainter(TruthInpainter):
    def inpaint(self, image: Tensor, mask: Tensor, prompt: str, camera: Cameras, generator: torch.Generator
                ) -> Tensor:
        return torch.where(mask[..., None], torch.full_like(image, GREY), image)


@dataclass
class DistortedDepth:
    truth: TexturedMesh
    seed: int = 0
    draws: list[tuple[float, float]] = field(default_factory=list)
    """(scale, shift) of each call, in order."""

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def estimate(self, image: Tensor, camera: Cameras) -> Tensor:
        depth = true_depth(self.truth, camera)
        hit = depth > 0
        disparity = torch.where(hit, 1.0 / depth.clamp_min(1e-6), 0.0)
        median = disparity[hit].median() if hit.any() else torch.tensor(1.0)
        lo, hi = SCALE_RANGE
        scale = lo * (hi / lo) ** torch.rand((), generator=self.generator).item()
        shift = (2 * torch.rand((), generator=self.generator).item() - 1) * SHIFT_SHARE * float(median) * scale
        self.draws.append((scale, shift))
        noise = 1 + NOISE * torch.randn(disparity.shape, generator=self.generator)
        return (scale * disparity * noise + shift).clamp_min(0)
