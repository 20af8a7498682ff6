"""Start a backend as a child process on this machine (used by `run`, tests and benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from protocol.client import Client, CurveKeys


def backend_python() -> str:
    """The Python that runs backends: $LIFT3D_BACKEND_PYTHON when set (the blender tier's light
    per-Blender-version venvs have no torch; `./lift3d test --blender` points this at .venv's),
    else this one."""
    return os.environ.get("LIFT3D_BACKEND_PYTHON") or sys.executable


def free_tcp_endpoint(host: str = "127.0.0.1") -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return f"tcp://{host}:{s.getsockname()[1]}"


class LocalBackend:
    """`python -m backend serve` in a child process; ready once it has answered a handshake.

    The child's output goes to a log file whose tail is included in any startup error.
    """

    def __init__(self, bind: str | None = None, extra_args: tuple[str, ...] = (), keys_dir: Path | None = None,
                 startup_timeout_s: float = 60.0, log_path: Path | None = None, models: str = "auto") -> None:
        self.endpoint = bind or free_tcp_endpoint()
        self.keys_dir = keys_dir
        extra_args = ("--models", models, *extra_args)
        self.extra_args = (*extra_args, "--keys", str(keys_dir)) if keys_dir else extra_args
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="lift3d-backend-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [backend_python(), "-m", "backend", "serve", "--bind", self.endpoint, *self.extra_args]
        root = str(Path(__file__).resolve().parents[2])  # the checkout: protocol/ and backend/ side by side
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        keys = CurveKeys.from_dir(self.keys_dir) if self.keys_dir else None
        with Client(self.endpoint, keys=keys, client_name="lift3d launcher") as client:
            client.connect()
            while client.welcome is None:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the backend exited with code {self.process.returncode} during "
                                       f"startup:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"the backend did not answer within {self.startup_timeout_s:.0f} s:\n"
                                       f"{self.log_tail()}")
                client.poll(budget_ms=200, wait=True)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM (clean shutdown), then SIGKILL if it does not stop. Returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> LocalBackend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
