"""Results of the expensive stages, kept by content hash so that changing only the prompt re-runs
only what the prompt affects.

An entry is a folder of numpy arrays (`arrays.npz`, loaded without pickle) and a small JSON
`meta.json`, written to a temporary folder and renamed into place, so a crash never leaves a
half-written entry that looks complete. The cache is bounded twice: a memory LRU (bytes) in front
of a disk LRU (bytes, by last use). A corrupt or unreadable entry is logged, deleted and treated
as a miss: the cache can only save time, never fail a job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bump when what a stage stores changes meaning: older entries then simply miss."""


def content_key(*parts: Any) -> str:
    """sha256 over bytes, arrays (dtype, shape and data) and JSON-able settings, in order."""
    digest = hashlib.sha256(f"lift3d-cache-v{CACHE_FORMAT}".encode())
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview)):
            digest.update(b"b%d:" % len(part))
            digest.update(part)
        elif isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            digest.update(f"a{array.dtype.str}{array.shape}:".encode())
            digest.update(array.data)
        else:
            text = json.dumps(part, sort_keys=True, default=str, separators=(",", ":"))
            digest.update(b"j%d:" % len(text))
            digest.update(text.encode())
    return digest.hexdigest()


@dataclass
class Entry:
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values()) + len(json.dumps(self.meta, default=str))


def default_cache_dir() -> Path:
    env = os.environ.get("LIFT3D_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lift3d" / "results"


class ResultCache:
    def __init__(self, folder: Path | None = None, *, max_disk_bytes: int = 4 << 30, max_memory_bytes: int = 1 << 30):
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.max_disk_bytes, self.max_memory_bytes = max_disk_bytes, max_memory_bytes
        self._memory: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.Lock()
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    def _path(self, stage: str, key: str) -> Path:
        return self.folder / stage / key

    def get(self, stage: str, key: str) -> Entry | None:
        with self._lock:
            entry = self._memory.get((stage, key))
            if entry is not None:
                self._memory.move_to_end((stage, key))
        if entry is None:
            entry = self._load(stage, key)
            if entry is not None:
                self._remember(stage, key, entry)
        counter = self.hits if entry is not None else self.misses
        counter[stage] = counter.get(stage, 0) + 1
        return entry

    def put(self, stage: str, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> None:
        entry = Entry({k: _frozen(np.array(v)) for k, v in arrays.items()}, dict(meta or {}))
        self._remember(stage, key, entry)
        try:
            self._store(stage, key, entry)
            self._trim_disk()
        except OSError as exc:  # a full or read-only disk costs speed, not the job
            log.warning("could not write cache entry %s/%s: %s", stage, key[:12], exc)

    def _remember(self, stage: str, key: str, entry: Entry) -> None:
        if entry.nbytes > self.max_memory_bytes:
            return
        with self._lock:
            old = self._memory.pop((stage, key), None)
            self._memory_bytes -= old.nbytes if old else 0
            self._memory[(stage, key)] = entry
            self._memory_bytes += entry.nbytes
            while self._memory_bytes > self.max_memory_bytes and self._memory:
                _, evicted = self._memory.popitem(last=False)
                self._memory_bytes -= evicted.nbytes

    def _store(self, stage: str, key: str, entry: Entry) -> None:
        target = self._path(stage, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=target.parent))
        try:
            np.savez(staging / "arrays.npz", **entry.arrays)
            (staging / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, "meta": entry.meta}, default=str))
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _load(self, stage: str, key: str) -> Entry | None:
        path = self._path(stage, key)
        if not path.is_dir():
            return None
        try:
            document = json.loads((path / "meta.json").read_text())
            if document.get("format") != CACHE_FORMAT:
                raise ValueError(f"cache format {document.get('format')}, expected {CACHE_FORMAT}")
            with np.load(path / "arrays.npz", allow_pickle=False) as data:
                arrays = {name: _frozen(data[name]) for name in data.files}
            os.utime(path)  # last use, for the disk LRU
            return Entry(arrays, document.get("meta", {}))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("ignoring unreadable cache entry %s/%s (%s); it will be recomputed", stage, key[:12], exc)
            shutil.rmtree(path, ignore_errors=True)
            return None

    def _trim_disk(self) -> None:
        entries = []
        for stage_dir in self.folder.iterdir() if self.folder.is_dir() else []:
            for path in stage_dir.iterdir() if stage_dir.is_dir() else []:
                if path.name.startswith("."):
                    continue
                size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
                entries.append((path.stat().st_mtime, size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_disk_bytes:
                break
            shutil.rmtree(path, ignore_errors=True)
            total -= size

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._memory_bytes = 0

    def stats(self) -> dict[str, Any]:
        return {"hits": dict(self.hits), "misses": dict(self.misses), "memory_bytes": self._memory_bytes}


def _frozen(array: np.ndarray) -> np.ndarray:
    # Entries are shared between jobs through the memory LRU: nobody may modify them in place.
    array.flags.writeable = False
    return array
