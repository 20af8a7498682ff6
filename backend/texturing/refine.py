"""Optional refinement of a painted texture with the texture stage's machinery (`stages/texture.py`):
multi-step diffusion denoising of random views (SD 1.5 img2img under the prompt) pulled back into
the texture, with CLIP consistency of every view to the prompt and the reference image.

The geometry is fixed; only the texture moves. The mesh is centred and scaled into the texture
stage's frame (object radius 0.5, orbit radius 2) for the renders; the texture does not depend
on where the mesh sits. There is no reference view to match pixel for pixel (a reference image
only steers the look), so the reference MSE term is off.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..geometry.bake import fill_from_nearest
from ..geometry.cameras import OrbitPose
from ..geometry.textured_mesh import TexturedMesh
from ..stages.config import GeometryConfig, TextureConfig
from ..stages.geometry import ReferenceTargets
from ..stages.losses import clip_consistency_loss
from ..stages.texture import refine_texture

OBJECT_RADIUS = 0.5


class PromptTextureGuidance:
    """`TextureGuidance` from the prompt alone: SDEdit of each render with SD 1.5 img2img, and CLIP
    consistency with the prompt (and the reference image, when there is one)."""

    def __init__(self, refiner, prompt: str, config: TextureConfig, *, clip=None, reference: Tensor | None = None,
                 on_denoise_step: Callable[[int, int], None] | None = None) -> None:
        self.refiner, self.prompt, self.config, self.clip = refiner, prompt, config, clip
        self.on_denoise_step = on_denoise_step
        self._clip_targets = None
        if clip is not None:
            with torch.no_grad():
                targets = [clip.encode_texts([prompt])] if prompt else []
                if reference is not None:
                    targets.append(clip.encode_images(reference))
            self._clip_targets = torch.cat(targets).detach() if targets else None

    def targets(self, renders: Tensor, poses: OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        refined = self.refiner.refine(renders, self.prompt, strength=self.config.prompt_strength,
                                      steps=self.config.prompt_steps, generator=generator,
                                      on_step=self.on_denoise_step)
        return refined.to(renders)

    def semantic_loss(self, renders: Tensor) -> Tensor | None:
        if self.clip is None or self._clip_targets is None:
            return None
        return clip_consistency_loss(self.clip.encode_images(renders), self._clip_targets)


def refine_painted_texture(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: Tensor,
                           chart_mask: Tensor, guidance: PromptTextureGuidance, config: TextureConfig, *,
                           seed: int = 0, on_step: Callable[[int, int, dict[str, float]], None] | None = None
                           ) -> Tensor:
    """vertices [V, 3], faces [F, 3], uvs [V, 2] (the split-vertex mesh the texture is laid out on),
    texture [T, T, 3] in [0, 1] → the refined texture, its gutters filled again from `chart_mask`."""
    points = torch.as_tensor(vertices, dtype=torch.float32)
    centre = (points.amin(0) + points.amax(0)) / 2
    radius = (points - centre).norm(dim=-1).max().clamp_min(1e-9)
    framed = (points - centre) * (OBJECT_RADIUS / radius)
    device = texture.device
    mesh = TexturedMesh(framed.to(device), torch.as_tensor(faces, dtype=torch.int64, device=device),
                        torch.as_tensor(uvs, dtype=torch.float32, device=device), texture)
    size = config.render_size
    unused = ReferenceTargets(torch.ones(3, size, size), torch.zeros(size, size), torch.zeros(size, size))
    result = refine_texture(mesh, unused, guidance, config, GeometryConfig(), seed=seed, on_step=on_step)
    refined = torch.where(chart_mask[..., None], result.texture.to(device), 0.0)
    return fill_from_nearest(refined, chart_mask)
