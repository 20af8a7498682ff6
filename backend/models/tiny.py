"""The `tiny` preset: every model's architecture with small random weights, built once.

Each model is written with `save_pretrained` into `<tiny root>/<repo id>/`, laid out like the real
repository, and then loaded by the very same `from_pretrained` code as the real weights. Its
output is noise by design: it exists to exercise the wiring on machines without weights (tests,
CI, a first try). A marker file labels the folder as tiny everywhere it surfaces. Each catalogue
entry names its builder (`ModelSpec.tiny`, in records.py); tiny models are not locked.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .catalogue import FullOnly, ModelSpec
from .hub import quiet_hub_libraries

TINY_FORMAT = 1
"""Bump when a builder changes: folders with another format are rebuilt."""
MARKER = "lift3d-tiny.json"


def tiny_root(override: Path | None = None) -> Path:
    """LIFT3D_TINY_MODELS, else ~/.cache/lift3d/tiny-models (next to, not inside, the HF cache)."""
    if override is not None:
        return Path(override)
    env = os.environ.get("LIFT3D_TINY_MODELS")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lift3d" / "tiny-models"


def tiny_folder(spec: ModelSpec, root: Path) -> Path:
    return root / spec.repo_id


def is_tiny(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def _marker_ok(folder: Path, spec: ModelSpec) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == TINY_FORMAT and marker.get("repo_id") == spec.repo_id


def ensure_tiny(spec: ModelSpec, root: Path) -> tuple[Path, bool]:
    """The tiny folder of `spec`, built if missing or outdated → (folder, whether it was built).

    Built in a temporary sibling and renamed into place, so an interrupted build never leaves a
    half-written model that a later run would trust."""
    if isinstance(spec.tiny, FullOnly):
        raise ValueError(f"the {spec.role} model ({spec.repo_id}) has no tiny version ({spec.tiny.reason}); it is "
                         f"only available in the full preset")
    folder = tiny_folder(spec, root)
    if _marker_ok(folder, spec):
        return folder, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    quiet_hub_libraries()
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        spec.tiny(staging)
        (staging / MARKER).write_text(json.dumps(
            {"format": TINY_FORMAT, "repo_id": spec.repo_id, "role": spec.role,
             "note": "random weights: output is noise; checks the wiring only"}, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        try:
            staging.rename(folder)
        except OSError:
            if not _marker_ok(folder, spec):  # another process finished first; anything else is real
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder, True
