"""Texture Selected inside real Blender (bpy module), against a fake backend: the real server and
client in this process, with a scripted painter as the runner (texture previews, then a painted
texture whose pixels are known, with new UVs or keeping the sent ones), and a killed backend process.
Checks what reaches the object (material, image, pixels, UV layers), what must stay as it was (the
mesh, its UV maps bit for bit, other material slots), undo, cancel and failures."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from backend.serving.jobs import FunctionRunner  # noqa: E402
from protocol import MeshMetadata, PaintedTexture, RequestKind, Stage, Texture  # noqa: E402
from tests.support import running_server  # noqa: E402

ADDON = "blender_addon"
ROOT = Path(__file__).resolve().parents[2]


def _raise(exc):
    raise exc


def pattern(size: int, seed: int) -> np.ndarray:
    """A texture [size, size, 3] uint8 whose rows all differ (a flip would show)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


class Painter:
    """The fake backend's texture pipeline. Paints `steps` views (a preview after each), then returns
    `pattern(size, 7)`; with `new_uvs` the UVs it returns are the sent ones shrunk into a corner (so
    per loop they agree, as a real unwrap of whole polygons would). `hold` keeps it after the first
    preview until set (cancel tests); it checks for cancellation meanwhile."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps, self.size, self.new_uvs, self.step_s = 3, 32, False, 0.03
        self.hold: threading.Event | None = None
        self.requests: list[Texture] = []

    def __call__(self, request: Texture, ctx) -> PaintedTexture:
        self.requests.append(request)
        ctx.report(Stage.UV, 1, 1, "kept the mesh's UVs")
        uvs = None
        if self.new_uvs:
            uvs = (request.uvs * 0.5 + 0.25).astype(np.float32) if request.uvs is not None else \
                np.full((len(request.faces), 3, 2), 0.5, np.float32)
        for step in range(1, self.steps + 1):
            ctx.check_cancelled()
            ctx.report(Stage.PAINT, step, self.steps)
            # As the real backend: new UVs ride with the first preview, so it shows on them.
            ctx.texture_preview(step, self.steps, pattern(self.size // 2, step), step / self.steps,
                                uvs if step == 1 else None)
            time.sleep(self.step_s)  # one preview per tick of the add-on, as from a real backend
            while self.hold is not None and not self.hold.is_set():
                ctx.check_cancelled()
                time.sleep(0.01)
        ctx.report(Stage.TEXTURE, 1, 1)
        return PaintedTexture(texture=pattern(self.size, 7), uvs=uvs, coverage=0.875,
                              uv_note="made new UVs: the sent ones overlap" if self.new_uvs else "kept the mesh's UVs",
                              metadata=MeshMetadata(prompt=request.prompt, seed=request.seed, models="fake"))


PAINTER = Painter()


@pytest.fixture(scope="module")
def server():
    runner = FunctionRunner(PAINTER, request_kinds=(RequestKind.GENERATE, RequestKind.TEXTURE))
    with running_server(runner) as server:
        yield server


def enable_addon(endpoint: str):
    import addon_utils

    addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_address, prefs.auto_start = endpoint, False
    return bpy.context.scene.lift3d.texture


def disable_addon():
    import addon_utils

    from blender_addon import session

    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)
    assert session._session is None


@pytest.fixture
def cube(server):
    """The default cube (a UV map, the 'Material' slot) with a second slot and a second UV map, the
    active object; the add-on set up against the fake backend."""
    bpy.ops.wm.read_factory_settings(use_empty=False)
    PAINTER.reset()
    ob = bpy.data.objects["Cube"]
    other = bpy.data.materials.new("Other")
    ob.data.materials.append(other)
    ob.active_material_index = 0
    second = ob.data.uv_layers.new(name="Second")
    uv = np.random.default_rng(3).random(len(ob.data.loops) * 2).astype(np.float32)
    second.data.foreach_set("uv", uv)
    ob.data.uv_layers.active_index = 0  # UVMap active (and the render one)
    bpy.context.view_layer.objects.active = ob
    settings = enable_addon(server.endpoint)
    settings.prompt = "weathered red paint"
    # The state an artist's Ctrl+Z returns to (a loaded file's "Original" step in a real session).
    bpy.ops.ed.undo_push(message="before Texture Selected")
    yield ob
    disable_addon()


def uv_data(me, name: str) -> np.ndarray:
    out = np.empty(len(me.loops) * 2, np.float32)
    me.uv_layers[name].data.foreach_get("uv", out)
    return out.reshape(-1, 2)


def snapshot(ob) -> dict:
    """Everything Texture Selected may touch, by value."""
    me = ob.data
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)

    def tree(material):
        if material.node_tree is None:
            return None
        nodes = material.node_tree.nodes
        return (sorted((n.name, n.type) for n in nodes),
                sorted((l.from_node.name, l.from_socket.identifier, l.to_node.name, l.to_socket.identifier)
                       for l in material.node_tree.links),
                tuple(nodes["Principled BSDF"].inputs["Base Color"].default_value)
                if nodes.get("Principled BSDF") is not None else None)

    return {
        "slots": [(slot.link, slot.material.name if slot.material else None) for slot in ob.material_slots],
        "active_slot": ob.active_material_index,
        "uv_layers": [(layer.name, layer.active, layer.active_render, uv_data(me, layer.name).tobytes())
                      for layer in me.uv_layers],
        "counts": (len(me.vertices), len(me.edges), len(me.loops), len(me.polygons)),
        "positions": co.tobytes(),
        "modifiers": [(m.name, m.type) for m in ob.modifiers],
        "materials": {m.name: tree(m) for m in bpy.data.materials},
        "images": sorted(bpy.data.images.keys()),
        "properties": sorted(ob.keys()),
    }


def pixels_of(image) -> np.ndarray:
    """The image's pixels as a texture travels: [H, W, 3] uint8, top row first."""
    width, height = image.size
    flat = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(flat)
    return np.round(flat.reshape(height, width, 4)[::-1, :, :3] * 255).astype(np.uint8)


