"""Jobs and the JobManager: a bounded queue in front of one GPU worker thread.

The worker runs the job's prepared input through the runner with a StageContext and hands every
message it produces to `emit(job, message)`. It never touches a socket; the server decides how the
message reaches the client. Cancellation is cooperative: a running job stops at its next
`check_cancelled`; a queued job is simply removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
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


class JobManager:
    def __init__(self, runner: Runner, emit: Callable[[Job, Message], None], max_queued: int = 4,
                 preview_interval_s: float = 0.1) -> None:
        self._runner = runner
        self._emit = emit
        self._max_queued = max_queued
        self._preview_interval_s = preview_interval_s
        self._pending: deque[Job] = deque()
        self._running: Job | None = None
        self._lock = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="lift3d-gpu-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> int:
        """Queue `job`; returns how many jobs are ahead of it. Raises QueueFull."""
        with self._lock:
            if len(self._pending) >= self._max_queued:
                raise QueueFull(f"{len(self._pending)} jobs are already waiting")
            position = len(self._pending) + (self._running is not None)
            self._pending.append(job)
            self._lock.notify()
            return position

    def cancel(self, client: bytes, job_id: str) -> str | None:
        """'queued' if the job was removed from the queue (nothing more will be emitted for it),
        'running' if it was asked to stop (it will emit `cancelled`), None if it is not here."""
        with self._lock:
            for job in self._pending:
                if job.client == client and job.job_id == job_id:
                    self._pending.remove(job)
                    job.state = "done"
                    return "queued"
            running = self._running
            if running is not None and running.client == client and running.job_id == job_id:
                running.cancel_event.set()
                return "running"
        return None

    def cancel_client(self, client: bytes) -> int:
        """Drop every queued job of `client` and stop its running one; returns how many."""
        with self._lock:
            mine = [job for job in self._pending if job.client == client]
            for job in mine:
                self._pending.remove(job)
                job.state = "done"
            if self._running is not None and self._running.client == client:
                self._running.cancel_event.set()
                mine.append(self._running)
        return len(mine)

    def held(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return len(self._pending) + (self._running is not None)

    def worker_alive(self) -> bool:
        return self._thread.is_alive()

    def shutdown(self, timeout_s: float = 5.0) -> list[Job]:
        """Stop accepting work, cancel everything, wait for the worker. Returns the queued jobs
        that never ran (the server tells their clients)."""
        with self._lock:
            self._stopping = True
            dropped = list(self._pending)
            self._pending.clear()
            if self._running is not None:
                self._running.cancel_event.set()
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("the worker did not stop within %.0f s (a pipeline step ignores cancellation)",
                            timeout_s)
        return dropped

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._running = self._pending.popleft()
                job.state = "running"
            try:
                self._run(job)
            except Exception:  # the worker must outlive any single job, or every later job would hang
                log.exception("job %s: could not deliver its final message", job.job_id)
                self._emit(job, Failed(code="pipeline_error", message="The backend could not report how this "
                                       "job ended.", hint="This is a backend bug; the backend log has the details."))
            finally:
                with self._lock:
                    job.state = "done"
                    self._running = None

    def _run(self, job: Job) -> None:
        def emit(message: Message) -> None:
            job.last_event_at = time.monotonic()
            self._emit(job, message)

        ctx = StageContext(emit, job.cancel_event, self._preview_interval_s)
        started = time.monotonic()
        try:
            ctx.check_cancelled()
            result = self._runner.run(job.job_input, ctx)
            if not is_result(result):
                raise TypeError(f"the pipeline returned {type(result).__name__}, not a final Mesh "
                                "(generate) or an EnhancedImage (enhance)")
            emit(result)  # encodes, so an invalid result becomes a pipeline failure below
            log.info("job %s finished in %.1f s", job.job_id, time.monotonic() - started)
            return
        except JobCancelled:
            log.info("job %s cancelled during %s", job.job_id, ctx.stage)
            outcome: Message = Cancelled(stage=ctx.stage)
        except Exception as exc:  # any pipeline failure becomes a `failed` message
            log.exception("job %s failed during %s", job.job_id, ctx.stage)
            outcome = failure_for(exc, ctx.stage)
        emit(outcome)


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
