"""One registry per process: resolves the preset, finds or builds each model's folder (at the
commit the lock file names, in the full preset), loads each model once and keeps it resident
between jobs, and frees it on request.

    registry.get(records.NOVEL_VIEW)   # -> Zero123 (typed through ModelRecord[Zero123])
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import torch

from .catalogue import FullOnly, LoadContext, ModelRecord, ModelSpec
from .hub import DOWNLOAD_COMMAND, ModelUnavailableError, cached_snapshot, offline, \
    quiet_hub_libraries, require_snapshot
from .lock import ModelLock
from .records import CATALOGUE
from .tiny import ensure_tiny, is_tiny, tiny_root
from .weights import default_dtype

W = TypeVar("W")

log = logging.getLogger(__name__)

PRESETS = ("full", "tiny", "auto")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
TINY_NOTICE = "tiny preset: random weights, the output is noise and only checks the wiring"


@dataclass(frozen=True)
class ModelSettings:
    preset: str = "auto"
    """full (the real weights), tiny (random weights, for tests and wiring checks), or auto (full
    when the weights are cached or can be downloaded; otherwise an error, never tiny)."""
    device: str = "auto"
    """auto, cpu, mps, cuda or cuda:N."""
    dtype: str = "auto"
    """auto (float16 on CUDA, float32 elsewhere), float16, bfloat16 or float32."""
    allow_download: bool = True
    """Whether the full preset may fetch missing weights (never in offline mode)."""
    tiny_dir: Path | None = None
    """Where tiny models are built (default: LIFT3D_TINY_MODELS or ~/.cache/lift3d/tiny-models)."""
    lock_file: Path | None = None
    """The models lock file the full preset loads commits from (default: LIFT3D_MODELS_LOCK or
    ~/.cache/lift3d/models.lock.json; see lock.py)."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown model preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; use auto or one of {', '.join(DTYPES)}")


def required_specs() -> list[ModelSpec]:
    """The models the default pipeline needs (optional ones only load when a setting asks)."""
    return [s for s in CATALOGUE.values() if not s.optional]


def _hub_reachable(repo_id: str) -> bool:
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(repo_id, timeout=5)
        return True
    except Exception as exc:  # any failure means "cannot download now"; the reason is logged
        log.info("Hugging Face Hub not reachable (%s)", exc)
        return False


def resolve_preset(name: str, *, allow_download: bool = True, lock: ModelLock | None = None) -> str:
    """auto → full when every required model is cached (at its locked commit when `lock`, default
    the lock file's, has one), or missing ones can be downloaded now."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; use one of {', '.join(PRESETS)}")
    if name != "auto":
        return name
    lock = lock if lock is not None else ModelLock.load()
    missing = [s for s in required_specs() if cached_snapshot(s, lock) is None]
    if not missing:
        return "full"
    if allow_download and not offline() and _hub_reachable(missing[0].repo_id):
        return "full"
    reason = "offline mode is on (HF_HUB_OFFLINE)" if offline() else (
        "downloads are off" if not allow_download else "the Hugging Face Hub cannot be reached")
    names = ", ".join(f"{s.role} ({s.repo_id})" for s in missing)
    raise ModelUnavailableError(
        f"models 'auto': these models are not in the Hugging Face cache and {reason}: {names}. "
        f"Run `{DOWNLOAD_COMMAND}` on a machine with internet access, or use `--models tiny` to check the "
        f"wiring with random weights (the result is noise)")


def _resolve_device(name: str) -> torch.device:
    from ..device import describe_device

    return torch.device(describe_device(name).device)


class ModelRegistry:
    def __init__(self, settings: ModelSettings | None = None):
        self.settings = settings or ModelSettings()
        self.device = _resolve_device(self.settings.device)
        self.dtype = default_dtype(self.device) if self.settings.dtype == "auto" else DTYPES[self.settings.dtype]
        self.lock = ModelLock.load(self.settings.lock_file) if self.settings.preset != "tiny" else None
        """The commits the full preset loads (None in the tiny preset: tiny models are not locked)."""
        self.preset = resolve_preset(self.settings.preset, allow_download=self.settings.allow_download,
                                     lock=self.lock)
        self.tiny_root = tiny_root(self.settings.tiny_dir)
        self._models: dict[str, object] = {}
        self._lock = threading.RLock()

    @property
    def is_tiny(self) -> bool:
        return self.preset == "tiny"

    def folder(self, spec: ModelSpec) -> Path:
        """The local folder of a catalogue entry's weights (downloaded or built on first use)."""
        if self.is_tiny:
            folder, built = ensure_tiny(spec, self.tiny_root)
            if built:
                log.info("built tiny %s model in %s", spec.role, folder)
            return folder
        return require_snapshot(spec, allow_download=self.settings.allow_download, lock=self.lock)

    def get(self, record: ModelRecord[W]) -> W:
        """The loaded wrapper of `record` (a constant of records.py), loaded once."""
        if not isinstance(record, ModelRecord):
            raise TypeError(f"ModelRegistry.get takes a record from backend.models.records, not {record!r}")
        with self._lock:
            if record.name not in self._models:
                if self.is_tiny and record.full_only:
                    spec = record.full_only[0]
                    reason = f" ({spec.tiny.reason})" if isinstance(spec.tiny, FullOnly) else ""
                    raise ModelUnavailableError(f"the {record.name} model ({spec.repo_id}) has no tiny "
                                                f"version{reason}; it is only available in the full preset")
                quiet_hub_libraries()
                log.info("loading %s (%s preset) on %s", record.name, self.preset, self.device)
                self._models[record.name] = record.loader(self._context(record))
            return cast(W, self._models[record.name])

    def _context(self, record: ModelRecord) -> LoadContext:
        folders = tuple(self.folder(s) for s in record.weights)
        return LoadContext(folders, self.device, self.dtype, self.is_tiny)

    def present(self, record: ModelRecord) -> bool:
        """Whether `record` can load without a download: in the tiny preset, when it has a tiny
        version; in the full preset, when its weights are in the cache (at the locked commit).
        For optional models a setting prefers when they are there (Zero123++)."""
        if self.is_tiny:
            return not record.full_only
        return all(cached_snapshot(s, self.lock) is not None for s in record.weights)

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def free(self, *records: ModelRecord) -> None:
        """Unload `records` (all when none given) and give their memory back."""
        with self._lock:
            for name in [r.name for r in records] or list(self._models):
                self._models.pop(name, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def describe(self) -> str:
        return f"{self.preset} ({TINY_NOTICE})" if self.is_tiny else self.preset


__all__ = ["ModelRegistry", "ModelSettings", "PRESETS", "TINY_NOTICE", "resolve_preset", "required_specs",
           "is_tiny"]
