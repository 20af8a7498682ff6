"""gpu-check's parts that run without a GPU: its refusal on a CPU machine, and the benchmark-only
full-size model set, built and loaded through the registry's own loaders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.bench.full_size_set import FULL_SIZE, build_full_size_set, is_full_size, specs_for
from backend.models import records
from backend.models.registry import ModelRegistry, ModelSettings
from backend.models.tiny import MARKER

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_check_on_a_machine_without_cuda_says_so_and_writes_nothing(tmp_path):
    result = subprocess.run([sys.executable, "-m", "backend.bench.gpu_check", "--out", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "gpu-check needs a CUDA GPU" in result.stderr
    assert not (tmp_path / "out").exists()


def test_every_model_of_the_standard_preset_has_a_full_size_builder():
    assert {spec.repo_id for spec in specs_for()} == set(FULL_SIZE)


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_full_size_set_loads_through_the_registry_at_the_real_sizes(tmp_path):
    """Depth Anything V2 Small (24.8 M parameters) and OpenCLIP ViT-B/32 (151.3 M): built with
    random weights and loaded by the same loaders as the real repositories."""
    specs = specs_for((records.DEPTH, records.CLIP))
    build_full_size_set(tmp_path, specs, log=lambda _: None)
    for spec in specs:
        folder = tmp_path / spec.repo_id
        assert is_full_size(folder) and json.loads((folder / MARKER).read_text())["repo_id"] == spec.repo_id
    registry = ModelRegistry(ModelSettings(preset="tiny", device="cpu", dtype="float32", tiny_dir=tmp_path))
    depth = registry.get(records.DEPTH)
    clip = registry.get(records.CLIP)
    assert parameters(depth.model) == pytest.approx(24.8e6, rel=0.01)
    assert parameters(clip.model) == pytest.approx(151.3e6, rel=0.01)
    # The folders are reused, not rebuilt.
    built = []
    build_full_size_set(tmp_path, specs, log=built.append)
    assert built == []
    # And they really run: a depth map of the processor's size.
    assert depth.predict(torch.rand(1, 3, 64, 64)).shape[-2:] == (64, 64)


def test_the_pipeline_step_times_a_generation_and_a_prompt_only_regeneration_through_the_server():
    """gpu-check's pipeline step with its plumbing on the CPU: the tiny models, the draft preset
    shortened (the GPU run uses the full-size set at standard)."""
    from backend.bench.gpu_check import format_report, step_pipeline

    result = step_pipeline(None, log=lambda _: None, device="cpu", quality="draft",
                           options={"geometry_steps": 6, "texture_steps": 1})
    first, again = result["standard"], result["regenerate"]
    assert first["seconds"] > 0 and first["first_preview_s"] is not None and first["first_preview_s"] < first["seconds"]
    assert set(first["stage_seconds"]) >= {"preprocess", "geometry", "mesh", "texture"}
    assert first["cache"] == {"preprocess": "miss", "geometry": "miss", "mesh": "miss"}
    # The photo has no alpha, so the new prompt segments it again; the same cut-out then reuses
    # the geometry and the mesh.
    assert again["cache"]["geometry"] == again["cache"]["mesh"] == "hit"
    assert first["faces"] > 100 and first["peak_vram_mb"] is None
    report = format_report({"gpu": "cpu", "torch": torch.__version__, "elapsed_s": 1.0,
                            "steps": {"pipeline": result}})
    assert "pipeline" in report and "first preview" in report and "tiny models" in report