def texture_node(material):
    return material.node_tree.nodes["Lift3D Texture"]


def base_color_source(material):
    from blender_addon.texture import principled

    links = principled(material).inputs["Base Color"].links
    return links[0].from_node if links else None


# -- results ---------------------------------------------------------------------------------------


def test_texture_selected_paints_a_new_material_live_and_keeps_the_mesh_and_its_uvs(cube):
    from blender_addon import headless, session
    from blender_addon.core.jobs import Phase

    before = snapshot(cube)
    uvmap = uv_data(cube.data, "UVMap").copy()
    live = []

    def watch(sess):  # what the artist sees while the backend paints
        image = bpy.data.images.get("Lift3D Texture Cube")
        if image is not None and sess.job is not None and not sess.job.finished and not live:
            material = cube.material_slots[0].material
            live.append((material.name, texture_node(material).image == image, tuple(image.size),
                         pixels_of(image)))

    assert bpy.ops.lift3d.texture() == {"FINISHED"}
    job = headless.drive(timeout_s=30, on_tick=watch)
    assert job.phase == Phase.DONE, (job.error, job.hint)
    assert session.get().error is None

    # What was sent: the base mesh's vertices, its 12 loop triangles, per-corner UVs of 'UVMap', normals.
    [request] = PAINTER.requests
    me = cube.data
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    np.testing.assert_array_equal(request.vertices, co.reshape(-1, 3))
    me.calc_loop_triangles()
    loops = np.array([list(t.loops) for t in me.loop_triangles])
    np.testing.assert_array_equal(request.faces, np.array([list(t.vertices) for t in me.loop_triangles]))
    np.testing.assert_array_equal(request.uvs, uvmap[loops])
    assert request.normals.shape == (8, 3) and request.prompt == "weathered red paint" and request.image is None
    assert request.options == {}  # untouched settings: the backend's defaults

    # Live: the material and image were on the object at the first preview, at the preview's size.
    assert live and live[0][:3] == ("Lift3D Cube", True, (16, 16))
    np.testing.assert_array_equal(live[0][3], pattern(16, 1))

    # The result: a new material in the active slot, Image Texture → Base Color, the sent UV map named.
    material = cube.material_slots[0].material
    assert material.name == "Lift3D Cube" and cube.material_slots[1].material.name == "Other"
    assert bpy.data.materials["Material"].use_fake_user  # the replaced material is kept, and saved
    image = bpy.data.images["Lift3D Texture Cube"]
    assert job.result_image == image.name and texture_node(material).image == image
    assert base_color_source(material) == texture_node(material)
    uv_node = material.node_tree.nodes["Lift3D UV Map"]
    assert uv_node.uv_map == "UVMap" and texture_node(material).inputs["Vector"].links[0].from_node == uv_node
    output = next(n for n in material.node_tree.nodes if n.type == "OUTPUT_MATERIAL")
    assert output.inputs["Surface"].links[0].from_node.type == "BSDF_PRINCIPLED"
    assert image.packed_file is not None and image.colorspace_settings.name == "sRGB"
    assert tuple(image.size) == (32, 32)
    np.testing.assert_array_equal(pixels_of(image), pattern(32, 7))  # top row first on the wire: flipped in

    # Nothing else changed: the mesh, its UV maps (bit for bit, active and render flags), other slots.
    after = snapshot(cube)
    for key in ("counts", "positions", "uv_layers", "modifiers", "active_slot"):
        assert after[key] == before[key], key
    assert "Lift3D UV" not in me.uv_layers
    assert cube["lift3d_texture_prompt"] == "weathered red paint" and cube["lift3d_texture_uv"] == "UVMap"
    assert cube["lift3d_texture_material"] == "NEW" and cube["lift3d_texture_image"] == image.name

    # One undo step takes all of it away again.
    bpy.ops.ed.undo()
    cube = bpy.data.objects["Cube"]
    assert snapshot(cube) == before


