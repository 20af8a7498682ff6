import pytest

from backend.models.registry import ModelRegistry, ModelSettings


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """One tiny-model folder for the whole test session: each model is built on first use."""
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_registry(tiny_dir):
    return ModelRegistry(ModelSettings(preset="tiny", device="cpu", tiny_dir=tiny_dir))
