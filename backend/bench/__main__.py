"""`python -m backend.bench {transport,splat,...}`: one subcommand per benchmark module.

A benchmark module provides `add_arguments(parser)` and `main(args) -> int`; adding one is a
line in BENCHMARKS. Modules are imported only when their subcommand is chosen, so a heavy
benchmark (models, torch) never slows down the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "transport": ("backend.bench.transport", "protocol throughput over loopback, as a ratio to raw pyzmq"),
    "splat": ("backend.bench.splat", "splat renderer speed: tiled torch vs naive untiled (and gsplat on CUDA)"),
    "mesh-stage": ("backend.bench.mesh_stage", "mesh stage speed: density grid to baked texture, step by step"),
    "models": ("backend.bench.models", "tiny preset build/load times; per-call cost of the full-size architectures"),
    "oracle": ("backend.bench.oracle", "the whole two-stage pipeline on known objects, ground truth in place of the models"),
    "reconstruct": ("backend.bench.reconstruct", "fit Gaussians to known objects, extract meshes, score held-out views"),
    "texture-oracle": ("backend.bench.texture_oracle", "Texture Selected's painter on known objects, ground truth in "
                                                       "place of the generator (ORACLE EVIDENCE)"),
    "terms": ("backend.bench.terms", "per-step cost of each optional loss term (text prior, CLIP, cross-view) side by "
                                     "side, and the draft preset's end-to-end time"),
    "scene-oracle": ("backend.bench.scene_oracle", "text → scene along a camera path on known scenes, ground truth in "
                                                   "place of the inpainting and depth models (ORACLE EVIDENCE)"),
    "workers": ("backend.bench.workers", "scale-out: jobs/min and p50/p95 latency with 1, 2, ... Ray workers beside "
                                         "the in-process engine, and the front end's added latency"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m backend.bench", description="Lift3D benchmarks")
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, (module_name, help_text) in BENCHMARKS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen benchmark is imported; the others just need a name and help line.
        if argv[:1] == [name]:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(run=module.main)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
