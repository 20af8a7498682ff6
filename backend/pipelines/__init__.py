"""The generation side: one orchestrator per request kind, over the shared steps in `stages/`.

    generate   image + prompt → textured mesh (`generate.py`; request → config in
               `generate_request.py`)
    enhance    a rendered image (+ an optional reference) → the same image cleaned by the
               single-step fixer (`enhance.py`)
    texture    the artist's mesh + prompt (+ optional image) → a UV texture painted onto it
               (`texture.py`)

    scene      prompt (+ an optional first image) + a camera path → a Gaussian scene grown
               keyframe by keyframe, and a mesh fused from it (`scene.py`; the loop in
               `backend/scene/`)
"""

from __future__ import annotations

from typing import Any

from protocol import REQUEST_TYPES, Message, RequestKind, request_kind
from protocol.kinds import STAGE_SHARES

from .cache import ResultCache
from ..serving.context import StageContext
from ..models.registry import ModelRegistry
from .enhance import EnhancePipeline
from .generate import GenerationPipeline
from .scene import ScenePipeline
from .texture import TexturePipeline


class Pipelines:
    """The server's runner: routes each request to its kind's orchestrator. All of them share one
    model registry (models stay resident across kinds) and one result cache."""

    def __init__(self, registry: ModelRegistry, cache: ResultCache | None = None) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else ResultCache()
        self.generate = GenerationPipeline(registry, self.cache)
        self.enhance = EnhancePipeline(registry)
        self.texture = TexturePipeline(registry, self.cache)
        self.scene = ScenePipeline(registry, self.cache)
        self._orchestrators = {RequestKind.GENERATE: self.generate, RequestKind.ENHANCE: self.enhance,
                               RequestKind.TEXTURE: self.texture, RequestKind.SCENE: self.scene}

    @property
    def request_kinds(self) -> tuple[RequestKind, ...]:
        """The kinds served (the server's welcome lists them and refuses the others)."""
        return tuple(kind for kind in REQUEST_TYPES if kind in self._orchestrators)

    def prepare(self, request: Any) -> tuple[RequestKind, Any]:
        """→ (the request kind, its orchestrator's typed input): plain data, so a Ray worker with
        its own pipelines can run it; raises protocol.OptionError for a bad request."""
        kind = request_kind(request)
        return kind, self._orchestrators[kind].prepare(request)

    def run(self, job_input: tuple[RequestKind, Any], ctx: StageContext) -> Message:
        kind, inputs = job_input
        orchestrator = self._orchestrators[kind]
        # Every kind waits for the background preload, not only generate: importing diffusers and
        # transformers modules from two threads at once can fail half-way (a texture or enhance
        # job loads its models while the preload thread is still importing).
        self.generate.preloader.wait(ctx, STAGE_SHARES[kind][0][0])
        return orchestrator.run(inputs, ctx)

    def start_preload(self) -> None:
        self.generate.preloader.start()
