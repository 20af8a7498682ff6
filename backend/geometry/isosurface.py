"""Surface extraction from Gaussians: a density grid evaluated block by block, then marching cubes.

The density is the opacity-weighted sum of the Gaussians, Σ oᵢ·exp(−½ dᵀΣᵢ⁻¹d). Each block of
the grid only evaluates the Gaussians whose 3σ box reaches it, which turns an N×R³ sum into
roughly N×(footprint) work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from skimage import measure
from torch import Tensor

from .cameras import Cameras, project_points
from .splat.projection import quat_to_rotmat


DEPTH_SLACK_CELLS = 3.0
OPAQUE_ALPHA = 0.95  # renders at least this opaque have a trustworthy expected depth


@dataclass
class DensityGrid:
    values: Tensor  # [R, R, R] float32, indexed [x, y, z]
    lo: Tensor  # [3] world position of voxel (0, 0, 0)
    hi: Tensor  # [3] world position of voxel (R−1, R−1, R−1)

    @property
    def spacing(self) -> Tensor:  # [3]
        return (self.hi - self.lo) / (self.values.shape[0] - 1)


def _whitening(quats: Tensor, scales: Tensor) -> Tensor:  # → [N, 3, 3] maps offsets to unit-variance space
    return quat_to_rotmat(quats).transpose(1, 2) / scales[:, :, None]


def density_grid(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, *, resolution: int = 128,
                 bounds: tuple[Tensor, Tensor] | None = None, block: int = 16, sigma_cutoff: float = 3.0,
                 chunk: int = 4096) -> DensityGrid:
    """means [N,3], quats [N,4] wxyz, scales [N,3] and opacities [N] activated.

    `bounds` (lo [3], hi [3]) defaults to a cube around every Gaussian's cutoff box, so the
    surface never touches the grid's border (marching cubes would leave it open)."""
    if means.ndim != 2 or means.shape[1] != 3 or len(means) == 0:
        raise ValueError(f"need a non-empty [N, 3] set of Gaussian means, got {tuple(means.shape)}")
    if resolution < 2:
        raise ValueError(f"grid resolution must be at least 2, got {resolution}")
    means, quats, scales, opacities = means.float(), quats.float(), scales.float(), opacities.float()
    whiten = _whitening(quats, scales)
    # Half-extent of each Gaussian's cutoff ellipsoid along the world axes: k·sqrt(diag Σ).
    rot = quat_to_rotmat(quats)
    reach = sigma_cutoff * ((rot * scales[:, None, :]) ** 2).sum(-1).sqrt()  # [N, 3]
    if bounds is None:
        lo, hi = (means - reach).amin(0), (means + reach).amax(0)
        centre, half = (lo + hi) / 2, ((hi - lo) / 2).max() * 1.05
        lo, hi = centre - half, centre + half
    else:
        lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in bounds)
    axes = [torch.linspace(float(lo[i]), float(hi[i]), resolution) for i in range(3)]
    values = torch.zeros(resolution, resolution, resolution)
    box_lo, box_hi = means - reach, means + reach
    for i in range(0, resolution, block):
        for j in range(0, resolution, block):
            for k in range(0, resolution, block):
                xs, ys, zs = axes[0][i:i + block], axes[1][j:j + block], axes[2][k:k + block]
                block_lo = torch.stack([xs[0], ys[0], zs[0]])
                block_hi = torch.stack([xs[-1], ys[-1], zs[-1]])
                near = ((box_hi >= block_lo) & (box_lo <= block_hi)).all(-1).nonzero(as_tuple=True)[0]
                if len(near) == 0:
                    continue
                points = torch.stack(torch.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3)
                total = torch.zeros(len(points))
                for start in range(0, len(near), chunk):
                    ids = near[start:start + chunk]
                    offset = points[:, None, :] - means[ids][None]  # [P, M, 3]
                    white = torch.einsum("mij,pmj->pmi", whiten[ids], offset)
                    total += (opacities[ids] * torch.exp(-0.5 * white.square().sum(-1))).sum(-1)
                values[i:i + block, j:j + block, k:k + block] = total.reshape(len(xs), len(ys), len(zs))
    return DensityGrid(values, lo, hi)


