"""Driving the add-on without a window: the timer loop, and a Cycles render of a result.

`bpy.app.timers` never fire in a background Blender or the `bpy` module, so scripts, tests and
agents call `drive()` instead. `python -m blender_addon.headless render MESH.npz --out PNG`
imports mesh arrays with the add-on's importer and renders them (used by `./lift3d run`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bpy
import numpy as np
from mathutils import Vector

from . import importer, session
from .core.jobs import Job


def drive(until: Callable[[], bool] | None = None, timeout_s: float = 600.0,
          on_tick: Callable[[session.Session], None] | None = None) -> Job | None:
    """Tick the session until `until()` holds (default: the running job has finished); returns
    the finished job, if any. Raises TimeoutError after `timeout_s`."""
    sess = session.get()
    done = until or (lambda: sess.job is None)
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Lift3D job did not finish within {timeout_s:.0f} s")
        delay = sess.tick()
        if on_tick is not None:
            on_tick(sess)
        time.sleep(min(delay, 0.02))
    return sess.last_job


def render_object(ob, path: Path, size: int = 512, samples: int = 32) -> Path:
    """A Cycles (CPU) render of `ob` from the front-right, lit by a sun and a grey world → PNG."""
    scene = bpy.context.scene
    corners = [ob.matrix_world @ Vector(c) for c in ob.bound_box]
    centre = sum(corners, Vector()) / 8
    radius = max((c - centre).length for c in corners) or 1.0
    camera_data = bpy.data.cameras.new("Lift3D render camera")
    camera_data.lens = 50
    camera = bpy.data.objects.new("Lift3D render camera", camera_data)
    scene.collection.objects.link(camera)
    fov = camera_data.angle
    distance = radius / math.sin(fov / 2) * 1.05
    direction = Vector((0.6, -1.0, 0.45)).normalized()
    camera.location = centre + direction * distance
    camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    sun_data = bpy.data.lights.new("Lift3D render sun", "SUN")
    sun_data.energy = 3.0
    sun = bpy.data.objects.new("Lift3D render sun", sun_data)
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)
    if scene.world is None:
        scene.world = bpy.data.worlds.new("Lift3D world")
    scene.world.color = (0.35, 0.35, 0.37)
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(Path(path).resolve())
    bpy.ops.render.render(write_still=True)
    return Path(path)


def _load_npz(path: Path) -> importer.MeshArrays:
    with np.load(path) as data:
        get = lambda key: data[key] if key in data.files else None  # noqa: E731
        return importer.MeshArrays(vertices=data["vertices"], faces=data["faces"], uvs=get("uvs"),
                                   normals=get("normals"), vertex_colors=get("vertex_colors"),
                                   texture=get("texture"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blender_addon.headless", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="import mesh arrays (.npz) with the add-on's importer and render them")
    render.add_argument("mesh", type=Path, help=".npz with vertices, faces[, uvs, normals, vertex_colors, texture]")
    render.add_argument("--out", type=Path, required=True, help="PNG to write")
    render.add_argument("--blend", type=Path, help="also save the scene as this .blend (texture packed)")
    render.add_argument("--name", default="Lift3D result", help="object name")
    render.add_argument("--size", type=int, default=512)
    render.add_argument("--samples", type=int, default=32)
    args = parser.parse_args(argv)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    ob = importer.build_mesh_object(_load_npz(args.mesh), name=args.name, target_size=1.0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    render_object(ob, args.out, size=args.size, samples=args.samples)
    print(f"Cycles render ({args.size}², {args.samples} samples, {time.perf_counter() - started:.1f} s): {args.out}")
    if args.blend:
        bpy.ops.wm.save_as_mainfile(filepath=str(args.blend.resolve()), compress=True)
        print(f"Blender scene: {args.blend}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
