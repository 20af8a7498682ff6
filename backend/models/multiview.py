"""Multi-view pseudo-ground-truth: images of the object at the fixed six-view set.

Default: Zero123 sampled at the six poses relative to the input view (works with every preset).
Optional (full preset, non-commercial weights): Zero123++ v1.2, which paints all six views in one
image, a 3×2 grid of 320² tiles in row-major order:

    (30°, +20°)  (90°, −10°)
    (150°, +20°) (210°, −10°)
    (270°, +20°) (330°, −10°)      azimuth relative to the input, elevation absolute; fov 30°
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..geometry.cameras import ZERO123_FOVY_DEG, OrbitPose, relative_pose, six_view_poses
from .zero123 import ReferenceEmbedding, StepCallback, Zero123

ZERO123PP_FOVY_DEG = 30.0
ZERO123PP_GRID = (3, 2)  # rows, columns
ZERO123PP_BACKGROUND = 0.5  # it paints the object on grey


@dataclass
class MultiViewImages:
    images: Tensor  # [6, 3, S, S] in [0, 1]
    poses: OrbitPose  # absolute orbit poses of the six views (input view at azimuth 0)
    fovy_deg: float  # the field of view the generator renders with
    background: float  # grey level of the generated background


def split_grid(grid: Tensor, rows: int = ZERO123PP_GRID[0], cols: int = ZERO123PP_GRID[1]) -> Tensor:
    """grid [3, rows·h, cols·w] → tiles [rows·cols, 3, h, w] in row-major order."""
    if grid.ndim != 3 or grid.shape[1] % rows or grid.shape[2] % cols:
        raise ValueError(f"a [3, H, W] grid with H divisible by {rows} and W by {cols} is needed, "
                         f"got {tuple(grid.shape)}")
    c, height, width = grid.shape
    h, w = height // rows, width // cols
    return grid.reshape(c, rows, h, cols, w).permute(1, 3, 0, 2, 4).reshape(rows * cols, c, h, w)


class Zero123MultiView:
    """The six views sampled from Zero123, one batch."""

    def __init__(self, zero123: Zero123):
        self.zero123 = zero123

    def generate(self, reference: ReferenceEmbedding, *, radius: float = 2.0, steps: int = 50,
                 guidance_scale: float = 5.0, generator: torch.Generator | None = None,
                 on_step: StepCallback | None = None) -> MultiViewImages:
        target = six_view_poses(radius=radius)
        ref_pose = OrbitPose(torch.tensor([reference.elevation_deg]), torch.zeros(1), torch.tensor([float(radius)]))
        relative = relative_pose(ref_pose, target)
        images = self.zero123.sample(reference, relative, steps=steps, guidance_scale=guidance_scale,
                                     generator=generator, on_step=on_step)
        return MultiViewImages(images, target, ZERO123_FOVY_DEG, background=1.0)


class Zero123PlusPlus:
    """Zero123++ v1.2 through its own diffusers pipeline (code from `sudo-ai/zero123plus-pipeline`,
    fetched by `models download`)."""

    def __init__(self, pipe):
        self.pipe = pipe

    @classmethod
    def from_pretrained(cls, path: str | Path, pipeline_code: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> Zero123PlusPlus:
        from diffusers import DiffusionPipeline, EulerAncestralDiscreteScheduler

        pipe = DiffusionPipeline.from_pretrained(path, custom_pipeline=str(pipeline_code), dtype=dtype)
        # The authors' recommendation for v1.2.
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config,
                                                                     timestep_spacing="trailing")
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe.to(device))

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return tuple(m for m in self.pipe.components.values() if isinstance(m, torch.nn.Module))

    @torch.no_grad()
    def generate(self, image: Tensor, *, steps: int = 28, generator: torch.Generator | None = None,
                 on_step: StepCallback | None = None) -> MultiViewImages:
        """image [1, 3, H, W] in [0, 1] (square, object on white) → the six views."""
        from torchvision.transforms.functional import to_pil_image

        def callback(pipe, step, timestep, kwargs):
            if on_step is not None:
                on_step(step + 1, steps)
            return kwargs

        result = self.pipe(to_pil_image(image[0].float().clamp(0, 1).cpu()), num_inference_steps=steps,
                           generator=generator, output_type="pt", callback_on_step_end=callback).images
        grid = result[0] if result.ndim == 4 else result
        return MultiViewImages(split_grid(grid.float().clamp(0, 1)), six_view_poses(), ZERO123PP_FOVY_DEG,
                               background=ZERO123PP_BACKGROUND)
