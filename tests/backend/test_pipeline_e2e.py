"""The real pipeline (tiny models) behind the real server, driven by the real client.

Jobs use the draft preset shortened through request options, so each takes seconds on 2 CPU
cores; every test sees one server process-wide (models stay resident, as in production) and a
fresh result cache.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from backend.pipelines.cache import ResultCache
from backend.models.registry import ModelRegistry, ModelSettings
from backend.pipelines.generate import GenerationPipeline
from protocol import Cancelled, Failed, Mesh, Preview, Progress
from tests.support import collect, connected_client, next_message, of_job, running_server

SHORT = {"geometry_steps": 12, "texture_steps": 2}


def photo(seed: int = 0, size: int = 96) -> bytes:
    """A red disc on a white backdrop (the tiny segmenter cannot find objects, so the disc comes
    with an alpha channel and the segmentation path is covered by its own tests)."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2 - seed) ** 2 < (size / 3) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[inside] = (200, 40, 30, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    registry = ModelRegistry(ModelSettings(preset="tiny", device="cpu"))
    return GenerationPipeline(registry, ResultCache(tmp_path_factory.mktemp("results")))


@pytest.fixture(scope="module")
def server(pipeline):
    with running_server(pipeline, model_preset="tiny") as server:
        yield server


@pytest.fixture
def client(server):
    client = connected_client(server)
    yield client
    client.close()


def run_job(client, image: bytes, prompt: str = "a red disc", seed: int = 0, **options):
    job = client.submit(image, prompt, quality="draft", seed=seed, options={**SHORT, **options})
    return job, [e.message for e in of_job(collect(client, job, timeout_s=180), job)]


def test_messages_arrive_in_order_with_throttled_compact_previews(client):
    job, messages = run_job(client, photo(), seed=11)
    kinds = [type(m).__name__ for m in messages]
    assert kinds[0] == "Accepted" and kinds[-1] == "Mesh" and messages[-1].kind == "final"
    geometry_index = next(i for i, m in enumerate(messages) if isinstance(m, Mesh) and m.kind == "geometry")
    stages = [m.stage for m in messages if isinstance(m, Progress)]
    order = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert order == ["preprocess", "pseudo views", "geometry", "mesh", "texture"]
    # The untextured mesh arrives after geometry and mesh progress, before any texture progress.
    first_texture = next(i for i, m in enumerate(messages) if isinstance(m, Progress) and m.stage == "texture")
    assert geometry_index < first_texture
    previews = [m for m in messages if isinstance(m, Preview)]
    assert previews and all(len(p.positions) <= 50_000 for p in previews)
    assert previews[0].positions.dtype == np.float16 and previews[0].colors.dtype == np.uint8
    assert previews[0].opacities.dtype == np.uint8
    geometry_progress = [m for m in messages if isinstance(m, Progress) and m.stage == "geometry"]
    assert geometry_progress[-1].step == geometry_progress[-1].total == SHORT["geometry_steps"]
    assert any(m.eta_s is not None for m in geometry_progress)
    final = messages[-1]
    assert final.texture.shape == (256, 256, 3) and len(final.faces) > 100 and final.uvs.shape == (len(final.vertices), 2)
    assert final.metadata.tiny is True and final.metadata.models == "tiny"
    assert final.metadata.prompt == "a red disc" and final.metadata.seed == 11 and final.metadata.quality == "draft"


