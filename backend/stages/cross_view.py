"""Cross-view semantic consistency: the same surface point should look alike, in dense CLIP
features, in every view that sees it.

Stage 2's global CLIP term compares each render's single embedding with the reference image and
the prompt; nothing there ties one view to another. This term does: two views of the mesh are
rasterised, every sampled pixel of the first view is lifted to its surface point (triangle id and
barycentrics), projected into the second view and kept only where that view sees the same point
(depth test). The loss is the mean 1 − cos between the dense CLIP features of the two renders at
those pixel pairs (features upsampled to the render by bilinear sampling). The correspondences come
from the geometry alone and carry no gradient; the features carry it back to the texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry import mesh_raster as mr
from ..geometry.cameras import Cameras


@dataclass(frozen=True)
class Correspondences:
    """Pixel pairs (x, y in pixels, centres at +0.5) seeing the same surface point."""

    first: Tensor  # [N, 2] in view 0
    second: Tensor  # [N, 2] in view 1

    def __len__(self) -> int:
        return len(self.first)


def surface_correspondences(vertices: Tensor, faces: Tensor, cameras: Cameras, *, stride: int = 4,
                            depth_tolerance: float = 0.01, backend: str = "auto") -> Correspondences:
    """Pairs between the two views of `cameras` (exactly two, same size): every `stride`-th
    covered pixel of view 0 whose surface point view 1 also sees."""
    if len(cameras) != 2:
        raise ValueError(f"cross-view correspondences need exactly two cameras, got {len(cameras)}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    with torch.no_grad():
        fragments = mr.rasterize(vertices, faces, cameras.viewmats, cameras.Ks, cameras.width, cameras.height,
                                 backend=backend)
        first_view = mr.Fragments(fragments.triangle_ids[:1, ::stride, ::stride],
                                  fragments.barycentrics[:1, ::stride, ::stride], fragments.depth[:1, ::stride, ::stride])
        points = mr.interpolate(vertices, first_view, faces)[0]  # [h, w, 3]
        covered = first_view.mask[0]
        rows, cols = torch.nonzero(covered, as_tuple=True)
        pixels, visible = mr.visible_points(points[covered], cameras[1:], mr.Fragments(
            fragments.triangle_ids[1:], fragments.barycentrics[1:], fragments.depth[1:]), depth_tolerance)
        keep = visible[0]
        first = torch.stack([cols * stride + 0.5, rows * stride + 0.5], dim=-1).to(vertices.dtype)[keep]
        return Correspondences(first, pixels[0][keep])


def _sample(features: Tensor, pixels: Tensor, width: int, height: int) -> Tensor:
    """features [D, h, w] at pixel positions [N, 2] of a width × height render → [N, D]."""
    grid = torch.stack([pixels[:, 0] / width * 2 - 1, pixels[:, 1] / height * 2 - 1], dim=-1)
    sampled = F.grid_sample(features[None], grid[None, None].to(features.dtype), mode="bilinear",
                            padding_mode="border", align_corners=False)
    return sampled[0, :, 0].T


def cross_view_loss(features: Tensor, pairs: Correspondences, width: int, height: int) -> Tensor:
    """Mean 1 − cos of features [2, D, h, w] (one map per view, any resolution; upsampled to the
    width × height renders the pairs were found in) over the pixel pairs; 0 without pairs."""
    if features.ndim != 4 or features.shape[0] != 2:
        raise ValueError(f"features must be [2, D, h, w], got {tuple(features.shape)}")
    if len(pairs) == 0:
        return features.sum() * 0.0  # still a graph node, so callers can always backpropagate
    first = _sample(features[0], pairs.first.to(features.device), width, height)
    second = _sample(features[1], pairs.second.to(features.device), width, height)
    return (1 - F.cosine_similarity(first, second, dim=-1)).mean()
