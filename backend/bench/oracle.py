"""The whole two-stage pipeline on known objects, with an oracle in place of the diffusion models.

    python -m backend.bench oracle [--objects globe torus] [--steps 300] [--texture-steps 50]
                                   [--size 256] [--ablations] [--out DIR]

This extends the reconstruction benchmark (same objects, supersampled ground truth, held-out
views): the pipeline's own stage code runs — `optimise_gaussians` (reference RGB + mask, SDS,
six pseudo views, Pearson depth, densification), the mesh stage, and `refine_texture` — but every
model output is replaced by the truth:

* SDS at a random view → MSE to the ground-truth render of that view (what a perfect denoiser's
  x̂₀ would be), weighted like the multi-view loss;
* the six pseudo views and their masks → ground-truth renders at the six poses;
* monocular depth → the ground truth's inverse depth;
* texture refinement targets → ground-truth renders of each refinement view.

So the figures measure the pipeline's optimisation, meshing and texturing, not the models.
Scored at eight held-out views on white (PSNR, mask IoU): the stage-1 Gaussians, the baked mesh
(before texture refinement) and the final textured mesh. Targets (issue 5): final ≥ Gaussians,
final ≥ 25 dB at 256². `--ablations` reruns without the depth loss and without the multi-view
loss (the no-refinement row is the baked mesh of the full run).

`--guidance degraded` (issue 13's evidence) spoils every model stand-in the way real models spoil
their output (`degraded.py`: per-view colour cast, blur, 2.5° pose error, noise; fresh for every
SDS and texture call) and compares, on the same objects:

* independent pseudo views (each view its own cast and pose error: six Zero123 samples) against
  joint ones (one cast and pose error for the set: a multi-view model such as Zero123++);
* joint views plus a text-prior stand-in: a second, independently degraded opinion at the novel
  view, at half the SDS stand-in's weight (Lift3D's text prior is 0.025 × Zero123's SDS at CFG 100
  against CFG 5: about half its pull).

Scored as above plus `colour_spread` (cross-view consistency: the spread of one surface point's
rendered colour across the held-out views) for the Gaussians and the final mesh. The CLIP terms
(stage 1's CLIP loss, stage 2's cross-view consistency) compare CLIP features, which no oracle can
stand in for without real weights: they are not part of this evidence.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.bench.degraded import DEFAULT as DEFAULT_DEGRADATION
from backend.bench.degraded import Degradation, colour_spread, degrade
from backend.bench.objects import OBJECT_NAMES, build_objects
from backend.bench.reconstruct import WHITE, held_out_cameras, iou, psnr, render_antialiased
from backend.geometry import cameras as cm
from backend.geometry.extract import extract_textured_mesh
from backend.geometry.splat import render_splats
from backend.geometry.textured_mesh import TexturedMesh, render_mesh
from backend.stages.config import STANDARD, GeometryConfig, TextureConfig
from backend.stages.geometry import PseudoViews, ReferenceTargets, optimise_gaussians
from backend.stages.texture import refine_texture

ORACLE_WEIGHT = 1000.0  # the SDS stand-in's weight, the multi-view loss's scale


def _truth_views(truth: TexturedMesh, cameras: cm.Cameras) -> tuple[Tensor, Tensor, Tensor]:
    """→ images [C, 3, H, W] on white, masks [C, H, W], inverse depth [C, H, W] (0 outside)."""
    rgb, alpha = render_antialiased(truth, cameras, backgrounds=WHITE)
    with torch.no_grad():
        depth = render_mesh(truth, cameras).fragments.depth
    inverse = torch.where(depth > 0, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    return rgb.permute(0, 3, 1, 2), alpha[..., 0], inverse


class _Oracle:
    """Ground-truth renders in place of a model's output; with a `degradation`, spoilt afresh at
    every call (`degraded.degrade`, per view), as a real model's samples disagree."""

    def __init__(self, truth: TexturedMesh, fovy_deg: float, degradation: Degradation | None = None, seed: int = 0):
        self.truth, self.fovy_deg, self.degradation = truth, fovy_deg, degradation
        self.generator = torch.Generator().manual_seed(seed)

    def truth_at(self, poses: cm.OrbitPose, size: int) -> Tensor:  # → [B, 3, size, size] on white
        if self.degradation is not None:
            return degrade(self.truth, poses, self.fovy_deg, size, self.degradation, self.generator, shared=False)[0]
        cameras = cm.cameras_from_poses(poses, fovy_deg=self.fovy_deg, width=size, height=size)
        return _truth_views(self.truth, cameras)[0]


