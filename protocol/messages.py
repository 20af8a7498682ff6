"""The message types. Each is a frozen dataclass with a `TYPE` tag; the schema module derives
the wire rules from the annotations, and `validate()` adds the rules that span fields.

Conversation (all messages of a job carry its `job_id` in the header; the client chooses it):

    client                          server
    hello                 ──►
                          ◄──       welcome
    generate (job_id)     ──►
                          ◄──       accepted | failed(busy, invalid_request, ...)
                          ◄──       progress / preview ... / mesh(geometry)
                          ◄──       mesh(final) | failed | cancelled
    enhance (job_id)      ──►                                (protocol 2.1)
                          ◄──       accepted | failed(invalid_request, too_large, ...)
                          ◄──       progress ...
                          ◄──       enhanced_image | failed | cancelled
    texture (job_id)      ──►                                (protocol 2.2)
                          ◄──       accepted | failed(invalid_request, too_large, ...)
                          ◄──       progress / texture_preview ...
                          ◄──       painted_texture | failed | cancelled
    scene (job_id)        ──►                                (protocol 2.5)
                          ◄──       accepted | failed(invalid_request, too_large, ...)
                          ◄──       progress / preview ...
                          ◄──       scene_result | failed | cancelled
    cancel (job_id)       ──►                                (any time)
    heartbeat             ◄─►                                (both ways, every second)

A job ends with exactly one terminal message (`is_terminal`): its result (`is_result`: the final
mesh of a `generate`, the `enhanced_image` of an `enhance`, the `painted_texture` of a
`texture`), `failed` or `cancelled`. A client asks
for a request kind only when the backend's `welcome.request_kinds` lists it (a 2.0 backend answers
an `enhance` with `failed: bad_message`, unknown message type).

Every field added to a message after it was introduced (2.0; 2.1 for `enhance` and
`enhanced_image`; 2.2 for `texture`, `texture_preview` and `painted_texture`) must have a default (see `schema`): a peer of an older minor version leaves it
out, one of a newer minor version sends fields this side ignores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .errors import ProtocolError
from .kinds import RequestKind
from .limits import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_SIDE,
    MAX_MESH_FACES,
    MAX_MESH_VERTICES,
    MAX_NAME_CHARS,
    MAX_PREVIEW_SPLATS,
    MAX_PROMPT_CHARS,
    MAX_SCENE_KEYFRAMES,
    MAX_SCENE_POSES,
    MAX_TEXTURE_SIDE,
    MAX_TEXTURE_REQUEST_FACES,
    MAX_TEXTURE_REQUEST_VERTICES,
)
from .schema import F16, F32, I8, I32, U8, U32, Json, Record, array, blob, integer, text

IMAGE_MAGIC = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "webp": (b"RIFF",),  # plus "WEBP" at offset 8, checked below
}


def image_format(data: bytes | memoryview) -> str | None:
    """'png', 'jpeg' or 'webp' from the magic bytes, None for anything else."""
    head = bytes(data[:12])
    if head.startswith(IMAGE_MAGIC["png"][0]):
        return "png"
    if head.startswith(IMAGE_MAGIC["jpeg"][0]):
        return "jpeg"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(frozen=True, kw_only=True)
class Message:
    TYPE: ClassVar[str] = ""
    # Upper bounds for the symbolic array dimensions used by this message type.
    DIM_LIMITS: ClassVar[dict[str, int]] = {}

    def validate(self) -> None:
        """Rules that involve several fields; the codec calls it on encode and on decode."""

    def validate_outgoing(self) -> None:
        """Rules for what this side sends (the codec calls it on encode): stricter than
        `validate` where a newer peer may send values this side does not know yet."""
        self.validate()


@dataclass(frozen=True, kw_only=True)
class Hello(Message):
    """First message of a client: who is asking (for the server log)."""

    TYPE: ClassVar[str] = "hello"
    client: str = text(200)


@dataclass(frozen=True, kw_only=True)
class Welcome(Message):
    """The backend describes itself; the add-on shows this as connection status."""

    TYPE: ClassVar[str] = "welcome"
    protocol: str = text(MAX_NAME_CHARS)
    """The backend's protocol version, "major.minor"."""
    backend_version: str = text(MAX_NAME_CHARS)
    device: str = text(MAX_NAME_CHARS)
    gpu_name: str | None = text(200)
    gpu_memory_mb: int | None = integer(0)
    model_preset: str = text(MAX_NAME_CHARS)
    quality_presets: list[str] = text(MAX_NAME_CHARS)
    heartbeat_interval_s: float
    request_kinds: list[str] = text(MAX_NAME_CHARS, default_factory=list)
    """The request kinds this backend serves (protocol/kinds.py)."""
    options: list[str] = text(MAX_NAME_CHARS, default_factory=list)
    """The request options this backend accepts (protocol/options.py); a newer add-on leaves
    out the ones an older backend does not list instead of having the job refused."""


