"""Mesh stage speed: Gaussians → textured mesh, step by step.

    python -m backend.bench mesh-stage [--gaussians 30000] [--grid 128] [--faces 20000]
                                       [--texture 1024] [--json PATH]

Scene (deterministic, seed 0): Gaussians spread over the surface of the benchmark's torus (the
non-convex object) with surfel-like scales, opacity 0.9 and colours from their position — the
shape of a stage-1 result. The stage runs with the pipeline's defaults: 128³ density grid,
interior fill by space carving, marching cubes, clean-up, decimation to 20,000 faces, xatlas UV
atlas, 1024² bake from 16 views rendered at 512². Target (issue 3): ≤ 30 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import trimesh

from backend.geometry import gaussians as gs
from backend.geometry.bake import BakeConfig
from backend.geometry.extract import MeshStageConfig, extract_textured_mesh

TARGET_S = 30.0


def surface_gaussians(count: int) -> gs.Gaussians:
    torus = trimesh.creation.torus(0.35, 0.13, major_sections=64, minor_sections=24)
    torus.apply_transform(trimesh.transformations.rotation_matrix(np.radians(55), (1, 0, 0)))
    points, faces = trimesh.sample.sample_surface(torus, count, seed=0)
    normals = torus.face_normals[faces]
    # Surfels: wide along the surface, thin along the normal (a quaternion turning z to the normal).
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, normals)
    sin = np.linalg.norm(axis, axis=1, keepdims=True)
    cos = normals @ z
    half = np.arctan2(sin[:, 0], cos) / 2
    quats = np.concatenate([np.cos(half)[:, None], axis / np.maximum(sin, 1e-9) * np.sin(half)[:, None]], 1)
    spacing = np.sqrt(torus.area / count)
    log_scales = np.log(np.tile([spacing, spacing, spacing * 0.15], (count, 1)))
    colours = torch.from_numpy(np.clip(points / 0.9 + 0.5, 0, 1)).float()
    return gs.Gaussians.from_tensors(
        torch.from_numpy(points).float(), torch.from_numpy(log_scales).float(), torch.from_numpy(quats).float(),
        torch.full((count,), float(np.log(0.9 / 0.1))), gs.rgb_to_sh0(colours)[:, None, :])


def run_mesh_stage_benchmark(count: int, config: MeshStageConfig) -> tuple[dict[str, float], float, int, float]:
    gaussians = surface_gaussians(count)
    start = time.perf_counter()
    extracted = extract_textured_mesh(gaussians, config, splat_backend="torch")
    total = time.perf_counter() - start
    return extracted.timings, total, len(extracted.mesh.faces), extracted.coverage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gaussians", type=int, default=30_000)
    parser.add_argument("--grid", type=int, default=MeshStageConfig.grid_resolution)
    parser.add_argument("--faces", type=int, default=MeshStageConfig.target_faces)
    parser.add_argument("--texture", type=int, default=BakeConfig.texture_size)
    parser.add_argument("--json", type=Path, help="also write the timings as JSON")


def main(args: argparse.Namespace) -> int:
    config = MeshStageConfig(grid_resolution=args.grid, target_faces=args.faces,
                             bake=replace(BakeConfig(), texture_size=args.texture))
    print(f"mesh stage: {args.gaussians} Gaussians, {args.grid}³ grid, {args.faces} faces, {args.texture}² texture, "
          f"{torch.get_num_threads()} threads")
    timings, total, faces, coverage = run_mesh_stage_benchmark(args.gaussians, config)
    print(f"{'step':<16} {'seconds':>8}")
    for step, seconds in timings.items():
        print(f"{step:<16} {seconds:8.2f}")
    print(f"{'total':<16} {total:8.2f}   ({faces} faces, {coverage:.1%} of chart texels seen; "
          f"{'meets' if total <= TARGET_S else 'MISSES'} the {TARGET_S:.0f} s target)")
    if args.json:
        args.json.write_text(json.dumps({"timings": timings, "total_s": total, "faces": faces, "coverage": coverage},
                                        indent=2))
    return 0
