"""The add-on inside real Blender (bpy module) against a real backend (tiny models).

The backend is a separate `python -m backend serve` process, as for an artist; jobs use the draft
preset shortened through the panel's step overrides, so each takes seconds on 2 CPU cores.
Timers do not fire in the bpy module, so `headless.drive` ticks the session.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from backend.serving.local import LocalBackend, backend_python, free_tcp_endpoint  # noqa: E402

ADDON = "blender_addon"


def disc_png(path, size: int = 96, mode: str = "RGBA") -> str:
    """A red disc on transparency (the tiny segmenter finds nothing, so the cut-out comes from alpha)."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[inside] = (200, 40, 30, 255)
    if mode == "I;16":  # 16-bit greyscale: the disc bright on black
        Image.fromarray((inside * 50_000).astype(np.uint16)).save(path)
    else:
        Image.fromarray(rgba).save(path)
    return str(path)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    cache = tmp_path_factory.mktemp("backend-cache")
    with LocalBackend(models="tiny", extra_args=("--device", "cpu", "--cache-dir", str(cache)),
                      startup_timeout_s=240) as server:
        yield server


@pytest.fixture
def addon(empty_scene, backend):
    import addon_utils

    from blender_addon import session

    addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_address, prefs.auto_start = backend.endpoint, False
    settings = bpy.context.scene.lift3d
    settings.quality, settings.geometry_steps, settings.texture_steps = "draft", 12, 2
    settings.use_geometry_steps = settings.use_texture_steps = True
    yield prefs
    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)
    assert session._session is None  # unregister closed the connection


def _raise(exc):
    raise exc


def lift3d_objects():
    return sorted(ob.name for ob in bpy.data.objects if "lift3d_prompt" in ob or "lift3d_preview" in ob)


def use_image(path) -> None:
    bpy.context.scene.lift3d.image = bpy.data.images.load(str(path))


@pytest.fixture
def built(monkeypatch):
    """Records what the importer was asked to build: (kind, vertices, faces, texture shape)."""
    from blender_addon import importer

    calls = []
    real = importer.build_mesh_object

    def spy(mesh, **kw):
        calls.append((mesh.kind, len(mesh.vertices), len(mesh.faces),
                      None if mesh.texture is None else mesh.texture.shape))
        return real(mesh, **kw)

    monkeypatch.setattr(importer, "build_mesh_object", spy)
    return calls


def test_generate_previews_then_geometry_then_final_mesh(addon, tmp_path, built):
    from blender_addon import headless, preview, session
    from blender_addon.core.jobs import Phase

    use_image(disc_png(tmp_path / "disc.png"))
    bpy.context.scene.lift3d.prompt = "a red disc"
    bpy.context.scene.cursor.location = (2.0, 1.0, 0.5)
    assert bpy.ops.lift3d.generate() == {"FINISHED"}
    sess = session.get()
    job_id = sess.job.id
    seen = {"preview_points": 0, "geometry_before_final": False}

    def watch(s):
        ob = preview.find_preview(job_id)
        if ob is not None:
            seen["preview_points"] = max(seen["preview_points"], len(ob.data.vertices))
        if s.job is not None and s.job.geometry_object and not s.job.final_object:
            seen["geometry_before_final"] = bpy.data.objects.get(s.job.geometry_object) is not None

    job = headless.drive(timeout_s=240, on_tick=watch)
    assert job.phase == Phase.DONE, (job.error, job.hint)
    assert seen["preview_points"] > 0 and seen["geometry_before_final"]
    assert [kind for kind, *_ in built] == ["geometry", "final"]

    ob = bpy.data.objects[job.final_object]
    assert lift3d_objects() == [ob.name]  # preview and untextured mesh replaced, nothing else left
    _, n_vertices, n_faces, texture_shape = built[-1]
    assert (len(ob.data.vertices), len(ob.data.polygons)) == (n_vertices, n_faces) and n_faces > 100
    assert ob.data.uv_layers.active is not None
    image = ob.active_material.node_tree.nodes["Image Texture"].image
    assert tuple(image.size) == (texture_shape[1], texture_shape[0]) == (256, 256)
    assert image.packed_file is not None
    assert (ob["lift3d_prompt"], ob["lift3d_seed"], ob["lift3d_preset"], ob["lift3d_job"]) == \
        ("a red disc", 0, "draft", job_id)
    assert ob["lift3d_image"] == "disc.png" and ob["lift3d_stage"] == "final"
    assert ob.name == "Red disc (tiny models: noise)"
    # Bottom centre at the 3D cursor, largest side = the preference's object size.
    world = np.array([ob.matrix_world @ v.co for v in ob.data.vertices])
    assert world[:, 2].min() == pytest.approx(0.5, abs=1e-4)
    assert (world.max(0) - world.min(0)).max() == pytest.approx(addon.object_size, rel=1e-4)
    assert sess.error is None and sess.job is None

    # A Cycles render of the result, for people to look at: the object covers the image centre.
    png = headless.render_object(ob, tmp_path / "render.png", size=96, samples=4)
    pixels = np.asarray(Image.open(png).convert("RGB"), np.float32)
    background = pixels[0, 0]
    assert np.abs(pixels[40:56, 40:56] - background).sum(-1).mean() > 10


