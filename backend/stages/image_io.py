"""Decoding the artist's image: PNG, JPEG or WebP bytes → RGBA uint8, upright, with clear errors.

Everything an image file can throw at us is normalised here: EXIF orientation, palettes,
greyscale (with or without alpha), 16-bit and float channels, CMYK. Sizes are checked from the
header before the pixels are decoded, so a 20k × 20k file is refused without allocating it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from protocol.limits import MAX_IMAGE_PIXELS as MAX_PIXELS
from protocol.limits import MAX_IMAGE_SIDE as MAX_SIDE

from ..serving.context import PipelineError

MIN_SIDE = 16
FORMATS = ("PNG", "JPEG", "WEBP")


class ImageError(PipelineError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message, hint=hint, code="invalid_request")


@dataclass(frozen=True)
class DecodedImage:
    rgba: np.ndarray  # [H, W, 4] uint8, upright
    has_alpha: bool  # the file carried transparency (some pixel with alpha < 255)
    source_mode: str  # PIL mode of the file, for reports ("RGB", "I;16", "LA", ...)


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageError("the image is empty (0 bytes)", "choose an image file that is not empty")
    try:
        with warnings.catch_warnings():
            # Pillow's decompression-bomb warning becomes our own size check below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("the file is not an image Lift3D can read", "use a PNG, JPEG or WebP file") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"the image is too large: {exc}",
                         "scale it down (1024 pixels a side is plenty: the object is resized to 512² anyway)") from None
    if image.format not in FORMATS:
        raise ImageError(f"{image.format} images are not supported", "save the image as PNG, JPEG or WebP")
    return image


def _check_size(width: int, height: int) -> None:
    if width == 0 or height == 0:
        raise ImageError(f"the image has no pixels ({width} × {height})", "choose a non-empty image")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageError(f"the image is too large: {width} × {height} pixels; Lift3D accepts up to {MAX_SIDE} a side and "
                         f"{MAX_PIXELS // 1_000_000} megapixels",
                         "scale it down (1024 pixels a side is plenty: the object is resized to 512² anyway)")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"the image is only {width} × {height} pixels", f"use an image at least {MIN_SIDE} pixels a side")


def _to_rgba(image: Image.Image) -> np.ndarray:  # → [H, W, 4] uint8
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit greyscale: scale by the format's range, not by PIL's clipping to 255.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        if mode == "F":
            top = 1.0 if values.max() <= 1.0 else top
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    # Every 8-bit mode (RGB, L, LA, P with or without transparency, CMYK, YCbCr) converts
    # exactly; opaque modes get alpha 255.
    return np.asarray(image.convert("RGBA"), dtype=np.uint8)


def decode_image(data: bytes) -> DecodedImage:
    """PNG/JPEG/WebP bytes → an upright RGBA image; raises `ImageError` with a hint otherwise."""
    image = _open(data)
    _check_size(*image.size)
    try:
        image = ImageOps.exif_transpose(image)  # phones store portrait photos sideways plus a tag
        mode = image.mode
        rgba = _to_rgba(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"the image file is damaged or truncated ({exc})",
                         "re-export the image from your editor") from None
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ImageError(f"unsupported pixel layout {rgba.shape} (mode {mode})", "save the image as 8-bit RGB or RGBA")
    has_alpha = bool((rgba[..., 3] < 255).any())
    if has_alpha and not (rgba[..., 3] > 0).any():
        raise ImageError("the image is fully transparent", "export it with the object visible")
    return DecodedImage(np.ascontiguousarray(rgba), has_alpha, mode)
