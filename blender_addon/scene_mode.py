"""Scene mode, the bpy side: reading the active camera's animation as the path to send, and building
a `scene_result` — the scene's vertex-coloured mesh where the backend put it and a camera flying the
path. What to send and how the job goes is decided in `core.jobs`; the operator is in `operators.py`.

All or nothing: a build that fails part-way removes what it made. Runs from the session's timer tick
(data API only, no operators).
"""

from __future__ import annotations

import math

import bpy
import numpy as np

from . import importer
from .core.mesh_arrays import placement
from .core.scene_path import MAX_POSES, square_fov_deg

class CameraPathError(ValueError):
    """The active camera cannot give a path; the message says what to do."""


def read_camera_path(scene, camera) -> tuple[np.ndarray, float, tuple[int, ...]]:
    """The active camera's animation from the scene's start to its end frame → (matrix_world per
    pose [P, 4, 4] float32, square field of view in degrees, the frame of each pose). Longer
    animations are sampled every few frames to stay within `MAX_POSES`, the end frame always kept.
    The current frame is put back afterwards."""
    if camera is None or camera.type != "CAMERA":
        raise CameraPathError("the scene has no active camera: add one, animate it and make it the scene camera "
                              "(or choose a preset path)")
    if camera.data.type != "PERSP":
        raise CameraPathError(f"the camera '{camera.name}' is {camera.data.type.lower()}; Scene mode needs a "
                              "perspective camera")
    start, end = scene.frame_start, scene.frame_end
    step = max(1, math.ceil((end - start + 1) / (MAX_POSES - 1)))
    frames = list(range(start, end + 1, step))
    if frames[-1] != end:
        frames.append(end)
    current, subframe = scene.frame_current, scene.frame_subframe
    matrices = []
    try:
        for frame in frames:
            scene.frame_set(frame)
            matrices.append(np.array(camera.matrix_world, dtype=np.float32))
    finally:
        scene.frame_set(current, subframe=subframe)
    path = np.stack(matrices)
    if len(path) < 2 or np.abs(path - path[0]).max() < 1e-6:
        raise CameraPathError(f"the camera '{camera.name}' does not move between frames {start} and {end}: animate "
                              "it (or choose a preset path)")
    render = scene.render
    width = max(1, round(render.resolution_x * render.pixel_aspect_x))
    height = max(1, round(render.resolution_y * render.pixel_aspect_y))
    return path, square_fov_deg(camera.data, width, height), tuple(frames)


def build_scene(result, *, name: str, camera_name: str, properties: dict, frames: tuple[int, ...],
                collection) -> tuple["bpy.types.Object", "bpy.types.Object"]:
    """The scene mesh (world coordinates kept: its origin at its bounding box's bottom centre) and the
    path camera, keyframed once per pose at `frames` (quaternions kept continuous, so the camera turns
    the short way between poses) with the square field of view the scene was grown with. Nothing is
    left behind on failure."""
    anchor = placement(np.asarray(result.vertices, np.float32), None)[1] if len(result.vertices) else np.zeros(3)
    mesh_ob = importer.build_mesh_object(result, name=name, location=tuple(anchor), target_size=None,
                                         properties=properties, collection=collection)
    created: list = []
    try:
        data = bpy.data.cameras.new(camera_name)
        created.append(data)
        data.sensor_fit = "VERTICAL"
        data.angle_y = math.radians(float(result.fov_deg))
        camera = bpy.data.objects.new(camera_name, data)
        created.append(camera)
        camera.rotation_mode = "QUATERNION"
        for key, value in properties.items():
            camera[key] = value
        camera["lift3d_stage"] = "scene_camera"
        previous = None
        if len(frames) != len(result.cameras):
            raise ValueError(f"{len(result.cameras)} path cameras for {len(frames)} frames")
        for frame, matrix in zip(frames, np.asarray(result.cameras, np.float64)):
            camera.matrix_world = _rows(matrix)
            if previous is not None:
                camera.rotation_quaternion.make_compatible(previous)
            previous = camera.rotation_quaternion.copy()
            camera.keyframe_insert("location", frame=frame)
            camera.keyframe_insert("rotation_quaternion", frame=frame)
        collection.objects.link(camera)
    except BaseException:
        for block in reversed(created):
            if isinstance(block, bpy.types.Object):
                action = block.animation_data.action if block.animation_data is not None else None
                bpy.data.objects.remove(block)
                if action is not None and action.users == 0:
                    bpy.data.actions.remove(action)
            elif isinstance(block, bpy.types.Camera):
                bpy.data.cameras.remove(block)
        importer.remove_object(mesh_ob)
        raise
    return mesh_ob, camera


def _rows(matrix: np.ndarray):
    from mathutils import Matrix

    return Matrix([list(map(float, row)) for row in matrix])
