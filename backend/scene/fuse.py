"""A mesh for Blender from the grown scene: each keyframe's rendered depth as a grid of triangles.

The final Gaussians are rendered at every keyframe; the first keyframe contributes all its
pixels, each later one only the pixels it inpainted (what it added to the scene), so surfaces are
not laid twice. Neighbouring pixels (every `stride`-th) become two triangles unless their depths
differ by more than `max_stretch` (relative): such a quad spans a depth discontinuity and would be
a sheet stretched between a foreground edge and the background (Text2Room's stretched-face
filter). Vertex colours come from the render.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..geometry import gaussians as gs
from ..geometry.cameras import Cameras
from ..geometry.gaussians import unproject_depth
from ..geometry.splat import render_splats
from .support import SupportDatabase


@dataclass(frozen=True)
class FusedMesh:
    vertices: np.ndarray  # [V, 3] float32, world (+Z up)
    faces: np.ndarray  # [F, 3] int64
    colors: np.ndarray  # [V, 3] uint8 sRGB


def grid_mesh(rgb: Tensor, depth: Tensor, region: Tensor, camera: Cameras, stride: int, max_stretch: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rgb [H, W, 3], depth [H, W] (> 0 where valid), region [H, W] bool → (vertices, faces, colours)."""
    points = unproject_depth(depth.float(), camera)[::stride, ::stride]
    d = depth[::stride, ::stride]
    ok = region[::stride, ::stride] & (d > 0)
    colours = rgb[::stride, ::stride]
    h, w = d.shape
    index = torch.full((h, w), -1, dtype=torch.int64)
    index[ok] = torch.arange(int(ok.sum()))
    a, b, c, e = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    da, db, dc, de = d[:-1, :-1], d[:-1, 1:], d[1:, :-1], d[1:, 1:]
    corners = torch.stack([da, db, dc, de])
    flat = corners.max(0).values <= corners.min(0).values * (1 + max_stretch)
    quad = (a >= 0) & (b >= 0) & (c >= 0) & (e >= 0) & flat
    faces = torch.cat([torch.stack([a[quad], c[quad], b[quad]], -1), torch.stack([b[quad], c[quad], e[quad]], -1)])
    # Only the vertices some triangle uses (a pixel whose quads were all filtered adds nothing).
    used, faces = torch.unique(faces, return_inverse=True)
    rgb8 = (colours[ok][used].clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return points[ok][used].numpy().astype(np.float32), faces.reshape(-1, 3).numpy(), rgb8.numpy()


def fuse_keyframes(gaussians: gs.Gaussians, support: SupportDatabase, *, stride: int = 2, max_stretch: float = 0.1,
                   backend: str = "auto", check: Callable[[], None] = lambda: None) -> FusedMesh:
    """The scene as one vertex-coloured triangle mesh (see the module docstring); `check()` runs
    before each keyframe (raise to cancel)."""
    vertices, faces, colours, offset = [], [], [], 0
    with torch.no_grad():
        for i, entry in enumerate(support.entries):
            check()
            render = render_splats(gaussians, entry.camera, backgrounds=torch.zeros(3), backend=backend)
            rgb, depth = render.rgb[0].cpu().clamp(0, 1), render.depth[0, ..., 0].cpu()
            covered = render.alpha[0, ..., 0].cpu() > 0.5
            region = covered & (torch.ones_like(covered) if i == 0 else entry.added.cpu())
            v, f, c = grid_mesh(rgb, depth, region, entry.camera.to("cpu"), stride, max_stretch)
            vertices.append(v)
            faces.append(f + offset)
            colours.append(c)
            offset += len(v)
    return FusedMesh(np.concatenate(vertices), np.concatenate(faces).astype(np.int64), np.concatenate(colours))
