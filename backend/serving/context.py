"""The stage context: the only way a pipeline talks to the outside world.

Stages call `report`, `preview`, `texture_preview`, `mesh` and `check_cancelled`; the context turns those into
protocol messages. Stages never see sockets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from protocol import Mesh, Message, Preview, Progress, Stage, TexturePreview


class JobCancelled(Exception):
    """Raised by `check_cancelled` to unwind a cancelled job."""


class PipelineError(Exception):
    """A failure the pipeline can explain to the artist: `hint` says what to try instead."""

    def __init__(self, message: str, hint: str = "", code: str = "pipeline_error") -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


class StageContext:
    def __init__(self, emit: Callable[[Message], None], cancel_event: threading.Event,
                 preview_interval_s: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self._emit = emit
        self._cancel_event = cancel_event
        self._preview_interval_s = preview_interval_s
        self._clock = clock
        self._last_preview = -float("inf")
        self._stage_started = clock()
        self.stage: Stage | None = None
        """The stage that last reported (None before the first report); failures and
        cancellations are attributed to it."""

    def check_cancelled(self) -> None:
        if self._cancel_event.is_set():
            raise JobCancelled(self.stage)

    def report(self, stage: Stage, step: int, total: int, message: str = "") -> None:
        """Progress within `stage`; the ETA extrapolates the stage's own rate so far."""
        now = self._clock()
        if stage != self.stage:
            self.stage, self._stage_started = stage, now
        eta = None
        if 0 < step <= total:
            eta = (now - self._stage_started) / step * (total - step)
        self._emit(Progress(stage=stage, step=step, total=total, eta_s=eta, message=message))

    def preview(self, step: int, positions: np.ndarray, colors: np.ndarray, opacities: np.ndarray,
                scales: np.ndarray, rotations: np.ndarray) -> bool:
        """Send splats for the live preview unless one went out less than `preview_interval_s` ago.

        Returns whether it was sent, so callers can skip preparing arrays that would be dropped
        (see `preview_due`).
        """
        if not self.preview_due():
            return False
        self._last_preview = self._clock()
        self._emit(Preview(step=step, positions=positions, colors=colors, opacities=opacities,
                           scales=scales, rotations=rotations))
        return True

    def preview_due(self) -> bool:
        return self._clock() - self._last_preview >= self._preview_interval_s

    def texture_preview(self, step: int, total: int, texture: np.ndarray, coverage: float,
                        uvs: np.ndarray | None = None) -> None:
        """The texture of a `texture` job so far (uint8 [H, W, 3], at most 1024 a side), once per
        painted view (not throttled: views are seconds apart); `uvs` [F, 3, 2] with the first one
        when the mesh was unwrapped."""
        self._emit(TexturePreview(step=step, total=total, texture=texture, coverage=coverage, uvs=uvs))

    def mesh(self, mesh: Mesh) -> None:
        """Deliver an intermediate mesh (kind `geometry`). The final one is the pipeline's return value."""
        if mesh.kind == "final":
            raise ValueError("return the final mesh from the pipeline instead of sending it")
        self._emit(mesh)
