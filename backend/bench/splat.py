"""Splat renderer speed: the tiled PyTorch renderer against the naive untiled one (and gsplat on CUDA).

    python -m backend.bench splat [--gaussians 10000 ...] [--size 256] [--repeats 3] [--json PATH]

Scene (deterministic, seed 0): N Gaussians uniformly in a ball of radius 0.5 with nearest-neighbour
scales (the DreamGaussian start, grown to the density of a fitted object), opacity 0.5, random SH
degree-0 colours, one camera at distance 2, fovy 49.1°. Each case times forward and forward +
backward (loss = mean RGB + mean depth) for every renderer, interleaved repeat by repeat so
machine noise hits all alike (the naive renderer, hundreds of times slower, runs once); the table
shows medians and the fwd+bwd ratio against the tiled renderer.
Target (issue 3): tiled fwd+bwd ≤ 1.0 s for 10,000 Gaussians at 256² on 2 CPU cores. On CUDA the
gsplat row also reports the PSNR between gsplat's and the torch renderer's images (target ≥ 40 dB).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from backend.geometry import cameras as cm
from backend.geometry import gaussians as gs
from backend.geometry.splat import render_splats
from backend.geometry.splat.gsplat_renderer import gsplat_usable

TARGET_S = 1.0


@dataclass
class Row:
    gaussians: int
    size: int
    renderer: str
    forward_s: float
    forward_backward_s: float
    ratio_vs_tiled: float
    psnr_vs_torch_db: float | None = None


def scene(count: int, device: str) -> gs.Gaussians:
    g = gs.random_in_sphere(count, 0.5, opacity=0.5, generator=torch.Generator().manual_seed(0))
    g.params["sh0"].data = gs.rgb_to_sh0(torch.rand(count, 1, 3, generator=torch.Generator().manual_seed(1)))
    return g.to(device)


def _time(gaussians: gs.Gaussians, cams: cm.Cameras, backend: str) -> tuple[float, float, torch.Tensor]:
    sync = torch.cuda.synchronize if gaussians.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        image = render_splats(gaussians, cams, backgrounds=torch.ones(3), backend=backend).rgb
        sync()
        forward = time.perf_counter() - t0
    for p in gaussians.params.values():
        p.grad = None
    sync()
    t0 = time.perf_counter()
    out = render_splats(gaussians, cams, backgrounds=torch.ones(3), backend=backend)
    (out.rgb.mean() + out.depth.mean()).backward()
    sync()
    return forward, time.perf_counter() - t0, image


def run_splat_benchmark(counts: list[int], size: int, repeats: int, *, naive: bool = True,
                        device: str = "cpu") -> list[Row]:
    renderers = ["torch"] + (["torch-untiled"] if naive else [])
    if gsplat_usable(torch.device(device)):
        renderers.append("gsplat")
    cams = cm.orbit_cameras([15.0], [30.0], 2.0, width=size, height=size).to(device)
    rows = []
    for count in counts:
        g = scene(count, device)
        _time(g, cams, "torch")  # warm-up: first-call allocations and lazy imports
        times = {r: ([], []) for r in renderers}
        images = {}
        for repeat in range(repeats):
            for renderer in renderers:
                if renderer == "torch-untiled" and repeat > 0:
                    continue  # hundreds of times slower: one run says all there is to say
                fwd, total, images[renderer] = _time(g, cams, renderer)
                times[renderer][0].append(fwd)
                times[renderer][1].append(total)
        tiled_total = statistics.median(times["torch"][1])
        for renderer in renderers:
            total = statistics.median(times[renderer][1])
            psnr = None
            if renderer == "gsplat":
                mse = (images["gsplat"] - images["torch"]).square().mean().item()
                psnr = 10 * math.log10(1.0 / max(mse, 1e-20))
            rows.append(Row(count, size, renderer, statistics.median(times[renderer][0]), total,
                            total / tiled_total, psnr))
    return rows


def format_table(rows: list[Row]) -> str:
    lines = [f"{'gaussians':>9} {'size':>5} {'renderer':<14} {'forward s':>9} {'fwd+bwd s':>9} {'vs tiled':>8} "
             f"{'PSNR dB':>8}"]
    for r in rows:
        psnr = f"{r.psnr_vs_torch_db:8.1f}" if r.psnr_vs_torch_db is not None else f"{'':>8}"
        lines.append(f"{r.gaussians:>9} {r.size:>5} {r.renderer:<14} {r.forward_s:9.3f} {r.forward_backward_s:9.3f} "
                     f"{r.ratio_vs_tiled:7.2f}x {psnr}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gaussians", type=int, nargs="+", default=[2_000, 10_000])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-naive", action="store_true", help="skip the (slow) untiled baseline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")


def main(args: argparse.Namespace) -> int:
    print(f"splat renderers on {args.device} ({torch.get_num_threads()} threads), {args.size}² , "
          f"median of {args.repeats}")
    rows = run_splat_benchmark(args.gaussians, args.size, args.repeats, naive=not args.no_naive, device=args.device)
    print(format_table(rows))
    target = [r for r in rows if r.renderer == "torch" and r.gaussians == 10_000 and r.size == 256]
    if target:
        verdict = "meets" if target[0].forward_backward_s <= TARGET_S else "MISSES"
        print(f"tiled torch renderer, 10k Gaussians at 256²: {target[0].forward_backward_s:.3f} s fwd+bwd "
              f"({verdict} the {TARGET_S:.1f} s target)")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0