def test_regenerate_with_a_new_prompt_hits_the_cache(addon, tmp_path):
    from blender_addon import headless

    use_image(disc_png(tmp_path / "disc.png"))
    bpy.context.scene.lift3d.prompt = "a red disc"
    bpy.ops.lift3d.generate()
    first = headless.drive(timeout_s=240)
    old = bpy.data.objects[first.final_object]
    old.location.x += 3.0  # the artist moved it; the regenerated object takes its place
    moved_to = tuple(old.location)

    bpy.context.scene.lift3d.prompt = "a shiny red plate"
    assert bpy.ops.lift3d.regenerate() == {"FINISHED"}
    second = headless.drive(timeout_s=240)
    assert second.phase == "done", (second.error, second.hint)
    # Only the texture stage ran again (wall times are too noisy on 2 cores to compare).
    assert second.metadata.cache == {"preprocess": "hit", "geometry": "hit", "mesh": "hit"}
    new = bpy.data.objects[second.final_object]
    assert new["lift3d_prompt"] == "a shiny red plate" and new["lift3d_seed"] == first.request.seed
    assert tuple(new.location) == pytest.approx(moved_to)
    assert first.final_object not in bpy.data.objects and lift3d_objects() == [new.name]

    # One undo step per finished job: Ctrl+Z brings the previous result back.
    new_name = new.name
    bpy.ops.ed.undo()
    assert lift3d_objects() == [first.final_object] and new_name not in bpy.data.objects


def test_cancel_mid_job_leaves_nothing(addon, tmp_path):
    from blender_addon import headless, preview, session
    from blender_addon.core.jobs import UNCONFIRMED_CANCEL, Phase

    # 16-bit greyscale and no prompt: decoded and captioned by the backend (preprocess passes).
    use_image(disc_png(tmp_path / "grey16.png", mode="I;16"))
    bpy.context.scene.lift3d.prompt = ""
    bpy.context.scene.lift3d.use_geometry_steps, bpy.context.scene.lift3d.geometry_steps = True, 400
    bpy.ops.lift3d.generate()
    sess = session.get()
    job_id = sess.job.id
    headless.drive(until=lambda: sess.job.finished or (sess.job.stage == "geometry" and sess.job.previews > 0),
                   timeout_s=240)
    assert sess.job is not None and preview.find_preview(job_id) is not None
    assert bpy.ops.lift3d.cancel() == {"FINISHED"}
    cancelled_at = time.monotonic()
    job = headless.drive(timeout_s=30)
    # The backend confirmed (within the add-on's 5 s grace period, after which it gives up waiting).
    assert job.phase == Phase.CANCELLED and job.note != UNCONFIRMED_CANCEL
    print(f"cancel confirmed after {time.monotonic() - cancelled_at:.2f} s")
    assert lift3d_objects() == [] and sess.error is None
    assert bpy.ops.lift3d.generate.poll()  # the panel is ready again


