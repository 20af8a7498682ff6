"""Scene mode's side of the add-on without Blender: the job state machine (messages and local events
in, effects out), the camera field of view sent, and the panel's scene options."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from blender_addon.core.effects import BuildScene, PreviewOf, Remove, ShowError, ShowPreview, UndoStep
from blender_addon.core.jobs import Job, Phase, SceneRequest, backend_offers, not_offered
from blender_addon.core.panel_options import panel_properties, request_options
from protocol import Accepted, Cancelled, Failed, MeshMetadata, Preview, Progress, RequestKind, SceneResult
from protocol.options import validate_options
from tests.support import splats

SCENE = RequestKind.SCENE


def _result(poses: int = 5, tiny: bool = False) -> SceneResult:
    return SceneResult(vertices=np.zeros((3, 3), np.float32), faces=np.array([[0, 1, 2]], np.uint32),
                       vertex_colors=np.zeros((3, 3), np.uint8),
                       cameras=np.repeat(np.eye(4, dtype=np.float32)[None], poses, 0),
                       keyframes=np.array([0, poses - 1], np.int32), fov_deg=50.0, gaussians=1234,
                       metadata=MeshMetadata(prompt="a quiet library", seed=7, models="tiny", tiny=tiny))


def _job(**kw) -> Job:
    job = Job(SceneRequest(prompt="a quiet library", seed=7, options={"frames": 2}, frame_start=10, **kw))
    job.submitted("job-1", welcomed=True)
    job.apply(Accepted(queue_position=0))
    return job


def test_a_scene_job_shows_previews_then_builds_the_scene_and_leaves_one_undo_step():
    job = _job()
    assert job.is_scene and not job.is_texture and not job.is_enhance
    assert job.apply(Progress(stage="keyframes", step=3, total=10, message="keyframe 1 of 2 added")) == []
    assert job.phase == Phase.RUNNING and 0.05 < job.progress_factor() < 0.95
    preview = job.apply(Preview(step=0, **splats(10, 0)))
    assert isinstance(preview[0], ShowPreview)
    (build,) = job.apply(_result(tiny=True))
    assert isinstance(build, BuildScene)
    assert build.name == "Quiet library (tiny models: noise)" and build.camera_name == "Lift3D Path " + build.name
    assert build.frames == (10, 11, 12, 13, 14)  # a preset path: one pose per frame from the start frame
    sampled = _job(trajectory="camera", poses=np.repeat(np.eye(4, dtype=np.float32)[None], 5, 0),
                   frames=(1, 4, 7, 10, 12))
    (camera_build,) = sampled.apply(_result())
    assert camera_build.frames == (1, 4, 7, 10, 12)  # the camera's own frames, the end frame kept
    assert build.properties["lift3d_stage"] == "scene" and build.properties["lift3d_gaussians"] == 1234
    assert build.properties["lift3d_scene_prompt"] == "a quiet library" and build.properties["lift3d_seed"] == 7
    job.scene_built("Quiet library", "Lift3D Path Quiet library")
    assert job.phase == Phase.DONE and job.final_object == "Quiet library"
    assert job.result_camera == "Lift3D Path Quiet library" and job.progress_factor() == 1.0
    effects = job.finish(now=job.created_at + 5, geometry_present=False)
    assert Remove(PreviewOf("job-1")) in effects
    assert any(isinstance(e, UndoStep) for e in effects)


def test_a_cancelled_scene_leaves_nothing_even_when_the_result_crosses_the_cancel():
    job = _job()
    job.request_cancel(now=1.0)
    assert job.phase == Phase.CANCELLING
    assert job.apply(_result()) == []  # finished before the cancel arrived: not built
    assert job.phase == Phase.CANCELLED
    effects = job.finish(now=2.0, geometry_present=False)
    assert effects == [Remove(PreviewOf("job-1"))]
    other = _job()
    other.request_cancel(now=1.0)
    other.apply(Cancelled(stage="keyframes"))
    assert other.phase == Phase.CANCELLED and not any(isinstance(e, UndoStep) for e in other.finish(2.0, False))


def test_a_result_for_another_path_or_a_failed_build_is_reported_and_nothing_kept():
    job = _job(trajectory="camera", poses=np.repeat(np.eye(4, dtype=np.float32)[None], 8, 0))
    assert job.apply(_result(poses=5)) == []
    assert job.phase == Phase.FAILED and "5 cameras for the 8 poses" in job.error
    built = _job()
    built.apply(_result())
    built.scene_failed("out of memory")
    assert built.phase == Phase.FAILED and "Nothing was added" in built.hint and "out of memory" in built.error
    effects = built.finish(now=3.0, geometry_present=False)
    assert isinstance(effects[-1], ShowError) and not any(isinstance(e, UndoStep) for e in effects)


def test_a_backend_failure_gets_a_scene_hint_for_out_of_memory():
    job = _job()
    job.apply(Failed(code="out_of_memory", message="CUDA out of memory", hint=""))
    assert job.phase == Phase.FAILED and "fewer keyframes" in job.hint


def test_an_older_backend_without_scenes_is_named():
    assert not backend_offers(SCENE, ["generate", "enhance", "texture"])
    assert backend_offers(SCENE, ["generate", "scene"])
    message, hint = not_offered(SCENE, "0.9")
    assert "does not grow scenes" in message and "protocol 2.5" in hint


def test_the_panels_scene_options_are_valid_requests():
    props = {p.option.name: p for p in panel_properties(SCENE)}
    assert set(props) == {"frames", "scene_size", "replay_steps", "inpaint_steps"}
    values = {p.attr: p.keywords.get("default") for p in props.values()}
    values.update({p.toggle: False for p in props.values() if p.toggle})
    assert request_options(SCENE, lambda attr: values[attr]) == {}  # defaults; the preset decides the rest
    values.update({props["frames"].attr: 6, props["replay_steps"].toggle: True})
    options = request_options(SCENE, lambda attr: values[attr])
    assert options == {"frames": 6, "replay_steps": 80}
    assert validate_options(SCENE, options) == options


def test_the_square_field_of_view_is_the_narrower_angle():
    from blender_addon.core.scene_path import square_fov_deg

    camera = SimpleNamespace(lens=50.0, sensor_width=36.0, sensor_height=24.0, sensor_fit="AUTO")
    wide = square_fov_deg(camera, 1920, 1080)  # landscape: the vertical angle is the narrower one
    assert wide == math.degrees(2 * math.atan(18 / 50 * 1080 / 1920))
    tall = square_fov_deg(camera, 1080, 1920)  # portrait: AUTO fits the width to the sensor
    assert tall == wide
    square = square_fov_deg(camera, 1000, 1000)
    assert square == math.degrees(2 * math.atan(18 / 50))
    vertical = square_fov_deg(SimpleNamespace(lens=50.0, sensor_width=36.0, sensor_height=24.0,
                                              sensor_fit="VERTICAL"), 1920, 1080)
    assert vertical == math.degrees(2 * math.atan(12 / 50))
