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
