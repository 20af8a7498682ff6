"""Add-on benchmarks in headless Blender (the `bpy` module): `python -m blender_addon.bench`.

1. Importing a textured mesh from arrays (`importer.build_mesh_object`, what the add-on does with
   a `mesh` message) against `bpy.ops.import_scene.gltf` of the same mesh written as a GLB (with
   trimesh, as the backend's exporter writes it), side by side in one run; both must give the same
   faces, texture and UVs.
2. Updating the live splat preview (`preview.update_preview`) with changing data.

Prints markdown tables. Targets are reported (met / MISSED), not asserted; the exit status is
non-zero only when something fails or the two imports disagree. Dev tooling: not shipped in the
add-on zip, so it may use trimesh. It does not import the backend (torch): the `blender` test tier
runs it in light per-Blender-version environments (`./lift3d test --blender 4.2`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

from . import importer, preview

IMPORT_TARGET_S = 0.5
SPEEDUP_TARGET = 3.0
PREVIEW_TARGET_MS = 20.0


# --- test data ----------------------------------------------------------------------------------


def make_mesh(n_faces: int, texture_side: int = 1024, seed: int = 0) -> importer.MeshArrays:
    """A closed, bumpy torus of about `n_faces` triangles (no degenerate faces, unlike a UV sphere's
    poles) with per-vertex UVs (seams split), normals and a texture of smooth gradients plus noise
    (compresses like a real albedo, unlike pure noise). Texture row 0 = top, as the backend sends."""
    rng = np.random.default_rng(seed)
    nv, nu = _grid(n_faces)
    u = np.linspace(0.0, 1.0, nu + 1)              # +1: the seam column is a split copy
    v = np.linspace(0.0, 1.0, nv + 1)
    uu, vv = np.meshgrid(u, v, indexing="ij")      # [nu+1, nv+1]
    bumps = 0.03 * np.sin(2 * np.pi * 7 * uu) * np.sin(2 * np.pi * 5 * vv)
    tube = 0.35 + bumps
    a, b = 2 * np.pi * uu, 2 * np.pi * vv
    vertices = np.stack([(1 + tube * np.cos(b)) * np.cos(a), (1 + tube * np.cos(b)) * np.sin(a),
                         tube * np.sin(b)], axis=-1).reshape(-1, 3).astype(np.float32)
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    q00, q10, q11, q01 = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([q00, q10, q11], -1).reshape(-1, 3),
                            np.stack([q00, q11, q01], -1).reshape(-1, 3)]).astype(np.uint32)
    uvs = np.stack([uu, vv], axis=-1).reshape(-1, 2).astype(np.float32)
    y, x = np.mgrid[0:texture_side, 0:texture_side]
    pattern = np.stack([x * 255 // texture_side, y * 255 // texture_side, (x ^ y) & 255], axis=-1)
    texture = np.clip(pattern + rng.integers(-8, 9, pattern.shape), 0, 255).astype(np.uint8)
    return importer.MeshArrays(vertices, faces, uvs, _vertex_normals(vertices, faces), None, texture)


def _grid(n_faces: int) -> tuple[int, int]:
    """(around the tube, around the ring) with 2·nu·nv = n_faces exactly when a divisor of n_faces/2
    near the ideal shape exists (ring 4-16x the tube), else about n_faces."""
    ideal = max(3, round((n_faces / 8) ** 0.5))
    if n_faces % 2 == 0:
        for nv in range(ideal, max(3, ideal // 2) - 1, -1):
            if (n_faces // 2) % nv == 0:
                return nv, n_faces // 2 // nv
    return ideal, max(3, round(n_faces / (2 * ideal)))


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[V, 3] float32 area-weighted vertex normals."""
    tri = vertices[faces.astype(np.int64)]                      # [F, 3, 3]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, faces[:, corner].astype(np.int64), face_n)
    return (normals / np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def make_splats(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """One preview message's arrays in the wire dtypes: positions f16, colors u8, opacities u8,
    scales f16."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, 0.3, (n, 3)).astype(np.float16), rng.integers(0, 256, (n, 3), dtype=np.uint8),
            rng.integers(0, 256, n, dtype=np.uint8), rng.uniform(0.001, 0.02, (n, 3)).astype(np.float16))


# --- benchmarks ---------------------------------------------------------------------------------


def bench_import(n_faces: int, texture_side: int, repeats: int) -> dict:
    """Median seconds of both imports and the consistency checks between them."""
    mesh = make_mesh(n_faces, texture_side)
    with tempfile.TemporaryDirectory(prefix="lift3d-bench-") as tmp:
        glb = write_glb(Path(tmp) / "bench.glb", mesh)
        arrays_s, gltf_s, arrays_decoded_s, gltf_decoded_s = [], [], [], []
        for _ in range(repeats):  # interleaved, so drift on the machine hits both alike
            _empty_scene()
            started = time.perf_counter()
            ours = importer.build_mesh_object(mesh, name="Lift3D bench")
            arrays_s.append(time.perf_counter() - started)
            arrays_decoded_s.append(arrays_s[-1] + _decode_seconds(ours))
            ours_faces, ours_pixels, ours_uvs = _faces_pixels_uvs(ours)
            _empty_scene()
            started = time.perf_counter()
            bpy.ops.import_scene.gltf(filepath=str(glb))
            gltf_s.append(time.perf_counter() - started)
            gltf_ob = next(ob for ob in bpy.data.objects if ob.type == "MESH")
            gltf_decoded_s.append(gltf_s[-1] + _decode_seconds(gltf_ob))
            gltf_faces, gltf_pixels, gltf_uvs = _faces_pixels_uvs(gltf_ob)
    _empty_scene()
    return {
        "faces": int(len(mesh.faces)), "vertices": int(len(mesh.vertices)), "texture_side": texture_side,
        "repeats": repeats, "arrays_s": statistics.median(arrays_s), "gltf_s": statistics.median(gltf_s),
        "arrays_decoded_s": statistics.median(arrays_decoded_s),
        "gltf_decoded_s": statistics.median(gltf_decoded_s),
        "arrays_faces": ours_faces, "gltf_faces": gltf_faces,
        "same_pixels": _close(ours_pixels, gltf_pixels, 1e-6), "same_uvs": _close(ours_uvs, gltf_uvs, 1e-5),
    }


def write_glb(path: Path, mesh: importer.MeshArrays) -> Path:
    """The textured mesh as a GLB, written the way `backend.geometry.export.export_glb` writes one
    (that module imports torch): +Z up turned into glTF's +Y up, normals, trimesh's (u, 1 - v)
    TEXCOORD_0 and the texture stored row 0 first as a PNG base colour."""
    import trimesh  # dev-only dependency (not in the add-on)
    from PIL import Image

    z_up_to_y_up = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(mesh.texture),
                                                   metallicFactor=0.0, roughnessFactor=0.9)
    glb = trimesh.Trimesh(mesh.vertices.astype(np.float64) @ z_up_to_y_up.T, mesh.faces.astype(np.int64),
                          vertex_normals=mesh.normals.astype(np.float64) @ z_up_to_y_up.T, process=False,
                          visual=trimesh.visual.TextureVisuals(uv=mesh.uvs.astype(np.float64), material=material))
    path.write_bytes(glb.export(file_type="glb", include_normals=True))
    return path


def _close(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    return a.shape == b.shape and bool(np.abs(a - b).max() <= tolerance)


def bench_preview(n_splats: int, calls: int) -> dict:
    """First (creating) call and median of `calls` updates with changing data, in ms; also the
    median of update + depsgraph evaluation (the Mesh to Points work a viewport redraw does)."""
    _empty_scene()
    batches = [make_splats(n_splats, seed) for seed in range(4)]
    started = time.perf_counter()
    ob = preview.update_preview("bench", *batches[0], max_points=max(n_splats, 1))
    first_ms = 1000 * (time.perf_counter() - started)
    update_ms, evaluated_ms = [], []
    for i in range(calls):
        started = time.perf_counter()
        preview.update_preview("bench", *batches[(i + 1) % len(batches)], max_points=max(n_splats, 1))
        update_ms.append(1000 * (time.perf_counter() - started))
        bpy.context.evaluated_depsgraph_get()  # evaluates the modifier
        evaluated_ms.append(1000 * (time.perf_counter() - started))
    points = _evaluated_points(ob)
    preview.remove_preview("bench")
    return {"splats": n_splats, "calls": calls, "first_ms": first_ms,
            "update_ms": statistics.median(update_ms), "evaluated_ms": statistics.median(evaluated_ms),
            "points": points}


def _evaluated_points(ob: "bpy.types.Object") -> int:
    """Points in the point cloud the preview's Geometry Nodes modifier makes."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = ob.evaluated_get(depsgraph)
    if not hasattr(evaluated, "evaluated_geometry"):  # Blender 4.2: the cloud is an instance
        return sum(len(i.object.data.points) for i in depsgraph.object_instances
                   if i.is_instance and i.parent.original == ob and i.object.type == "POINTCLOUD")
    geometry = evaluated.evaluated_geometry()  # keep it: its parts die with it
    return 0 if geometry.pointcloud is None else len(geometry.pointcloud.points)


def _empty_scene() -> None:
    """Factory settings with nothing in them: each run starts from the same state. (An operator,
    fine here; the add-on itself never calls one from a timer.)"""
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _decode_seconds(ob: "bpy.types.Object") -> float:
    """Time to load the texture's packed file (both paths defer it to the first use: a viewport
    draw, a render, or here, reading the size)."""
    image = _texture_image(ob)
    started = time.perf_counter()
    image.size[0]  # noqa: B018  (loads the image buffer)
    return time.perf_counter() - started


def _texture_image(ob: "bpy.types.Object") -> "bpy.types.Image":
    return next(n.image for n in ob.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")


def _faces_pixels_uvs(ob: "bpy.types.Object") -> tuple[int, np.ndarray, np.ndarray]:
    """Face count, the first material's image pixels (bottom row first) and the per-loop UVs."""
    me = ob.data
    image = _texture_image(ob)
    pixels = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(pixels)
    uvs = np.empty(2 * len(me.loops), np.float32)
    me.uv_layers.active.data.foreach_get("uv", uvs)
    return len(me.polygons), pixels, uvs


# --- report -------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def import_table(r: dict) -> str:
    speedup = r["gltf_s"] / r["arrays_s"]
    side = r["texture_side"]
    return "\n".join([
        f"Textured mesh import: {r['faces']:,} faces, {r['vertices']:,} vertices, {side}x{side} texture, "
        f"UVs, normals; median of {r['repeats']}",
        "",
        "| path | import (s) | + texture decode (s) | faces | target |",
        "|---|---:|---:|---:|---|",
        f"| `build_mesh_object` from arrays (TGA packed) | {r['arrays_s']:.3f} | "
        f"{r['arrays_decoded_s']:.3f} | {r['arrays_faces']:,} | "
        f"<= {IMPORT_TARGET_S} s: {_verdict(r['arrays_s'] <= IMPORT_TARGET_S)} |",
        f"| `bpy.ops.import_scene.gltf` (same mesh as GLB, PNG packed) | {r['gltf_s']:.3f} | "
        f"{r['gltf_decoded_s']:.3f} | {r['gltf_faces']:,} | |",
        f"| speed-up | {speedup:.1f}x | {r['gltf_decoded_s'] / r['arrays_decoded_s']:.1f}x | | "
        f">= {SPEEDUP_TARGET}x: {_verdict(speedup >= SPEEDUP_TARGET)} |",
        "",
        f"Same faces: {_yes(r['arrays_faces'] == r['gltf_faces'])}; same texture pixels: "
        f"{_yes(r['same_pixels'])}; same per-loop UVs: {_yes(r['same_uvs'])}.",
    ])


def preview_table(r: dict) -> str:
    return "\n".join([
        f"Splat preview: {r['splats']:,} splats, median of {r['calls']} updates with changing data",
        "",
        "| step | time (ms) | target |",
        "|---|---:|---|",
        f"| first call (creates object, node group, material) | {r['first_ms']:.2f} | |",
        f"| `update_preview` | {r['update_ms']:.2f} | <= {PREVIEW_TARGET_MS} ms: "
        f"{_verdict(r['update_ms'] <= PREVIEW_TARGET_MS)} |",
        f"| `update_preview` + depsgraph evaluation | {r['evaluated_ms']:.2f} | |",
        "",
        f"Evaluated points: {r['points']:,}.",
    ])


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def machine_line() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"Machine: {usable} usable CPU cores ({os.cpu_count()} in the system); "
            f"Blender {bpy.app.version_string} (bpy module, background); Python {sys.version.split()[0]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=100_000, help="triangles of the test mesh")
    parser.add_argument("--texture", type=int, default=1024, help="texture side in pixels")
    parser.add_argument("--splats", type=int, default=50_000, help="splats per preview update")
    parser.add_argument("--repeats", type=int, default=5, help="import runs per path (median)")
    parser.add_argument("--calls", type=int, default=20, help="preview updates (median)")
    args = parser.parse_args(argv)
    print(machine_line(), end="\n\n")
    imported = bench_import(args.faces, args.texture, args.repeats)
    print(import_table(imported), end="\n\n")
    print(preview_table(bench_preview(args.splats, args.calls)))
    consistent = (imported["arrays_faces"] == imported["gltf_faces"] and imported["same_pixels"]
                  and imported["same_uvs"])
    return 0 if consistent else 1


if __name__ == "__main__":
    sys.exit(main())
