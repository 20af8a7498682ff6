"""Scene mode through a real backend process (`python -m backend serve`, tiny models, CPU): the
default scene's camera, animated over eight frames, is the path; two keyframes of 256². The tiny
models' pixels are noise, so what is checked is the wiring: the live preview, the mesh and the
animated camera in the scene, the path followed exactly, one undo step, and a cancel or a bad path
leaving nothing behind."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from backend.serving.local import LocalBackend  # noqa: E402
from tests.blender.test_texture import disable_addon, enable_addon  # noqa: E402

FAST = {"frames": 2, "replay_steps": 2, "inpaint_steps": 2}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    cache = tmp_path_factory.mktemp("backend-cache")
    with LocalBackend(models="tiny", extra_args=("--device", "cpu", "--cache-dir", str(cache)),
                      startup_timeout_s=240) as server:
        yield server


def _scene_settings(backend, options=FAST):
    bpy.ops.wm.read_factory_settings(use_empty=False)
    enable_addon(backend.endpoint)
    settings = bpy.context.scene.lift3d.scene
    settings.prompt = "a quiet reading room"
    settings.frames = options["frames"]
    for name in ("replay_steps", "inpaint_steps"):
        setattr(settings, f"use_{name}", True)
        setattr(settings, name, options[name])
    return settings


def _animate_camera(frames: int = 8, turn_deg: float = 20.0):
    scene, camera = bpy.context.scene, bpy.data.objects["Camera"]
    scene.frame_start, scene.frame_end = 1, frames
    camera.rotation_mode = "XYZ"
    start = camera.rotation_euler.z
    for frame, angle in ((1, 0.0), (frames, math.radians(turn_deg))):
        camera.rotation_euler.z = start + angle
        camera.keyframe_insert("rotation_euler", frame=frame)
    scene.frame_set(3)
    return camera


def _lift3d_objects():
    return [ob for ob in bpy.data.objects if "lift3d_job" in ob or ob.name.startswith("Lift3D preview")]


def test_the_active_cameras_animation_becomes_a_scene_and_a_camera_flying_the_path(backend):
    from blender_addon import headless, session
    from blender_addon.core.jobs import Phase

    settings = _scene_settings(backend)
    try:
        settings.trajectory = "camera"
        camera = _animate_camera()
        expected = []
        for frame in range(1, 9):
            bpy.context.scene.frame_set(frame)
            expected.append(np.array(camera.matrix_world))
        bpy.context.scene.frame_set(3)
        bpy.ops.ed.undo_push(message="before the scene")
        assert bpy.ops.lift3d.scene() == {"FINISHED"}
        seen = []
        job = headless.drive(timeout_s=300, on_tick=lambda s: seen.append(s.job.previews if s.job else -1))
        assert job.phase == Phase.DONE, (job.error, job.hint)
        assert "scene" in session.get().client.welcome.request_kinds
        assert max(seen) >= 1  # the splats showed while the scene grew
        assert bpy.context.scene.frame_current == 3  # reading the path put the frame back

        mesh_ob = bpy.data.objects[job.final_object]
        path = bpy.data.objects[job.result_camera]
        assert mesh_ob.name == "Quiet reading room (tiny models: noise)" and mesh_ob["lift3d_stage"] == "scene"
        assert len(mesh_ob.data.vertices) > 0 and mesh_ob.data.color_attributes
        assert path.type == "CAMERA" and path["lift3d_job"] == job.id
        assert not any(ob.name.startswith("Lift3D preview") for ob in bpy.data.objects)
        # The camera flies the artist's path: frame by frame the same matrix.
        assert path.animation_data is not None and path.animation_data.action is not None
        for frame in range(1, 9):
            bpy.context.scene.frame_set(frame)
            np.testing.assert_allclose(np.array(path.matrix_world), expected[frame - 1], atol=1e-4)
        assert math.degrees(path.data.angle_y) > 1.0

        # One undo step takes both away.
        bpy.ops.ed.undo()
        assert job.final_object not in bpy.data.objects and job.result_camera not in bpy.data.objects
    finally:
        disable_addon()


def test_cancel_leaves_nothing_behind(backend):
    from blender_addon import headless, session
    from blender_addon.core.jobs import Phase

    _scene_settings(backend, {"frames": 12, "replay_steps": 10, "inpaint_steps": 2})
    try:
        before = {ob.name for ob in bpy.data.objects}
        assert bpy.ops.lift3d.scene() == {"FINISHED"}
        sess = session.get()
        headless.drive(until=lambda: sess.job is not None and sess.job.previews >= 1, timeout_s=240)
        assert any(ob.name.startswith("Lift3D preview") for ob in bpy.data.objects)
        assert bpy.ops.lift3d.cancel() == {"FINISHED"}
        job = headless.drive(timeout_s=30)
        assert job.phase == Phase.CANCELLED
        assert {ob.name for ob in bpy.data.objects} == before and not _lift3d_objects()
    finally:
        disable_addon()


def test_a_camera_that_does_not_move_is_refused_before_sending(backend):
    from blender_addon import session

    settings = _scene_settings(backend)
    try:
        settings.trajectory = "camera"
        with pytest.raises(RuntimeError, match="does not move between frames 1 and 250"):
            bpy.ops.lift3d.scene()
        assert session.get().job is None and not _lift3d_objects()
        message, hint = session.get().error
        assert "animate it" in message
    finally:
        disable_addon()