def test_new_uvs_go_into_a_new_uv_layer_and_the_active_materials_base_color(cube, tmp_path):
    from blender_addon import headless
    from blender_addon.core.image_source import encode_png
    from blender_addon.core.jobs import Phase

    settings = bpy.context.scene.lift3d.texture
    reference = tmp_path / "look.png"
    reference.write_bytes(encode_png(np.dstack([pattern(12, 3), np.full((12, 12), 255, np.uint8)])))
    settings.reference = bpy.data.images.load(str(reference))
    bpy.ops.ed.undo_push(message="reference chosen")
    settings.material = "ACTIVE"
    settings.use_texture_size, settings.texture_size, settings.views = True, "512", 6
    PAINTER.new_uvs = True
    before = snapshot(cube)
    material = cube.active_material
    assert material.name == "Material"
    live = []

    def watch(sess):  # the first preview already shows on the new UVs
        if sess.job is not None and not sess.job.finished and sess.job.previews and not live:
            layer = cube.data.uv_layers.get("Lift3D UV")
            node = material.node_tree.nodes.get("Lift3D UV Map")
            live.append((layer is not None and uv_data(cube.data, "Lift3D UV").tobytes(),
                         node is not None and node.uv_map))

    assert bpy.ops.lift3d.texture() == {"FINISHED"}
    job = headless.drive(timeout_s=30, on_tick=watch)
    assert live and live[0][1] == "Lift3D UV"
    assert live[0][0] == (uv_data(cube.data, "UVMap") * 0.5 + 0.25).astype(np.float32).tobytes()
    assert job.phase == Phase.DONE, (job.error, job.hint)
    assert PAINTER.requests[0].options == {"texture_size": 512, "views": 6}
    assert PAINTER.requests[0].image == reference.read_bytes()  # the reference file, as it is
    assert cube["lift3d_texture_reference"] == "look.png" and cube["lift3d_texture_material"] == "ACTIVE"

    me = cube.data
    # A new layer, filled per loop from the returned corners; the existing ones bit for bit as they were.
    assert [layer.name for layer in me.uv_layers] == ["UVMap", "Second", "Lift3D UV"]
    assert snapshot(cube)["uv_layers"][:2] == before["uv_layers"]
    assert not me.uv_layers["Lift3D UV"].active and not me.uv_layers["Lift3D UV"].active_render
    np.testing.assert_array_equal(uv_data(me, "Lift3D UV"), uv_data(me, "UVMap") * 0.5 + 0.25)
    # Wired into the artist's material: Image Texture → its Principled BSDF's Base Color, UVs from the new layer.
    assert cube.material_slots[0].material == material and len(cube.material_slots) == 2
    assert texture_node(material).image.name == job.result_image == "Lift3D Texture Cube"
    assert base_color_source(material) == texture_node(material)
    assert material.node_tree.nodes["Lift3D UV Map"].uv_map == "Lift3D UV"
    assert "Lift3D Cube" not in bpy.data.materials
    assert any("made new UVs" in warning for warning in job.warnings)
    assert snapshot(cube)["counts"] == before["counts"]

    bpy.ops.ed.undo()
    assert snapshot(bpy.data.objects["Cube"]) == before


