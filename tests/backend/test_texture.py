"""The `texture` request kind end to end: the real server, the real client and the texture
pipeline with the tiny preset's Stable Diffusion 1.5 + ControlNet depth (random weights: the
pixels are noise, so these tests check the UV handling, message order, previews, the cache,
refusals and cancellation, never the content)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import trimesh

from backend.models.registry import ModelRegistry, ModelSettings
from backend.pipelines import Pipelines
from backend.pipelines.cache import ResultCache
from protocol import Accepted, Cancelled, Failed, PaintedTexture, Progress, TexturePreview
from tests.support import collect, connected_client, next_message, of_job, running_server

FAST = {"texture_size": 256, "views": 4, "paint_steps": 2}


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


def sphere():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.uint32)


def run(client, vertices, faces, prompt="weathered bronze", timeout_s=240, **kw):
    job = client.texture(vertices, faces, prompt, **kw)
    return [e.message for e in of_job(collect(client, job, timeout_s=timeout_s), job)]


def test_the_welcome_lists_texture_and_its_options(client):
    assert "texture" in client.welcome.request_kinds
    assert {"texture_size", "views", "paint_steps"} <= set(client.welcome.options)


def test_a_mesh_without_uvs_is_unwrapped_painted_view_by_view_and_its_uvs_kept_the_second_time(client):
    vertices, faces = sphere()
    messages = run(client, vertices, faces, options=FAST, seed=5)
    assert isinstance(messages[0], Accepted) and isinstance(messages[-1], PaintedTexture)
    stages = [m.stage for m in messages if isinstance(m, Progress)]
    assert stages[0] == "uv" and stages[-1] == "texture" and "paint" in stages
    assert stages == sorted(stages, key=["uv", "paint", "texture"].index)  # in order, never back
    previews = [m for m in messages if isinstance(m, TexturePreview)]
    assert [p.step for p in previews] == [1, 2, 3, 4] and all(p.total == 4 for p in previews)
    assert all(p.texture.shape == (256, 256, 3) for p in previews)
    coverage = [p.coverage for p in previews]
    assert coverage == sorted(coverage) and 0 < coverage[0] < coverage[-1] <= 1
    # New UVs come with the first preview (so it shows on them) and with the result.
    assert previews[0].uvs is not None and all(p.uvs is None for p in previews[1:])
    result = messages[-1]
    assert result.texture.shape == (256, 256, 3) and result.uvs.shape == (len(faces), 3, 2)
    np.testing.assert_array_equal(previews[0].uvs, result.uvs)
    assert result.uv_note == "unwrapped with xatlas: the mesh has no UVs"
    assert result.metadata.tiny and result.metadata.seed == 5 and result.metadata.cache == {"texture": "miss"}
    assert 0.5 < result.coverage <= 1 and result.texture.std() > 0

    # The artist's mesh now has those UVs: sent back, they are kept and no UVs come back.
    again = run(client, vertices, faces, uvs=result.uvs, options=FAST, seed=5)
    kept = again[-1]
    assert isinstance(kept, PaintedTexture) and kept.uvs is None and kept.uv_note == "kept the mesh's own UVs"
    assert all(m.uvs is None for m in again if isinstance(m, TexturePreview))


def test_the_same_request_again_comes_from_the_cache(client):
    vertices, faces = sphere()
    first = run(client, vertices, faces, prompt="blue glaze", options=FAST, seed=8)[-1]
    started = time.monotonic()
    second = run(client, vertices, faces, prompt="blue glaze", options=FAST, seed=8)[-1]
    assert time.monotonic() - started < 5
    assert second.metadata.cache == {"texture": "hit"} and np.array_equal(second.texture, first.texture)
    np.testing.assert_array_equal(second.uvs, first.uvs)
    other_seed = run(client, vertices, faces, prompt="blue glaze", options=FAST, seed=9)[-1]
    assert other_seed.metadata.cache == {"texture": "miss"}


@pytest.mark.parametrize("change, code, words", [
    ("no faces", "invalid_request", "the mesh has no faces"),
    ("nan", "invalid_request", "NaN or infinite coordinates"),
    ("views", "invalid_request", "option 'views' must be an integer from 4 to 16"),
    ("option of another kind", "invalid_request", "unknown option 'faces' for a texture request"),
    ("reference", "invalid_request", "the reference image is not an image"),
])
def test_bad_requests_are_refused_before_accepted_and_the_server_keeps_serving(client, server, change, code,
                                                                               words):
    vertices, faces = sphere()
    options, image = dict(FAST), None
    if change == "no faces":
        faces = faces[:0]
    elif change == "nan":
        vertices = vertices.copy()
        vertices[7, 1] = np.nan
    elif change == "views":
        options["views"] = 40
    elif change == "option of another kind":
        options["faces"] = 900
    elif change == "reference":
        image = b"\x89PNG\r\n\x1a\n" + bytes(40)
    messages = run(client, vertices, faces, options=options, image=image)
    assert len(messages) == 1 and isinstance(messages[0], Failed), messages
    assert messages[0].code == code and words in messages[0].message and messages[0].hint
    assert server._jobs.held() == 0
    after = run(client, *sphere(), prompt="after a refusal", options={**FAST, "paint_steps": 1})
    assert isinstance(after[-1], PaintedTexture)


def test_cancel_mid_paint_ends_the_job_within_a_second(client, server):
    vertices, faces = sphere()
    job = client.texture(vertices, faces, "cancelled marble", options={**FAST, "paint_steps": 20, "views": 8})
    next_message(client, lambda e: e.job_id == job and isinstance(e.message, TexturePreview), timeout_s=240)
    started = time.monotonic()
    client.cancel(job)
    messages = [e.message for e in of_job(collect(client, job, timeout_s=30), job)]
    assert isinstance(messages[-1], Cancelled) and messages[-1].stage == "paint"
    assert time.monotonic() - started < 1.0
    assert not any(isinstance(m, PaintedTexture) for m in messages)
    assert server._jobs.held() == 0


def test_refine_steps_run_the_texture_stage_machinery_after_painting(client):
    vertices, faces = sphere()
    painted = run(client, vertices, faces, prompt="green jade", options=FAST, seed=2)
    refined = run(client, vertices, faces, prompt="green jade", options={**FAST, "refine_steps": 2}, seed=2)
    steps = [(m.step, m.total) for m in refined if isinstance(m, Progress) and m.message == "refining the texture"]
    assert steps == [(1, 2), (2, 2)]
    assert not any(m.message == "refining the texture" for m in painted if isinstance(m, Progress))
    a, b = painted[-1], refined[-1]
    assert isinstance(b, PaintedTexture) and b.metadata.cache == {"texture": "miss"}
    np.testing.assert_array_equal(a.uvs, b.uvs)  # the same layout, a different texture on it
    assert np.abs(a.texture.astype(int) - b.texture.astype(int)).mean() > 0.5


def test_every_kind_waits_for_the_background_preload_before_loading_models(tmp_path):
    """Importing diffusers/transformers from two threads at once can fail half-way, so a texture
    job that arrives while the preload thread is still loading waits for it, as generate does."""
    import threading

    from backend.serving.context import StageContext
    from protocol import Texture

    pipelines = Pipelines(ModelRegistry(ModelSettings(preset="tiny", device="cpu")), ResultCache(tmp_path))
    preloader = pipelines.generate.preloader
    preloader._done.clear()  # a preload in progress
    loaded_at = []

    def finish_preload():
        time.sleep(0.5)
        loaded_at.append(time.monotonic())
        preloader._done.set()

    threading.Thread(target=finish_preload).start()
    vertices, faces = sphere()
    job = pipelines.prepare(Texture(vertices=vertices, faces=faces, prompt="slate", options={**FAST, "paint_steps": 1}))
    timed = []
    result = pipelines.run(job, StageContext(lambda m: timed.append((time.monotonic(), m)), threading.Event()))
    first = timed[0][1]
    assert isinstance(first, Progress) and first.stage == "uv" and first.message == "waiting for the models to load"
    work = [at for at, m in timed if not (isinstance(m, Progress) and m.message == "waiting for the models to load")]
    assert loaded_at and work and min(work) >= loaded_at[0]  # nothing started before the preload ended
    assert isinstance(result, PaintedTexture)
