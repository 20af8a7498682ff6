"""Jobs and the JobManager: a bounded, fair queue in front of one or more executors.

An executor runs a job's prepared input through the runner with a StageContext and hands every
message it produces to `emit(job, message)`: the embedded engine runs it in this process
(`LocalExecutor`), the Ray engine on a Ray actor (`ray_engine.RayExecutor`). Executors never touch
a socket; the server decides how the message reaches the client. Cancellation is cooperative: a
running job stops at its next `check_cancelled`; a queued job is simply removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol import FAILURE_CODES, Cancelled, Failed, Generate, Message, RequestKind, is_result
from protocol.limits import MAX_NAME_CHARS, MAX_TEXT_CHARS

from .context import JobCancelled, PipelineError, StageContext

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What the server runs jobs with (the generation pipelines, or a test stand-in). It may say
    which request kinds it serves with a `request_kinds` attribute (default: generate only); the
    server lists them in its welcome and refuses the others before `accepted`."""

    def prepare(self, request: Message) -> Any:
        """The request (`generate` or `enhance`, already checked against the protocol's options
        table) → the typed job input `run` takes. Runs on the server thread before `accepted`, so it
        must be quick; raises PipelineError(code="invalid_request" or "too_large") for a request that
        cannot be served as asked."""
        ...

    def run(self, job_input: Any, ctx: StageContext) -> Message:
        """Runs one job on the worker thread: reports through `ctx`, returns the job's result
        message (the final mesh of a generate, the enhanced image of an enhance)."""
        ...


def served_kinds(runner: Runner) -> tuple[RequestKind, ...]:
    kinds = set(getattr(runner, "request_kinds", (RequestKind.GENERATE,)))
    return tuple(kind for kind in RequestKind if kind in kinds)


@dataclass(frozen=True)
class FunctionRunner:
    """A plain `function(request, ctx) -> result` as a Runner (the request is its own input)."""

    function: Callable[[Any, StageContext], Message]
    request_kinds: tuple[RequestKind, ...] = (RequestKind.GENERATE,)

    def prepare(self, request: Message) -> Message:
        return request

    def run(self, job_input: Message, ctx: StageContext) -> Message:
        return self.function(job_input, ctx)


def as_runner(runner: Runner | Callable[[Generate, StageContext], Message]) -> Runner:
    return runner if hasattr(runner, "prepare") and hasattr(runner, "run") else FunctionRunner(runner)


class QueueFull(Exception):
    pass


class JobNotStarted(Exception):
    """Raised by an executor that could not start a job (its worker was unavailable) before the
    job emitted anything: the job goes back to the front of the queue."""


MAX_ATTEMPTS = 3
"""Times a job may be handed to a worker that turns out to be unavailable before it fails."""


@dataclass(eq=False)
class Job:
    client: bytes
    job_id: str
    job_input: Any
    """What the runner's `prepare` made of the request."""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    created_at: float = field(default_factory=time.monotonic)
    last_event_at: float = field(default_factory=time.monotonic)
    """Updated by the worker on every message; the server's heartbeats report its age."""
    state: str = "queued"  # queued -> running -> done
    attempts: int = 0
    """Times it was handed to an executor (more than one only when a worker was unavailable)."""


@dataclass(frozen=True)
class Encoded:
    """A message a remote worker has already encoded (and so validated): its frames, and how the
    front end treats it when the client lags."""

    frames: list[bytes]
    terminal: bool
    droppable: bool
    stage: str | None = None
    """The stage a `progress` message reports (the front end names it if the worker dies)."""


Emit = Callable[[Job, "Message | Encoded"], None]


class Executor(Protocol):
    """Runs one job at a time to its end. `execute` blocks until the job is over and emits every
    message of it, ending with exactly one terminal message (result, `failed` or `cancelled`). It
    must stop soon after `job.cancel_event` is set."""

    name: str

    def execute(self, job: Job, emit: Callable[[Message | Encoded], None]) -> None:
        ...

    # Optional: `wait_until_ready(stopping: Callable[[], bool]) -> bool`, called before each job is
    # taken; blocks while the executor cannot run one (a Ray actor being restarted) and returns False
    # when it never will again. Optional attributes `lost`/`gone`: not counted as free meanwhile.


