"""3D Gaussians: parameters, activations, initialisation, and standard 3DGS PLY files.

Parameters live in an `nn.ParameterDict` with gsplat's key names and raw (pre-activation) values,
so gsplat's `DefaultStrategy` can densify and prune them in place:

    means [N,3]; scales [N,3] log; quats [N,4] wxyz, unnormalised; opacities [N] logit;
    sh0 [N,1,3] DC colour coefficient; shN [N,K-1,3] higher SH bands (K = (degree+1)²).

The strategy replaces the tensors, so always read `gaussians.params[...]` anew; never cache them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .cameras import Cameras

SH_C0 = 0.28209479177387814  # Y_0^0: colour = SH_C0 · sh0 + 0.5
MAX_SH_DEGREE = 3
PARAM_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")


def rgb_to_sh0(rgb: Tensor) -> Tensor:  # [..., 3] → [..., 3]
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5


def sh_coefficients(degree: int) -> int:
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


@dataclass
class Gaussians:
    """A set of 3D Gaussians with trainable raw parameters (see the module docstring)."""

    params: nn.ParameterDict
    sh_degree: int = 0

    def __post_init__(self) -> None:
        missing = [k for k in PARAM_KEYS if k not in self.params]
        if missing:
            raise ValueError(f"Gaussian parameters lack {missing}")
        n = self.params["means"].shape[0]
        expected = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,), "sh0": (n, 1, 3),
                    "shN": (n, sh_coefficients(self.sh_degree) - 1, 3)}
        for key, shape in expected.items():
            if tuple(self.params[key].shape) != shape:
                raise ValueError(f"{key} must have shape {shape}, got {tuple(self.params[key].shape)}")

    @classmethod
    def from_tensors(cls, means: Tensor, log_scales: Tensor, quats: Tensor, opacity_logits: Tensor,
                     sh0: Tensor, shN: Tensor | None = None, sh_degree: int = 0) -> Gaussians:
        n = means.shape[0]
        if shN is None:
            shN = torch.zeros(n, sh_coefficients(sh_degree) - 1, 3, dtype=means.dtype, device=means.device)
        tensors = dict(means=means, scales=log_scales, quats=quats, opacities=opacity_logits, sh0=sh0, shN=shN)
        params = nn.ParameterDict({k: nn.Parameter(v.detach().clone().float().contiguous())
                                   for k, v in tensors.items()})
        return cls(params, sh_degree)

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    def to(self, device: torch.device | str) -> Gaussians:
        return Gaussians(self.params.to(device), self.sh_degree)

    # Activated views, differentiable w.r.t. the raw parameters.
    @property
    def means(self) -> Tensor:  # [N, 3]
        return self.params["means"]

    @property
    def scales(self) -> Tensor:  # [N, 3]
        return torch.exp(self.params["scales"])

    @property
    def quats(self) -> Tensor:  # [N, 4] unit wxyz
        return nn.functional.normalize(self.params["quats"], dim=-1)

    @property
    def opacities(self) -> Tensor:  # [N]
        return torch.sigmoid(self.params["opacities"])

    @property
    def sh(self) -> Tensor:  # [N, K, 3]
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)

    @property
    def base_colors(self) -> Tensor:  # [N, 3] view-independent colour (the DC term)
        return sh0_to_rgb(self.params["sh0"][:, 0]).clamp(0.0, 1.0)

    def detached(self) -> Gaussians:
        """A frozen copy (for baking and export while training carries on)."""
        return Gaussians(nn.ParameterDict({k: nn.Parameter(v.detach().clone(), requires_grad=False)
                                           for k, v in self.params.items()}), self.sh_degree)


# --- initialisation -----------------------------------------------------------------------------

def _nearest_neighbour_scales(points: Tensor, k: int = 3, chunk: int = 4096) -> Tensor:  # [N]
    """RMS distance to the k nearest neighbours: the 3DGS initial scale, so neighbours just overlap."""
    n = points.shape[0]
    if n <= 1:
        return torch.full((n,), 0.01, dtype=points.dtype, device=points.device)
    k = min(k, n - 1)
    out = torch.empty(n, dtype=points.dtype, device=points.device)
    for start in range(0, n, chunk):
        d2 = torch.cdist(points[start:start + chunk], points).square()
        nearest = d2.topk(k + 1, dim=1, largest=False).values[:, 1:]  # drop the point itself
        out[start:start + chunk] = nearest.mean(dim=1).sqrt()
    return out.clamp_min(1e-7)


def from_points(points: Tensor, colors: Tensor, *, scales: Tensor | None = None, opacity: float = 0.1,
                sh_degree: int = 0) -> Gaussians:
    """Isotropic Gaussians at `points` [N, 3] with RGB `colors` [N, 3] in [0, 1].
    `scales` [N] defaults to the nearest-neighbour spacing."""
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape:
        raise ValueError(f"points and colors must both be [N, 3], got {tuple(points.shape)} and {tuple(colors.shape)}")
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"initial opacity must be in (0, 1), got {opacity}")
    points = points.float()
    if scales is None:
        scales = _nearest_neighbour_scales(points)
    n = points.shape[0]
    quats = torch.zeros(n, 4, device=points.device)
    quats[:, 0] = 1.0
    return Gaussians.from_tensors(
        means=points, log_scales=torch.log(scales.float())[:, None].repeat(1, 3), quats=quats,
        opacity_logits=torch.full((n,), math.log(opacity / (1 - opacity)), device=points.device),
        sh0=rgb_to_sh0(colors.float().clamp(0, 1))[:, None, :], sh_degree=sh_degree)


def random_in_sphere(count: int, radius: float = 0.5, *, opacity: float = 0.1, scale_factor: float = 1.0,
                     sh_degree: int = 0, generator: torch.Generator | None = None) -> Gaussians:
    """Uniformly distributed in a ball, grey (the DreamGaussian start for SDS). Scales are the
    nearest-neighbour spacing times `scale_factor`; below 1 the start renders faster (smaller
    footprints) and the optimisation grows what it needs."""
    if count <= 0:
        raise ValueError(f"need at least one Gaussian, got {count}")
    direction = nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    points = direction * radius * torch.rand(count, 1, generator=generator).pow(1.0 / 3.0)
    return from_points(points, torch.full((count, 3), 0.5), scales=_nearest_neighbour_scales(points) * scale_factor,
                       opacity=opacity, sh_degree=sh_degree)


def from_visual_hull(cameras: Cameras, masks: Tensor, count: int, *, extent: float = 1.0, resolution: int = 64,
                     opacity: float = 0.1, scale_factor: float = 0.5, sh_degree: int = 0,
                     generator: torch.Generator | None = None) -> Gaussians:
    """Grey Gaussians on the surface of the visual hull of masks [C,H,W] seen from `cameras`,
    carved on a `resolution`³ grid over [−extent, extent]³. With several views (the reference
    plus multi-view pseudo-ground truth) this starts the optimisation near the real surface,
    which keeps few-view fits from floating texture in front of it."""
    from scipy import ndimage

    from .isosurface import carve

    axis = torch.linspace(-extent, extent, resolution)
    cells = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    inside = carve(cells, cameras, masks.float()).reshape(resolution, resolution, resolution).numpy()
    shell = inside & ~ndimage.binary_erosion(inside)
    surface = cells[torch.from_numpy(shell.reshape(-1))]
    if len(surface) == 0:
        raise ValueError("the masks carve away everything: they do not agree on any common volume "
                         "(check that the cameras match the masks)")
    pick = torch.randint(len(surface), (count,), generator=generator)
    cell = 2 * extent / (resolution - 1)
    points = surface[pick] + (torch.rand(count, 3, generator=generator) - 0.5) * cell
    return from_points(points, torch.full((count, 3), 0.5), scales=_nearest_neighbour_scales(points) * scale_factor,
                       opacity=opacity, sh_degree=sh_degree)


def unproject_depth(depth: Tensor, camera: Cameras) -> Tensor:  # [H, W] → [H, W, 3]
    """World positions of every pixel centre at camera-space depth `depth` (OpenCV z)."""
    if len(camera) != 1:
        raise ValueError("unproject through exactly one camera")
    h, w = depth.shape
    if (w, h) != (camera.width, camera.height):
        raise ValueError(f"depth is {w}x{h} but the camera renders {camera.width}x{camera.height}")
    K = camera.Ks[0].to(depth)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=depth.dtype, device=depth.device) + 0.5,
                                torch.arange(w, dtype=depth.dtype, device=depth.device) + 0.5, indexing="ij")
    x = (cols - K[0, 2]) / K[0, 0] * depth
    y = (rows - K[1, 2]) / K[1, 1] * depth
    cam = torch.stack([x, y, depth, torch.ones_like(depth)], dim=-1)
    return (cam @ camera.camtoworlds[0].to(depth).T)[..., :3]


def from_depth(image: Tensor, depth: Tensor, mask: Tensor, camera: Cameras, *, max_points: int = 20_000,
               opacity: float = 0.5, sh_degree: int = 0, generator: torch.Generator | None = None) -> Gaussians:
    """One Gaussian per (sampled) foreground pixel, unprojected through the reference camera.

    image [H, W, 3] in [0, 1]; depth [H, W] camera-space z (already aligned to the scene scale);
    mask [H, W] bool. Each Gaussian is as wide as its pixel footprint at that depth (times the
    subsampling stride), so the initial render covers the mask without holes.
    """
    if image.shape[:2] != depth.shape or mask.shape != depth.shape:
        raise ValueError(f"image {tuple(image.shape)}, depth {tuple(depth.shape)} and mask {tuple(mask.shape)} "
                         "must share H and W")
    valid = mask & (depth > 0) & torch.isfinite(depth)
    if not valid.any():
        raise ValueError("the mask selects no pixel with a positive depth; nothing to initialise from")
    points = unproject_depth(depth, camera)[valid]
    colors = image[valid]
    pixel_size = depth[valid] / camera.Ks[0, 0, 0].to(depth)
    stride = 1.0
    if points.shape[0] > max_points:
        keep = torch.randperm(points.shape[0], generator=generator)[:max_points]
        stride = math.sqrt(points.shape[0] / max_points)
        points, colors, pixel_size = points[keep], colors[keep], pixel_size[keep]
    return from_points(points, colors, scales=pixel_size * stride * 0.5, opacity=opacity, sh_degree=sh_degree)


# --- PLY (the layout of the original 3DGS code, read by every splat viewer) ---------------------

def _ply_fields(rest: int) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def save_ply(gaussians: Gaussians, path: str | Path) -> Path:
    """Binary little-endian 3DGS PLY (raw parameters: log scales, opacity logits, SH)."""
    p = {k: v.detach().float().cpu().numpy() for k, v in gaussians.params.items()}
    n, rest = p["means"].shape[0], p["shN"].shape[1]
    # 3DGS stores the higher bands channel-major: all of R's coefficients, then G's, then B's.
    f_rest = p["shN"].transpose(0, 2, 1).reshape(n, 3 * rest)
    columns = [p["means"], np.zeros((n, 3), np.float32), p["sh0"][:, 0, :], f_rest, p["opacities"][:, None],
               p["scales"], p["quats"]]
    data = np.concatenate(columns, axis=1).astype("<f4")
    fields = _ply_fields(rest)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in fields] + ["end_header"]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(data.tobytes())
    tmp.replace(path)  # never leave half a file behind
    return path


def load_ply(path: str | Path) -> Gaussians:
    """Read a binary little-endian 3DGS PLY (float properties, as written by 3DGS tools)."""
    raw = Path(path).read_bytes()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    header = raw[:end].decode("ascii", errors="replace").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: only binary little-endian Gaussian PLY files are supported")
    count, names = 0, []
    for line in header:
        parts = line.split()
        if parts[:2] == ["element", "vertex"]:
            count = int(parts[2])
        elif parts[:1] == ["property"]:
            if parts[1] != "float":
                raise ValueError(f"{path}: property {parts[-1]} is {parts[1]}, expected float")
            names.append(parts[2])
    body = np.frombuffer(raw, dtype="<f4", offset=end + len(b"end_header\n"))
    if body.size != count * len(names):
        raise ValueError(f"{path}: expected {count} vertices x {len(names)} floats, file holds {body.size} floats")
    table = body.reshape(count, len(names))
    column = {name: i for i, name in enumerate(names)}
    rest = sum(1 for name in names if name.startswith("f_rest_")) // 3
    degree = round(math.sqrt(rest + 1)) - 1
    if (degree + 1) ** 2 != rest + 1 or degree > MAX_SH_DEGREE:
        raise ValueError(f"{path}: {3 * rest} f_rest values is not a complete SH degree <= {MAX_SH_DEGREE}")
    missing = [name for name in _ply_fields(rest) if name not in column and name[0] != "n"]
    if missing:
        raise ValueError(f"{path}: not a 3DGS PLY, missing {missing[:4]}")

    def take(*fields: str) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(table[:, [column[f] for f in fields]]))

    shN = take(*[f"f_rest_{i}" for i in range(3 * rest)]).reshape(count, 3, rest).transpose(1, 2)
    return Gaussians.from_tensors(
        means=take("x", "y", "z"), log_scales=take("scale_0", "scale_1", "scale_2"),
        quats=take("rot_0", "rot_1", "rot_2", "rot_3"), opacity_logits=take("opacity")[:, 0],
        sh0=take("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :], shN=shN, sh_degree=degree)
