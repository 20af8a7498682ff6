"""The registry and the Hugging Face cache, with a real cache layout built on disk: the tiny depth
model is placed where the real Depth Anything V2 snapshot would be, so the full preset's loading
path (snapshot lookup, hash verification, from_pretrained) runs without a download."""

import hashlib
import os
import shutil

import pytest
import torch

from backend.models import hub, registry as registry_module, tiny
from backend.models.catalogue import CATALOGUE, spec
from backend.models.hub import ModelUnavailableError, cached_snapshot, missing_files, select_files, verify_snapshot
from backend.models.registry import ModelRegistry, ModelSettings

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _etag(path) -> str:
    data = path.read_bytes()
    if path.suffix in (".safetensors", ".bin"):  # LFS files: sha256
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id


def put_in_hf_cache(cache, repo_id, source):
    """Lay `source` out as huggingface_hub stores a downloaded snapshot of `repo_id`@main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        etag = _etag(file)
        blob = repo / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = repo / "snapshots" / COMMIT / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return repo / "snapshots" / COMMIT


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def cached_depth(hf_cache, tiny_registry):
    return put_in_hf_cache(hf_cache, spec("depth").repo_id, tiny_registry.folder("depth"))


def test_missing_full_model_offline_names_the_model_and_the_command(hf_cache):
    registry = ModelRegistry(ModelSettings(preset="full", device="cpu"))
    with pytest.raises(ModelUnavailableError) as error:
        registry.get("depth")
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
    monkeypatch.setattr(registry_module, "required_specs", lambda: [spec("depth")])
    registry = ModelRegistry(ModelSettings(preset="auto", device="cpu"))
    assert registry.preset == "full" and not registry.is_tiny


def test_full_preset_loads_a_cached_snapshot_through_from_pretrained(cached_depth):
    registry = ModelRegistry(ModelSettings(preset="full", device="cpu"))
    assert registry.folder("depth") == cached_depth
    depth = registry.get("depth")
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
    assert missing_files(spec("depth"), cached_depth) == ["model.fp16.safetensors"]
    assert cached_snapshot(spec("depth")) is None


def test_download_picks_one_weight_format_per_file():
    model = spec("refiner")
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
        hub.download(spec("depth"))


def test_models_load_once_and_can_be_freed(tiny_registry):
    first = tiny_registry.get("depth")
    assert tiny_registry.get("depth") is first and "depth" in tiny_registry.loaded()
    tiny_registry.free("depth")
    assert "depth" not in tiny_registry.loaded()
    assert tiny_registry.get("depth") is not first
    assert "noise" in tiny_registry.describe()
    with pytest.raises(KeyError, match="unknown model"):
        tiny_registry.get("teleporter")


def test_tiny_models_are_built_once_and_reused(tmp_path):
    model = spec("clip")
    folder, built = tiny.ensure_tiny(model, tmp_path)
    stamp = (folder / "open_clip_model.safetensors").stat().st_mtime_ns
    again, built_again = tiny.ensure_tiny(model, tmp_path)
    assert built and not built_again and again == folder
    assert (folder / "open_clip_model.safetensors").stat().st_mtime_ns == stamp
    assert tiny.is_tiny(folder) and folder == tmp_path / "laion" / "CLIP-ViT-B-32-laion2B-s34B-b79K"


def test_an_outdated_tiny_model_is_rebuilt(tmp_path, monkeypatch):
    folder, _ = tiny.ensure_tiny(spec("clip"), tmp_path)
    monkeypatch.setattr(tiny, "TINY_FORMAT", tiny.TINY_FORMAT + 1)
    _, built = tiny.ensure_tiny(spec("clip"), tmp_path)
    assert built


def test_a_failed_tiny_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny, "_builder", lambda role: broken)
    with pytest.raises(RuntimeError, match="disk full"):
        tiny.ensure_tiny(spec("depth"), tmp_path)
    assert list(tmp_path.rglob("*")) == [tmp_path / "depth-anything"]  # just the empty organisation folder


def test_every_role_has_a_licence_and_every_tiny_role_a_builder():
    for model in CATALOGUE.values():
        assert model.licence and model.size_mb > 0 and model.weights
        if model.has_tiny:
            assert model.role in tiny._BUILDERS


def test_settings_are_validated():
    with pytest.raises(ValueError, match="preset"):
        ModelSettings(preset="huge")
    with pytest.raises(ValueError, match="dtype"):
        ModelSettings(dtype="float8")
