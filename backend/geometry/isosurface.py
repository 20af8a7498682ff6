"""Surface extraction from Gaussians: a density grid evaluated block by block, then marching cubes.

The density is the opacity-weighted sum of the Gaussians truncated at `sigma_cutoff` standard
deviations, Σ oᵢ·exp(−½ dᵀΣᵢ⁻¹d)·[dᵀΣᵢ⁻¹d ≤ k²]. The truncation makes the field independent of
how the grid is cut into blocks, so each block needs only the Gaussians whose cutoff box reaches
it: an N×R³ sum becomes roughly N×(footprint) work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from skimage import measure
from torch import Tensor

from .cameras import Cameras, project_points
from .splat.projection import quat_to_rotmat


DEPTH_SLACK_CELLS = 0.0
OPAQUE_ALPHA = 0.95  # renders at least this opaque have a trustworthy expected depth
FIT_MARGIN = 0.05  # fitted bounds grow by this fraction of their half-size on every side

# Memory bounds: (Gaussian, block) pairs listed at once, and floats in one block's [P, 3M] buffer.
MAX_PAIRS = 1 << 22
MAX_CHUNK_ELEMENTS = 1 << 22
BOX_SLACK_CELLS = 1e-3


@dataclass
class DensityGrid:
    values: Tensor  # [R, R, R] float32, indexed [x, y, z]
    lo: Tensor  # [3] world position of voxel (0, 0, 0)
    hi: Tensor  # [3] world position of voxel (R−1, R−1, R−1)

    @property
    def spacing(self) -> Tensor:  # [3]
        return (self.hi - self.lo) / (self.values.shape[0] - 1)


def _check_gaussians(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor) -> None:
    n = len(means)
    if means.ndim != 2 or means.shape[1] != 3 or n == 0:
        raise ValueError(f"need a non-empty [N, 3] set of Gaussian means, got {tuple(means.shape)}")
    for name, tensor, shape in (("quats", quats, (n, 4)), ("scales", scales, (n, 3)),
                                ("opacities", opacities, (n,))):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)} to match {n} means, "
                             f"got {list(tensor.shape)}")
    if not bool(torch.isfinite(means).all()):
        raise ValueError("means contain NaN or infinity")
    if not bool((scales > 0).all()) or not bool(torch.isfinite(scales).all()):
        raise ValueError("scales must be activated (exp of the log-scales): finite and positive")


def _fit_bounds(box_lo: Tensor, box_hi: Tensor) -> tuple[Tensor, Tensor]:
    """A cube around every cutoff box: truncation makes the density exactly 0 outside them, so
    the surface never touches the border (marching cubes would leave it open there)."""
    lo, hi = box_lo.amin(0), box_hi.amax(0)
    centre, half = (lo + hi) / 2, ((hi - lo) / 2).max() * (1 + FIT_MARGIN)
    return centre - half, centre + half


def _axes(lo: Tensor, hi: Tensor, resolution: int) -> list[Tensor]:  # 3 × [R] cell positions per axis
    return [torch.linspace(float(lo[i]), float(hi[i]), resolution, device=lo.device) for i in range(3)]


def _block_pairs(first: Tensor, last: Tensor, block: int, blocks_per_axis: int) -> tuple[Tensor, Tensor]:
    """Every (Gaussian, block) pair whose cell ranges [first, last] ([M, 3] inclusive) overlap,
    sorted by block id: → (block id [Q], Gaussian index [Q])."""
    b0, b1 = first // block, last // block
    extent = b1 - b0 + 1  # [M, 3] blocks touched per axis
    count = extent.prod(1)
    owner = torch.repeat_interleave(torch.arange(len(first), device=first.device), count)
    local = torch.arange(len(owner), device=first.device) - (count.cumsum(0) - count)[owner]
    ey, ez = extent[owner, 1], extent[owner, 2]
    bz = b0[owner, 2] + local % ez
    by = b0[owner, 1] + (local // ez) % ey
    bx = b0[owner, 0] + local // (ez * ey)
    block_id = (bx * blocks_per_axis + by) * blocks_per_axis + bz
    order = torch.argsort(block_id, stable=True)
    return block_id[order], owner[order]


def _cell_ranges(box_lo: Tensor, box_hi: Tensor, lo: Tensor, spacing: Tensor, resolution: int
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Cells inside each box [N,3]–[N,3] → (indices [M] of the boxes that reach the grid, first
    and last cell [M,3], inclusive). A hair of slack keeps rounding from dropping a cell that
    the exact Mahalanobis test would keep."""
    first = torch.ceil((box_lo - lo) / spacing - BOX_SLACK_CELLS).long()
    last = torch.floor((box_hi - lo) / spacing + BOX_SLACK_CELLS).long()
    reaches = ((first <= last) & (last >= 0) & (first < resolution)).all(1)
    ids = reaches.nonzero(as_tuple=True)[0]
    return ids, first[ids].clamp(0, resolution - 1), last[ids].clamp(0, resolution - 1)


