"""`python -m backend generate`: bad input exits non-zero with a clear message and writes nothing;
a tiny run writes the four outputs."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from backend.__main__ import main


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _huge_png_header() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "GIF")
    return buffer.getvalue()


@pytest.mark.parametrize("content, words", [
    (None, "no such file"),
    (b"", "empty"),
    (b"this is a text file, not a picture", "not an image"),
    (_huge_png_header(), "too large"),
    (_gif(), "GIF images are not supported"),
])
def test_bad_input_exits_non_zero_and_writes_nothing(tmp_path, capsys, content, words):
    image = tmp_path / "input.png"
    if content is not None:
        image.write_bytes(content)
    out = tmp_path / "out"
    code = main(["generate", str(image), "--prompt", "a cup", "--models", "tiny", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.startswith("error:")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["input.png"] if content is not None else [])


def test_bad_options_are_refused_before_any_work(tmp_path, capsys):
    image = tmp_path / "input.png"
    image.write_bytes(_png(Image.new("RGB", (64, 64), (200, 30, 30))))
    for option, words in [("faces=lots", "option 'faces' must be an integer from 500 to 500,000"),
                          ("faces=499", "option 'faces' must be an integer from 500 to 500,000, got 499"),
                          ("face=900", "unknown option 'face'"), ("fixer", "--option needs NAME=VALUE")]:
        code = main(["generate", str(image), "--models", "tiny", "--option", option, "--out", str(tmp_path / "o")])
        assert code == 2 and words in capsys.readouterr().err, option
        assert not (tmp_path / "o").exists()


def test_a_tiny_generation_writes_the_four_outputs(tmp_path, capsys):
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[24:72, 20:76] = (40, 90, 200, 255)
    image = tmp_path / "box.png"
    image.write_bytes(_png(Image.fromarray(rgba)))
    out = tmp_path / "result"
    code = main(["generate", str(image), "--prompt", "a blue box", "--preset", "draft", "--models", "tiny",
                 "--seed", "3", "--option", "geometry_steps=8", "--option", "texture_steps=1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["model.glb", "report.json", "splats.ply", "turntable.png"]
    report = json.loads((out / "report.json").read_text())
    assert report["tiny"] is True and report["seed"] == 3 and report["prompt"] == "a blue box"
    assert set(report["timings_s"]) == {"preprocess", "geometry", "mesh", "texture"}
    assert len(report["losses"]["geometry"]["reference rgb"]) == 8 and report["peak_memory"]["cpu_rss_mib"] > 0
    assert "NOTICE: tiny preset" in captured.err and "geometry" in captured.err  # the progress bars
    import trimesh

    scene = trimesh.load(out / "model.glb")
    mesh = next(iter(scene.geometry.values()))
    assert len(mesh.faces) == report["faces"] and mesh.visual.uv is not None
    sheet = Image.open(out / "turntable.png")
    assert sheet.size == (4 * 256, 2 * 256 + 24)  # eight views plus the tiny-preset label


def test_with_a_fixer_the_turntable_is_enhanced_and_the_raw_one_kept(tmp_path, capsys, monkeypatch):
    """Difix3D+'s post-render step: the final renders go through the fixer (here tiny Difix-ref,
    given the input view as reference); the un-enhanced sheet is kept beside it."""
    from backend.models.difix import DifixFixer

    calls = []
    fix = DifixFixer.fix

    def counting(self, images, references=None, **kwargs):
        calls.append((tuple(images.shape), None if references is None else tuple(references.shape)))
        return fix(self, images, references, **kwargs)

    monkeypatch.setattr(DifixFixer, "fix", counting)
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[24:72, 20:76] = (40, 90, 200, 255)
    image = tmp_path / "box.png"
    image.write_bytes(_png(Image.fromarray(rgba)))
    out = tmp_path / "result"
    code = main(["generate", str(image), "--prompt", "a blue box", "--preset", "draft", "--models", "tiny",
                 "--option", "geometry_steps=4", "--option", "texture_steps=1", "--option", "fixer=difix-ref",
                 "--option", "progressive_fix=false", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["model.glb", "report.json", "splats.ply", "turntable.png",
                                                     "turntable_raw.png"]
    # One call on the texture stage's target, one on the eight turntable views; both with references.
    assert (8, 3, 256, 256) in [shape for shape, _ in calls]
    assert all(refs is not None and refs[0] == shape[0] for shape, refs in calls) and len(calls) == 2
    enhanced, raw = (np.asarray(Image.open(out / name)) for name in ("turntable.png", "turntable_raw.png"))
    assert enhanced.shape == raw.shape and np.abs(enhanced.astype(int) - raw.astype(int)).mean() > 1
    assert json.loads((out / "report.json").read_text())["config"]["fixer"]["model"] == "difix-ref"
