"""The bpy-free, non-blocking Lift3D client (a ZeroMQ DEALER).

Used by the Blender add-on (from a `bpy.app.timers` tick) and by the command line. Nothing
here blocks except `handshake()`, which is meant for command-line use:

    client = Client(address)
    client.connect()                      # sends hello
    job_id = client.submit(image_bytes, "a red chair", quality="standard")
    job_id = client.enhance(render_png)   # when "enhance" in client.welcome.request_kinds
    ...
    for envelope in client.poll(budget_ms=10):   # call every tick
        ...
    client.health()                        # alive? stalled or lost jobs?
    client.close()

This is the only module of the package that imports zmq.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from .codec import Envelope, decode, encode, new_id
from .errors import ProtocolError
from .limits import DEFAULT_ADDRESS
from .messages import Cancel, Enhance, Generate, Heartbeat, Hello, Message, Scene, Texture, Welcome, is_terminal


@dataclass(frozen=True)
class CurveKeys:
    """Key material for an encrypted connection to a backend started with --keys."""

    client_public: bytes
    client_secret: bytes
    server_public: bytes

    @classmethod
    def from_files(cls, client_secret_file: str | Path, server_public_file: str | Path) -> CurveKeys:
        import zmq.auth

        public, secret = zmq.auth.load_certificate(str(client_secret_file))
        if secret is None:
            raise ValueError(f"{client_secret_file} holds no secret key (use the .key_secret file)")
        server_public, _ = zmq.auth.load_certificate(str(server_public_file))
        return cls(public, secret, server_public)

    @classmethod
    def from_dir(cls, keys_dir: str | Path, client: str = "client") -> CurveKeys:
        """Keys from a folder made by `python -m backend keys generate` (see backend/serving/security.py)."""
        keys_dir = Path(keys_dir)
        return cls.from_files(keys_dir / "clients" / f"{client}.key_secret", keys_dir / "server" / "server.key")


class ConnectionState:
    CONNECTING = "connecting"      # hello sent, no welcome yet
    READY = "ready"                # welcome received and the backend is talking
    UNRESPONSIVE = "unresponsive"  # nothing heard for `dead_after_s` (crashed, killed, network gone)
    CLOSED = "closed"


@dataclass
class JobTracking:
    accepted: bool = False
    finished: bool = False
    last_message_at: float = 0.0


@dataclass(frozen=True)
class Health:
    state: str
    seconds_since_heard: float | None
    stalled: dict[str, float] = field(default_factory=dict)
    """Jobs the backend holds that have not reported for `stall_after_s`: job id -> seconds."""
    lost: list[str] = field(default_factory=list)
    """Accepted, unfinished jobs the backend no longer knows about (e.g. it was restarted)."""


class Client:
    def __init__(self, address: str = DEFAULT_ADDRESS, *, keys: CurveKeys | None = None,
                 client_name: str = "lift3d-client", heartbeat_interval_s: float = 1.0,
                 dead_after_s: float = 5.0, stall_after_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address = address
        self.keys = keys
        self.client_name = client_name
        self.heartbeat_interval_s = heartbeat_interval_s
        self.dead_after_s = dead_after_s
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._ctx: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._connected_at = 0.0
        self._last_heard: float | None = None
        self._last_sent = 0.0
        self._server_jobs: dict[str, float] = {}
        self._server_jobs_at: float | None = None
        self._routing_id = b"lift3d-" + os.urandom(8).hex().encode()
        self.state = ConnectionState.CLOSED
        self.welcome: Welcome | None = None
        self.jobs: dict[str, JobTracking] = {}
        self.protocol_errors: list[str] = []
        """Messages from the backend that could not be decoded (kept for diagnostics, newest last)."""

    # -- connection ----------------------------------------------------------------------

    def connect(self) -> None:
        """Open the socket and send `hello`. Returns at once; `poll` picks up the welcome."""
        if self._socket is not None:
            self.close()
        self._ctx = zmq.Context()
        sock = self._socket = self._ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, 0)  # closing (and quitting Blender) never waits for the backend
            # A fixed routing id: after a dropped connection the DEALER reconnects as the same peer,
            # so the backend keeps routing this client's jobs to it. No transport heartbeat timeout
            # here: it would drop the connection whenever Blender is too busy to poll; a dead
            # backend is detected from the application heartbeats instead (`health()`).
            sock.setsockopt(zmq.ROUTING_ID, self._routing_id)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
            if self.keys is not None:
                sock.curve_secretkey = self.keys.client_secret
                sock.curve_publickey = self.keys.client_public
                sock.curve_serverkey = self.keys.server_public
            sock.connect(self.address)
        except zmq.ZMQError as exc:
            self.close()
            raise ConnectionError(f"cannot connect to {self.address!r}: {exc} "
                                  "(expected an address like tcp://127.0.0.1:5571)") from exc
        self.state = ConnectionState.CONNECTING
        self.welcome = None
        self._connected_at = self._clock()
        self._last_heard = None
        self._send(Hello(client=self.client_name))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None
        self.state = ConnectionState.CLOSED

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def handshake(self, timeout_s: float = 5.0) -> Welcome:
        """Blocking connect for command-line use: returns the welcome or raises TimeoutError."""
        if self._socket is None:
            self.connect()
        deadline = self._clock() + timeout_s
        while self.welcome is None:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TimeoutError(f"no Lift3D backend answered at {self.address} within {timeout_s:g} s")
            self.poll(budget_ms=min(100, int(remaining * 1000) + 1), wait=True)
        return self.welcome

    # -- jobs ----------------------------------------------------------------------------

    def submit(self, image: bytes, prompt: str, quality: str = "standard", seed: int = 0,
               options: dict[str, Any] | None = None) -> str:
        """Send a `generate`; returns the job id (chosen here, so it can be cancelled at once).

        Raises ProtocolError for requests the backend would reject on sight (empty or unknown
        image format, prompt too long, ...), before anything is sent.
        """
        return self._start(Generate(image=image, prompt=prompt, quality=quality, seed=seed, options=options or {}))

    def enhance(self, image: bytes, reference: bytes | None = None, seed: int = 0,
                options: dict[str, Any] | None = None) -> str:
        """Send an `enhance` (protocol 2.1: check that `welcome.request_kinds` lists it); returns the
        job id. Raises ProtocolError for a request the backend would reject on sight."""
        return self._start(Enhance(image=image, reference=reference, seed=seed, options=options or {}))

    def texture(self, vertices, faces, prompt: str, *, uvs=None, normals=None, image: bytes | None = None,
                seed: int = 0, options: dict[str, Any] | None = None) -> str:
        """Send a `texture` (protocol 2.2: check that `welcome.request_kinds` lists it): paint the mesh
        vertices [V, 3] f32, faces [F, 3] (per-corner `uvs` [F, 3, 2] and vertex `normals` optional)
        from `prompt` and an optional reference `image` file; returns the job id. Raises
        ProtocolError for a request the backend would reject on sight."""
        return self._start(Texture(vertices=vertices, faces=faces, uvs=uvs, normals=normals, prompt=prompt,
                                   image=image, seed=seed, options=options or {}))

    def scene(self, prompt: str, *, image: bytes | None = None, trajectory: str = "orbit", poses=None,
              fov_deg: float = 60.0, quality: str = "draft", seed: int = 0,
              options: dict[str, Any] | None = None) -> str:
        """Send a `scene` (protocol 2.5: check that `welcome.request_kinds` lists it): grow a scene
        from `prompt` (and an optional first `image` file) along a preset `trajectory`, or along
        `poses` (Blender camera matrix_world [P, 4, 4] f32) with trajectory "camera"; returns the
        job id. Raises ProtocolError for a request the backend would reject on sight."""
        return self._start(Scene(prompt=prompt, image=image, trajectory=trajectory, poses=poses, fov_deg=fov_deg,
                                 quality=quality, seed=seed, options=options or {}))

    def _start(self, request: Message) -> str:
        job_id = new_id()
        self._send(request, job_id)
        self.jobs[job_id] = JobTracking(last_message_at=self._clock())
        return job_id

    def cancel(self, job_id: str) -> None:
        self._send(Cancel(), job_id)

    # -- receiving -----------------------------------------------------------------------

    def poll(self, budget_ms: float = 10.0, wait: bool = False) -> list[Envelope]:
        """Decoded messages received within `budget_ms`; never blocks longer than that.

        With `wait=False` it returns as soon as nothing is pending (the Blender tick); with
        `wait=True` it waits up to the budget for the first message (command-line loops).
        Also sends a heartbeat when one is due and updates `state`.
        """
        if self._socket is None:
            raise RuntimeError("connect() first")
        deadline = self._clock() + budget_ms / 1000
        out: list[Envelope] = []
        while True:
            try:  # receive first and poll only when nothing is pending: one syscall per message
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                timeout = max(0, int((deadline - self._clock()) * 1000)) if (wait and not out) else 0
                if timeout == 0 or not self._socket.poll(timeout, zmq.POLLIN):
                    break
                continue
            envelope = self._decode(frames)
            if envelope is not None:
                out.append(envelope)
            if self._clock() >= deadline:
                break
        self._tick()
        return out

    def health(self) -> Health:
        now = self._clock()
        heard = None if self._last_heard is None else now - self._last_heard
        # Ages were measured when the last server heartbeat left; add the time since it arrived,
        # but never more than the time since this client last heard from the job itself (a
        # heartbeat may have been dropped while messages were queued).
        since_beat = 0.0 if self._server_jobs_at is None else now - self._server_jobs_at
        stalled = {}
        for job_id, age in self._server_jobs.items():
            tracked = self.jobs.get(job_id)
            if tracked is not None and tracked.finished:
                continue
            silent = age + since_beat
            if tracked is not None:
                silent = min(silent, now - tracked.last_message_at)
            if age > 0 and silent >= self.stall_after_s:  # age 0: still queued, not stalled
                stalled[job_id] = silent
        # Only a heartbeat that arrived after the job's last message can prove it is gone: the
        # server lists a job until it has sent the job's final message, and delivery is in order.
        lost = [job_id for job_id, job in self.jobs.items()
                if job.accepted and not job.finished and job_id not in self._server_jobs
                and self._server_jobs_at is not None and self._server_jobs_at > job.last_message_at]
        return Health(self.state, heard, stalled, lost)

    def _decode(self, frames: list[zmq.Frame]) -> Envelope | None:
        now = self._clock()
        self._last_heard = now
        try:
            envelope = decode(frames)
        except ProtocolError as exc:
            self.protocol_errors = [*self.protocol_errors[-99:], str(exc)]
            return None
        message = envelope.message
        if isinstance(message, Welcome):
            self.welcome = message
        if self.state in (ConnectionState.CONNECTING, ConnectionState.UNRESPONSIVE) and self.welcome is not None:
            self.state = ConnectionState.READY
        if isinstance(message, Heartbeat):
            self._server_jobs = {str(k): float(v) for k, v in message.jobs.items()}
            self._server_jobs_at = now
        job = self.jobs.get(envelope.job_id) if envelope.job_id else None
        if job is not None:
            job.last_message_at = now
            job.accepted = job.accepted or message.TYPE == "accepted"
            job.finished = job.finished or is_terminal(message)
        return envelope

    def _tick(self) -> None:
        now = self._clock()
        if now - self._last_sent >= self.heartbeat_interval_s:
            self._send(Heartbeat(), must_deliver=False)
        since = now - (self._last_heard if self._last_heard is not None else self._connected_at)
        if since > self.dead_after_s and self.state != ConnectionState.CLOSED:
            self.state = ConnectionState.UNRESPONSIVE

    def _send(self, message: Message, job_id: str | None = None, must_deliver: bool = True) -> bool:
        """Queue `message` for sending. When the queue is full (the backend has not been reading
        for a long time) the state becomes UNRESPONSIVE and, if `must_deliver`, ConnectionError
        is raised; otherwise the message is dropped and False returned."""
        if self._socket is None:
            raise RuntimeError("connect() first")
        frames = encode(message, job_id=job_id)
        try:
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.state = ConnectionState.UNRESPONSIVE
            if must_deliver:
                raise ConnectionError(f"the backend at {self.address} is not accepting messages (it is not "
                                      "running, or it refused this client's keys)") from None
            return False
        self._last_sent = self._clock()
        return True