@dataclass(frozen=True, kw_only=True)
class Generate(Message):
    """Start a job. `image` holds the encoded file (PNG, JPEG or WebP) and travels as a raw frame."""

    TYPE: ClassVar[str] = "generate"
    image: bytes = blob(MAX_IMAGE_BYTES)
    prompt: str = text(MAX_PROMPT_CHARS)
    quality: str = text(MAX_NAME_CHARS)
    seed: int = integer(0, 2**32 - 1)
    options: Json = field(default_factory=dict)

    def validate(self) -> None:
        _check_image_file(self.TYPE, "image", self.image)


def _check_image_file(where: str, name: str, data: bytes) -> None:
    """An image file field: not empty, and a PNG, JPEG or WebP file by its magic bytes."""
    what = "the image" if name == "image" else f"the {name} image"
    if len(data) == 0:
        raise ProtocolError(f"{where}: {what} is empty")
    if image_format(data) is None:
        raise ProtocolError(f"{where}: {what} is not a PNG, JPEG or WebP file")


@dataclass(frozen=True, kw_only=True)
class Enhance(Message):
    """Start an `enhance` job (protocol 2.1): the single-step fixer of Difix3D+ on one rendered
    image. `image` (PNG, JPEG or WebP, at most `MAX_ENHANCE_SIDE` pixels a side) and the optional
    `reference` (a clean view of the same subject, which the reference-guided fixer Difix-ref looks
    at) travel as raw frames. Options: `fixer` (see protocol/options.py; left out: Difix-ref with a
    reference, Difix without). The result is an `enhanced_image` of the same size."""

    TYPE: ClassVar[str] = "enhance"
    image: bytes = blob(MAX_IMAGE_BYTES)
    reference: bytes | None = blob(MAX_IMAGE_BYTES, default=None)
    seed: int = integer(0, 2**32 - 1, default=0)
    """For fixers that draw noise (SD-Turbo); Difix and Difix-ref are deterministic."""
    options: Json = field(default_factory=dict)

    def validate(self) -> None:
        _check_image_file(self.TYPE, "image", self.image)
        if self.reference is not None:
            _check_image_file(self.TYPE, "reference", self.reference)


@dataclass(frozen=True, kw_only=True)
class EnhancedImage(Message):
    """The result of an `enhance` job (terminal): the fixed image, the same size as the request's
    (upright: a JPEG's EXIF orientation is applied, as for `generate`), top row first, sRGB. RGBA
    when the request's image had transparency (its alpha is kept as it was), else RGB."""

    TYPE: ClassVar[str] = "enhanced_image"
    DIM_LIMITS: ClassVar[dict[str, int]] = {"H": MAX_IMAGE_SIDE, "W": MAX_IMAGE_SIDE}
    image: np.ndarray = array(("H", "W", (3, 4)), {U8})
    fixer: str = text(MAX_NAME_CHARS, default="")
    """The fixer that ran (a `fixer` option value: difix, difix-ref, sd-turbo)."""
    used_reference: bool = False
    """The fixer looked at the request's reference image."""
    seed: int = integer(0, 2**32 - 1, default=0)
    models: str = text(MAX_NAME_CHARS, default="")
    """The backend's model preset (full or tiny)."""
    tiny: bool = False
    """Made with the tiny preset's random weights: the result is noise."""


