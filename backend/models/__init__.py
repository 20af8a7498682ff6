"""Pretrained models behind one registry (`registry.ModelRegistry`) with `full`, `tiny` and `auto`
presets. One thin wrapper per model family; see `catalogue.py` for ids, licences and sizes.

Wrappers are imported lazily (they pull in diffusers/transformers), so importing this package is
cheap.
"""

from .catalogue import CATALOGUE, ModelSpec
from .hub import ModelUnavailableError
from .registry import PRESETS, TINY_NOTICE, ModelRegistry, ModelSettings

__all__ = ["CATALOGUE", "ModelSpec", "ModelUnavailableError", "PRESETS", "TINY_NOTICE", "ModelRegistry",
           "ModelSettings"]
