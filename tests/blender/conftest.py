"""Fixtures for the `blender` tier: real Blender through the PyPI `bpy` module, headless.

Every test module here sets `pytestmark = pytest.mark.blender`; the root conftest skips them
when bpy is missing. `bpy.app.timers` never fire in the bpy module (there is no event loop), so
tests call timer callbacks themselves.
"""

from __future__ import annotations

import atexit
import os
import sys

import pytest

_session: pytest.Session | None = None


def pytest_sessionfinish(session):
    global _session
    _session = session


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Blender 4.2's bpy module crashes at process exit once a Python class with methods was
    registered (an add-on enabled, even if disabled again): C++ static destructors (`~SpaceType`)
    call `bpy_class_free`, whose `PyGILState_Ensure` meets the already finalised interpreter
    (SIGSEGV, exit code 139, after every test passed). 4.5 and 5.0 exit cleanly. On 4.2, leave
    once pytest is done: Python's atexit handlers, then `os._exit` with pytest's exit status."""
    bpy = sys.modules.get("bpy")
    if bpy is None or bpy.app.version >= (4, 5, 0) or _session is None:
        return
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(_session.exitstatus))


@pytest.fixture
def empty_scene():
    """A fresh, empty scene (factory settings, no objects) for each test."""
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context.scene
