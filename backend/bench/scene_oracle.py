"""`bench scene-oracle`: the text → scene loop on known scenes, ground truth in place of the models.

ORACLE EVIDENCE: the inpainting model is replaced by the true render inside the mask (or a flat
grey with `--inpaint constant`), the depth model by the true disparity under a random affine
distortion plus 1 % noise (`scene_oracles`). It measures what the loop itself does — masks,
alignment, replay, fusion — not what Stable Diffusion or Depth Anything would give.

The first keyframe's scale is the one thing a relative depth model cannot give: the benchmark sets
`first_median_depth` to the true median depth of the first view (the pipeline's default is 3 m).

Per scene, `results.json` has:
    heldout_psnr          mean PSNR of the Gaussians at the path poses halfway between keyframes
    first_view_psnr_drop  the first keyframe's PSNR right after its own optimisation minus after the
                          last step (forgetting)
    scale_error           mean over later keyframes of |median(true depth / aligned depth) − 1| on
                          the pixels each inpainted (max in scale_error_max)
    chamfer, fscore       the fused mesh against the visible true surface (every path pose's true
                          depth unprojected), τ = 2 % of that surface's bounding-box diagonal
                          (precision and recall beside it)
    mask_on_seen          share of inpainted pixels whose render already matched the truth there
                          (within 0.05 in every channel): masks covering well-seen pixels
    seconds
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.spatial import cKDTree

from backend.geometry.export import export_vertex_colour_glb
from backend.geometry.gaussians import unproject_depth
from backend.geometry.textured_mesh import TexturedMesh
from backend.scene import trajectory as tr
from backend.scene.fuse import FusedMesh, fuse_keyframes
from backend.scene.grow import SceneCallbacks, SceneConfig, SceneGrower, render_scene
from backend.scene.support import SupportEntry

from .reconstruct import psnr
from .scene_oracles import ConstantInpainter, DistortedDepth, TruthInpainter, true_depth, true_render
from .scenes import SCENES, build_scene, is_room, load_scene_glb, scene_eye

TARGETS = {"heldout_psnr": 24.0, "first_view_psnr_drop": 1.0, "scale_error": 0.02, "fscore": 0.8, "seconds": 600.0}
FSCORE_SAMPLES = 20_000
SEEN_TOLERANCE = 0.05


@dataclass
class SceneResult:
    scene: str
    trajectory: str
    inpaint: str
    keyframes: int
    heldout_psnr: float
    first_view_psnr_drop: float
    first_view_psnr_after_add: float
    first_view_psnr_final: float
    scale_error: float
    scale_error_max: float
    chamfer: float
    fscore: float
    precision: float
    """Share of the mesh's surface within τ of the visible true surface."""
    recall: float
    """Share of the visible true surface within τ of the mesh."""
    mask_on_seen: float
    gaussians: int
    mesh_faces: int
    seconds: float
    per_keyframe: list[dict] = field(default_factory=list)


def visible_truth_points(truth: TexturedMesh, trajectory: tr.Trajectory, size: int = 128) -> np.ndarray:
    """The true surface every path pose sees: each pose's true depth unprojected → [P, 3]."""
    points = []
    cameras = trajectory.cameras(size)
    for i in range(len(cameras)):
        depth = true_depth(truth, cameras[i])
        points.append(unproject_depth(depth, cameras[i])[depth > 0])
    return torch.cat(points).numpy()


def surface_scores(mesh: FusedMesh, truth_points: np.ndarray, seed: int = 0) -> tuple[float, float, float, float]:
    """(chamfer, F-score at 2 % of the truth's bounding-box diagonal, precision, recall) from
    area-uniform samples of the mesh and a subsample of the visible true points."""
    import trimesh

    rng = np.random.default_rng(seed)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    predicted = trimesh.sample.sample_surface(tm, FSCORE_SAMPLES, seed=seed)[0]
    truth = truth_points[rng.choice(len(truth_points), min(FSCORE_SAMPLES, len(truth_points)), replace=False)]
    d_pt, _ = cKDTree(truth).query(predicted)
    d_tp, _ = cKDTree(predicted).query(truth)
    tau = 0.02 * float(np.linalg.norm(truth_points.max(0) - truth_points.min(0)))
    precision, recall = float((d_pt < tau).mean()), float((d_tp < tau).mean())
    fscore = 2 * precision * recall / max(precision + recall, 1e-12)
    return float(d_pt.mean() + d_tp.mean()) / 2, fscore, precision, recall


def keyframe_psnr(gaussians, entry: SupportEntry, backend: str) -> float:
    """PSNR of the Gaussians' render at a keyframe against the image it was grown from (clamped
    to 0..1 like every rendered view scored here): the forgetting metric's measure."""
    with torch.no_grad():
        return psnr(render_scene(gaussians, entry.camera, backend).rgb[0].clamp(0, 1), entry.image)


