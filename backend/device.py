"""What the backend runs on, as reported in `welcome`."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceInfo:
    device: str
    gpu_name: str | None = None
    gpu_memory_mb: int | None = None


def describe_device(preference: str = "auto") -> DeviceInfo:
    """Resolve `preference` (auto, cpu, mps, cuda, cuda:N) against what torch can see.

    torch is imported lazily: the server answers pings and validates requests without it.
    """
    if importlib.util.find_spec("torch") is None:
        if preference not in ("auto", "cpu"):
            raise ValueError(f"device {preference!r} needs PyTorch, which is not installed")
        return DeviceInfo("cpu")
    import torch

    if preference.startswith("cuda") or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} was requested but CUDA is not available")
        index = int(preference.split(":", 1)[1]) if ":" in preference else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {preference!r}: only {torch.cuda.device_count()} CUDA device(s)")
        props = torch.cuda.get_device_properties(index)
        return DeviceInfo(f"cuda:{index}", props.name, props.total_memory // 2**20)
    mps = getattr(torch.backends, "mps", None)
    if preference == "mps" or (preference == "auto" and mps is not None and mps.is_available()):
        if mps is None or not mps.is_available():
            raise ValueError("device 'mps' was requested but Apple MPS is not available")
        return DeviceInfo("mps", "Apple GPU (MPS)")
    if preference not in ("auto", "cpu"):
        raise ValueError(f"unknown device {preference!r}; use auto, cpu, mps, cuda or cuda:N")
    return DeviceInfo("cpu")
