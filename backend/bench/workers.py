"""Scale-out: jobs per minute and latency with 1, 2, ... Ray workers, beside the in-process engine.

Each configuration is a real backend process (`serve --engine local`, or `--engine ray --workers N`
on a local Ray, each worker holding one unit of a custom resource in place of a GPU) with tiny
models on this machine's CPUs. `--clients` artists connect at once; each submits `--jobs` draft
jobs one after another (the next when the previous has ended, as an artist regenerating does),
each with its own seed so no job is a cache hit. Reported per configuration: makespan, jobs per
minute, p50/p95 latency (submit → final mesh) and how long jobs waited before their first progress.

Then the front end's added latency: one client, one job at a time, alternating between the
in-process engine and one Ray worker (both up; same jobs, same thread budget), the median of the
paired differences. Every backend runs with
OMP_NUM_THREADS=1 (a Ray worker gets one thread unless it reserves CPUs), so the engines differ
only in where the job runs, not in how many threads it may use.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from protocol import Cancelled, Failed, Mesh, Progress
from protocol.client import Client

from ..serving.local import LocalBackend
from .photos import disc_photo

RESOURCE = "lift3d_bench_gpu"
DEFAULT_OPTIONS = {"geometry_steps": 12, "texture_steps": 2}


@dataclass
class JobTiming:
    client: int
    seed: int
    latency_s: float
    """submit → final mesh (or failure)."""
    wait_s: float
    """submit → first progress: time spent queued (and reaching a worker)."""
    ok: bool


@dataclass
class Row:
    engine: str
    workers: int
    clients: int
    jobs: int
    failed: int
    makespan_s: float
    jobs_per_min: float
    p50_s: float
    p95_s: float
    wait_p50_s: float


@contextmanager
def backend(engine: str, workers: int, max_queued: int, cache: Path):
    args = ["--device", "cpu", "--cache-dir", str(cache), "--max-queued", str(max_queued)]
    if engine == "ray":
        args += ["--engine", "ray", "--workers", str(workers), "--worker-resource", RESOURCE]
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the backend and its Ray workers
    server = LocalBackend(models="tiny", extra_args=tuple(args), startup_timeout_s=300)
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout_s=30)


def run_one(client: Client, client_index: int, seed: int, image: bytes, options: dict,
            out: list[JobTiming]) -> None:
    started = time.monotonic()
    job = client.submit(image, "a red disc", quality="draft", seed=seed, options=options)
    first_progress = None
    while True:
        for envelope in client.poll(budget_ms=50, wait=True):
            if envelope.job_id != job:
                continue
            message = envelope.message
            if isinstance(message, Progress) and first_progress is None:
                first_progress = time.monotonic()
            done = isinstance(message, (Failed, Cancelled)) or (isinstance(message, Mesh) and message.kind == "final")
            if done:
                now = time.monotonic()
                out.append(JobTiming(client_index, seed, now - started, (first_progress or now) - started,
                                     isinstance(message, Mesh)))
                return


def load(endpoint: str, clients: int, jobs: int, options: dict, seed0: int) -> tuple[list[JobTiming], float]:
    """`clients` threads, each its own connection, each running `jobs` jobs back to back."""
    image, timings, errors = disc_photo(), [], []

    def artist(index: int) -> None:
        try:
            with Client(endpoint, client_name=f"bench artist {index}") as client:
                client.handshake(30)
                for j in range(jobs):
                    run_one(client, index, seed0 + index * 100 + j, image, options, timings)
        except Exception as exc:  # reported, not hidden: a bench run with errors is not a result
            errors.append(f"artist {index}: {exc!r}")

    threads = [threading.Thread(target=artist, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return timings, time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def throughput(engine: str, workers: int, clients: int, jobs: int, options: dict, cache: Path) -> Row:
    with backend(engine, workers, max_queued=clients * jobs, cache=cache) as server:
        # One warm-up job per worker, so model loading and first-call costs stay out of the figures.
        load(server.endpoint, workers, 1, options, seed0=90_000)
        timings, makespan = load(server.endpoint, clients, jobs, options, seed0=1000)
    latencies = [t.latency_s for t in timings]
    return Row(engine, workers, clients, len(timings), sum(not t.ok for t in timings), makespan,
               60 * len(timings) / makespan, percentile(latencies, 50), percentile(latencies, 95),
               percentile([t.wait_s for t in timings], 50))


def front_end_overhead(repeats: int, options: dict, cache: Path) -> list[dict]:
    """One job at a time, alternating between an in-process backend and a one-worker Ray backend
    that are both up (the idle one costs next to nothing), so slow drifts of the machine hit both
    alike; the added latency is the median of the per-round differences."""
    with backend("local", 1, max_queued=4, cache=cache / "local") as local, \
            backend("ray", 1, max_queued=4, cache=cache / "ray") as on_ray:  # own caches: no hits
        servers = {"local": local, "ray": on_ray}
        for server in servers.values():
            load(server.endpoint, 1, 1, options, seed0=80_000)  # warm-up
        timings: dict[str, list[JobTiming]] = {"local": [], "ray": []}
        for round_ in range(repeats):
            for engine, server in servers.items():
                timings[engine] += load(server.endpoint, 1, 1, options, seed0=5000 + round_)[0]
    out = [{"engine": engine, "jobs": len(runs), "latency_p50_s": statistics.median(t.latency_s for t in runs),
            "first_progress_p50_s": statistics.median(t.wait_s for t in runs)} for engine, runs in timings.items()]
    pairs = list(zip(timings["local"], timings["ray"]))
    out[1]["added_s"] = statistics.median(r.latency_s - l.latency_s for l, r in pairs)
    out[1]["added_first_progress_s"] = statistics.median(r.wait_s - l.wait_s for l, r in pairs)
    out[1]["added_spread_s"] = [min(r.latency_s - l.latency_s for l, r in pairs),
                                max(r.latency_s - l.latency_s for l, r in pairs)]
    return out


def format_rows(rows: list[Row], overhead: list[dict]) -> str:
    lines: list[str] = []
    header = (f"{'engine':<12} {'workers':>7} {'clients':>7} {'jobs':>5} {'failed':>6} {'makespan s':>10} "
              f"{'jobs/min':>8} {'p50 s':>7} {'p95 s':>7} {'wait p50 s':>10}")
    if rows:
        lines += [header, "-" * len(header)]
    base = next((r for r in rows if r.engine == "ray" and r.workers == 1), None)
    for r in rows:
        name = "in-process" if r.engine == "local" else "ray"
        speedup = f"  ×{r.jobs_per_min / base.jobs_per_min:.2f} vs 1 ray worker" if base and r is not base \
            and r.engine == "ray" else ""
        lines.append(f"{name:<12} {r.workers:>7} {r.clients:>7} {r.jobs:>5} {r.failed:>6} {r.makespan_s:>10.1f} "
                     f"{r.jobs_per_min:>8.2f} {r.p50_s:>7.1f} {r.p95_s:>7.1f} {r.wait_p50_s:>10.1f}{speedup}")
    if rows:
        lines += ["latency = submit -> final mesh; wait = submit -> first progress; tiny models, CPU, "
                  "OMP_NUM_THREADS=1 per backend process / worker", ""]
    if overhead:
        header = f"{'one job at a time':<18} {'jobs':>5} {'latency p50 s':>13} {'first progress p50 s':>20}"
        lines += [header, "-" * len(header)]
        for o in overhead:
            name = "in-process" if o["engine"] == "local" else "ray, 1 worker"
            lines.append(f"{name:<18} {o['jobs']:>5} {o['latency_p50_s']:>13.2f} {o['first_progress_p50_s']:>20.3f}")
        ray_row = overhead[-1]
        low, high = ray_row["added_spread_s"]
        lines.append(f"front end added latency: {ray_row['added_s']:+.2f} s per job, median of the paired rounds "
                     f"(range {low:+.2f} .. {high:+.2f} s); {ray_row['added_first_progress_s']:+.3f} s to the first "
                     "progress")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=8, help="artists connected at once (default 8)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs per artist, back to back (default 2)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                        help="Ray worker counts (default 1 2; none: no Ray throughput rows)")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process engine's row")
    parser.add_argument("--overhead-jobs", type=int, default=5,
                        help="rounds of the front-end latency comparison, one job per engine each (0 skips it; "
                             "default 5)")
    parser.add_argument("--geometry-steps", type=int, default=DEFAULT_OPTIONS["geometry_steps"])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to this JSON file")


def main(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("error: the workers benchmark needs Ray: pip install -e '.[ray]'")
        return 2
    if args.clients < 1 or args.jobs < 1 or any(w < 1 for w in args.workers):
        print("error: --clients, --jobs and --workers must be at least 1")
        return 2
    options = {**DEFAULT_OPTIONS, "geometry_steps": args.geometry_steps}
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="lift3d-bench-workers-") as tmp:
        if not args.no_in_process:
            rows.append(throughput("local", 1, args.clients, args.jobs, options, Path(tmp) / "local"))
            print(f"in-process: {rows[-1].jobs_per_min:.2f} jobs/min", flush=True)
        for workers in args.workers:
            rows.append(throughput("ray", workers, args.clients, args.jobs, options, Path(tmp) / f"ray{workers}"))
            print(f"ray x{workers}: {rows[-1].jobs_per_min:.2f} jobs/min", flush=True)
        overhead = front_end_overhead(args.overhead_jobs, options, Path(tmp) / "overhead") \
            if args.overhead_jobs else []
    print(format_rows(rows, overhead))
    elapsed = time.monotonic() - started
    print(f"total {elapsed:.0f} s on {os.cpu_count()} CPU cores")
    if args.json is not None:
        args.json.write_text(json.dumps({"benchmark": "workers", "options": options, "elapsed_s": round(elapsed, 1),
                                         "rows": [asdict(r) for r in rows], "front_end": overhead}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if not any(r.failed for r in rows) else 1
