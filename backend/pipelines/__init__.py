"""The generation side: one orchestrator per request kind, over the shared steps in `stages/`.

    generate   image + prompt → textured mesh (`generate.py`; request → config in
               `generate_request.py`)

`texture` (paint the artist's mesh), `scene` (text → a scene along a camera path) and `enhance`
(the fixer on a render) come next, each as its own orchestrator registered in `Pipelines`.
"""

from __future__ import annotations

from typing import Any

from protocol import Generate, Mesh

from .cache import ResultCache
from ..serving.context import StageContext
from ..models.registry import ModelRegistry
from .generate import GenerationPipeline


class Pipelines:
    """The server's runner: routes each request to its kind's orchestrator. All of them share one
    model registry (models stay resident across kinds) and one result cache."""

    def __init__(self, registry: ModelRegistry, cache: ResultCache | None = None) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else ResultCache()
        self.generate = GenerationPipeline(registry, self.cache)
        self._orchestrators = {Generate: self.generate}

    def prepare(self, request: Any) -> tuple[Any, Any]:
        """→ (orchestrator, its typed input); raises protocol.OptionError for a bad request."""
        orchestrator = self._orchestrators[type(request)]
        return orchestrator, orchestrator.prepare(request)

    def run(self, job_input: tuple[Any, Any], ctx: StageContext) -> Mesh:
        orchestrator, inputs = job_input
        return orchestrator.run(inputs, ctx)

    def start_preload(self) -> None:
        self.generate.preloader.start()
