"""Cross-view semantic consistency: pixel pairs that see the same surface point, and the dense
CLIP feature loss over them (tiny OpenCLIP: same architecture, random weights)."""

from __future__ import annotations

import math

import pytest
import torch

from backend.geometry import cameras as cm
from backend.geometry import mesh_raster as mr
from backend.geometry.textured_mesh import TexturedMesh, render_mesh
from backend.models import records
from backend.models.registry import ModelRegistry, ModelSettings
from backend.stages.cross_view import Correspondences, cross_view_loss, surface_correspondences

SIZE = 96


def uv_sphere(rings: int = 24, segments: int = 48, radius: float = 0.5) -> tuple[torch.Tensor, ...]:
    """Latitude-longitude sphere (Z up) with per-vertex UVs (u = longitude, v = latitude)."""
    lat = torch.linspace(-math.pi / 2, math.pi / 2, rings + 1)
    lon = torch.linspace(0, 2 * math.pi, segments + 1)
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    vertices = torch.stack([la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()], -1).reshape(-1, 3) * radius
    uvs = torch.stack([lo / (2 * math.pi), la / math.pi + 0.5], -1).reshape(-1, 2)
    faces = []
    for r in range(rings):
        for s in range(segments):
            a, b = r * (segments + 1) + s, (r + 1) * (segments + 1) + s
            faces += [[a, a + 1, b], [a + 1, b + 1, b]]
    return vertices.float(), torch.tensor(faces), uvs.float()


def views(*azimuths: float) -> cm.Cameras:
    return cm.orbit_cameras([15.0] * len(azimuths), list(azimuths), 2.0, width=SIZE, height=SIZE)


@pytest.fixture(scope="module")
def clip():
    return ModelRegistry(ModelSettings(preset="tiny", device="cpu")).get(records.CLIP)


def test_pairs_are_the_same_surface_point_seen_from_both_views():
    vertices, faces, _ = uv_sphere()
    cams = views(0.0, 50.0)
    pairs = surface_correspondences(vertices, faces, cams, stride=2, backend="torch")
    assert len(pairs) > 300
    # Look the second pixel up in the second view's own rasterisation: the same 3D point.
    frags = mr.rasterize(vertices, faces, cams.viewmats, cams.Ks, SIZE, SIZE, backend="torch")
    positions = mr.interpolate(vertices, frags, faces)  # [2, H, W, 3]
    at_first = positions[0, pairs.first[:, 1].long(), pairs.first[:, 0].long()]
    at_second = positions[1, pairs.second[:, 1].long().clamp(0, SIZE - 1), pairs.second[:, 0].long().clamp(0, SIZE - 1)]
    distance = (at_first - at_second).norm(dim=-1)
    assert distance.median() < 0.01 and (distance < 0.03).float().mean() > 0.95  # within about a pixel (0.012)


def test_points_the_second_view_cannot_see_make_no_pairs():
    vertices, faces, _ = uv_sphere()
    near = surface_correspondences(vertices, faces, views(0.0, 30.0), stride=2, backend="torch")
    opposite = surface_correspondences(vertices, faces, views(0.0, 180.0), stride=2, backend="torch")
    assert len(opposite) < 0.1 * len(near)  # only the rim both views graze
    with pytest.raises(ValueError, match="exactly two cameras"):
        surface_correspondences(vertices, faces, views(0.0, 30.0, 60.0))


def test_identical_views_give_zero_and_a_patch_in_one_view_raises_the_loss_monotonically(clip):
    """The views agree (the same pose, the same texture): no loss. Paint a patch over the pairs'
    region in one view only, at growing strength: the loss grows with it."""
    vertices, faces, uvs = uv_sphere()
    texture = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    mesh = TexturedMesh(vertices, faces, uvs, texture)
    cams = views(20.0, 20.0)
    render = render_mesh(mesh, cams, backgrounds=torch.ones(3), backend="torch").rgb.permute(0, 3, 1, 2)
    pairs = surface_correspondences(vertices, faces, cams, stride=2, backend="torch")
    losses = []
    for strength in (0.0, 0.25, 0.5, 0.75, 1.0):
        images = render.clone()
        patch = images[1, :, 30:66, 20:56]
        images[1, :, 30:66, 20:56] = (1 - strength) * patch + strength * torch.tensor([0.9, 0.1, 0.1])[:, None, None]
        losses.append(cross_view_loss(clip.dense_features(images), pairs, SIZE, SIZE).item())
    assert losses[0] == pytest.approx(0.0, abs=1e-5)
    assert all(b > a for a, b in zip(losses, losses[1:])), losses


