"""The generation pipeline run by `python -m backend serve`.

The two-stage pipeline (preprocess → Gaussians → mesh → texture) is built by the pipeline
issue. Until then the server answers every `generate` with a clear `failed` message rather
than pretending to produce something.
"""

from __future__ import annotations

from protocol import Generate, Mesh

from .context import PipelineError, StageContext


def run_pipeline(request: Generate, ctx: StageContext) -> Mesh:
    ctx.report("preprocess", 0, 1, "checking the request")
    raise PipelineError(
        "This backend build has no generation pipeline yet; it can only answer pings.",
        hint="Update Lift3D to a release that includes the generation pipeline.",
    )