def test_previews_are_throttled_to_ten_per_second(client):
    sent_at = []
    job = client.submit(photo(), "a red disc", quality="draft", seed=12, options=SHORT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = False
        for envelope in client.poll(budget_ms=50, wait=True):
            if envelope.job_id != job:
                continue
            if isinstance(envelope.message, Preview):
                sent_at.append(time.monotonic())
            done = isinstance(envelope.message, (Mesh, Failed)) and getattr(envelope.message, "kind", "") != "geometry"
        if done:
            break
    assert len(sent_at) >= 2
    # Arrival gaps can shrink by network jitter, never the rate: N previews span ≥ (N − 1)·0.1 s.
    assert sent_at[-1] - sent_at[0] >= (len(sent_at) - 1) * 0.1 - 0.05


def test_a_prompt_change_reuses_geometry_and_mesh(client, pipeline):
    image = photo(seed=3)
    _, first = run_job(client, image, "a red disc", seed=5)
    assert first[-1].metadata.cache == {"preprocess": "miss", "geometry": "miss", "mesh": "miss"}
    _, second = run_job(client, image, "a shiny red plate", seed=5)
    assert isinstance(second[-1], Mesh) and second[-1].kind == "final"
    assert second[-1].metadata.cache == {"preprocess": "hit", "geometry": "hit", "mesh": "hit"}
    # The geometry stage did not run: one "reused" progress message, no optimisation steps.
    geometry = [m for m in second if isinstance(m, Progress) and m.stage == "geometry"]
    assert [m.message for m in geometry] == ["reused from the cache"]
    assert not any(isinstance(m, Progress) and m.stage == "pseudo views" for m in second)
    assert pipeline.last_report.timings["geometry"] < 1.0
    assert np.array_equal(first[-1].vertices, second[-1].vertices)
    assert second[-1].metadata.prompt == "a shiny red plate"


def test_the_cache_survives_a_backend_restart(pipeline, tmp_path):
    image = photo(seed=4)
    with running_server(GenerationPipeline(pipeline.registry, ResultCache(tmp_path))) as first:
        client = connected_client(first)
        _, messages = run_job(client, image, seed=6)
        client.close()
    assert messages[-1].metadata.cache["geometry"] == messages[-1].metadata.cache["mesh"] == "miss"
    with running_server(GenerationPipeline(pipeline.registry, ResultCache(tmp_path))) as second:
        client = connected_client(second)
        _, messages = run_job(client, image, "another prompt", seed=6)
        client.close()
    assert messages[-1].metadata.cache == {"preprocess": "hit", "geometry": "hit", "mesh": "hit"}


@pytest.mark.parametrize("stage", ["preprocess", "pseudo views", "geometry", "mesh", "texture"])
def test_cancellation_is_honoured_within_a_second_in_every_stage(client, stage):
    # A fresh seed per stage, so nothing comes from the cache and every stage really runs.
    seed = 100 + ["preprocess", "pseudo views", "geometry", "mesh", "texture"].index(stage)
    # Preprocessing is short with an alpha channel; without one it runs the segmentation models.
    image = _encoded(Image.open(io.BytesIO(photo(seed % 7))).convert("RGB")) if stage == "preprocess" \
        else photo(seed=seed % 7)
    job = client.submit(image, "a red disc", quality="draft", seed=seed,
                        options={"geometry_steps": 30, "texture_steps": 30})
    next_message(client, lambda e: e.job_id == job and isinstance(e.message, Progress) and e.message.stage == stage
                 and (stage != "preprocess" or e.message.message == "finding the object"), timeout_s=180)
    cancelled_at = time.monotonic()
    client.cancel(job)
    ending = next_message(client, lambda e: e.job_id == job and isinstance(e.message, (Cancelled, Failed))
                          or (e.job_id == job and isinstance(e.message, Mesh) and e.message.kind == "final"),
                          timeout_s=30)
    assert isinstance(ending.message, Cancelled), ending.message
    assert ending.message.stage == stage
    assert time.monotonic() - cancelled_at < 1.5  # 1 s, plus a poll interval of slack on a loaded CI box


def test_a_texture_failure_still_delivers_the_geometry_mesh(client, pipeline, monkeypatch):
    def broken_texture(*args, **kwargs):
        raise RuntimeError("texture stage exploded")

    monkeypatch.setattr("backend.pipelines.generate._GenerateJob.texture", broken_texture)
    _, messages = run_job(client, photo(seed=5), seed=21)
    meshes = [m for m in messages if isinstance(m, Mesh)]
    assert [m.kind for m in meshes] == ["geometry"]
    assert meshes[0].texture is not None and len(meshes[0].faces) > 100  # usable: baked colours
    failure = messages[-1]
    assert isinstance(failure, Failed) and failure.stage == "texture" and "texture stage exploded" in failure.message


@pytest.mark.parametrize("make, words", [
    (lambda: photo()[:60], "damaged or truncated"),
    (lambda: _png_header(20_000, 20_000), "too large"),
    (lambda: _encoded(Image.new("RGB", (8, 8))), "only 8 × 8"),
])
def test_bad_images_fail_cleanly_and_the_server_keeps_serving(client, make, words):
    _, messages = run_job(client, make())
    failure = messages[-1]
    assert isinstance(failure, Failed) and failure.code == "invalid_request" and words in failure.message
    assert failure.stage == "preprocess" and failure.hint
    assert not any(isinstance(m, (Mesh, Preview)) for m in messages)
    _, after = run_job(client, photo(seed=3), seed=5)  # cached from an earlier test or computed afresh
    assert isinstance(after[-1], Mesh) and after[-1].kind == "final"


@pytest.mark.parametrize("options, words", [
    ({"face_count": 100}, "unknown option 'face_count'"),
    ({"faces": 499}, "option 'faces' must be an integer from 500 to 500,000, got 499"),
    ({"geometry_steps": 20_000}, "option 'geometry_steps' must be an integer from 1 to 5,000"),
    ({"texture_steps": 2_000}, "option 'texture_steps' must be an integer from 0 to 1,000"),
    ({"texture_size": 300}, "option 'texture_size' must be one of 256, 512, 1024, 2048, 4096"),
])
def test_bad_options_are_refused_before_accepted_and_no_job_is_created(client, server, options, words):
    job = client.submit(photo(), "a red disc", quality="draft", options=options)
    messages = [e.message for e in of_job(collect(client, job, timeout_s=30), job)]
    assert len(messages) == 1 and isinstance(messages[0], Failed), messages  # no `accepted`, no progress
    assert messages[0].code == "invalid_request" and words in messages[0].message and messages[0].hint
    assert server._jobs.held() == 0
    _, after = run_job(client, photo(seed=3), seed=5)  # the server keeps serving
    assert isinstance(after[-1], Mesh) and after[-1].kind == "final"


def test_the_welcome_lists_the_request_kinds_and_options_this_backend_accepts(client):
    welcome = client.welcome
    assert welcome.protocol == "2.5" and welcome.request_kinds == ["generate"]
    assert {"faces", "elevation", "fixer", "texture_size"} <= set(welcome.options)


def _encoded(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_an_empty_prompt_is_captioned_once_and_the_caption_is_reused(client):
    image = photo(seed=6)
    _, first = run_job(client, image, prompt="", seed=31)
    _, second = run_job(client, image, prompt="", seed=31)
    for messages, cached in ((first, "miss"), (second, "hit")):
        metadata = messages[-1].metadata
        assert metadata.captioned is True and metadata.cache["caption"] == cached
    assert second[-1].metadata.prompt == first[-1].metadata.prompt
    _, named = run_job(client, image, prompt="a red disc", seed=31)  # the artist's prompt wins
    assert named[-1].metadata.captioned is False and "caption" not in named[-1].metadata.cache


def test_the_reference_embedding_is_computed_once_per_job(client, pipeline, monkeypatch):
    from backend.models import records

    zero123 = pipeline.registry.get(records.NOVEL_VIEW)
    calls = []
    real = zero123.encode_reference
    monkeypatch.setattr(zero123, "encode_reference", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    _, messages = run_job(client, photo(seed=2), seed=41)  # geometry (SDS, pseudo views) and texture both use it
    assert messages[-1].metadata.cache["geometry"] == "miss" and len(calls) == 1
