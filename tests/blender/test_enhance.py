"""Enhance Render inside real Blender (bpy module): against a real backend process with the tiny
preset (a Cycles render and an image datablock made into new, packed images of the same size;
cancel and a backend failure leave nothing), and with a scripted client for the orders a real
backend only produces by chance (a backend without `enhance`, the welcome arriving after the
press, a result that cannot be built). The tiny fixer's pixels are noise: sizes, channels,
datablocks and properties are checked, never the content."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from protocol import Accepted, EnhancedImage, Progress, Welcome  # noqa: E402
from protocol.client import ConnectionState, Health  # noqa: E402
from protocol.codec import Envelope  # noqa: E402

ADDON = "blender_addon"


def _raise(exc):
    raise exc


def photo(path, width: int = 48, height: int = 32, fmt: str = "PNG", truncate: bool = False) -> str:
    rng = np.random.default_rng(width * height)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2] if truncate else data)
    return str(path)


def render(width: int = 64, height: int = 40, transparent: bool = True) -> None:
    """A tiny Cycles render of the default cube, so the Render Result has pixels."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", 1
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.film_transparent = transparent
    bpy.ops.render.render()


def images() -> set[str]:
    return {image.name for image in bpy.data.images}


# -- against a real backend --------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from backend.serving.local import LocalBackend

    cache = tmp_path_factory.mktemp("backend-cache")
    with LocalBackend(models="tiny", extra_args=("--device", "cpu", "--cache-dir", str(cache)),
                      startup_timeout_s=240) as server:
        yield server


@pytest.fixture
def addon(backend):
    import addon_utils

    from blender_addon import session

    bpy.ops.wm.read_factory_settings(use_empty=False)  # the default cube, camera and light
    addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_address, prefs.auto_start = backend.endpoint, False
    yield bpy.context.scene.lift3d.enhance
    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)
    assert session._session is None


def test_enhance_render_makes_a_packed_image_of_the_renders_size(addon, tmp_path):
    from blender_addon import headless, session
    from blender_addon.core.jobs import Phase

    scene = bpy.context.scene
    render(64, 40)
    scene.render.image_settings.file_format = "OPEN_EXR"  # the artist's own output settings...
    scene.render.image_settings.color_depth = "16"
    addon.source = "RENDER"
    before = images()
    assert bpy.ops.lift3d.enhance() == {"FINISHED"}
    # ...are what they were after the Render Result was saved as PNG for sending.
    assert (scene.render.image_settings.file_format, scene.render.image_settings.color_depth) == ("OPEN_EXR", "16")
    job = headless.drive(timeout_s=240)
    assert job.phase == Phase.DONE, (job.error, job.hint)
    assert images() - before == {job.result_image}
    image = bpy.data.images[job.result_image]
    assert image.name == "Render Result (enhanced) (tiny models: noise)"
    assert tuple(image.size) == (64, 40) and image.packed_file is not None and image.use_fake_user
    assert image.depth == 32  # film transparent: the render's alpha came back (RGBA)
    assert (image["lift3d_enhanced_from"], image["lift3d_fixer"], image["lift3d_kind"]) == \
        ("Render Result", "difix", "enhance")
    assert session.get().error is None and session.get().job is None

    # Saved and opened again: the image is in the file, with no file on disk.
    path = tmp_path / "enhanced.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    name = image.name
    bpy.ops.wm.open_mainfile(filepath=str(path))
    reopened = bpy.data.images[name]
    assert reopened.packed_file is not None and tuple(reopened.size) == (64, 40)


def test_enhance_an_image_with_a_reference_uses_difix_ref(addon, tmp_path):
    from blender_addon import headless
    from blender_addon.core.jobs import Phase

    addon.source = "IMAGE"
    addon.image = bpy.data.images.load(photo(tmp_path / "shot.jpg", 45, 29, fmt="JPEG"))
    addon.reference = bpy.data.images.load(photo(tmp_path / "clean.png", 90, 58))
    addon.use_fixer = False  # the backend decides: Difix-ref, since a reference is sent
    before = images()
    assert bpy.ops.lift3d.enhance() == {"FINISHED"}
    job = headless.drive(timeout_s=240)
    assert job.phase == Phase.DONE, (job.error, job.hint)
    image = bpy.data.images[job.result_image]
    assert images() - before == {image.name} and image.name == "shot.jpg (enhanced) (tiny models: noise)"
    assert tuple(image.size) == (45, 29) and image.packed_file is not None and image.depth == 24
    assert (image["lift3d_fixer"], image["lift3d_used_reference"], image["lift3d_reference"]) == \
        ("difix-ref", True, "clean.png")


