"""`./lift3d bench terms`: what each optional loss term of the method costs per step, measured
side by side through the real generate pipeline (tiny models unless `--models full`), plus the
draft preset's end-to-end time.

Stage 1 terms (Make-It-3D's text prior, the CLIP loss to the reference) are timed as geometry
seconds per step with the pseudo views off, so the fixed cost of generating them does not dilute
the per-step figure; stage 2's cross-view term as texture seconds per step on cached geometry.
Variants alternate within each round (the machine's drift hits all alike) and the median round
is reported. Tiny weights make every model's output noise: these are costs, never quality.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .photos import disc_photo

PROMPT = "a red disc"
STAGE1_VARIANTS: dict[str, dict[str, Any]] = {  # GeometryConfig fields (text_prior is the option's field)
    "stage 1, no optional term": {},
    "+ text prior (SD 1.5 SDS)": {"text_prior": True},
    "+ CLIP loss to the reference": {"clip_weight": 1.0},
}
STAGE2_VARIANTS: dict[str, dict[str, Any]] = {
    "stage 2, global CLIP only": {},
    "+ cross-view consistency": {"cross_view_weight": 0.05},
}


def _job(pipeline, *, seed: int, options: dict[str, Any], geometry: dict[str, Any] | None = None,
         texture: dict[str, Any] | None = None, quality: str = "draft") -> tuple[float, dict[str, float]]:
    """One job → (wall seconds, the report's per-stage seconds)."""
    from protocol import Generate

    from ..pipelines.generate_request import inputs_from
    from ..serving.context import StageContext

    inputs = inputs_from(Generate(image=disc_photo(), prompt=PROMPT, quality=quality, seed=seed, options=options))
    config = inputs.config
    config = dataclasses.replace(config, geometry=dataclasses.replace(config.geometry, **(geometry or {})),
                                 texture=dataclasses.replace(config.texture, **(texture or {})))
    started = time.perf_counter()
    pipeline.run(dataclasses.replace(inputs, config=config), StageContext(lambda message: None, threading.Event()))
    return time.perf_counter() - started, dict(pipeline.last_report.timings)


def _rounds(rounds: int, variants: dict[str, dict[str, Any]], measure: Callable[[int, dict[str, Any]], float],
            log: Callable[[str], None]) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        for name, settings in variants.items():
            seconds[name].append(measure(index, settings))
            log(f"round {index + 1}/{rounds}, {name}: {seconds[name][-1]:.3f} s per step")
    return seconds


def measure(*, models: str, geometry_steps: int, texture_steps: int, rounds: int, end_to_end: bool,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    from ..models.registry import ModelRegistry, ModelSettings
    from ..pipelines.cache import ResultCache
    from ..pipelines.generate import GenerationPipeline

    registry = ModelRegistry(ModelSettings(preset=models))
    with tempfile.TemporaryDirectory(prefix="lift3d-bench-terms-") as tmp:
        pipeline = GenerationPipeline(registry, ResultCache(Path(tmp) / "cache"))
        # Warm-up: every model the variants use is loaded before any timing.
        _job(pipeline, seed=10_000, options={"geometry_steps": 2, "texture_steps": 1},
             geometry={"multiview_weight": 0.0, "text_prior": True, "clip_weight": 1.0},
             texture={"cross_view_weight": 0.05})
        seed = iter(range(1, 1_000_000))

        def stage1(index: int, settings: dict[str, Any]) -> float:
            _, timings = _job(pipeline, seed=next(seed),  # a new seed: a cache miss
                              options={"geometry_steps": geometry_steps, "texture_steps": 0},
                              geometry={"multiview_weight": 0.0, "text_prior": False, **settings})
            return timings["geometry"] / geometry_steps

        def stage2(index: int, settings: dict[str, Any]) -> float:
            # One seed per round: the geometry and mesh come from the cache after the first variant.
            _, timings = _job(pipeline, seed=500_000 + index, options={"geometry_steps": 2, "texture_steps": texture_steps},
                              geometry={"multiview_weight": 0.0}, texture=settings)
            return timings["texture"] / texture_steps

        result: dict[str, Any] = {"models": registry.preset, "device": str(registry.device),
                                  "geometry_steps": geometry_steps, "texture_steps": texture_steps, "rounds": rounds,
                                  "stage1": _rounds(rounds, STAGE1_VARIANTS, stage1, log),
                                  "stage2": _rounds(rounds, STAGE2_VARIANTS, stage2, log)}
        if end_to_end:
            result["draft_end_to_end_s"] = {}
            for name, options in (("draft (defaults)", {}), ("draft + text prior", {"text_prior": True})):
                fresh = GenerationPipeline(registry, ResultCache(Path(tmp) / f"cache-{len(result['draft_end_to_end_s'])}"))
                result["draft_end_to_end_s"][name] = _job(fresh, seed=0, options=options)[0]
                log(f"{name}: {result['draft_end_to_end_s'][name]:.1f} s end to end")
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"per-step cost of each loss term ({result['models']} models on {result['device']}; median of "
             f"{result['rounds']} alternating rounds; stage 1: {result['geometry_steps']} geometry steps, pseudo views "
             f"off; stage 2: {result['texture_steps']} texture steps on cached geometry)",
             "", "| variant | s / step | added s / step |", "|---|---|---|"]
    for stage in ("stage1", "stage2"):
        medians = {name: statistics.median(values) for name, values in result[stage].items()}
        base = next(iter(medians.values()))
        for index, (name, value) in enumerate(medians.items()):
            added = "–" if index == 0 else f"{value - base:+.3f}"
            lines.append(f"| {name} | {value:.3f} | {added} |")
    for name, seconds in result.get("draft_end_to_end_s", {}).items():
        lines.append(f"{name}, end to end: {seconds:.1f} s")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", choices=("tiny", "full", "auto"), default="tiny",
                        help="model preset (default tiny: random weights, costs only)")
    parser.add_argument("--geometry-steps", type=int, default=20, help="stage-1 steps per timed job (default 20)")
    parser.add_argument("--texture-steps", type=int, default=10, help="stage-2 steps per timed job (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the draft preset's end-to-end runs")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to this JSON file")


def main(args: argparse.Namespace) -> int:
    if min(args.geometry_steps, args.texture_steps, args.rounds) < 1:
        print("error: --geometry-steps, --texture-steps and --rounds must be at least 1")
        return 2
    result = measure(models=args.models, geometry_steps=args.geometry_steps, texture_steps=args.texture_steps,
                     rounds=args.rounds, end_to_end=not args.no_end_to_end)
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0
