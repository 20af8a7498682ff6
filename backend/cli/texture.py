"""`python -m backend texture MESH.glb --prompt TEXT --out DIR`: paint a texture onto a mesh in this
process, with a progress bar; writes textured.glb, texture.png, views.png and report.json.

Everything that can be wrong with the input (an unreadable file, no faces, NaN vertices, more than
2 M triangles, a bad option or reference image) is reported before any model loads, with a
non-zero exit and nothing written.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from protocol import RequestKind
from protocol.options import TEXTURE_REQUEST_SIZE, OptionError, option, options_for

from .generate import EXIT_BAD_INPUT, _peak_memory, fail, parse_options, run_in_process

# glTF is +Y up; Lift3D's world (and Blender's) is +Z up: (x, y, z) → (x, −z, y).
_Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], np.float32)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", type=Path, help="the mesh to texture: GLB/glTF (also OBJ, PLY, STL through trimesh)")
    parser.add_argument("--prompt", required=True, help="what the texture should show")
    parser.add_argument("--image", type=Path, help="optional reference image (PNG, JPEG or WebP) steering the look")
    parser.add_argument("--texture-size", type=int, default=None, choices=option("texture_size").values,
                        help=f"side of the texture in pixels (default {TEXTURE_REQUEST_SIZE})")
    parser.add_argument("--models", default="auto", choices=("auto", "full", "tiny"), help="model preset")
    parser.add_argument("--device", default="auto", help="auto, cpu, mps, cuda or cuda:N")
    parser.add_argument("--models-lock", type=Path, metavar="PATH", help="models lock file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="request option (repeatable): " + "; ".join(
                            f"{spec.name}: {spec.allowed()}" for spec in options_for(RequestKind.TEXTURE)))
    parser.add_argument("--cache-dir", type=Path, help="result cache folder")


def load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A mesh file → (vertices [V, 3] +Z up, faces [F, 3], per-corner UVs [F, 3, 2] or None). The
    file's meshes are joined with their node transforms; UVs are kept only when every mesh has them."""
    import trimesh

    try:
        scene = trimesh.load(path, force="scene", process=False)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise ValueError(f"{path}: not a mesh file trimesh can read ({type(exc).__name__}: {exc})") from None
    meshes = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh)]
    if not meshes:
        raise ValueError(f"{path}: the file holds no mesh with faces (nothing to texture)")
    vertices, faces, uvs, offset = [], [], [], 0
    for mesh in meshes:
        v, f = np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)
        vertices.append(v)
        faces.append(f + offset)
        uv = getattr(mesh.visual, "uv", None)
        uvs.append(None if uv is None or len(uv) != len(v) else np.asarray(uv, np.float32)[f])
        offset += len(v)
    vertices_all = np.concatenate(vertices) if vertices else np.zeros((0, 3), np.float32)
    if path.suffix.lower() in (".glb", ".gltf"):
        vertices_all = vertices_all @ _Y_UP_TO_Z_UP.T
    corner_uvs = None if any(u is None for u in uvs) else np.concatenate(uvs)
    return vertices_all.astype(np.float32), np.concatenate(faces), corner_uvs


def views_sheet(views: list[np.ndarray], label: str = "", tile: int = 256, columns: int = 5) -> np.ndarray:
    """The generated views in rows of `columns` → uint8 image."""
    from PIL import Image

    from .outputs import with_label

    tiles = [np.asarray(Image.fromarray(v).resize((tile, tile), Image.Resampling.BILINEAR)) for v in views]
    while len(tiles) % columns:
        tiles.append(np.full((tile, tile, 3), 255, np.uint8))
    rows = [np.concatenate(tiles[r:r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return with_label(np.concatenate(rows, axis=0), label)


def main(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..geometry.export import export_glb
    from ..models.registry import TINY_NOTICE
    from ..pipelines.cache import ResultCache
    from ..pipelines.texture import TexturePipeline, inputs_from_arrays
    from ..serving.context import PipelineError
    from .outputs import staged

    if not args.mesh.is_file():
        return fail(EXIT_BAD_INPUT, f"{args.mesh}: no such file")
    reference = None
    if args.image is not None:
        try:
            reference = args.image.read_bytes()
        except OSError as exc:
            return fail(EXIT_BAD_INPUT, f"cannot read {args.image}: {exc.strerror or exc}")
    try:
        options = parse_options(args.option, RequestKind.TEXTURE)
        if args.texture_size is not None:
            options["texture_size"] = args.texture_size
        vertices, faces, corner_uvs = load_mesh(args.mesh)
        inputs = inputs_from_arrays(vertices, faces, corner_uvs, None, args.prompt, reference, args.seed, options)
    except PipelineError as exc:
        return fail(EXIT_BAD_INPUT, f"{args.mesh}: {exc}", exc.hint)
    except OptionError as exc:
        return fail(EXIT_BAD_INPUT, str(exc), exc.hint)
    except ValueError as exc:
        return fail(EXIT_BAD_INPUT, str(exc))
    run = run_in_process(args, lambda registry, ctx: TexturePipeline(registry, ResultCache(args.cache_dir)).paint(
        inputs, ctx))
    if isinstance(run, int):
        return run
    outcome, registry, started = run.outcome, run.registry, run.started
    layout, mesh = outcome.layout, inputs.mesh
    from ..geometry.mesh_cleanup import vertex_normals

    normals = vertex_normals(mesh.vertices, mesh.faces)[layout.source_vertex]
    label = "TINY PRESET: random weights, wiring check only" if registry.is_tiny else ""
    report = {
        "mesh": str(args.mesh), "prompt": inputs.prompt, "image": None if args.image is None else str(args.image),
        "seed": args.seed, "texture_size": inputs.texture_size, "views": inputs.views,
        "paint_steps": inputs.paint_steps, "vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces)),
        "uvs_kept": layout.kept, "uv_note": layout.note, "coverage": outcome.coverage,
        "seam_error": outcome.seam_error, "cached": outcome.cached, "seconds": outcome.seconds,
        "total_s": time.perf_counter() - started, "models": registry.preset, "tiny": registry.is_tiny,
        "device": str(registry.device), "peak_memory": _peak_memory()}
    with staged(args.out) as staging:
        export_glb(staging / "textured.glb", layout.vertices, layout.faces, layout.uvs, outcome.texture, normals)
        Image.fromarray(outcome.texture).save(staging / "texture.png")
        if outcome.views:
            Image.fromarray(views_sheet(outcome.views, label)).save(staging / "views.png")
        (staging / "report.json").write_text(json.dumps(report, indent=2, default=str))
        names = sorted(p.name for p in staging.iterdir())
    print(f"done in {report['total_s']:.1f} s ({layout.note}; {outcome.coverage:.1%} painted by a view): "
          + ", ".join(str(args.out / n) for n in names))
    if registry.is_tiny:
        print(f"NOTICE: {TINY_NOTICE}")
    return 0
