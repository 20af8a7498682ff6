"""The enhance pipeline: one rendered image → the same image cleaned by Difix3D+'s single-step
fixer (its post-render enhancement step, on a render the artist made). The one orchestrator of
the `enhance` request kind:

    decode (image and optional reference) → load the fixer (first time only) → pad the sides to
    multiples of 8 → one fixer step → crop back, put the alpha back → `enhanced_image`

The fixer is the `fixer` option (Difix, Difix-ref or SD-Turbo; left out: Difix-ref when a
reference is sent, Difix without one — `protocol.options.enhance_fixer`). The result has the
image's size; an image with transparency keeps its alpha channel exactly (only the colour is
fixed). Progress is one stage, `Stage.ENHANCE`, in four steps.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from protocol import MAX_ENHANCE_SIDE, Enhance, EnhancedImage, RequestKind, Stage
from protocol.limits import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE
from protocol.options import enhance_fixer, validate_options

from ..models.hub import ModelUnavailableError
from ..models.registry import TINY_NOTICE, ModelRegistry
from ..serving.context import PipelineError, StageContext
from ..serving.jobs import is_out_of_memory
from ..stages.fixing import fixer_record, load_fixer
from ..stages.image_io import decode_image

log = logging.getLogger(__name__)

MULTIPLE = 8
"""The fixers' VAE downsamples by 8: sides are padded up to a multiple of it, then cropped back."""
STEPS = 4


@dataclass(frozen=True)
class EnhanceInputs:
    """What one enhance job works from: checked, typed, and free of the wire message."""

    image: bytes
    """The encoded image file (PNG, JPEG or WebP) as the artist sent it."""
    reference: bytes | None
    fixer: str
    """difix, difix-ref or sd-turbo (never off)."""
    seed: int
    width: int
    height: int
    """The image's size from its file header (before any EXIF rotation)."""


