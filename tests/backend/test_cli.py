"""The command line as a user runs it: subprocesses, exit codes, messages, signals."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.serving.local import LocalBackend, free_tcp_endpoint

ROOT = Path(__file__).resolve().parents[2]


def backend_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_ping_without_a_backend_fails_clearly():
    endpoint = free_tcp_endpoint()
    result = backend_cli("ping", "--connect", endpoint, "--timeout", "0.5")
    assert result.returncode == 1
    assert f"no Lift3D backend answered at {endpoint}" in result.stderr
    assert "python -m backend serve" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_ping_and_shuts_down_cleanly_on_signals(sig):
    backend = LocalBackend(models="tiny", extra_args=("--no-preload",))
    backend.start()
    try:
        result = backend_cli("ping", "--connect", backend.endpoint)
        assert result.returncode == 0, result.stderr
        assert "protocol 2.5" in result.stdout and "draft, standard, high" in result.stdout
        assert "options           segmentation, elevation, faces" in result.stdout
        t0 = time.monotonic()
        backend.process.send_signal(sig)
        assert backend.process.wait(10) == 0
        assert time.monotonic() - t0 < 5
        assert "shutting down" in backend.log_path.read_text()
    finally:
        backend.stop()


def test_serve_refuses_a_public_bind_without_keys():
    result = backend_cli("serve", "--models", "tiny", "--bind", "tcp://0.0.0.0:5999")
    assert result.returncode == 2
    assert "refusing to bind" in result.stderr and "--keys" in result.stderr


def test_serve_reports_an_address_in_use():
    with LocalBackend(models="tiny", extra_args=("--no-preload",)) as first:
        result = backend_cli("serve", "--models", "tiny", "--bind", first.endpoint)
    assert result.returncode == 2
    assert "cannot bind" in result.stderr and "already running" in result.stderr


def test_serve_refuses_ray_options_without_the_ray_engine():
    result = backend_cli("serve", "--models", "tiny", "--workers", "2", "--bind", free_tcp_endpoint())
    assert result.returncode == 2
    assert "--ray-address, --workers and --worker-resource need --engine ray" in result.stderr
    result = backend_cli("serve", "--models", "tiny", "--engine", "ray", "--device", "cuda:1", "--bind",
                         free_tcp_endpoint())
    assert result.returncode == 2 and "each Ray worker sees only the GPU Ray gave it" in result.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has GPUs for Ray to find")
def test_serve_with_ray_on_a_machine_without_gpus_says_what_to_do():
    pytest.importorskip("ray")
    result = backend_cli("serve", "--models", "tiny", "--no-preload", "--engine", "ray", "--bind",
                         free_tcp_endpoint(), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "the Ray cluster has 0 GPU" in result.stderr and "--worker-resource CPU" in result.stderr


def test_keys_generate_then_encrypted_ping(tmp_path):
    keys = tmp_path / "keys"
    result = backend_cli("keys", "generate", str(keys))
    assert result.returncode == 0, result.stderr
    assert (keys / "clients" / "client.key_secret").is_file()
    assert (keys / "authorized_clients" / "client.key").is_file()
    with LocalBackend(keys_dir=keys, models="tiny", extra_args=("--no-preload",)) as backend:
        encrypted = backend_cli("ping", "--connect", backend.endpoint, "--keys", str(keys))
        plain = backend_cli("ping", "--connect", backend.endpoint, "--timeout", "1")
    assert encrypted.returncode == 0, encrypted.stderr
    assert "protocol 2.5" in encrypted.stdout
    assert plain.returncode == 1 and "pass the same key folder" in plain.stderr


def test_run_command_generates_the_sample_through_a_local_backend(tmp_path):
    """The README's main command on a machine without weights: tiny preset, loudly labelled."""
    out = tmp_path / "sample"
    result = backend_cli("run", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "TINY preset" in result.stdout and "only checks the wiring" in result.stdout
    for stage in ("preprocess", "pseudo views", "geometry", "mesh", "texture"):
        assert f"] {stage}" in result.stdout
    assert "untextured mesh" in result.stdout and "Done in" in result.stdout
    for name in ("model.glb", "turntable.png", "report.json", "render.png", "lift3d.blend"):
        assert (out / name).is_file() and str((out / name).resolve()) in result.stdout
    import json

    import numpy as np
    from PIL import Image

    # The Cycles render of the mesh imported by the add-on: the object is in the picture.
    render = np.asarray(Image.open(out / "render.png").convert("RGB"), np.float32)
    assert render.shape == (512 + 24, 512, 3) and render[24:].std(axis=(0, 1)).mean() > 5
    assert tuple(render[2, 2]) == (200, 30, 30)  # the red "TINY" strip: tiny output is labelled

    report = json.loads((out / "report.json").read_text())
    assert report["tiny"] is True and report["preset"] == "draft" and report["faces"] > 100
    assert report["metadata"]["models"] == "tiny"
