"""Smoke test of `python -m blender_addon.bench` at tiny sizes: the timings are real numbers and
the arrays import agrees with Blender's glTF import of the backend's GLB (faces, texture pixels,
per-loop UVs), which pins the texture row order end to end."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from blender_addon import bench  # noqa: E402  (needs bpy)


def test_test_mesh_is_closed_and_well_formed():
    mesh = bench.make_mesh(2000, texture_side=16)
    assert 1800 <= len(mesh.faces) <= 2200
    assert mesh.faces.max() < len(mesh.vertices)
    f = mesh.faces
    assert not ((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])).any()
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1, atol=1e-5)
    assert mesh.texture.shape == (16, 16, 3) and mesh.uvs.shape == (len(mesh.vertices), 2)


def test_import_bench_rows(empty_scene):
    row = bench.bench_import(2000, texture_side=32, repeats=1)
    assert row["arrays_s"] > 0 and row["gltf_s"] > 0
    assert row["arrays_decoded_s"] >= row["arrays_s"] and row["gltf_decoded_s"] >= row["gltf_s"]
    assert row["arrays_faces"] == row["gltf_faces"] == row["faces"]
    assert row["same_pixels"] and row["same_uvs"]
    table = bench.import_table(row)
    assert "| `build_mesh_object` from arrays (TGA packed) |" in table and "| speed-up |" in table


def test_preview_bench_rows(empty_scene):
    row = bench.bench_preview(1000, calls=3)
    assert row["first_ms"] > 0 and row["update_ms"] > 0 and row["evaluated_ms"] >= row["update_ms"]
    assert row["points"] == 1000
    assert len(bpy.data.objects) == 0  # the bench cleans up its preview
    assert "| `update_preview` |" in bench.preview_table(row)


def test_main_prints_the_tables_and_succeeds(empty_scene, capsys):
    argv = ["--faces", "500", "--texture", "16", "--splats", "200", "--repeats", "1", "--calls", "2"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "Blender 5." in out or "Blender 4." in out
    assert "usable CPU cores" in out
    assert "Same faces: yes; same texture pixels: yes; same per-loop UVs: yes." in out
    assert "Evaluated points: 200." in out
