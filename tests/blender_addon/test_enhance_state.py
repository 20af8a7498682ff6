"""Enhance Render's side of the add-on without Blender: the job state machine (messages and local
events in, effects out), what is sent for an image, and the panel's enhance options."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from blender_addon.core.effects import BuildImage, LinkStatus, SendCancel, ShowError, UndoStep
from blender_addon.core.image_source import ImageSourceError, check_enhance_size, encode_png, png_size
from blender_addon.core.jobs import EnhanceRequest, Job, Phase, backend_offers, not_offered
from blender_addon.core.panel_options import panel_properties, request_options
from protocol import Accepted, Cancelled, EnhancedImage, Failed, Mesh, Progress, RequestKind
from protocol.options import validate_options

ENHANCE = RequestKind.ENHANCE


def started(size=(40, 24), reference: bytes | None = None, welcomed: bool = True) -> Job:
    job = Job(EnhanceRequest(image=b"png", source_name="Render Result", size=size, reference=reference,
                             reference_name="photo.jpg" if reference else "", options={"fixer": "difix"}))
    job.submitted("job-1", welcomed=welcomed)
    return job


def result(width: int = 40, height: int = 24, channels: int = 4, tiny: bool = False) -> EnhancedImage:
    return EnhancedImage(image=np.zeros((height, width, channels), np.uint8), fixer="difix", seed=0, models="full",
                         tiny=tiny)


def test_an_enhance_runs_to_one_new_image_of_the_sources_size():
    job = started()
    assert job.apply(Accepted(queue_position=0)) == [] and job.phase == Phase.QUEUED
    job.apply(Progress(stage="enhance", step=2, total=4, eta_s=3.0, message="fixing 40 × 24 with difix"))
    assert job.phase == Phase.RUNNING and job.progress_text() == "Enhance 2/4 · ETA 3 s"
    assert job.progress_factor() == pytest.approx(0.5)
    message = result()
    [build] = job.apply(message)
    assert isinstance(build, BuildImage) and build.job_id == "job-1" and build.pixels is message.image
    assert build.name == "Render Result (enhanced)"
    assert build.properties["lift3d_enhanced_from"] == "Render Result" and build.properties["lift3d_kind"] == "enhance"
    assert build.properties["lift3d_fixer"] == "difix" and build.properties["lift3d_options"] == '{"fixer": "difix"}'
    assert not job.finished
    job.image_built("Render Result (enhanced)")
    assert job.phase == Phase.DONE and job.result_image == "Render Result (enhanced)" and job.progress_factor() == 1.0
    assert job.metadata.fixer == "difix" and job.metadata.tiny is False
    # No preview to remove, one undo step for the new image.
    assert job.finish(now=job.created_at + 2, geometry_present=False) == [UndoStep("Lift3D: done Render Result (enhanced)")]
    assert job.apply(result()) == []  # nothing after the end


def test_tiny_results_say_so_in_their_name():
    [build] = started().apply(result(tiny=True))
    assert build.name == "Render Result (enhanced) (tiny models: noise)"


def test_a_result_of_another_size_is_refused_and_nothing_is_built():
    job = started(size=(40, 24))
    assert job.apply(result(width=24, height=40)) == []
    assert job.phase == Phase.FAILED and "24 × 40 image for the 40 × 24 'Render Result'" in job.error
    effects = job.finish(now=job.created_at + 1, geometry_present=False)
    assert effects == [ShowError(job.error, job.hint)]  # no cancel (the backend has finished), no undo step


def test_a_result_racing_a_cancel_builds_nothing():
    job = started()
    assert job.request_cancel(now=5.0) == [SendCancel("job-1")] and job.phase == Phase.CANCELLING
    assert job.apply(result()) == [] and job.phase == Phase.CANCELLED
    assert job.finish(now=6.0, geometry_present=False) == []


def test_a_cancel_confirmed_by_the_backend_leaves_nothing():
    job = started()
    job.request_cancel(now=5.0)
    assert job.apply(Cancelled(stage="enhance")) == [] and job.phase == Phase.CANCELLED
    assert job.finish(now=6.0, geometry_present=False) == []


def test_backend_failures_and_a_failed_build_show_an_error_and_leave_nothing():
    job = started()
    job.apply(Failed(code="too_large", message="the image is 4096 × 4096 pixels; enhance accepts up to 2048",
                     hint="Render at a lower resolution"))
    assert job.phase == Phase.FAILED and not job.failed_here
    assert job.finish(now=1.0, geometry_present=False) == [ShowError(job.error, "Render at a lower resolution")]

    job = started()
    job.apply(Failed(code="out_of_memory", message="CUDA out of memory"))
    assert job.hint == "Enhance a smaller image (a lower render resolution)."

    job = started()
    [build] = job.apply(result())
    job.image_failed("not enough memory")
    assert job.phase == Phase.FAILED and "could not make the enhanced image" in job.error
    assert job.finish(now=1.0, geometry_present=False) == [ShowError(job.error, job.hint)]


def test_messages_of_the_other_kind_are_ignored():
    job = started()
    assert job.apply(Mesh(kind="final", vertices=np.eye(3, dtype=np.float32),
                          faces=np.array([[0, 1, 2]], np.uint32))) == []
    assert job.phase == Phase.QUEUED


def test_a_request_held_for_the_welcome_is_cancelled_at_once_and_times_out_like_any_job():
    job = Job(EnhanceRequest(image=b"png", source_name="Render Result", size=(40, 24)))
    assert job.awaiting_send and job.phase == Phase.CONNECTING
    assert job.request_cancel(now=1.0) == [] and job.phase == Phase.CANCELLED and not job.awaiting_send

    job = Job(EnhanceRequest(image=b"png", source_name="Render Result", size=(40, 24)))
    link = LinkStatus(same_client=True, address="tcp://127.0.0.1:5571", welcomed=False, connecting_for_s=11.0)
    job.check_liveness(now=12.0, link=link)
    assert job.phase == Phase.FAILED and "no Lift3D backend answered" in job.error


def test_which_backends_offer_enhance():
    assert backend_offers(ENHANCE, ["generate", "enhance"]) and not backend_offers(ENHANCE, ["generate"])
    assert not backend_offers(ENHANCE, [])  # a 2.0 welcome without the list: generate only
    assert backend_offers(RequestKind.GENERATE, [])
    message, hint = not_offered(ENHANCE, "0.3.0")
    assert message == "this backend (version 0.3.0) does not offer enhance: update it" and "restart" in hint


def test_the_png_sent_says_its_size_and_the_side_limit_is_checked_before_sending():
    png = encode_png(np.zeros((24, 40, 4), np.uint8))
    assert png_size(png) == (40, 24)
    with pytest.raises(ImageSourceError, match="not a PNG"):
        png_size(b"\xff\xd8\xff\xe0" + bytes(30))
    check_enhance_size(2048, 1024)
    with pytest.raises(ImageSourceError, match="2049 × 100 pixels; Enhance accepts up to 2048 a side"):
        check_enhance_size(2049, 100)
    # A hand-made IHDR (what Blender's save_render writes) reads the same way.
    ihdr = struct.pack(">IIBBBBB", 1920, 1080, 8, 6, 0, 0, 0)
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    assert png_size(header) == (1920, 1080)


def test_the_enhance_panel_offers_every_fixer_but_off_and_sends_only_what_was_set():
    [prop] = panel_properties(ENHANCE)
    assert prop.attr == "fixer" and prop.toggle == "use_fixer" and prop.bpy_type == "ENUM"
    assert [item[0] for item in prop.keywords["items"]] == ["difix", "difix-ref", "sd-turbo"]
    assert prop.keywords["default"] == "difix-ref"
    assert "Unticked: Difix-ref when a reference image is sent, Difix without one." in prop.keywords["description"]
    settings = {"fixer": "sd-turbo", "use_fixer": False}
    assert request_options(ENHANCE, settings.__getitem__) == {}
    settings["use_fixer"] = True
    options = request_options(ENHANCE, settings.__getitem__)
    assert options == {"fixer": "sd-turbo"} and validate_options(ENHANCE, options) == options
    # The generate panel still offers "off".
    [generate_fixer] = [p for p in panel_properties(RequestKind.GENERATE) if p.attr == "fixer"]
    assert generate_fixer.keywords["items"][0][0] == "off"
    assert "Unticked: the quality preset decides." in generate_fixer.keywords["description"]
