"""The types of the model registry: a catalogue entry per weight repository (`ModelSpec`) and a
record per model role (`ModelRecord`), which names its catalogue entries, its loader and, through
each entry, its tiny builder. The records themselves are all registered in `records.py`.

The `full` preset downloads `repo_id` into the normal Hugging Face cache; the `tiny` preset writes
the same architecture with small random weights into a local folder laid out like that repository
(see `tiny.py`), and both load through the same `from_pretrained` code in the wrappers.

Nothing here imports torch, diffusers or transformers: tiny builders are named lazily
(`TinyBuilder("module:function")`) and loaders import their wrapper when called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import torch

W = TypeVar("W")
"""The wrapper type a record loads (`Zero123`, `DepthEstimator`, ...)."""


@dataclass(frozen=True)
class TinyBuilder:
    """A tiny builder named lazily: `"module:function"` inside `backend.models`, a function that
    writes the architecture with small random weights into a folder (`save_pretrained` layout)."""
    target: str

    def resolve(self) -> Callable[[Path], None]:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)

    def __call__(self, folder: Path) -> None:
        self.resolve()(folder)


@dataclass(frozen=True)
class FullOnly:
    """The model has no tiny version (e.g. its code comes from the Hub); `reason` says why and
    what the tiny preset does instead."""
    reason: str


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One weight repository: where it comes from, what it costs, what it allows."""
    role: str
    """Its name in the catalogue (`models list`, `--role`); unique across all records."""
    repo_id: str
    """Hugging Face repository of the real weights."""
    licence: str
    """Licence of the weights, as stated on the model card."""
    commercial: bool
    """Whether the weights' licence allows commercial use (possibly with use-based restrictions)."""
    size_mb: int
    """Approximate download size of the files in `allow_patterns`."""
    vram_mb: int
    """Approximate GPU memory of the loaded weights in half precision."""
    configs: tuple[str, ...]
    """Glob patterns of the small files to fetch (configs, tokenizers, scheduler)."""
    weights: tuple[tuple[str, ...], ...]
    """One entry per weight file, each an ordered preference of names (half precision, then
    safetensors, then pickle): the download takes the first name the repository has, so no
    repository is fetched twice in two formats."""
    tiny: TinyBuilder | FullOnly
    """How the tiny preset builds it, or why it cannot (required: every entry says which)."""
    revision: str = "main"
    """Git revision requested from the Hub. `models download` resolves it to a commit and records
    that commit in the lock file (`lock.py`), which loading then uses."""
    optional: bool = False
    """Only used when a setting asks for it; `models download` skips it unless named."""
    summary: str = ""

    @property
    def has_tiny(self) -> bool:
        return isinstance(self.tiny, TinyBuilder)


@dataclass(frozen=True)
class LoadContext:
    """What a loader gets from the registry: the local folder of each of its record's catalogue
    entries (downloaded, or built for the tiny preset) and where the weights go."""
    folders: tuple[Path, ...]
    """One per `ModelRecord.weights` entry, in the same order."""
    device: torch.device
    dtype: torch.dtype
    tiny: bool

    @property
    def folder(self) -> Path:
        """The folder of a single-repository record."""
        (folder,) = self.folders
        return folder

    def placement(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype}


@dataclass(frozen=True, eq=False)
class ModelRecord(Generic[W]):
    """One model role the pipeline loads: its catalogue entries (several when one wrapper combines
    repositories, like the segmenter's CLIPSeg + SAM) and the loader that builds the wrapper `W`.
    `ModelRegistry.get(record)` returns a `W`, loaded once per process.

    Records compare by identity (each is a module-level constant in `records.py`)."""
    name: str
    """The registry key (`ModelRegistry.loaded()`, logs)."""
    weights: tuple[ModelSpec, ...]
    loader: Callable[[LoadContext], W]

    @property
    def spec(self) -> ModelSpec:
        """The catalogue entry of a single-repository record."""
        if len(self.weights) != 1:
            raise ValueError(f"the {self.name} model combines {len(self.weights)} repositories; use .weights")
        return self.weights[0]

    @property
    def optional(self) -> bool:
        return all(s.optional for s in self.weights)

    @property
    def full_only(self) -> list[ModelSpec]:
        """The entries without a tiny version (the record then loads in the full preset only)."""
        return [s for s in self.weights if not s.has_tiny]


# Weight-file patterns shared by the entries in records.py.
DIFFUSERS_CONFIGS = ("model_index.json", "*/config.json", "*/preprocessor_config.json", "scheduler/*.json",
                     "tokenizer/*")
TRANSFORMERS_CONFIGS = ("*.json", "*.txt")
SD_CONFIGS = ("model_index.json", "*/config.json", "scheduler/*.json", "tokenizer/*")


def diffusers_weights(*folders: str) -> tuple[tuple[str, ...], ...]:
    return tuple((f"{d}/diffusion_pytorch_model.fp16.safetensors", f"{d}/diffusion_pytorch_model.safetensors",
                  f"{d}/diffusion_pytorch_model.bin") for d in folders)


def transformers_weights(*folders: str) -> tuple[tuple[str, ...], ...]:
    prefix = [f"{d}/" if d else "" for d in folders]
    return tuple((f"{p}model.fp16.safetensors", f"{p}model.safetensors", f"{p}pytorch_model.bin") for p in prefix)
