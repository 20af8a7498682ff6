"""`python -m backend texture`: bad meshes exit non-zero with a clear message and write nothing; a
tiny run writes textured.glb, texture.png, views.png and report.json, and keeps a GLB's UVs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.__main__ import main

FAST = ["--models", "tiny", "--texture-size", "256", "--option", "views=4", "--option", "paint_steps=1"]


def write_ply(path, vertices, faces):
    """A binary PLY written directly (trimesh would clean NaNs or empty faces away on export)."""
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\nproperty float x\n"
              f"property float y\nproperty float z\nelement face {len(faces)}\nproperty list uchar int vertex_indices\n"
              "end_header\n").encode()
    face_records = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face_records["n"], face_records["i"] = 3, faces
    path.write_bytes(header + np.asarray(vertices, "<f4").tobytes() + face_records.tobytes())
    return path


def box():
    mesh = trimesh.creation.box()
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)


@pytest.mark.parametrize("case, words", [
    ("missing", "no such file"),
    ("unreadable", "not a mesh file"),
    ("no faces", "no mesh with faces"),
    ("nan", "have NaN or infinite coordinates"),
    ("too many faces", "texturing takes at most 2,000,000"),
])
def test_bad_meshes_exit_2_with_a_reason_and_write_nothing(tmp_path, capsys, case, words):
    vertices, faces = box()
    path = tmp_path / "mesh.ply"
    if case == "unreadable":
        path = tmp_path / "mesh.glb"
        path.write_bytes(b"glTF this is not a binary glTF")
    elif case == "no faces":
        write_ply(path, vertices, faces[:0])
    elif case == "nan":
        vertices[2] = np.nan
        write_ply(path, vertices, faces)
    elif case == "too many faces":
        write_ply(path, vertices, np.tile(faces, (2_000_001 // len(faces) + 1, 1))[:2_000_001])
    elif case == "missing":
        path = tmp_path / "nothing.glb"
    else:
        write_ply(path, vertices, faces)
    out = tmp_path / "out"
    assert main(["texture", str(path), "--prompt", "oak", "--out", str(out), *FAST]) == 2
    error = capsys.readouterr().err
    assert words in error and error.startswith("error: ")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")])


def test_a_tiny_run_writes_the_four_outputs_and_keeps_the_glbs_uvs(tmp_path, capsys):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    from backend.geometry.uv_atlas import unwrap

    atlas = unwrap(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64), resolution=256)
    textured = trimesh.Trimesh(atlas.vertices, atlas.faces, process=False,
                               visual=trimesh.visual.TextureVisuals(uv=atlas.uvs))
    source = tmp_path / "ball.glb"
    source.write_bytes(textured.export(file_type="glb"))
    out = tmp_path / "out"
    assert main(["texture", str(source), "--prompt", "a leather ball", "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "texture.png", "textured.glb", "views.png"]
    report = json.loads((out / "report.json").read_text())
    assert report["uvs_kept"] is True and report["uv_note"] == "kept the mesh's own UVs" and report["tiny"] is True
    assert report["faces"] == len(atlas.faces) and 0 < report["coverage"] <= 1 and report["views"] == 4
    assert Image.open(out / "texture.png").size == (256, 256)
    views = Image.open(out / "views.png")
    assert views.size[0] == 5 * 256 and views.getpixel((3, 3)) == (200, 30, 30)  # labelled: tiny noise
    back = trimesh.load(out / "textured.glb", force="mesh")
    assert len(back.faces) == len(atlas.faces)
    # The kept UVs come back on every corner. Not bit for bit here: glTF's UV origin is top-left,
    # and trimesh computes 1 − v when it reads and writes a GLB (the pipeline itself keeps them
    # exactly: tests/texturing/test_uv_layout.py).
    np.testing.assert_allclose(np.asarray(back.visual.uv, np.float32)[back.faces],
                               atlas.uvs[atlas.faces].astype(np.float32), rtol=0, atol=1e-7)
    assert "NOTICE: tiny preset" in capsys.readouterr().out
