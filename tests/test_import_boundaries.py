"""Import boundaries: what each side may pull in. Checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize("statement, forbidden", [
    ("import protocol", {"torch", "bpy", "zmq"}),
    ("import protocol.client", {"torch", "bpy"}),
    ("import backend.serving.server, backend.serving.jobs, backend.serving.context", {"bpy"}),
    ("import backend.__main__", {"bpy", "torch"}),
    ("import blender_addon, blender_addon.core.wire, blender_addon.core.jobs, blender_addon.core.effects, "
     "blender_addon.core.launcher, blender_addon.core.image_source, blender_addon.core.mesh_arrays, "
     "blender_addon.core.splat_arrays, blender_addon.core.panel_options, blender_addon.core.scene_path",
     {"bpy", "torch", "backend"}),
])
def test_import_boundaries(statement, forbidden):
    loaded = loaded_after(statement)
    assert "msgpack" in loaded  # the import really happened
    assert not loaded & forbidden, f"{statement} loaded {sorted(loaded & forbidden)}"
