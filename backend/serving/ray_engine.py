"""The Ray engine: the backend's GPU workers as Ray actors, behind the same ZeroMQ front end.

The front end (`Server`) stays the only door: CURVE, sessions, the job table, fair scheduling
between clients, cancel routing and preview throttling all stay there, because Ray has no access
control and no priorities. Each worker is an actor that keeps the models resident and runs the
same `run_job` as the embedded engine, so a job reports, fails and cancels the same way wherever it
runs. A job is sent to an actor only when that actor is idle (one front-end thread per actor):
an actor runs one submitter's calls in order, so a job queued on a busy actor could not be
overtaken by another client's job, nor moved to a worker that frees up sooner.

    front end (this process)              Ray actor (one per GPU)
    RayExecutor.execute(job) ── run() ──►  PipelineWorker.run: a streaming generator that yields
                             ◄── Encoded   each message already encoded by the worker
    job.cancel_event set     ── cancel() ► sets the job's flag (its own concurrency group, so it
                                           is served while `run` is busy)

A worker that dies fails its job with `worker_lost`; Ray restarts the actor (models are loaded
again) and the next job runs there. `ray` is imported only when this engine starts: the embedded
default never needs it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import Failed, Message, Progress, encode, is_terminal

from ..device import DeviceInfo
from .jobs import Encoded, Job, JobNotStarted, Runner, run_job

log = logging.getLogger(__name__)

CONTROL = "control"
"""The actor's concurrency group for `cancel` and `info`: served while `run` is busy."""
_POLL_S = 0.05
"""How often the front end looks for a cancel while it waits for a worker's next message."""
_LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
"""Object store of a Ray started for this backend alone: messages are small (a final mesh with a
2048² texture is ~20 MB), and Ray's default (30 % of RAM in /dev/shm) starves small machines."""


class EngineError(Exception):
    """The Ray engine cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class RayEngineConfig:
    address: str | None = None
    """Ray cluster to join ("auto", "ray://HOST:10001", ...); None: $RAY_ADDRESS, else a local Ray
    started for this backend and stopped with it."""
    workers: int | None = None
    """Number of worker actors; None: one per unit of `worker_resource` in the cluster."""
    worker_resource: str = "GPU"
    """What each worker reserves one unit of: GPU, CPU, or a custom resource name (tests use one in
    place of GPUs; a local Ray is given `workers` units of it)."""
    preview_interval_s: float = 0.1
    startup_timeout_s: float = 900.0
    """How long to wait for every worker to be placed and constructed."""

    def __post_init__(self) -> None:
        if self.workers is not None and not 1 <= self.workers <= 256:
            raise ValueError(f"--workers must be between 1 and 256, got {self.workers}")
        if not self.worker_resource or not self.worker_resource.replace("_", "").isalnum():
            raise ValueError(f"worker resource must be a name like GPU, CPU or my_gpu, got {self.worker_resource!r}")
        if self.worker_resource.upper() in ("GPU", "CPU"):  # Ray's own names; `gpu` is not a custom one
            object.__setattr__(self, "worker_resource", self.worker_resource.upper())


@dataclass(frozen=True)
class PipelinesFactory:
    """Builds a worker's pipelines inside the actor (picklable: settings only)."""

    preset: str
    device: str = "auto"
    lock_file: Path | None = None
    cache_dir: Path | None = None
    preload: bool = True

    def __call__(self) -> Runner:
        from ..models.registry import ModelRegistry, ModelSettings
        from ..pipelines import Pipelines
        from ..pipelines.cache import ResultCache

        registry = ModelRegistry(ModelSettings(preset=self.preset, device=self.device, lock_file=self.lock_file))
        pipelines = Pipelines(registry, ResultCache(self.cache_dir))
        if self.preload:
            pipelines.start_preload()
        return pipelines


class PipelineWorker:
    """The Ray actor: one runner with its models resident, one job at a time."""

    def __init__(self, factory: Callable[[], Runner], device: str = "auto") -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._device = device
        self._runner = factory()
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        from ..device import describe_device

        import ray

        device = describe_device(self._device)
        registry = getattr(self._runner, "registry", None)
        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": device.device,
                "gpu_name": device.gpu_name, "gpu_memory_mb": device.gpu_memory_mb,
                "preset": registry.preset if registry is not None else "none"}

    def cancel(self, job_id: str) -> None:
        # setdefault: a cancel may overtake the run call it is about (different concurrency groups
        # are not ordered), and must still stop that job when it arrives.
        with self._lock:
            self._cancel.setdefault(job_id, threading.Event()).set()

    def run(self, job_id: str, job_input: Any, preview_interval_s: float) -> Iterator[Encoded]:
        with self._lock:
            cancel = self._cancel.setdefault(job_id, threading.Event())
        out: queue.Queue[Encoded | None] = queue.Queue()

        def emit(message: Message) -> None:
            # Encoding here validates the message (an invalid result fails the job, as in the
            # embedded engine) and spreads the encoding work over the workers.
            frames = [bytes(frame) for frame in encode(message, job_id=job_id)]
            stage = message.stage if isinstance(message, Progress) else None
            out.put(Encoded(frames, terminal=is_terminal(message), droppable=message.TYPE == "preview", stage=stage))

        def work() -> None:
            try:
                run_job(self._runner, job_input, cancel, emit, preview_interval_s, job_id)
            finally:
                out.put(None)

        threading.Thread(target=work, name=f"lift3d-job-{job_id}", daemon=True).start()
        try:
            while (item := out.get()) is not None:
                yield item
        finally:
            cancel.set()  # the front end stopped listening: do not keep the GPU busy for nobody
            with self._lock:
                self._cancel.pop(job_id, None)


