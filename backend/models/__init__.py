"""Pretrained models behind one registry (`registry.ModelRegistry`) with `full`, `tiny` and `auto`
presets. One thin wrapper per model family; every model is registered once, in `records.py`
(ids, licences, sizes, loader, tiny builder); `lock.py` pins the commits `models download` fetched.

Nothing is imported eagerly: the registry pulls in torch and the wrappers pull in
diffusers/transformers, so `import backend.models.tiny` or `.records` stays cheap. The names
below resolve on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalogue import ModelRecord, ModelSpec
    from .hub import ModelUnavailableError
    from .records import CATALOGUE, RECORDS
    from .registry import PRESETS, TINY_NOTICE, ModelRegistry, ModelSettings

_EXPORTS = {"CATALOGUE": "records", "RECORDS": "records", "ModelRecord": "catalogue", "ModelSpec": "catalogue",
            "ModelUnavailableError": "hub", "PRESETS": "registry", "TINY_NOTICE": "registry",
            "ModelRegistry": "registry", "ModelSettings": "registry"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
