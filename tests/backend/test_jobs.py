"""The server and its job system, end to end over loopback with a small deterministic pipeline."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from backend.serving.context import PipelineError
from protocol import Accepted, Failed, Generate, Mesh, MeshMetadata, Preview, Progress, Welcome
from protocol.client import ConnectionState
from protocol import is_terminal
from tests.support import (PNG, collect, connected_client, next_message, of_job, running_server,
                           stepping_pipeline, wait_for)


def submit(client, seed=0, quality="draft", prompt="a chair"):
    return client.submit(PNG, prompt, quality=quality, seed=seed)


def types(envelopes):
    return [e.type for e in envelopes]


def test_handshake_describes_the_backend():
    with running_server(stepping_pipeline()) as server:
        with connected_client(server) as client:
            welcome = client.welcome
    assert isinstance(welcome, Welcome)
    assert welcome.protocol == "2.5" and welcome.device == "cpu"
    assert welcome.quality_presets == ["draft", "standard", "high"]
    assert client.state == ConnectionState.CLOSED


def test_a_job_streams_accepted_progress_previews_geometry_then_final_mesh():
    with running_server(stepping_pipeline(steps=5, step_s=0.03)) as server, connected_client(server) as client:
        job = submit(client, seed=7)
        got = collect(client, job)
    kinds = types(got)
    assert kinds[0] == "accepted" and got[0].message.queue_position == 0
    assert got[-1].type == "mesh" and got[-1].message.kind == "final"
    assert all(e.job_id == job for e in got)
    progress = [e.message for e in got if isinstance(e.message, Progress)]
    assert [(p.stage, p.step) for p in progress] == [("geometry", i) for i in range(1, 6)] + [("texture", 1)]
    assert all(p.eta_s is not None and p.eta_s >= 0 for p in progress)
    previews = [e.message for e in got if isinstance(e.message, Preview)]
    assert 1 <= len(previews) <= 5  # throttled to 10/s; 5 steps take ~0.15 s
    assert previews[0].positions.shape == (64, 3) and previews[0].colors.dtype == np.uint8
    meshes = [e.message for e in got if isinstance(e.message, Mesh)]
    assert [m.kind for m in meshes] == ["geometry", "final"]
    assert meshes[-1].metadata == MeshMetadata(seed=7) and meshes[-1].faces.shape == (4, 3)


def test_twenty_concurrent_clients_each_receive_exactly_their_own_messages_in_order():
    n_clients, jobs_each = 20, 2
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def artist(index: int, endpoint_server) -> None:
        try:
            with connected_client(endpoint_server) as client:
                jobs = {submit(client, seed=index * 10 + k): index * 10 + k for k in range(jobs_each)}
                got = collect(client, set(jobs), timeout_s=60, linger_s=0.3)
                results[index] = (jobs, got)
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    with running_server(stepping_pipeline(steps=3, step_s=0.005), max_queued=n_clients * jobs_each) as server:
        threads = [threading.Thread(target=artist, args=(i, server)) for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    assert not errors, errors
    assert len(results) == n_clients
    for index, (jobs, got) in results.items():
        assert {e.job_id for e in got} == set(jobs), "a client received another client's job"
        for job_id, seed in jobs.items():
            mine = of_job(got, job_id)
            assert sum(is_terminal(e.message) for e in mine) == 1, "exactly one final message per job"
            assert mine[0].type == "accepted"
            assert mine[-1].type == "mesh" and mine[-1].message.kind == "final"
            assert mine[-1].message.metadata == MeshMetadata(seed=seed)
            steps = [e.message.step for e in mine if e.type == "progress" and e.message.stage == "geometry"]
            assert steps == [1, 2, 3]
            assert types(mine).index("mesh") < len(mine) - 1  # the geometry mesh came before the final one


def test_cancelling_a_running_job_stops_it_within_a_second():
    with running_server(stepping_pipeline(steps=10_000, step_s=0.01)) as server, connected_client(server) as client:
        job = submit(client)
        seen = []
        wait_for(lambda: any(e.type == "progress" for e in seen), poll=lambda: seen.extend(client.poll(20)))
        t0 = time.monotonic()
        client.cancel(job)
        got = collect(client, job, timeout_s=5)
        latency = time.monotonic() - t0
    assert got[-1].type == "cancelled" and got[-1].message.stage == "geometry"
    assert latency < 1.0


def test_cancelling_a_queued_job_removes_it_without_running_it():
    ran: list[int] = []
    base = stepping_pipeline(steps=10_000, step_s=0.01)

    def pipeline(request, ctx):
        ran.append(request.seed)
        return base(request, ctx)

    with running_server(pipeline) as server, connected_client(server) as client:
        running = submit(client, seed=1)
        queued = submit(client, seed=2)
        seen = []
        wait_for(lambda: sum(e.type == "accepted" for e in seen) == 2, poll=lambda: seen.extend(client.poll(20)))
        assert [e.message.queue_position for e in seen if e.type == "accepted"] == [0, 1]
        client.cancel(queued)
        got_queued = of_job(collect(client, queued, timeout_s=5), queued)
        client.cancel(running)
        got_running = of_job(collect(client, running, timeout_s=5), running)
    assert types(got_queued) == ["cancelled"] and got_queued[0].message.stage is None
    assert got_running[-1].type == "cancelled"
    assert ran == [1]


def test_a_full_queue_answers_busy_and_the_queued_job_runs_when_the_worker_frees():
    with running_server(stepping_pipeline(steps=10_000, step_s=0.01), max_queued=1) as server, \
            connected_client(server) as client:
        first = submit(client, 1)
        seen = []
        wait_for(lambda: any(e.type == "progress" for e in seen), poll=lambda: seen.extend(client.poll(20)))
        second, third = submit(client, 2), submit(client, 3)
        got = of_job(collect(client, third, timeout_s=5), third)
        assert types(got) == ["failed"] and got[0].message.code == "busy"
        assert "Wait" in got[0].message.hint
        client.cancel(first)
        assert collect(client, first, timeout_s=5)[-1].type == "cancelled"
        seen = []
        wait_for(lambda: any(e.type == "progress" and e.job_id == second for e in seen),
                 poll=lambda: seen.extend(client.poll(20)))
        client.cancel(second)
        assert collect(client, second, timeout_s=5)[-1].type == "cancelled"


@pytest.mark.parametrize("error, code, text", [
    (ValueError("the depth map is empty"), "pipeline_error", "ValueError: the depth map is empty"),
    (MemoryError("cannot allocate 4 GiB"), "out_of_memory", "Ran out of memory during geometry"),
    (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2.00 GiB"),
     "out_of_memory", "CUDA out of memory"),
    (PipelineError("the prompt names nothing in the image", hint="Describe the object"), "pipeline_error",
     "names nothing"),
    # A code outside the protocol's list, and a hint over the wire limit, still end the job.
    (PipelineError("odd failure", hint="h" * 5000, code="no_object"), "pipeline_error", "odd failure"),
])
def test_pipeline_failures_become_failed_messages_and_the_server_keeps_serving(error, code, text):
    failing = stepping_pipeline(steps=4, step_s=0.0, fail=error)
    healthy = stepping_pipeline(steps=2, step_s=0.0)

    def pipeline(request, ctx):
        return (failing if request.seed == 1 else healthy)(request, ctx)

    with running_server(pipeline) as server, connected_client(server) as client:
        bad = collect(client, submit(client, seed=1))
        good = collect(client, submit(client, seed=2))
    failed = bad[-1].message
    assert isinstance(failed, Failed) and failed.code == code and failed.stage == "geometry"
    assert text in failed.message and failed.hint
    assert good[-1].type == "mesh" and good[-1].message.kind == "final"


def test_requests_the_server_cannot_serve_get_clear_failures():
    with running_server(stepping_pipeline(steps=10_000, step_s=0.01)) as server, connected_client(server) as client:
        bad_quality = collect(client, submit(client, quality="ultra"))[-1].message
        assert bad_quality.code == "invalid_request" and "draft, standard, high" in bad_quality.hint

        client.cancel("never-submitted")
        unknown = next_message(client, lambda e: e.type == "failed").message
        assert unknown.code == "unknown_job" and unknown.in_reply_to

        job = submit(client)
        client._send(Generate(image=PNG, prompt="again", quality="draft", seed=0), job)  # the same job id again
        dup_reply = next_message(client, lambda e: e.type == "failed")
        dup = dup_reply.message
        assert dup.code == "invalid_request" and "already queued or running" in dup.message
        # The refusal points at the request, so the client does not take the running job as ended.
        assert dup_reply.job_id is None and not client.jobs[job].finished

        client._send(Accepted(queue_position=0), "x")  # a server-only message type
        wrong = next_message(client, lambda e: e.type == "failed").message
        assert wrong.code == "bad_message" and "clients may not send 'accepted'" in wrong.message
        client.cancel(job)
        assert collect(client, job)[-1].type == "cancelled"

        client.cancel(job)  # too late: the job has ended, and it must not get a second final message
        late = next_message(client, lambda e: e.type == "failed")
        assert late.message.code == "unknown_job" and late.job_id is None


def _broken_pipeline(kind: str):
    def pipeline(request, ctx):
        if kind == "wrong type":
            return "not a mesh"
        if kind == "intermediate kind":
            return Mesh(kind="geometry", vertices=np.zeros((3, 3), np.float32), faces=np.zeros((0, 3), np.uint32))
        if kind == "faces out of range":
            return Mesh(kind="final", vertices=np.zeros((3, 3), np.float32), faces=np.array([[0, 1, 7]], np.uint32))
        ctx.report("stage-name-" * 10, 1, 1)  # over the 64-character wire limit
        raise AssertionError("unreachable: report() refuses the stage name")

    return pipeline


@pytest.mark.parametrize("kind, text", [
    ("wrong type", "returned str, not a final Mesh"),
    ("intermediate kind", "returned Mesh, not a final Mesh"),
    ("faces out of range", "face indices span [0, 7] but there are 3 vertices"),
    ("stage name too long", "110 characters (limit 64)"),
])
def test_a_pipeline_producing_invalid_output_fails_the_job_not_the_worker(kind, text):
    broken = _broken_pipeline(kind)
    healthy = stepping_pipeline(steps=1)
    with running_server(lambda r, c: (broken if r.seed == 1 else healthy)(r, c)) as server, \
            connected_client(server) as client:
        failed = collect(client, submit(client, seed=1))[-1].message
        after = collect(client, submit(client, seed=2))[-1]
    assert failed.TYPE == "failed" and failed.code == "pipeline_error"
    assert text in failed.message
    assert failed.stage is None or len(failed.stage) <= 64
    assert after.type == "mesh" and after.message.kind == "final"


def test_server_config_bounds_the_queue():
    from backend.serving.config import ServerConfig

    with pytest.raises(ValueError, match="max_queued must be between 0 and 1024"):
        ServerConfig(max_queued=5000)
    with pytest.raises(ValueError, match="heartbeat_interval_s"):
        ServerConfig(heartbeat_interval_s=0)