def run_job(runner: Runner, job_input: Any, cancel_event: threading.Event, emit: Callable[[Message], None],
            preview_interval_s: float, label: str) -> None:
    """Run one job through `runner` and emit its messages, the terminal one included. Shared by the
    in-process executor and the Ray worker, so both report and fail in exactly the same way."""
    ctx = StageContext(emit, cancel_event, preview_interval_s)
    started = time.monotonic()
    try:
        ctx.check_cancelled()
        result = runner.run(job_input, ctx)
        if not is_result(result):
            raise TypeError(f"the pipeline returned {type(result).__name__}, not a final Mesh "
                            "(generate) or an EnhancedImage (enhance)")
        emit(result)  # encodes, so an invalid result becomes a pipeline failure below
        log.info("job %s finished in %.1f s", label, time.monotonic() - started)
        return
    except JobCancelled:
        log.info("job %s cancelled during %s", label, ctx.stage)
        outcome: Message = Cancelled(stage=ctx.stage)
    except Exception as exc:  # any pipeline failure becomes a `failed` message
        log.exception("job %s failed during %s", label, ctx.stage)
        outcome = failure_for(exc, ctx.stage)
    emit(outcome)


@dataclass
class LocalExecutor:
    """The embedded engine: the job runs on the calling thread of this process."""

    runner: Runner
    preview_interval_s: float = 0.1
    name: str = "local"

    def execute(self, job: Job, emit: Callable[[Message | Encoded], None]) -> None:
        run_job(self.runner, job.job_input, job.cancel_event, emit, self.preview_interval_s, job.job_id)


class FairQueue:
    """Jobs waiting for a worker, handed out fairly between clients: the next job belongs to the
    client with the fewest jobs running, ties going to the client served longest ago (round
    robin); each client's own jobs keep their order. One artist queueing many jobs thus delays
    another artist's job by at most the jobs already running."""

    def __init__(self) -> None:
        self._waiting: dict[bytes, deque[Job]] = {}
        self._last_served: dict[bytes, int] = {}
        self._ticks = 0

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._waiting.values())

    def __iter__(self) -> Iterator[Job]:
        return (job for jobs in self._waiting.values() for job in jobs)

    def push(self, job: Job) -> None:
        self._waiting.setdefault(job.client, deque()).append(job)

    def of(self, client: bytes) -> list[Job]:
        """`client`'s waiting jobs, in their order."""
        return list(self._waiting.get(client, ()))

    def push_front(self, job: Job) -> None:
        """Put back a job that could not start: first of its client's jobs again."""
        self._waiting.setdefault(job.client, deque()).appendleft(job)

    def remove(self, job: Job) -> None:
        jobs = self._waiting[job.client]
        jobs.remove(job)
        if not jobs:
            del self._waiting[job.client]

    def pop(self, running: Counter[bytes]) -> Job:
        """The next job to start, given how many jobs each client has running."""
        client = self._next_client(running, self._last_served)
        self._ticks += 1
        self._last_served[client] = self._ticks
        job = self._waiting[client].popleft()
        if not self._waiting[client]:
            del self._waiting[client]
        return job

    def order(self, running: Counter[bytes]) -> list[Job]:
        """The waiting jobs in the order they would start if no job finished meanwhile."""
        waiting = {client: list(jobs) for client, jobs in self._waiting.items()}
        running, served, out = Counter(running), dict(self._last_served), []
        while waiting:
            client = self._next_client(running, served, waiting)
            out.append(waiting[client].pop(0))
            running[client] += 1
            served[client] = self._ticks + len(out)
            if not waiting[client]:
                del waiting[client]
        return out

    def forget(self, client: bytes) -> None:
        self._last_served.pop(client, None)

    def clear(self) -> list[Job]:
        jobs = list(self)
        self._waiting.clear()
        return jobs

    def _next_client(self, running: Counter[bytes], served: dict[bytes, int],
                     waiting: dict[bytes, Any] | None = None) -> bytes:
        return min(waiting if waiting is not None else self._waiting,
                   key=lambda client: (running[client], served.get(client, 0)))


