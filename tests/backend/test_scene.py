"""The `scene` request kind end to end through the real server and client, on the tiny models
(random weights: what is checked is the wiring, the messages and their order, the shapes, the
cache, cancellation and the refusals, not the pictures)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from backend.models.registry import ModelRegistry, ModelSettings
from backend.pipelines import Pipelines
from backend.pipelines.cache import ResultCache
from backend.scene import trajectory as tr
from protocol import Accepted, Cancelled, Failed, Preview, Progress, ProtocolError, SceneResult
from tests.support import collect, connected_client, next_message, of_job, running_server, wait_for

FAST = {"frames": 3, "scene_size": 256, "replay_steps": 2, "inpaint_steps": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    registry = ModelRegistry(ModelSettings(preset="tiny", device="cpu"))
    with running_server(Pipelines(registry, ResultCache(tmp_path_factory.mktemp("results"))),
                        model_preset="tiny") as server:
        yield server


@pytest.fixture
def client(server):
    client = connected_client(server)
    yield client
    client.close()


def run(client, prompt="a quiet library", timeout_s=240, **kw):
    job = client.scene(prompt, **kw)
    return [e.message for e in of_job(collect(client, job, timeout_s=timeout_s), job)]


def png(side=96) -> bytes:
    image = np.random.default_rng(0).integers(0, 256, (side, side + 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_welcome_lists_scene_and_its_options(client):
    assert "scene" in client.welcome.request_kinds
    assert {"frames", "scene_size", "replay_steps", "inpaint_steps"} <= set(client.welcome.options)


def test_a_preset_path_grows_keyframe_by_keyframe_and_returns_mesh_and_cameras(client):
    messages = run(client, options=FAST, seed=3)
    assert isinstance(messages[0], Accepted) and isinstance(messages[-1], SceneResult), messages[-1]
    stages = [m.stage for m in messages if isinstance(m, Progress)]
    assert stages[0] == "preprocess" and stages[-1] == "mesh" and "keyframes" in stages
    assert stages == sorted(stages, key=["preprocess", "keyframes", "mesh"].index)  # in order, never back
    added = [m.message for m in messages if isinstance(m, Progress) and " added: " in m.message]
    assert [a.split(" added")[0] for a in added] == ["keyframe 1 of 3", "keyframe 2 of 3", "keyframe 3 of 3"]
    previews = [m for m in messages if isinstance(m, Preview)]
    assert previews and all(len(p.positions) > 0 for p in previews)
    result = messages[-1]
    path = tr.preset("orbit", 3)
    assert result.cameras.shape == (len(path), 4, 4)
    np.testing.assert_allclose(result.cameras, tr.to_blender(path), atol=1e-5)
    assert result.keyframes.tolist() == tr.keyframe_indices(len(path), 3) and result.fov_deg == 60.0
    assert result.vertex_colors.shape == result.vertices.shape and result.faces.max() < len(result.vertices)
    assert result.gaussians > 0 and result.metadata.tiny and result.metadata.seed == 3
    assert result.metadata.prompt == "a quiet library" and result.metadata.cache == {"scene": "miss"}

    started = time.monotonic()
    again = run(client, options=FAST, seed=3)[-1]
    assert time.monotonic() - started < 5 and again.metadata.cache == {"scene": "hit"}
    np.testing.assert_array_equal(again.vertices, result.vertices)


def test_an_image_and_the_artists_camera_path_are_used(client):
    matrices = tr.to_blender(tr.preset("pan", 2, walk_m=0.3))
    messages = run(client, image=png(), trajectory="camera", poses=matrices, fov_deg=50.0,
                   options={**FAST, "frames": 2})
    result = messages[-1]
    assert isinstance(result, SceneResult), result
    np.testing.assert_allclose(result.cameras, matrices, atol=1e-5)
    assert result.fov_deg == 50.0 and result.keyframes.tolist() == [0, len(matrices) - 1]
    # With a first image there is no text-to-image: the first keyframe is not drawn.
    assert not any("drawing the first keyframe" in m.message for m in messages if isinstance(m, Progress))


@pytest.mark.parametrize("change, words", [
    ("empty path", "the camera path is empty"),
    ("nan pose", "camera pose 1 holds a non-finite number"),
    ("no prompt", "a scene needs a prompt"),
    ("bad option", "option 'frames' must be an integer from 2 to 64"),
    ("option of another kind", "unknown option 'views' for a scene request"),
    ("bad quality", "unknown quality preset"),
])
def test_bad_requests_are_refused_before_accepted_and_the_server_keeps_serving(client, server, change, words):
    kw = {"options": dict(FAST)}
    prompt = "a quiet library"
    if change == "empty path":
        kw.update(trajectory="camera", poses=np.zeros((0, 4, 4), np.float32))
    elif change == "nan pose":
        poses = np.repeat(np.eye(4, dtype=np.float32)[None], 3, 0)
        poses[1, 0, 3] = np.nan
        kw.update(trajectory="camera", poses=poses)
    elif change == "no prompt":
        prompt = "   "
    elif change == "bad option":
        kw["options"]["frames"] = 500
    elif change == "option of another kind":
        kw["options"]["views"] = 8
    elif change == "bad quality":
        kw["quality"] = "ultra"
    messages = run(client, prompt, **kw)
    assert len(messages) == 1 and isinstance(messages[0], Failed), messages
    assert messages[0].code == "invalid_request" and words in messages[0].message and messages[0].hint
    assert server._jobs.held() == 0


def test_over_500_poses_is_refused_before_sending():
    from protocol import Scene, encode

    poses = np.repeat(np.eye(4, dtype=np.float32)[None], 501, 0)
    with pytest.raises(ProtocolError, match="P=501, over the limit of 500"):
        encode(Scene(prompt="x", trajectory="camera", poses=poses), job_id="j")


def test_cancel_mid_scene_ends_the_job_within_a_second(client, server):
    job = client.scene("a long corridor", options={"frames": 12, "scene_size": 256, "replay_steps": 10,
                                                   "inpaint_steps": 2})
    next_message(client, lambda e: e.job_id == job and isinstance(e.message, Preview), timeout_s=240)
    started = time.monotonic()
    client.cancel(job)
    messages = [e.message for e in of_job(collect(client, job, timeout_s=30), job)]
    assert isinstance(messages[-1], Cancelled) and messages[-1].stage == "keyframes"
    assert time.monotonic() - started < 1.0
    assert not any(isinstance(m, SceneResult) for m in messages)
    # The worker frees its slot right after sending `cancelled` (its unwinding drops the scene's tensors).
    wait_for(lambda: server._jobs.held() == 0, timeout_s=2)