def test_painting_again_replaces_the_previous_texture_instead_of_stacking(cube, tmp_path):
    from blender_addon import headless

    bpy.ops.lift3d.texture()
    first = headless.drive(timeout_s=30)
    PAINTER.new_uvs = True
    bpy.context.scene.lift3d.texture.prompt = "blue tiles"
    assert bpy.ops.lift3d.texture_regenerate() == {"FINISHED"}
    second = headless.drive(timeout_s=30)
    assert (first.phase, second.phase) == ("done", "done")
    lift3d_images = [i.name for i in bpy.data.images if i.name.startswith("Lift3D")]
    lift3d_materials = [m.name for m in bpy.data.materials if m.name.startswith("Lift3D")]
    assert lift3d_images == ["Lift3D Texture Cube"] and lift3d_materials == ["Lift3D Cube"]
    assert PAINTER.requests[1].prompt == "blue tiles" and cube["lift3d_texture_prompt"] == "blue tiles"
    material = cube.material_slots[0].material
    assert texture_node(material).image.name == "Lift3D Texture Cube"
    assert material.node_tree.nodes["Lift3D UV Map"].uv_map == "Lift3D UV" == cube["lift3d_texture_uv"]
    np.testing.assert_array_equal(pixels_of(bpy.data.images["Lift3D Texture Cube"]), pattern(32, 7))

    # A third time with new UVs again: the 'Lift3D UV' layer is rewritten, never a second one.
    bpy.ops.lift3d.texture_regenerate()
    assert headless.drive(timeout_s=30).phase == "done"
    assert [layer.name for layer in cube.data.uv_layers] == ["UVMap", "Second", "Lift3D UV"]
    # Regenerate sent the UVs the texture uses, so the backend could keep the layout.
    me = cube.data
    me.calc_loop_triangles()
    loops = np.array([list(t.loops) for t in me.loop_triangles])
    np.testing.assert_array_equal(PAINTER.requests[2].uvs, uv_data(me, "UVMap")[loops] * 0.5 + 0.25)

    # Saved and opened again: the texture is in the file (no file on disk), still wired.
    path = tmp_path / "textured.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    image = bpy.data.images["Lift3D Texture Cube"]
    assert image.packed_file is not None
    np.testing.assert_array_equal(pixels_of(image), pattern(32, 7))
    assert texture_node(bpy.data.objects["Cube"].material_slots[0].material).image == image


def test_a_mesh_without_uvs_gets_the_backends_uvs(cube):
    from blender_addon import headless

    me = cube.data
    while me.uv_layers:
        me.uv_layers.remove(me.uv_layers[0])
    PAINTER.new_uvs = True
    bpy.ops.lift3d.texture()
    job = headless.drive(timeout_s=30)
    assert job.phase == "done" and PAINTER.requests[0].uvs is None
    assert [layer.name for layer in me.uv_layers] == ["Lift3D UV"]
    assert cube.material_slots[0].material.node_tree.nodes["Lift3D UV Map"].uv_map == "Lift3D UV"


# -- nothing left behind ---------------------------------------------------------------------------


def test_cancel_mid_job_leaves_the_object_exactly_as_it_was(cube):
    from blender_addon import headless, session
    from blender_addon.core.jobs import UNCONFIRMED_CANCEL, Phase

    settings = bpy.context.scene.lift3d.texture
    for material_mode in ("NEW", "ACTIVE"):
        settings.material = material_mode
        PAINTER.hold = threading.Event()
        before = snapshot(cube)
        bpy.ops.lift3d.texture()
        sess = session.get()
        headless.drive(until=lambda: sess.job.finished or sess.job.previews > 0, timeout_s=30)
        assert "Lift3D Texture Cube" in bpy.data.images  # painted live...
        assert base_color_source(cube.material_slots[0].material).name == "Lift3D Texture"
        assert bpy.ops.lift3d.cancel() == {"FINISHED"}
        job = headless.drive(timeout_s=30)
        assert job.phase == Phase.CANCELLED and job.note != UNCONFIRMED_CANCEL
        assert snapshot(cube) == before, material_mode  # ...and taken off again
        assert sess.error is None and bpy.ops.lift3d.texture.poll()


