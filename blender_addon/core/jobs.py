"""A job as the add-on sees it: its state, and how backend messages and local events change it
(bpy-free). Four request kinds: Generate (`JobRequest`: image + prompt → meshes), Enhance Render
(`EnhanceRequest`: a render → a new, fixed image datablock), Texture Selected
(`TextureRequest`: the artist's mesh + prompt → a texture painted onto it, live) and Scene
(`SceneRequest`: prompt + camera path → a scene mesh and a camera flying the path).

The session feeds the job's messages through `Job.apply` and carries out the effects it returns
(`core.effects`: show a preview, build a mesh in place of others, build an image, paint a texture
onto an object or put the object back, remove objects, cancel on the backend, record an undo
step); the outcome of a build comes back through `mesh_built` / `mesh_failed` / `image_built` /
`image_failed` / `texture_painted` / `texture_failed` / `texture_waiting`. `check_liveness` decides from a
`LinkStatus` snapshot whether the backend is still there; `finish` says how to leave the scene.
The panel draws from the job's fields.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from .effects import (
    BuildImage,
    BuildMesh,
    BuildScene,
    Disconnect,
    Effect,
    JobMesh,
    LinkStatus,
    ObjectWithUid,
    PaintTexture,
    PreviewOf,
    Remove,
    RevertTexture,
    SendCancel,
    ShowError,
    ShowPreview,
    UndoStep,
)
from .texture_arrays import TextureMesh
from .wire import RequestKind, kinds

CONNECT_TIMEOUT_S = 10.0   # an already running backend answers at once
STARTUP_TIMEOUT_S = 300.0  # a backend we started may be loading several GB of models
LOST_AFTER_S = 15.0        # silence (no heartbeat) after which a running job is given up
CANCEL_GRACE_S = 5.0       # a cancel the backend never confirms is finished locally

UNCONFIRMED_CANCEL = "cancelled here; the backend did not confirm in time"
TEXTURE_UNDO = "Lift3D Texture"
"""The one undo step a finished Texture Selected leaves."""

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

    @property
    def title(self) -> str:
        """What the job makes, for undo steps."""
        return object_name(self.prompt)


@dataclass
class EnhanceRequest:
    """An Enhance Render: one image (a render saved as PNG, or an image datablock) through the
    backend's fixer; the result becomes a new image datablock of the same size."""

    image: bytes
    source_name: str
    """'Render Result' or the image datablock's name: the result is called '<source> (enhanced)'."""
    size: tuple[int, int]
    """(width, height) of the image sent: the result must have it."""
    reference: bytes | None = None
    reference_name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    kind: RequestKind = RequestKind.ENHANCE

    @property
    def title(self) -> str:
        return f"{self.source_name} (enhanced)"


@dataclass
class TextureRequest:
    """Texture Selected: the artist's mesh (its own data, object space) + a prompt and an optional
    reference image → a texture painted into its UVs (or into new ones). Shown on the object while
    it is painted; the object is put back as it was unless the job succeeds."""

    mesh: TextureMesh
    prompt: str
    object_uid: int
    """`session_uid` of the object: the texture goes there even if it is renamed meanwhile."""
    object_name: str
    material: str = "NEW"
    """'NEW': a new material in the active slot; 'ACTIVE': into the active material's Base Color."""
    image: bytes | None = None
    image_name: str = ""
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    kind: RequestKind = RequestKind.TEXTURE

    @property
    def title(self) -> str:
        return f"texture of {self.object_name}"


@dataclass
class SceneRequest:
    """Scene mode: a prompt (and an optional first image) grown into a 3D scene along a camera path:
    a preset (`trajectory` orbit, forward or pan) or the active camera's animation (`trajectory`
    "camera", `poses` its matrix_world per frame [P, 4, 4] float32, `fov_deg` its vertical field of
    view). The result is a vertex-coloured mesh and a camera flying the path."""

    prompt: str
    trajectory: str = "orbit"
    poses: Any = None
    fov_deg: float = 60.0
    image: bytes | None = None
    image_name: str = ""
    quality: str = "draft"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    frames: tuple[int, ...] = ()
    """The frame of each pose of the camera's path (a long animation is sampled, its last frame
    kept); empty for a preset path, whose camera is keyframed from `frame_start` on."""
    frame_start: int = 1
    scene_name: str = ""
    location: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """The scene stays where the backend put it (world coordinates); previews are not moved."""
    kind: RequestKind = RequestKind.SCENE

    @property
    def title(self) -> str:
        return object_name(self.prompt, fallback="Lift3D scene")


