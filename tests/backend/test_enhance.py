"""The `enhance` request kind end to end: the real server, the real client and the enhance pipeline
with the tiny preset's fixers (random weights: the pixels are noise, so these tests check sizes,
channels, alpha, message order, refusals and cancellation, never the content)."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

import backend.pipelines.enhance as enhance_module
from backend.models.registry import ModelRegistry, ModelSettings
from backend.pipelines import Pipelines
from backend.pipelines.cache import ResultCache
from protocol import MAX_ENHANCE_SIDE, Accepted, Cancelled, EnhancedImage, Failed, Progress
from tests.support import collect, connected_client, of_job, running_server, stepping_pipeline, wait_for


def png(width: int, height: int, mode: str = "RGBA", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    if mode == "RGBA":
        rgba[: height // 2, :, 3] = 0  # a transparent top half, a ramp of alpha below it
        rgba[height // 2:, :, 3] = np.linspace(1, 255, width, dtype=np.uint8)[None]
    buffer = io.BytesIO()
    Image.fromarray(rgba if mode == "RGBA" else rgba[..., :3]).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    registry = ModelRegistry(ModelSettings(preset="tiny", device="cpu"))
    return Pipelines(registry, ResultCache(tmp_path_factory.mktemp("results")))


@pytest.fixture(scope="module")
def server(pipelines):
    with running_server(pipelines, model_preset="tiny") as server:
        yield server


@pytest.fixture
def client(server):
    client = connected_client(server)
    yield client
    client.close()


def run_enhance(client, image: bytes, reference: bytes | None = None, **options):
    job = client.enhance(image, reference=reference, options=options)
    return job, [e.message for e in of_job(collect(client, job, timeout_s=180), job)]


def test_the_welcome_lists_enhance_and_each_option_once(client):
    welcome = client.welcome
    assert welcome.protocol == "2.5" and welcome.request_kinds == ["generate", "enhance", "texture", "scene"]
    assert welcome.options.count("fixer") == 1 and "faces" in welcome.options


def test_an_odd_sized_image_comes_back_the_same_size_with_its_alpha_untouched(client):
    image = png(37, 21)
    job, messages = run_enhance(client, image)
    assert isinstance(messages[0], Accepted) and isinstance(messages[-1], EnhancedImage)
    progress = messages[1:-1]
    assert progress and all(isinstance(m, Progress) and m.stage == "enhance" for m in progress)
    steps = [m.step for m in progress]
    assert steps == sorted(steps) and (progress[-1].step, progress[-1].total) == (4, 4)
    assert any("NOTICE: tiny preset" in m.message for m in progress)
    assert any(m.message == "fixing 37 × 21 with difix" for m in progress)  # no reference: Difix
    result = messages[-1]
    assert result.image.shape == (21, 37, 4) and result.image.dtype == np.uint8
    sent = np.asarray(Image.open(io.BytesIO(image)))
    np.testing.assert_array_equal(result.image[..., 3], sent[..., 3])  # only the colour is fixed
    assert (result.fixer, result.used_reference, result.models, result.tiny) == ("difix", False, "tiny", True)


def test_a_reference_selects_difix_ref_and_an_opaque_image_stays_rgb(client):
    _, messages = run_enhance(client, png(64, 40, mode="RGB"), reference=jpeg(300, 200))
    result = messages[-1]
    assert isinstance(result, EnhancedImage), messages[-1]
    assert result.image.shape == (40, 64, 3) and result.fixer == "difix-ref" and result.used_reference


@pytest.mark.parametrize("fixer", ["difix", "sd-turbo"])
def test_fixers_without_a_reference_input_ignore_one_and_say_so(client, fixer):
    _, messages = run_enhance(client, png(48, 32, mode="RGB"), reference=jpeg(48, 32), fixer=fixer)
    result = messages[-1]
    assert isinstance(result, EnhancedImage) and result.image.shape == (32, 48, 3)
    assert result.fixer == fixer and not result.used_reference
    assert any(f"{fixer} does not use the reference" in m.message for m in messages if isinstance(m, Progress))


@pytest.mark.parametrize("image, reference, options, code, words", [
    (png(32, 32), None, {"fixer": "off"}, "invalid_request", "cannot be 'off' for an enhance request"),
    (png(32, 32), None, {"fixer": False}, "invalid_request", "cannot be 'off' for an enhance request"),
    (png(32, 32), None, {"fixer": "difix3d"}, "invalid_request", "must be one of off, difix, difix-ref, sd-turbo"),
    (png(32, 32), None, {"faces": 900}, "invalid_request", "unknown option 'faces' for an enhance request"),
    (png(MAX_ENHANCE_SIDE + 1, 16, mode="RGB"), None, {}, "too_large", f"enhance accepts up to {MAX_ENHANCE_SIDE}"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), None, {}, "invalid_request", "the image is not an image Lift3D can read"),
    (png(32, 32), b"\x89PNG\r\n\x1a\n" + bytes(40), {}, "invalid_request", "the reference is not an image"),
])
def test_bad_requests_are_refused_before_accepted_and_the_server_keeps_serving(client, server, image, reference,
                                                                               options, code, words):
    _, messages = run_enhance(client, image, reference, **options)
    assert len(messages) == 1 and isinstance(messages[0], Failed), messages
    failure = messages[0]
    assert failure.code == code and words in failure.message and failure.hint
    assert server._jobs.held() == 0  # no job was created
    _, after = run_enhance(client, png(24, 16, mode="RGB"))
    assert isinstance(after[-1], EnhancedImage) and after[-1].image.shape == (16, 24, 3)


def test_a_file_that_only_breaks_when_decoded_fails_the_job_with_a_reason(client):
    broken = png(64, 64, mode="RGB")[:120]  # a valid header, then nothing
    _, messages = run_enhance(client, broken)
    assert isinstance(messages[0], Accepted) and isinstance(messages[-1], Failed)
    assert messages[-1].code == "invalid_request" and "damaged or truncated" in messages[-1].message
    assert messages[-1].stage == "enhance"


def test_cancelling_a_running_and_a_queued_enhance(client, server, monkeypatch):
    """The fixer's loading is held until the test has cancelled (timing only: the real tiny fixer
    is loaded and would run), so the cancel lands mid-job deterministically."""
    loading, release = threading.Event(), threading.Event()
    real = enhance_module.load_fixer

    def held_load(registry, name):
        loading.set()
        assert release.wait(30)
        return real(registry, name)

    monkeypatch.setattr(enhance_module, "load_fixer", held_load)
    running = client.enhance(png(32, 32))
    wait_for(loading.is_set, timeout_s=60, poll=lambda: client.poll(budget_ms=10))
    queued = client.enhance(png(32, 32))
    wait_for(lambda: server._jobs.held() == 2, timeout_s=10, poll=lambda: client.poll(budget_ms=10))
    client.cancel(queued)
    client.cancel(running)
    wait_for(lambda: server._jobs.held() <= 1, timeout_s=10, poll=lambda: client.poll(budget_ms=10))
    release.set()
    envelopes = collect(client, {running, queued}, timeout_s=60, linger_s=0.3)
    first = [e.message for e in of_job(envelopes, running)]
    second = [e.message for e in of_job(envelopes, queued)]
    assert isinstance(first[-1], Cancelled) and first[-1].stage == "enhance"
    assert not any(isinstance(m, EnhancedImage) for m in first)
    assert isinstance(second[-1], Cancelled) and second[-1].stage is None
    assert not any(isinstance(m, (EnhancedImage, Progress)) for m in second)
    assert server._jobs.held() == 0


def test_a_backend_whose_runner_does_not_serve_enhance_refuses_it_by_name():
    with running_server(stepping_pipeline()) as server:
        client = connected_client(server)
        assert client.welcome.request_kinds == ["generate"] and "fixer" in client.welcome.options
        job = client.enhance(png(32, 32))
        [failure] = [e.message for e in of_job(collect(client, job), job)]
        assert isinstance(failure, Failed) and failure.code == "invalid_request"
        assert failure.message == "this backend does not serve enhance requests" and "generate" in failure.hint
        client.close()


class _OutOfMemoryFixer:
    uses_reference = False

    def fix(self, images, references=None, *, generator=None):
        raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB")


def _missing(registry, name):
    from backend.models.hub import ModelUnavailableError

    raise ModelUnavailableError("the difix model nvidia/difix is not in the Hugging Face cache")


@pytest.mark.parametrize("load, code, message, hint", [
    (_missing, "pipeline_error", "the difix fixer is not available", "models download --role difix"),
    (lambda registry, name: _OutOfMemoryFixer(), "out_of_memory", "ran out of memory enhancing a 32 × 32 image",
     "Enhance a smaller image"),
])
def test_missing_weights_and_out_of_memory_fail_the_job_with_what_to_do(client, monkeypatch, load, code, message,
                                                                         hint):
    """Stand-ins for a machine without the optional fixer weights and for a GPU that is too small."""
    monkeypatch.setattr(enhance_module, "load_fixer", load)
    _, messages = run_enhance(client, png(32, 32))
    assert isinstance(messages[0], Accepted) and isinstance(messages[-1], Failed)
    failure = messages[-1]
    assert failure.code == code and message in failure.message and hint in failure.hint
    assert failure.stage == "enhance"
