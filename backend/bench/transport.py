"""Protocol throughput over loopback TCP, as a ratio against raw pyzmq moving the same bytes.

    python -m backend.bench transport [--rounds N] [--messages N] [--json PATH]

Two payloads (deterministic, numpy rng seed 0): a 50,000-splat `preview` and a 500,000-vertex
textured `mesh`. Each is moved three ways:

- raw pyzmq:     a ROUTER sends frames encoded once up front (the exact bytes Lift3D sends) to
                 a DEALER that receives them and does nothing else. The ceiling.
- lift3d codec:  the same socket pair, but the sender `encode`s every message and the receiver
                 `decode`s it (validated, zero-copy numpy views). The protocol's own cost.
- lift3d server: end to end: `backend.serving.server.Server` in a thread, a pipeline emitting the
                 payload through its StageContext, the worker -> inproc -> ROUTER forwarding,
                 and `protocol.client.Client` decoding.

A round is timed from the first send (or the job's submission) until the last message is
consumed. The three paths run interleaved, round by round in rotating order, so machine noise
hits all of them alike; msg/s is the median round, and the ratio is the median of the per-round
ratios against raw. Target (issue): >= 0.8 of raw.

On small machines most of the time is kernel time, much of it page faults from glibc handing
freshly mmap'ed buffers to every 28 MB message; how much each path pays depends on when it
frees its frames. Running with `MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824`
takes that churn out and shows the protocol's own cost more clearly.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from protocol import Mesh, Message, Preview, decode, encode

MB = 1e6  # MB/s in decimal megabytes, like network figures
TARGET_RATIO = 0.8
RAW, CODEC, SERVER = "raw pyzmq", "lift3d codec", "lift3d server"
PATHS = (RAW, CODEC, SERVER)

# Messages per round when --messages is not given: enough that one round of each payload moves
# a few hundred MB (long enough to time, short enough for the whole run to stay under a minute).
DEFAULT_MESSAGES = {"preview": 300, "mesh": 24}
DEFAULT_ROUNDS = 11
# The harness gives the server a send queue deeper than a round (a lagging viewer normally gets
# its stale previews dropped after ServerConfig.client_queue_messages); this bounds the round.
MAX_MESSAGES = 500

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)  # the codec checks the magic bytes only
_JOB_ID = "bench"
_RECV_TIMEOUT_MS = 30_000  # a lost message fails the run instead of hanging it
ROUND_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Payload:
    kind: str                  # "preview" or "mesh"
    label: str                 # for the table, e.g. "preview 50,000 splats"
    message: Message           # what the raw and codec paths send
    frames: tuple[bytes, ...]  # `message` encoded once: what the raw path sends
    messages: int              # per round

    @property
    def nbytes(self) -> int:
        return sum(len(f) for f in self.frames)


@dataclass(frozen=True)
class Row:
    payload: str
    path: str
    messages_per_round: int
    rounds: int
    mb_per_message: float
    messages_per_s: float        # of the median round
    mb_per_s: float
    ratio_vs_raw: float          # median over rounds of (this path's rate / raw's rate in that round)
    spread_pct: float            # (fastest - slowest round) / median, in percent: how noisy it was


# -- payloads --------------------------------------------------------------------------------


def preview_message(splats: int, seed: int = 0) -> Preview:
    rng = np.random.default_rng(seed)
    quats = rng.normal(size=(splats, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    return Preview(step=1, positions=rng.normal(size=(splats, 3)).astype(np.float32),
                   colors=rng.integers(0, 256, (splats, 3), dtype=np.uint8),
                   opacities=rng.integers(0, 256, splats, dtype=np.uint8),
                   scales=rng.uniform(0.001, 0.05, (splats, 3)).astype(np.float16),
                   rotations=quats.astype(np.float16))


def mesh_message(vertices: int, texture_side: int = 1024, seed: int = 0) -> Mesh:
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(vertices, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return Mesh(kind="final", vertices=rng.normal(size=(vertices, 3)).astype(np.float32),
                faces=rng.integers(0, vertices, (2 * vertices, 3), dtype=np.uint32),  # ~2 faces per vertex
                uvs=rng.uniform(0, 1, (vertices, 2)).astype(np.float32), normals=normals.astype(np.float16),
                texture=rng.integers(0, 256, (texture_side, texture_side, 3), dtype=np.uint8))


def make_payload(kind: str, label: str, message: Message, messages: int) -> Payload:
    frames = tuple(bytes(f) for f in encode(message, job_id=_JOB_ID))
    return Payload(kind, label, message, frames, messages)


# -- raw and codec paths: one ROUTER -> DEALER pair over loopback TCP -------------------------


class SocketPair:
    """ROUTER (sender, bound to a free loopback port) and DEALER (receiver), handshake done.

    Each side gets its own context, hence its own I/O thread, as the backend and Blender are
    separate processes; the server path has the same two I/O threads, so the comparison is fair.
    """

    def __init__(self) -> None:
        self._contexts = (zmq.Context(), zmq.Context())
        self.router = self._contexts[0].socket(zmq.ROUTER)
        self.dealer = self._contexts[1].socket(zmq.DEALER)
        for sock in (self.router, self.dealer):
            sock.setsockopt(zmq.LINGER, 0)
        # Block (bounded by SNDTIMEO) rather than silently drop when the receiver falls behind.
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.SNDTIMEO, _RECV_TIMEOUT_MS)  # the sender thread can never hang
        self.dealer.setsockopt(zmq.RCVTIMEO, _RECV_TIMEOUT_MS)
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.dealer.connect(f"tcp://127.0.0.1:{port}")
        self.dealer.send(b"hello")  # a ROUTER can only address a peer it has heard from
        self.identity = self.router.recv_multipart()[0]

    def close(self) -> None:
        for sock in (self.router, self.dealer):
            sock.close(linger=0)
        for ctx in self._contexts:
            ctx.term()


def elapsed_since(start: float, arrivals: Sequence[float], expected: int) -> float:
    """Seconds from `start` (before the first send, or before submitting the job) until the
    last of `expected` messages was consumed.

    Total time rather than first-to-last arrival: the client's `poll` hands over messages in
    batches, so arrival stamps inside a batch are not when each message arrived, and a
    first-to-last span would flatter the server path. The server path also pays for queueing
    its job (about a millisecond per round): the comparison is slightly pessimistic for it."""
    if len(arrivals) != expected:
        raise RuntimeError(f"received {len(arrivals)} of {expected} messages")
    return arrivals[-1] - start


def timed_transfer(pair: SocketPair, count: int, produce: Callable[[], list[Any]],
                   consume: Callable[[list[zmq.Frame]], None]) -> float:
    """Send `count` messages from `produce` on a thread; receive and `consume` them here."""
    errors: list[BaseException] = []

    def send() -> None:
        try:
            for _ in range(count):
                pair.router.send_multipart([pair.identity, *produce()], copy=False)
        except (zmq.ZMQError, ValueError) as exc:  # reported by the receiving side below
            errors.append(exc)

    sender = threading.Thread(target=send, name="bench-sender", daemon=True)
    start = time.perf_counter()
    sender.start()
    arrivals: list[float] = []
    try:
        for _ in range(count):
            consume(pair.dealer.recv_multipart(copy=False))
            arrivals.append(time.perf_counter())
    finally:
        sender.join(_RECV_TIMEOUT_MS / 1000)
    if errors:
        raise RuntimeError(f"the sender failed: {errors[0]}") from errors[0]
    return elapsed_since(start, arrivals, count)


def raw_round(pair: SocketPair, payload: Payload) -> float:
    frames = list(payload.frames)
    return timed_transfer(pair, payload.messages, lambda: frames, lambda received: None)


def codec_round(pair: SocketPair, payload: Payload) -> float:
    message = payload.message

    def consume(received: list[zmq.Frame]) -> None:
        decoded = decode(received).message
        touch(decoded)

    return timed_transfer(pair, payload.messages, lambda: encode(message, job_id=_JOB_ID), consume)


def touch(message: Message) -> tuple[int, ...]:
    # Minimal use of the result, as a viewer would start with: the shape of the first array.
    for value in vars(message).values():
        if isinstance(value, np.ndarray):
            return value.shape
    return ()


# -- the benchmark --------------------------------------------------------------------------


def run_transport_benchmark(preview_splats: int = 50_000, mesh_vertices: int = 500_000,
                            messages: int | None = None, rounds: int = DEFAULT_ROUNDS,
                            texture_side: int = 1024) -> list[Row]:
    """Measure every payload along every path; `messages` per round (None: per-payload defaults).

    One warm-up round (allocators, TCP buffers, the server's first job) is run and discarded.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if messages is not None and not 1 <= messages <= MAX_MESSAGES:
        raise ValueError(f"messages must be between 1 and {MAX_MESSAGES}")
    payloads = {
        "preview": make_payload("preview", f"preview {preview_splats:,} splats",
                                preview_message(preview_splats), messages or DEFAULT_MESSAGES["preview"]),
        "mesh": make_payload("mesh", f"mesh {mesh_vertices:,} vertices",
                             mesh_message(mesh_vertices, texture_side), messages or DEFAULT_MESSAGES["mesh"]),
    }
    pair = SocketPair()
    try:
        from .transport_server import ServerHarness  # it imports this module

        harness = ServerHarness(payloads)
        try:
            rows: list[Row] = []
            for payload in payloads.values():
                runs: dict[str, Callable[[], float]] = {
                    RAW: lambda p=payload: raw_round(pair, p),
                    CODEC: lambda p=payload: codec_round(pair, p),
                    SERVER: lambda p=payload: harness.round(p),
                }
                rows += rows_for(payload, interleaved_seconds(runs, rounds), rounds)
            return rows
        finally:
            harness.close()
    finally:
        pair.close()


def interleaved_seconds(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each path. The order rotates every round, so no path always runs
    right after the same neighbour (e.g. in the wake of another path's garbage)."""
    names = list(runs)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds + 1):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = runs[name]()
            if index:  # round 0 is the warm-up
                seconds[name].append(elapsed)
    return seconds


def rows_for(payload: Payload, seconds: dict[str, list[float]], rounds: int) -> list[Row]:
    rates = {path: [payload.messages / s for s in samples] for path, samples in seconds.items()}
    rows = []
    for path in PATHS:
        rate = statistics.median(rates[path])
        # Paired per round: drift of the machine between rounds (another process, CPU clocks)
        # cancels out of the ratio, which the median of each path on its own would keep.
        ratio = statistics.median(mine / raw for mine, raw in zip(rates[path], rates[RAW]))
        rows.append(Row(payload=payload.label, path=path, messages_per_round=payload.messages, rounds=rounds,
                        mb_per_message=round(payload.nbytes / MB, 3), messages_per_s=round(rate, 1),
                        mb_per_s=round(rate * payload.nbytes / MB, 1), ratio_vs_raw=round(ratio, 3),
                        spread_pct=round((max(rates[path]) - min(rates[path])) / rate * 100, 1)))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    header = (f"{'payload':<24} {'path':<14} {'MB/msg':>7} {'msg/s':>9} {'MB/s':>8} {'vs raw':>7} "
              f"{'spread':>7}")
    lines = [header, "-" * len(header)]
    for r in rows:
        # Judged on the figure as printed: the third decimal is far inside the noise.
        below = r.path != RAW and round(r.ratio_vs_raw, 2) < TARGET_RATIO
        flag = f"  < {TARGET_RATIO} target" if below else ""
        lines.append(f"{r.payload:<24} {r.path:<14} {r.mb_per_message:>7.2f} {r.messages_per_s:>9.1f} "
                     f"{r.mb_per_s:>8.1f} {r.ratio_vs_raw:>7.2f} {r.spread_pct:>6.0f}%{flag}")
    if rows:
        lines.append(f"median of {rows[0].rounds} interleaved rounds; MB = 10^6 bytes of frames; "
                     "vs raw = median of the per-round ratios;")
        lines.append(f"spread = (fastest - slowest round) / median; target >= {TARGET_RATIO} of raw")
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=_positive, default=DEFAULT_ROUNDS,
                        help=f"timed rounds per path, interleaved (default {DEFAULT_ROUNDS})")
    parser.add_argument("--messages", type=_message_count,
                        help=f"messages per round for both payloads, 1-{MAX_MESSAGES} (default: "
                             + ", ".join(f"{v} {k}" for k, v in DEFAULT_MESSAGES.items()) + ")")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to this JSON file")


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    rows = run_transport_benchmark(messages=args.messages, rounds=args.rounds)
    elapsed = time.perf_counter() - started
    print(format_table(rows))
    print(f"total {elapsed:.1f} s")
    if args.json is not None:
        report = {"benchmark": "transport", "target_ratio": TARGET_RATIO, "elapsed_s": round(elapsed, 1),
                  "rows": [asdict(r) for r in rows]}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _message_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_MESSAGES:
        # Above the maximum the server would drop previews (see MAX_MESSAGES).
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_MESSAGES}")
    return value
