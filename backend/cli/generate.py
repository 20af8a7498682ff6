"""`python -m backend generate IMAGE --prompt TEXT --out DIR`: one generation, in this process,
with a progress bar; writes model.glb, splats.ply, turntable.png and report.json."""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import RequestKind
from protocol.options import DEFAULT_QUALITY, QUALITY_NAMES, OptionError, options_for, parse_cli_value

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_CANCELLED = 2, 1, 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="PNG, JPEG or WebP image of the object")
    parser.add_argument("--prompt", default="", help="what the object is (empty: a caption is generated)")
    parser.add_argument("--preset", default=DEFAULT_QUALITY, choices=QUALITY_NAMES, help="quality preset")
    parser.add_argument("--models", default="auto", choices=("auto", "full", "tiny"), help="model preset")
    parser.add_argument("--device", default="auto", help="auto, cpu, mps, cuda or cuda:N")
    parser.add_argument("--models-lock", type=Path, metavar="PATH",
                        help="models lock file (default: LIFT3D_MODELS_LOCK or ~/.cache/lift3d/models.lock.json)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="request option (repeatable): " + option_help())
    parser.add_argument("--cache-dir", type=Path, help="result cache folder")


def option_help() -> str:
    """The options of a generate request, from the protocol's table: 'faces (an integer from 500
    to 500,000), ...'."""
    return "; ".join(f"{spec.name}: {spec.allowed()}" for spec in options_for(RequestKind.GENERATE))


def parse_options(pairs: list[str], kind: RequestKind = RequestKind.GENERATE) -> dict:
    """`NAME=VALUE` strings → the options map of a `kind` request, each value parsed as its
    option's type; raises OptionError (unknown name, bad value) or ValueError (not NAME=VALUE)."""
    known = {spec.name: spec for spec in options_for(kind)}
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--option needs NAME=VALUE, got {pair!r}")
        spec = known.get(name)
        if spec is None:
            raise OptionError(name, f"unknown option {name!r}", hint=f"Known options: {', '.join(known)}.")
        options[name] = spec.check_for(kind, parse_cli_value(spec, value))
    return options


class _ProgressBar:
    """One tqdm bar per stage, fed by the pipeline's progress messages."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm, self._bar, self._stage = tqdm, None, None

    def __call__(self, message) -> None:
        from protocol import Progress

        if not isinstance(message, Progress):
            return
        if message.stage != self._stage or self._bar is None:
            self.close()
            self._stage = message.stage
            self._bar = self._tqdm(total=max(message.total, 1), desc=f"{message.stage:>12s}", unit="step",
                                   file=sys.stderr, leave=True, dynamic_ncols=True)
        self._bar.total = max(message.total, 1)
        self._bar.n = min(message.step, self._bar.total)
        if message.message:
            self._bar.set_postfix_str(message.message[:60], refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def fail(code: int, text: str, hint: str = "") -> int:
    """Print `error: text` (and the hint) to stderr and return the exit code."""
    print(f"error: {text}" + (f"\n  hint: {hint}" if hint else ""), file=sys.stderr)
    return code


def open_registry(args: argparse.Namespace):
    """The model registry the command's `--models`, `--device` and `--models-lock` ask for (the
    tiny preset announced on stderr), or the exit code after printing why it cannot be opened."""
    from ..models.hub import ModelUnavailableError
    from ..models.registry import TINY_NOTICE, ModelRegistry, ModelSettings

    try:
        registry = ModelRegistry(ModelSettings(preset=args.models, device=args.device, lock_file=args.models_lock))
    except (ModelUnavailableError, ValueError) as exc:
        return fail(EXIT_FAILED, str(exc))
    if registry.is_tiny:
        print(f"NOTICE: {TINY_NOTICE}", file=sys.stderr)
    return registry


@dataclass
class JobRun:
    """What `run_in_process` hands back: the job's result, the registry it ran on, when it started."""
    outcome: Any
    registry: Any
    started: float


