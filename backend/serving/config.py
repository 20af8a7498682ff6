"""Typed configuration of the server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protocol import DEFAULT_ADDRESS
from protocol.limits import MAX_OPTIONS
from protocol.options import QUALITY_NAMES

MAX_QUEUED = 1024
# One client's unfinished jobs must fit in a heartbeat (MAX_OPTIONS entries), with room for jobs
# whose final message is still on its way from the worker.
MAX_JOBS_PER_CLIENT = MAX_OPTIONS // 2


@dataclass(frozen=True)
class ServerConfig:
    bind: str = DEFAULT_ADDRESS
    """ZeroMQ endpoint the ROUTER socket binds to."""
    keys_dir: Path | None = None
    """Folder made by `python -m backend keys generate`; enables CURVE encryption and client auth."""
    insecure: bool = False
    """Allow a non-loopback bind without CURVE keys (anyone who can reach the port may use the GPU)."""
    max_queued: int = 4
    """Jobs waiting behind the running one; one more is answered with `failed: busy`."""
    max_queued_per_client: int | None = None
    """Jobs one client may have waiting (None: `max_queued`). Below `max_queued`, one artist queueing
    many jobs cannot take every place and leave the others `busy` (the Ray engine's default: 4)."""
    heartbeat_interval_s: float = 1.0
    """How often each connected client gets a heartbeat (and how often clients should send theirs)."""
    client_timeout_s: float = 120.0
    """A client silent this long is considered gone and its jobs are cancelled. Generous, because
    Blender may be busy (a render, a bake) and not poll; a closed connection (Blender quit or
    crashed) is detected sooner, at the next heartbeat."""
    client_queue_messages: int = 64
    """Messages libzmq queues for a client that is not reading; beyond that, previews and
    heartbeats are dropped and results wait in the server's backlog (10 s of previews at 10/s
    is plenty, and keeps a stalled Blender from costing gigabytes)."""
    device: str = "auto"
    """Compute device: auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu."""
    model_preset: str = "none"
    """Model preset reported to clients; the models issue wires `full`, `tiny` and `auto`."""
    quality_presets: tuple[str, ...] = QUALITY_NAMES
    """The presets clients may ask for (protocol/options.py names them; the pipeline configures them)."""

    def __post_init__(self) -> None:
        if not 0 <= self.max_queued <= MAX_QUEUED:
            raise ValueError(f"max_queued must be between 0 and {MAX_QUEUED}, got {self.max_queued}")
        if self.max_queued_per_client is not None and not 1 <= self.max_queued_per_client <= MAX_QUEUED:
            raise ValueError(f"max_queued_per_client must be between 1 and {MAX_QUEUED}, got "
                             f"{self.max_queued_per_client}")
        if self.heartbeat_interval_s <= 0 or self.client_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("need 0 < heartbeat_interval_s < client_timeout_s")
