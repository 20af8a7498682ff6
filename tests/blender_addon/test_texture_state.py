"""Texture Selected's side of the add-on without Blender: the job state machine (messages and local
events in, effects out), the mesh arrays a request sends, per-loop UVs from per-corner ones (quads
included), the pixel flip, the modifier check and the panel's texture options."""

from __future__ import annotations

import numpy as np
import pytest

from blender_addon.core.effects import LinkStatus, PaintTexture, RevertTexture, SendCancel, ShowError, UndoStep
from blender_addon.core.jobs import (
    TEXTURE_UNDO,
    Job,
    Phase,
    TextureRequest,
    backend_offers,
    newest_previews_only,
    not_offered,
    texture_image_name,
)
from blender_addon.core.panel_options import panel_properties, request_options
from blender_addon.core.texture_arrays import (
    MAX_FACES,
    TextureMesh,
    TextureMeshError,
    blender_pixels,
    bounds,
    check_counts,
    corner_uvs,
    loop_uvs,
    shape_differs,
    texture_from_pixels,
    triangles,
)
from protocol import (
    Accepted,
    Cancelled,
    Failed,
    MeshMetadata,
    PaintedTexture,
    Preview,
    Progress,
    RequestKind,
    TexturePreview,
)
from protocol.options import validate_options

TEXTURE = RequestKind.TEXTURE

# A quad (loops 0-3) and a triangle (loops 4-6), as Blender triangulates them: the quad's loops 0 and
# 2 are in both of its triangles.
QUAD_TRI_LOOPS = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]], np.int32)
QUAD_TRI_VERTICES = np.array([[0, 1, 2], [0, 2, 3], [1, 4, 2]], np.int32)
LOOP_UVS = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.2, 0.2], [0.4, 0.2], [0.3, 0.4]], np.float32)


def quad_mesh(with_uvs: bool = True) -> TextureMesh:
    faces, tri_loops = triangles(QUAD_TRI_VERTICES.ravel(), QUAD_TRI_LOOPS.ravel(), n_vertices=5, n_loops=7)
    return TextureMesh(vertices=np.zeros((5, 3), np.float32), faces=faces, tri_loops=tri_loops, n_loops=7,
                       n_polygons=2,
                       uvs=corner_uvs(LOOP_UVS, tri_loops) if with_uvs else None, uv_layer="UVMap" if with_uvs else "")


def started(material: str = "NEW") -> Job:
    job = Job(TextureRequest(mesh=quad_mesh(), prompt="mossy stone", object_uid=42, object_name="Rock",
                             material=material, seed=5, options={"views": 6}))
    job.submitted("job-1", welcomed=True)
    return job


def preview(step: int, coverage: float = 0.5) -> TexturePreview:
    return TexturePreview(step=step, total=4, texture=np.full((8, 8, 3), step, np.uint8), coverage=coverage)


def painted(uvs=None, tiny: bool = False) -> PaintedTexture:
    return PaintedTexture(texture=np.zeros((16, 16, 3), np.uint8), uvs=uvs, uv_note="kept the mesh's UVs",
                          coverage=0.9, metadata=MeshMetadata(prompt="mossy stone", seed=5, models="full", tiny=tiny))


# -- the job ---------------------------------------------------------------------------------------


def test_a_texture_job_paints_live_then_once_final_and_leaves_one_undo_step():
    job = started()
    assert job.is_texture and not job.is_enhance
    job.apply(Accepted(queue_position=0))
    job.apply(Progress(stage="uv", step=1, total=1))
    assert job.progress_factor() == pytest.approx(0.1) and job.progress_text() == "UVs 1/1"
    job.apply(Progress(stage="paint", step=2, total=4, eta_s=20.0))
    assert job.progress_factor() == pytest.approx(0.5) and job.progress_text() == "Paint 2/4 · ETA 20 s"
    first = preview(1, coverage=0.25)
    [paint] = job.apply(first)
    assert paint == PaintTexture("job-1", first.texture) and not paint.final and paint.uvs is None
    assert job.previews == 1 and job.coverage == 0.25
    job.texture_painted("Lift3D Texture Rock", final=False)
    assert job.phase == Phase.RUNNING and job.result_image is None

    result = painted()
    [final] = job.apply(result)
    assert final.final and final.pixels is result.texture and final.uvs is None
    assert final.image_name == "Lift3D Texture Rock"
    assert final.properties["lift3d_texture_prompt"] == "mossy stone" and final.properties["lift3d_texture_seed"] == 5
    assert final.properties["lift3d_texture_options"] == '{"views": 6}'
    assert final.properties["lift3d_texture_material"] == "NEW" and final.properties["lift3d_texture_job"] == "job-1"
    assert job.metadata.models == "full" and job.coverage == 0.9 and job.uv_note == "kept the mesh's UVs"
    assert not job.finished  # until the bpy side has put it on the object
    job.texture_painted("Lift3D Texture Rock", final=True)
    assert job.phase == Phase.DONE and job.result_image == "Lift3D Texture Rock" and job.progress_factor() == 1.0
    assert job.finish(now=job.created_at + 3, geometry_present=False) == [UndoStep(TEXTURE_UNDO)]
    assert TEXTURE_UNDO == "Lift3D Texture"
    assert job.apply(preview(3)) == []  # nothing after the end


