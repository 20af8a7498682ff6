import importlib.util
import os

import pytest

# Tests never download anything.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