def test_a_killed_backend_leaves_the_object_as_it_was_and_says_so(cube, monkeypatch):
    from blender_addon import headless, session
    from blender_addon.core.jobs import Phase

    monkeypatch.setattr("blender_addon.core.jobs.LOST_AFTER_S", 1.0)
    with fake_backend_process() as (process, endpoint):
        bpy.context.preferences.addons[ADDON].preferences.backend_address = endpoint
        before = snapshot(cube)
        bpy.ops.lift3d.texture()
        sess = session.get()
        headless.drive(until=lambda: sess.job.finished or sess.job.previews > 0, timeout_s=30)
        assert "Lift3D Texture Cube" in bpy.data.images
        process.kill()
        process.wait(10)
        job = headless.drive(timeout_s=30)
    assert job.phase == Phase.FAILED and "stopped responding" in job.error
    assert sess.error == (job.error, job.hint) and "check its console" in job.hint
    assert snapshot(cube) == before


_KILLABLE_BACKEND = """
import sys, time
import numpy as np
from backend.serving.jobs import FunctionRunner
from protocol import RequestKind
from tests.support import running_server

def paint(request, ctx):  # one preview, then paints forever
    ctx.texture_preview(1, 2, np.full((8, 8, 3), 90, np.uint8), 0.5)
    while True:
        ctx.check_cancelled()
        time.sleep(0.01)

with running_server(FunctionRunner(paint, request_kinds=(RequestKind.TEXTURE,))) as server:
    print(server.endpoint, flush=True)
    time.sleep(600)
"""


class fake_backend_process:
    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", _KILLABLE_BACKEND], cwd=ROOT, stdout=subprocess.PIPE,
                                        text=True)
        endpoint = self.process.stdout.readline().strip()
        assert endpoint.startswith("tcp://"), "the fake backend did not start"
        return self.process, endpoint

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()


def test_a_result_that_does_not_fit_the_mesh_any_more_fails_and_leaves_it_as_it_was(cube):
    from blender_addon import headless, session

    PAINTER.hold = threading.Event()
    before = snapshot(cube)
    bpy.ops.lift3d.texture()
    sess = session.get()
    headless.drive(until=lambda: sess.job.previews > 0, timeout_s=30)
    # The artist deletes a face meanwhile (through the data API: no Edit Mode in this test).
    import bmesh

    bm = bmesh.new()
    bm.from_mesh(cube.data)
    bm.faces.ensure_lookup_table()
    bmesh.ops.delete(bm, geom=[bm.faces[0]], context="FACES_ONLY")
    bm.to_mesh(cube.data)
    bm.free()
    changed = snapshot(cube)
    PAINTER.hold.set()
    job = headless.drive(timeout_s=30)
    assert job.phase == "failed" and "changed while it was textured" in job.error
    after = snapshot(cube)
    assert after["slots"] == before["slots"] and after["materials"] == before["materials"]
    assert after["images"] == before["images"] and after["uv_layers"] == changed["uv_layers"]


def test_the_result_waits_for_edit_mode_to_end(cube):
    from blender_addon import headless, session

    PAINTER.new_uvs = True
    PAINTER.hold = threading.Event()
    bpy.ops.lift3d.texture()
    sess = session.get()
    headless.drive(until=lambda: sess.job.previews > 0, timeout_s=30)
    bpy.ops.object.mode_set(mode="EDIT")
    PAINTER.hold.set()
    headless.drive(until=lambda: sess.job.deferred is not None, timeout_s=30)
    assert "leave Edit Mode" in sess.job.note and sess.job.phase != "done"
    # The first preview (before Edit Mode) brought the new UVs; the result waits to write its own.
    assert "Lift3D UV" in cube.data.uv_layers
    bpy.ops.object.mode_set(mode="OBJECT")
    job = headless.drive(timeout_s=30)
    assert job.phase == "done" and "Lift3D UV" in cube.data.uv_layers
    np.testing.assert_array_equal(uv_data(cube.data, "Lift3D UV"), uv_data(cube.data, "UVMap") * 0.5 + 0.25)


# -- refused before anything is sent ---------------------------------------------------------------