def run_in_process(args: argparse.Namespace, job: Callable[[Any, Any], Any], default_stage: str = "") -> JobRun | int:
    """The part every in-process command shares once its input is checked: refuse an `--out` that is a
    file, open the registry, run `job(registry, ctx)` under a progress bar, and turn Ctrl+C, a
    cancellation or a PipelineError into an exit code with nothing written (→ the code)."""
    from ..serving.context import JobCancelled, PipelineError, StageContext

    if args.out.exists() and not args.out.is_dir():
        return fail(EXIT_BAD_INPUT, f"--out {args.out} exists and is not a folder")
    registry = open_registry(args)
    if isinstance(registry, int):
        return registry
    bar = _ProgressBar()
    ctx = StageContext(bar, threading.Event())
    started = time.perf_counter()
    try:
        outcome = job(registry, ctx)
    except (KeyboardInterrupt, JobCancelled):
        return fail(EXIT_CANCELLED, "cancelled; nothing was written")
    except PipelineError as exc:
        code = EXIT_BAD_INPUT if exc.code == "invalid_request" else EXIT_FAILED
        return fail(code, f"{ctx.stage or default_stage}: {exc}", exc.hint)
    finally:
        bar.close()
    return JobRun(outcome, registry, started)


def _peak_memory() -> dict[str, float]:
    import torch

    peak = {"cpu_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        peak["cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def main(args: argparse.Namespace) -> int:
    from protocol import Generate, ProtocolError

    from ..pipelines.cache import ResultCache
    from ..serving.context import PipelineError
    from ..models.registry import TINY_NOTICE
    from .outputs import write_outputs
    from ..pipelines.generate import GenerationPipeline
    from ..pipelines.generate_request import inputs_from
    from ..stages.image_io import decode_image

    # Everything that can be checked before loading models is checked first.
    try:
        data = args.image.read_bytes()
    except FileNotFoundError:
        return fail(EXIT_BAD_INPUT, f"{args.image}: no such file")
    except OSError as exc:
        return fail(EXIT_BAD_INPUT, f"cannot read {args.image}: {exc.strerror or exc}")
    try:
        decode_image(data)
        options = parse_options(args.option)
        # Through the wire message's own checks (image, prompt and seed limits), as a request would.
        inputs = inputs_from(Generate(image=data, prompt=args.prompt, quality=args.preset, seed=args.seed,
                                      options=options))
    except PipelineError as exc:
        return fail(EXIT_BAD_INPUT, f"{args.image}: {exc}", exc.hint)
    except OptionError as exc:
        return fail(EXIT_BAD_INPUT, str(exc), exc.hint)
    except (ValueError, ProtocolError) as exc:
        return fail(EXIT_BAD_INPUT, str(exc))
    def job(registry, ctx):
        pipeline = GenerationPipeline(registry, ResultCache(args.cache_dir))
        return pipeline, pipeline.run(inputs, ctx)  # the pipeline keeps the report, Gaussians and fixer

    run = run_in_process(args, job, default_stage="preprocess")
    if isinstance(run, int):
        return run
    (pipeline, final), registry, started = run.outcome, run.registry, run.started
    report = pipeline.last_report.to_dict()
    report.update(image=str(args.image), seed=args.seed, preset=args.preset, models=registry.preset,
                  tiny=registry.is_tiny, device=str(registry.device), total_s=time.perf_counter() - started,
                  peak_memory=_peak_memory(), faces=int(len(final.faces)), vertices=int(len(final.vertices)))
    mesh = {"vertices": final.vertices, "faces": final.faces, "uvs": final.uvs, "normals": final.normals,
            "texture": final.texture}
    label = "TINY PRESET: random weights, wiring check only" if registry.is_tiny else ""
    written = write_outputs(args.out, mesh=mesh, report=report, gaussians=pipeline.last_gaussians, label=label,
                            enhance=pipeline.last_enhancer)
    print(f"done in {report['total_s']:.1f} s: " + ", ".join(str(p) for p in written.values()))
    if registry.is_tiny:
        print(f"NOTICE: {TINY_NOTICE}")
    return 0
