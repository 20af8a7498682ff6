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
class BuildImage:
    """Make `pixels` (an enhance job's result, [H, W, 3|4] uint8, top row first) a new image
    datablock called `name` (Blender may add .001), packed into the .blend, with `properties` as
    custom properties. Report back with `Job.image_built` or `Job.image_failed`; on failure nothing
    may be left behind."""

    job_id: str
    pixels: Any  # numpy array, [H, W, 3|4] uint8
    name: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class BuildScene:
    """Build a `scene_result`: the scene's vertex-coloured mesh where the backend put it (world
    coordinates, no rescaling) and a camera called `camera_name` flying the path (one keyframe
    per pose at `frames`, the path's field of view), both tagged with the job and linked to
    the job's scene; the preview is removed. Report back with `Job.scene_built` or
    `Job.scene_failed`; on failure nothing may be left behind."""

    job_id: str
    result: Any  # protocol.SceneResult
    name: str
    camera_name: str
    properties: dict[str, Any]
    frames: tuple[int, ...] = ()
    """The frame each path camera is keyframed at, in order."""


@dataclass(frozen=True)
class PaintTexture:
    """Show `pixels` (a texture job's texture, [H, W, 3] uint8, top row first) on the job's object:
    the first one makes the image (packed once final) and wires it into the material (a new one, or
    the active one's Principled BSDF Base Color, as the request says); later ones replace its pixels.
    `final`: the result, at full size. `uvs` ([F, 3, 2] per sent triangle corner, with the first
    preview and with the result) go into a new UV layer the texture then shows on; None when the
    sent UV layer was kept (or, for later previews, was already written); `properties` go on the object. Report back with
    `Job.texture_painted`, `Job.texture_failed` or `Job.texture_waiting`; on failure everything the
    job changed is undone first."""

    job_id: str
    pixels: Any  # numpy array, [H, W, 3] uint8
    final: bool = False
    uvs: Any = None  # numpy array, [F, 3, 2] float32, or None
    image_name: str = ""
    properties: dict[str, Any] | None = None


@dataclass(frozen=True)
class RevertTexture:
    """Put the job's object back as it was before its first `PaintTexture`: material slot and links,
    no image, material, nodes or UV layer of the job's (a cancelled or failed texture job)."""

    job_id: str


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


Effect = (ShowPreview | BuildMesh | BuildImage | BuildScene | PaintTexture | RevertTexture | Remove | SendCancel
          | Disconnect | UndoStep | ShowError)


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
