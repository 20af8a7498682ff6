"""A real Hugging Face cache layout on disk, for tests that run the full preset's loading path
(snapshot lookup, lock, hash verification, from_pretrained) without a download."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def etag(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix in (".safetensors", ".bin"):  # LFS files: sha256
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / f"models--{repo_id.replace('/', '--')}"


def put_in_hf_cache(cache: Path, repo_id: str, source: Path, *, commit: str = COMMIT,
                    ref: str | None = "main") -> Path:
    """Lay `source` out as huggingface_hub stores a downloaded snapshot of `repo_id`@`commit`
    (and point refs/`ref` at it unless `ref` is None) → the snapshot folder."""
    repo = repo_folder(cache, repo_id)
    if ref is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        blob = repo / "blobs" / etag(file)
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = repo / "snapshots" / commit / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return repo / "snapshots" / commit
