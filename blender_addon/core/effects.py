"""What the job state machine (`core.jobs`) asks the bpy side to do. Plain data: deciding is
bpy-free and tested without Blender; `effects.py` next to this package carries them out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


# -- objects an effect can point at (found in the scene by tag or id, never by name: the artist
#    may rename or delete them meanwhile) ---------------------------------------------------------


@dataclass(frozen=True)
class PreviewOf:
    """The live splat preview object of a job."""

    job_id: str


@dataclass(frozen=True)
class JobMesh:
    """A mesh object a job built, tagged with its kind ('geometry' or 'final')."""

    job_id: str
    kind: str


@dataclass(frozen=True)
class ObjectWithUid:
    """An object by `session_uid` (the result a Regenerate replaces)."""

    uid: int


ObjectRef = PreviewOf | JobMesh | ObjectWithUid


# -- effects --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShowPreview:
    """Create or update the job's splat preview from a `preview` message, placed like the mesh."""

    job_id: str
    preview: Any  # protocol.Preview


@dataclass(frozen=True)
class BuildMesh:
    """Build `mesh` as a new object called `name`. Once it exists it takes the place of each of
    `takes_place_of` that still exists (their transform, then they are removed), the job's preview
    is removed, and it becomes the selected object. Report back with `Job.mesh_built` or
    `Job.mesh_failed`."""

    job_id: str
    mesh: Any  # protocol.Mesh
    name: str
    properties: dict[str, Any]
    takes_place_of: tuple[ObjectRef, ...] = ()
    final: bool = False


@dataclass(frozen=True)
class Remove:
    target: ObjectRef


@dataclass(frozen=True)
class SendCancel:
    """Ask the backend to stop the job (it failed or was given up on this side)."""

    job_id: str


@dataclass(frozen=True)
class Disconnect:
    """Drop the connection (the backend is gone or never answered); the next Generate reconnects."""


@dataclass(frozen=True)
class UndoStep:
    """Record an undo step, so Ctrl+Z removes what the job added."""

    message: str


@dataclass(frozen=True)
class ShowError:
    """Keep the problem on the panel until the next job starts."""

    message: str
    hint: str = ""


Effect = ShowPreview | BuildMesh | Remove | SendCancel | Disconnect | UndoStep | ShowError


@dataclass(frozen=True)
class LinkStatus:
    """What the session knows about the connection a job depends on, for `Job.check_liveness`."""

    same_client: bool
    """The job's connection is still the session's (a new one means the backend cancelled it)."""
    address: str = ""
    welcomed: bool = True
    """The backend has answered (welcome received) on this connection."""
    connecting_for_s: float = 0.0
    starting_backend: bool = False
    """A local backend this session started is running (possibly still loading models)."""
    uses_keys: bool = False
    backend_exit: int | None = None
    """Exit code of the local backend this session started, if it has exited."""
    backend_log: str = ""
    """Where its log is and its last lines (for the hint when it exited)."""
    lost: bool = False
    """The backend's heartbeats no longer list the job (it restarted, or dropped this client)."""
    silent_s: float | None = None
    """Seconds since anything was heard from the backend."""
    stalled_s: float | None = None
    """Seconds the running job has not reported, when the backend says it stalls."""
