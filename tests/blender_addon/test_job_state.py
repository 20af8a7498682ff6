"""The add-on's job state machine without Blender: backend messages and local events in, effects out."""

from __future__ import annotations

import numpy as np
import pytest

from blender_addon.core.effects import (
    BuildMesh,
    Disconnect,
    JobMesh,
    LinkStatus,
    ObjectWithUid,
    PreviewOf,
    Remove,
    SendCancel,
    ShowError,
    ShowPreview,
    UndoStep,
)
from blender_addon.core.jobs import UNCONFIRMED_CANCEL, Job, JobRequest, Phase, newest_previews_only
from protocol import Accepted, Cancelled, Failed, Mesh, MeshMetadata, Preview, Progress

LONG_PROMPT = "a weathered bronze statue of a lion resting on a marble plinth " * 10


def started(replaces: int | None = None, welcomed: bool = True) -> Job:
    job = Job(JobRequest(image=b"png", prompt="a red chair", quality="draft", seed=4, options={"faces": 900},
                         replaces=replaces, image_name="chair.png"))
    job.submitted("job-1", welcomed=welcomed)
    return job


def mesh(kind: str, **metadata) -> Mesh:
    return Mesh(kind=kind, vertices=np.eye(3, dtype=np.float32), faces=np.array([[0, 1, 2]], np.uint32),
                metadata=MeshMetadata(**metadata))


def preview(step: int) -> Preview:
    return Preview(step=step, positions=np.zeros((2, 3), np.float32), colors=np.zeros((2, 3), np.uint8),
                   opacities=np.zeros(2, np.uint8), scales=np.zeros((2, 3), np.float32),
                   rotations=np.zeros((2, 4), np.float32))


def test_a_job_runs_from_queue_to_a_final_mesh_replacing_the_untextured_one_and_the_regenerated_object():
    job = started(replaces=77, welcomed=False)
    assert job.phase == Phase.CONNECTING
    assert job.apply(Accepted(queue_position=2)) == [] and job.phase == Phase.QUEUED
    assert job.progress_text() == "Queued (2 ahead)"
    job.apply(Progress(stage="geometry", step=120, total=500, eta_s=95.2, message="4000 Gaussians"))
    assert job.phase == Phase.RUNNING and job.progress_text() == "Geometry 120/500 · ETA 1 min 35 s"
    tick = newest_previews_only([preview(1), preview(2), Progress(stage="geometry", step=121, total=500), preview(3)])
    assert [m.TYPE for m in tick] == ["progress", "preview"] and tick[1].step == 3
    assert job.apply(tick[1]) == [ShowPreview("job-1", tick[1])]

    [build] = job.apply(mesh("geometry", prompt=LONG_PROMPT, models="full"))
    assert isinstance(build, BuildMesh) and not build.final and build.takes_place_of == ()
    assert build.properties["lift3d_prompt"] == LONG_PROMPT  # the full prompt, not 200 characters
    assert build.properties["lift3d_options"] == '{"faces": 900}' and build.properties["lift3d_stage"] == "geometry"
    assert build.name == "Weathered bronze statue of a lion resting on a"
    job.mesh_built("geometry", build.name)
    assert job.geometry_object == build.name and not job.finished

    final_message = mesh("final", prompt=LONG_PROMPT, cache={"geometry": "hit"})
    [build] = job.apply(final_message)
    assert build.final and build.takes_place_of == (JobMesh("job-1", "geometry"), ObjectWithUid(77))
    job.mesh_built("final", "Statue", final_message.metadata)
    assert job.phase == Phase.DONE and job.final_object == "Statue" and job.geometry_object is None
    assert job.metadata.cache == {"geometry": "hit"} and job.progress_factor() == 1.0
    assert job.finish(now=job.created_at + 3, geometry_present=False) == [
        Remove(PreviewOf("job-1")), UndoStep("Lift3D: done Red chair")]
    assert job.elapsed_s == pytest.approx(3)
    assert job.apply(preview(9)) == []  # nothing after the end


def test_a_final_mesh_racing_a_cancel_builds_nothing_and_the_untextured_mesh_goes():
    job = started()
    job.apply(mesh("geometry"))
    job.mesh_built("geometry", "Red chair")
    assert job.request_cancel(now=10.0) == [SendCancel("job-1")] and job.phase == Phase.CANCELLING
    assert job.apply(preview(5)) == []  # no preview update while cancelling
    assert job.apply(mesh("final")) == [] and job.phase == Phase.CANCELLED
    assert job.finish(now=11.0, geometry_present=True) == [Remove(PreviewOf("job-1")),
                                                            Remove(JobMesh("job-1", "geometry"))]
    assert job.request_cancel(now=12.0) == []


