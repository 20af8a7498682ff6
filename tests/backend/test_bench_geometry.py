"""Smoke tests of the geometry benchmarks at toy sizes (real figures: `./lift3d bench reconstruct`,
`./lift3d bench mesh-stage`)."""

import json
import math

import numpy as np
from PIL import Image

from backend.bench import reconstruct
from backend.bench.mesh_stage import run_mesh_stage_benchmark
from backend.bench.objects import build_objects
from backend.geometry.bake import BakeConfig
from backend.geometry.extract import MeshStageConfig
from backend.geometry.optimize import FitConfig

SMALL_MESH = MeshStageConfig(grid_resolution=40, carve_render_size=48, target_faces=1500,
                             bake=BakeConfig(texture_size=64, render_size=64))


def test_objects_are_deterministic_and_textured():
    a, b = build_objects(texture_size=32), build_objects(texture_size=32)
    assert list(a) == ["globe", "torus", "checker", "cup", "bowl", "chair"]
    for name in a:
        assert a[name].texture.shape == (32, 32, 3)
        assert (a[name].vertices.norm(dim=-1).max() - 0.5).abs() < 1e-4
        assert np.array_equal(a[name].texture.numpy(), b[name].texture.numpy())
    assert a["checker"].texture.std() > 0.2  # two contrasting colours


def test_reconstruction_of_one_object_reports_every_metric(tmp_path):
    truth = build_objects(texture_size=64, names=["globe"])["globe"]
    result, panels = reconstruct.reconstruct_object("globe", truth, size=48, fit=FitConfig(steps=30),
                                                    mesh_config=SMALL_MESH, initial_gaussians=800, log=lambda *_: None)
    assert result.name == "globe" and result.mesh_faces > 100
    for value in (result.train_psnr, result.gaussian_psnr, result.mesh_psnr, result.chamfer):
        assert math.isfinite(value)
    assert result.gaussian_iou > 0.7 and result.mesh_iou > 0.7  # even 30 steps find the silhouette
    assert 0 <= result.fscore <= 1
    sheet = reconstruct.save_contact_sheet([panels], tmp_path / "sheet.png")
    assert Image.open(sheet).size == (3 * 48, 2 * 48)
    table = reconstruct.format_table([result])
    assert "globe" in table and "F@2%" in table
    assert any("globe" in line for line in reconstruct.verdicts([result], 1.0))
    json.dumps(result.__dict__)  # the report is JSON-serialisable


def test_mesh_stage_benchmark_times_every_step():
    timings, total, faces, coverage = run_mesh_stage_benchmark(3000, SMALL_MESH)
    assert list(timings) == ["density grid", "fill interior", "marching cubes", "clean", "decimate", "uv atlas",
                             "bake"]
    assert total >= sum(timings.values()) * 0.99 and faces > 500 and coverage > 0.9


def test_a_glb_comes_back_as_ground_truth(tmp_path):
    from backend.bench.objects import load_glb
    from backend.geometry.export import export_glb

    truth = build_objects(texture_size=32, names=["torus"])["torus"]
    texture = (truth.texture.numpy() * 255).round().astype(np.uint8)
    path = export_glb(tmp_path / "torus.glb", truth.vertices.numpy(), truth.faces.numpy(), truth.uvs.numpy(), texture)
    loaded = load_glb(path, texture_size=32)
    assert np.allclose(loaded.vertices.numpy(), truth.vertices.numpy(), atol=1e-5)  # back to Z-up, same size
    assert np.allclose(loaded.uvs.numpy(), truth.uvs.numpy(), atol=1e-6)
    assert np.abs(loaded.texture.numpy() - texture / 255.0).max() < 1e-6


def test_the_same_gaussians_can_be_meshed_with_each_fill_side_by_side():
    truth = build_objects(texture_size=64, names=["cup"])["cup"]
    result, _ = reconstruct.reconstruct_object("cup", truth, size=48, fit=FitConfig(steps=20), mesh_config=SMALL_MESH,
                                               initial_gaussians=600, log=lambda *_: None, other_fills=("surface",))
    other = result.other_fills["surface"]
    assert set(other) >= {"mesh_psnr", "mesh_iou", "visible_fscore", "precision", "parts_attached", "floor_error"}
    assert math.isfinite(other["mesh_psnr"]) and 0 <= other["mesh_iou"] <= 1 and other["floor_error"] >= 0
    table = reconstruct.format_fills_table([result], ["render", "surface"])
    assert [line.split()[1] for line in table.splitlines()[1:]] == ["render", "surface"]
