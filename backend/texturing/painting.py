"""Sequential painting: view after view, a depth-conditioned generator paints what earlier views
left unpainted or saw badly, and the result is projected back into the texture.

Per view (TEXTure's trimap, Hunyuan3D-Paint's bake weights):

* **trimap**: a texel is *generate* when no view has painted it yet, *refine* when this view sees
  it more squarely than any earlier one (|cos| higher by `refine_margin`), *keep* otherwise. The
  generator gets the view's depth, the current texture rendered into the view (unpainted parts
  filled with the painted parts' mean colour) and a mask of the generate + refine pixels (slightly
  dilated so the new paint blends into the old); it must keep the other pixels.
* **back-projection**: every texel this view sees and may change takes the generated colour at its
  pixel, weighted by |cos|^`angle_power` (grazing views count little) and accumulated, so a texel
  seen by several views is their weighted mean. Pixels on the silhouette (the outer ring of the
  object's mask) are not used: they mix in the background.

The generator is anything with `paint(request) -> [H, W, 3]`: the real one is Stable Diffusion 1.5
with ControlNet depth (`models/depth_painter.py`); the benchmark's oracle renders the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry import mesh_raster
from ..geometry.cameras import Cameras
from .texels import TexelSurface, sample_image, see_texels
from .views import PaintView

BACKGROUND = 1.0
"""The generator's backdrop (white, like a product shot)."""


@dataclass(frozen=True)
class PaintConfig:
    view_size: int = 512
    """Side of each generated view (Stable Diffusion 1.5's native 512²)."""
    angle_power: float = 4.0
    """Back-projection weight |cos|^k (Hunyuan3D-Paint's bake_exp, StableGen's default)."""
    refine_margin: float = 0.2
    """A painted texel is repainted by a view that sees it this much more squarely (TEXTure's 0.2)."""
    mask_dilation: int = 3
    """Pixels the paint mask grows by, so new paint overlaps the edge of the old."""
    silhouette_erosion: int = 1
    """Pixels of the object's outline not projected back (they mix in the background)."""
    min_cos: float = 0.05
    """Views seeing a texel more grazingly than this do not paint it."""
    depth_tolerance: float = 0.01


@dataclass(frozen=True)
class ViewRequest:
    """What the generator gets for one view."""
    index: int
    view: PaintView
    camera: Cameras  # one camera, view_size²
    image: Tensor  # [H, W, 3] the texture so far rendered into the view, unpainted parts filled, backdrop around
    mask: Tensor  # [H, W] bool, pixels to paint (generate + refine, dilated, inside the object)
    object_mask: Tensor  # [H, W] bool
    depth: Tensor  # [H, W] camera-space depth, 0 on the backdrop
    first: bool  # nothing is painted yet


class ViewPainter(Protocol):
    def paint(self, request: ViewRequest) -> Tensor:
        """The view painted: [H, W, 3] float in [0, 1]; pixels outside `request.mask` are ignored."""
        ...


@dataclass
class PaintState:
    colour_sum: Tensor  # [P, 3]
    weight_sum: Tensor  # [P]
    best_cos: Tensor  # [P] the squarest view that painted each texel (0: none)

    @classmethod
    def empty(cls, count: int, device: torch.device) -> PaintState:
        return cls(torch.zeros(count, 3, device=device), torch.zeros(count, device=device),
                   torch.zeros(count, device=device))

    @property
    def painted(self) -> Tensor:  # [P] bool
        return self.weight_sum > 0

    def colours(self, fill: Tensor | None = None) -> Tensor:  # [P, 3]
        mean = self.colour_sum / self.weight_sum.clamp_min(1e-12)[:, None]
        if fill is None:
            fill = self.mean_colour()
        return torch.where(self.painted[:, None], mean, fill)

    def mean_colour(self) -> Tensor:  # [3]
        painted = self.painted
        if not painted.any():
            return torch.full((3,), 0.5, device=self.weight_sum.device)
        return (self.colour_sum[painted] / self.weight_sum[painted, None]).mean(0)


@dataclass
class PaintResult:
    state: PaintState
    views: list[Tensor] = field(default_factory=list)  # the generated views [H, W, 3]
    seen_share: list[float] = field(default_factory=list)  # chart texels painted after each view


def _grow(mask: Tensor, pixels: int) -> Tensor:
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask[None, None].float(), 2 * pixels + 1, 1, pixels)[0, 0] > 0


