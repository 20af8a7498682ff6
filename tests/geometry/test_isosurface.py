import math

import numpy as np
import pytest
import torch

from backend.geometry import cameras as cm
from backend.geometry import gaussians as gs
from backend.geometry.bake import bake_cameras
from backend.geometry.isosurface import DensityGrid, carve, density_grid, extract_isosurface, fill_interior
from backend.geometry.splat import render_splats


def _identity(n):
    q = torch.zeros(n, 4)
    q[:, 0] = 1
    return q


def test_single_gaussian_gives_the_analytic_sphere():
    scale, opacity, level = 0.2, 0.9, 0.3
    grid = density_grid(torch.zeros(1, 3), _identity(1), torch.full((1, 3), scale), torch.tensor([opacity]),
                        resolution=64)
    vertices, faces = extract_isosurface(grid, level)
    expected = scale * math.sqrt(2 * math.log(opacity / level))  # o·exp(−r²/2s²) = level
    radii = np.linalg.norm(vertices, axis=1)
    voxel = float(grid.spacing[0])
    assert abs(radii.mean() - expected) < 0.25 * voxel
    assert radii.std() < 0.25 * voxel


def test_block_wise_grid_equals_brute_force():
    torch.manual_seed(0)
    n = 40
    means = torch.rand(n, 3) - 0.5
    quats = torch.randn(n, 4)
    scales = torch.rand(n, 3) * 0.08 + 0.02
    opac = torch.rand(n)
    grid = density_grid(means, quats, scales, opac, resolution=20, block=8, sigma_cutoff=10.0)
    axes = [torch.linspace(float(grid.lo[i]), float(grid.hi[i]), 20) for i in range(3)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    from backend.geometry.splat.projection import covariances

    precision = torch.linalg.inv(covariances(quats, scales))
    d = points[:, None] - means[None]
    brute = (opac * torch.exp(-0.5 * torch.einsum("pni,nij,pnj->pn", d, precision, d))).sum(-1)
    assert torch.allclose(grid.values.reshape(-1), brute, atol=1e-5)


def test_far_gaussians_do_not_touch_other_blocks():
    means = torch.tensor([[-0.8, -0.8, -0.8], [0.8, 0.8, 0.8]])
    grid = density_grid(means, _identity(2), torch.full((2, 3), 0.02), torch.ones(2), resolution=32,
                        bounds=(torch.full((3,), -1.0), torch.full((3,), 1.0)), block=8)
    assert grid.values[12:20, 12:20, 12:20].abs().max() == 0  # the centre is beyond 3σ of both
    assert grid.values.max() > 0.5


def test_a_hollow_shell_of_gaussians_becomes_one_outward_surface():
    torch.manual_seed(1)
    points = torch.nn.functional.normalize(torch.randn(3000, 3), dim=-1) * 0.5
    shell = gs.from_points(points, torch.full((3000, 3), 0.5), scales=torch.full((3000,), 0.04), opacity=0.99)
    grid = density_grid(shell.means.detach(), shell.quats.detach(), shell.scales.detach(),
                        shell.opacities.detach(), resolution=48)
    hollow_vertices, _ = extract_isosurface(grid, 0.5)
    assert np.linalg.norm(hollow_vertices, axis=1).min() < 0.48  # marching cubes alone finds inner walls
    views = bake_cameras(2.0, size=64)
    with torch.no_grad():
        renders = render_splats(shell, views, backend="torch")
    solid = fill_interior(grid, 0.5, views, renders.alpha[..., 0], renders.depth[..., 0])
    vertices, faces = extract_isosurface(solid, 0.5)
    assert np.linalg.norm(vertices, axis=1).min() > 0.48  # only the outer wall is left
    a, b, c = (vertices[faces[:, i]].astype(np.float64) for i in range(3))
    assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() > 0  # outward winding (positive volume)


def test_visual_hull_carving_of_a_sphere():
    views = cm.orbit_cameras([0.0, 0.0, 0.0, 60.0, -60.0], [0.0, 90.0, 180.0, 45.0, 225.0], 2.0,
                             width=64, height=64)
    ball = gs.from_points(torch.zeros(1, 3), torch.ones(1, 3), scales=torch.tensor([0.15]), opacity=0.99)
    with torch.no_grad():
        masks = render_splats(ball, views, backend="torch").alpha[..., 0]
    points = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.05, 0.0], [0.6, 0.0, 0.0], [0.0, 0.0, 0.7]])
    assert carve(points, views, masks).tolist() == [True, True, False, False]


def test_a_level_outside_the_data_says_what_to_do():
    grid = DensityGrid(torch.rand(8, 8, 8) * 0.4, torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="lower the level"):
        extract_isosurface(grid, 0.9)
    with pytest.raises(ValueError, match="non-empty"):
        density_grid(torch.zeros(0, 3), _identity(0), torch.zeros(0, 3), torch.zeros(0))