def run_scene(name: str, truth: TexturedMesh, trajectory: tr.Trajectory, config: SceneConfig, inpaint: str,
              log=print, out: Path | None = None) -> tuple[SceneResult, list[torch.Tensor]]:
    """One scene grown with the oracles and scored; with `out`, its fused mesh is written there as
    `<name>.glb`."""
    started = time.perf_counter()
    first_camera = trajectory.cameras(config.size, [0])
    first_depth = true_depth(truth, first_camera)
    config = SceneConfig(**{**config.__dict__, "first_median_depth": float(first_depth[first_depth > 0].median())})
    inpainter = TruthInpainter(truth) if inpaint == "truth" else ConstantInpainter(truth)
    depth_model = DistortedDepth(truth, seed=config.seed)
    per_keyframe: list[dict] = []
    on_seen = [0, 0]
    first_after_add: list[float] = []

    def on_keyframe(stats, entry, gaussians) -> None:
        if stats.keyframe == 0:  # right after the first keyframe's own optimisation
            first_after_add.append(keyframe_psnr(gaussians, entry, config.backend))
        row = {"keyframe": stats.keyframe, "inpainted": round(stats.inpainted, 4), "gaussians": stats.gaussians,
               "seconds": round(stats.seconds, 1)}
        if stats.keyframe > 0 and entry.added.any():
            truth_depth = true_depth(truth, entry.camera)
            pick = entry.added & (entry.depth > 0) & (truth_depth > 0)
            if pick.any():
                row["scale"] = float((truth_depth[pick] / entry.depth[pick]).median())
            row["alignment"] = None if stats.alignment is None else asdict(stats.alignment)
        per_keyframe.append(row)
        log(f"  {name}: keyframe {stats.keyframe + 1}/{len(grower.keyframes)}: {stats.inpainted:.0%} inpainted, "
            f"{stats.gaussians:,} Gaussians, {stats.seconds:.1f} s")

    class Watch(SceneGrower):  # the render before each inpainting, for mask_on_seen
        def _next(self, k: int) -> None:
            camera = self.cameras[k]
            with torch.no_grad():
                before = render_scene(self.gaussians, camera, self.config.backend).rgb[0].clamp(0, 1)
            super()._next(k)
            added = self.support.entries[-1].added
            seen = ((before - true_render(truth, camera)).abs().max(-1).values < SEEN_TOLERANCE) & added
            on_seen[0] += int(seen.sum())
            on_seen[1] += int(added.sum())

    grower = Watch(trajectory, "", inpainter, depth_model, config, SceneCallbacks(on_keyframe=on_keyframe))
    grown = grower.grow()
    held = tr.held_out_indices(len(trajectory), grown.keyframes)
    cameras = trajectory.cameras(config.size, held)
    psnrs, sheet = [], []
    with torch.no_grad():
        for i in range(len(held)):
            rendered = render_scene(grown.gaussians, cameras[i], config.backend).rgb[0].clamp(0, 1)
            expected = true_render(truth, cameras[i])
            psnrs.append(psnr(rendered, expected))
            if i % max(1, len(held) // 4) == 0 and len(sheet) < 8:
                sheet += [expected, rendered]
    first_final = keyframe_psnr(grown.gaussians, grown.support.entries[0], config.backend)
    mesh = fuse_keyframes(grown.gaussians, grown.support, backend=config.backend)
    chamfer, fscore, precision, recall = surface_scores(mesh, visible_truth_points(truth, trajectory))
    if out is not None:
        export_vertex_colour_glb(out / f"{name}.glb", mesh.vertices, mesh.faces, mesh.colors)
    scales = [abs(row["scale"] - 1) for row in per_keyframe if "scale" in row]
    result = SceneResult(
        scene=name, trajectory=trajectory.name, inpaint=inpaint, keyframes=len(grown.keyframes),
        heldout_psnr=float(np.mean(psnrs)) if psnrs else float("nan"),
        first_view_psnr_drop=first_after_add[0] - first_final,
        first_view_psnr_after_add=first_after_add[0], first_view_psnr_final=first_final,
        scale_error=float(np.mean(scales)) if scales else float("nan"),
        scale_error_max=float(np.max(scales)) if scales else float("nan"), chamfer=chamfer, fscore=fscore,
        precision=precision, recall=recall,
        mask_on_seen=on_seen[0] / max(on_seen[1], 1), gaussians=len(grown.gaussians), mesh_faces=len(mesh.faces),
        seconds=time.perf_counter() - started, per_keyframe=per_keyframe)
    return result, sheet


def verdicts(results: list[SceneResult]) -> list[str]:
    lines = []
    for r in results:
        checks = [("heldout_psnr", r.heldout_psnr >= TARGETS["heldout_psnr"], f"{r.heldout_psnr:.2f} dB"),
                  ("first_view_psnr_drop", r.first_view_psnr_drop <= TARGETS["first_view_psnr_drop"],
                   f"{r.first_view_psnr_drop:.2f} dB"),
                  ("scale_error", r.scale_error <= TARGETS["scale_error"], f"{r.scale_error:.2%}"),
                  ("fscore", r.fscore >= TARGETS["fscore"], f"{r.fscore:.3f}"),
                  ("seconds", r.seconds <= TARGETS["seconds"], f"{r.seconds:.0f} s")]
        for name, ok, value in checks:
            lines.append(f"{r.scene}/{r.trajectory}: {name} {value} (target {TARGETS[name]:g}): "
                         f"{'met' if ok else 'MISSED'}")
    return lines


def format_table(results: list[SceneResult]) -> str:
    head = ("| scene | path | inpaint | held-out PSNR | first-view drop | scale error (max) | chamfer | "
            "F-score (precision / recall) | mask on seen | Gaussians | s |")
    rows = [head, "|" + "---|" * 11]
    for r in results:
        rows.append(f"| {r.scene} | {r.trajectory} | {r.inpaint} | {r.heldout_psnr:.2f} | "
                    f"{r.first_view_psnr_drop:.2f} ({r.first_view_psnr_after_add:.1f} → {r.first_view_psnr_final:.1f}) "
                    f"| {r.scale_error:.2%} ({r.scale_error_max:.2%}) | {r.chamfer:.3f} | {r.fscore:.3f} "
                    f"({r.precision:.3f} / {r.recall:.3f}) | "
                    f"{r.mask_on_seen:.2%} | {r.gaussians:,} | {r.seconds:.0f} |")
    return "\n".join(rows)


def _sheet(rows: list[list[torch.Tensor]], path: Path) -> None:
    width = max(len(r) for r in rows)
    size = rows[0][0].shape[0]
    canvas = torch.ones(len(rows) * size, width * size, 3)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            canvas[i * size:(i + 1) * size, j * size:(j + 1) * size] = image
    Image.fromarray((canvas.numpy() * 255 + 0.5).astype(np.uint8)).save(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenes", nargs="*", choices=SCENES, default=list(SCENES))
    parser.add_argument("--mesh", nargs="*", type=Path, default=[], help="textured GLB scenes to add (+Y up, metres)")
    parser.add_argument("--trajectory", choices=tr.PRESETS, default="orbit")
    parser.add_argument("--frames", type=int, default=12, help="keyframes (default 12)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--inpaint", choices=("truth", "constant"), default="truth",
                        help="the inpainting oracle: true pixels inside the mask, or a flat grey (to see the masks)")
    parser.add_argument("--steps", type=int, default=None,
                        help="replay steps per keyframe, twice that for the first (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-out/scene-oracle"))


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    config = SceneConfig(size=args.size, keyframes=args.frames, seed=args.seed, backend="auto")
    if args.steps is not None:  # the first keyframe gets twice as many, as in the pipeline
        config = SceneConfig(**{**config.__dict__, "steps_per_keyframe": args.steps, "first_steps": 2 * args.steps})
    truths = [(name, build_scene(name)) for name in args.scenes]
    for path in args.mesh:
        truths.append((path.stem, load_scene_glb(path)))
    print("ORACLE EVIDENCE: ground truth stands in for the inpainting and depth models (see --help).")
    results, rows = [], []
    for name, truth in truths:
        eye = scene_eye(truth)
        if not is_room(truth) and name not in SCENES:
            print(f"  {name}: not a room (open at eye height); starting at its centre all the same")
        trajectory = tr.preset(args.trajectory, args.frames, eye=tuple(float(x) for x in eye))
        result, sheet = run_scene(name, truth, trajectory, config, args.inpaint, out=args.out)
        results.append(result)
        rows.append(sheet)
        print(f"  {name}: held-out {result.heldout_psnr:.2f} dB, F-score {result.fscore:.3f}, {result.seconds:.0f} s")
    (args.out / "results.json").write_text(json.dumps(_finite([asdict(r) for r in results]), indent=2,
                                                      allow_nan=False))
    _sheet(rows, args.out / "contact_sheet.png")
    print()
    print(format_table(results))
    print()
    print("\n".join(verdicts(results)))
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'contact_sheet.png'}")
    return 0


def _finite(value):
    """NaN and infinities (a metric with nothing to measure) as null: results.json stays valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