@dataclass(frozen=True, kw_only=True)
class Texture(Message):
    """Start a `texture` job (protocol 2.2): paint a UV texture onto the artist's own mesh from a
    prompt and an optional reference image. The mesh is triangles in the object's own space
    (Blender's Z up): `vertices` [V, 3], `faces` [F, 3]; `uvs` are per face corner [F, 3, 2] (origin
    bottom-left, as Blender's loops hold them), kept exactly when they are present, inside 0..1 and
    do not overlap (otherwise the backend unwraps the mesh and says so); `normals` per vertex are
    optional. Options: `texture_size`, `views`, `paint_steps` (protocol/options.py). The result is a
    `painted_texture`; `texture_preview`s show it filling in."""

    TYPE: ClassVar[str] = "texture"
    DIM_LIMITS: ClassVar[dict[str, int]] = {"V": MAX_TEXTURE_REQUEST_VERTICES, "F": MAX_TEXTURE_REQUEST_FACES}
    vertices: np.ndarray = array(("V", 3), {F32})
    faces: np.ndarray = array(("F", 3), {U32, I32})
    uvs: np.ndarray | None = array(("F", 3, 2), {F32}, default=None)
    normals: np.ndarray | None = array(("V", 3), {F32, F16}, default=None)
    prompt: str = text(MAX_PROMPT_CHARS)
    image: bytes | None = blob(MAX_IMAGE_BYTES, default=None)
    """An optional reference image (PNG, JPEG or WebP) that steers the appearance."""
    seed: int = integer(0, 2**32 - 1, default=0)
    options: Json = field(default_factory=dict)

    def validate(self) -> None:
        if self.image is not None:
            _check_image_file(self.TYPE, "image", self.image)
        _check_face_indices(self.TYPE, self.faces, len(self.vertices))


def _check_face_indices(where: str, faces: np.ndarray, n_vertices: int) -> None:
    if len(faces):
        lo, hi = int(faces.min()), int(faces.max())
        if lo < 0 or hi >= n_vertices:
            raise ProtocolError(f"{where}: face indices span [{lo}, {hi}] but there are {n_vertices} vertices")


@dataclass(frozen=True, kw_only=True)
class TexturePreview(Message):
    """A `texture` job's texture so far (downsampled), after each painted view. When the backend
    unwrapped the mesh, the first preview carries the new per-corner `uvs` the texture is laid out
    on (the same as the result's), so the preview shows on the right UVs from the start."""

    TYPE: ClassVar[str] = "texture_preview"
    DIM_LIMITS: ClassVar[dict[str, int]] = {"H": 1024, "W": 1024, "F": MAX_TEXTURE_REQUEST_FACES}
    step: int = integer(0)
    """Views painted so far."""
    total: int = integer(0)
    texture: np.ndarray = array(("H", "W", 3), {U8})
    coverage: float = 0.0
    """Share of the texels inside UV charts painted so far (0..1)."""
    uvs: np.ndarray | None = array(("F", 3, 2), {F32}, default=None)


@dataclass(frozen=True, kw_only=True)
class Accepted(Message):
    """The job is queued; `queue_position` jobs are ahead of it (0: it starts now)."""

    TYPE: ClassVar[str] = "accepted"
    queue_position: int = integer(0)


@dataclass(frozen=True, kw_only=True)
class Progress(Message):
    TYPE: ClassVar[str] = "progress"
    stage: str = text(MAX_NAME_CHARS)
    step: int = integer(0)
    total: int = integer(0)
    eta_s: float | None = None
    message: str = text(default="")

    def validate(self) -> None:
        if self.total and self.step > self.total:
            raise ProtocolError(f"progress: step {self.step} is beyond total {self.total}")


