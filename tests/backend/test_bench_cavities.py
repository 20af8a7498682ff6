"""The cavity and thin-part benchmark objects, and the metrics that judge them: watertight parts
in the expected numbers, a visible-surface sampler that counts an enclosed inside as unseen, part
attachment and the inner-floor probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from backend.bench import reconstruct
from backend.bench.objects import bowl_mesh, build_objects, chair_mesh, cup_mesh
from backend.geometry.textured_mesh import TexturedMesh


@pytest.mark.parametrize("build, parts", [(cup_mesh, 2), (bowl_mesh, 1), (chair_mesh, 6)])
def test_each_new_object_is_made_of_watertight_parts(build, parts):
    mesh = build()
    pieces = mesh.split(only_watertight=False)
    assert len(pieces) == parts and all(p.is_watertight and p.volume > 0 for p in pieces)


def test_the_cup_is_open_at_the_top_and_its_handle_sinks_into_the_wall():
    body, handle = sorted(cup_mesh().split(only_watertight=False), key=lambda p: -p.area)
    top = body.bounds[1, 2]
    # A ray down the axis enters through the opening and stops on the floor, not at the rim.
    assert reconstruct.top_hit(body, 0.0, 0.0, default=top) < top * 0.2
    radial = np.linalg.norm(handle.vertices[:, :2], axis=1)
    assert radial.min() > 0.28 - 1e-6  # the ends stay inside the wall, never inside the cup


def as_textured(mesh: trimesh.Trimesh) -> TexturedMesh:
    v = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
    return TexturedMesh(v, torch.as_tensor(np.asarray(mesh.faces)), torch.zeros(len(v), 2), torch.zeros(2, 2, 3))


def test_the_visible_surface_sampler_counts_an_enclosed_inside_as_unseen():
    outer = trimesh.creation.icosphere(subdivisions=3, radius=0.45)
    inner = trimesh.creation.icosphere(subdivisions=3, radius=0.2)  # a ball inside a ball: never seen
    both = as_textured(trimesh.util.concatenate([outer, inner]))
    cameras = reconstruct.training_cameras(96)
    outside = trimesh.sample.sample_surface(outer, 2000, seed=0)[0]
    enclosed = trimesh.sample.sample_surface(inner, 2000, seed=1)[0]
    assert not reconstruct.visible_from(enclosed, both, cameras).any()
    seen = reconstruct.visible_from(outside, both, cameras)
    assert 0.5 < seen.mean() < 1.0  # the front and sides, not the poles the training views miss


def test_part_attachment_and_the_floor_probe_tell_a_broken_mesh_from_a_whole_one():
    truth = build_objects(texture_size=32, names=["cup"])["cup"]
    # The truth itself is two separate parts: the handle is covered but not in the body's component.
    attached, parts = reconstruct.part_attachment(truth, truth)
    assert attached is False and len(parts) == 2 and all(p["covered"] > 0.99 for p in parts.values())
    # Its voxelised surface (what marching cubes makes of it) is one piece: attached.
    voxels = reconstruct._trimesh(truth).voxelized(pitch=0.01).fill()
    solid = voxels.marching_cubes
    solid.apply_transform(voxels.transform)  # from voxel indices to the world
    attached, parts = reconstruct.part_attachment(as_textured(solid), truth)
    assert attached is True, parts
    assert reconstruct.floor_error(truth, truth) == pytest.approx(0.0, abs=1e-6)
    # Without the handle's part of the surface, the handle is not covered: not attached.
    body = max(reconstruct._trimesh(truth, welded=True).split(only_watertight=False), key=lambda p: p.area)
    assert reconstruct.part_attachment(as_textured(body), truth)[0] is False
    # A lid on the cup: the ray stops at the rim, far from the floor.
    top = float(truth.vertices[:, 2].max())
    lid = trimesh.creation.cylinder(radius=0.3, height=0.01, transform=trimesh.transformations.translation_matrix(
        (float(body.bounds[:, 0].mean()), float(body.bounds[:, 1].mean()), top)))
    closed = as_textured(trimesh.util.concatenate([body, lid]))
    assert reconstruct.floor_error(closed, truth) > 0.5


def test_the_oracle_depth_is_the_true_inverse_depth_of_the_training_views():
    truth = build_objects(texture_size=32, names=["bowl"])["bowl"]
    cameras = reconstruct.training_cameras(32)
    inverse = reconstruct.true_inverse_depth(truth, cameras)
    assert inverse.shape == (7, 32, 32) and (inverse >= 0).all()
    seen = inverse > 0
    # The camera orbits at radius 2 around an object inside a ball of radius 0.5.
    assert ((1 / inverse[seen]) > 1.4).all() and ((1 / inverse[seen]) < 2.6).all()
