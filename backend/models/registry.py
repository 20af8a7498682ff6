"""One registry per process: resolves the preset, finds or builds each model's folder, loads each
model once and keeps it resident between jobs, and frees it on request."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .catalogue import CATALOGUE, ModelSpec, spec
from .hub import DOWNLOAD_COMMAND, ModelUnavailableError, cached_snapshot, companion_snapshot, offline, \
    require_snapshot
from .tiny import ensure_tiny, is_tiny, tiny_root

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


def resolve_preset(name: str, *, allow_download: bool = True) -> str:
    """auto → full when every required model is cached, or missing ones can be downloaded now."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; use one of {', '.join(PRESETS)}")
    if name != "auto":
        return name
    missing = [s for s in required_specs() if cached_snapshot(s) is None]
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
        if self.settings.dtype == "auto":
            self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        else:
            self.dtype = DTYPES[self.settings.dtype]
        self.preset = resolve_preset(self.settings.preset, allow_download=self.settings.allow_download)
        self.tiny_root = tiny_root(self.settings.tiny_dir)
        self._models: dict[str, Any] = {}
        self._lock = threading.RLock()

    @property
    def is_tiny(self) -> bool:
        return self.preset == "tiny"

    def folder(self, role: str) -> Path:
        """The local folder of `role`'s weights (downloaded or built on first use)."""
        model = spec(role)
        if self.is_tiny:
            folder, built = ensure_tiny(model, self.tiny_root)
            if built:
                log.info("built tiny %s model in %s", role, folder)
            return folder
        return require_snapshot(model, allow_download=self.settings.allow_download)

    def get(self, name: str) -> Any:
        """The loaded wrapper for `name` (a role, or "segmenter" = CLIPSeg + SAM), loaded once."""
        with self._lock:
            if name not in self._models:
                if name not in _LOADERS:
                    raise KeyError(f"unknown model {name!r}; known: {', '.join(_LOADERS)}")
                _quiet_hub_libraries()
                log.info("loading %s (%s preset) on %s", name, self.preset, self.device)
                self._models[name] = _LOADERS[name](self)
            return self._models[name]

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def free(self, *names: str) -> None:
        """Unload `names` (all when none given) and give their memory back."""
        with self._lock:
            for name in names or list(self._models):
                self._models.pop(name, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def describe(self) -> str:
        return f"{self.preset} ({TINY_NOTICE})" if self.is_tiny else self.preset

    def _placement(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype}


def _quiet_hub_libraries() -> None:
    # Per-file "Loading weights" bars from transformers/diffusers are noise in a server log.
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _zero123(role: str, stable: bool) -> Callable[[ModelRegistry], Any]:
    def load(registry: ModelRegistry):
        from .zero123 import Zero123

        return Zero123.from_pretrained(registry.folder(role), stable=stable, **registry._placement())
    return load


def _simple(role: str, module: str, cls: str) -> Callable[[ModelRegistry], Any]:
    def load(registry: ModelRegistry):
        import importlib

        wrapper = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
        return wrapper.from_pretrained(registry.folder(role), **registry._placement())
    return load


def _segmenter(registry: ModelRegistry):
    from .segmentation import TextSegmenter

    return TextSegmenter.from_pretrained(registry.folder("clipseg"), registry.folder("sam"), **registry._placement())


def _zero123_plus_plus(registry: ModelRegistry):
    from .multiview import Zero123PlusPlus

    if registry.is_tiny:
        raise ModelUnavailableError("Zero123++ has no tiny version (its pipeline code comes from the Hub); the tiny "
                                    "preset uses Zero123 for the six pseudo-views")
    folder = registry.folder("multiview")
    return Zero123PlusPlus.from_pretrained(folder, companion_snapshot(spec("multiview")), **registry._placement())


_LOADERS: dict[str, Callable[[ModelRegistry], Any]] = {
    "novel_view": _zero123("novel_view", stable=False),
    "novel_view_stable": _zero123("novel_view_stable", stable=True),
    "multiview": _zero123_plus_plus,
    "depth": _simple("depth", "depth", "DepthEstimator"),
    "clip": _simple("clip", "clip", "Clip"),
    "segmenter": _segmenter,
    "refiner": _simple("refiner", "refiners", "PromptRefiner"),
    "fixer": _simple("fixer", "refiners", "TurboFixer"),
    "captioner": _simple("captioner", "captioner", "Captioner"),
}


__all__ = ["ModelRegistry", "ModelSettings", "PRESETS", "TINY_NOTICE", "resolve_preset", "required_specs",
           "is_tiny"]
