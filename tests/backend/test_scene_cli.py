"""`./lift3d backend scene`: a tiny-model run writes every output, and bad input exits non-zero
before any model loads, writing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.geometry.gaussians import load_ply
from backend.scene import trajectory as tr

ROOT = Path(__file__).resolve().parents[2]


def scene_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "scene", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_a_tiny_run_writes_the_scene_the_mesh_the_path_and_a_report(tmp_path):
    out = tmp_path / "scene"
    result = scene_cli("--prompt", "a quiet library", "--models", "tiny", "--device", "cpu", "--frames", "2",
                       "--option", "replay_steps=2", "--option", "inpaint_steps=2", "--cache-dir",
                       str(tmp_path / "cache"), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["cameras.json", "keyframes.png", "report.json", "scene.glb",
                                                     "scene.ply"]
    report = json.loads((out / "report.json").read_text())
    assert report["tiny"] and report["keyframes"] == [0, 4] and report["size"] == 256
    gaussians = load_ply(out / "scene.ply")
    assert len(gaussians) == report["gaussians"] > 0
    cameras = json.loads((out / "cameras.json").read_text())
    assert cameras["keyframes"] == [0, 4] and len(cameras["matrix_world"]) == 5
    np.testing.assert_allclose(cameras["matrix_world"], tr.to_blender(tr.preset("orbit", 2)), atol=1e-5)
    mesh = trimesh.load(out / "scene.glb", force="mesh")
    assert len(mesh.faces) == report["mesh_faces"] and mesh.visual.kind == "vertex"
    assert "NOTICE: tiny preset" in result.stdout

    # The written path is a valid path file for the next run (an artist's path, as Blender matrices).
    from backend.cli.scene import read_path_file
    from backend.pipelines.scene import scene_inputs

    matrices, fov = read_path_file(out / "cameras.json")
    inputs = scene_inputs("a quiet library", None, "camera", matrices, fov, "draft", 0, {"frames": 2})
    assert inputs.trajectory.name == "camera" and inputs.trajectory.fovy_deg == 60.0
    np.testing.assert_allclose(inputs.trajectory.camtoworlds, tr.preset("orbit", 2).camtoworlds, atol=1e-5)


def _path_file(tmp_path: Path, matrices) -> str:
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"fov_deg": 50, "matrix_world": matrices}))
    return str(path)


@pytest.mark.parametrize("case, words", [
    ("empty", "the camera path is empty"),
    ("nan", "camera pose 1 holds a non-finite number"),
    ("too many", "the camera path has 501 poses; at most 500"),
    ("not json", "is not JSON"),
    ("preset", "unknown trajectory 'spiral'"),
    ("no prompt", "a scene needs a prompt"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, case, words):
    eye = np.eye(4).tolist()
    prompt, trajectory = "a quiet library", None
    if case == "empty":
        trajectory = _path_file(tmp_path, [])
    elif case == "nan":
        trajectory = _path_file(tmp_path, [eye, [[float("nan")] * 4] * 4])
    elif case == "too many":
        trajectory = _path_file(tmp_path, [eye] * 501)
    elif case == "not json":
        (tmp_path / "path.json").write_text("{not json")
        trajectory = str(tmp_path / "path.json")
    elif case == "preset":
        trajectory = "spiral"
    else:
        prompt = "  "
    args = ["--prompt", prompt, "--models", "tiny", "--out", str(tmp_path / "out")]
    if trajectory is not None:
        args += ["--trajectory", trajectory]
    result = scene_cli(*args, timeout=120)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "error:" in result.stderr
    assert not (tmp_path / "out").exists()
