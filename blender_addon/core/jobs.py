"""What the panel knows about a generation job, and how backend messages change it (bpy-free).

The session feeds every message of its job through `Job.apply`; the panel draws from the
result. Objects in the scene are the session's business, not this module's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Share of the progress bar each backend stage covers (the order the backend runs them in);
# geometry optimisation dominates the wall time on every preset.
STAGE_SPANS: dict[str, tuple[float, float]] = {
    "preprocess": (0.00, 0.05),
    "pseudo views": (0.05, 0.15),
    "geometry": (0.15, 0.75),
    "mesh": (0.75, 0.80),
    "texture": (0.80, 1.00),
}


class Phase:
    CONNECTING = "connecting"  # waiting for the backend (or for a local one to start)
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    FINISHED = frozenset({DONE, FAILED, CANCELLED})


@dataclass
class JobRequest:
    """Everything needed to (re)generate: sent to the backend and stored on the result object."""

    image: bytes
    prompt: str
    quality: str
    seed: int
    options: dict[str, Any]
    image_name: str = ""
    image_path: str = ""
    location: tuple[float, float, float] = (0.0, 0.0, 0.0)
    target_size: float | None = 1.0
    replaces: int | None = None
    """`session_uid` of the object a Regenerate replaces once the final mesh has arrived."""
    scene_name: str = ""
    """The scene Generate was pressed in: results go there even if the artist switches scenes."""


@dataclass
class Job:
    request: JobRequest
    id: str | None = None
    phase: str = Phase.CONNECTING
    stage: str = ""
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    note: str = ""
    queue_position: int = 0
    previews: int = 0
    geometry_object: str | None = None
    final_object: str | None = None
    error: str = ""
    hint: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.monotonic)
    cancel_requested_at: float | None = None
    elapsed_s: float = 0.0

    @property
    def finished(self) -> bool:
        return self.phase in Phase.FINISHED

    def fail(self, error: str, hint: str = "") -> None:
        self.phase, self.error, self.hint = Phase.FAILED, error, hint

    def progress_factor(self) -> float:
        """0..1 over the whole job (stages weighted by STAGE_SPANS)."""
        if self.phase == Phase.DONE:
            return 1.0
        lo, hi = STAGE_SPANS.get(self.stage, (0.0, 0.0))
        within = self.step / self.total if self.total else 0.0
        return lo + (hi - lo) * min(max(within, 0.0), 1.0)

    def progress_text(self) -> str:
        if self.phase == Phase.CONNECTING:
            return "Connecting to the backend..."
        if self.phase == Phase.QUEUED:
            return f"Queued ({self.queue_position} ahead)" if self.queue_position else "Starting..."
        if self.phase == Phase.CANCELLING:
            return "Cancelling..."
        if self.phase != Phase.RUNNING:
            return self.phase.capitalize()
        text = self.stage.capitalize() or "Working"
        if self.total:
            text += f" {self.step}/{self.total}"
        if self.eta_s is not None:
            text += f" · ETA {format_seconds(self.eta_s)}"
        return text


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def object_name(prompt: str, fallback: str = "Lift3D object", limit: int = 48) -> str:
    """A readable object name from the prompt: 'a red wooden chair.' -> 'Red wooden chair'."""
    words = prompt.strip().strip(".!").split()
    if words and words[0].lower() in ("a", "an", "the"):
        words = words[1:]
    name = " ".join(words)
    if not name:
        return fallback
    if len(name) > limit:
        name = name[:limit].rsplit(" ", 1)[0] or name[:limit]
    return name[0].upper() + name[1:]
