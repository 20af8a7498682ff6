import math

import numpy as np
import pytest
import torch

from backend.geometry.isosurface import DensityGrid, density_grid, extract_isosurface, solidify


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


def test_a_shell_of_gaussians_becomes_one_outward_surface():
    torch.manual_seed(1)
    points = torch.nn.functional.normalize(torch.randn(3000, 3), dim=-1) * 0.5
    grid = density_grid(points, _identity(3000), torch.full((3000, 3), 0.03), torch.full((3000,), 0.8),
                        resolution=48)
    solid = solidify(grid, 0.5)
    vertices, faces = extract_isosurface(solid, 0.5)
    radii = np.linalg.norm(vertices, axis=1)
    assert radii.min() > 0.5  # only the outer wall: the inside is filled, no inner surface
    a, b, c = (vertices[faces[:, i]].astype(np.float64) for i in range(3))
    assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() > 0  # outward winding (positive volume)
    hollow_vertices, _ = extract_isosurface(grid, 0.5)
    assert np.linalg.norm(hollow_vertices, axis=1).min() < 0.5  # without the fill there is an inner wall


def test_a_level_outside_the_data_says_what_to_do():
    grid = DensityGrid(torch.rand(8, 8, 8) * 0.4, torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="lower the level"):
        extract_isosurface(grid, 0.9)
    with pytest.raises(ValueError, match="non-empty"):
        density_grid(torch.zeros(0, 3), _identity(0), torch.zeros(0, 3), torch.zeros(0))
