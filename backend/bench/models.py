"""Model costs: building and loading the tiny preset, and per-call costs of the real architectures.

    python -m backend.bench models [--full-size] [--device auto] [--repeats 3] [--json PATH]

Part 1 (always): every tiny model built from scratch into a temporary folder, then loaded again
through the registry as the server would. Targets (issue 4): creation ≤ 30 s, loading ≤ 5 s on
2 CPU cores.

Part 2 (`--full-size`): the real architectures at full size with random weights (no download),
in half precision on CUDA (float32 on CPU), timing one SDS step (256² render, forward and
backward through the VAE encoder), one Zero123 refinement step, one SD 1.5 img2img step at 512²,
one Depth Anything call at 518² and one CLIP image embedding with its backward pass; on CUDA
also the weights' memory and the peak memory of each call.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from backend.models import records

CREATE_TARGET_S, LOAD_TARGET_S = 30.0, 5.0
TINY_LOADS = (records.NOVEL_VIEW, records.DEPTH, records.CLIP, records.SEGMENTER, records.REFINER, records.DIFIX,
              records.DIFIX_REF, records.SD_TURBO, records.CAPTIONER)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full-size", action="store_true", help="also time the full-size architectures")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (full-size part)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row (after one warm-up)")
    parser.add_argument("--json", type=Path, help="also write the figures here")


def tiny_costs() -> dict[str, float]:
    from backend.models.registry import ModelRegistry, ModelSettings
    from backend.models.tiny import ensure_tiny

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        import diffusers  # noqa: F401  (import cost reported on its own row)
        import transformers  # noqa: F401
        figures["import libraries"] = time.perf_counter() - start
        for model in records.CATALOGUE.values():
            if model.has_tiny:
                start = time.perf_counter()
                ensure_tiny(model, Path(root))
                figures[f"build {model.role}"] = time.perf_counter() - start
        registry = ModelRegistry(ModelSettings(preset="tiny", device="cpu", tiny_dir=Path(root)))
        for record in TINY_LOADS:
            start = time.perf_counter()
            registry.get(record)
            figures[f"load {record.name}"] = time.perf_counter() - start
        # One progressive-fix round's model cost: four 256² renders with their references.
        fixer, views = registry.get(records.DIFIX_REF), torch.rand(4, 3, 256, 256)
        fixer.fix(views, views)
        start = time.perf_counter()
        fixer.fix(views, views)
        figures["fix: difix-ref, 4 views 256²"] = time.perf_counter() - start
    return figures


def _timed(fn, repeats: int, device: torch.device) -> tuple[float, float | None]:
    """Median seconds of `fn` after a warm-up, and the peak CUDA memory (GiB) during one call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    return sorted(times)[len(times) // 2], peak


def full_size_costs(device: torch.device, repeats: int) -> list[tuple[str, float, float | None, float | None]]:
    """→ rows (call, seconds, weights GiB, peak GiB)."""
    from backend.bench import full_size_models as full
    from backend.geometry.cameras import OrbitPose

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    generator = torch.Generator(device="cpu").manual_seed(0)
    pose = OrbitPose(torch.tensor([15.0]), torch.tensor([60.0]), torch.zeros(1))
    rows = []

    def weights_gib(modules) -> float:
        return sum(p.numel() * p.element_size() for m in modules for p in m.parameters()) / 2**30

    zero123 = full.zero123_xl(device, dtype)
    reference = zero123.encode_reference(torch.rand(1, 3, 256, 256, generator=generator))
    render = torch.rand(1, 3, 256, 256, generator=generator, device="cpu").to(device)

    def sds_step():
        image = render.clone().requires_grad_(True)
        zero123.sds(image, reference, pose, step_ratio=0.5).loss.backward()

    size = weights_gib(zero123.modules)
    rows.append(("Zero123-XL SDS step (fwd+bwd, 256²)", *_pair(_timed(sds_step, repeats, device), size)))
    rows.append(("Zero123-XL refinement, per step", *_pair(_timed(
        lambda: zero123.refine(render, reference, pose, strength=1.0, steps=1), repeats, device), size)))
    del zero123, reference
    _free(device)

    refiner = full.sd15_img2img(device, dtype)
    image = torch.rand(1, 3, 512, 512, generator=generator).to(device)
    seconds, peak = _timed(lambda: refiner.refine(image, "a wooden chair", strength=1.0, steps=1), repeats, device)
    rows.append(("SD 1.5 img2img, per step (512², CFG)", seconds, weights_gib(refiner.modules), peak))
    del refiner
    _free(device)

    fixer = full.difix_ref(device, dtype)
    renders = torch.rand(1, 3, 512, 512, generator=generator).to(device)
    references = torch.rand(1, 3, 512, 512, generator=generator).to(device)
    rows.append(("Difix-ref, one view + reference (512²)", *_pair(_timed(lambda: fixer.fix(renders, references),
                                                                          repeats, device), weights_gib(fixer.modules))))
    del fixer
    _free(device)

    depth = full.depth_anything_v2_small(device, dtype)
    image = torch.rand(1, 3, 512, 512, generator=generator).to(device)
    rows.append(("Depth Anything V2 S (518²)", *_pair(_timed(lambda: depth.predict(image), repeats, device),
                                                      weights_gib(depth.modules))))
    del depth
    _free(device)

    clip = full.open_clip_vit_b32(device, dtype)
    views = torch.rand(4, 3, 256, 256, generator=generator).to(device)

    def clip_step():
        v = views.clone().requires_grad_(True)
        clip.encode_images(v).sum().backward()

    rows.append(("OpenCLIP ViT-B/32, 4 views fwd+bwd", *_pair(_timed(clip_step, repeats, device),
                                                              weights_gib(clip.modules))))
    return rows


def _pair(timed: tuple[float, float | None], weights: float) -> tuple[float, float, float | None]:
    return timed[0], weights, timed[1]


def _free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(args: argparse.Namespace) -> int:
    from backend.device import describe_device

    figures = tiny_costs()
    build = sum(v for k, v in figures.items() if k.startswith("build"))
    load = sum(v for k, v in figures.items() if k.startswith("load"))
    print(f"tiny preset on {torch.get_num_threads()} CPU threads")
    print(f"{'step':28s} seconds")
    for name, seconds in figures.items():
        print(f"{name:28s} {seconds:7.2f}")
    print(f"{'creation total':28s} {build:7.2f}   (target ≤ {CREATE_TARGET_S:.0f} s: "
          f"{'met' if build <= CREATE_TARGET_S else 'MISSED'}; library imports not included)")
    print(f"{'load total':28s} {load:7.2f}   (target ≤ {LOAD_TARGET_S:.0f} s: "
          f"{'met' if load <= LOAD_TARGET_S else 'MISSED'})")
    results: dict = {"tiny": figures, "tiny_creation_s": build, "tiny_load_s": load}
    if args.full_size:
        info = describe_device(args.device)
        device = torch.device(info.device)
        rows = full_size_costs(device, args.repeats)
        dtype = "float16" if device.type == "cuda" else "float32"
        print(f"\nfull-size architectures, random weights, {dtype} on {info.gpu_name or info.device}")
        print(f"{'call':40s} {'seconds':>8s} {'weights GiB':>12s} {'peak GiB':>9s}")
        for name, seconds, weights, peak in rows:
            peak_text = f"{peak:9.2f}" if peak is not None else f"{'-':>9s}"
            print(f"{name:40s} {seconds:8.3f} {weights:12.2f} {peak_text}")
        results["full_size"] = {"device": info.gpu_name or info.device, "dtype": dtype,
                                "rows": [dict(zip(("call", "seconds", "weights_gib", "peak_gib"), r)) for r in rows]}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
