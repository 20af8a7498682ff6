"""The Blender versions the tests run against agree with what the extension claims: the manifest's
`blender_version_min` is the oldest Blender `./lift3d test --blender VERSION` pins, CI runs the
blender tier on it, and the main venv's bpy (pyproject.toml) is the pin for its version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins() -> dict[str, str]:
    """{"4.2": "4.2.23", ...} from the lift3d script's BLENDER_PINS."""
    line = re.search(r'^BLENDER_PINS="([^"]*)"$', (ROOT / "lift3d").read_text(), re.MULTILINE)
    assert line, "BLENDER_PINS not found in ./lift3d"
    return dict(entry.split("=", 1) for entry in line.group(1).split())


def as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_each_pin_is_an_exact_release_of_its_blender():
    assert len(pins()) >= 2
    for version, pin in pins().items():
        assert re.fullmatch(r"\d+\.\d+", version) and re.fullmatch(r"\d+\.\d+\.\d+", pin)
        assert pin.startswith(version + "."), (version, pin)


def test_the_main_venv_bpy_is_the_pin_for_its_blender():
    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    (spec,) = [s for s in test_extra if re.match(r"bpy\b", s)]
    version = spec.removeprefix("bpy==")
    assert pins().get(".".join(version.split(".")[:2])) == version, spec


def test_the_manifest_minimum_is_the_oldest_pinned_blender_and_ci_tests_it():
    oldest = min(pins(), key=as_tuple)
    manifest = tomllib.loads((ROOT / "blender_addon" / "blender_manifest.toml").read_text())
    assert manifest["blender_version_min"] == f"{oldest}.0"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^\./lift3d test --blender {re.escape(oldest)}\b", ci, re.MULTILINE), ci
