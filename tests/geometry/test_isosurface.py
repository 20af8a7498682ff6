import math

import numpy as np
import pytest
import torch
import trimesh

from backend.geometry import cameras as cm
from backend.geometry import gaussians as gs
from backend.geometry import isosurface
from backend.geometry.bake import bake_cameras
from backend.geometry.isosurface import DensityGrid, carve, density_grid, extract_isosurface, fill_interior
from backend.geometry.mesh_cleanup import clean_mesh, signed_volume
from backend.geometry.splat import render_splats
from backend.geometry.splat.projection import covariances


def _identity(n):
    q = torch.zeros(n, 4)
    q[:, 0] = 1
    return q


def _random_gaussians(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) - 0.5, torch.randn(n, 4, generator=g),
            torch.rand(n, 3, generator=g) * 0.08 + 0.02, torch.rand(n, generator=g))


def _brute_force(grid, means, quats, scales, opacities, cutoff=math.inf):
    """Σ oᵢ·exp(−½ dᵀΣᵢ⁻¹d) over every cell and every Gaussian, in float64."""
    res = grid.values.shape[0]
    axes = [torch.linspace(float(grid.lo[i]), float(grid.hi[i]), res, dtype=torch.float64) for i in range(3)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    precision = torch.linalg.inv(covariances(quats, scales).double())
    d = points[:, None] - means.double()[None]
    m2 = torch.einsum("pni,nij,pnj->pn", d, precision, d)
    weight = torch.where(m2 <= cutoff**2, torch.exp(-0.5 * m2), torch.zeros_like(m2))
    return (weight * opacities.double()).sum(-1).reshape(res, res, res)


def _face_normals(vertices, faces):
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return np.cross(b - a, c - a)


def _shell(n, radius=0.5, seed=1):
    """Surfel-like Gaussians spread over a sphere: the shape of a stage-1 result."""
    g = torch.Generator().manual_seed(seed)
    points = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * radius
    spacing = math.sqrt(4 * math.pi * radius**2 / n)
    scales = torch.tensor([1.5, 1.5, 0.5]) * spacing * (0.8 + 0.4 * torch.rand(n, 3, generator=g))
    return points, torch.randn(n, 4, generator=g), scales, 0.6 + 0.4 * torch.rand(n, generator=g)


@pytest.mark.parametrize("scale,opacity,level,centre", [(0.2, 0.9, 0.3, (0.0, 0.0, 0.0)),
                                                        (0.15, 1.0, 0.6, (0.3, -0.2, 0.1))])
def test_single_gaussian_gives_the_analytic_sphere(scale, opacity, level, centre):
    grid = density_grid(torch.tensor([centre]), _identity(1), torch.full((1, 3), scale),
                        torch.tensor([opacity]), resolution=64)
    vertices, faces = extract_isosurface(grid, level)
    expected = scale * math.sqrt(2 * math.log(opacity / level))  # o·exp(−r²/2s²) = level
    radii = np.linalg.norm(vertices - np.array(centre), axis=1)
    voxel = float(grid.spacing[0])
    assert abs(radii.mean() - expected) < 0.02 * voxel
    assert radii.std() < 0.02 * voxel
    assert signed_volume(vertices, faces) == pytest.approx(4 / 3 * math.pi * expected**3, rel=0.01)


def test_world_mapping_with_a_different_spacing_per_axis():
    # An ellipsoid off the origin in a box of unequal sides: vertex i maps to lo + i·spacing per axis.
    centre = torch.tensor([[0.4, -1.0, 2.0]])
    scales = torch.tensor([[0.2, 0.1, 0.3]])
    grid = density_grid(centre, _identity(1), scales, torch.ones(1), resolution=48,
                        bounds=(torch.tensor([-0.5, -1.5, 0.5]), torch.tensor([1.5, -0.5, 3.5])))
    assert len(set(grid.spacing.tolist())) == 3
    vertices, _ = extract_isosurface(grid, 0.5)
    radius = math.sqrt(2 * math.log(2.0))
    assert np.allclose((vertices.max(0) + vertices.min(0)) / 2, centre[0].numpy(), atol=1e-3)
    assert np.allclose((vertices.max(0) - vertices.min(0)) / 2, scales[0].numpy() * radius, rtol=0.02)


def test_block_wise_grid_equals_brute_force():
    means, quats, scales, opac = _random_gaussians(40, seed=0)
    grid = density_grid(means, quats, scales, opac, resolution=20, block=8, sigma_cutoff=10.0)
    assert torch.allclose(grid.values.double(), _brute_force(grid, means, quats, scales, opac), atol=1e-5)


@pytest.mark.parametrize("block", [3, 8, 32])
def test_the_truncated_field_does_not_depend_on_the_blocks(block):
    means, quats, scales, opac = _random_gaussians(60, seed=2)
    grid = density_grid(means, quats, scales, opac, resolution=24, block=block)
    truth = _brute_force(grid, means, quats, scales, opac, cutoff=3.0)
    assert torch.allclose(grid.values.double(), truth, atol=1e-5)


def test_memory_bounds_do_not_change_the_field(monkeypatch):
    means, quats, scales, opac = _random_gaussians(60, seed=4)
    reference = density_grid(means, quats, scales, opac, resolution=24).values
    # Tiny budgets: many slices of Gaussians, and one Gaussian at a time inside each block.
    monkeypatch.setattr(isosurface, "MAX_PAIRS", 7)
    monkeypatch.setattr(isosurface, "MAX_CHUNK_ELEMENTS", 1)
    bounded = density_grid(means, quats, scales, opac, resolution=24).values
    assert torch.allclose(bounded, reference, atol=1e-6)


def test_far_gaussians_do_not_touch_other_blocks():
    means = torch.tensor([[-0.8, -0.8, -0.8], [0.8, 0.8, 0.8], [5.0, 0.0, 0.0]])  # the last is off the grid
    grid = density_grid(means, _identity(3), torch.full((3, 3), 0.02), torch.ones(3), resolution=32,
                        bounds=(torch.full((3,), -1.0), torch.full((3,), 1.0)), block=8)
    assert grid.values[4:28, 4:28, 4:28].abs().max() == 0  # beyond 3σ of both Gaussians on the grid
    assert grid.values.max() > 0.5


def test_many_gaussians_on_a_sphere_give_a_closed_outward_surface():
    means, quats, scales, opac = _shell(3000)
    grid = density_grid(means, quats, scales, opac, resolution=64)
    vertices, faces = clean_mesh(*extract_isosurface(grid, 0.5))
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.euler_number == 2
    radii = np.linalg.norm(vertices, axis=1)
    assert radii.min() > 0.5 and radii.max() - radii.min() < 0.08  # the outer wall of the shell, round
    assert signed_volume(vertices, faces) > 0  # normals point out
    centroids = vertices[faces].mean(1)
    normals = _face_normals(vertices, faces)
    assert (np.einsum("ij,ij->i", normals, centroids) > 0).mean() > 0.95


def test_an_open_surface_still_faces_out_of_the_dense_region():
    # The blob is cut by the grid's bounds, so the surface is open and has no enclosed volume.
    grid = density_grid(torch.zeros(1, 3), _identity(1), torch.full((1, 3), 0.3), torch.ones(1),
                        resolution=32, bounds=(torch.tensor([0.05, -1.0, -1.0]), torch.ones(3)))
    vertices, faces = extract_isosurface(grid, 0.5)
    normals = _face_normals(vertices, faces)
    assert (np.einsum("ij,ij->i", normals, vertices[faces].mean(1)) > 0).all()


def _hollow_shell():
    """Gaussians on a sphere of radius 0.5 and their density grid (48³)."""
    torch.manual_seed(1)
    points = torch.nn.functional.normalize(torch.randn(3000, 3), dim=-1) * 0.5
    shell = gs.from_points(points, torch.full((3000, 3), 0.5), scales=torch.full((3000,), 0.04), opacity=0.99)
    return shell, density_grid(shell.means.detach(), shell.quats.detach(), shell.scales.detach(),
                               shell.opacities.detach(), resolution=48)


def test_a_hollow_shell_of_gaussians_becomes_one_outward_surface():
    shell, grid = _hollow_shell()
    hollow_vertices, _ = extract_isosurface(grid, 0.5)
    assert np.linalg.norm(hollow_vertices, axis=1).min() < 0.48  # marching cubes alone finds inner walls
    views = bake_cameras(2.0, size=64)
    with torch.no_grad():
        renders = render_splats(shell, views, backend="torch")
    for surface in (False, True):  # the renders alone, and with the density's own surface
        solid = fill_interior(grid, 0.5, views, renders.alpha[..., 0], renders.depth[..., 0], surface=surface)
        vertices, faces = extract_isosurface(solid, 0.5)
        assert np.linalg.norm(vertices, axis=1).min() > 0.48, surface  # only the outer wall is left
        assert signed_volume(vertices, faces) > 0


def test_the_surface_fill_also_makes_a_hollow_shell_solid():
    _, grid = _hollow_shell()
    vertices, faces = extract_isosurface(fill_interior(grid, 0.5, bake_cameras(2.0, size=64)), 0.5)
    assert np.linalg.norm(vertices, axis=1).min() > 0.48 and signed_volume(vertices, faces) > 0


def _hazy_bowl(shell_opacity: float):
    """A bowl (the lower half of a shell of Gaussians) with faint haze floating in its cavity
    (what a fit leaves where views disagree), and its density grid (48³)."""
    g = torch.Generator().manual_seed(2)
    points = torch.nn.functional.normalize(torch.randn(4000, 3, generator=g), dim=-1) * 0.5
    points = points[points[:, 2] < 0]
    # A faint layer across the opening, below the iso-level everywhere.
    haze = (torch.rand(300, 3, generator=g) - 0.5) * torch.tensor([0.7, 0.7, 0.04]) + torch.tensor([0, 0, -0.1])
    means = torch.cat([points, haze])
    opacity = torch.cat([torch.full((len(points),), shell_opacity), torch.full((len(haze),), 0.05)])
    bowl = gs.from_points(means, torch.full((len(means), 3), 0.5), scales=torch.full((len(means),), 0.04))
    with torch.no_grad():
        bowl.params["opacities"].copy_(torch.logit(opacity))
    return bowl, density_grid(bowl.means.detach(), bowl.quats.detach(), bowl.scales.detach(),
                              bowl.opacities.detach(), resolution=48)


def _first_hit_down_the_axis(vertices, faces):
    from backend.bench.reconstruct import top_hit

    return top_hit(trimesh.Trimesh(vertices, faces, process=False), 0.0, 0.0, default=-1.0)


def _floors_through_haze(shell_opacity: float) -> dict[str, float]:
    """The first surface down the bowl's axis with no fill and with each fill."""
    bowl, grid = _hazy_bowl(shell_opacity)
    assert float(grid.values.max()) > 1.0
    views = bake_cameras(2.0, size=128)  # the mesh stage's carve resolution
    with torch.no_grad():
        renders = render_splats(bowl, views, backend="torch")
    alpha, depth = renders.alpha[..., 0], renders.depth[..., 0]
    solids = {"no fill": grid, "surface": fill_interior(grid, 0.5, views),
              "both": fill_interior(grid, 0.5, views, alpha, depth),  # the mesh stage's default
              "render": fill_interior(grid, 0.5, views, alpha, depth, surface=False)}
    return {name: _first_hit_down_the_axis(*extract_isosurface(solid, 0.5)) for name, solid in solids.items()}


def test_the_default_fill_keeps_a_leaky_cavity_open_through_haze():
    # A leaky shell (seen from above the render stays under 0.95 alpha): the rendered depth is not
    # trusted there, so renders alone fill over the floor; the density's surface sees through the
    # haze below the iso-level down to the shell's inner floor, as marching cubes without a fill does.
    floors = _floors_through_haze(0.2)
    assert floors["no fill"] < -0.42
    assert abs(floors["surface"] - floors["no fill"]) < 0.01 and abs(floors["both"] - floors["no fill"]) < 0.01
    assert floors["render"] > floors["surface"] + 0.04


def test_over_an_opaque_floor_haze_pulls_the_default_fill_up_by_about_a_cell():
    # The known limit of taking the nearer surface: where the render is opaque, haze pulls its
    # expected depth toward the camera, and the fill follows it (here by one grid cell, 0.028).
    floors = _floors_through_haze(0.99)
    assert abs(floors["surface"] - floors["no fill"]) < 0.01
    assert 0.01 < floors["both"] - floors["no fill"] < 0.04 and floors["both"] <= floors["render"] + 1e-6


def test_both_fills_bound_each_view_by_the_nearer_surface_within_either_silhouette():
    ball = gs.from_points(torch.zeros(1, 3), torch.ones(1, 3), scales=torch.tensor([0.2]), opacity=0.99)
    grid = density_grid(ball.means.detach(), ball.quats.detach(), ball.scales.detach(), ball.opacities.detach(),
                        resolution=64)
    view = cm.orbit_cameras([0.0], [0.0], 2.0, width=33, height=33)
    surface = isosurface.surface_depth(grid, 0.5, view)[0]
    assert math.isfinite(surface[16, 16]) and math.isinf(surface[0, 0])
    # Renders made up pixel by pixel: (row, col) → (alpha, expected depth).
    alpha, depth = torch.zeros(1, 33, 33), torch.zeros(1, 33, 33)
    cases = {(16, 16): (1.0, 1.5),   # opaque, in front of the level's surface: the render bounds it
             (16, 17): (1.0, 1.95),  # opaque, behind it: the level's surface bounds it
             (17, 16): (0.7, 1.5),   # semi-transparent: its expected depth is not a surface
             (0, 0): (0.7, 1.5),     # in the render's silhouette only, nothing bounds the depth
             (0, 32): (0.3, 1.5)}    # in neither silhouette
    for (row, col), (a, d) in cases.items():
        alpha[0, row, col], depth[0, row, col] = a, d
    silhouette, bound = isosurface.carve_targets(grid, 0.5, view, alpha, depth)
    assert bound[0, 16, 16] == 1.5 and bound[0, 16, 17] == surface[16, 17] < 1.95
    assert bound[0, 17, 16] == surface[17, 16] and silhouette[0, 17, 16]
    assert silhouette[0, 0, 0] and bound[0, 0, 0] == 0
    assert not silhouette[0, 0, 32]
    # One source only: the renders' own rules, or the level's surface alone.
    silhouette, bound = isosurface.carve_targets(grid, 0.5, view, alpha, depth, surface=False)
    assert bound[0, 16, 17] == 1.95 and bound[0, 17, 16] == 0 and not silhouette[0, 16, 15]
    silhouette, bound = isosurface.carve_targets(grid, 0.5, view)
    assert bound[0, 16, 16] == surface[16, 16] and not silhouette[0, 0, 0]
    with pytest.raises(ValueError, match="needs renders"):
        isosurface.carve_targets(grid, 0.5, view, surface=False)


def test_surface_depth_is_where_the_density_reaches_the_level():
    ball = gs.from_points(torch.zeros(1, 3), torch.ones(1, 3), scales=torch.tensor([0.2]), opacity=0.99)
    grid = density_grid(ball.means.detach(), ball.quats.detach(), ball.scales.detach(), ball.opacities.detach(),
                        resolution=64)
    views = cm.orbit_cameras([0.0, 90.0], [0.0, 0.0], 2.0, width=33, height=33)
    depth = isosurface.surface_depth(grid, 0.5, views)
    # exp(−r²/(2·0.2²)) = 0.5/0.99 at r ≈ 0.233: the centre pixel meets it at 2 − 0.233.
    assert depth[:, 16, 16].sub(2 - 0.233).abs().max() < 0.02
    assert torch.isinf(depth[:, 0, 0]).all()  # the corners miss the ball
    # Marching only some rays gives those the same depth and leaves the rest unmarched (inf).
    only = torch.zeros(2, 33, 33, dtype=torch.bool)
    only[:, 14:19, 14:19] = True
    some = isosurface.surface_depth(grid, 0.5, views, march_only=only)
    assert torch.equal(some[only], depth[only]) and torch.isinf(some[~only]).all()


def test_visual_hull_carving_of_a_sphere():
    views = cm.orbit_cameras([0.0, 0.0, 0.0, 60.0, -60.0], [0.0, 90.0, 180.0, 45.0, 225.0], 2.0,
                             width=64, height=64)
    ball = gs.from_points(torch.zeros(1, 3), torch.ones(1, 3), scales=torch.tensor([0.15]), opacity=0.99)
    with torch.no_grad():
        masks = render_splats(ball, views, backend="torch").alpha[..., 0]
    points = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.05, 0.0], [0.6, 0.0, 0.0], [0.0, 0.0, 0.7]])
    assert carve(points, views, masks).tolist() == [True, True, False, False]