class JobManager:
    """A bounded, fair queue in front of one or more executors, each driven by its own thread
    that takes a job only when its executor is idle (a job is never queued on a busy worker, where
    it could not be overtaken or re-routed)."""

    def __init__(self, executors: Sequence[Executor], emit: Emit, max_queued: int = 4,
                 max_queued_per_client: int | None = None) -> None:
        if not executors:
            raise ValueError("a JobManager needs at least one executor")
        self._executors = list(executors)
        self._emit = emit
        self._max_queued = max_queued
        self._max_per_client = max_queued if max_queued_per_client is None else max_queued_per_client
        self._pending = FairQueue()
        self._running: dict[str, Job] = {}  # executor name -> its job
        self._lock = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, args=(executor,), daemon=True,
                                          name=f"lift3d-worker-{executor.name}") for executor in self._executors]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> int:
        """Queue `job`; returns how many jobs must finish before it can start (0: it starts now).
        Raises QueueFull."""
        with self._lock:
            if len(self._pending) >= self._max_queued:
                raise QueueFull(f"{len(self._pending)} jobs are already waiting")
            mine = len(self._pending.of(job.client))
            if mine >= self._max_per_client:
                raise QueueFull(f"you already have {mine} jobs waiting, the most one client may queue here")
            if not self._live():
                raise QueueFull("no worker is running (they all failed to restart); restart the backend")
            self._pending.push(job)
            ahead = self._pending.order(self._running_by_client()).index(job)
            self._lock.notify()
            # Workers being restarted are not free: a job waiting for them does not start now.
            free_slots = len([e for e in self._live() if not getattr(e, "lost", False)])
            return max(0, ahead + len(self._running) - free_slots + 1)

    def cancel(self, client: bytes, job_id: str) -> str | None:
        """'queued' if the job was removed from the queue (nothing more will be emitted for it),
        'running' if it was asked to stop (it will emit `cancelled`), None if it is not here."""
        with self._lock:
            for job in self._pending:
                if job.client == client and job.job_id == job_id:
                    self._pending.remove(job)
                    job.state = "done"
                    return "queued"
            for running in self._running.values():
                if running.client == client and running.job_id == job_id:
                    running.cancel_event.set()
                    return "running"
        return None

    def cancel_client(self, client: bytes) -> int:
        """Drop every queued job of `client` and stop its running ones; returns how many."""
        with self._lock:
            mine = self._pending.of(client)
            for job in mine:
                self._pending.remove(job)
                job.state = "done"
            self._pending.forget(client)
            for running in self._running.values():
                if running.client == client:
                    running.cancel_event.set()
                    mine.append(running)
        return len(mine)

    def held(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return len(self._pending) + len(self._running)

    def running(self) -> dict[str, Job]:
        """Executor name → the job it runs now."""
        with self._lock:
            return dict(self._running)

    def worker_alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def shutdown(self, timeout_s: float = 5.0) -> list[Job]:
        """Stop accepting work, cancel everything, wait for the workers. Returns the queued jobs
        that never ran (the server tells their clients)."""
        with self._lock:
            self._stopping = True
            dropped = self._pending.clear()
            for job in self._running.values():
                job.cancel_event.set()
            self._lock.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        if self.worker_alive():
            log.warning("a worker did not stop within %.0f s (a pipeline step ignores cancellation)", timeout_s)
        return dropped

    def _running_by_client(self) -> Counter[bytes]:
        return Counter(job.client for job in self._running.values())

    def _live(self) -> list[Executor]:
        return [e for e in self._executors if not getattr(e, "gone", False)]

    def _retire(self, executor: Executor) -> None:
        """`executor` will never run a job again; with none left, fail what waits."""
        executor.gone = True  # type: ignore[attr-defined]  (executors that can retire have the attribute)
        with self._lock:
            orphans = [] if self._live() or self._stopping else self._pending.clear()
        log.error("worker %s is gone; %d worker(s) left", executor.name, len(self._live()))
        for job in orphans:
            job.state = "done"
            self._emit(job, Failed(code="worker_lost", message="Every worker of this backend has stopped, so "
                                   "this job cannot run.", hint="Restart the backend (its log says why the "
                                   "workers stopped), then try again."))

    def _work(self, executor: Executor) -> None:
        wait_until_ready = getattr(executor, "wait_until_ready", None)
        while True:
            if wait_until_ready is not None:  # a remote worker that died takes no job until it is back
                try:
                    usable = wait_until_ready(lambda: self._stopping)
                except Exception:
                    log.exception("worker %s: could not tell whether it is ready", executor.name)
                    usable = False
                if not usable:
                    self._retire(executor)
                    return
            with self._lock:
                while not len(self._pending) and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._pending.pop(self._running_by_client())
                self._running[executor.name] = job
                job.state = "running"
                job.attempts += 1

            def emit(message: Message | Encoded, job: Job = job) -> None:
                job.last_event_at = time.monotonic()
                self._emit(job, message)

            requeued = False
            try:
                executor.execute(job, emit)
            except JobNotStarted as exc:
                with self._lock:
                    requeued = job.attempts < MAX_ATTEMPTS and not self._stopping and not job.cancel_event.is_set()
                    if requeued:  # back to the front of its client's queue, for a worker that answers
                        self._running.pop(executor.name, None)
                        job.state = "queued"
                        self._pending.push_front(job)
                        self._lock.notify()
                if not requeued:
                    emit(Cancelled(stage=None) if job.cancel_event.is_set() else Failed(
                            code="worker_lost", message=f"No worker could start this job ({job.attempts} tried): "
                                                        f"{exc}"[:1000],
                            hint="Try again in a minute; if it keeps failing, the backend log says why the workers "
                                 "stop."))
            except Exception:  # a worker must outlive any single job, or every later job would hang
                log.exception("job %s: could not deliver its final message", job.job_id)
                self._emit(job, Failed(code="pipeline_error", message="The backend could not report how this "
                                       "job ended.", hint="This is a backend bug; the backend log has the details."))
            finally:
                if not requeued:
                    with self._lock:
                        job.state = "done"
                        self._running.pop(executor.name, None)


def failure_for(exc: BaseException, stage: str | None) -> Failed:
    """Turn a pipeline exception into the `failed` message the artist sees."""
    # Cut to the wire limits: a failure report that cannot be encoded would leave the job unended.
    stage = stage[:MAX_NAME_CHARS] if stage else None
    if is_out_of_memory(exc):
        return Failed(code="out_of_memory", stage=stage,
                      message=f"Ran out of memory during {stage or 'the job'}: {exc}"[:MAX_TEXT_CHARS],
                      hint="Try the draft preset or a smaller texture size, close other programs using the "
                           "GPU, or start the backend with --device cpu.")
    if isinstance(exc, PipelineError):
        code = exc.code if exc.code in FAILURE_CODES else "pipeline_error"
        return Failed(code=code, stage=stage, message=str(exc)[:MAX_TEXT_CHARS], hint=exc.hint[:MAX_TEXT_CHARS])
    return Failed(code="pipeline_error", stage=stage, message=f"{type(exc).__name__}: {exc}"[:MAX_TEXT_CHARS],
                  hint="This is a backend bug; the backend log has the full traceback. Please report it.")


def is_out_of_memory(exc: BaseException) -> bool:
    # Checked by name so this module needs no torch: torch.cuda.OutOfMemoryError (and
    # torch.OutOfMemoryError) subclass RuntimeError; MPS raises a plain RuntimeError.
    if isinstance(exc, MemoryError):
        return True
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
