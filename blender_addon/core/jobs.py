"""A generation job as the add-on sees it: its state, and how backend messages and local events
change it (bpy-free).

The session feeds the job's messages through `Job.apply` and carries out the effects it returns
(`core.effects`: show a preview, build a mesh in place of others, remove objects, cancel on the
backend, record an undo step); the outcome of a build comes back through `mesh_built` /
`mesh_failed`. `check_liveness` decides from a `LinkStatus` snapshot whether the backend is still
there; `finish` says how to leave the scene. The panel draws from the job's fields.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .effects import (
    BuildMesh,
    Disconnect,
    Effect,
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
from .wire import RequestKind, kinds

CONNECT_TIMEOUT_S = 10.0   # an already running backend answers at once
STARTUP_TIMEOUT_S = 300.0  # a backend we started may be loading several GB of models
LOST_AFTER_S = 15.0        # silence (no heartbeat) after which a running job is given up
CANCEL_GRACE_S = 5.0       # a cancel the backend never confirms is finished locally

UNCONFIRMED_CANCEL = "cancelled here; the backend did not confirm in time"

START_HINT = ("Start a backend with 'python -m backend serve' (or './lift3d backend serve' in a Lift3D "
              "checkout), check the address in the add-on preferences, or turn on 'Start a local backend "
              "automatically' and set the backend Python.")


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
    kind: RequestKind = RequestKind.GENERATE


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
    failed_here: bool = False
    """The failure was decided on this side (a build, a timeout): the backend must be told to stop."""
    metadata: Any = None
    """The final mesh's `MeshMetadata`."""
    ignored_options: list[str] = field(default_factory=list)
    """Options left out because the backend (older than the add-on) does not accept them."""
    created_at: float = field(default_factory=time.monotonic)
    cancel_requested_at: float | None = None
    elapsed_s: float = 0.0

    @property
    def finished(self) -> bool:
        return self.phase in Phase.FINISHED

    def fail(self, error: str, hint: str = "", *, here: bool = True) -> None:
        self.phase, self.error, self.hint, self.failed_here = Phase.FAILED, error, hint, here

    # -- messages from the backend -------------------------------------------------------------

    def apply(self, message: Any) -> list[Effect]:
        """One message of this job (a protocol message) → what to do in the scene."""
        if self.finished:
            return []
        kind = message.TYPE
        if kind == "accepted":
            self.queue_position = message.queue_position
            if self.phase == Phase.CONNECTING:
                self.phase = Phase.QUEUED
        elif kind == "progress":
            if self.phase in (Phase.CONNECTING, Phase.QUEUED):
                self.phase = Phase.RUNNING
            self.stage, self.step, self.total = message.stage, message.step, message.total
            self.eta_s, self.note = message.eta_s, message.message
        elif kind == "preview" and self.phase != Phase.CANCELLING:
            return [ShowPreview(self.id, message)]
        elif kind == "mesh" and self.phase == Phase.CANCELLING:
            if message.kind == "final":  # finished before the cancel arrived: still nothing is kept
                self.phase = Phase.CANCELLED
        elif kind == "mesh" and message.kind in ("geometry", "final"):
            return [self._build(message)]
        elif kind == "failed":
            self.fail(message.message, message.hint, here=False)
            if message.code == "out_of_memory" and not message.hint:
                self.hint = "Try the Draft preset, fewer faces or a smaller texture."
        elif kind == "cancelled":
            self.phase = Phase.CANCELLED
        return []

    def _build(self, mesh: Any) -> BuildMesh:
        final = mesh.kind == "final"
        metadata = mesh.metadata
        name = object_name(metadata.prompt or self.request.prompt)
        if metadata.tiny:
            name += " (tiny models: noise)"  # test-preset output says what it is wherever it shows
        # The final mesh takes the place of the untextured one and of the object a Regenerate replaces.
        takes_place_of: tuple = ()
        if final:
            takes_place_of = (JobMesh(self.id, "geometry"),)
            if self.request.replaces is not None:
                takes_place_of += (ObjectWithUid(self.request.replaces),)
        return BuildMesh(self.id, mesh, name, result_properties(self, mesh), takes_place_of, final=final)

    def mesh_built(self, kind: str, object_name: str, metadata: Any = None) -> None:
        if kind == "final":
            self.final_object, self.geometry_object, self.phase = object_name, None, Phase.DONE
            self.metadata = metadata
        else:
            self.geometry_object = object_name

    def mesh_failed(self, kind: str, error: str) -> None:
        self.fail(f"could not build the {kind} mesh in Blender: {error}",
                  "Try fewer faces or a smaller texture; the backend's own outputs are unaffected.")

    # -- local events --------------------------------------------------------------------------

    def submitted(self, job_id: str, welcomed: bool) -> None:
        self.id = job_id
        self.phase = Phase.QUEUED if welcomed else Phase.CONNECTING

    def request_cancel(self, now: float) -> list[Effect]:
        if self.finished:
            return []
        self.phase, self.cancel_requested_at = Phase.CANCELLING, now
        return [SendCancel(self.id)] if self.id else []

    def abandon(self, reason: str) -> list[Effect]:
        """Given up at once (a file is being opened, the add-on disabled): nothing more is awaited."""
        effects: list[Effect] = [SendCancel(self.id)] if self.id and not self.finished else []
        self.phase, self.note = Phase.CANCELLED, reason
        return effects

    def check_liveness(self, now: float, link: LinkStatus) -> list[Effect]:
        """Give up on a job whose backend is gone, never answered, or forgot it."""
        if self.finished:
            return []
        if self.phase == Phase.CANCELLING and self.cancel_requested_at is not None \
                and now - self.cancel_requested_at > CANCEL_GRACE_S:
            # The backend did not confirm (unreachable); nothing more will come.
            self.phase, self.note = Phase.CANCELLED, UNCONFIRMED_CANCEL
            return []
        if link.backend_exit is not None:
            self.fail(f"the local backend exited (code {link.backend_exit})", link.backend_log)
            return []
        if not link.same_client:
            self.fail("the connection this job was sent on was closed, so the backend cancelled it",
                      "Press Generate again.")
            return []
        if not link.welcomed:
            limit = STARTUP_TIMEOUT_S if link.starting_backend else CONNECT_TIMEOUT_S
            if link.connecting_for_s > limit:
                hint = START_HINT
                if link.uses_keys:
                    hint = ("Check that the backend runs with --keys and that this client's key is in its "
                            "authorized_clients folder; a backend refuses unknown keys without a reply.")
                self.fail(f"no Lift3D backend answered at {link.address} within {limit:.0f} s", hint)
                return [Disconnect()]
            return []
        if link.lost:
            self.fail("the backend no longer knows this job (it was restarted, or it dropped this client "
                      "because Blender did not read its messages for a long time)", "Press Generate again.")
        elif link.silent_s is not None and link.silent_s > LOST_AFTER_S:
            self.fail(f"the backend at {link.address} stopped responding (nothing heard for {link.silent_s:.0f} s)",
                      "It may have crashed or run out of memory: check its console or log, start it again "
                      "and press Generate.")
            return [Disconnect()]
        elif link.stalled_s is not None:
            self.note = f"no progress for {link.stalled_s:.0f} s"
        return []

    def finish(self, now: float, geometry_present: bool) -> list[Effect]:
        """How to leave the scene once the job has ended: no preview; no untextured mesh of a
        cancelled job (a failed one keeps it); one undo step for what stays."""
        effects: list[Effect] = [Remove(PreviewOf(self.id))] if self.id else []
        if self.phase == Phase.CANCELLED and geometry_present:
            effects.append(Remove(JobMesh(self.id, "geometry")))
        if self.phase == Phase.FAILED:
            if geometry_present:
                self.hint = (self.hint + " " if self.hint else "") + "The untextured mesh was kept."
            if self.failed_here and self.id:
                effects.append(SendCancel(self.id))  # stop the backend's work too
        if self.phase == Phase.DONE or (self.phase == Phase.FAILED and geometry_present):
            effects.append(UndoStep(f"Lift3D: {self.phase} {object_name(self.request.prompt)}"))
        if self.phase == Phase.FAILED:
            effects.append(ShowError(self.error, self.hint))
        self.elapsed_s = now - self.created_at
        return effects

    # -- what the panel shows ------------------------------------------------------------------

    def progress_factor(self) -> float:
        """0..1 over the whole job (each stage's share from protocol.kinds)."""
        if self.phase == Phase.DONE:
            return 1.0
        stage = kinds.stage_of(self.stage)
        lo, hi = kinds.progress_spans(self.request.kind).get(stage, (0.0, 0.0))
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
        stage = kinds.stage_of(self.stage)
        text = stage.label if stage is not None else (self.stage.capitalize() or "Working")
        if self.total:
            text += f" {self.step}/{self.total}"
        if self.eta_s is not None:
            text += f" · ETA {format_seconds(self.eta_s)}"
        return text


def newest_previews_only(messages: list[Any]) -> list[Any]:
    """A tick's messages with every preview but the last dropped: older ones would be overwritten
    at once, and building each costs a preview update."""
    last = max((i for i, m in enumerate(messages) if m.TYPE == "preview"), default=-1)
    return [m for i, m in enumerate(messages) if m.TYPE != "preview" or i == last]


def result_properties(job: Job, mesh: Any) -> dict[str, object]:
    """Custom properties of a result object: what Regenerate needs, and what made it."""
    request, metadata = job.request, mesh.metadata
    return {
        "lift3d_prompt": metadata.prompt or request.prompt, "lift3d_seed": request.seed,
        "lift3d_preset": request.quality, "lift3d_job": job.id or "", "lift3d_stage": mesh.kind,
        "lift3d_image": request.image_name, "lift3d_image_path": request.image_path,
        "lift3d_options": json.dumps(request.options, sort_keys=True), "lift3d_models": metadata.models,
        "lift3d_kind": request.kind.value,
    }


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
