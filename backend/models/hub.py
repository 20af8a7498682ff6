"""The Hugging Face cache: what is there, fetching what is not, and checking what was fetched.

Everything goes through `huggingface_hub`, so `HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`,
tokens and mirrors (`HF_ENDPOINT`) behave as they do for every other tool on the machine.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .catalogue import ModelSpec

DOWNLOAD_COMMAND = "python -m backend models download --preset full"
_TRUE = {"1", "true", "yes", "on"}


class ModelUnavailableError(RuntimeError):
    """A model's weights are not on this machine and cannot be fetched now."""


def offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, re-read so that a change at run time counts."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def cache_root() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _present(folder: Path, name: str) -> bool:
    return (folder / name).is_file()


def missing_files(spec: ModelSpec, folder: Path) -> list[str]:
    """Weight files (one per preference group) and top-level configs the folder lacks."""
    missing = [group[0] for group in spec.weights if not any(_present(folder, n) for n in group)]
    for pattern in spec.configs:
        if "*" not in pattern and not _present(folder, pattern):
            missing.append(pattern)
    if not any(folder.glob("**/*.json")):
        missing.append("a configuration file (*.json)")
    return missing


def cached_snapshot(spec: ModelSpec) -> Path | None:
    """The complete local snapshot of `spec` in the HF cache, or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(spec.repo_id, revision=spec.revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None
    if missing_files(spec, folder) or (spec.companion and companion_snapshot(spec) is None):
        return None
    return folder


def companion_snapshot(spec: ModelSpec) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if spec.companion is None:
        return None
    try:
        return Path(snapshot_download(spec.companion, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None


def select_files(spec: ModelSpec, repo_files: list[str]) -> list[str]:
    """The repository files to download: the matching configs, and for each weight the first
    name of its preference list that the repository has."""
    available = set(repo_files)
    chosen = [f for f in repo_files if any(fnmatch.fnmatch(f, p) for p in spec.configs)]
    for group in spec.weights:
        name = next((n for n in group if n in available), None)
        if name is None:
            raise ModelUnavailableError(
                f"{spec.repo_id}@{spec.revision} has none of {', '.join(group)}; the repository layout "
                f"changed, pin an older revision in backend/models/catalogue.py")
        chosen.append(name)
    return sorted(set(chosen))


def download(spec: ModelSpec) -> Path:
    """Fetch `spec` into the HF cache (progress bars on stderr) → its snapshot folder."""
    if offline():
        raise ModelUnavailableError(
            f"cannot download {spec.repo_id}: offline mode is on (HF_HUB_OFFLINE). Unset it on a machine "
            f"with internet access and run `{DOWNLOAD_COMMAND}`, or copy a Hugging Face cache here "
            f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')})")
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        files = select_files(spec, HfApi().list_repo_files(spec.repo_id, revision=spec.revision))
        folder = Path(snapshot_download(spec.repo_id, revision=spec.revision, allow_patterns=files))
        if spec.companion:
            snapshot_download(spec.companion)
    except (HfHubHTTPError, OSError) as exc:
        raise ModelUnavailableError(
            f"could not download {spec.repo_id} ({spec.role}): {exc}. Check the internet connection, "
            f"accept the model's licence on huggingface.co if it is gated (then `hf auth login`), "
            f"and retry `{DOWNLOAD_COMMAND}`") from exc
    missing = missing_files(spec, folder)
    if missing:
        raise ModelUnavailableError(f"download of {spec.repo_id} is incomplete: missing {', '.join(missing)}")
    return folder


def require_snapshot(spec: ModelSpec, *, allow_download: bool) -> Path:
    """The local snapshot of `spec`, downloading it when allowed and online."""
    folder = cached_snapshot(spec)
    if folder is not None:
        return folder
    if allow_download and not offline():
        return download(spec)
    why = "offline mode is on (HF_HUB_OFFLINE)" if offline() else "downloads are off for this run"
    raise ModelUnavailableError(
        f"the {spec.role} model {spec.repo_id} is not in the Hugging Face cache ({cache_root()}) and {why}. "
        f"Download the full models once with `{DOWNLOAD_COMMAND}` on a machine with internet access "
        f"(~{spec.size_mb} MB for this one), or run with `--models tiny` to check the wiring only")


@dataclass
class FileCheck:
    name: str
    ok: bool
    detail: str


def _git_blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_snapshot(folder: Path) -> list[FileCheck]:
    """Re-hash every file of a HF-cache snapshot against the name of the blob it links to.

    The cache stores each file as blobs/<etag>: the sha256 for LFS files (weights), the git blob
    sha1 for small files, so a truncated or corrupted download shows up as a mismatch. Files that
    are not cache links (a hand-copied folder) can only be checked for being readable."""
    checks = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        etag = Path(os.readlink(path)).name if path.is_symlink() else ""
        if len(etag) == 64:
            actual = _sha256(path)
        elif len(etag) == 40:
            actual = _git_blob_sha1(path)
        else:
            checks.append(FileCheck(name, True, "not a cache link; readable"))
            continue
        ok = actual == etag
        checks.append(FileCheck(name, ok, "hash ok" if ok else f"hash mismatch (expected {etag[:12]}…, got {actual[:12]}…)"))
    return checks