@dataclass(frozen=True, kw_only=True)
class Preview(Message):
    """Gaussian splats for the live viewport preview, in compact dtypes.

    positions: world space (Blender's Z-up); colors: sRGB 0..255; opacities: 0..255 or 0..1;
    scales: per-axis standard deviations in world units; rotations: unit quaternions (w, x, y, z).
    """

    TYPE: ClassVar[str] = "preview"
    DIM_LIMITS: ClassVar[dict[str, int]] = {"N": MAX_PREVIEW_SPLATS}
    step: int = integer(0)
    positions: np.ndarray = array(("N", 3), {F32, F16})
    colors: np.ndarray = array(("N", (3, 4)), {U8})
    opacities: np.ndarray = array(("N",), {U8, F16, F32})
    scales: np.ndarray = array(("N", 3), {F16, F32})
    rotations: np.ndarray = array(("N", 4), {F16, F32, I8})


MESH_KINDS = ("geometry", "final")


@dataclass(frozen=True, kw_only=True)
class MeshMetadata(Record):
    """What made a mesh: shown on the result object and used by Regenerate."""

    prompt: str = text(MAX_PROMPT_CHARS, default="")
    """The prompt the texture was made with, in full (the caption when the artist gave none)."""
    captioned: bool = False
    """`prompt` was written by the captioner."""
    seed: int = integer(0, 2**32 - 1, default=0)
    quality: str = text(MAX_NAME_CHARS, default="")
    models: str = text(MAX_NAME_CHARS, default="")
    """The backend's model preset (full or tiny)."""
    tiny: bool = False
    """Made with the tiny preset's random weights: the result is noise."""
    cache: dict[str, str] = text(16, default_factory=dict)
    """stage → "hit" (reused from the backend's result cache) or "miss" (computed)."""


@dataclass(frozen=True, kw_only=True)
class Mesh(Message):
    """A triangle mesh. `geometry` arrives first (so a texture failure still leaves a result),
    `final` replaces it. UVs and normals are per vertex (seams are split vertices)."""

    TYPE: ClassVar[str] = "mesh"
    DIM_LIMITS: ClassVar[dict[str, int]] = {
        "V": MAX_MESH_VERTICES, "F": MAX_MESH_FACES, "H": MAX_TEXTURE_SIDE, "W": MAX_TEXTURE_SIDE,
    }
    kind: str = text(16)
    vertices: np.ndarray = array(("V", 3), {F32})
    faces: np.ndarray = array(("F", 3), {U32, I32})
    uvs: np.ndarray | None = array(("V", 2), {F32}, default=None)
    normals: np.ndarray | None = array(("V", 3), {F32, F16}, default=None)
    vertex_colors: np.ndarray | None = array(("V", (3, 4)), {U8}, default=None)
    texture: np.ndarray | None = array(("H", "W", (3, 4)), {U8}, default=None)
    metadata: MeshMetadata = field(default_factory=MeshMetadata)

    def validate(self) -> None:
        if self.kind not in MESH_KINDS:
            raise ProtocolError(f"mesh: kind must be one of {MESH_KINDS}, got {self.kind!r}")
        if self.texture is not None and self.uvs is None:
            raise ProtocolError("mesh: a texture needs per-vertex uvs")
        _check_face_indices(self.TYPE, self.faces, len(self.vertices))


