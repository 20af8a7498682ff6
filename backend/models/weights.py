"""Small helpers shared by the wrappers' loaders."""

from __future__ import annotations

from pathlib import Path

import torch


def torch_variant(folder: Path, subfolders: tuple[str, ...]) -> str | None:
    """"fp16" when every component folder holds half-precision files (what `models download`
    prefers for the Stable Diffusion family), else None (the default file names)."""
    has_fp16 = [any((folder / sub).glob("*.fp16.safetensors")) for sub in subfolders]
    return "fp16" if all(has_fp16) else None


def default_dtype(device: torch.device | str) -> torch.dtype:
    """Half precision on CUDA (what the weights were trained for and half the memory); float32
    elsewhere, because CPU kernels for float16 are slow or missing."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32
