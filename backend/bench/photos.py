"""The benchmarks' input photo: a red disc with an alpha channel (the tiny segmenter cannot find
objects, so the cut-out comes from the alpha)."""

from __future__ import annotations

import io

import numpy as np


def disc_photo(size: int = 96) -> bytes:
    from PIL import Image

    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[inside] = (200, 40, 30, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG")
    return buffer.getvalue()
