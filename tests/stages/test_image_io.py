import io

import numpy as np
import pytest
from PIL import Image

from backend.stages.image_io import ImageError, decode_image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_rgb_png_jpeg_webp():
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    for fmt in ("PNG", "WEBP"):
        decoded = decode_image(encode(Image.fromarray(pixels), fmt, **({"lossless": True} if fmt == "WEBP" else {})))
        assert decoded.rgba.shape == (30, 40, 4) and decoded.rgba.dtype == np.uint8
        assert np.array_equal(decoded.rgba[..., :3], pixels) and not decoded.has_alpha
    jpeg = decode_image(encode(Image.fromarray(pixels), "JPEG", quality=95))
    assert jpeg.rgba.shape == (30, 40, 4) and (jpeg.rgba[..., 3] == 255).all()


def test_alpha_is_kept():
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 8:24] = (200, 50, 50, 255)
    decoded = decode_image(encode(Image.fromarray(rgba)))
    assert decoded.has_alpha and np.array_equal(decoded.rgba, rgba)


def test_exif_orientation_is_applied():
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    decoded = decode_image(encode(Image.fromarray(pixels), "JPEG", exif=exif, quality=95))
    assert decoded.rgba.shape == (40, 20, 4)  # portrait after the rotation
    assert decoded.rgba[:15, :, 0].mean() > 200 and decoded.rgba[25:, :, 0].mean() < 50  # white on top


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    decoded = decode_image(encode(Image.fromarray(values)))
    assert decoded.source_mode.startswith("I")
    grey = decoded.rgba[..., 0].astype(int)
    assert grey[0, 0] == 0 and grey[-1, -1] == 255 and 120 < grey[16, 0] < 135
    assert np.array_equal(decoded.rgba[..., 0], decoded.rgba[..., 2])


def test_greyscale_palette_and_cmyk():
    grey = decode_image(encode(Image.new("L", (20, 20), 77)))
    assert (grey.rgba[..., :3] == 77).all() and (grey.rgba[..., 3] == 255).all()
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert tuple(decode_image(encode(palette)).rgba[5, 5]) == (10, 200, 30, 255)
    cmyk = decode_image(encode(Image.new("CMYK", (20, 20), (0, 0, 0, 0)), "JPEG"))
    assert cmyk.rgba[..., :3].min() > 240


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"GIF89a not really", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
])
def test_garbage_is_rejected_with_a_hint(data, words):
    with pytest.raises(ImageError, match=words) as error:
        decode_image(data)
    assert error.value.hint and error.value.code == "invalid_request"


def test_unsupported_format():
    with pytest.raises(ImageError, match="GIF images are not supported"):
        decode_image(encode(Image.new("RGB", (20, 20)), "GIF"))


@pytest.mark.parametrize("width, height", [(20_000, 20_000), (9000, 3000)])
def test_huge_image_is_refused_from_its_header(width, height):
    # A real PNG header over a tiny body: the size check must fire before decoding.
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="too large") as error:
        decode_image(png)
    assert "scale it down" in error.value.hint


def test_tiny_and_transparent_images_are_refused():
    with pytest.raises(ImageError, match="only 8 × 8"):
        decode_image(encode(Image.new("RGB", (8, 8))))
    with pytest.raises(ImageError, match="fully transparent"):
        decode_image(encode(Image.new("RGBA", (32, 32), (0, 0, 0, 0))))


def test_truncated_file_is_reported_as_damaged():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match="damaged or truncated"):
        decode_image(data[: len(data) // 2])