def test_cancel_mid_job_leaves_nothing(addon, tmp_path, monkeypatch):
    from blender_addon import headless, session
    from blender_addon.core.jobs import UNCONFIRMED_CANCEL, Phase

    # The fixer's one step cannot stop half-way and takes seconds on 2 CPU cores with the tiny
    # models; wait for the backend's confirmation instead of giving up after the usual 5 s.
    monkeypatch.setattr("blender_addon.core.jobs.CANCEL_GRACE_S", 120.0)
    addon.source = "IMAGE"
    addon.image = bpy.data.images.load(photo(tmp_path / "shot.png", 128, 96))
    before = images()
    assert bpy.ops.lift3d.enhance() == {"FINISHED"}
    sess = session.get()
    headless.drive(until=lambda: sess.job.finished or sess.job.phase == Phase.RUNNING, timeout_s=120)
    assert bpy.ops.lift3d.cancel() == {"FINISHED"}
    job = headless.drive(timeout_s=150)
    # Confirmed by the backend (or its result arrived before the cancel and was dropped): nothing made.
    assert job.phase == Phase.CANCELLED and job.note != UNCONFIRMED_CANCEL
    assert images() == before and job.result_image is None and sess.error is None
    assert bpy.ops.lift3d.enhance.poll()  # ready again


def test_cancel_right_after_pressing_leaves_nothing(addon, tmp_path):
    from blender_addon import headless, session
    from blender_addon.core.jobs import UNCONFIRMED_CANCEL, Phase

    addon.source = "IMAGE"
    addon.image = bpy.data.images.load(photo(tmp_path / "shot.png", 96, 64))
    before = images()
    assert bpy.ops.lift3d.enhance() == {"FINISHED"}
    sess = session.get()
    assert bpy.ops.lift3d.cancel() == {"FINISHED"}  # before the backend has even answered
    job = headless.drive(timeout_s=60)
    assert job.phase == Phase.CANCELLED and job.note != UNCONFIRMED_CANCEL and images() == before
    # Nothing the backend might still send about the job is built.
    deadline = time.monotonic() + 2.0
    headless.drive(until=lambda: time.monotonic() > deadline, timeout_s=10)
    assert images() == before and sess.error is None


def test_a_backend_failure_leaves_nothing_and_says_why(addon, tmp_path):
    from blender_addon import headless, session
    from blender_addon.core.jobs import Phase

    addon.source = "IMAGE"
    addon.image = bpy.data.images.load(photo(tmp_path / "shot.png"))
    # Blender shows what it could read of a cut-off JPEG; the backend refuses the damaged file.
    addon.reference = bpy.data.images.load(photo(tmp_path / "cut.jpg", fmt="JPEG", truncate=True))
    before = images()
    assert bpy.ops.lift3d.enhance() == {"FINISHED"}
    job = headless.drive(timeout_s=240)
    assert job.phase == Phase.FAILED and "damaged or truncated" in job.error and job.hint
    assert session.get().error == (job.error, job.hint)
    assert images() == before


def test_bad_sources_are_refused_before_sending(addon, tmp_path):
    from blender_addon import session

    addon.source = "IMAGE"
    addon.image = None
    assert not bpy.ops.lift3d.enhance.poll()
    with pytest.raises(RuntimeError, match="Choose the image to enhance"):
        bpy.ops.lift3d.enhance()
    addon.image = bpy.data.images.new("huge", 2100, 16)
    with pytest.raises(RuntimeError, match="2100 × 16 pixels; Enhance accepts up to 2048 a side"):
        bpy.ops.lift3d.enhance()
    assert "Lower the render resolution" in session.get().error[0]
    # A Render Result with nothing rendered yet (the startup file has an empty one).
    addon.source = "RENDER"
    with pytest.raises(RuntimeError, match="render an image first"):
        bpy.ops.lift3d.enhance()
    assert session.get().job is None


# -- with a scripted client --------------------------------------------------------------------


class ScriptedClient:
    """Looks like protocol.client.Client to the session; the test pushes messages and the welcome."""

    address = "tcp://scripted:1"

    def __init__(self, request_kinds=("generate", "enhance"), welcomed: bool = True) -> None:
        self.state = ConnectionState.READY
        self.welcome = self.make_welcome(request_kinds) if welcomed else None
        self.inbox: list[Envelope] = []
        self.cancelled: list[str] = []
        self.enhanced: list[dict] = []

    @staticmethod
    def make_welcome(request_kinds) -> Welcome:
        return Welcome(protocol="2.0", backend_version="0.2", device="cpu", gpu_name=None, gpu_memory_mb=None,
                       model_preset="tiny", quality_presets=["draft"], heartbeat_interval_s=1.0,
                       request_kinds=list(request_kinds), options=["fixer"])

    def enhance(self, image, reference=None, seed=0, options=None) -> str:
        self.enhanced.append({"image": image, "reference": reference, "options": options})
        return f"job-{len(self.enhanced)}"

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def poll(self, budget_ms: float = 10.0, wait: bool = False) -> list[Envelope]:
        out, self.inbox = self.inbox, []
        return out

    def health(self) -> Health:
        return Health(self.state, 0.1)

    def close(self) -> None:
        self.state = ConnectionState.CLOSED

    def push(self, job_id: str, message) -> None:
        self.inbox.append(Envelope(message=message, msg_id="m", job_id=job_id))


