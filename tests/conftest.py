import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests never download anything.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tiny models are built once per checkout (shared by in-process tests and the backends they start);
# results are cached per test session only, so a stale entry can never hide a bug.
_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LIFT3D_TINY_MODELS", str(_ROOT / ".cache" / "tiny-models"))
_RESULTS = tempfile.mkdtemp(prefix="lift3d-test-results-")
os.environ["LIFT3D_CACHE"] = _RESULTS
# Nor read or write the user's models lock file (tests that need one set their own).
os.environ["LIFT3D_MODELS_LOCK"] = os.path.join(_RESULTS, "models.lock.json")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_RESULTS, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    has_bpy = importlib.util.find_spec("bpy") is not None
    has_cuda = False
    if any("gpu" in item.keywords for item in items):
        import torch

        has_cuda = torch.cuda.is_available()
    for item in items:
        if "blender" in item.keywords and not has_bpy:
            item.add_marker(pytest.mark.skip(reason="needs the bpy module (pip install bpy==5.0.1)"))
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
