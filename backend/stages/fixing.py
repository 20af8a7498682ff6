"""The single-step fixer of Difix3D+, as the pipeline sees it: one interface over Difix, Difix-ref
and SD-Turbo, chosen by the `fixer` option.

    fixer = load_fixer(registry, "difix-ref")
    clean = fixer.fix(renders, references)     # [B, 3, H, W] in [0, 1] → same shape

Used by progressive fixing in stage 1 (`geometry/progressive_fix.py`), on stage 2's refinement
targets, on the final renders (turntable) and by `enhance` requests.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ..models import records
from ..models.catalogue import ModelRecord


class ImageFixer(Protocol):
    uses_reference: bool
    """True when `fix` uses `references` (Difix-ref); the others ignore them."""

    def fix(self, images: Tensor, references: Tensor | None = None, *,
            generator: torch.Generator | None = None) -> Tensor:
        """images [B, 3, H, W] in [0, 1] (sides multiples of 8), references [B, 3, H', W'] or None
        → cleaned images [B, 3, H, W] in [0, 1]."""
        ...


FIXER_RECORDS: dict[str, ModelRecord] = {
    "difix": records.DIFIX,
    "difix-ref": records.DIFIX_REF,
    "sd-turbo": records.SD_TURBO,
}
"""`fixer` option value → the model record that loads it ("off" has none)."""


def fixer_record(name: str) -> ModelRecord | None:
    if name == "off":
        return None
    try:
        return FIXER_RECORDS[name]
    except KeyError:
        raise ValueError(f"unknown fixer {name!r}; choose off, {', '.join(FIXER_RECORDS)}") from None


def load_fixer(registry, name: str) -> ImageFixer | None:
    """The fixer the option names, loaded once per process by the registry (None for "off")."""
    record = fixer_record(name)
    return None if record is None else registry.get(record)