def worker_info(actor: Any) -> Any:
    """A reference to the actor's `info()` (pid, node, device, preset), asked in the control group
    so it is answered while a job runs."""
    return actor.info.options(concurrency_group=CONTROL).remote()


@dataclass
class RayExecutor:
    """The front end's side of one worker actor (an `Executor` for the JobManager)."""

    actor: Any
    name: str
    preview_interval_s: float = 0.1
    lost: bool = False
    """Set when the actor stopped answering: it takes no job until it answers again."""
    gone: bool = False
    """Set when Ray will not bring the actor back (its constructor failed on a restart)."""

    def wait_until_ready(self, stopping: Callable[[], bool]) -> bool:
        """Block until the actor answers again after it was lost (models reloaded), or
        `stopping()`. False when it is gone for good (Ray does not restart an actor whose
        constructor failed): this executor then takes no more jobs."""
        if not self.lost:
            return True
        import ray
        from ray.exceptions import RayActorError, RayError

        waited, next_log = 0.0, 30.0
        probe = worker_info(self.actor)
        while not stopping():
            ready, _ = ray.wait([probe], timeout=0.5)
            waited += 0.5
            if waited >= next_log:
                log.warning("worker %s has not answered for %.0f s (restarting: loading models?)", self.name, waited)
                next_log *= 2
            if not ready:
                continue
            try:
                info = ray.get(probe)
            except RayActorError as exc:
                if getattr(exc, "actor_init_failed", False):
                    log.error("worker %s cannot be restarted (its constructor failed): %s", self.name, exc)
                    self.gone = True
                    return False
                time.sleep(0.5)  # still restarting: ask again shortly
                probe = worker_info(self.actor)
                continue
            except RayError as exc:
                log.error("worker %s is unusable: %s", self.name, exc)
                self.gone = True
                return False
            log.info("worker %s is back: pid %s on %s", self.name, info["pid"], info["node"])
            self.lost = False
            return True
        return True

    def execute(self, job: Job, emit: Callable[[Message | Encoded], None]) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayError

        received, ended, stage, cancel_sent = False, False, None, False
        try:
            stream = self.actor.run.remote(job.job_id, job.job_input, self.preview_interval_s)
            while True:
                if job.cancel_event.is_set() and not cancel_sent:
                    self._stop_remote(job)
                    cancel_sent = True
                ready, _ = ray.wait([stream], timeout=_POLL_S)
                if not ready:
                    continue
                try:
                    item = ray.get(next(stream))
                except StopIteration:
                    break
                received, stage = True, item.stage or stage
                emit(item)
                ended = ended or item.terminal
        except RayActorError as exc:
            self.lost = True
            if not received:
                # Nothing ran that anyone saw (the actor died while idle, or is restarting): the
                # job goes back to the queue instead of failing.
                log.warning("worker %s was unavailable for job %s; it goes back to the queue: %s", self.name,
                            job.job_id, exc)
                raise JobNotStarted(str(exc)) from exc
            died = not isinstance(exc, ActorUnavailableError)
            log.warning("worker %s %s during job %s: %s", self.name, "died" if died else "stopped answering",
                        job.job_id, exc)
            if not ended:
                self._stop_remote(job)  # an unavailable actor may still be running it
                emit(Failed(code="worker_lost", stage=stage,
                            message=f"The worker running this job ({self.name}) "
                                    f"{'died' if died else 'stopped answering'} during {stage or 'the job'}.",
                            hint="Try again: the job runs on another worker, or on this one once Ray has "
                                 "restarted it."))
            return
        except RayError as exc:
            log.exception("worker %s could not run job %s", self.name, job.job_id)
            if not ended:
                self._stop_remote(job)
                emit(Failed(code="pipeline_error", stage=stage,
                            message=f"The worker {self.name} could not run this job: {type(exc).__name__}"[:1000],
                            hint="This is a backend bug; the backend log has the details."))
            return
        except BaseException:
            if not ended:
                self._stop_remote(job)  # dropping the stream does not stop the task
            raise
        if not ended:  # the generator ended without a final message: never leave a job open
            emit(Failed(code="pipeline_error", stage=stage, message=f"The worker {self.name} ended this job "
                        "without a result.", hint="This is a backend bug; the backend log has the details."))

    def _stop_remote(self, job: Job) -> None:
        try:
            self.actor.cancel.options(concurrency_group=CONTROL).remote(job.job_id)
        except Exception:  # the actor is gone: nothing runs there
            pass


