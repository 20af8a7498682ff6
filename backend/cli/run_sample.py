"""The README's main command: start a local backend, generate a 3D asset from a sample photo
through it (the same ZeroMQ path Blender uses), and write the results.

The sample is scikit-image's bundled coffee-cup photo (public domain), so nothing is downloaded
but the models. Without the full models on this machine the backend runs the tiny preset, and
the command says loudly that the result only checks the wiring.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import time
from pathlib import Path

from protocol.options import QUALITY_NAMES

from .generate import option_help, parse_options

SAMPLE_PROMPT = "a cup of coffee"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", help="use the backend at this address instead of starting one")
    parser.add_argument("--models", choices=("auto", "full", "tiny"), default="auto",
                        help="model preset of the local backend (auto: full when available, else tiny with a notice)")
    parser.add_argument("--preset", choices=QUALITY_NAMES,
                        help="quality preset (default: standard on a GPU, draft on a CPU)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="request option (repeatable): " + option_help())
    parser.add_argument("--out", type=Path, default=Path("out") / "sample", help="output folder (default out/sample)")
    parser.add_argument("--image", type=Path, help="your own image instead of the sample")
    parser.add_argument("--prompt", help=f"prompt (default for the sample: {SAMPLE_PROMPT!r})")


def sample_image() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.coffee()).save(buffer, "PNG")
    return buffer.getvalue()


def _choose_models(requested: str) -> tuple[str, str]:
    """→ (preset for the backend, notice to print)."""
    from ..models.hub import ModelUnavailableError
    from ..models.registry import TINY_NOTICE, resolve_preset

    if requested != "auto":
        return requested, TINY_NOTICE if requested == "tiny" else ""
    try:
        return resolve_preset("auto"), ""
    except ModelUnavailableError as exc:
        return "tiny", f"{exc}\n\nRunning with the TINY preset instead: {TINY_NOTICE}."


def _banner(text: str) -> None:
    line = "!" * 78
    print(f"\n{line}\n{text}\n{line}\n", flush=True)


def main(args: argparse.Namespace) -> int:
    from ..serving.local import LocalBackend

    try:
        options = parse_options(args.option)
    except ValueError as exc:  # OptionError is one: names the option and what is allowed
        print(f"error: {exc}" + (f"\n  hint: {exc.hint}" if getattr(exc, "hint", "") else ""), file=sys.stderr)
        return 2
    args.options = options
    image = args.image.read_bytes() if args.image else sample_image()
    prompt = args.prompt if args.prompt is not None else ("" if args.image else SAMPLE_PROMPT)
    if args.connect:
        return _generate(args.connect, image, prompt, args, tiny=False)
    models, notice = _choose_models(args.models)
    if notice:
        _banner(notice)
    print(f"Starting a local Lift3D backend ({models} models) ...", flush=True)
    try:
        with LocalBackend(models=models, startup_timeout_s=120.0) as backend:
            print(f"  backend log: {backend.log_path}", flush=True)
            rc = _generate(backend.endpoint, image, prompt, args, tiny=models == "tiny")
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if notice and rc == 0:
        _banner("Reminder: TINY preset. The files above only prove the wiring works; download the full models "
                "(python -m backend models download) for a real result.")
    return rc


def _generate(address: str, image: bytes, prompt: str, args: argparse.Namespace, *, tiny: bool) -> int:
    from protocol import Cancelled, Failed, Mesh, Preview, Progress
    from protocol.client import Client

    from .outputs import write_outputs

    with Client(address, client_name="lift3d run") as client:
        try:
            welcome = client.handshake(10.0)
        except (TimeoutError, ConnectionError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        preset = args.preset or ("draft" if welcome.device == "cpu" else "standard")
        gpu = welcome.gpu_name or "no GPU"
        print(f"Backend {welcome.backend_version} on {welcome.device} ({gpu}), models: {welcome.model_preset}; "
              f"quality: {preset}; prompt: {prompt or '(caption)'}", flush=True)
        job = client.submit(image, prompt, quality=preset, seed=0, options=args.options)
        started, stage, previews, geometry = time.perf_counter(), None, 0, None
        timings: dict[str, float] = {}
        stage_started = started
        try:
            while True:
                for envelope in client.poll(budget_ms=200, wait=True):
                    if envelope.job_id != job:
                        continue
                    message = envelope.message
                    if isinstance(message, Progress):
                        if message.stage != stage:
                            now = time.perf_counter()
                            if stage is not None:
                                timings[stage] = now - stage_started
                            stage, stage_started = message.stage, now
                            print(f"  [{now - started:6.1f} s] {stage}", flush=True)
                        if message.message.startswith(("warning", "NOTICE")):
                            print(f"           {message.message}", flush=True)
                    elif isinstance(message, Preview):
                        previews += 1
                    elif isinstance(message, Mesh) and message.kind == "geometry":
                        geometry = message
                        print(f"  [{time.perf_counter() - started:6.1f} s] untextured mesh: "
                              f"{len(message.faces)} faces", flush=True)
                    elif isinstance(message, Mesh):
                        timings[stage] = time.perf_counter() - stage_started
                        return _finish(message, geometry, timings, previews, time.perf_counter() - started,
                                       args, preset, prompt, tiny, write_outputs)
                    elif isinstance(message, Failed):
                        print(f"error: {message.stage or 'job'} failed: {message.message}\n  hint: {message.hint}",
                              file=sys.stderr)
                        return 1
                    elif isinstance(message, Cancelled):
                        print("cancelled", file=sys.stderr)
                        return 130
        except KeyboardInterrupt:
            client.cancel(job)
            print("\ncancelling ...", file=sys.stderr)
            return 130


def _finish(final, geometry, timings, previews, total, args, preset, prompt, tiny, write_outputs) -> int:
    mesh = {"vertices": final.vertices, "faces": final.faces, "uvs": final.uvs, "normals": final.normals,
            "texture": final.texture}
    report = {"prompt": prompt, "preset": preset, "total_s": total, "stage_s": timings, "previews": previews,
              "geometry_mesh_faces": None if geometry is None else int(len(geometry.faces)),
              "faces": int(len(final.faces)), "metadata": dataclasses.asdict(final.metadata), "tiny": tiny}
    label = "TINY PRESET: random weights, wiring check only" if tiny else ""
    written = write_outputs(args.out, mesh=mesh, report=report, label=label)
    written.update(_render_in_blender(mesh, args.out, prompt, label))
    print(f"\nDone in {total:.1f} s ({previews} splat previews received). Outputs:")
    for path in written.values():
        print(f"  {path.resolve()}")
    return 0


def _render_in_blender(mesh: dict, out: Path, prompt: str, label: str) -> dict[str, Path]:
    """Import the received arrays with the Blender add-on's own importer (real Blender, the bpy
    module, in a child process: the backend never imports bpy) and render them with Cycles."""
    import importlib.util
    import subprocess
    import tempfile

    import numpy as np

    if importlib.util.find_spec("bpy") is None:
        print("  (no Blender render: the bpy module is not installed; pip install bpy==5.0.1)", flush=True)
        return {}
    print("  importing into Blender and rendering with Cycles ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="lift3d-render-") as tmp:
        arrays = Path(tmp) / "mesh.npz"
        np.savez(arrays, **{k: v for k, v in mesh.items() if v is not None})
        command = [sys.executable, "-m", "blender_addon.headless", "render", str(arrays),
                   "--out", str(out / "render.png"), "--blend", str(out / "lift3d.blend"),
                   "--name", prompt or "Lift3D result"]
        result = subprocess.run(command, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"  warning: the Blender render failed (the other outputs are fine):\n{result.stderr[-2000:]}",
              file=sys.stderr)
        return {}
    if label:
        from PIL import Image

        from .outputs import with_label

        render = out / "render.png"
        Image.fromarray(with_label(np.asarray(Image.open(render).convert("RGB")), label)).save(render)
    return {"render": out / "render.png", "blend": out / "lift3d.blend"}
