"""Loading the resident models in the background when the server starts, so it answers at once
and the first job starts at full speed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from protocol import Stage

from ..models.records import ModelRecord
from ..models.registry import ModelRegistry
from ..serving.context import StageContext

log = logging.getLogger(__name__)


class Preloader:
    def __init__(self, registry: ModelRegistry, records: Sequence[ModelRecord]) -> None:
        self.registry, self.records = registry, tuple(records)
        self._done = threading.Event()
        self._done.set()

    def start(self) -> threading.Thread:
        """Load in a background thread. Jobs wait for it (cancellably): importing diffusers and
        transformers modules from two threads at once can fail half-way."""
        self._done.clear()
        thread = threading.Thread(target=self.run, name="lift3d-preload", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        try:
            from ..stages import guidance  # noqa: F401  (the stage-2 imports too, in this one thread)

            for record in self.records:
                try:
                    started = time.perf_counter()
                    self.registry.get(record)
                    log.info("preloaded %s in %.1f s", record.name, time.perf_counter() - started)
                except Exception as exc:  # the job that needs it will report the failure with context
                    log.warning("could not preload %s: %s", record.name, exc)
        finally:
            self._done.set()

    def wait(self, ctx: StageContext, stage: Stage) -> None:
        if self._done.is_set():
            return
        ctx.report(stage, 0, 3, "waiting for the models to load")
        while not self._done.wait(0.2):
            ctx.check_cancelled()
