"""The ZeroMQ server: one ROUTER socket, owned by one thread.

Incoming messages are decoded and validated here; jobs go to the JobManager. Messages the
worker produces arrive over an inproc PUSH/PULL pipe (zero copy) and are forwarded to the
client's identity. Only this thread touches the ROUTER socket, so replies it sends directly
(`accepted`, `welcome`, errors) are always ordered before anything the worker says about
the same job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq

from protocol import (
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    Cancelled,
    Envelope,
    Failed,
    Generate,
    Heartbeat,
    Hello,
    Message,
    OptionError,
    ProtocolError,
    RequestKind,
    Welcome,
    decode,
    encode,
    is_terminal,
    peek_ids,
    request_kind,
)
from protocol.limits import MAX_IMAGE_BYTES, MAX_OPTIONS, MAX_TEXT_CHARS
from protocol.options import options_for, validate_options

from .. import __version__
from .config import MAX_JOBS_PER_CLIENT, ServerConfig
from .context import PipelineError
from ..device import DeviceInfo, describe_device
from .jobs import Encoded, Executor, Job, JobManager, LocalExecutor, QueueFull, Runner, as_runner, served_kinds
from .security import check_bind_policy, enable_curve_server

log = logging.getLogger(__name__)

# Marker frame between the worker and this thread: how to treat the message if the client lags.
_TERMINAL, _DROPPABLE, _NORMAL = b"T", b"P", b"-"
_MAX_BACKLOG = 10_000  # undroppable messages kept for a client whose send queue is full
_DRAIN_BATCH = 64  # messages taken from one socket before looking at the other

_PROTOCOL_HINTS = {
    "unsupported_version": "Install the same Lift3D release for the Blender add-on and the backend.",
    "too_large": "Use a smaller image (at most 64 MiB) or a shorter prompt.",
    "bad_message": "The add-on and backend disagree about the protocol; make sure both come from the same "
                   "Lift3D release. The message names the offending field.",
}


@dataclass
class ClientState:
    last_seen: float
    jobs: dict[str, Job] = field(default_factory=dict)
    backlog: deque[list[Any]] = field(default_factory=deque)


class Server:
    def __init__(self, config: ServerConfig, runner: Runner | Callable, device: DeviceInfo | None = None,
                 executors: Sequence[Executor] | None = None) -> None:
        """`runner` prepares requests (on this thread, before `accepted`) and says which kinds are
        served; `executors` run the jobs (default: one in this process, running `runner`; the Ray
        engine passes its workers)."""
        check_bind_policy(config.bind, config.keys_dir, config.insecure)
        self.config = config
        self._device = device or describe_device(config.device)
        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._auth = None
        self._pull = self._ctx.socket(zmq.PULL)
        self._push_local = threading.local()
        self._outbox_endpoint = f"inproc://lift3d-outbox-{id(self):x}"
        self._clients: dict[bytes, ClientState] = {}
        self._runner = as_runner(runner)
        executors = executors or [LocalExecutor(self._runner)]
        self._jobs = JobManager(executors, self._post_from_worker, max_queued=config.max_queued,
                                max_queued_per_client=config.max_queued_per_client)
        self.endpoint = ""
        self.dropped: Counter[str] = Counter()
        """Messages dropped for clients that lag, by type ('preview', 'heartbeat')."""

    # -- lifecycle -----------------------------------------------------------------------

    def bind(self) -> str:
        """Bind the sockets and start the worker; returns the bound endpoint (resolves port '*')."""
        router = self._router
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sends to a vanished client raise instead of vanishing
        router.setsockopt(zmq.LINGER, 1000)  # flush final messages on shutdown, but never hang
        # Transport heartbeats catch half-open connections. Their timeout must not be short: a peer
        # whose receive queue is full stops reading the stream, PONGs included, and a busy Blender
        # would be disconnected (and its jobs cancelled) while it is merely not polling.
        router.setsockopt(zmq.HEARTBEAT_IVL, int(self.config.heartbeat_interval_s * 1000))
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.config.client_timeout_s * 1000))
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a client reconnecting with its routing id keeps its jobs
        # Transport-level guard against memory exhaustion (per frame): a client that ignores the
        # image limit it can check itself (Client.submit does) is disconnected, not answered.
        router.setsockopt(zmq.MAXMSGSIZE, MAX_IMAGE_BYTES + 2**20)
        # A client that stops reading queues at most this many messages in libzmq; beyond it,
        # previews are dropped and results wait in the server's own backlog.
        router.setsockopt(zmq.SNDHWM, self.config.client_queue_messages)
        try:
            if self.config.keys_dir is not None:
                self._auth = enable_curve_server(self._ctx, router, self.config.keys_dir)
            router.bind(self.config.bind)
        except zmq.ZMQError as exc:
            self.close()
            raise OSError(f"cannot bind {self.config.bind}: {exc}. Is another backend already running there? "
                          "Choose another address with --bind.") from exc
        except BaseException:
            self.close()  # an open socket would keep the process from exiting
            raise
        self.endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._pull.bind(self._outbox_endpoint)
        self._jobs.start()
        log.info("Lift3D backend %s listening on %s (%s%s)", __version__, self.endpoint, self._device.device,
                 ", CURVE" if self._auth else "")
        return self.endpoint

    def serve(self, stop: threading.Event) -> None:
        """Run until `stop` is set, then shut down cleanly."""
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        next_heartbeat = time.monotonic()
        try:
            while not stop.is_set():
                events = dict(poller.poll(timeout=50))
                if self._pull in events:
                    self._drain(self._pull, self._forward)
                if self._router in events:
                    self._drain(self._router, self._receive)
                now = time.monotonic()
                try:
                    self._flush_backlogs()
                    if now >= next_heartbeat:
                        next_heartbeat = now + self.config.heartbeat_interval_s
                        self._heartbeat(now)
                except Exception:  # as in _drain: one bug must not stop the server for everyone
                    log.exception("internal error in the server loop; it keeps running")
        finally:
            self._shutdown()

    def close(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._jobs.worker_alive():
            # A pipeline step ignored cancellation and still holds its outbox socket; sockets are
            # not thread-safe, so close only ours and leave the context to process exit.
            self._router.close(linger=1000)
            self._pull.close(linger=0)
        else:
            self._ctx.destroy(linger=1000)

    def _shutdown(self) -> None:
        log.info("shutting down")
        try:
            for job in self._jobs.shutdown():
                self._finish(job.client, job.job_id)
                self._send_now(job.client, job.job_id, Failed(code="shutdown", message="The backend shut down "
                               "before this job started.", hint="Start the backend again and press Generate."))
            while self._pull.poll(0):  # what the worker said while stopping (e.g. `cancelled`)
                self._forward(self._pull.recv_multipart(copy=False))
            for client, state in list(self._clients.items()):
                for job_id in list(state.jobs):
                    self._send_now(client, job_id, Failed(code="shutdown", message="The backend shut down "
                                   "while this job was running.", hint="Start the backend again and press Generate."))
            self._flush_backlogs()
        finally:
            self.close()

    # -- incoming ------------------------------------------------------------------------

    def _drain(self, socket: zmq.Socket, handle: Any) -> None:
        for _ in range(_DRAIN_BATCH):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                handle(frames)
            except Exception:  # a bug handling one message must not take the server down for everyone
                log.exception("internal error while handling a message; the server keeps running")

    def _receive(self, frames: list[zmq.Frame]) -> None:
        client = frames[0].bytes
        state = self._clients.get(client)
        if state is None:
            state = self._clients[client] = ClientState(last_seen=time.monotonic())
        state.last_seen = time.monotonic()
        try:
            envelope = decode(frames[1:])
        except ProtocolError as exc:
            msg_id, job_id = peek_ids(frames[1]) if len(frames) > 1 else (None, None)
            log.warning("rejected a message from client %s: %s", client.hex(), exc)
            self._send_now(client, job_id, Failed(code=exc.code, message=str(exc)[:MAX_TEXT_CHARS], in_reply_to=msg_id,
                                                  hint=_PROTOCOL_HINTS.get(exc.code, "")))
            return
        message = envelope.message
        if isinstance(message, Hello):
            log.info("client %s says hello: %s", client.hex(), message.client)
            self._send_now(client, None, self._welcome())
        elif request_kind(message) is not None:  # generate, enhance
            self._submit(client, state, envelope, message)
        elif isinstance(message, Cancel):
            self._cancel(client, state, envelope)
        elif isinstance(message, Heartbeat):
            pass  # last_seen is all it is for
        else:
            self._send_now(client, envelope.job_id, Failed(
                code="bad_message", message=f"clients may not send '{message.TYPE}' messages",
                hint=_PROTOCOL_HINTS["bad_message"], in_reply_to=envelope.msg_id))

    def _welcome(self) -> Welcome:
        return Welcome(protocol=str(PROTOCOL_VERSION), backend_version=__version__, device=self._device.device,
                       gpu_name=self._device.gpu_name, gpu_memory_mb=self._device.gpu_memory_mb,
                       model_preset=self.config.model_preset, quality_presets=list(self.config.quality_presets),
                       heartbeat_interval_s=self.config.heartbeat_interval_s,
                       request_kinds=[kind.value for kind in self._kinds],
                       options=list(dict.fromkeys(spec.name for kind in self._kinds for spec in options_for(kind))))

    @property
    def _kinds(self) -> tuple[RequestKind, ...]:
        """The request kinds the runner serves, in the enum's order."""
        return served_kinds(self._runner)

    def _submit(self, client: bytes, state: ClientState, envelope: Envelope, request: Message) -> None:
        job_id = envelope.job_id
        kind = request_kind(request)

        def refuse(code: str, message: str, hint: str, about_job: bool = True) -> None:
            # A refusal that carries the job id ends that job for the client; one about a job that
            # already exists must not, so it only points at the request (`in_reply_to`).
            self._send_now(client, job_id if about_job else None,
                           Failed(code=code, message=message, hint=hint, in_reply_to=envelope.msg_id))

        if job_id is None:
            return refuse("invalid_request", f"{request.TYPE} needs a job_id in the header",
                          "Clients choose a unique job id per job (protocol.new_id()).")
        if job_id in state.jobs:
            return refuse("invalid_request", f"job {job_id} is already queued or running",
                          "Use a new job id for every request.", about_job=False)
        if len(state.jobs) >= MAX_JOBS_PER_CLIENT:
            return refuse("busy", f"this client already has {len(state.jobs)} unfinished jobs",
                          "Wait for some to finish, or cancel them, before submitting more.")
        if kind not in self._kinds:
            return refuse("invalid_request", f"this backend does not serve {kind.value} requests",
                          f"It serves: {', '.join(k.value for k in self._kinds)} (see welcome.request_kinds).")
        if isinstance(request, Generate) and request.quality not in self.config.quality_presets:
            return refuse("invalid_request", f"unknown quality preset {request.quality!r:.40}",
                          f"Choose one of: {', '.join(self.config.quality_presets)}.")
        # Every option is checked before `accepted`: a bad one ends the request here, naming the
        # option and what is allowed, and no job is created.
        try:
            validate_options(kind, request.options)
            job_input = self._runner.prepare(request)
        except OptionError as exc:
            return refuse("invalid_request", str(exc)[:MAX_TEXT_CHARS], exc.hint[:MAX_TEXT_CHARS])
        except PipelineError as exc:
            return refuse(exc.code if exc.code in ("invalid_request", "too_large") else "pipeline_error",
                          str(exc)[:MAX_TEXT_CHARS], exc.hint[:MAX_TEXT_CHARS])
        job = Job(client=client, job_id=job_id, job_input=job_input)
        try:
            position = self._jobs.submit(job)
        except QueueFull as exc:
            return refuse("busy", f"The backend is busy: {exc}.",
                          "Wait for a job to finish (or cancel one) and press Generate again.")
        state.jobs[job_id] = job
        self._send_now(client, job_id, Accepted(queue_position=position))
        log.info("job %s accepted from %s (%d ahead)", job_id, client.hex(), position)

    def _cancel(self, client: bytes, state: ClientState, envelope: Envelope) -> None:
        job_id = envelope.job_id
        if job_id is None or job_id not in state.jobs:
            # No job id on the reply: the job (if it existed) has already sent its final message.
            self._send_now(client, None, Failed(
                code="unknown_job", message=f"no queued or running job {job_id!r} to cancel",
                hint="The job has already finished.", in_reply_to=envelope.msg_id))
            return
        where = self._jobs.cancel(client, job_id)
        if where == "queued":
            self._finish(client, job_id)
            self._send_now(client, job_id, Cancelled(stage=None))
        # 'running': the worker stops at its next check and sends `cancelled` itself.
        # None: it just finished; its final message is already on the way.

    # -- outgoing ------------------------------------------------------------------------

    def _post_from_worker(self, job: Job, message: Message | Encoded) -> None:
        """Called on a worker thread: hand the encoded message to the server thread."""
        push = getattr(self._push_local, "socket", None)
        if push is None:
            push = self._push_local.socket = self._ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.SNDTIMEO, 10_000)  # never hang the worker if the server loop is gone
            push.setsockopt(zmq.LINGER, 0)
            push.connect(self._outbox_endpoint)
        if isinstance(message, Encoded):  # a remote worker encoded it (with this job's id)
            marker = _TERMINAL if message.terminal else _DROPPABLE if message.droppable else _NORMAL
            frames: list[Any] = message.frames
        else:
            marker = _TERMINAL if is_terminal(message) else _DROPPABLE if message.TYPE == "preview" else _NORMAL
            frames = encode(message, job_id=job.job_id)
        push.send_multipart([job.client, marker, job.job_id.encode(), *frames], copy=False)

    def _forward(self, frames: list[zmq.Frame]) -> None:
        client, marker, job_id = frames[0].bytes, frames[1].bytes, frames[2].bytes.decode()
        # Re-sending the received Frame objects only bumps a reference count; wrapping their
        # buffers again would register every frame with pyzmq's zero-copy cleanup a second time.
        self._send(client, frames[3:], droppable="preview" if marker == _DROPPABLE else None)
        if marker == _TERMINAL:
            self._finish(client, job_id)

    def _send_now(self, client: bytes, job_id: str | None, message: Message) -> None:
        self._send(client, encode(message, job_id=job_id))

    def _send(self, client: bytes, frames: list[Any], droppable: str | None = None) -> None:
        """Send now, or queue behind what the client has not taken yet. `droppable` names the kind
        of a message that is worthless once stale; such messages are dropped instead of queued."""
        state = self._clients.get(client)
        if state is None:
            return  # the client is gone; its jobs were cancelled
        if state.backlog or self._router_send(client, frames) == "full":
            self._enqueue(client, state, frames, droppable)

    def _router_send(self, client: bytes, frames: list[Any]) -> str:
        """'sent'; 'full' when the client's queue is full (it is not reading fast enough); or
        'gone' when it has disconnected, in which case its jobs are cancelled."""
        try:
            self._router.send_multipart([client, *frames], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return "full"
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self._client_gone(client, "disconnected")
            return "gone"
        return "sent"

    def _enqueue(self, client: bytes, state: ClientState, frames: list[Any], droppable: str | None) -> None:
        if droppable:
            self.dropped[droppable] += 1  # the next preview or heartbeat supersedes it
        elif len(state.backlog) < _MAX_BACKLOG:
            state.backlog.append(frames)
        else:  # it has stopped reading for good; dropping a result silently would be worse
            self._client_gone(client, f"not reading ({_MAX_BACKLOG} messages waiting)")

    def _flush_backlogs(self) -> None:
        for client, state in list(self._clients.items()):
            while state.backlog and self._router_send(client, state.backlog[0]) == "sent":
                state.backlog.popleft()

    def _heartbeat(self, now: float) -> None:
        for client, state in list(self._clients.items()):
            if now - state.last_seen > self.config.client_timeout_s:
                self._client_gone(client, f"silent for {self.config.client_timeout_s:.0f} s")
                continue
            # Waiting in the queue is not stalling: queued jobs report age 0.
            ages = {job_id: round(now - job.last_event_at, 3) if job.state == "running" else 0.0
                    for job_id, job in list(state.jobs.items())[:MAX_OPTIONS]}
            self._send(client, encode(Heartbeat(jobs=ages)), droppable="heartbeat")

    def _finish(self, client: bytes, job_id: str) -> None:
        state = self._clients.get(client)
        if state is not None:
            state.jobs.pop(job_id, None)

    def _client_gone(self, client: bytes, why: str) -> None:
        state = self._clients.pop(client, None)
        cancelled = self._jobs.cancel_client(client)
        if state is not None:
            log.info("client %s %s; cancelled %d job(s)", client.hex(), why, cancelled)
