"""Carrying out a job's effects (`core.effects`) on the scene, the file's images and a textured
object's materials (through `texture`): the only place the job's decisions touch bpy. Runs on the
main thread, from the session's timer tick."""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

import bpy
import numpy as np

from . import enhance, importer, preview, scene_mode, texture
from .core.effects import (
    BuildImage,
    BuildMesh,
    BuildScene,
    Disconnect,
    Effect,
    JobMesh,
    ObjectRef,
    ObjectWithUid,
    PaintTexture,
    PreviewOf,
    Remove,
    RevertTexture,
    SendCancel,
    ShowError,
    ShowPreview,
    UndoStep,
)
from .core.jobs import Job
from .core.mesh_arrays import placement

if TYPE_CHECKING:
    from .session import Session


def carry_out(session: Session, job: Job, effects: list[Effect]) -> None:
    for effect in effects:
        if isinstance(effect, ShowPreview):
            _show_preview(job, effect, session.preview_points)
        elif isinstance(effect, BuildMesh):
            _build(job, effect)
        elif isinstance(effect, BuildImage):
            _build_image(job, effect)
        elif isinstance(effect, BuildScene):
            _build_scene(job, effect)
        elif isinstance(effect, PaintTexture):
            texture.paint(job, effect)
        elif isinstance(effect, RevertTexture):
            texture.revert(job)
        elif isinstance(effect, Remove):
            remove(effect.target)
        elif isinstance(effect, SendCancel):
            session.send_cancel(effect.job_id)
        elif isinstance(effect, Disconnect):
            session.disconnect()
        elif isinstance(effect, UndoStep):
            _undo_push(effect.message)
        elif isinstance(effect, ShowError):
            session.error = (effect.message, effect.hint)
        else:  # pragma: no cover - a new effect type without a handler is a bug
            raise TypeError(f"no handler for {type(effect).__name__}")


def find(ref: ObjectRef):
    """The object `ref` points at, whatever it is called now; None when it is gone."""
    if isinstance(ref, PreviewOf):
        return preview.find_preview(ref.job_id)
    if isinstance(ref, ObjectWithUid):
        # session_uid, unlike a name, never points at another object (a new one reusing a freed
        # name, or one of another file opened meanwhile).
        return next((ob for ob in bpy.data.objects if ob.session_uid == ref.uid), None)
    return next((ob for ob in bpy.data.objects
                 if ob.get("lift3d_job") == ref.job_id and ob.get("lift3d_stage") == ref.kind), None)


def remove(ref: ObjectRef) -> None:
    if isinstance(ref, PreviewOf):
        preview.remove_preview(ref.job_id)
        return
    ob = find(ref)
    if ob is not None:
        importer.remove_object(ob)


def geometry_present(job: Job) -> bool:
    return job.id is not None and find(JobMesh(job.id, "geometry")) is not None


def _show_preview(job: Job, effect: ShowPreview, max_points: int) -> None:
    message = effect.preview
    ob = preview.update_preview(job.id, message.positions, message.colors, message.opacities, message.scales,
                                max_points=max_points, location=job.request.location, collection=_collection(job))
    # Place and size the cloud as the importer will place the mesh (bottom centre at the cursor,
    # largest side = object size), so the mesh replaces it without a jump. A scene stays in the
    # world coordinates its path is in.
    points = np.asarray(message.positions, np.float32)
    if job.is_scene:
        ob.scale, ob.location = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    elif len(points) and np.isfinite(points).all():
        scale, anchor = placement(points, job.request.target_size)
        ob.scale = (scale, scale, scale)
        ob.location = tuple(np.asarray(job.request.location) - scale * anchor)
    job.previews += 1


def _build(job: Job, effect: BuildMesh) -> None:
    mesh = effect.mesh
    try:
        ob = importer.build_mesh_object(mesh, name=effect.name, location=job.request.location,
                                        target_size=job.request.target_size, properties=effect.properties,
                                        collection=_collection(job))
    except (ValueError, RuntimeError, MemoryError) as exc:
        traceback.print_exc()
        job.mesh_failed(mesh.kind, str(exc))
        return
    preview.remove_preview(job.id)
    for ref in effect.takes_place_of:
        previous = find(ref)
        if previous is not None and previous != ob:
            importer.copy_transform(previous, ob)  # the artist may have moved it already
            importer.remove_object(previous)
    if effect.final and ob.name != effect.name and effect.name not in bpy.data.objects:
        ob.name = effect.name  # the untextured mesh held the name until it was removed just now
    job.mesh_built(mesh.kind, ob.name, mesh.metadata)
    _select_only(ob)


def _build_image(job: Job, effect: BuildImage) -> None:
    try:
        image = enhance.build_image(effect.name, effect.pixels, effect.properties)
    except (ValueError, RuntimeError, MemoryError, TypeError) as exc:
        traceback.print_exc()
        job.image_failed(str(exc))
        return
    job.image_built(image.name)


def _build_scene(job: Job, effect: BuildScene) -> None:
    try:
        mesh_ob, _camera = scene_mode.build_scene(
            effect.result, name=effect.name, camera_name=effect.camera_name, properties=effect.properties,
            frames=effect.frames, collection=_collection(job))
    except (ValueError, RuntimeError, MemoryError, TypeError) as exc:
        traceback.print_exc()
        job.scene_failed(str(exc))
        return
    preview.remove_preview(job.id)
    job.scene_built(mesh_ob.name, _camera.name)
    _select_only(mesh_ob)


def _collection(job: Job):
    """Where the job's objects go: the scene Generate was pressed in, if it still exists."""
    scene = bpy.data.scenes.get(job.request.scene_name) if job.request.scene_name else None
    return (scene or bpy.context.scene).collection


def _select_only(ob) -> None:
    if bpy.context.mode != "OBJECT":
        return  # never pull the artist out of Edit/Sculpt/Paint mode (the active object's mode)
    view_layer = bpy.context.view_layer
    try:
        # Also syncs the view layer with what was just linked and removed (until then its list
        # of selected objects can hold a stale None).
        ob.select_set(True)
    except RuntimeError:  # linked to a collection excluded from this view layer: leave the selection alone
        return
    for other in view_layer.objects.selected:
        if other is not None and other != ob:
            other.select_set(False)
    view_layer.objects.active = ob


def _undo_push(message: str) -> None:
    # Objects built from a timer are not an undo step by themselves; make one so Ctrl+Z removes them.
    if bpy.context.mode != "OBJECT":
        return  # an undo push now would record an edit-mode step; the artist's next step covers it
    try:
        bpy.ops.ed.undo_push(message=message)
    except RuntimeError as exc:  # no undo stack (e.g. undo disabled in the preferences)
        print(f"Lift3D: no undo step recorded: {exc}")


def redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
