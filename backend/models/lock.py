"""The lock file: which commit each model repository's requested revision resolved to.

`models download` writes the commit it fetched for every model repository into a JSON file; loading in the `full` preset and `models verify` use that exact
commit, so two machines sharing the file run the same weights even after a repository's `main`
moves on. Tiny models are not locked (they are built locally).

Where: `--lock PATH` (models commands), `--models-lock PATH` (serve, generate), else
`$LIFT3D_MODELS_LOCK`, else `~/.cache/lift3d/models.lock.json` (`$XDG_CACHE_HOME` respected; next
to the tiny models' folder).

    {"format": 1,
     "models": {"depth-anything/Depth-Anything-V2-Small-hf": {"revision": "main", "commit": "<40 hex>"}}}

An entry applies only while the catalogue still requests the same revision: pinning another
revision in `records.py` makes the old entry stale until `models download` locks the new one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LOCK_ENV = "LIFT3D_MODELS_LOCK"
LOCK_FORMAT = 1
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class LockFileError(ValueError):
    """The lock file exists but cannot be read as a Lift3D lock file."""


def lock_path(override: Path | None = None) -> Path:
    """The lock file to use: `override`, else $LIFT3D_MODELS_LOCK, else ~/.cache/lift3d/models.lock.json."""
    if override is not None:
        return Path(override)
    env = os.environ.get(LOCK_ENV)
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lift3d" / "models.lock.json"


def is_commit(revision: str) -> bool:
    return bool(_COMMIT.match(revision))


@dataclass(frozen=True)
class LockEntry:
    revision: str
    """The revision the catalogue requested (`main`, a tag, or a commit)."""
    commit: str
    """The commit it resolved to when it was downloaded."""


@dataclass
class ModelLock:
    path: Path
    entries: dict[str, LockEntry] = field(default_factory=dict)
    """By repository id."""

    @classmethod
    def load(cls, path: Path | None = None) -> ModelLock:
        """Read the lock file (`lock_path(path)`); a missing file is an empty lock."""
        path = lock_path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise LockFileError(f"cannot read the models lock file {path}: {exc}") from exc
        return cls(path, _parse(text, path))

    def entry(self, repo_id: str, revision: str) -> LockEntry | None:
        """The entry of `repo_id` if it locks `revision` (None when absent or stale)."""
        entry = self.entries.get(repo_id)
        return entry if entry is not None and entry.revision == revision else None

    def commit(self, repo_id: str, revision: str) -> str | None:
        entry = self.entry(repo_id, revision)
        return entry.commit if entry is not None else None

    def record(self, repo_id: str, revision: str, commit: str) -> None:
        """Lock `repo_id`@`revision` to `commit` and write the file at once, atomically, on top of
        the file as it is now (so entries another process wrote since this one read it are kept)."""
        if not is_commit(commit):
            raise ValueError(f"{commit!r} is not a commit id (40 hexadecimal digits)")
        self.entries = ModelLock.load(self.path).entries
        self.entries[repo_id] = LockEntry(revision, commit)
        self._write()

    def _write(self) -> None:
        data = {"format": LOCK_FORMAT,
                "note": "commits resolved by `python -m backend models download`; copy this file to another "
                        "machine (with the Hugging Face cache, or run models download there) to use the same weights",
                "models": {repo: {"revision": e.revision, "commit": e.commit}
                           for repo, e in sorted(self.entries.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(staging, self.path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise


def _parse(text: str, path: Path) -> dict[str, LockEntry]:
    try:
        data = json.loads(text)
        if data.get("format") != LOCK_FORMAT:
            raise LockFileError(f"the models lock file {path} has format {data.get('format')!r}; this Lift3D "
                                f"reads format {LOCK_FORMAT}")
        entries = {repo: LockEntry(str(e["revision"]), str(e["commit"])) for repo, e in data["models"].items()}
    except LockFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockFileError(f"the models lock file {path} is damaged ({type(exc).__name__}: {exc}); restore it "
                            f"or delete it and run `python -m backend models download` to write a new one") from exc
    bad = [repo for repo, e in entries.items() if not is_commit(e.commit)]
    if bad:
        raise LockFileError(f"the models lock file {path} has no valid commit for {', '.join(bad)}")
    return entries
