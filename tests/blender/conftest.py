"""Fixtures for the `blender` tier: real Blender through the PyPI `bpy` module, headless.

Every test module here sets `pytestmark = pytest.mark.blender`; the root conftest skips them
when bpy is missing. `bpy.app.timers` never fire in the bpy module (there is no event loop), so
tests call timer callbacks themselves.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def empty_scene():
    """A fresh, empty scene (factory settings, no objects) for each test."""
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context.scene