def carve(points: Tensor, cameras: Cameras, alpha: Tensor, depth: Tensor | None = None, *,
          alpha_threshold: float = 0.5, margin: float = 0.0, chunk: int = 1 << 20) -> Tensor:
    """Space carving: which points [P,3] are inside the object seen in alpha [C,H,W] (and, when
    given, expected depth [C,H,W]) from `cameras`. A point is inside when every view that frames
    it sees it within the silhouette and, where that view is opaque, no nearer than the rendered
    surface minus `margin`.
    Without depth this is the visual hull. Returns [P] bool."""
    alpha = alpha.cpu()
    depth = None if depth is None else depth.cpu()
    cameras = cameras.to("cpu")
    inside = torch.empty(len(points), dtype=torch.bool)
    view = torch.arange(len(cameras))[:, None]
    for start in range(0, len(points), chunk):
        pixels, z = project_points(points[start:start + chunk].cpu().float(), cameras)  # [C, P, 2], [C, P]
        cols, rows = pixels[..., 0].floor().long(), pixels[..., 1].floor().long()
        in_frame = (cols >= 0) & (cols < cameras.width) & (rows >= 0) & (rows < cameras.height) & (z > 0)
        r, c = rows.clamp(0, cameras.height - 1), cols.clamp(0, cameras.width - 1)
        a = alpha[view, r, c]
        seen_inside = a > alpha_threshold
        if depth is not None:
            # Expected depth is only a surface where the render is opaque; through a
            # semi-transparent render it averages front and back, so there only the silhouette counts.
            seen_inside &= (z >= depth[view, r, c] - margin) | (a < OPAQUE_ALPHA)
        # A view that does not frame the point cannot carve it.
        inside[start:start + chunk] = (seen_inside | ~in_frame).all(0) & in_frame.any(0)
    return inside


def grid_points(grid: DensityGrid) -> Tensor:  # [R³, 3] cell positions in the values' memory order
    res = grid.values.shape[0]
    axes = [torch.linspace(float(grid.lo[i]), float(grid.hi[i]), res) for i in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def fill_interior(grid: DensityGrid, level: float, cameras: Cameras, alpha: Tensor, depth: Tensor) -> DensityGrid:
    """Make the object solid so marching cubes returns its outer surface only.

    Fitted Gaussians hug the surface: their density is a thin, leaky shell around a cavity with
    stray blobs, and marching cubes would return every wall in it. Space carving against renders
    of the Gaussians (alpha and expected depth [C,H,W] from `cameras`) decides what is inside;
    inside cells are raised above `level`, and the shell's own values stay, so the surface keeps
    the Gaussians' shape wherever they form one.
    """
    res = grid.values.shape[0]
    # Expected depth averages in whatever shows through a thin spot of the front layer, so it can
    # sit behind the true surface; a few cells of slack keep that from carving tunnels inwards.
    inside = carve(grid_points(grid), cameras, alpha, depth, margin=DEPTH_SLACK_CELLS * float(grid.spacing.max()))
    values = grid.values.clone()
    values[inside.reshape(res, res, res)] = max(2.0 * level, float(values.max()))
    return DensityGrid(values, grid.lo, grid.hi)


def extract_isosurface(grid: DensityGrid, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes at `level` → vertices [V,3] float32 (world) and faces [F,3] int64 whose
    normals point out of the dense region."""
    values = grid.values.cpu().numpy()
    top = float(values.max())
    if not values.min() < level < top:
        raise ValueError(f"no surface at density level {level}: the grid spans [{values.min():.3g}, {top:.3g}]; "
                         f"{'lower the level' if level >= top else 'raise the level'}")
    spacing = tuple(float(s) for s in grid.spacing)
    vertices, faces, _, _ = measure.marching_cubes(values, level=level, spacing=spacing)
    vertices = (vertices + grid.lo.cpu().numpy()).astype(np.float32)
    faces = faces.astype(np.int64)
    if _signed_volume(vertices, faces) < 0:  # make the winding point outwards
        faces = faces[:, ::-1].copy()
    return vertices, faces


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, i]].astype(np.float64) for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