def test_a_backend_failure_keeps_the_untextured_mesh_and_is_not_cancelled_back():
    job = started()
    job.apply(Failed(code="out_of_memory", message="Ran out of memory during texture", stage="texture"))
    assert job.phase == Phase.FAILED and job.hint == "Try the Draft preset, fewer faces or a smaller texture."
    effects = job.finish(now=1.0, geometry_present=True)
    assert job.hint.endswith("The untextured mesh was kept.")
    assert effects == [Remove(PreviewOf("job-1")), UndoStep("Lift3D: failed Red chair"),
                       ShowError("Ran out of memory during texture", job.hint)]


def test_a_failure_on_this_side_stops_the_backend_job_and_an_unknown_failure_code_still_fails():
    job = started()
    job.apply(mesh("geometry"))
    job.mesh_failed("geometry", "face indices span [0, 9] but there are 4 vertices")
    assert job.error.startswith("could not build the geometry mesh in Blender: face indices")
    effects = job.finish(now=1.0, geometry_present=False)
    assert SendCancel("job-1") in effects and not any(isinstance(e, UndoStep) for e in effects)

    newer = started()
    newer.apply(Failed(code="quota_exceeded", message="Your quota is used up", hint="Ask for more"))
    assert newer.phase == Phase.FAILED and newer.error == "Your quota is used up" and newer.hint == "Ask for more"


def test_the_backend_confirming_a_cancel_and_one_that_never_does():
    job = started()
    job.request_cancel(now=0.0)
    job.apply(Cancelled(stage="geometry"))
    assert job.phase == Phase.CANCELLED
    silent = started()
    silent.request_cancel(now=0.0)
    assert silent.check_liveness(now=4.0, link=LinkStatus(same_client=True)) == [] and not silent.finished
    silent.check_liveness(now=6.0, link=LinkStatus(same_client=True))
    assert silent.phase == Phase.CANCELLED and silent.note == UNCONFIRMED_CANCEL and job.note == ""


@pytest.mark.parametrize("link, now_phase, effects, error", [
    (LinkStatus(same_client=True, welcomed=False, connecting_for_s=9.0), Phase.QUEUED, [], ""),
    (LinkStatus(same_client=True, welcomed=False, connecting_for_s=11.0, address="tcp://x:1"), Phase.FAILED,
     [Disconnect()], "no Lift3D backend answered at tcp://x:1 within 10 s"),
    (LinkStatus(same_client=True, welcomed=False, connecting_for_s=200.0, starting_backend=True), Phase.QUEUED, [],
     ""),
    (LinkStatus(same_client=True, welcomed=False, connecting_for_s=301.0, starting_backend=True), Phase.FAILED,
     [Disconnect()], "within 300 s"),
    (LinkStatus(same_client=True, backend_exit=3, backend_log="Its log is /tmp/l"), Phase.FAILED, [],
     "the local backend exited (code 3)"),
    (LinkStatus(same_client=False), Phase.FAILED, [], "the connection this job was sent on was closed"),
    (LinkStatus(same_client=True, lost=True), Phase.FAILED, [], "no longer knows this job"),
    (LinkStatus(same_client=True, silent_s=16.0, address="tcp://x:1"), Phase.FAILED, [Disconnect()],
     "stopped responding (nothing heard for 16 s)"),
    (LinkStatus(same_client=True, silent_s=2.0, stalled_s=130.0), Phase.QUEUED, [], ""),
])
def test_liveness_decisions(link, now_phase, effects, error):
    job = started()
    assert job.check_liveness(now=100.0, link=link) == effects
    assert job.phase == now_phase and error in job.error and (job.error == "") == (error == "")
    if link.stalled_s:
        assert job.note == "no progress for 130 s"
    if link.backend_exit:
        assert job.hint == "Its log is /tmp/l"


def test_keys_change_the_hint_of_a_backend_that_never_answers():
    job = started()
    job.check_liveness(now=0.0, link=LinkStatus(same_client=True, welcomed=False, connecting_for_s=20, uses_keys=True))
    assert "authorized_clients" in job.hint


def test_tiny_results_say_so_in_their_name_and_unknown_kinds_and_stages_are_tolerated():
    job = started()
    [build] = job.apply(mesh("geometry", prompt="a red chair", tiny=True, models="tiny"))
    assert build.name == "Red chair (tiny models: noise)" and build.properties["lift3d_models"] == "tiny"
    job.apply(Progress(stage="dreaming", step=3, total=10))  # a stage a newer backend added
    assert job.progress_text() == "Dreaming 3/10" and job.progress_factor() == 0.0


def test_abandoning_cancels_on_the_backend_once():
    job = started()
    assert job.abandon("cancelled: another file was opened") == [SendCancel("job-1")]
    assert job.phase == Phase.CANCELLED and job.note == "cancelled: another file was opened"
    assert job.abandon("again") == []
