"""Test helpers: a server on a random loopback port in a thread, deterministic pipelines,
and a client-side collector."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from backend.serving.config import ServerConfig
from backend.serving.context import StageContext
from backend.device import DeviceInfo
from backend.serving.server import Server
from protocol import Envelope, Generate, Mesh, MeshMetadata, Stage, is_terminal
from protocol.client import Client

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))  # the codec checks magic bytes only


def tetrahedron(kind: str, seed: int) -> Mesh:
    rng = np.random.default_rng(seed)
    vertices = rng.normal(size=(4, 3)).astype(np.float32)
    faces = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]], np.uint32)
    return Mesh(kind=kind, vertices=vertices, faces=faces, metadata=MeshMetadata(seed=seed))


def splats(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    quats = rng.normal(size=(n, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    return dict(positions=rng.normal(size=(n, 3)).astype(np.float32),
                colors=rng.integers(0, 256, (n, 3), dtype=np.uint8),
                opacities=rng.integers(0, 256, n, dtype=np.uint8),
                scales=rng.uniform(0.01, 0.1, (n, 3)).astype(np.float16),
                rotations=quats.astype(np.float16))


def stepping_pipeline(steps: int = 5, step_s: float = 0.01, n_splats: int = 64,
                      fail: BaseException | None = None) -> Callable[[Generate, StageContext], Mesh]:
    """A small deterministic pipeline: progress and previews every step, a geometry mesh, a final mesh.
    Checks for cancellation every step (every `step_s`), as real stages do between iterations."""

    def pipeline(request: Generate, ctx: StageContext) -> Mesh:
        for step in range(1, steps + 1):
            ctx.check_cancelled()
            time.sleep(step_s)
            ctx.report(Stage.GEOMETRY, step, steps)
            ctx.preview(step, **splats(n_splats, request.seed + step))
            if fail is not None and step == steps // 2 + 1:
                raise fail
        ctx.mesh(tetrahedron("geometry", request.seed))
        ctx.report(Stage.TEXTURE, 1, 1)
        return tetrahedron("final", request.seed)

    return pipeline


@contextlib.contextmanager
def running_server(pipeline: Callable, executors: list | None = None, **config: object) -> Iterator[Server]:
    """A Server on tcp://127.0.0.1:<random> served by a background thread (`executors`: the
    engine's workers, default one in-process)."""
    cfg = replace(ServerConfig(bind="tcp://127.0.0.1:*", heartbeat_interval_s=0.2), **config)
    server = Server(cfg, pipeline, device=DeviceInfo("cpu"), executors=executors)
    server.bind()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "the server did not shut down"


def connected_client(server: Server, **kw: object) -> Client:
    client = Client(server.endpoint, heartbeat_interval_s=0.2, **kw)
    client.handshake(5.0)
    return client


def collect(client: Client, job_ids: set[str] | str, timeout_s: float = 20.0,
            linger_s: float = 0.0) -> list[Envelope]:
    """Poll until every job in `job_ids` has its terminal message, then `linger_s` longer.

    Returns every job-related message received (of any job, so a test can see messages that
    should not have come), in arrival order; the last one is the final job's terminal message
    unless lingering caught something later.
    """
    pending = {job_ids} if isinstance(job_ids, str) else set(job_ids)
    out: list[Envelope] = []
    deadline = time.monotonic() + timeout_s
    while pending:
        assert time.monotonic() < deadline, f"timed out waiting for {pending}; got {[e.type for e in out]}"
        for envelope in client.poll(budget_ms=50, wait=True):
            if envelope.job_id is None:
                continue
            out.append(envelope)
            if is_terminal(envelope.message):
                pending.discard(envelope.job_id)
    linger_until = time.monotonic() + linger_s
    while time.monotonic() < linger_until:
        out.extend(e for e in client.poll(budget_ms=50, wait=True) if e.job_id is not None)
    return out


def of_job(envelopes: list[Envelope], job_id: str) -> list[Envelope]:
    return [e for e in envelopes if e.job_id == job_id]


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0, poll: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        if poll is not None:
            poll()
        time.sleep(0.01)


def next_message(client: Client, predicate: Callable[[Envelope], bool], timeout_s: float = 10.0) -> Envelope:
    """Poll until a message matching `predicate` arrives (others are dropped) and return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert time.monotonic() < deadline, "no matching message arrived in time"
        for envelope in client.poll(budget_ms=50, wait=True):
            if predicate(envelope):
                return envelope