class OracleGeometryGuidance(_Oracle):
    def sds_loss(self, images: Tensor, poses: cm.OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        return ORACLE_WEIGHT * F.mse_loss(images, self.truth_at(poses, images.shape[-1]).to(images))


class OracleTextPrior(_Oracle):
    """A stage-1 `NovelViewPrior` standing in for the text prior: a second opinion at the novel
    view, degraded independently of the SDS stand-in's."""

    name = "text sds"
    weight = ORACLE_WEIGHT / 2

    def loss(self, images: Tensor, poses: cm.OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        return F.mse_loss(images, self.truth_at(poses, images.shape[-1]).to(images))


class OracleTextureGuidance(_Oracle):
    def targets(self, renders: Tensor, poses: cm.OrbitPose, step_ratio: float, generator: torch.Generator) -> Tensor:
        return self.truth_at(poses, renders.shape[-1])

    def semantic_loss(self, renders: Tensor) -> None:
        return None


@dataclass
class OracleResult:
    object: str
    variant: str
    gaussians: int
    gaussian_psnr: float
    gaussian_iou: float
    baked_psnr: float
    final_psnr: float
    mesh_iou: float
    gaussian_spread: float
    final_spread: float
    truth_spread: float
    geometry_s: float
    mesh_s: float
    texture_s: float


@dataclass(frozen=True)
class Guidance:
    """How the stand-ins behave in one variant."""

    degradation: Degradation | None = None
    """None: exact ground truth; else every stand-in is degraded."""
    joint_views: bool = True
    """Degraded pseudo views share one colour cast and pose error (a joint multi-view model)."""
    text_prior: bool = False


EXACT = Guidance()


def run_variant(name: str, truth: TexturedMesh, variant: str, geometry: GeometryConfig, texture: TextureConfig,
                size: int, seed: int, log=print, guidance: Guidance = EXACT) -> tuple[OracleResult, list[Tensor]]:
    reference_cam = cm.reference_camera(geometry.reference_elevation_deg, geometry.camera_radius,
                                        fovy_deg=geometry.fovy_deg, width=size, height=size)
    image, mask, depth = _truth_views(truth, reference_cam)
    reference = ReferenceTargets(image[0], mask[0], depth[0])
    poses = cm.six_view_poses(radius=geometry.camera_radius)
    six, six_masks, six_depth = _truth_views(truth, cm.cameras_from_poses(poses, fovy_deg=geometry.fovy_deg,
                                                                          width=size, height=size))
    spoilt = guidance.degradation
    if spoilt is not None:  # the masks and depth stay exact: this evidence is about the colours and poses
        six = degrade(truth, poses, geometry.fovy_deg, size, spoilt, torch.Generator().manual_seed(seed + 7),
                      shared=guidance.joint_views)[0]
    pseudo = PseudoViews(six, six_masks, six_depth, poses, geometry.fovy_deg)
    priors = [OracleTextPrior(truth, geometry.fovy_deg, spoilt, seed=seed + 2)] if guidance.text_prior else []
    started = time.perf_counter()
    result = optimise_gaussians(reference, OracleGeometryGuidance(truth, geometry.fovy_deg, spoilt, seed=seed + 1),
                                pseudo, geometry, seed=seed, splat_backend="torch", priors=priors)
    geometry_s = time.perf_counter() - started
    started = time.perf_counter()
    mesh_config = replace(STANDARD.mesh, bake=replace(STANDARD.mesh.bake, texture_size=1024, render_size=2 * size))
    extracted = extract_textured_mesh(result.gaussians.detached(), mesh_config, splat_backend="torch")
    mesh_s = time.perf_counter() - started
    started = time.perf_counter()
    refined = refine_texture(extracted.mesh, reference,
                             OracleTextureGuidance(truth, geometry.fovy_deg, spoilt, seed=seed + 3), texture,
                             geometry, seed=seed, mesh_backend="torch")
    texture_s = time.perf_counter() - started

    test = held_out_cameras(size)
    truth_rgb, truth_alpha = render_antialiased(truth, test, backgrounds=WHITE)
    with torch.no_grad():
        splats = render_splats(result.gaussians, test, backgrounds=WHITE, backend="torch")
    baked_rgb, mesh_alpha = render_antialiased(extracted.mesh, test, backgrounds=WHITE)
    final_mesh = TexturedMesh(extracted.mesh.vertices, extracted.mesh.faces, extracted.mesh.uvs, refined.texture,
                              extracted.mesh.normals)
    final_rgb, _ = render_antialiased(final_mesh, test, backgrounds=WHITE)
    row = OracleResult(name, variant, len(result.gaussians), psnr(splats.rgb.clamp(0, 1), truth_rgb),
                       iou(splats.alpha, truth_alpha), psnr(baked_rgb, truth_rgb), psnr(final_rgb, truth_rgb),
                       iou(mesh_alpha, truth_alpha), colour_spread(truth, splats.rgb.clamp(0, 1), test),
                       colour_spread(truth, final_rgb, test), colour_spread(truth, truth_rgb, test),
                       geometry_s, mesh_s, texture_s)
    log(f"  {name} / {variant}: Gaussians {row.gaussian_psnr:.2f} dB, baked {row.baked_psnr:.2f} dB, "
        f"final {row.final_psnr:.2f} dB, spread {row.gaussian_spread:.4f} / {row.final_spread:.4f} "
        f"({geometry_s:.0f} + {mesh_s:.0f} + {texture_s:.0f} s)")
    panels = [torch.cat([truth_rgb[i], splats.rgb[i].clamp(0, 1), baked_rgb[i], final_rgb[i]], dim=1) for i in (1, 3)]
    return row, panels


def format_table(rows: list[OracleResult]) -> str:
    lines = ["| object | variant | Gaussians PSNR / IoU | baked mesh PSNR | final mesh PSNR / IoU | final − Gaussians | "
             "colour spread: Gaussians / final (truth) | time (geometry + mesh + texture) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.object} | {r.variant} | {r.gaussian_psnr:.2f} / {r.gaussian_iou:.3f} | {r.baked_psnr:.2f} | "
                     f"{r.final_psnr:.2f} / {r.mesh_iou:.3f} | {r.final_psnr - r.gaussian_psnr:+.2f} | "
                     f"{r.gaussian_spread:.4f} / {r.final_spread:.4f} ({r.truth_spread:.4f}) | "
                     f"{r.geometry_s:.0f} + {r.mesh_s:.0f} + {r.texture_s:.0f} s |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", nargs="+", choices=OBJECT_NAMES, default=["globe", "torus"],
                        help="built-in objects")
    parser.add_argument("--steps", type=int, default=300, help="geometry steps")
    parser.add_argument("--texture-steps", type=int, default=50)
    parser.add_argument("--size", type=int, default=256, help="render and evaluation size")
    parser.add_argument("--ablations", action="store_true", help="also run without depth and without multi-view loss")
    parser.add_argument("--guidance", choices=("exact", "degraded"), default="exact",
                        help="exact ground truth (default), or degraded stand-ins compared with independent vs joint "
                             "pseudo views and with/without the text-prior stand-in (ORACLE EVIDENCE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-results") / "oracle")


def main(args: argparse.Namespace) -> int:
    from PIL import Image

    torch.manual_seed(args.seed)
    objects = build_objects(names=args.objects)
    geometry = replace(STANDARD.geometry, steps=args.steps, render_sizes=(args.size // 2, args.size, args.size))
    texture = replace(STANDARD.texture, steps=args.texture_steps, render_size=args.size)
    variants = {"full": (geometry, EXACT)}
    if args.guidance == "degraded":
        spoilt = DEFAULT_DEGRADATION
        variants = {"degraded, independent views": (geometry, Guidance(spoilt, joint_views=False)),
                    "degraded, joint views": (geometry, Guidance(spoilt, joint_views=True)),
                    "degraded, joint views + text prior": (geometry, Guidance(spoilt, joint_views=True, text_prior=True))}
    if args.ablations:
        variants["no depth loss"] = (replace(geometry, depth_weight=0.0), EXACT)
        variants["no multi-view loss"] = (replace(geometry, multiview_weight=0.0), EXACT)
    rows, panels, started = [], [], time.perf_counter()
    print(f"ORACLE EVIDENCE (ground truth stands in for the models; guidance {args.guidance}): {args.steps} geometry "
          f"steps, {args.texture_steps} texture steps, {args.size}², {torch.get_num_threads()} CPU threads")
    first = next(iter(variants))
    for name in args.objects:
        for variant, (config, guidance) in variants.items():
            row, sheet = run_variant(name, objects[name], variant, config, texture, args.size, args.seed,
                                     guidance=guidance)
            rows.append(row)
            if variant == first:
                panels.extend(sheet)
    table = format_table(rows)
    print("\n" + table)
    print("(no-refinement ablation = the baked mesh column of the full rows)")
    for r in rows:
        if r.variant == "full":
            print(f"{r.object}: final − Gaussians {r.final_psnr - r.gaussian_psnr:+.2f} dB (target ≥ 0: "
                  f"{'met' if r.final_psnr >= r.gaussian_psnr else 'MISSED'}), final {r.final_psnr:.2f} dB "
                  f"(target ≥ 25: {'met' if r.final_psnr >= 25 else 'MISSED'})")
    print(f"total {time.perf_counter() - started:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    sheet = torch.cat(panels, dim=0)
    Image.fromarray((sheet.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()).save(args.out / "contact_sheet.png")
    print(f"results: {args.out / 'results.json'}, {args.out / 'contact_sheet.png'}")
    return 0
