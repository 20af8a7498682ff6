"""Fair scheduling between clients: the FairQueue on its own, then the JobManager with several
in-process executors behind the real server."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from backend.serving.jobs import FairQueue, Job, JobManager, LocalExecutor, as_runner
from protocol import Mesh
from tests.support import PNG, collect, connected_client, next_message, running_server, stepping_pipeline


def job(client: bytes, name: str) -> Job:
    return Job(client=client, job_id=name, job_input=None)


def test_the_client_with_fewer_jobs_running_goes_first_then_clients_take_turns():
    queue = FairQueue()
    for name in ("a1", "a2", "a3"):
        queue.push(job(b"A", name))
    queue.push(job(b"B", "b1"))
    queue.push(job(b"B", "b2"))
    queue.push(job(b"C", "c1"))
    # A already runs two jobs, B one: C first, then B, then turns in order of last service.
    running = Counter({b"A": 2, b"B": 1})
    assert [j.job_id for j in queue.order(running)] == ["c1", "b1", "a1", "b2", "a2", "a3"]
    started = []
    while len(queue):
        started.append(queue.pop(running).job_id)
        running[started[-1][0].upper().encode()] += 1
    assert started == ["c1", "b1", "a1", "b2", "a2", "a3"]


def test_a_clients_own_jobs_keep_their_order_and_removal_works():
    queue = FairQueue()
    jobs = [job(b"A", f"a{i}") for i in range(4)]
    for j in jobs:
        queue.push(j)
    queue.remove(jobs[1])
    assert [j.job_id for j in queue] == ["a0", "a2", "a3"] and len(queue) == 3
    assert [queue.pop(Counter()).job_id for _ in range(3)] == ["a0", "a2", "a3"]
    assert len(queue) == 0 and queue.clear() == []


def test_positions_count_the_jobs_that_must_finish_first_with_two_executors():
    """`accepted.queue_position` with two workers: 0 while a worker is free, then how many jobs
    must end before this one can start."""
    gate = threading.Event()

    def blocked(request, ctx):
        while not gate.is_set():
            ctx.check_cancelled()
            time.sleep(0.01)
        return Mesh(kind="final", vertices=None, faces=None)

    runner = as_runner(blocked)
    manager = JobManager([LocalExecutor(runner, name="w0"), LocalExecutor(runner, name="w1")],
                         lambda job, message: None, max_queued=8)
    manager.start()
    try:
        positions = [manager.submit(job(b"A", "a1")), manager.submit(job(b"A", "a2"))]
        deadline = time.monotonic() + 5
        while len(manager.running()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        positions += [manager.submit(job(b"A", "a3")), manager.submit(job(b"A", "a4")),
                      manager.submit(job(b"B", "b1"))]
        # a3 waits for one of the two running jobs, a4 for two; B's first job overtakes A's queue.
        assert positions == [0, 0, 1, 2, 1]
        assert sorted(j.job_id for j in manager.running().values()) == ["a1", "a2"]
    finally:
        gate.set()
        manager.shutdown()


def test_a_second_clients_job_starts_right_after_the_running_one_on_one_worker():
    """One in-process worker: A queues six jobs, then B one; B's starts as soon as A's first ends."""
    started = []
    inner = stepping_pipeline(steps=4, step_s=0.05)

    def pipeline(request, ctx):
        started.append(request.seed)
        return inner(request, ctx)

    with running_server(pipeline, max_queued=8) as server:
        with connected_client(server) as a, connected_client(server) as b:
            jobs_a = [a.submit(PNG, "a", quality="draft", seed=i) for i in range(6)]
            deadline = time.monotonic() + 5
            while not started:  # A's first job is running
                assert time.monotonic() < deadline
                time.sleep(0.01)
            job_b = b.submit(PNG, "b", quality="draft", seed=99)
            accepted_b = collect(b, {job_b}, timeout_s=30)[0].message
            collect(a, set(jobs_a), timeout_s=30)
    assert accepted_b.queue_position == 1  # only A's running job is ahead of it
    assert started == [0, 99, 1, 2, 3, 4, 5]


class Unavailable:
    """An executor whose worker cannot start jobs (a Ray actor dying or restarting)."""

    def __init__(self, name: str, ready: bool = True):
        self.name, self.lost, self.gone, self.ready, self.tried = name, False, False, ready, []

    def wait_until_ready(self, stopping) -> bool:
        if self.lost:  # as a Ray actor does while Ray restarts it
            time.sleep(0.3)
        return self.ready

    def execute(self, job, emit):
        from backend.serving.jobs import JobNotStarted

        self.tried.append(job.job_id)
        self.lost = True
        raise JobNotStarted("actor restarting")


class Working:
    def __init__(self, name: str):
        self.name, self.ran = name, []

    def execute(self, job, emit):
        self.ran.append(job.job_id)
        emit(Mesh(kind="final", vertices=None, faces=None))


def collect_emits():
    got, lock = [], threading.Lock()

    def emit(job, message):
        with lock:
            got.append((job.job_id, message))
    return got, emit


def wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_job_a_worker_could_not_start_goes_back_to_the_queue_and_runs_elsewhere():
    got, emit = collect_emits()
    down, up = Unavailable("down"), Working("up")
    manager = JobManager([down, up], emit, max_queued=8)
    manager._threads[0].start()  # only the unavailable worker is listening when the job arrives
    try:
        manager.submit(job(b"A", "a1"))
        wait_until(lambda: down.tried)
        manager._threads[1].start()
        wait_until(lambda: len(got) == 1)
    finally:
        manager.shutdown()
    assert got[0][0] == "a1" and isinstance(got[0][1], Mesh)  # exactly one terminal message, a result
    assert up.ran == ["a1"] and down.tried == ["a1"]


def test_a_job_no_worker_can_start_fails_with_worker_lost_after_a_few_tries():
    from backend.serving.jobs import MAX_ATTEMPTS
    from protocol import Failed

    got, emit = collect_emits()
    down = Unavailable("down")
    manager = JobManager([down], emit, max_queued=8)
    manager.start()
    try:
        manager.submit(job(b"A", "a1"))
        wait_until(lambda: len(got) == 1)
    finally:
        manager.shutdown()
    (job_id, failed), = got
    assert isinstance(failed, Failed) and failed.code == "worker_lost" and f"{MAX_ATTEMPTS} tried" in failed.message
    assert down.tried == ["a1"] * MAX_ATTEMPTS


def test_when_every_worker_is_gone_waiting_jobs_fail_and_new_ones_are_refused():
    from backend.serving.jobs import QueueFull
    from protocol import Failed

    got, emit = collect_emits()
    gone = Unavailable("gone", ready=False)
    manager = JobManager([gone], emit, max_queued=8)
    manager.submit(job(b"A", "a1"))  # queued before the worker reports that it is gone
    manager.start()
    try:
        wait_until(lambda: len(got) == 1)
        assert isinstance(got[0][1], Failed) and got[0][1].code == "worker_lost" and "Restart" in got[0][1].hint
        with pytest.raises(QueueFull, match="no worker is running"):
            manager.submit(job(b"B", "b1"))
    finally:
        manager.shutdown()


def test_the_ray_engine_refuses_what_cannot_work_before_starting_ray():
    pytest.importorskip("ray")
    from backend.serving.ray_engine import EngineError, PipelinesFactory, RayEngine, RayEngineConfig

    with pytest.raises(EngineError, match="Ray Client"):
        RayEngine(RayEngineConfig(address="ray://head:10001"), PipelinesFactory("tiny")).start()
    assert RayEngineConfig(worker_resource="gpu").worker_resource == "GPU"  # Ray's name, not a custom one
    with pytest.raises(ValueError, match="between 1 and 256"):
        RayEngineConfig(workers=0)


def test_one_client_cannot_take_every_queue_place_when_a_per_client_limit_is_set():
    from backend.serving.config import ServerConfig

    gate = threading.Event()

    def blocked(request, ctx):
        while not gate.is_set():
            ctx.check_cancelled()
            time.sleep(0.01)
        return inner(request, ctx)

    inner = stepping_pipeline(steps=1, step_s=0.0)
    with running_server(blocked, max_queued=6, max_queued_per_client=2) as server:
        with connected_client(server) as a, connected_client(server) as b:
            jobs_a = [a.submit(PNG, "a", quality="draft", seed=0)]
            wait_until(lambda: server._jobs.running())  # A's first job runs
            jobs_a += [a.submit(PNG, "a", quality="draft", seed=i) for i in range(1, 4)]  # 2 wait, 1 refused
            job_b = b.submit(PNG, "b", quality="draft", seed=9)
            refused = next_message(a, lambda e: e.job_id == jobs_a[3]).message
            accepted_b = next_message(b, lambda e: e.job_id == job_b).message
            gate.set()
            collect(b, {job_b}, timeout_s=30)
    assert refused.TYPE == "failed" and refused.code == "busy"
    assert "you already have 2 jobs waiting" in refused.message
    assert accepted_b.TYPE == "accepted"  # B still gets a place
    with pytest.raises(ValueError, match="max_queued_per_client"):
        ServerConfig(max_queued_per_client=0)
