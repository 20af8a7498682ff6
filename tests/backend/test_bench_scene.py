"""The scene-oracle benchmark at toy size: its scenes, its oracles, a GLB scene brought in, and a
whole run writing results.json and the contact sheet."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from backend.bench import scene_oracle
from backend.bench.scene_oracles import ConstantInpainter, DistortedDepth, TruthInpainter, true_depth, true_render
from backend.bench.scenes import build_scene, is_room, load_scene_glb, scene_eye
from backend.geometry.export import export_glb
from backend.scene import trajectory as tr


@pytest.fixture(scope="module")
def room():
    return build_scene("room", texture_size=256)


def test_the_scenes_enclose_the_eye_and_are_deterministic(room):
    again = build_scene("room", texture_size=256)
    assert torch.equal(room.vertices, again.vertices) and torch.equal(room.texture, again.texture)
    assert is_room(room)
    assert np.allclose(scene_eye(room), [0.0, 0.0, 1.6], atol=0.03)
    camera = tr.preset("orbit", 12, eye=tuple(scene_eye(room))).cameras(64, [0])
    depth = true_depth(room, camera)
    assert (depth > 0).all() and 2.0 < float(depth.median()) < 3.5  # the far wall, 2.5 m ahead
    image = true_render(room, camera)
    assert image.std() > 0.05  # patterned, not flat


def test_a_scene_open_behind_the_eye_is_not_a_room(room):
    from backend.geometry.textured_mesh import TexturedMesh

    front = room.vertices[room.faces].mean(1)[:, 1] > 2.4  # only the far wall ahead
    faces = room.faces[front]
    assert not is_room(TexturedMesh(room.vertices, faces, room.uvs, room.texture, room.normals))


def test_the_oracles_fill_only_the_mask_and_distort_depth_affinely(room):
    camera = tr.preset("orbit", 12, eye=tuple(scene_eye(room))).cameras(64, [3])
    truth = true_render(room, camera)
    given = torch.zeros_like(truth)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[:, :20] = True
    filled = TruthInpainter(room).inpaint(given, mask, "", camera, torch.Generator())
    assert torch.equal(filled[mask], truth[mask]) and (filled[~mask] == 0).all()
    grey = ConstantInpainter(room).inpaint(given, mask, "", camera, torch.Generator())
    assert (grey[mask] == 0.5).all() and (grey[~mask] == 0).all()
    oracle = DistortedDepth(room, seed=3)
    disparity = oracle.estimate(truth, camera)
    scale, shift = oracle.draws[0]
    expected = scale / true_depth(room, camera) + shift
    assert 0.5 <= scale <= 2.0 and torch.allclose(disparity, expected, rtol=0.05)
    assert not torch.allclose(disparity, expected, rtol=1e-4)  # the noise is there


def test_a_glb_scene_comes_in_upright_and_unscaled(room, tmp_path):
    path = export_glb(tmp_path / "room.glb", room.vertices.numpy(), room.faces.numpy(), room.uvs.numpy(),
                      (room.texture.numpy() * 255).astype(np.uint8))
    loaded = load_scene_glb(path, texture_size=256)
    assert torch.allclose(loaded.vertices.min(0).values, room.vertices.min(0).values, atol=1e-4)
    assert torch.allclose(loaded.vertices.max(0).values, room.vertices.max(0).values, atol=1e-4)
    assert is_room(loaded)


def test_a_toy_run_writes_results_and_a_contact_sheet(tmp_path):
    parser = argparse.ArgumentParser()
    scene_oracle.add_arguments(parser)
    args = parser.parse_args(["--scenes", "room", "--frames", "3", "--size", "64", "--steps", "5",
                              "--out", str(tmp_path)])
    assert scene_oracle.main(args) == 0
    (result,) = json.loads((tmp_path / "results.json").read_text())
    assert result["scene"] == "room" and result["keyframes"] == 3 and len(result["per_keyframe"]) == 3
    for key in ("heldout_psnr", "first_view_psnr_drop", "scale_error", "chamfer", "fscore", "precision",
                "recall", "mask_on_seen", "seconds"):
        assert isinstance(result[key], float), key
    assert 0 < result["fscore"] <= 1 and result["heldout_psnr"] > 10
    assert (tmp_path / "contact_sheet.png").is_file() and (tmp_path / "room.glb").is_file()
