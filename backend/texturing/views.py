"""The views that paint a texture: a ring around the object plus one from the top and one from
the bottom, painted in an order where each view overlaps what is already painted (front first,
then alternating to either side, the back, then top and bottom).

Each view sits at the distance where the object's bounding sphere fits the field of view, then
zooms and shifts its image (focal length and principal point) so the object's own outline fills
`FILL` of the frame: the views' pixels, which limit the texture's detail, go to the object, not
to the backdrop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..geometry.cameras import Cameras, orbit_cameras, project_points

FOVY_DEG = 40.0
TOP_BOTTOM_VIEWS = 2
FILL = 0.92
"""Share of the image side the object's outline spans (a margin keeps its silhouette off the edge)."""
TWO_RINGS_FROM = 8
"""From this many ring views on, the ring alternates between two heights (30° and −5°), so tops of
rims and undersides of overhangs are seen squarely too."""


@dataclass(frozen=True)
class PaintView:
    elevation_deg: float
    azimuth_deg: float

    @property
    def direction(self) -> str:
        """Words for the prompt (TEXTure's view-dependent prompting)."""
        if self.elevation_deg >= 60:
            return "top view"
        if self.elevation_deg <= -60:
            return "bottom view"
        azimuth = self.azimuth_deg % 360
        if azimuth <= 45 or azimuth >= 315:
            return "front view"
        if 135 <= azimuth <= 225:
            return "back view"
        return "side view"


def paint_views(count: int) -> list[PaintView]:
    """`count` ≥ 4 views in painting order."""
    if count < 2 + TOP_BOTTOM_VIEWS:
        raise ValueError(f"need at least {2 + TOP_BOTTOM_VIEWS} views, got {count}")
    ring = count - TOP_BOTTOM_VIEWS
    step = 360.0 / ring
    # Ring positions in painting order: 0, +1, −1, +2, −2, … (the back last).
    order = [0]
    for k in range(1, ring):
        position = (k + 1) // 2 if k % 2 else ring - k // 2
        order.append(position)
    views = []
    for position in order:
        elevation = 15.0 if ring < TWO_RINGS_FROM else (30.0 if position % 2 == 0 else -5.0)
        views.append(PaintView(elevation, (position * step) % 360.0))
    return views + [PaintView(90.0, 0.0), PaintView(-90.0, 0.0)]


def framing_distance(radius: float, fovy_deg: float = FOVY_DEG, margin: float = 1.08) -> float:
    """Camera distance at which a sphere of `radius` fits the field of view with `margin`."""
    return margin * radius / math.sin(math.radians(fovy_deg) / 2)


def view_cameras(views: list[PaintView], centre: torch.Tensor, radius: float, size: int,
                 fovy_deg: float = FOVY_DEG, vertices: torch.Tensor | None = None) -> Cameras:
    """Square cameras at `size`² looking at `centre` [3] from the views' angles; with `vertices`
    [V, 3] each one is zoomed onto the object's outline (`fit_to_outline`)."""
    cameras = orbit_cameras([v.elevation_deg for v in views], [v.azimuth_deg for v in views],
                            framing_distance(radius, fovy_deg), fovy_deg=fovy_deg, width=size, height=size,
                            target=centre)
    return cameras if vertices is None else fit_to_outline(cameras, vertices)


def fit_to_outline(cameras: Cameras, vertices: torch.Tensor, fill: float = FILL) -> Cameras:
    """Each camera's focal length scaled and principal point moved so the projected `vertices`
    [V, 3] span `fill` of the image's longer extent, centred. Never zooms out."""
    pixels, _ = project_points(vertices.to(cameras.Ks.dtype), cameras)  # [C, V, 2]
    low, high = pixels.amin(1), pixels.amax(1)  # [C, 2]
    extent = (high - low).amax(1).clamp_min(1e-6)  # [C]
    scale = (fill * min(cameras.width, cameras.height) / extent).clamp_min(1.0)
    middle = (low + high) / 2
    Ks = cameras.Ks.clone()
    principal = Ks[:, :2, 2]
    Ks[:, 0, 0] *= scale
    Ks[:, 1, 1] *= scale
    image_centre = torch.tensor([cameras.width / 2, cameras.height / 2], dtype=Ks.dtype)
    Ks[:, :2, 2] = image_centre - scale[:, None] * (middle - principal)
    return Cameras(cameras.viewmats, Ks, cameras.width, cameras.height)