def _shrink(mask: Tensor, pixels: int) -> Tensor:
    return ~_grow(~mask, pixels) if pixels > 0 else mask


def _pixel_texels(surface: TexelSurface, uv: Tensor, mask: Tensor) -> Tensor:
    """Per pixel [H, W] the texel index (−1 outside the object or off the charts), from the
    interpolated UVs [H, W, 2]."""
    size = surface.size
    rows = ((1.0 - uv[..., 1]) * size).long().clamp(0, size - 1)
    cols = (uv[..., 0] * size).long().clamp(0, size - 1)
    return torch.where(mask, surface.index[rows, cols], -1)


def paint_texture(vertices: Tensor, faces: Tensor, uvs: Tensor, normals: Tensor, surface: TexelSurface,
                  views: list[PaintView], cameras: Cameras, painter: ViewPainter, config: PaintConfig = PaintConfig(),
                  *, on_view: Callable[[int, int, PaintState, Tensor], None] | None = None) -> PaintResult:
    """Paint the texels of `surface` view by view. vertices [V, 3], faces [F, 3], uvs [V, 2] and
    normals [V, 3] describe the split-vertex mesh the surface was made from. `on_view(done, total,
    state, generated)` after each view (raise from it to cancel)."""
    device = surface.points.device
    state = PaintState.empty(surface.count, device)
    result = PaintResult(state)
    if len(cameras) != len(views):
        raise ValueError(f"{len(views)} views but {len(cameras)} cameras")
    for index, view in enumerate(views):
        camera = cameras[index]
        fragments = mesh_raster.rasterize(vertices, faces, camera.viewmats, camera.Ks, camera.width, camera.height)
        object_mask = fragments.mask[0]
        pixel_uv = mesh_raster.interpolate(uvs, fragments, faces)[0]
        pixel_normal = F.normalize(mesh_raster.interpolate(normals, fragments, faces)[0], dim=-1)
        to_camera = F.normalize(camera.centers[0] - mesh_raster.interpolate(vertices, fragments, faces)[0], dim=-1)
        pixel_cos = (pixel_normal * to_camera).sum(-1).abs()
        texel_of_pixel = _pixel_texels(surface, pixel_uv, object_mask)
        on_chart = texel_of_pixel >= 0
        lookup = texel_of_pixel.clamp_min(0)

        # Trimap in the image: generate where the texel is unpainted, refine where this view is squarer.
        painted = state.painted[lookup] & on_chart
        better = pixel_cos > state.best_cos[lookup] + config.refine_margin
        paint_pixels = object_mask & (~painted | better)
        mask = _grow(paint_pixels, config.mask_dilation) & object_mask

        fill = state.mean_colour()
        current = state.colours(fill)[lookup]
        image = torch.where(object_mask[..., None], torch.where(on_chart[..., None], current, fill),
                            torch.full_like(current, BACKGROUND))
        request = ViewRequest(index, view, camera, image, mask, object_mask, fragments.depth[0],
                              first=not bool(state.painted.any()))
        generated = painter.paint(request).to(device=device, dtype=torch.float32).clamp(0, 1)
        if generated.shape != image.shape:
            raise RuntimeError(f"the painter returned {tuple(generated.shape)} for a {tuple(image.shape)} view")

        # Back-projection into the texels this view may change.
        seen = see_texels(surface, camera, fragments, config.depth_tolerance)
        usable = _shrink(object_mask, config.silhouette_erosion) & mask
        rows = seen.pixels[:, 1].long().clamp(0, camera.height - 1)
        cols = seen.pixels[:, 0].long().clamp(0, camera.width - 1)
        may_change = ~state.painted | (seen.cos > state.best_cos + config.refine_margin)
        take = seen.visible & usable[rows, cols] & may_change & (seen.cos > config.min_cos)
        weight = torch.where(take, seen.cos.clamp_min(0) ** config.angle_power, 0.0)
        colours = sample_image(generated, seen.pixels)
        state.colour_sum += weight[:, None] * colours
        state.weight_sum += weight
        state.best_cos = torch.where(take, torch.maximum(state.best_cos, seen.cos), state.best_cos)
        result.views.append(generated)
        result.seen_share.append(float(state.painted[surface.in_chart].float().mean()) if surface.count else 0.0)
        if on_view is not None:
            on_view(index + 1, len(views), state, generated)
    return result