@dataclass(frozen=True, kw_only=True)
class PaintedTexture(Message):
    """The result of a `texture` job (terminal): the texture image (top row first, sRGB) and, when
    the backend unwrapped the mesh, the new per-corner UVs for the request's faces in order. `uvs`
    None: the request's own UVs were kept and the texture is laid out on them."""

    TYPE: ClassVar[str] = "painted_texture"
    DIM_LIMITS: ClassVar[dict[str, int]] = {"H": MAX_TEXTURE_SIDE, "W": MAX_TEXTURE_SIDE,
                                             "F": MAX_TEXTURE_REQUEST_FACES}
    texture: np.ndarray = array(("H", "W", 3), {U8})
    uvs: np.ndarray | None = array(("F", 3, 2), {F32}, default=None)
    uv_note: str = text(default="")
    """Why the UVs were replaced (or that they were kept)."""
    coverage: float = 0.0
    """Share of the texels inside UV charts that some view saw (the rest was filled in)."""
    metadata: MeshMetadata = field(default_factory=MeshMetadata)


SCENE_TRAJECTORIES = ("orbit", "forward", "pan", "camera")
"""A `scene` request's path: a preset (look around from one point, walk ahead, slide sideways) or
"camera": the request's own `poses`."""


@dataclass(frozen=True, kw_only=True)
class Scene(Message):
    """Start a `scene` job (protocol 2.5): grow a 3D scene from the prompt (and an optional first
    image, PNG/JPEG/WebP) along a camera path — a preset `trajectory`, or "camera" with `poses`:
    one Blender camera `matrix_world` per frame [P, 4, 4] (Z up; at most `MAX_SCENE_POSES`) and the
    camera's vertical field of view `fov_deg`. Options: `frames` (keyframes), `scene_size`,
    `replay_steps`, `inpaint_steps` (protocol/options.py). `preview`s show the Gaussians as they
    grow; the result is a `scene_result`."""

    TYPE: ClassVar[str] = "scene"
    DIM_LIMITS: ClassVar[dict[str, int]] = {"P": MAX_SCENE_POSES}
    prompt: str = text(MAX_PROMPT_CHARS)
    image: bytes | None = blob(MAX_IMAGE_BYTES, default=None)
    trajectory: str = text(MAX_NAME_CHARS, default="orbit")
    poses: np.ndarray | None = array(("P", 4, 4), {F32}, default=None)
    fov_deg: float = 60.0
    quality: str = text(MAX_NAME_CHARS, default="draft")  # options.DEFAULT_SCENE_QUALITY
    seed: int = integer(0, 2**32 - 1, default=0)
    options: Json = field(default_factory=dict)

    def validate(self) -> None:
        if self.image is not None:
            _check_image_file(self.TYPE, "image", self.image)
        if (self.poses is not None) != (self.trajectory == "camera"):
            raise ProtocolError(f"{self.TYPE}: camera poses go with trajectory 'camera' and only with it "
                                f"(trajectory {self.trajectory!r:.40}, poses {'given' if self.poses is not None else 'none'})")

    def validate_outgoing(self) -> None:
        self.validate()
        if self.trajectory not in SCENE_TRAJECTORIES:
            raise ProtocolError(f"{self.TYPE}: unknown trajectory {self.trajectory!r}; one of {SCENE_TRAJECTORIES}")


@dataclass(frozen=True, kw_only=True)
class SceneResult(Message):
    """The result of a `scene` job (terminal): the scene as a vertex-coloured triangle mesh in
    Blender's world (Z up), the camera path as Blender camera `matrix_world`s [P, 4, 4] (the
    request's own, or the preset's), the path indices of the keyframes the scene grew at, and the
    vertical field of view."""

    TYPE: ClassVar[str] = "scene_result"
    DIM_LIMITS: ClassVar[dict[str, int]] = {"V": MAX_MESH_VERTICES, "F": MAX_MESH_FACES, "P": MAX_SCENE_POSES,
                                             "K": MAX_SCENE_KEYFRAMES}
    vertices: np.ndarray = array(("V", 3), {F32})
    faces: np.ndarray = array(("F", 3), {U32, I32})
    vertex_colors: np.ndarray = array(("V", 3), {U8})
    cameras: np.ndarray = array(("P", 4, 4), {F32})
    keyframes: np.ndarray = array(("K",), {I32})
    fov_deg: float = 60.0
    gaussians: int = integer(0, default=0)
    """How many Gaussians the scene holds (the `.ply` the CLI writes)."""
    metadata: MeshMetadata = field(default_factory=MeshMetadata)

    def validate(self) -> None:
        _check_face_indices(self.TYPE, self.faces, len(self.vertices))
        if len(self.keyframes) and (int(self.keyframes.min()) < 0 or int(self.keyframes.max()) >= len(self.cameras)):
            raise ProtocolError(f"{self.TYPE}: keyframe indices must point into the {len(self.cameras)} cameras")


