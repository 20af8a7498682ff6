"""Start a Lift3D backend on this machine from Blender, without blocking (bpy-free).

The add-on starts `PYTHON -m backend serve` only when the configured address is local and
nothing listens there yet, and stops only the process it started. Startup is never awaited here:
the session's timer watches the child (exited? answered?) so Blender stays responsive while
the models load.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from .wire import is_local_endpoint


def tcp_host_port(address: str) -> tuple[str, int] | None:
    """('127.0.0.1', 5571) from 'tcp://127.0.0.1:5571'; None for other transports or no port."""
    parts = urlsplit(address)
    if parts.scheme != "tcp" or parts.hostname is None:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname, port) if port else None


def is_local(address: str) -> bool:
    """On this machine (loopback TCP, ipc, inproc); a malformed address is not (connecting to it
    reports the problem)."""
    try:
        return is_local_endpoint(address)
    except ValueError:
        return False


def is_listening(address: str, timeout_s: float = 0.2) -> bool:
    """True when something accepts TCP connections at the address (a cheap 'is a backend up?')."""
    hp = tcp_host_port(address)
    if hp is None:
        return False
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            return True
    except OSError:
        return False


class BackendProcess:
    """`python -m backend serve --bind ADDRESS --models PRESET` as a child process."""

    def __init__(self, python: str, address: str, models: str = "auto", extra_args: tuple[str, ...] = (),
                 log_path: Path | None = None) -> None:
        self.python = python
        self.address = address
        self.models = models
        self.extra_args = extra_args
        self.log_path = log_path or Path(tempfile.gettempdir()) / "lift3d-backend.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [self.python, "-m", "backend", "serve", "--bind", self.address, "--models", self.models,
                *self.extra_args]

    def start(self) -> None:
        """Spawn the child; raises FileNotFoundError/PermissionError with a readable message."""
        if not self.python or not Path(self.python).is_file():
            raise FileNotFoundError(f"the backend Python {self.python!r} does not exist")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Blender sets PYTHONHOME/PYTHONPATH-like state for its own interpreter; the backend has its own.
        for name in ("PYTHONHOME", "PYTHONPATH"):
            env.pop(name, None)
        flags = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32" else {}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, **flags)

    def exit_code(self) -> int | None:
        """None while running (or never started); the exit code once it has ended."""
        return None if self.process is None else self.process.poll()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no backend log)"

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask it to shut down cleanly (SIGTERM), then kill it if it does not."""
        if not self.running:
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