def test_the_modifier_warning_names_the_base_mesh_and_the_job_goes_on(cube):
    from blender_addon import headless
    from tests.blender.test_panels import draw, texts

    from blender_addon import panels

    cube.modifiers.new("Subdivision", "SUBSURF")
    assert bpy.ops.lift3d.texture() == {"FINISHED"}
    job = headless.drive(timeout_s=30)
    assert job.phase == "done" and len(PAINTER.requests[0].vertices) == 8  # the base mesh was sent
    [warning] = job.warnings
    assert "painted on the base mesh of 'Cube'" in warning and "modifiers" in warning
    assert "base mesh of 'Cube'" in texts(draw(panels.LIFT3D_PT_main, bpy.context)).replace(" | ", " ")
    assert [(m.name, m.type) for m in cube.modifiers] == [("Subdivision", "SUBSURF")]

    cube.modifiers.clear()  # no modifier, no warning
    bpy.ops.lift3d.texture()
    assert headless.drive(timeout_s=30).warnings == []


def test_what_cannot_be_textured_is_refused_before_sending(cube):
    from blender_addon import session

    settings = bpy.context.scene.lift3d.texture
    empty = bpy.data.objects.new("Points", bpy.data.meshes.new("Points"))
    empty.data.vertices.add(3)
    bpy.context.scene.collection.objects.link(empty)
    bpy.context.view_layer.objects.active = empty
    assert not bpy.ops.lift3d.texture.poll()
    with pytest.raises(RuntimeError, match="'Points' has no faces to paint"):
        bpy.ops.lift3d.texture()

    bpy.context.view_layer.objects.active = bpy.data.objects["Camera"]
    with pytest.raises(RuntimeError, match="Select a mesh object"):
        bpy.ops.lift3d.texture()

    bpy.context.view_layer.objects.active = cube
    settings.material = "ACTIVE"
    cube.active_material_index = 1
    tree = cube.material_slots[1].material.node_tree  # None before 5.0: a new material has no nodes
    for node in [n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"] if tree is not None else ():
        tree.nodes.remove(node)
    with pytest.raises(RuntimeError, match="'Other' has no Principled BSDF"):
        bpy.ops.lift3d.texture()
    settings.material, settings.prompt = "NEW", "  "
    with pytest.raises(RuntimeError, match="Describe the texture"):
        bpy.ops.lift3d.texture()
    assert PAINTER.requests == [] and session.get().job is None


def test_a_backend_without_texture_is_named(cube):
    from blender_addon import session
    from blender_addon.core.jobs import TextureRequest
    from blender_addon.session import ConnectError
    from blender_addon.texture import read_mesh
    from tests.blender.test_enhance import ScriptedClient

    sess = session.get()
    sess.client = ScriptedClient(request_kinds=["generate", "enhance"])
    request = TextureRequest(mesh=read_mesh(cube, "UVMap"), prompt="x", object_uid=cube.session_uid,
                             object_name=cube.name)
    with pytest.raises(ConnectError, match=r"this backend \(version 0.2\) does not texture meshes: update it"):
        sess.submit(request)
    assert sess.job is None
    sess.client = None


def test_the_texture_panel_draws_in_every_state(cube):
    from blender_addon import headless, panels, session
    from tests.blender.test_panels import draw, texts

    def shown() -> str:
        return texts(draw(panels.LIFT3D_PT_texture, bpy.context)).replace(" | ", " ")

    calls = draw(panels.LIFT3D_PT_texture, bpy.context)
    assert any(name == "operator" and args[0] == "lift3d.texture" for name, args, _ in calls)
    assert {args[1] for name, args, _ in calls if name == "prop"} >= {"prompt", "material", "seed", "texture_size",
                                                                     "views", "paint_steps"}
    assert "Object: Cube" in shown()
    PAINTER.hold = threading.Event()
    bpy.ops.lift3d.texture()
    sess = session.get()
    headless.drive(until=lambda: sess.job.previews > 0, timeout_s=30)
    calls = draw(panels.LIFT3D_PT_texture, bpy.context)
    assert any(name == "operator" and args[0] == "lift3d.cancel" for name, args, _ in calls)
    assert "Painted 33% of the texture so far" in shown()
    PAINTER.hold.set()
    headless.drive(timeout_s=30)
    assert "Painted 'Lift3D Texture Cube' onto 'Cube' (88% seen by the views)" in shown()
    assert any(name == "operator" and args[0] == "lift3d.texture_regenerate"
               for name, args, _ in draw(panels.LIFT3D_PT_texture, bpy.context))
    bpy.context.view_layer.objects.active = bpy.data.objects["Camera"]
    assert "Select a mesh object" in shown()