def test_a_level_outside_the_data_says_what_to_do():
    grid = DensityGrid(torch.rand(8, 8, 8) * 0.4 + 0.1, torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="lower the level"):
        extract_isosurface(grid, 0.9)
    with pytest.raises(ValueError, match="raise the level"):
        extract_isosurface(grid, 0.05)
    with pytest.raises(ValueError, match="empty"):
        extract_isosurface(DensityGrid(torch.zeros(8, 8, 8), torch.zeros(3), torch.ones(3)), 0.5)


def test_bad_gaussians_are_refused():
    means, quats, scales, opac = _random_gaussians(4, seed=3)
    with pytest.raises(ValueError, match="non-empty"):
        density_grid(torch.zeros(0, 3), _identity(0), torch.zeros(0, 3), torch.zeros(0))
    with pytest.raises(ValueError, match="quats"):
        density_grid(means, quats[:, :3], scales, opac)
    with pytest.raises(ValueError, match="activated"):
        density_grid(means, quats, torch.log(scales), opac)
    with pytest.raises(ValueError, match="hi > lo"):
        density_grid(means, quats, scales, opac, bounds=(torch.ones(3), torch.zeros(3)))


def test_an_unknown_interior_fill_is_refused_by_name():
    from backend.geometry.extract import MeshStageConfig, extract_textured_mesh

    shell, _ = _hollow_shell()
    with pytest.raises(ValueError, match="unknown fill_from 'sideways'"):
        extract_textured_mesh(shell, MeshStageConfig(grid_resolution=32, fill_from="sideways"), splat_backend="torch")