def test_new_uvs_travel_with_the_result_and_are_named_on_the_panel():
    job = started()
    uvs = np.full((3, 3, 2), 0.5, np.float32)
    [final] = job.apply(PaintedTexture(texture=np.zeros((4, 4, 3), np.uint8), uvs=uvs, uv_note="the UVs overlap"))
    assert final.uvs is uvs and job.warnings == ["New UVs (UV map 'Lift3D UV'): the UVs overlap"]


def test_uvs_for_another_number_of_triangles_are_refused_and_the_object_is_put_back():
    job = started()
    job.apply(preview(1))
    assert job.apply(painted(uvs=np.zeros((5, 3, 2), np.float32))) == []
    assert job.phase == Phase.FAILED and "UVs for 5 triangles; 3 were sent" in job.error and not job.failed_here
    assert job.finish(now=1.0, geometry_present=False) == [RevertTexture("job-1"), ShowError(job.error, job.hint)]


def test_tiny_results_say_so_in_the_images_name():
    [final] = started().apply(painted(tiny=True))
    assert final.image_name == "Lift3D Texture Rock (tiny models: noise)" == texture_image_name("Rock", tiny=True)


def test_cancel_puts_the_object_back_even_when_the_result_races_it():
    job = started()
    job.apply(preview(1))
    assert job.request_cancel(now=5.0) == [SendCancel("job-1")] and job.phase == Phase.CANCELLING
    assert job.apply(preview(2)) == []  # nothing more is painted
    assert job.apply(painted()) == [] and job.phase == Phase.CANCELLED
    assert job.finish(now=6.0, geometry_present=False) == [RevertTexture("job-1")]

    job = started()
    job.request_cancel(now=5.0)
    job.apply(Cancelled(stage="paint"))
    assert job.finish(now=6.0, geometry_present=False) == [RevertTexture("job-1")]


def test_failures_put_the_object_back_and_show_why():
    job = started()
    job.apply(preview(1))
    job.apply(Failed(code="out_of_memory", message="CUDA out of memory", stage="paint"))
    assert job.hint == "Try a smaller texture size or a decimated copy of the mesh."
    assert job.finish(now=1.0, geometry_present=False) == [RevertTexture("job-1"), ShowError(job.error, job.hint)]

    # Painting failed here (a preview could not be shown): the backend is told to stop too.
    job = started()
    job.apply(preview(1))
    job.texture_failed("the object 'Rock' was deleted while its texture was painted", final=False)
    assert job.failed_here and "could not paint the texture in Blender" in job.error
    assert job.hint == "The object was left as it was."
    assert job.finish(now=1.0, geometry_present=False) == [RevertTexture("job-1"), SendCancel("job-1"),
                                                            ShowError(job.error, job.hint)]


def test_a_backend_that_goes_silent_fails_the_job_and_puts_the_object_back():
    job = started()
    job.apply(preview(1))
    link = LinkStatus(same_client=True, address="tcp://127.0.0.1:5571", silent_s=16.0)
    assert job.check_liveness(now=20.0, link=link) != [] and job.phase == Phase.FAILED
    assert "stopped responding" in job.error
    assert job.finish(now=21.0, geometry_present=False)[0] == RevertTexture("job-1")


