"""The mesh stage as one pure function: Gaussians → UV-textured mesh, with per-step timings.

density grid → interior fill (space carving) → marching cubes → clean-up → decimation → UV atlas → bake from many views.
Decimation comes before unwrapping because xatlas grows superlinearly with the face count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .bake import BakeConfig, bake_cameras, bake_texture
from .cameras import Cameras
from .gaussians import Gaussians
from .isosurface import density_grid, extract_isosurface, fill_interior
from .splat import render_splats
from .mesh_cleanup import clean_mesh, decimate, vertex_normals
from .textured_mesh import TexturedMesh
from .uv_atlas import unwrap


FILLS = ("both", "render", "surface")  # MeshStageConfig.fill_from's choices


@dataclass(frozen=True)
class MeshStageConfig:
    grid_resolution: int = 128
    """Density grid cells per axis (over the Gaussians' bounding box)."""
    level: float = 0.3
    """Iso-level of the summed Gaussian density Σ oᵢ·exp(−½dᵀΣᵢ⁻¹d) taken as the surface (0.3
    matched the true silhouette best on the oracle benchmark: 0.5 shrank the globe by 2 % of its
    pixels and cost 4 dB)."""
    min_opacity: float = 0.005
    """Nearly transparent Gaussians are left out of the density (they are floaters or dying)."""
    carve_render_size: int = 128
    """Resolution of the views that decide which grid cells are inside the object."""
    fill_from: str = "both"
    """What the interior fill carves against (`isosurface.carve_targets`): "both" (the nearer of
    the Gaussians' rendered surface and the density's own iso-surface, within either silhouette),
    "render" (the rendered alpha and expected depth only) or "surface" (the density's iso-surface
    only, pinholes closed). Measured side by side on the reconstruction benchmark's fits (README):
    "render" fills an open cavity through faint haze and leaves hidden inner walls (precision),
    "surface" shrinks the mesh (mesh PSNR −0.2 to −1.6 dB); "both" keeps the cavity open, the
    inner walls filled and the PSNR."""
    target_faces: int = 20_000
    """Decimation target before unwrapping."""
    bake: BakeConfig = field(default_factory=BakeConfig)
    bake_radius: float = 2.0
    """Distance of the bake cameras from the object's centre."""

    def __post_init__(self) -> None:
        if self.fill_from not in FILLS:
            raise ValueError(f"unknown fill_from {self.fill_from!r}; use one of {', '.join(FILLS)}")


@dataclass
class ExtractedMesh:
    mesh: TexturedMesh
    coverage: float  # fraction of chart texels that some bake view saw
    timings: dict[str, float]


def extract_textured_mesh(gaussians: Gaussians, config: MeshStageConfig = MeshStageConfig(), *,
                          splat_backend: str = "auto",
                          on_step: Callable[[str], None] | None = None,
                          check: Callable[[], None] | None = None,
                          on_mesh: Callable[[str, np.ndarray, np.ndarray], None] | None = None) -> ExtractedMesh:
    """`on_step(name)` runs after each step (progress), `check()` also inside the long ones; raise
    from either to cancel. `on_mesh(step, vertices, faces)` sees the geometry after each step that
    changes it — "no fill" (marching cubes of the density before the interior fill, an extra
    extraction only made for it), "marching cubes", "clean", "decimate" — for finding out where a
    shape is lost (the reconstruction benchmark)."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now
        if on_step is not None:
            on_step(name)

    def show(name: str, vertices: np.ndarray, faces: np.ndarray) -> None:
        nonlocal clock
        if on_mesh is not None:
            on_mesh(name, vertices, faces)
            clock = time.perf_counter()  # what the observer spends is not the next step's time

    with torch.no_grad():
        keep = gaussians.opacities > config.min_opacity
        if not keep.any():
            raise ValueError("no Gaussian is opaque enough to form a surface; the optimisation produced nothing")
        grid = density_grid(gaussians.means[keep].cpu(), gaussians.quats[keep].cpu(), gaussians.scales[keep].cpu(),
                            gaussians.opacities[keep].cpu(), resolution=config.grid_resolution)
    lap("density grid")
    if on_mesh is not None:
        try:
            show("no fill", *extract_isosurface(grid, config.level))
        except ValueError:  # no surface before the fill: nothing to show, the fill decides
            pass
    # Carve the inside from low-resolution renders of the bake views (centred on the Gaussians).
    centre = gaussians.means[keep].detach().mean(0).cpu()
    carve_views = _centred(bake_cameras(config.bake_radius, size=config.carve_render_size), centre)
    alpha = depth = None
    if config.fill_from != "surface":
        with torch.no_grad():
            carve = render_splats(gaussians, carve_views, backend=splat_backend)
        alpha, depth = carve.alpha[..., 0], carve.depth[..., 0]
    grid = fill_interior(grid, config.level, carve_views, alpha, depth, surface=config.fill_from != "render")
    lap("fill interior")
    vertices, faces = extract_isosurface(grid, config.level)
    lap("marching cubes")
    show("marching cubes", vertices, faces)
    vertices, faces = clean_mesh(vertices, faces)
    lap("clean")
    show("clean", vertices, faces)
    vertices, faces = decimate(vertices, faces, config.target_faces)
    lap("decimate")
    show("decimate", vertices, faces)
    uv_mesh = unwrap(vertices, faces, resolution=config.bake.texture_size)
    lap("uv atlas")
    normals = vertex_normals(uv_mesh.vertices, uv_mesh.faces)
    device = gaussians.device
    v = torch.as_tensor(np.asarray(uv_mesh.vertices), dtype=torch.float32, device=device)
    f = torch.as_tensor(np.asarray(uv_mesh.faces), dtype=torch.int64, device=device)
    uv = torch.as_tensor(np.asarray(uv_mesh.uvs), dtype=torch.float32, device=device)
    n = torch.as_tensor(np.asarray(normals), dtype=torch.float32, device=device)
    cameras = _centred(bake_cameras(config.bake_radius, size=config.bake.render_size), v.mean(0).cpu())
    baked = bake_texture(gaussians, v, f, uv, n, cameras, config.bake, splat_backend=splat_backend, check=check)
    lap("bake")
    coverage = (baked.coverage.sum() / baked.chart_mask.sum().clamp_min(1)).item()
    return ExtractedMesh(TexturedMesh(v, f, uv, baked.texture, n), coverage, timings)


def _centred(cameras: Cameras, centre: torch.Tensor) -> Cameras:
    """The same orbit around `centre` [3] instead of the origin (world point p is seen as p − centre)."""
    shift = torch.eye(4)
    shift[:3, 3] = -centre
    return Cameras(cameras.viewmats @ shift, cameras.Ks, cameras.width, cameras.height)
