"""What a job did, for `report.json` (CLI) and the result's `MeshMetadata`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobReport:
    timings: dict[str, float] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)
    """stage → "hit" (reused from the result cache) or "miss" (computed and stored)."""
    losses: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    prompt: str = ""
    """The prompt the texture was made with (the caption when the artist gave none)."""
    captioned: bool = False
    warnings: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def timed(self, name: str, started: float) -> None:
        """Add the time since `started` (time.perf_counter()) to stage `name`."""
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "captioned": self.captioned, "timings_s": self.timings, "cache": self.cache,
                "warnings": self.warnings, "losses": self.losses, "config": self.config}