FAILURE_CODES = (
    "bad_message",          # the request could not be decoded (see ProtocolError codes)
    "unsupported_version",
    "too_large",
    "invalid_request",      # decoded, but the request cannot be served as asked
    "busy",                 # the job queue is full
    "unknown_job",
    "out_of_memory",
    "pipeline_error",
    "shutdown",
    "worker_lost",          # the worker process running the job died (2.3); it is restarted
)


@dataclass(frozen=True, kw_only=True)
class Failed(Message):
    """The job (or, without a job id, the message `in_reply_to`) failed. `hint` says what to do."""

    TYPE: ClassVar[str] = "failed"
    code: str = text(32)
    message: str = text()
    hint: str = text(default="")
    stage: str | None = text(MAX_NAME_CHARS, default=None)
    in_reply_to: str | None = text(MAX_NAME_CHARS, default=None)

    def validate_outgoing(self) -> None:
        # Received codes are not checked: a newer backend may add codes, and an artist must still
        # see the failure (the add-on treats an unknown code like pipeline_error).
        if self.code not in FAILURE_CODES:
            raise ProtocolError(f"failed: unknown code {self.code!r}")


@dataclass(frozen=True, kw_only=True)
class Cancel(Message):
    """Cancel the job named in the header."""

    TYPE: ClassVar[str] = "cancel"


@dataclass(frozen=True, kw_only=True)
class Cancelled(Message):
    TYPE: ClassVar[str] = "cancelled"
    stage: str | None = text(MAX_NAME_CHARS, default=None)


@dataclass(frozen=True, kw_only=True)
class Heartbeat(Message):
    """Liveness, both ways. From the server, `jobs` maps each of the receiver's unfinished jobs to
    the seconds since that job last reported (so a client can tell a stalled job from a busy one)."""

    TYPE: ClassVar[str] = "heartbeat"
    jobs: Json = field(default_factory=dict)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, Welcome, Generate, Enhance, Texture, Scene, Accepted, Progress, Preview, TexturePreview, Mesh,
                EnhancedImage, PaintedTexture, SceneResult, Failed, Cancel, Cancelled, Heartbeat)
}

REQUEST_TYPES: dict[RequestKind, type[Message]] = {RequestKind.GENERATE: Generate, RequestKind.ENHANCE: Enhance,
                                                   RequestKind.TEXTURE: Texture, RequestKind.SCENE: Scene}
"""The message that starts a job of each request kind."""

# Messages after which the server sends nothing more for a job (besides a final mesh, see is_result).
TERMINAL_TYPES = frozenset({"failed", "cancelled", "enhanced_image", "painted_texture", "scene_result"})


def request_kind(message: Message) -> RequestKind | None:
    """The request kind a job-starting message asks for; None for any other message."""
    return next((kind for kind, cls in REQUEST_TYPES.items() if isinstance(message, cls)), None)


def is_result(message: Message) -> bool:
    """The message that completes a job successfully: the final mesh of a `generate`, the
    `enhanced_image` of an `enhance`, the `painted_texture` of a `texture`, the `scene_result` of a
    `scene`."""
    return isinstance(message, (EnhancedImage, PaintedTexture, SceneResult)) or (isinstance(message, Mesh) and message.kind == "final")


def is_terminal(message: Message) -> bool:
    return message.TYPE in TERMINAL_TYPES or is_result(message)