def _slices(pair_counts: Tensor) -> list[tuple[int, int]]:
    """Consecutive slices of Gaussians with about MAX_PAIRS (Gaussian, block) pairs each, so that
    a few huge Gaussians cannot exhaust memory."""
    slice_of = (pair_counts.cumsum(0) - pair_counts) // MAX_PAIRS
    ends = torch.unique_consecutive(slice_of, return_counts=True)[1].cumsum(0).tolist()
    return list(zip([0, *ends[:-1]], ends))


def _block_density(points: Tensor, means: Tensor, whiten: Tensor, opacities: Tensor,
                   cutoff2: float) -> Tensor:
    """Σ oᵢ·exp(−½|Wᵢ(p − μᵢ)|²) over Mahalanobis² ≤ cutoff2, for points [P,3] and Gaussians
    means [M,3], whiten [M,3,3], opacities [M] → [P], a bounded number of Gaussians at a time."""
    total = torch.zeros(len(points), device=points.device)
    chunk = max(1, MAX_CHUNK_ELEMENTS // (3 * len(points)))
    for c in range(0, len(means), chunk):
        w = whiten[c:c + chunk]  # [M, 3, 3]
        centre = (w @ means[c:c + chunk, :, None])[:, :, 0]  # [M, 3]
        # W(p − μ) = Wp − Wμ for all points and Gaussians at once: one GEMM [P,3]×[3,3M].
        white = torch.addmm(centre.reshape(1, -1), points, w.reshape(-1, 3).T, alpha=1, beta=-1)
        dist2 = white.square_().reshape(len(points), len(w), 3).sum(-1)  # [P, M]
        weight = dist2.masked_fill_(dist2 > cutoff2, float("inf")).mul_(-0.5).exp_()
        total += weight @ opacities[c:c + chunk]
    return total


def density_grid(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, *, resolution: int = 128,
                 bounds: tuple[Tensor, Tensor] | None = None, block: int = 8,
                 sigma_cutoff: float = 3.0) -> DensityGrid:
    """means [N,3], quats [N,4] wxyz, scales [N,3] and opacities [N] activated → density on a
    resolution³ grid over `bounds` (lo [3], hi [3]; None: a cube fitted around the Gaussians).

    Evaluated on the Gaussians' device, in float32, `block`³ cells at a time. The result does not
    depend on `block` (except for float rounding right at the cutoff); 8 is the fastest on CPU
    (4× faster than 16 at 128³ with 20k Gaussians: smaller blocks evaluate fewer far cells)."""
    _check_gaussians(means, quats, scales, opacities)
    if resolution < 2 or block < 1:
        raise ValueError(f"need resolution ≥ 2 and block ≥ 1, got {resolution} and {block}")
    if sigma_cutoff <= 0:
        raise ValueError(f"sigma_cutoff must be positive, got {sigma_cutoff}")
    device = means.device
    means, quats, scales, opacities = means.float(), quats.float(), scales.float(), opacities.float()
    rot = quat_to_rotmat(quats)  # [N, 3, 3], columns are the principal axes
    whiten = rot.transpose(1, 2) / scales[:, :, None]  # [N, 3, 3]: offset d ↦ unit-variance coordinates
    # Half-extent of each cutoff ellipsoid along the world axes: k·sqrt(diag Σ).
    reach = sigma_cutoff * ((rot * scales[:, None, :]) ** 2).sum(-1).sqrt()  # [N, 3]
    if bounds is None:
        lo, hi = _fit_bounds(means - reach, means + reach)
    else:
        lo, hi = (torch.as_tensor(b, dtype=torch.float32, device=device).reshape(3) for b in bounds)
        if not bool((hi > lo).all()):
            raise ValueError(f"bounds must have hi > lo on every axis, got lo={lo.tolist()} hi={hi.tolist()}")
    spacing = (hi - lo) / (resolution - 1)
    axes = _axes(lo, hi, resolution)
    values = torch.zeros(resolution, resolution, resolution, device=device)
    ids, first, last = _cell_ranges(means - reach, means + reach, lo, spacing, resolution)
    blocks_per_axis = -(-resolution // block)
    for g0, g1 in _slices((last // block - first // block + 1).prod(1)):
        block_ids, owners = _block_pairs(first[g0:g1], last[g0:g1], block, blocks_per_axis)
        owners = ids[g0:g1][owners]
        found, counts = torch.unique_consecutive(block_ids, return_counts=True)
        for block_id, members in zip(found.tolist(), owners.split(counts.tolist())):
            i = block_id // (blocks_per_axis * blocks_per_axis) * block
            j = block_id // blocks_per_axis % blocks_per_axis * block
            k = block_id % blocks_per_axis * block
            xs, ys, zs = axes[0][i:i + block], axes[1][j:j + block], axes[2][k:k + block]
            # Block-local coordinates keep float32 precise far from the origin.
            origin = torch.stack([xs[0], ys[0], zs[0]])
            points = torch.stack(torch.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3) - origin
            density = _block_density(points, means[members] - origin, whiten[members], opacities[members],
                                     sigma_cutoff**2)
            values[i:i + block, j:j + block, k:k + block] += density.reshape(len(xs), len(ys), len(zs))
    return DensityGrid(values, lo, hi)


def carve(points: Tensor, cameras: Cameras, alpha: Tensor, depth: Tensor | None = None, *,
          alpha_threshold: float = 0.5, margin: float = 0.0, chunk: int = 1 << 18) -> Tensor:
    """Space carving: which points [P,3] are inside the object seen in alpha [C,H,W] (and, when
    given, a depth bound [C,H,W]: 0 where nothing bounds it) from `cameras`. A point is inside when
    every view that frames it sees it within the silhouette and no nearer than the bound minus
    `margin`; `carve_targets` decides which surface bounds each pixel.
    Without depth this is the visual hull. Returns [P] bool."""
    cameras = cameras.to("cpu")
    width, height = cameras.width, cameras.height
    # Gathers through one flat index are several times faster than alpha[view, row, col].
    flat_alpha = alpha.cpu().float().reshape(-1)
    flat_depth = None if depth is None else depth.cpu().float().reshape(-1)
    view_offset = (torch.arange(len(cameras)) * (width * height))[:, None]  # [C, 1]
    inside = torch.empty(len(points), dtype=torch.bool)
    for start in range(0, len(points), chunk):
        pixels, z = project_points(points[start:start + chunk].cpu().float(), cameras)  # [C, P, 2], [C, P]
        cols, rows = pixels[..., 0].floor_(), pixels[..., 1].floor_()
        in_frame = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height) & (z > 0)
        index = (rows.clamp_(0, height - 1) * width + cols.clamp_(0, width - 1)).long() + view_offset
        seen_inside = flat_alpha[index] > alpha_threshold
        if flat_depth is not None:
            seen_inside &= z >= flat_depth[index] - margin
        # A view that does not frame the point cannot carve it.
        inside[start:start + chunk] = (seen_inside | ~in_frame).all(0) & in_frame.any(0)
    return inside


def grid_points(grid: DensityGrid) -> Tensor:  # [R³, 3] cell positions in the values' memory order
    axes = _axes(grid.lo, grid.hi, grid.values.shape[0])
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def surface_depth(grid: DensityGrid, level: float, cameras: Cameras, rays_per_chunk: int = 1 << 20,
                  march_only: Tensor | None = None) -> Tensor:
    """Camera-space depth [C, H, W] at which each pixel's ray (through its centre) first reaches
    density `level` — the depth of the surface marching cubes will extract, as each view sees it —
    marched in steps of one grid cell with trilinear lookups; inf where the ray never reaches it.
    `march_only` [C, H, W] bool: march only these pixels' rays (the others stay inf)."""
    values = grid.values.detach().float().cpu()[None, None]  # [1, 1, X, Y, Z]
    lo, hi = grid.lo.detach().float().cpu(), grid.hi.detach().float().cpu()
    step = float((hi - lo).min()) / (grid.values.shape[0] - 1)
    centre, half = (lo + hi) / 2, float((hi - lo).norm()) / 2
    cameras = cameras.to("cpu")
    camtoworlds = cameras.camtoworlds.float()
    rows, cols = torch.meshgrid(torch.arange(cameras.height) + 0.5, torch.arange(cameras.width) + 0.5, indexing="ij")
    out = torch.full((len(cameras), cameras.height, cameras.width), float("inf"))
    for c in range(len(cameras)):
        K = cameras.Ks[c].float()
        rays = torch.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], torch.ones_like(cols)], -1)
        rays = rays.reshape(-1, 3)  # camera-space direction with z = 1: a point at depth z is rays·z
        marched = torch.arange(len(rays)) if march_only is None else march_only[c].reshape(-1).cpu().nonzero()[:, 0]
        if len(marched) == 0:
            continue
        rays = rays[marched]
        distance = float((camtoworlds[c, :3, 3] - centre).norm())
        depths = torch.arange(max(distance - half, step), distance + half + step, step)
        first = torch.full((len(rays),), float("inf"))
        per_chunk = max(1, rays_per_chunk // len(rays))
        for start in range(0, len(depths), per_chunk):
            z = depths[start:start + per_chunk]
            world = (rays[None] * z[:, None, None]) @ camtoworlds[c, :3, :3].T + camtoworlds[c, :3, 3]
            # grid_sample's last axis is (W, H, D) = the values' (z, y, x).
            coords = ((world - lo) / (hi - lo) * 2 - 1)[..., [2, 1, 0]].reshape(1, -1, 1, 1, 3)
            density = torch.nn.functional.grid_sample(values, coords, align_corners=True, padding_mode="zeros")
            hit = density.reshape(len(z), len(rays)) >= level
            reached = hit.any(0) & torch.isinf(first)
            first[reached] = z[hit.float().argmax(0)][reached]
            if not torch.isinf(first).any():
                break
        out[c].view(-1)[marched] = first
    return out


PINHOLE_PX = 5
"""Far-depth spots narrower than this (pixels of a carve view) are holes in a leaky shell."""


def close_pinholes(depth: Tensor, size: int) -> Tensor:
    """Grey-level opening of depth [C, H, W] (inf: no surface) with a size×size square: far
    spots narrower than `size` — a ray slipping through a pinhole of a leaky shell to the far
    wall, or past the object — take the depth around them; far regions wider than that (an
    opening the views look into, the background) keep theirs."""
    if size <= 1:
        return depth
    far = float(depth[torch.isfinite(depth)].max()) * 2 if torch.isfinite(depth).any() else 1.0
    d = torch.where(torch.isfinite(depth), depth, far)[:, None]
    pool = torch.nn.functional.max_pool2d
    eroded = -pool(-torch.nn.functional.pad(d, [size // 2] * 4, mode="replicate"), size, stride=1)
    opened = pool(torch.nn.functional.pad(eroded, [size // 2] * 4, mode="replicate"), size, stride=1)[:, 0]
    return torch.where(opened >= far, float("inf"), opened)


def carve_targets(grid: DensityGrid, level: float, cameras: Cameras, alpha: Tensor | None = None,
                  depth: Tensor | None = None, *, surface: bool = True) -> tuple[Tensor, Tensor]:
    """What each carve view says about the object → (silhouette [C,H,W] bool, depth [C,H,W]: a
    point inside the silhouette is inside the object only at or behind it; 0 where nothing bounds it).

    Two sources, either or both:
    - the density's own surface (`surface`): where each ray first reaches `level` — the surface
      marching cubes will extract — with pinholes of a leaky shell closed;
    - renders of the Gaussians (alpha and expected depth [C,H,W]): the silhouette is alpha > 0.5,
      and the expected depth bounds it only where the render is opaque (≥ 0.95): through a
      semi-transparent render it averages front and back.
    With both, the silhouette is either's and the depth the nearer of the two, and each covers
    the other's failure (measured on the reconstruction benchmark's fits, README): haze in an open
    cavity pulls the expected depth toward the camera, or leaves the render under 0.95 alpha with
    no depth at all, so renders alone fill the cavity, while the density's surface sees through
    haze below the level; but on some opaque pixels (about 5 % of the carve pixels on the torus)
    the rendered surface lies in front of the level's, and at the rims the render's silhouette is
    wider, so the density alone shrinks the mesh (mesh PSNR −0.2 to −1.6 dB against both, same
    Gaussians). The limit: over an opaque surface, haze still pulls the expected depth forward and
    the fill follows it (about one grid cell in the tests' hazy bowl)."""
    if alpha is None or depth is None:
        if not surface:
            raise ValueError("the interior fill needs renders of the Gaussians, the density's surface, or both")
        alpha = depth = None
    if surface:
        # A ray that reaches the level cannot render nearly transparent: the Gaussians summing to
        # `level` at a point give that pixel alpha ≥ 1 − exp(−level) (0.26 at 0.3). Rays under a
        # tenth of that are not marched (most of a view is background).
        reachable = None if alpha is None else alpha.detach().cpu() > (1 - math.exp(-level)) / 10
        hit = close_pinholes(surface_depth(grid, level, cameras, march_only=reachable), PINHOLE_PX)
        reached = torch.isfinite(hit)
        if alpha is None:
            return reached, torch.where(reached, hit, 0.0)
    alpha, depth = alpha.detach().float().cpu(), depth.detach().float().cpu()  # the surface is on the CPU
    opaque = alpha >= OPAQUE_ALPHA
    if not surface:
        return alpha > 0.5, torch.where(opaque, depth, 0.0)
    nearer = torch.where(opaque, torch.minimum(depth, hit), hit)  # inf where neither bounds the point
    return (alpha > 0.5) | reached, torch.where(torch.isfinite(nearer), nearer, 0.0)


def fill_interior(grid: DensityGrid, level: float, cameras: Cameras, alpha: Tensor | None = None,
                  depth: Tensor | None = None, *, surface: bool = True) -> DensityGrid:
    """Make the object solid so marching cubes returns its outer surface only.

    Fitted Gaussians hug the surface: their density is a thin, leaky shell around a cavity with
    stray blobs, and marching cubes would return every wall in it. Space carving from `cameras`
    decides what is inside; inside cells are raised above `level`, and the shell's own values
    stay, so the surface keeps the Gaussians' shape wherever they form one.

    A cell is inside when every view sees it inside the silhouette and behind the surface that
    `carve_targets` finds from the density's own surface (`surface`), renders of the Gaussians
    (`alpha`, expected `depth` [C,H,W]), or both.
    """
    res = grid.values.shape[0]
    silhouette, bound = carve_targets(grid, level, cameras, alpha, depth, surface=surface)
    # The carved solid only fills what lies behind the surface: any slack beyond it becomes the
    # surface itself (the fill overrides the shell's density) and inflates the silhouette.
    # Measured on the oracle globe: 3 cells of slack cost 2 dB of held-out PSNR, and 0 left no
    # tunnels (the shell's own density still closes thin spots).
    inside = carve(grid_points(grid).cpu(), cameras, silhouette.float(), bound,
                   margin=DEPTH_SLACK_CELLS * float(grid.spacing.max()))
    values = grid.values.clone()
    values[inside.reshape(res, res, res).to(values.device)] = max(2.0 * level, float(values.max()))
    return DensityGrid(values, grid.lo, grid.hi)


def extract_isosurface(grid: DensityGrid, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes at `level` → vertices [V,3] float32 (world) and faces [F,3] int64 wound
    counter-clockwise seen from outside the dense region (normals point out)."""
    values = grid.values.detach().cpu().numpy().astype(np.float32, copy=False)
    low, top = float(values.min()), float(values.max())
    if top <= 0:
        raise ValueError("the density grid is empty: no Gaussian reaches the grid's bounds")
    if not low < level < top:
        hint = f"lower the level (e.g. {top / 2:.3g})" if level >= top else "raise the level"
        raise ValueError(f"no surface at density level {level}: the grid spans [{low:.3g}, {top:.3g}]; "
                         f"{hint}")
    spacing = tuple(float(s) for s in grid.spacing)
    # Index (i, j, k) ↦ lo + (i, j, k)·spacing: `spacing` scales, adding lo moves to the world.
    vertices, faces, normals, _ = measure.marching_cubes(values, level=level, spacing=spacing)
    vertices = (vertices + grid.lo.detach().cpu().numpy()).astype(np.float32)
    faces = faces.astype(np.int64)
    # skimage's gradient normals point down the density, i.e. out of the object, but (0.26) its
    # triangles wind the other way. Orient by agreement with those normals, which holds for open
    # surfaces too (a global signed volume would not).
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    agreement = np.einsum("ij,ij->", np.cross(b - a, c - a), normals[faces].sum(1))
    if agreement < 0:
        faces = np.ascontiguousarray(faces[:, ::-1])
    return vertices, faces