def test_a_result_waiting_for_edit_mode_needs_no_backend_and_cancels_at_once():
    job = started()
    [final] = job.apply(painted())
    job.texture_waiting(final, "The texture is ready: leave Edit Mode on 'Rock' to put it on")
    silent = LinkStatus(same_client=True, address="tcp://127.0.0.1:5571", silent_s=60.0)
    assert job.check_liveness(now=70.0, link=silent) == [] and job.phase == Phase.QUEUED
    assert "leave Edit Mode" in job.note
    assert job.take_deferred() == [final] and job.deferred is None and job.take_deferred() == []

    job.texture_waiting(final, "waiting")
    assert job.request_cancel(now=1.0) == [] and job.phase == Phase.CANCELLED and job.deferred is None
    assert job.finish(now=2.0, geometry_present=False) == [RevertTexture("job-1")]


def test_a_job_never_sent_has_nothing_to_put_back():
    job = Job(TextureRequest(mesh=quad_mesh(), prompt="x", object_uid=1, object_name="Rock"))
    assert job.awaiting_send and job.request_cancel(now=1.0) == []
    assert job.finish(now=2.0, geometry_present=False) == []


def test_only_the_newest_preview_of_each_kind_in_a_tick_is_shown():
    splats = Preview(step=1, positions=np.zeros((1, 3), np.float32), colors=np.zeros((1, 3), np.uint8),
                     opacities=np.zeros(1, np.uint8), scales=np.zeros((1, 3), np.float32),
                     rotations=np.zeros((1, 4), np.float32))
    progress = Progress(stage="paint", step=1, total=4)
    messages = [preview(1), progress, splats, preview(2), painted()]
    kept = newest_previews_only(messages)
    assert kept == [progress, splats, messages[3], messages[4]]


def test_new_uvs_of_a_dropped_preview_ride_on_with_the_one_shown():
    uvs = np.full((3, 3, 2), 0.5, np.float32)  # quad_mesh: three triangles
    first = TexturePreview(step=1, total=4, texture=np.zeros((4, 4, 3), np.uint8), uvs=uvs)
    second = preview(2)
    [kept] = newest_previews_only([first, second])
    assert kept.step == 2 and kept.uvs is uvs
    job = started()
    job.apply(Accepted(queue_position=0))
    [effect] = job.apply(kept)
    assert isinstance(effect, PaintTexture) and effect.uvs is uvs and not effect.final
    # UVs for another number of triangles than were sent: refused, nothing painted.
    job = started()
    job.apply(Accepted(queue_position=0))
    bad = TexturePreview(step=1, total=4, texture=np.zeros((4, 4, 3), np.uint8), uvs=np.zeros((5, 3, 2), np.float32))
    assert job.apply(bad) == [] and "UVs for 5 triangles" in job.error


def test_which_backends_texture_meshes():
    assert backend_offers(TEXTURE, ["generate", "enhance", "texture"])
    assert not backend_offers(TEXTURE, ["generate", "enhance"]) and not backend_offers(TEXTURE, [])
    message, hint = not_offered(TEXTURE, "0.3.0")
    assert message == "this backend (version 0.3.0) does not texture meshes: update it"
    assert "protocol 2.2" in hint and "restart" in hint


# -- the arrays ------------------------------------------------------------------------------------


def test_triangles_and_per_corner_uvs_come_from_the_loop_triangles():
    mesh = quad_mesh()
    assert mesh.faces.dtype == np.uint32 and mesh.tri_loops.dtype == np.int32 and mesh.n_faces == 3
    np.testing.assert_array_equal(mesh.faces, QUAD_TRI_VERTICES)
    assert mesh.uvs.shape == (3, 3, 2) and mesh.uvs.dtype == np.float32
    np.testing.assert_array_equal(mesh.uvs[1], [[0, 0], [1, 1], [0, 1]])  # loops 0, 2, 3
    with pytest.raises(TextureMeshError, match="point past its vertices"):
        triangles(QUAD_TRI_VERTICES.ravel(), QUAD_TRI_LOOPS.ravel(), n_vertices=4, n_loops=7)
    with pytest.raises(TextureMeshError, match="point past its vertices"):
        triangles(QUAD_TRI_VERTICES.ravel(), QUAD_TRI_LOOPS.ravel(), n_vertices=5, n_loops=6)