def test_the_gradient_reaches_the_texture(clip):
    vertices, faces, uvs = uv_sphere()
    texture = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    cams = views(0.0, 40.0)
    render = render_mesh(TexturedMesh(vertices, faces, uvs, texture), cams, backgrounds=torch.ones(3),
                         backend="torch").rgb.permute(0, 3, 1, 2)
    pairs = surface_correspondences(vertices, faces, cams, stride=2, backend="torch")
    loss = cross_view_loss(clip.dense_features(render), pairs, SIZE, SIZE)
    loss.backward()
    assert loss.item() > 0 and texture.grad is not None
    touched = texture.grad.abs().sum(-1) > 0
    assert 0.05 < touched.float().mean() < 0.95  # the texels the two views show, not the whole atlas


def test_no_pairs_is_zero_and_bad_features_are_refused():
    features = torch.rand(2, 8, 4, 4, requires_grad=True)
    empty = Correspondences(torch.zeros(0, 2), torch.zeros(0, 2))
    loss = cross_view_loss(features, empty, 32, 32)
    loss.backward()
    assert loss.item() == 0.0
    with pytest.raises(ValueError, match=r"\[2, D, h, w\]"):
        cross_view_loss(torch.rand(3, 8, 4, 4), empty, 32, 32)


def test_dense_features_are_unit_patch_maps(clip):
    features = clip.dense_features(torch.rand(2, 3, 64, 64))
    grid = clip.model.visual.grid_size
    assert features.shape == (2, clip.model.visual.output_dim, *grid)
    assert torch.allclose(features.norm(dim=1), torch.ones(2, *grid), atol=1e-5)


def test_stage_two_adds_the_cross_view_term_when_its_weight_is_set(clip):
    """refine_texture with a guidance that asks for nothing new (targets = the renders): the term is
    logged every step only with a weight, and `high` is the preset that sets one."""
    from dataclasses import replace

    from backend.stages.config import QUALITY_CONFIGS, GeometryConfig, TextureConfig
    from backend.stages.geometry import ReferenceTargets
    from backend.stages.texture import refine_texture

    class Unchanged:
        def targets(self, renders, poses, step_ratio, generator):
            return renders

        def semantic_loss(self, renders):
            return None

        def dense_features(self, renders):
            return clip.dense_features(renders)

    vertices, faces, uvs = uv_sphere()
    mesh = TexturedMesh(vertices, faces, uvs, torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(2)))
    reference = ReferenceTargets(torch.ones(3, 64, 64), torch.zeros(64, 64), torch.zeros(64, 64))
    base = TextureConfig(steps=3, render_size=64, supersample=1, reference_weight=0.0, clip_weight=0.0)
    off = refine_texture(mesh, reference, Unchanged(), base, GeometryConfig(), mesh_backend="torch")
    on = refine_texture(mesh, reference, Unchanged(), replace(base, cross_view_weight=1.0), GeometryConfig(),
                        mesh_backend="torch")
    assert "cross_view" not in off.losses
    assert len(on.losses["cross_view"]) == 3 and all(v > 0 for v in on.losses["cross_view"])
    assert not torch.equal(on.texture, off.texture)  # the term moved the texture
    assert QUALITY_CONFIGS["high"].texture.cross_view_weight > 0
    assert QUALITY_CONFIGS["standard"].texture.cross_view_weight == QUALITY_CONFIGS["draft"].texture.cross_view_weight == 0
