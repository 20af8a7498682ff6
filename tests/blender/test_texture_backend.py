"""Texture Selected through a real backend process (`python -m backend serve`, tiny models, CPU):
the default cube painted with 4 views of 2 steps into a 256² texture. The tiny painter's pixels are
noise, so sizes, wiring, packing and what stayed as it was are checked, never the colours."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from backend.serving.local import LocalBackend  # noqa: E402
from tests.blender.test_texture import disable_addon, enable_addon, snapshot, texture_node  # noqa: E402


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    cache = tmp_path_factory.mktemp("backend-cache")
    with LocalBackend(models="tiny", extra_args=("--device", "cpu", "--cache-dir", str(cache)),
                      startup_timeout_s=240) as server:
        yield server


def test_the_cube_is_textured_by_a_real_backend_with_the_tiny_models(backend):
    from blender_addon import headless, session
    from blender_addon.core.jobs import Phase

    bpy.ops.wm.read_factory_settings(use_empty=False)
    cube = bpy.data.objects["Cube"]
    bpy.context.view_layer.objects.active = cube
    settings = enable_addon(backend.endpoint)
    try:
        settings.prompt = "rusty metal crate"
        settings.use_texture_size, settings.texture_size, settings.views, settings.paint_steps = True, "256", 4, 2
        before = snapshot(cube)
        assert bpy.ops.lift3d.texture() == {"FINISHED"}
        sess = session.get()
        seen = []
        job = headless.drive(timeout_s=240, on_tick=lambda s: seen.append(s.job.previews if s.job else -1))
        assert job.phase == Phase.DONE, (job.error, job.hint)
        assert "texture" in sess.client.welcome.request_kinds
        assert max(seen) >= 1  # the texture filled in while the backend painted

        material = cube.material_slots[0].material
        image = bpy.data.images[job.result_image]
        assert material.name == "Lift3D Cube" and texture_node(material).image == image
        assert image.name == "Lift3D Texture Cube (tiny models: noise)"
        assert tuple(image.size) == (256, 256) and image.packed_file is not None
        assert 0.0 < job.coverage <= 1.0 and job.metadata.tiny
        after = snapshot(cube)
        for key in ("counts", "positions", "uv_layers", "modifiers"):
            assert after[key] == before[key], key
        # The cube's own UVs (a cross, overlap-free) were kept, or new ones came in their own layer.
        uv_layer = cube["lift3d_texture_uv"]
        assert uv_layer in ("UVMap", "Lift3D UV") and material.node_tree.nodes["Lift3D UV Map"].uv_map == uv_layer
        print(f"textured in {job.elapsed_s:.1f} s; UVs: {job.uv_note}")
        pixels = np.empty(256 * 256 * 4, np.float32)
        image.pixels.foreach_get(pixels)
        assert np.isfinite(pixels).all() and pixels.reshape(-1, 4)[:, :3].std() > 0  # painted, not blank
    finally:
        disable_addon()