def test_per_corner_uvs_go_back_onto_the_loops_exactly_quads_included():
    mesh = quad_mesh()
    per_loop, disagreeing = loop_uvs(mesh.uvs, mesh.tri_loops, mesh.n_loops)
    assert disagreeing == 0 and per_loop.dtype == np.float32
    np.testing.assert_array_equal(per_loop, LOOP_UVS)  # the round trip is exact

    new = mesh.uvs * 0.5 + 0.25
    per_loop, disagreeing = loop_uvs(new, mesh.tri_loops, mesh.n_loops)
    np.testing.assert_array_equal(per_loop, LOOP_UVS * 0.5 + 0.25)

    # A seam cut through the quad's diagonal: its two shared loops cannot hold both values.
    cut = mesh.uvs.copy()
    cut[1, 0] += 0.1  # loop 0 in the second triangle
    cut[1, 1] += 0.1  # loop 2 in the second triangle
    per_loop, disagreeing = loop_uvs(cut, mesh.tri_loops, mesh.n_loops)
    assert disagreeing == 2
    np.testing.assert_array_equal(per_loop[[1, 3, 4, 5, 6]], LOOP_UVS[[1, 3, 4, 5, 6]])  # the rest is exact

    with pytest.raises(TextureMeshError, match="UVs for 2 triangles; 3 were sent"):
        loop_uvs(mesh.uvs[:2], mesh.tri_loops, mesh.n_loops)
    broken = mesh.uvs.copy()
    broken[0, 0, 0] = np.nan
    with pytest.raises(TextureMeshError, match="not finite"):
        loop_uvs(broken, mesh.tri_loops, mesh.n_loops)


def test_texture_rows_are_flipped_into_blender_pixels_and_back():
    texture = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    pixels = blender_pixels(texture)
    assert pixels.dtype == np.float32 and pixels.shape == (2 * 3 * 4,)
    rgba = pixels.reshape(2, 3, 4)
    np.testing.assert_allclose(rgba[0, :, :3], texture[1] / 255)  # Blender's first row is the bottom one
    np.testing.assert_allclose(rgba[1, :, :3], texture[0] / 255)
    assert (rgba[..., 3] == 1).all()
    np.testing.assert_array_equal(texture_from_pixels(pixels, 3, 2), texture)
    with pytest.raises(ValueError, match="uint8"):
        blender_pixels(texture.astype(np.float32))


def test_the_base_mesh_check_sees_counts_and_moved_bounds():
    base = np.array([[-1, -1, -1], [1, 1, 1]], np.float32)
    assert bounds(base)[0].tolist() == [-1, -1, -1] and bounds(np.zeros((0, 3)))[1].tolist() == [0, 0, 0]
    assert not shape_differs(2, bounds(base), 2, bounds(base + 1e-6))
    assert shape_differs(2, bounds(base), 26, bounds(base))  # a Subdivision Surface
    assert shape_differs(2, bounds(base), 2, bounds(base * 1.2))  # a Displace or an Armature


def test_meshes_without_faces_or_beyond_the_limits_are_refused():
    check_counts("Cube", 8, 6, 12)
    with pytest.raises(TextureMeshError, match="'Points' has no faces to paint"):
        check_counts("Points", 3, 0, 0)
    with pytest.raises(TextureMeshError, match="decimate it"):
        check_counts("Huge", 10, 10, MAX_FACES + 1)


def test_the_texture_options_come_from_the_protocol_and_untouched_send_nothing():
    props = {p.attr: p for p in panel_properties(TEXTURE)}
    assert list(props) == ["texture_size", "views", "paint_steps", "refine_steps"]
    assert props["texture_size"].toggle == "use_texture_size" and "Unticked: 1024." in props["texture_size"].keywords[
        "description"]
    assert (props["views"].keywords["default"], props["views"].keywords["min"], props["views"].keywords["max"]) == \
        (10, 4, 16)
    assert props["paint_steps"].keywords["default"] == 25 and props["refine_steps"].keywords["default"] == 0
    settings = {"use_texture_size": False, "texture_size": "1024", "views": 10, "paint_steps": 25, "refine_steps": 0}
    assert request_options(TEXTURE, settings.__getitem__) == {}
    settings.update(use_texture_size=True, texture_size="256", views=4, paint_steps=2)
    options = request_options(TEXTURE, settings.__getitem__)
    assert options == {"texture_size": 256, "views": 4, "paint_steps": 2}
    assert validate_options(TEXTURE, options) == options


def test_the_texture_core_needs_no_blender():
    from tests.test_import_boundaries import loaded_after

    loaded = loaded_after("import blender_addon.core.texture_arrays, blender_addon.core.jobs")
    assert "numpy" in loaded and not loaded & {"bpy", "torch", "backend"}
