import math

import torch

from backend.geometry import cameras as cm
from backend.geometry import gaussians as gs
from backend.geometry.bake import BakeConfig, fill_from_nearest
from backend.geometry.extract import MeshStageConfig, extract_textured_mesh
from backend.geometry.splat import render_splats
from backend.geometry.textured_mesh import render_mesh


def test_fill_from_nearest_copies_the_closest_filled_texel():
    texture = torch.zeros(4, 6, 3)
    filled = torch.zeros(4, 6, dtype=torch.bool)
    texture[0, 0] = torch.tensor([1.0, 0, 0])
    texture[3, 5] = torch.tensor([0, 0, 1.0])
    filled[0, 0] = filled[3, 5] = True
    out = fill_from_nearest(texture, filled)
    assert out[0, 1].tolist() == [1.0, 0, 0] and out[3, 4].tolist() == [0, 0, 1.0]
    assert out[0, 0].tolist() == [1.0, 0, 0]  # filled texels are kept


def _coloured_ball(count=6000):
    torch.manual_seed(0)
    points = torch.nn.functional.normalize(torch.randn(count, 3), dim=-1) * 0.45
    colours = (points / 0.9 + 0.5).clamp(0, 1)  # smooth colour field: red along +x, green +y, blue +z
    return gs.from_points(points, colours, opacity=0.95)


def test_baked_mesh_looks_like_the_gaussians():
    gaussians = _coloured_ball()
    config = MeshStageConfig(grid_resolution=64, target_faces=4000,
                             bake=BakeConfig(texture_size=256, render_size=192))
    extracted = extract_textured_mesh(gaussians, config, splat_backend="torch")
    assert extracted.coverage > 0.95  # the rest sits at grazing angles and is filled from neighbours
    assert list(extracted.timings) == ["density grid", "fill interior", "marching cubes", "clean", "decimate",
                                       "uv atlas", "bake"]
    mesh = extracted.mesh
    assert 3000 <= len(mesh.faces) <= 4200 and mesh.texture.shape == (256, 256, 3)
    assert abs(mesh.vertices.norm(dim=-1).mean().item() - 0.47) < 0.03

    views = cm.orbit_cameras([25.0, -40.0], [70.0, 200.0], 2.0, width=96, height=96)
    splats = render_splats(gaussians, views, backgrounds=torch.ones(3), backend="torch")
    baked = render_mesh(mesh, views, backgrounds=torch.ones(3))
    both = (splats.alpha[..., 0] > 0.99) & (baked.alpha[..., 0] > 0)  # compare colours on the surface
    mse = (splats.rgb[both] - baked.rgb[both]).square().mean().item()
    assert 10 * math.log10(1 / mse) > 28