def texture_image_name(object_name: str, tiny: bool = False) -> str:
    """The texture image's name: 'Lift3D Texture <object>' (Blender adds .001 if it is taken)."""
    return f"Lift3D Texture {object_name}" + (" (tiny models: noise)" if tiny else "")


@dataclass(frozen=True)
class ImageResult:
    """What made an enhanced image (the `EnhancedImage` message without its pixels)."""

    fixer: str
    used_reference: bool
    models: str
    tiny: bool


def backend_offers(kind: RequestKind, request_kinds: list[str]) -> bool:
    """Whether a backend whose welcome lists `request_kinds` serves `kind`. A 2.0 backend's welcome
    may lack the list (empty): it serves generate only."""
    return kind.value in request_kinds if request_kinds else kind == RequestKind.GENERATE


def not_offered(kind: RequestKind, backend_version: str = "") -> tuple[str, str]:
    """(message, hint) when the backend does not serve `kind`."""
    version = f" (version {backend_version})" if backend_version else ""
    what, protocol_version = (("texture meshes", "2.2") if kind == RequestKind.TEXTURE
                              else ("grow scenes", "2.5") if kind == RequestKind.SCENE
                              else (f"offer {kind.value}", "2.1"))
    return (f"this backend{version} does not {what}: update it",
            f"Update the Lift3D backend to the add-on's release (protocol {protocol_version} or newer): 'git pull' in "
            "its checkout, then restart it ('./lift3d backend serve'), or press Connect after restarting it.")


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
    result_image: str | None = None
    """The image datablock an Enhance Render or a Texture Selected made."""
    result_camera: str | None = None
    """The camera flying a Scene job's path."""
    error: str = ""
    hint: str = ""
    failed_here: bool = False
    """The failure was decided on this side (a build, a timeout): the backend must be told to stop."""
    metadata: Any = None
    """The final mesh's `MeshMetadata`; an enhance job's `ImageResult`."""
    ignored_options: list[str] = field(default_factory=list)
    """Options left out because the backend (older than the add-on) does not accept them."""
    warnings: list[str] = field(default_factory=list)
    """Things the artist should know that do not stop the job (shown on the panel)."""
    coverage: float | None = None
    """A texture job's share of texels painted so far (of the result: seen by some view)."""
    uv_note: str = ""
    """A texture job's word from the backend on the UVs (kept, or why it made new ones)."""
    edit: Any = None
    """What the bpy side changed for a texture job so far (its record for putting things back)."""
    deferred: Any = None
    """A result effect the bpy side could not carry out yet (the mesh is in Edit Mode): retried each tick."""
    created_at: float = field(default_factory=time.monotonic)
    cancel_requested_at: float | None = None
    elapsed_s: float = 0.0

    @property
    def finished(self) -> bool:
        return self.phase in Phase.FINISHED

    @property
    def awaiting_send(self) -> bool:
        """Not sent yet: waiting for the backend's welcome to tell whether it serves this kind."""
        return self.id is None and not self.finished

    @property
    def is_enhance(self) -> bool:
        return self.request.kind == RequestKind.ENHANCE

    @property
    def is_texture(self) -> bool:
        return self.request.kind == RequestKind.TEXTURE

    @property
    def is_scene(self) -> bool:
        return self.request.kind == RequestKind.SCENE

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
        elif kind in ("mesh", "enhanced_image", "painted_texture", "scene_result") and self.phase == Phase.CANCELLING:
            if kind != "mesh" or message.kind == "final":
                self.phase = Phase.CANCELLED  # finished before the cancel arrived: still nothing is kept
        elif kind == "mesh" and message.kind in ("geometry", "final") and self.request.kind == RequestKind.GENERATE:
            return [self._build(message)]
        elif kind == "enhanced_image" and self.is_enhance:
            return self._build_image(message)
        elif kind == "texture_preview" and self.is_texture and self.phase != Phase.CANCELLING:
            uvs = getattr(message, "uvs", None)
            if uvs is not None and len(uvs) != self.request.mesh.n_faces:
                self.fail(f"the backend sent UVs for {len(uvs):,} triangles; {self.request.mesh.n_faces:,} were sent",
                          "This is a backend bug; the object was left as it was. Please report it with the backend's "
                          "log.", here=False)
                return []
            self.previews, self.coverage = self.previews + 1, message.coverage
            return [PaintTexture(self.id, message.texture, uvs=uvs)]
        elif kind == "painted_texture" and self.is_texture:
            return self._paint_final(message)
        elif kind == "scene_result" and self.is_scene:
            return self._build_scene(message)
        elif kind == "failed":
            self.fail(message.message, message.hint, here=False)
            if message.code == "out_of_memory" and not message.hint:
                self.hint = ("Enhance a smaller image (a lower render resolution)." if self.is_enhance
                             else "Try a smaller texture size or a decimated copy of the mesh." if self.is_texture
                             else "Try fewer keyframes or a smaller keyframe size." if self.is_scene
                             else "Try the Draft preset, fewer faces or a smaller texture.")
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

    def _build_image(self, message: Any) -> list[Effect]:
        request = self.request
        height, width = message.image.shape[:2]
        if (width, height) != tuple(request.size):
            self.fail(f"the backend returned a {width} × {height} image for the {request.size[0]} × {request.size[1]} "
                      f"'{request.source_name}'", "This is a backend bug; nothing was added to the file. Please "
                      "report it with the backend's log.", here=False)
            return []
        name = request.title + (" (tiny models: noise)" if message.tiny else "")
        properties = {"lift3d_kind": request.kind.value, "lift3d_job": self.id or "",
                      "lift3d_enhanced_from": request.source_name, "lift3d_reference": request.reference_name,
                      "lift3d_fixer": message.fixer, "lift3d_used_reference": message.used_reference,
                      "lift3d_seed": message.seed, "lift3d_models": message.models,
                      "lift3d_options": json.dumps(request.options, sort_keys=True)}
        self.metadata = ImageResult(fixer=message.fixer, used_reference=message.used_reference,
                                    models=message.models, tiny=message.tiny)
        return [BuildImage(self.id, message.image, name, properties)]

    def _paint_final(self, message: Any) -> list[Effect]:
        request = self.request
        sent = request.mesh.n_faces
        if message.uvs is not None and len(message.uvs) != sent:
            self.fail(f"the backend returned UVs for {len(message.uvs):,} triangles; {sent:,} were sent",
                      "This is a backend bug; the object was left as it was. Please report it with the backend's log.",
                      here=False)
            return []
        metadata = message.metadata
        self.metadata, self.coverage, self.uv_note = metadata, message.coverage, message.uv_note
        if message.uvs is not None and message.uv_note:
            self.warnings.append(f"New UVs (UV map 'Lift3D UV'): {message.uv_note}")
        properties = {
            "lift3d_texture_prompt": request.prompt, "lift3d_texture_seed": request.seed,
            "lift3d_texture_options": json.dumps(request.options, sort_keys=True),
            "lift3d_texture_material": request.material, "lift3d_texture_reference": request.image_name,
            "lift3d_texture_job": self.id or "", "lift3d_texture_models": metadata.models,
        }
        return [PaintTexture(self.id, message.texture, final=True, uvs=message.uvs,
                             image_name=texture_image_name(request.object_name, metadata.tiny), properties=properties)]

    def _build_scene(self, message: Any) -> list[Effect]:
        request = self.request
        if request.poses is not None and len(message.cameras) != len(request.poses):
            self.fail(f"the backend returned a path of {len(message.cameras)} cameras for the {len(request.poses)} "
                      "poses sent", "This is a backend bug; nothing was added. Please report it with the backend's "
                      "log.", here=False)
            return []
        metadata = message.metadata
        name = request.title + (" (tiny models: noise)" if metadata.tiny else "")
        properties = {"lift3d_kind": request.kind.value, "lift3d_job": self.id or "", "lift3d_stage": "scene",
                      "lift3d_scene_prompt": request.prompt, "lift3d_seed": request.seed,
                      "lift3d_preset": request.quality, "lift3d_trajectory": request.trajectory,
                      "lift3d_options": json.dumps(request.options, sort_keys=True), "lift3d_models": metadata.models,
                      "lift3d_gaussians": int(message.gaussians)}
        self.metadata = metadata
        frames = request.frames or tuple(request.frame_start + i for i in range(len(message.cameras)))
        return [BuildScene(self.id, message, name, f"Lift3D Path {name}", properties, frames)]

    def scene_built(self, object_name: str, camera_name: str) -> None:
        self.final_object, self.result_camera, self.phase = object_name, camera_name, Phase.DONE

    def scene_failed(self, error: str) -> None:
        self.fail(f"could not build the scene in Blender: {error}", "Nothing was added to the file.", here=False)

    def texture_painted(self, image_name: str, final: bool) -> None:
        if final:
            self.result_image, self.phase = image_name, Phase.DONE

    def texture_failed(self, error: str, final: bool) -> None:
        """The bpy side could not paint (it has already put the object back); a preview's failure
        must stop the backend's work too."""
        self.fail(f"could not paint the texture in Blender: {error}", "The object was left as it was.", here=not final)

    def texture_waiting(self, effect: Effect, reason: str) -> None:
        """The result is here but cannot go onto the object yet (`reason`): kept and retried each tick."""
        self.deferred, self.note = effect, reason

    def take_deferred(self) -> list[Effect]:
        effects, self.deferred = ([self.deferred] if self.deferred is not None else []), None
        return effects

    def image_built(self, image_name: str) -> None:
        self.result_image, self.phase = image_name, Phase.DONE

    def image_failed(self, error: str) -> None:
        self.fail(f"could not make the enhanced image in Blender: {error}",
                  "Nothing was added to the file; try a smaller image.", here=False)

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
        if self.awaiting_send or self.deferred is not None:  # never sent, or the backend has finished
            self.deferred = None
            self.phase, self.cancel_requested_at = Phase.CANCELLED, now
            return []
        self.phase, self.cancel_requested_at = Phase.CANCELLING, now
        return [SendCancel(self.id)]

    def abandon(self, reason: str) -> list[Effect]:
        """Given up at once (a file is being opened, the add-on disabled): nothing more is awaited."""
        effects: list[Effect] = [SendCancel(self.id)] if self.id and not self.finished else []
        self.phase, self.note = Phase.CANCELLED, reason
        return effects

    def check_liveness(self, now: float, link: LinkStatus) -> list[Effect]:
        """Give up on a job whose backend is gone, never answered, or forgot it."""
        if self.finished or self.deferred is not None:  # a result waiting to be used needs no backend
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
        cancelled job (a failed one keeps it); one undo step for what stays. A texture job that did
        not succeed puts its object back as it was."""
        self.elapsed_s = now - self.created_at
        if self.is_texture:
            return self._finish_texture()
        effects: list[Effect] = [Remove(PreviewOf(self.id))] if self.id and not self.is_enhance else []
        if self.phase == Phase.CANCELLED and geometry_present:
            effects.append(Remove(JobMesh(self.id, "geometry")))
        if self.phase == Phase.FAILED:
            if geometry_present:
                self.hint = (self.hint + " " if self.hint else "") + "The untextured mesh was kept."
            if self.failed_here and self.id:
                effects.append(SendCancel(self.id))  # stop the backend's work too
        if self.phase == Phase.DONE or (self.phase == Phase.FAILED and geometry_present):
            effects.append(UndoStep(f"Lift3D: {self.phase} {self.request.title}"))
        if self.phase == Phase.FAILED:
            effects.append(ShowError(self.error, self.hint))
        return effects

    def _finish_texture(self) -> list[Effect]:
        effects: list[Effect] = []
        if self.phase in (Phase.CANCELLED, Phase.FAILED) and self.id:
            effects.append(RevertTexture(self.id))
        if self.phase == Phase.FAILED and self.failed_here and self.id:
            effects.append(SendCancel(self.id))
        if self.phase == Phase.DONE:
            effects.append(UndoStep(TEXTURE_UNDO))
        if self.phase == Phase.FAILED:
            effects.append(ShowError(self.error, self.hint))
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


PREVIEW_TYPES = ("preview", "texture_preview")


def newest_previews_only(messages: list[Any]) -> list[Any]:
    """A tick's messages with every preview (splats, or a texture so far) but the last of its type
    dropped: older ones would be overwritten at once, and showing each costs an update. New UVs a
    dropped texture preview carried ride on with the one kept (they come only once)."""
    last = {m.TYPE: i for i, m in enumerate(messages) if m.TYPE in PREVIEW_TYPES}
    carried = next((m.uvs for i, m in enumerate(messages) if m.TYPE == "texture_preview"
                    and getattr(m, "uvs", None) is not None and last[m.TYPE] != i), None)
    kept = []
    for i, m in enumerate(messages):
        if m.TYPE not in PREVIEW_TYPES or last[m.TYPE] == i:
            if carried is not None and m.TYPE == "texture_preview" and getattr(m, "uvs", None) is None:
                m = replace(m, uvs=carried)
            kept.append(m)
    return kept


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
