"""`python -m backend scene --prompt TEXT --out DIR`: grow a 3D scene along a camera path in this
process, with a progress bar; writes scene.ply (standard 3D Gaussian Splatting), scene.glb (a
vertex-coloured mesh), cameras.json (the path, as Blender camera matrices), keyframes.png and
report.json.

`--trajectory` is a preset (orbit, forward, pan) or a JSON file: either the `cameras.json` an
earlier run wrote, or {"fov_deg": 60, "matrix_world": [[4 × 4], ...]} (Blender camera matrices,
Z up). Everything that can be wrong with the input (no prompt, an unreadable image or path file,
an empty path, NaN poses, more than 500 poses, a bad option) is reported before any model loads,
with a non-zero exit and nothing written.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from protocol import RequestKind
from protocol.options import QUALITY_NAMES, OptionError, options_for

from ..scene.trajectory import PRESETS
from .generate import EXIT_BAD_INPUT, _peak_memory, fail, parse_options, run_in_process



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help="what the scene shows")
    parser.add_argument("--image", type=Path, help="optional first keyframe (PNG, JPEG or WebP; centre square used)")
    parser.add_argument("--trajectory", default="orbit", metavar="orbit|forward|pan|PATH.json",
                        help="camera path: a preset or a JSON file of Blender camera matrices (default orbit)")
    parser.add_argument("--frames", type=int, default=None, help="keyframes along the path (default 12)")
    parser.add_argument("--preset", default=None, choices=QUALITY_NAMES,
                        help="quality preset (default draft: 256² keyframes)")
    parser.add_argument("--fov", type=float, default=60.0, help="vertical field of view of a preset path, degrees")
    parser.add_argument("--models", default="auto", choices=("auto", "full", "tiny"), help="model preset")
    parser.add_argument("--device", default="auto", help="auto, cpu, mps, cuda or cuda:N")
    parser.add_argument("--models-lock", type=Path, metavar="PATH", help="models lock file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="request option (repeatable): " + "; ".join(
                            f"{spec.name}: {spec.allowed()}" for spec in options_for(RequestKind.SCENE)))
    parser.add_argument("--cache-dir", type=Path, help="result cache folder")


def read_path_file(path: Path) -> tuple[np.ndarray, float]:
    """A path JSON file → (Blender camera matrices [P, 4, 4], vertical fov in degrees); ValueError
    naming what is wrong."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or "matrix_world" not in data:
        raise ValueError(f"{path} must be an object with 'matrix_world': a list of 4 × 4 camera matrices "
                         "(and optionally 'fov_deg')")
    try:
        matrices = np.asarray(data["matrix_world"], dtype=np.float64)
        fov = float(data.get("fov_deg", 60.0))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: 'matrix_world' must hold numbers only ({exc})") from None
    if matrices.size == 0:
        matrices = matrices.reshape(0, 4, 4)
    return matrices, fov


def cameras_json(inputs, keyframes: list[int]) -> dict:
    from ..scene.trajectory import to_blender

    return {"convention": "Blender camera matrix_world per path pose (world +Z up, camera looks down its -Z)",
            "fov_deg": inputs.trajectory.fovy_deg, "trajectory": inputs.trajectory.name,
            "keyframes": keyframes, "matrix_world": to_blender(inputs.trajectory).tolist()}


def keyframe_sheet(images: list[np.ndarray], label: str = "", columns: int = 6) -> np.ndarray:
    from .outputs import with_label

    tiles = list(images)
    side = tiles[0].shape[0]
    while len(tiles) % columns:
        tiles.append(np.full((side, side, 3), 255, np.uint8))
    rows = [np.concatenate(tiles[r:r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return with_label(np.concatenate(rows, axis=0), label)


def main(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..geometry.export import export_vertex_colour_glb
    from ..geometry.gaussians import save_ply
    from ..models.registry import TINY_NOTICE
    from ..pipelines.cache import ResultCache
    from ..pipelines.scene import ScenePipeline, scene_inputs
    from ..serving.context import PipelineError
    from .outputs import staged

    image = None
    if args.image is not None:
        try:
            image = args.image.read_bytes()
        except OSError as exc:
            return fail(EXIT_BAD_INPUT, f"cannot read {args.image}: {exc.strerror or exc}")
    try:
        options = parse_options(args.option, RequestKind.SCENE)
        if args.frames is not None:
            options["frames"] = args.frames
        poses, fov, trajectory = None, args.fov, args.trajectory
        if trajectory not in PRESETS:
            if not trajectory.endswith(".json") and not Path(trajectory).exists():
                return fail(EXIT_BAD_INPUT, f"unknown trajectory {trajectory!r}",
                            f"Choose one of {', '.join(PRESETS)}, or give a JSON file of camera matrices.")
            poses, fov = read_path_file(Path(trajectory))
            trajectory = "camera"
        inputs = scene_inputs(args.prompt, image, trajectory, poses, fov, args.preset or "draft", args.seed, options)
    except PipelineError as exc:
        return fail(EXIT_BAD_INPUT, str(exc), exc.hint)
    except OptionError as exc:
        return fail(EXIT_BAD_INPUT, str(exc), exc.hint)
    except ValueError as exc:
        return fail(EXIT_BAD_INPUT, str(exc))
    run = run_in_process(args, lambda registry, ctx: ScenePipeline(registry, ResultCache(args.cache_dir)).grow(
        inputs, ctx))
    if isinstance(run, int):
        return run
    outcome, registry, started = run.outcome, run.registry, run.started
    label = "TINY PRESET: random weights, wiring check only" if registry.is_tiny else ""
    config = inputs.config
    report = {
        "prompt": inputs.prompt, "image": None if args.image is None else str(args.image), "seed": config.seed,
        "quality": inputs.quality, "trajectory": inputs.trajectory.name, "poses": len(inputs.trajectory),
        "fov_deg": inputs.trajectory.fovy_deg, "keyframes": outcome.keyframes, "size": config.size,
        "replay_steps": config.steps_per_keyframe, "inpaint_steps": inputs.inpaint_steps,
        "gaussians": len(outcome.gaussians), "mesh_vertices": int(len(outcome.mesh.vertices)),
        "mesh_faces": int(len(outcome.mesh.faces)), "per_keyframe": outcome.stats, "cached": outcome.cached,
        "seconds": outcome.seconds, "total_s": time.perf_counter() - started, "models": registry.preset,
        "tiny": registry.is_tiny, "device": str(registry.device), "peak_memory": _peak_memory()}
    with staged(args.out) as staging:
        save_ply(outcome.gaussians, staging / "scene.ply")
        export_vertex_colour_glb(staging / "scene.glb", outcome.mesh.vertices, outcome.mesh.faces, outcome.mesh.colors)
        (staging / "cameras.json").write_text(json.dumps(cameras_json(inputs, outcome.keyframes), indent=1))
        if outcome.keyframe_images:
            Image.fromarray(keyframe_sheet(outcome.keyframe_images, label)).save(staging / "keyframes.png")
        (staging / "report.json").write_text(json.dumps(report, indent=2, default=str))
        names = sorted(p.name for p in staging.iterdir())
    print(f"done in {report['total_s']:.1f} s ({len(outcome.keyframes)} keyframes, {len(outcome.gaussians):,} "
          f"Gaussians, {len(outcome.mesh.faces):,} triangles): " + ", ".join(str(args.out / n) for n in names))
    if registry.is_tiny:
        print(f"NOTICE: {TINY_NOTICE}")
    return 0