class EnhancePipeline:
    """One instance per process; the fixers stay resident in the shared model registry."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def prepare(self, request: Enhance) -> EnhanceInputs:
        """The request as typed inputs (the server calls this before `accepted`, so only file
        headers are read). Raises protocol.OptionError for a bad option and PipelineError
        (invalid_request, too_large) for an image that cannot be enhanced."""
        options = validate_options(RequestKind.ENHANCE, request.options)
        fixer = enhance_fixer(options, has_reference=request.reference is not None)
        width, height = header_size(request.image, "image")
        if width > MAX_ENHANCE_SIDE or height > MAX_ENHANCE_SIDE:
            raise PipelineError(
                f"the image is {width} × {height} pixels; enhance accepts up to {MAX_ENHANCE_SIDE} pixels a side",
                f"Render at a lower resolution (e.g. Output Properties > Format > resolution %) or scale the image "
                f"down to at most {MAX_ENHANCE_SIDE} × {MAX_ENHANCE_SIDE}, then enhance it again.", code="too_large")
        if request.reference is not None:
            header_size(request.reference, "reference")
        return EnhanceInputs(image=bytes(request.image), reference=None if request.reference is None
                             else bytes(request.reference), fixer=fixer, seed=request.seed, width=width, height=height)

    def run(self, inputs: EnhanceInputs, ctx: StageContext) -> EnhancedImage:
        registry = self.registry
        if registry.is_tiny:
            ctx.report(Stage.ENHANCE, 0, STEPS, f"NOTICE: {TINY_NOTICE}")
        ctx.report(Stage.ENHANCE, 0, STEPS, "decoding the image")
        decoded = decode_image(inputs.image)
        rgba = decoded.rgba
        height, width = rgba.shape[:2]
        reference = None if inputs.reference is None else decode_image(inputs.reference).rgba
        ctx.check_cancelled()

        ctx.report(Stage.ENHANCE, 1, STEPS, f"loading the fixer ({inputs.fixer})")
        try:
            fixer = load_fixer(registry, inputs.fixer)
        except ModelUnavailableError as exc:
            roles = " ".join(f"--role {spec.role}" for spec in fixer_record(inputs.fixer).weights)
            raise PipelineError(f"the {inputs.fixer} fixer is not available: {exc}",
                                f"The fixers are optional models: download this one on the backend machine "
                                f"(`./lift3d backend models download {roles}`, or `--all` for every optional "
                                f"model), or choose another fixer.") from exc
        ctx.check_cancelled()

        uses_reference = bool(fixer.uses_reference and reference is not None)
        note = "" if reference is None or fixer.uses_reference else f"; {inputs.fixer} does not use the reference"
        ctx.report(Stage.ENHANCE, 2, STEPS, f"fixing {width} × {height} with {inputs.fixer}{note}")
        try:
            fixed_rgb = self._fix(fixer, rgba[..., :3], reference if uses_reference else None, inputs.seed)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise PipelineError(f"ran out of memory enhancing a {width} × {height} image: {exc}",
                                    "Enhance a smaller image (a lower render resolution), close other programs "
                                    "using the GPU, or use a backend with more GPU memory.",
                                    code="out_of_memory") from exc
            raise
        ctx.check_cancelled()

        ctx.report(Stage.ENHANCE, 3, STEPS, "finishing")
        pixels = np.dstack([fixed_rgb, rgba[..., 3]]) if decoded.has_alpha else fixed_rgb
        result = EnhancedImage(image=np.ascontiguousarray(pixels), fixer=inputs.fixer, used_reference=uses_reference,
                               seed=inputs.seed, models=registry.preset, tiny=registry.is_tiny)
        ctx.report(Stage.ENHANCE, STEPS, STEPS, "done")
        return result

    @staticmethod
    def _fix(fixer, rgb: np.ndarray, reference: np.ndarray | None, seed: int) -> np.ndarray:
        """rgb [H, W, 3] uint8 → fixed [H, W, 3] uint8: padded (edge pixels repeated) to multiples
        of 8 for the fixer, cropped back after."""
        height, width = rgb.shape[:2]
        padded_h, padded_w = -(-height // MULTIPLE) * MULTIPLE, -(-width // MULTIPLE) * MULTIPLE
        image = to_tensor(rgb)
        if (padded_h, padded_w) != (height, width):
            image = F.pad(image, (0, padded_w - width, 0, padded_h - height), mode="replicate")
        references = None
        if reference is not None:  # resized here, so a large reference never becomes a large tensor
            resized = Image.fromarray(np.ascontiguousarray(reference[..., :3])).resize(
                (padded_w, padded_h), Image.Resampling.LANCZOS)
            references = to_tensor(np.asarray(resized))
        generator = torch.Generator("cpu").manual_seed(seed)
        with torch.no_grad():
            fixed = fixer.fix(image, references, generator=generator)
        if tuple(fixed.shape) != (1, 3, padded_h, padded_w):
            raise RuntimeError(f"the {type(fixer).__name__} fixer returned shape {tuple(fixed.shape)} for "
                               f"{(1, 3, padded_h, padded_w)}")
        fixed = fixed[0, :, :height, :width].float().clamp(0, 1)
        return (fixed.permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 → [1, 3, H, W] float32 in [0, 1]."""
    return torch.from_numpy(np.array(rgb, np.uint8)).permute(2, 0, 1)[None].float() / 255.0  # a writable copy


def header_size(data: bytes, what: str) -> tuple[int, int]:
    """(width, height) from an image file's header (the pixels are not decoded); PipelineError
    (invalid_request) for a file that is not a readable image or is over the general image limits.
    The full checks happen when the job decodes it (`stages.image_io.decode_image`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise PipelineError(f"the {what} is not an image Lift3D can read ({type(exc).__name__})",
                            "Send a PNG, JPEG or WebP file.", code="invalid_request") from None
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise PipelineError(f"the {what} is {width} × {height} pixels; Lift3D accepts up to {MAX_IMAGE_SIDE} a side "
                            f"and {MAX_IMAGE_PIXELS // 1_000_000} megapixels", "Scale it down first.",
                            code="too_large")
    return width, height
