"""The add-on's bpy-free half: job state, the local-backend launcher, PNG encoding."""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pytest
from PIL import Image

from backend.serving.local import free_tcp_endpoint
from blender_addon.core.image_source import ImageSourceError, check_size, encode_png, linear_to_srgb
from blender_addon.core.jobs import Job, JobRequest, Phase, format_seconds, object_name
from blender_addon.core.launcher import BackendProcess, is_listening, is_local, tcp_host_port


def job(**kw) -> Job:
    return Job(JobRequest(image=b"", prompt="p", quality="draft", seed=0, options={}), **kw)


def test_progress_is_monotonic_over_the_stages_and_labelled():
    stages = [("preprocess", 1, 2), ("pseudo views", 3, 6), ("geometry", 1, 500), ("geometry", 499, 500),
              ("mesh", 2, 4), ("texture", 10, 50), ("texture", 50, 50)]
    factors = [job(phase=Phase.RUNNING, stage=s, step=a, total=b).progress_factor() for s, a, b in stages]
    assert factors == sorted(factors) and 0 < factors[0] and factors[-1] == 1.0
    running = job(phase=Phase.RUNNING, stage="geometry", step=120, total=500, eta_s=95.2)
    assert running.progress_text() == "Geometry 120/500 · ETA 1 min 35 s"
    assert job(phase=Phase.QUEUED, queue_position=2).progress_text() == "Queued (2 ahead)"
    assert job(phase=Phase.DONE).progress_factor() == 1.0
    assert format_seconds(4.4) == "4 s" and format_seconds(61) == "1 min 01 s"


def test_object_names_come_from_the_prompt():
    assert object_name("a red wooden chair.") == "Red wooden chair"
    assert object_name("   ") == "Lift3D object"
    long = object_name("an " + "extraordinarily ornate " * 10 + "lamp")
    assert len(long) <= 48 and not long.endswith(" ")


def test_png_encoding_round_trips_through_pillow_and_is_deterministic():
    rgba = np.random.default_rng(0).integers(0, 256, (7, 5, 4), dtype=np.uint8)
    data = encode_png(rgba)
    assert data == encode_png(rgba.copy())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), rgba)
    with pytest.raises(ValueError):
        encode_png(rgba[..., :3])


def test_size_limits_and_colour_transfer():
    check_size(8192, 4000)
    for size in [(0, 10), (8193, 10), (8000, 8000)]:
        with pytest.raises(ImageSourceError):
            check_size(*size)
    assert linear_to_srgb(np.array([0.0, 0.5, 1.0])) == pytest.approx([0.0, 0.7354, 1.0], abs=1e-4)


def test_addresses():
    assert tcp_host_port("tcp://127.0.0.1:5571") == ("127.0.0.1", 5571)
    assert tcp_host_port("ipc:///tmp/x") is None and tcp_host_port("tcp://host") is None
    assert is_local("tcp://localhost:1") and not is_local("tcp://gpu-box:5571")
    # The backend's bind policy and the add-on share one rule (protocol.endpoints).
    assert is_local("tcp://127.8.9.1:1") and is_local("ipc:///tmp/lift3d") and not is_local("nonsense")
    assert not is_listening(free_tcp_endpoint())


def test_launcher_starts_watches_and_stops_a_process(tmp_path):
    # A stand-in child (not the backend) so the launcher's process handling is tested in isolation.
    script = tmp_path / "fake_python.sh"
    script.write_text(f"#!/bin/sh\necho started \"$@\"\nexec {sys.executable} -c 'import time; time.sleep(60)'\n")
    script.chmod(0o755)
    process = BackendProcess(str(script), "tcp://127.0.0.1:1", models="tiny", log_path=tmp_path / "log.txt")
    process.start()
    assert process.running and process.exit_code() is None
    deadline = time.monotonic() + 5
    while "started" not in process.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "started -m backend serve --bind tcp://127.0.0.1:1 --models tiny" in process.log_tail()
    process.stop()
    assert not process.running and process.exit_code() is not None

    with pytest.raises(FileNotFoundError, match="does not exist"):
        BackendProcess(str(tmp_path / "nope"), "tcp://127.0.0.1:1").start()
