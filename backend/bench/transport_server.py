"""The transport benchmark's server path: `backend.serving.server.Server` in a thread, a pipeline that
emits the payload through its StageContext, and a `protocol.client.Client` in this thread (see
`transport.py` for the benchmark itself)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from protocol import Generate, Mesh, is_terminal
from protocol.client import Client

from .transport import ROUND_TIMEOUT_S, MAX_MESSAGES, PNG, Payload, elapsed_since, touch


def _tiny_final_mesh() -> Mesh:
    return Mesh(kind="final", vertices=np.zeros((3, 3), np.float32), faces=np.array([[0, 1, 2]], np.uint32))


def bench_pipeline(payloads: dict[str, Payload]) -> Callable[[Generate, Any], Mesh]:
    """A pipeline that emits `messages` copies of the payload named by the request's prompt,
    then returns a tiny final mesh (the terminal message, not timed)."""
    # The stage API sends intermediate meshes as `geometry`; only the body's kind string differs
    # (3 bytes out of ~28 MB), so the raw frames stay the reference for the byte count.
    server_messages = {name: replace(p.message, kind="geometry") if isinstance(p.message, Mesh) else p.message
                       for name, p in payloads.items()}
    final = _tiny_final_mesh()

    def pipeline(request: Generate, ctx: Any) -> Mesh:
        name = request.prompt  # the payload's name (request options are checked against the options table)
        message = server_messages[name]
        for _ in range(payloads[name].messages):
            ctx.check_cancelled()
            if isinstance(message, Mesh):
                ctx.mesh(message)
            else:
                # On purpose through the private emitter: `ctx.preview` throttles to 10/s, and
                # this measures how fast the transport can go, not the pacing.
                ctx._emit(message)
        return final

    return pipeline


class ServerHarness:
    """A Server on a free loopback port, served by a thread, and one connected Client."""

    def __init__(self, payloads: dict[str, Payload]) -> None:
        # Imported here so `import backend.bench.transport` stays light for the other subcommands.
        from backend.serving.config import ServerConfig
        from backend.device import DeviceInfo
        from backend.serving.server import Server

        # A send queue as deep as a whole round: this measures the transport's ceiling, not the
        # policy of dropping previews for a client that lags (see ServerConfig.client_queue_messages).
        config = ServerConfig(bind="tcp://127.0.0.1:*", client_queue_messages=MAX_MESSAGES + 100)
        self.server = Server(config, bench_pipeline(payloads),
                             device=DeviceInfo("cpu"))
        self.server.bind()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.server.serve, args=(self._stop,), name="bench-server")
        self._thread.start()
        self.client = Client(self.server.endpoint, client_name="lift3d-bench")
        try:
            self.client.handshake(10)
        except BaseException:
            self.close()
            raise

    def round(self, payload: Payload) -> float:
        dropped_before = self.server.dropped["preview"]
        start = time.perf_counter()
        job_id = self.client.submit(PNG, payload.kind, quality="draft")
        arrivals = self._collect(job_id, payload.message.TYPE)
        dropped = self.server.dropped["preview"] - dropped_before
        if len(arrivals) != payload.messages or dropped:
            raise RuntimeError(f"server path delivered {len(arrivals)} of {payload.messages} {payload.kind} "
                               f"messages ({dropped} previews dropped by the server)")
        return elapsed_since(start, arrivals, payload.messages)

    def _collect(self, job_id: str, message_type: str) -> list[float]:
        """Arrival times of the job's `message_type` messages, until its terminal message."""
        arrivals: list[float] = []
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        while time.monotonic() < deadline:
            for envelope in self.client.poll(budget_ms=100, wait=True):
                if envelope.job_id != job_id:
                    continue  # heartbeats
                message = envelope.message
                if is_terminal(message):
                    if message.TYPE != "mesh":
                        raise RuntimeError(f"the benchmark job ended with {message.TYPE}: {message}")
                    return arrivals
                if message.TYPE == message_type:
                    touch(message)
                    arrivals.append(time.perf_counter())
        raise TimeoutError(f"the benchmark job did not finish within {ROUND_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        self.client.close()
        self._stop.set()
        self._thread.join(30)
        if self._thread.is_alive():
            raise RuntimeError("the server thread did not stop within 30 s")