def test_backend_down_at_generate(addon, tmp_path, monkeypatch):
    from blender_addon import headless, session

    monkeypatch.setattr("blender_addon.core.jobs.CONNECT_TIMEOUT_S", 1.0)
    addon.backend_address = free_tcp_endpoint()  # nothing listens there
    use_image(disc_png(tmp_path / "disc.png"))
    assert bpy.ops.lift3d.generate() == {"FINISHED"}
    job = headless.drive(timeout_s=30)
    assert job.phase == "failed" and "no Lift3D backend answered" in job.error
    assert "backend serve" in job.hint
    assert session.get().error == (job.error, job.hint)
    assert lift3d_objects() == [] and bpy.ops.lift3d.generate.poll()

    # Auto-start without a backend Python: refused at once, with what to set.
    addon.auto_start, addon.python_path = True, ""
    with pytest.raises(RuntimeError, match="Backend Python"):
        bpy.ops.lift3d.generate()
    assert session.get().job is None and lift3d_objects() == []


def test_local_backend_started_by_the_addon_then_killed_mid_job(addon, tmp_path):
    from blender_addon import headless, session

    addon.backend_address, addon.auto_start = free_tcp_endpoint(), True
    addon.python_path, addon.local_models = backend_python(), "tiny"
    bpy.context.scene.lift3d.use_geometry_steps, bpy.context.scene.lift3d.geometry_steps = True, 400
    use_image(disc_png(tmp_path / "disc.png"))
    assert bpy.ops.lift3d.generate() == {"FINISHED"}
    sess = session.get()
    assert sess.backend is not None and sess.backend.running
    headless.drive(until=lambda: sess.job.finished or sess.job.previews > 0, timeout_s=240)
    assert "tiny models" in sess.status()[1]
    sess.backend.process.kill()
    job = headless.drive(timeout_s=30)
    assert job.phase == "failed" and "local backend exited" in job.error
    assert lift3d_objects() == []


def test_bad_inputs_are_refused_with_a_reason(addon, tmp_path):
    from blender_addon import session

    bpy.context.scene.lift3d.image = None
    assert not bpy.ops.lift3d.generate.poll()
    with pytest.raises(RuntimeError, match="Choose an image first"):
        bpy.ops.lift3d.generate()

    bpy.context.scene.lift3d.image = bpy.data.images.new("huge", 9000, 16)
    with pytest.raises(RuntimeError, match="8192"):
        bpy.ops.lift3d.generate()
    assert "Scale it down" in session.get().error[0]

    gone = tmp_path / "gone.png"
    use_image(disc_png(gone))
    gone.unlink()
    with pytest.raises(RuntimeError, match="missing"):
        bpy.ops.lift3d.generate()

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    images_before = len(bpy.data.images)
    with pytest.raises(RuntimeError, match="cannot read it as an image"):
        bpy.ops.lift3d.open_image(filepath=str(not_an_image))
    assert len(bpy.data.images) == images_before  # the unreadable file left no image behind
    assert session.get().job is None and lift3d_objects() == []


def test_register_and_unregister_twice(empty_scene):
    import addon_utils

    for _ in range(2):
        addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
        assert hasattr(bpy.types.Scene, "lift3d") and bpy.ops.lift3d.generate.idname() == "LIFT3D_OT_generate"
        assert "LIFT3D_PT_main" in dir(bpy.types)
        addon_utils.disable(ADDON, default_set=True, handle_error=_raise)
        assert not hasattr(bpy.types.Scene, "lift3d") and "LIFT3D_PT_main" not in dir(bpy.types)
