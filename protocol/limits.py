"""Wire constants shared by every side: version, default address and the limits enforced on decode.

Defined once here; the backend, the client, the CLI and the Blender add-on all import them.
"""

from typing import NamedTuple


class ProtocolVersion(NamedTuple):
    """major.minor. Peers of the same major talk: a newer minor only adds optional fields (with
    defaults), message types and enumeration values, which an older peer ignores. A major
    change is refused with a message naming both versions."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


# 2.0: major.minor versions, fields with defaults may be left out and unknown fields are ignored,
# typed mesh metadata, request options checked against protocol/options.py before `accepted`.
# 2.1: the `enhance` request kind (`enhance` → `enhanced_image`) and its stage; the `fixer` option a
# choice of fixer (an older add-on's true/false still means what it meant) and `progressive_fix`.
# 2.2: the `texture` request kind (`texture` → `texture_preview`s → `painted_texture`), its stages and
# options (`views`, `paint_steps`, `refine_steps`; `texture_size` serves it too).
# 2.3: the `worker_lost` failure code (the Ray engine's worker died during the job; an older add-on
# shows it like `pipeline_error`).
# 2.4: the generate options `multiview`, `novel_view`, `text_prior` and `captioner` (a backend that
# does not list one in `welcome.options` refuses it by name).
# 2.5: the `scene` request kind (`scene` → `preview`s → `scene_result`), its `keyframes` stage and
# options (`frames`, `scene_size`, `replay_steps`, `inpaint_steps`).
PROTOCOL_VERSION = ProtocolVersion(2, 5)

DEFAULT_PORT = 5571
DEFAULT_HOST = "127.0.0.1"
DEFAULT_ADDRESS = f"tcp://{DEFAULT_HOST}:{DEFAULT_PORT}"

# Envelope: [header, body, *frames]. The header is tiny; the body holds scalars and array
# descriptors only (bulk data always rides in frames), so both can be bounded tightly.
MAX_HEADER_BYTES = 512
MAX_BODY_BYTES = 64 * 1024
MAX_ARRAY_FRAMES = 8
MAX_FRAMES = 2 + MAX_ARRAY_FRAMES

MAX_ID_CHARS = 64
MAX_PROMPT_CHARS = 2000
MAX_TEXT_CHARS = 4000  # messages and hints
MAX_NAME_CHARS = 64  # stage, preset and device names, versions
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# Decoded input image size: checked by the backend (from the file header) and, before sending,
# by the add-on. A 40-megapixel photo is fine; more is almost certainly a mistake.
MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = 40_000_000
# Side limit of an `enhance` request's image (the result has the same size): the fixer runs on the
# whole image at once, and its memory grows with the pixel count. Checked by the backend before
# `accepted` and by the add-on before sending.
MAX_ENHANCE_SIDE = 2048
MAX_OPTIONS = 64  # entries in a JSON-like dict (options, metadata), counted over all nesting levels
MAX_NESTING = 4

MAX_PREVIEW_SPLATS = 500_000
MAX_MESH_VERTICES = 8_000_000
MAX_MESH_FACES = 8_000_000
MAX_TEXTURE_SIDE = 8192
# A `texture` request's mesh: the views are rasterised and the texels back-projected per face, so
# a mesh far beyond a few hundred thousand faces is slow; two million is the hard limit.
MAX_TEXTURE_REQUEST_FACES = 2_000_000
MAX_TEXTURE_REQUEST_VERTICES = 4_000_000
# A `scene` request's camera path (a 20-second shot at 24 fps) and its keyframes.
MAX_SCENE_POSES = 500
MAX_SCENE_KEYFRAMES = 64
