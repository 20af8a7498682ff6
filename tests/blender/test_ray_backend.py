"""The add-on, unchanged, against a backend on the Ray engine: `serve --engine ray` with one worker
on a custom resource in place of a GPU (tiny models), started as a separate process as for a studio
front end. The add-on cannot tell the difference, except for the device the welcome names."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from backend.serving.local import LocalBackend  # noqa: E402
from tests.blender.test_addon_e2e import addon, disc_png, lift3d_objects, use_image  # noqa: E402, F401


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ray-backend-cache")
    args = ("--device", "cpu", "--cache-dir", str(cache), "--engine", "ray", "--workers", "1",
            "--worker-resource", "lift3d_test_gpu")
    with LocalBackend(models="tiny", extra_args=args, startup_timeout_s=240) as server:
        yield server


def test_generate_then_regenerate_through_a_ray_backend(addon, tmp_path):
    from blender_addon import headless, session
    from blender_addon.core.jobs import Phase

    use_image(disc_png(tmp_path / "disc.png"))
    bpy.context.scene.lift3d.prompt = "a red disc"
    assert bpy.ops.lift3d.generate() == {"FINISHED"}
    first = headless.drive(timeout_s=240)
    assert first.phase == Phase.DONE, (first.error, first.hint)
    assert "1 × cpu (Ray workers)" in session.get().status()[1]  # what the panel shows
    ob = bpy.data.objects[first.final_object]
    assert len(ob.data.polygons) > 100 and ob.data.uv_layers.active is not None
    assert ob.active_material.node_tree.nodes["Image Texture"].image.packed_file is not None

    # A prompt-only change on the same worker reuses its geometry.
    bpy.context.scene.lift3d.prompt = "a shiny red plate"
    assert bpy.ops.lift3d.regenerate() == {"FINISHED"}
    second = headless.drive(timeout_s=240)
    assert second.phase == Phase.DONE, (second.error, second.hint)
    assert second.metadata.cache == {"preprocess": "hit", "geometry": "hit", "mesh": "hit"}
    assert lift3d_objects() == [second.final_object]