@pytest.fixture
def sess(empty_scene):
    import addon_utils

    from blender_addon import session

    addon_utils.enable(ADDON, default_set=True)
    s = session.get()
    yield s
    s.client = None
    addon_utils.disable(ADDON, default_set=True)


def enhance_request(size=(40, 24)):
    from blender_addon.core.jobs import EnhanceRequest

    return EnhanceRequest(image=b"\x89PNG", source_name="Render Result", size=size, options={"fixer": "difix"})


def pixels(width=40, height=24, channels=4) -> EnhancedImage:
    return EnhancedImage(image=np.full((height, width, channels), 200, np.uint8), fixer="difix")


def test_a_backend_without_enhance_is_named_before_anything_is_sent(sess):
    from blender_addon.session import ConnectError

    sess.client = ScriptedClient(request_kinds=["generate"])
    with pytest.raises(ConnectError, match="this backend \\(version 0.2\\) does not offer enhance: update it"):
        sess.submit(enhance_request())
    assert sess.client.enhanced == [] and sess.job is None

    # Connecting: the request waits for the welcome, then the welcome decides.
    before = images()
    sess.client, sess.connected_at = ScriptedClient(welcomed=False), time.monotonic()
    job = sess.submit(enhance_request())
    sess.tick()
    assert job.awaiting_send and sess.client.enhanced == []
    sess.client.welcome = ScriptedClient.make_welcome(["generate"])
    sess.tick()
    assert sess.last_job is job and job.phase == "failed" and "does not offer enhance" in sess.error[0]
    assert sess.client.enhanced == [] and images() == before


def test_a_request_held_for_the_welcome_is_sent_when_it_arrives_and_finishes(sess):
    sess.client, sess.connected_at = ScriptedClient(welcomed=False), time.monotonic()
    job = sess.submit(enhance_request())
    sess.tick()
    assert job.awaiting_send
    sess.client.welcome = ScriptedClient.make_welcome(["generate", "enhance"])
    sess.tick()
    assert job.id == "job-1" and sess.client.enhanced[0]["options"] == {"fixer": "difix"}
    for message in (Accepted(queue_position=0), Progress(stage="enhance", step=2, total=4), pixels()):
        sess.client.push(job.id, message)
    sess.tick()
    assert sess.last_job is job and job.phase == "done"
    image = bpy.data.images[job.result_image]
    assert tuple(image.size) == (40, 24) and image.packed_file is not None
    assert image["lift3d_job"] == "job-1"


def test_a_result_racing_a_cancel_and_a_result_that_cannot_be_built_leave_nothing(sess):
    sess.client = ScriptedClient()
    before = images()
    job = sess.submit(enhance_request())
    sess.cancel()
    assert sess.client.cancelled == [job.id]
    sess.client.push(job.id, pixels())  # it finished before it saw the cancel
    sess.tick()
    assert sess.last_job.phase == "cancelled" and images() == before

    job = sess.submit(enhance_request())
    sess.client.push(job.id, pixels(width=24, height=40))  # the wrong size
    sess.tick()
    assert sess.last_job.phase == "failed" and "24 × 40 image" in sess.error[0] and images() == before

    # The datablock exists when a custom property cannot be stored: it is removed again.
    from blender_addon import scene
    from blender_addon.core.effects import BuildImage

    job = sess.submit(enhance_request())
    scene.carry_out(sess, job, [BuildImage(job.id, pixels().image, "Broken", {"lift3d_note": object()})])
    assert job.phase == "failed" and "could not make the enhanced image" in job.error
    assert images() == before
    sess.tick()
    assert sess.last_job is job and "could not make the enhanced image" in sess.error[0]


def test_the_enhance_panel_draws_in_every_state(sess):
    from tests.blender.test_panels import draw, texts

    from blender_addon import panels

    settings = bpy.context.scene.lift3d.enhance
    sess.client = ScriptedClient(request_kinds=["generate"])
    def shown(panel) -> str:  # wrapped lines joined again
        return texts(draw(panel, bpy.context)).replace(" | ", " ")

    assert "This backend does not offer Enhance: update it" in shown(panels.LIFT3D_PT_enhance)
    sess.client = ScriptedClient()
    settings.source = "IMAGE"
    calls = draw(panels.LIFT3D_PT_enhance, bpy.context)
    assert "Choose the image to enhance" in shown(panels.LIFT3D_PT_enhance)
    assert any(name == "operator" and args[0] == "lift3d.enhance" for name, args, _ in calls)
    assert any(name == "prop" and args[1] == "fixer" for name, args, _ in calls)
    job = sess.submit(enhance_request())
    sess.client.push(job.id, pixels())
    sess.tick()
    assert "Made image 'Render Result (enhanced)'" in shown(panels.LIFT3D_PT_enhance)
    assert ": Render Result (enhanced)" in shown(panels.LIFT3D_PT_main)  # "Done in 0 s: ..."
