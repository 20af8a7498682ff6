"""The registry and the Hugging Face cache, with a real cache layout built on disk: the tiny depth
model is placed where the real Depth Anything V2 snapshot would be, so the full preset's loading
path (snapshot lookup, hash verification, from_pretrained) runs without a download."""

import dataclasses

import pytest
import torch

from backend.models import hub, records, registry as registry_module, tiny
from backend.models.hub import ModelUnavailableError, cached_snapshot, missing_files, select_files, verify_snapshot
from backend.models.registry import ModelRegistry, ModelSettings

from .hf_cache import put_in_hf_cache

DEPTH = records.DEPTH.spec


@pytest.fixture
def cached_depth(hf_cache, tiny_registry):
    return put_in_hf_cache(hf_cache, DEPTH.repo_id, tiny_registry.folder(DEPTH))


def test_missing_full_model_offline_names_the_model_and_the_command(hf_cache):
    registry = ModelRegistry(ModelSettings(preset="full", device="cpu"))
    with pytest.raises(ModelUnavailableError) as error:
        registry.get(records.DEPTH)
    message = str(error.value)
    assert "depth-anything/Depth-Anything-V2-Small-hf" in message
    assert "python -m backend models download --preset full" in message
    assert "offline" in message and "--models tiny" in message


def test_auto_never_falls_back_to_tiny(hf_cache):
    with pytest.raises(ModelUnavailableError) as error:
        ModelRegistry(ModelSettings(preset="auto", device="cpu"))
    message = str(error.value)
    for required in registry_module.required_specs():
        assert required.repo_id in message
    assert "stabilityai/sd-turbo" not in message  # optional models are not required


def test_auto_is_full_when_the_required_models_are_cached(cached_depth, monkeypatch):
    monkeypatch.setattr(registry_module, "required_specs", lambda: [DEPTH])
    registry = ModelRegistry(ModelSettings(preset="auto", device="cpu"))
    assert registry.preset == "full" and not registry.is_tiny


def test_full_preset_loads_a_cached_snapshot_through_from_pretrained(cached_depth):
    registry = ModelRegistry(ModelSettings(preset="full", device="cpu"))
    assert registry.folder(DEPTH) == cached_depth
    depth = registry.get(records.DEPTH)
    assert depth.predict(torch.rand(1, 3, 40, 40)).shape == (1, 40, 40)
    assert registry.describe() == "full"


def test_verify_finds_a_corrupted_weight_file(cached_depth):
    assert all(check.ok for check in verify_snapshot(cached_depth))
    weights = cached_depth / "model.safetensors"
    blob = weights.resolve()
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) // 2])  # an interrupted download
    bad = [c for c in verify_snapshot(cached_depth) if not c.ok]
    assert [c.name for c in bad] == ["model.safetensors"] and "mismatch" in bad[0].detail


def test_a_snapshot_without_its_weights_is_not_cached(cached_depth):
    (cached_depth / "model.safetensors").unlink()
    assert missing_files(DEPTH, cached_depth) == ["model.fp16.safetensors"]
    assert cached_snapshot(DEPTH) is None


def test_download_picks_one_weight_format_per_file():
    model = records.REFINER.spec
    files = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
             "tokenizer/vocab.json", "scheduler/scheduler_config.json", "v1-5-pruned.safetensors",
             "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.safetensors",
             "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin",
             "text_encoder/pytorch_model.bin", "safety_checker/model.safetensors"]
    chosen = select_files(model, files)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in chosen
    assert "unet/diffusion_pytorch_model.safetensors" not in chosen
    assert "vae/diffusion_pytorch_model.safetensors" in chosen and "vae/diffusion_pytorch_model.bin" not in chosen
    assert "text_encoder/pytorch_model.bin" in chosen
    assert "v1-5-pruned.safetensors" not in chosen and "safety_checker/model.safetensors" not in chosen
    assert {"model_index.json", "tokenizer/vocab.json", "scheduler/scheduler_config.json"} <= set(chosen)
    with pytest.raises(ModelUnavailableError, match="stable-diffusion-v1-5"):
        select_files(model, ["model_index.json"])


def test_download_refuses_in_offline_mode(hf_cache):
    with pytest.raises(ModelUnavailableError, match="offline"):
        hub.download(DEPTH)


def test_models_load_once_and_can_be_freed(tiny_registry):
    first = tiny_registry.get(records.DEPTH)
    assert tiny_registry.get(records.DEPTH) is first and "depth" in tiny_registry.loaded()
    tiny_registry.free(records.DEPTH)
    assert "depth" not in tiny_registry.loaded()
    assert tiny_registry.get(records.DEPTH) is not first
    assert "noise" in tiny_registry.describe()
    with pytest.raises(TypeError, match="records"):
        tiny_registry.get("depth")  # names are for the CLI only (records.record_for)


def test_tiny_models_are_built_once_and_reused(tmp_path):
    model = records.CLIP.spec
    folder, built = tiny.ensure_tiny(model, tmp_path)
    stamp = (folder / "open_clip_model.safetensors").stat().st_mtime_ns
    again, built_again = tiny.ensure_tiny(model, tmp_path)
    assert built and not built_again and again == folder
    assert (folder / "open_clip_model.safetensors").stat().st_mtime_ns == stamp
    assert tiny.is_tiny(folder) and folder == tmp_path / "laion" / "CLIP-ViT-B-32-laion2B-s34B-b79K"


def test_an_outdated_tiny_model_is_rebuilt(tmp_path, monkeypatch):
    folder, _ = tiny.ensure_tiny(records.CLIP.spec, tmp_path)
    monkeypatch.setattr(tiny, "TINY_FORMAT", tiny.TINY_FORMAT + 1)
    _, built = tiny.ensure_tiny(records.CLIP.spec, tmp_path)
    assert built


def test_a_failed_tiny_build_leaves_nothing_behind(tmp_path):
    def broken(folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        tiny.ensure_tiny(dataclasses.replace(DEPTH, tiny=broken), tmp_path)
    assert list(tmp_path.rglob("*")) == [tmp_path / "depth-anything"]  # just the empty organisation folder


def test_settings_are_validated():
    with pytest.raises(ValueError, match="preset"):
        ModelSettings(preset="huge")
    with pytest.raises(ValueError, match="dtype"):
        ModelSettings(dtype="float8")