class RayEngine:
    """Connects to (or starts) Ray, places the workers and hands out their executors."""

    def __init__(self, config: RayEngineConfig, factory: Callable[[], Runner], device: str = "auto") -> None:
        self.config = config
        self.factory = factory
        self.device = device
        self.actors: list[Any] = []
        self.workers: list[dict[str, Any]] = []
        """What each worker reported at startup (pid, node, device)."""

    def start(self) -> list[RayExecutor]:
        try:
            import ray
        except ImportError as exc:
            raise EngineError("--engine ray needs Ray: pip install -e '.[ray]' (./lift3d test installs it)") from exc
        config = self.config
        address = config.address or os.environ.get("RAY_ADDRESS") or None
        resource = config.worker_resource
        if address and address.startswith("ray://"):
            # Ray Client cannot call streaming generator methods, which carry every job's messages.
            raise EngineError(f"--ray-address {address}: Ray Client (ray://) addresses cannot stream results; run "
                              "the front end on a node of the cluster and use --ray-address auto (or HOST:6379)")
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, namespace="lift3d", log_to_driver=True)
                else:
                    # "local": a private Ray for this backend, even where `ray start` runs a cluster
                    # (that one is joined with --ray-address auto).
                    custom = {} if resource in ("GPU", "CPU") else {resource: float(config.workers or 1)}
                    ray.init(address="local", namespace="lift3d", resources=custom, include_dashboard=False,
                             object_store_memory=_LOCAL_OBJECT_STORE_BYTES, log_to_driver=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EngineError(f"cannot start or join Ray{f' at {address}' if address else ''}: {exc}") from exc
        available = ray.cluster_resources().get(resource, 0.0)
        workers = config.workers or int(available)
        if workers < 1 or available < workers:
            self.stop()
            fewer = f", pass --workers {int(available)}" if available >= 1 else ""
            raise EngineError(f"the Ray cluster has {available:g} {resource}, and {workers or 1} worker(s) need "
                              f"one each. Add {resource} nodes{fewer}"
                              f"{'' if resource == 'CPU' else ', or pass --worker-resource CPU to run workers on CPUs'}.")
        if resource == "GPU":
            placement: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
        elif resource == "CPU":
            placement = {"num_cpus": 1}
        else:
            placement = {"resources": {resource: 1}, "num_cpus": 0}
        if resource != "GPU":
            # A worker that reserves no GPU must not use one: Ray leaves CUDA_VISIBLE_DEVICES alone
            # for it, so every such worker would land on GPU 0 unreserved.
            placement["runtime_env"] = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
        actor_class = ray.remote(max_restarts=-1, max_task_retries=0,
                                 concurrency_groups={CONTROL: 1})(PipelineWorker).options(**placement)
        self.actors = [actor_class.remote(self.factory, self.device) for _ in range(workers)]
        infos = [worker_info(actor) for actor in self.actors]
        ready, pending = ray.wait(infos, num_returns=len(infos), timeout=config.startup_timeout_s)
        if pending:
            self.stop()
            raise EngineError(f"only {len(ready)} of {workers} Ray workers started within "
                              f"{config.startup_timeout_s:.0f} s; the cluster has {ray.cluster_resources()}")
        try:
            self.workers = ray.get(infos)
        except ray.exceptions.RayError as exc:
            self.stop()
            raise EngineError(f"a Ray worker failed to start: {exc}") from exc
        for index, info in enumerate(self.workers):
            log.info("Ray worker %d: pid %s on %s, %s %s", index, info["pid"], info["node"], info["device"],
                     info["gpu_name"] or "")
        return [RayExecutor(actor, f"ray-{index}", config.preview_interval_s)
                for index, actor in enumerate(self.actors)]

    def preset(self) -> str:
        """The model preset every worker resolved (they must agree: one set of results per request)."""
        presets = sorted({info["preset"] for info in self.workers})
        if len(presets) != 1:
            raise EngineError(f"the Ray workers resolved different model presets ({', '.join(presets)}): some "
                              "machines lack the full weights. Run `./lift3d backend models download` on every "
                              "GPU machine, or pass --models full (or tiny) explicitly.")
        return presets[0]

    def device_info(self) -> DeviceInfo:
        """For the welcome: the first worker's device, named with the worker count."""
        first = self.workers[0]
        name = first["gpu_name"] or first["device"]
        return DeviceInfo(first["device"], f"{len(self.workers)} × {name} (Ray workers)", first["gpu_memory_mb"])

    def stop(self) -> None:
        try:
            import ray
        except ImportError:  # never started
            return
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []
        if ray.is_initialized():
            ray.shutdown()
