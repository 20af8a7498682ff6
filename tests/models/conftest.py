import pytest

from backend.models.registry import ModelRegistry, ModelSettings
from backend.models.tiny import tiny_root


@pytest.fixture(scope="session")
def tiny_dir():
    """The checkout's tiny-model folder (tests/conftest.py points LIFT3D_TINY_MODELS at it): each
    model is built on first use and reused by later sessions and by the backends tests start."""
    return tiny_root()


@pytest.fixture(scope="session")
def tiny_registry(tiny_dir):
    return ModelRegistry(ModelSettings(preset="tiny", device="cpu", tiny_dir=tiny_dir))


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty, offline Hugging Face cache and an empty models lock file of this test's own."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("LIFT3D_MODELS_LOCK", str(tmp_path / "models.lock.json"))
    return cache
