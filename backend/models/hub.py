"""The Hugging Face cache: what is there, fetching what is not, and checking what was fetched.

Everything goes through `huggingface_hub`, so `HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`,
tokens and mirrors (`HF_ENDPOINT`) behave as they do for every other tool on the machine.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .catalogue import ModelSpec
from .lock import ModelLock, is_commit

DOWNLOAD_COMMAND = "python -m backend models download --preset full"
_TRUE = {"1", "true", "yes", "on"}
log = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    """A model's weights are not on this machine and cannot be fetched now."""


def quiet_hub_libraries() -> None:
    """Per-file "Loading weights" bars from transformers/diffusers are noise in a server log."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


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


def local_snapshot(repo_id: str, revision: str) -> Path | None:
    """The snapshot folder of `repo_id` at `revision` (a commit, or a branch or tag the cache has a
    ref for) in the HF cache, or None. Read from the cache layout directly: the check that matters
    is `missing_files`, and huggingface_hub's own offline lookup rejects a snapshot downloaded with
    allow_patterns, since its cached tree listing names every file of the repository."""
    from huggingface_hub.file_download import repo_folder_name

    repo = cache_root() / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = revision
    if not is_commit(revision):
        try:
            commit = (repo / "refs" / revision).read_text().strip()
        except OSError:
            return None
    folder = repo / "snapshots" / commit
    return folder if is_commit(commit) and folder.is_dir() else None


def _wanted(repo_id: str, revision: str, lock: ModelLock | None) -> str:
    """The locked commit of `repo_id`@`revision` when the lock has one, else `revision` itself."""
    return (lock.commit(repo_id, revision) if lock is not None else None) or revision


def cached_snapshot(spec: ModelSpec, lock: ModelLock | None = None) -> Path | None:
    """The complete local snapshot of `spec` in the HF cache (at its locked commit when `lock` has
    one, else at the requested revision), or None."""
    folder = local_snapshot(spec.repo_id, _wanted(spec.repo_id, spec.revision, lock))
    if folder is None or missing_files(spec, folder):
        return None
    return folder


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
                f"changed, pin an older revision in backend/models/records.py")
        chosen.append(name)
    return sorted(set(chosen))


def lock_snapshot(spec: ModelSpec, folder: Path, lock: ModelLock) -> str | None:
    """Record the commit of the snapshot `folder` in `lock` → the commit, or None when `folder` is
    not a cache snapshot. A lock file that cannot be written is logged, not raised: the weights are
    there either way."""
    if is_commit(folder.name) and lock.commit(spec.repo_id, spec.revision) != folder.name:
        try:
            lock.record(spec.repo_id, spec.revision, folder.name)
        except OSError as exc:
            log.warning("could not record %s@%s in the models lock file %s: %s", spec.repo_id, folder.name,
                        lock.path, exc)
    return folder.name if is_commit(folder.name) else None


def download(spec: ModelSpec, lock: ModelLock | None = None, *, update: bool = False) -> Path:
    """Fetch `spec` into the HF cache (progress bars on stderr) → its snapshot folder.

    Fetches the locked commit when `lock` has one (unless `update`), else the requested revision;
    either way the commit fetched is recorded in `lock`."""
    if offline():
        raise ModelUnavailableError(
            f"cannot download {spec.repo_id}: offline mode is on (HF_HUB_OFFLINE). Unset it on a machine "
            f"with internet access and run `{DOWNLOAD_COMMAND}`, or copy a Hugging Face cache here "
            f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')})")
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    use = None if update else lock
    revision = _wanted(spec.repo_id, spec.revision, use)
    try:
        info = HfApi().model_info(spec.repo_id, revision=revision)
        files = select_files(spec, [s.rfilename for s in info.siblings or ()])
        folder = Path(snapshot_download(spec.repo_id, revision=revision, allow_patterns=files))
    except (HfHubHTTPError, OSError) as exc:
        raise ModelUnavailableError(
            f"could not download {spec.repo_id}@{revision} ({spec.role}): {exc}. Check the internet connection, "
            f"accept the model's licence on huggingface.co if it is gated (then `hf auth login`), "
            f"and retry `{DOWNLOAD_COMMAND}`") from exc
    missing = missing_files(spec, folder)
    if missing:
        raise ModelUnavailableError(f"download of {spec.repo_id} is incomplete: missing {', '.join(missing)}")
    if lock is not None:
        lock_snapshot(spec, folder, lock)
    return folder


def require_snapshot(spec: ModelSpec, *, allow_download: bool, lock: ModelLock | None = None) -> Path:
    """The local snapshot of `spec` (its locked commit when `lock` has one), downloading it when
    allowed and online."""
    folder = cached_snapshot(spec, lock)
    if folder is not None:
        return folder
    if allow_download and not offline():
        return download(spec, lock)
    why = "offline mode is on (HF_HUB_OFFLINE)" if offline() else "downloads are off for this run"
    locked = lock.commit(spec.repo_id, spec.revision) if lock is not None else None
    if locked is not None:
        other = local_snapshot(spec.repo_id, spec.revision)
        has = f"; the cache has {other.name} for {spec.revision}" if other is not None else ""
        raise ModelUnavailableError(
            f"the {spec.role} model {spec.repo_id} is locked to commit {locked} by {lock.path}, but that snapshot "
            f"is not in the Hugging Face cache ({cache_root()}){has}, and {why}. Run `{DOWNLOAD_COMMAND}` where "
            f"the Hub is reachable to fetch the locked commit, or `{DOWNLOAD_COMMAND} --update` to lock the "
            f"newest {spec.revision} instead")
    raise ModelUnavailableError(
        f"the {spec.role} model {spec.repo_id} is not in the Hugging Face cache ({cache_root()}) and {why}. "
        f"Download the full models once with `{DOWNLOAD_COMMAND}` on a machine with internet access "
        f"(~{spec.size_mb} MB for this one), or run with `--models tiny` to check the wiring only")


@dataclass(frozen=True)
class RevisionCheck:
    """Which commit of `spec` loading would use, against the lock."""
    folder: Path | None
    """The snapshot loading uses (None: not loadable)."""
    revision: str
    """For a table: the commit (and whether it is locked)."""
    problem: str | None
    """Why `folder` is None (not cached, or the cache has another commit than the lock)."""
    mismatch: bool = False
    """The cache has the requested revision at another commit than the locked one."""


def check_revision(spec: ModelSpec, lock: ModelLock) -> RevisionCheck:
    locked = lock.commit(spec.repo_id, spec.revision)
    folder = cached_snapshot(spec, lock)
    if locked is not None:
        text = f"{locked[:12]} (locked)"
        if folder is not None:
            return RevisionCheck(folder, text, None)
        other = local_snapshot(spec.repo_id, spec.revision)
        if other is not None and other.name != locked:
            return RevisionCheck(None, text, f"lock mismatch: the cache has {other.name[:12]} for {spec.revision}, "
                                             f"the lock says {locked[:12]}", mismatch=True)
        return RevisionCheck(None, text, f"the locked commit {locked[:12]} is not cached")
    if folder is not None:
        return RevisionCheck(folder, f"{spec.revision} = {folder.name[:12]} (not locked)", None)
    return RevisionCheck(None, f"{spec.revision} (not locked)", "not cached")


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
