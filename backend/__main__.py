"""Command line: `python -m backend {serve,ping,run,models,keys}`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from protocol import DEFAULT_ADDRESS

if TYPE_CHECKING:
    from protocol.client import CurveKeys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend", description="Lift3D GPU backend")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the ZeroMQ job server")
    serve.add_argument("--bind", default=DEFAULT_ADDRESS, help=f"endpoint to listen on (default {DEFAULT_ADDRESS})")
    serve.add_argument("--keys", type=Path, help="CURVE key folder from `keys generate`: encrypt and authenticate")
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without --keys")
    serve.add_argument("--device", default="auto", help="auto, cpu, mps, cuda or cuda:N")
    serve.add_argument("--models", default="auto", choices=("auto", "full", "tiny"),
                       help="model preset: full (real weights), tiny (random weights: checks the wiring only), "
                            "auto (full when cached or downloadable; default)")
    serve.add_argument("--cache-dir", type=Path, help="result cache folder (default: LIFT3D_CACHE or "
                                                      "~/.cache/lift3d/results)")
    serve.add_argument("--models-lock", type=Path, metavar="PATH",
                       help="models lock file: the commits the full preset loads (default: LIFT3D_MODELS_LOCK or "
                            "~/.cache/lift3d/models.lock.json)")
    serve.add_argument("--no-preload", action="store_true", help="load models at the first job, not at startup")
    serve.add_argument("--max-queued", type=int, help="jobs that may wait for a worker (0-1024; default 4, "
                                                       "with --engine ray 4 per worker)")
    serve.add_argument("--max-queued-per-client", type=int,
                       help="jobs one client may have waiting (default: all of --max-queued; with --engine ray 4)")
    serve.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: run jobs in this process (default); ray: on Ray actors, one per GPU")
    serve.add_argument("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray "
                                             "started for this backend)")
    serve.add_argument("--workers", type=int, help="Ray workers (default: one per GPU of the cluster)")
    serve.add_argument("--worker-resource", default="GPU",
                       help="what each Ray worker reserves one of: GPU (default), CPU or a custom resource")
    serve.add_argument("-v", "--verbose", action="store_true")

    ping = sub.add_parser("ping", help="check that a backend answers and show what it runs on")
    ping.add_argument("--connect", default=DEFAULT_ADDRESS, help=f"backend address (default {DEFAULT_ADDRESS})")
    ping.add_argument("--keys", type=Path, help="CURVE key folder (uses clients/<--client>.key_secret)")
    ping.add_argument("--client", default="client", help="client key name inside --keys")
    ping.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")

    run = sub.add_parser("run", help="the main job: generate from a sample photo through a local backend")
    _add_run_arguments(run)

    generate = sub.add_parser("generate", help="one image-to-3D generation in this process (no server)")
    _add_generate_arguments(generate)

    texture = sub.add_parser("texture", help="paint a texture onto a mesh from a prompt, in this process (no server)")
    _add_texture_arguments(texture)
    scene = sub.add_parser("scene", help="grow a 3D scene from a prompt along a camera path, in this process "
                                         "(no server)")
    _add_scene_arguments(scene)

    models = sub.add_parser("models", help="list, download and verify the pretrained models")
    _add_models_arguments(models)

    keys = sub.add_parser("keys", help="manage CURVE keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    gen = keys_sub.add_parser("generate", help="create server keys and client key pairs")
    gen.add_argument("dir", type=Path, help="key folder (created if missing)")
    gen.add_argument("--client", action="append", help="client name (repeatable; default: 'client' on first use)")

    args = parser.parse_args(argv)
    handlers = {"serve": _serve, "ping": _ping, "run": _run, "keys": _keys, "models": _models,
                "generate": _generate, "texture": _texture,
                "scene": _scene}
    return handlers[args.command](args)


def _add_models_arguments(parser: argparse.ArgumentParser) -> None:
    from .models.commands import add_arguments

    add_arguments(parser)


def _add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli.generate import add_arguments

    add_arguments(parser)


def _generate(args: argparse.Namespace) -> int:
    from .cli.generate import main

    return main(args)


def _add_texture_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli.texture import add_arguments

    add_arguments(parser)


def _texture(args: argparse.Namespace) -> int:
    from .cli.texture import main

    return main(args)


def _add_scene_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli.scene import add_arguments

    add_arguments(parser)


def _scene(args: argparse.Namespace) -> int:
    from .cli.scene import main

    return main(args)


def _models(args: argparse.Namespace) -> int:
    from .models.commands import run

    return run(args)


def _serve(args: argparse.Namespace) -> int:
    from .pipelines.cache import ResultCache
    from .serving.config import ServerConfig
    from .models.hub import ModelUnavailableError
    from .models.registry import TINY_NOTICE, ModelRegistry, ModelSettings
    from .pipelines import Pipelines
    from .serving.security import SecurityError
    from .serving.ray_engine import EngineError  # imports no ray: that happens when the engine starts
    from .serving.server import Server

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = None
    try:
        if args.engine == "local" and (args.ray_address or args.workers is not None or args.worker_resource != "GPU"):
            raise ValueError("--ray-address, --workers and --worker-resource need --engine ray")
        if args.engine == "ray" and args.device.startswith("cuda:") and args.device != "cuda:0":
            raise ValueError(f"--device {args.device} with --engine ray: each Ray worker sees only the GPU Ray gave "
                             "it, as cuda:0; use --device auto or cuda (Ray chooses the GPUs)")
        executors, device = None, None
        if args.engine == "ray":
            from .serving.ray_engine import PipelinesFactory, RayEngine, RayEngineConfig

            # The workers resolve the model preset and the device on their own machines (the front
            # end may have neither the weights nor a GPU); its own pipelines only prepare requests,
            # which needs no model.
            factory = PipelinesFactory(args.models, args.device, args.models_lock, args.cache_dir,
                                       preload=not args.no_preload)
            engine = RayEngine(RayEngineConfig(address=args.ray_address, workers=args.workers,
                                               worker_resource=args.worker_resource), factory, args.device)
            executors = engine.start()
            device, preset = engine.device_info(), engine.preset()
            registry = ModelRegistry(ModelSettings(preset="tiny", device="cpu"))
        else:
            registry = ModelRegistry(ModelSettings(preset=args.models, device=args.device,
                                                   lock_file=args.models_lock))
            preset = registry.preset
        pipelines = Pipelines(registry, ResultCache(args.cache_dir))
        max_queued = args.max_queued if args.max_queued is not None else 4 * len(executors or [None])
        per_client = args.max_queued_per_client
        if per_client is None and engine is not None:
            per_client = min(4, max_queued) or None  # several artists share the workers: none takes every place
        config = ServerConfig(bind=args.bind, keys_dir=args.keys, insecure=args.insecure, device=args.device,
                              max_queued=max_queued, max_queued_per_client=per_client, model_preset=preset)
        server = Server(config, pipelines, device=device, executors=executors)
        endpoint = server.bind()
    except (SecurityError, OSError, ValueError, ModelUnavailableError, EngineError) as exc:
        if engine is not None:
            engine.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if preset == "tiny":
        print(f"NOTICE: {TINY_NOTICE}", flush=True)
    if not args.no_preload and engine is None:
        pipelines.start_preload()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    where = f" with {len(engine.workers)} Ray worker(s)" if engine else ""
    print(f"Lift3D backend ready on {endpoint}{where} (Ctrl+C to stop)", flush=True)
    try:
        server.serve(stop)
    finally:
        if engine is not None:
            engine.stop()
    print("Lift3D backend stopped", flush=True)
    return 0


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli.run_sample import add_arguments

    add_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    from .cli.run_sample import main

    return main(args)


def _ping(args: argparse.Namespace) -> int:
    from protocol.client import CurveKeys

    try:
        keys = CurveKeys.from_dir(args.keys, args.client) if args.keys else None
    except (OSError, ValueError) as exc:
        print(f"error: cannot load keys from {args.keys}: {exc}", file=sys.stderr)
        return 2
    return _print_welcome(args.connect, keys, args.timeout)


def _print_welcome(address: str, keys: CurveKeys | None, timeout_s: float) -> int:
    from protocol.client import Client

    with Client(address, keys=keys, client_name="lift3d ping") as client:
        try:
            welcome = client.handshake(timeout_s)
        except ConnectionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except TimeoutError as exc:
            hint = ("check --keys and that the server has this client's public key"
                    if keys else "if the backend was started with --keys, pass the same key folder")
            print(f"error: {exc}.\n  Start one with `python -m backend serve --bind {address}`, "
                  f"or {hint}.", file=sys.stderr)
            return 1
    gpu = f"{welcome.gpu_name} ({welcome.gpu_memory_mb} MiB)" if welcome.gpu_name else "none"
    print(f"Lift3D backend at {address}\n"
          f"  backend version   {welcome.backend_version} (protocol {welcome.protocol})\n"
          f"  device            {welcome.device}\n"
          f"  GPU               {gpu}\n"
          f"  models            {welcome.model_preset}\n"
          f"  quality presets   {', '.join(welcome.quality_presets)}\n"
          f"  request kinds     {', '.join(welcome.request_kinds) or '(not listed)'}\n"
          f"  options           {', '.join(welcome.options) or '(not listed)'}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from .serving.security import SecurityError, generate_keys

    clients = args.client or ([] if (args.dir / "clients").is_dir() else ["client"])
    try:
        created = generate_keys(args.dir, clients)
    except SecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in created:
        print(f"wrote {path}")
    print(f"Serve with:  python -m backend serve --keys {args.dir} --bind tcp://0.0.0.0:PORT\n"
          f"Give each artist clients/NAME.key_secret and server/server.key (never server.key_secret).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
