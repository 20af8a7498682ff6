"""The bytes sent to the backend for a Blender image.

A file the backend can read (PNG, JPEG, WebP, on disk or packed) is sent byte for byte, so the
backend sees EXIF orientation and 16-bit data, and an unchanged file always hits the result
cache. Anything else (a render result, a generated or painted image, EXR, TIFF) is encoded from
its pixels into an 8-bit PNG in memory.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from .wire import image_format, protocol

MAX_SIDE = protocol.limits.MAX_IMAGE_SIDE
MAX_PIXELS = protocol.limits.MAX_IMAGE_PIXELS
MAX_ENHANCE_SIDE = protocol.limits.MAX_ENHANCE_SIDE


class ImageSourceError(ValueError):
    """The image cannot be sent; the message says why and what to do."""


def encode_png(rgba: np.ndarray) -> bytes:
    """[H, W, 4] uint8, top row first → PNG bytes (deterministic: same pixels, same bytes)."""
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"expected [H, W, 4] uint8, got {rgba.shape} {rgba.dtype}")
    height, width = rgba.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgba.reshape(height, width * 4)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))


def check_size(width: int, height: int) -> None:
    if width == 0 or height == 0:
        raise ImageSourceError("the image has no pixels (is the file missing or still loading?)")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageSourceError(f"the image is {width} × {height} pixels; Lift3D accepts up to {MAX_SIDE} a side "
                               f"and {MAX_PIXELS // 1_000_000} megapixels. Scale it down first.")


def unsendable(image) -> str | None:
    """Why `image` cannot be sent at all (None when it can), with what to do instead."""
    if image.type == "RENDER_RESULT" or image.source == "VIEWER":
        # Their pixels are not reachable from Python (size reads 0 × 0).
        return f"'{image.name}' is a live render view; save it first (Image > Save As) and choose the saved image"
    if image.source not in ("FILE", "GENERATED"):
        return f"'{image.name}' is a {image.source.lower()} image; pick a still image"
    return None


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG file from its header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 24:
        raise ImageSourceError("the image is not a PNG file")
    return struct.unpack(">II", data[16:24])


def check_enhance_size(width: int, height: int) -> None:
    check_size(width, height)
    if width > MAX_ENHANCE_SIDE or height > MAX_ENHANCE_SIDE:
        raise ImageSourceError(f"the image is {width} × {height} pixels; Enhance accepts up to {MAX_ENHANCE_SIDE} "
                               f"a side. Lower the render resolution (Output Properties > Format) or scale the "
                               f"image down first.")


def image_bytes(image, formats: tuple[str, ...] = ("png", "jpeg", "webp")) -> bytes:  # image: bpy.types.Image
    """The bytes to send for `image`; raises ImageSourceError with an actionable message. A file in
    one of `formats` goes as it is; anything else is encoded to PNG from the pixels."""
    reason = unsendable(image)
    if reason:
        raise ImageSourceError(reason)
    # Painted or edited since it was loaded: the pixels, not the file, are what the artist sees.
    if not image.is_dirty:
        data = _file_bytes(image)
        if data is not None and image_format(data) in formats:
            check_size(*image.size)
            return data
    width, height = image.size
    check_size(width, height)
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    # Float images hold linear values; PNG wants display-referred sRGB.
    rgba = pixels.reshape(height, width, 4)[::-1]
    if image.is_float:
        rgba = rgba.copy()
        rgba[..., :3] = linear_to_srgb(rgba[..., :3])
    return encode_png((np.clip(rgba, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def enhance_bytes(image) -> tuple[bytes, tuple[int, int]]:
    """(PNG bytes, (width, height)) to send for an Enhance of `image`: a PNG file as it is, anything
    else encoded from the pixels Blender shows (a JPEG's EXIF rotation, which Blender does not
    apply, must not turn the result), so the result has exactly the image's size."""
    data = image_bytes(image, formats=("png",))
    size = png_size(data)
    check_enhance_size(*size)
    return data, size


def _file_bytes(image) -> bytes | None:
    """The packed or on-disk file when the backend can read it as is (PNG, JPEG, WebP)."""
    import bpy

    if image.packed_file is not None:
        data = bytes(image.packed_file.data)
    elif image.source == "FILE" and image.filepath:
        path = Path(bpy.path.abspath(image.filepath, library=image.library))
        if not path.is_file():
            raise ImageSourceError(f"the file of image '{image.name}' is missing: {path}")
        data = path.read_bytes()
    else:
        return None
    return data if image_format(data) else None


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, None)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
