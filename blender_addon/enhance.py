"""Enhance Render, the bpy side: reading the source (the Render Result, or an image datablock) and
making the result a new, packed image datablock. What to send and how the job goes is decided in
`core` (`core.image_source`, `core.jobs`); the operator is in `operators.py`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import bpy
import numpy as np

from . import importer
from .core.image_source import ImageSourceError, check_enhance_size, enhance_bytes, image_bytes, png_size

RENDER_RESULT = "Render Result"

# Output settings save_render follows, in the order they are restored (the file format decides
# which colour modes and depths exist; 4.5+ adds media_type above the file format).
_OUTPUT_SETTINGS = ("media_type", "file_format", "color_mode", "color_depth", "compression")


def render_result():
    """The Render Result image datablock (None before anything was rendered in this session)."""
    return next((image for image in bpy.data.images if image.type == "RENDER_RESULT"), None)


def render_result_png(scene) -> bytes:
    """The last render as an 8-bit RGBA PNG, as Blender would save it (view transform applied).
    Render Result pixels cannot be read from Python, so it is saved to a temporary file with
    `Image.save_render`, under the scene's output settings switched to PNG for the call and put
    back after. Raises ImageSourceError when there is no render."""
    image = render_result()
    if image is None:
        raise ImageSourceError("there is no render yet: render an image first (Render > Render Image, F12)")
    settings = scene.render.image_settings
    saved = [(name, getattr(settings, name)) for name in _OUTPUT_SETTINGS if hasattr(settings, name)]
    folder = Path(tempfile.mkdtemp(prefix="lift3d-enhance-"))
    try:
        if hasattr(settings, "media_type"):
            settings.media_type = "IMAGE"
        settings.file_format = "PNG"
        settings.color_mode, settings.color_depth, settings.compression = "RGBA", "8", 15
        path = folder / "render.png"
        try:
            image.save_render(str(path), scene=scene)
        except RuntimeError as exc:
            raise ImageSourceError(f"the Render Result has no image yet ({exc}): render an image first "
                                   "(Render > Render Image, F12)") from None
        return path.read_bytes()
    finally:
        for name, value in saved:
            try:
                setattr(settings, name, value)
            except (TypeError, ValueError) as exc:  # never lose the artist's settings silently
                print(f"Lift3D: could not restore the render output's {name} to {value!r}: {exc}")
        shutil.rmtree(folder, ignore_errors=True)


def source_bytes(settings, scene) -> tuple[bytes, tuple[int, int], str]:
    """(PNG bytes, (width, height), source name) of what the Enhance settings point at."""
    if settings.source == "RENDER":
        data = render_result_png(scene)
        size = png_size(data)
        check_enhance_size(*size)
        return data, size, RENDER_RESULT
    image = settings.image
    if image is None:
        raise ImageSourceError("choose the image to enhance")
    data, size = enhance_bytes(image)
    return data, size, image.name


def reference_bytes(image) -> bytes | None:
    return None if image is None else image_bytes(image)


def build_image(name: str, pixels: np.ndarray, properties: dict):
    """The enhanced image as a new datablock: packed and with a fake user (so it survives saving the
    .blend, with no file on disk, before anything uses it), with `properties` as custom properties.
    All or nothing."""
    image = importer.packed_image(name, np.asarray(pixels, np.uint8))
    try:
        image.use_fake_user = True  # nothing uses it yet: without a user it would not be saved
        for key, value in properties.items():
            image[key] = value
    except BaseException:
        bpy.data.images.remove(image)
        raise
    return image
