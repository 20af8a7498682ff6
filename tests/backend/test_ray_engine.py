"""The Ray engine: the real front end, a local Ray with two workers on a custom resource in place
of GPUs, and the real pipelines with tiny models in each worker.

Jobs use the draft preset shortened through request options (seconds each on 2 CPU cores); every
test sees the same engine (workers keep their models, as in production).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from backend.models.registry import ModelRegistry, ModelSettings
from backend.pipelines import Pipelines
from protocol import Accepted, Cancelled, Failed, Mesh, Progress
from tests.backend.test_pipeline_e2e import SHORT, photo
from tests.support import connected_client, running_server

ray = pytest.importorskip("ray")

from backend.serving.ray_engine import PipelinesFactory, RayEngine, RayEngineConfig, worker_info  # noqa: E402

RESOURCE = "lift3d_test_gpu"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ray-results")
    engine = RayEngine(RayEngineConfig(workers=2, worker_resource=RESOURCE, startup_timeout_s=240),
                       PipelinesFactory("tiny", "cpu", cache_dir=cache))
    executors = engine.start()
    yield engine, executors
    engine.stop()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    _, executors = engine
    front = Pipelines(ModelRegistry(ModelSettings(preset="tiny", device="cpu")))  # prepares, never runs
    with running_server(front, executors=executors, model_preset="tiny", max_queued=8) as server:
        yield server


def ended(message) -> bool:
    return isinstance(message, (Failed, Cancelled)) or (isinstance(message, Mesh) and message.kind == "final")


def timed(clients, jobs: set[str], timeout_s: float = 240.0, until=None) -> list[tuple[float, str, object]]:
    """(arrival time, job id, message) of every job message the `clients` receive, polling them in
    turn (so arrival times compare across clients), until each of `jobs` has ended or `until(events)`."""
    clients = clients if isinstance(clients, (list, tuple)) else [clients]
    out, pending = [], set(jobs)
    deadline = time.monotonic() + timeout_s
    while pending and not (until and until(out)):
        assert time.monotonic() < deadline, f"timed out; still open: {pending}"
        for client in clients:
            for envelope in client.poll(budget_ms=20, wait=True):
                if envelope.job_id is not None:
                    out.append((time.monotonic(), envelope.job_id, envelope.message))
                    if ended(envelope.message):
                        pending.discard(envelope.job_id)
    return out


def first(events, job_id, kind) -> float | None:
    return next((t for t, j, m in events if j == job_id and isinstance(m, kind)), None)


def submit(client, seed: int, **options) -> str:
    return client.submit(photo(seed % 5), "a red disc", quality="draft", seed=seed, options={**SHORT, **options})


def test_two_clients_jobs_run_at_the_same_time_on_two_workers(server):
    a, b = connected_client(server), connected_client(server)
    try:
        job_a, job_b = submit(a, 101), submit(b, 102)
        events = timed([a, b], {job_a, job_b})
    finally:
        a.close(), b.close()
    for job in (job_a, job_b):
        mine = [m for _, j, m in events if j == job]
        assert isinstance(mine[0], Accepted) and mine[0].queue_position == 0
        assert isinstance(mine[-1], Mesh) and mine[-1].kind == "final", mine[-1]
        assert mine[-1].metadata.tiny
    end = {j: t for t, j, m in events if ended(m)}
    # Both were running at once: each started before the other ended.
    assert first(events, job_a, Progress) < end[job_b] and first(events, job_b, Progress) < end[job_a]


def test_cancel_reaches_a_running_ray_job_within_a_second(server):
    client = connected_client(server)
    try:
        job = submit(client, 103, geometry_steps=2000)
        events = timed(client, {job}, until=lambda out: any(
            isinstance(m, Progress) and m.stage == "geometry" for _, _, m in out))
        sent = time.monotonic()
        client.cancel(job)
        events += timed(client, {job}, timeout_s=10)
    finally:
        client.close()
    assert isinstance(events[-1][2], Cancelled) and events[-1][2].stage == "geometry"
    assert events[-1][0] - sent < 1.0


def test_a_killed_worker_fails_its_job_with_worker_lost_and_the_next_jobs_succeed(server, engine):
    ray_engine, executors = engine
    client = connected_client(server)
    try:
        job = submit(client, 104, geometry_steps=2000)
        timed(client, {job}, until=lambda out: any(isinstance(m, Progress) for _, _, m in out))
        worker = next(name for name, running in server._jobs.running().items() if running.job_id == job)
        actor = next(e.actor for e in executors if e.name == worker)
        pid = ray.get(worker_info(actor))["pid"]
        os.kill(pid, signal.SIGKILL)  # the worker process dies, as on a driver crash or OOM kill
        events = timed(client, {job}, timeout_s=30)
        failed = events[-1][2]
        assert isinstance(failed, Failed) and failed.code == "worker_lost", failed
        assert worker in failed.message and failed.hint
        # Both workers (the restarted one included) take the next jobs.
        jobs = {submit(client, 105), submit(client, 106)}
        events = timed(client, jobs)
    finally:
        client.close()
    finals = [m for _, _, m in events if ended(m)]
    assert len(finals) == 2 and all(isinstance(m, Mesh) for m in finals), finals
    restarted = ray.get(worker_info(actor))["pid"]
    assert restarted != pid


def test_a_client_queueing_many_jobs_does_not_hold_back_another_clients_job(server):
    a, b = connected_client(server), connected_client(server)
    try:
        jobs_a = [submit(a, 200 + i) for i in range(6)]
        job_b = submit(b, 300)
        events = timed([a, b], {job_b})
        for job in jobs_a:  # A's remaining jobs are not needed any more
            a.cancel(job)
        events += timed([a, b], set(jobs_a) - {j for _, j, m in events if ended(m)}, timeout_s=60)
    finally:
        a.close(), b.close()
    mine = [m for _, j, m in events if j == job_b]
    assert isinstance(mine[-1], Mesh) and mine[-1].kind == "final"
    # At most one of A's jobs ahead (0 when the workers had not yet taken A's first jobs), never A's queue.
    assert mine[0].queue_position <= 1
    started_a3 = first(events, jobs_a[2], Progress)
    assert first(events, jobs_a[0], Progress) is not None and first(events, jobs_a[1], Progress) is not None
    assert started_a3 is None or first(events, job_b, Progress) < started_a3
