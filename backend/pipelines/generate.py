"""The generate pipeline: image + prompt → textured mesh. The one orchestrator of this request
kind: it runs the stages in order, talks through the stage context, and reuses cached results.

    preprocess → caption (empty prompt) → geometry (Gaussians) → mesh (sent as `geometry`) →
    texture → `final` mesh

Prompt iteration is cheap because every expensive result is cached by content hash:
preprocess by (image bytes, prompt when it drives the segmentation, settings); the caption by the
cut-out and the captioner; geometry by (the cut-out, settings, seed, model preset, and the prompt
when the text prior is on); mesh by (geometry key, settings). Changing only the prompt re-runs
segmentation (when it is on) and the texture stage; if the new mask is the same and the text prior
is off, geometry and mesh come from the cache. Each stage module owns its
cache payload (`cache_payload` / `from_cache`); this module only chooses keys.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from functools import cached_property

import torch

from protocol import Generate, Mesh, MeshMetadata, Stage

from .cache import ResultCache, content_key
from ..serving.context import PipelineError, StageContext
from ..geometry import gaussians as gs
from ..models import records
from ..models.hub import DOWNLOAD_COMMAND, ModelUnavailableError
from ..models.registry import TINY_NOTICE, ModelRegistry
from ..stages.geometry import (
    PseudoViews,
    gaussians_from_payload,
    gaussians_payload,
    optimise_gaussians,
    preview_arrays,
)
from ..stages.fixing import load_fixer
from ..stages.image_io import decode_image
from ..stages.mesh import STEPS as MESH_STEPS
from ..stages.mesh import MeshArrays, extract_mesh, texture_bytes
from ..stages.preprocess import PreparedInput, prepare
from .generate_request import GenerateInputs, inputs_from
from .preload import Preloader
from .report import JobReport

log = logging.getLogger(__name__)

PIPELINE_VERSION = 2
"""Part of every cache key: bump when a stage's output changes for the same inputs."""

PRELOADED = (records.NOVEL_VIEW, records.DEPTH, records.CLIP, records.SEGMENTER, records.REFINER)
"""The models every generate job needs, loaded when the server starts."""


class GenerationPipeline:
    """One instance per process, holding the resident models and the result cache across jobs."""

    def __init__(self, registry: ModelRegistry, cache: ResultCache | None = None) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else ResultCache()
        self.preloader = Preloader(registry, PRELOADED)
        self.last_report: JobReport | None = None
        self.last_gaussians: gs.Gaussians | None = None
        """The stage-1 result of the last job (the CLI writes it as splats.ply)."""
        self.last_enhancer: Callable[[torch.Tensor], torch.Tensor] | None = None
        """Difix3D+'s post-render step for the last job's final renders (the CLI's turntable):
        renders [B, 3, H, W] → fixed renders, or None when its fixer is off."""

    def prepare(self, request: Generate) -> GenerateInputs:
        """The request as typed inputs (the server calls this before `accepted`)."""
        return inputs_from(request)

    def run(self, inputs: GenerateInputs, ctx: StageContext) -> Mesh:
        job = _GenerateJob(self, inputs, ctx)
        self.last_report, self.last_gaussians, self.last_enhancer = job.report, None, None
        self.preloader.wait(ctx, Stage.PREPROCESS)
        if self.registry.is_tiny:
            ctx.report(Stage.PREPROCESS, 0, 3, f"NOTICE: {TINY_NOTICE}")
        prepared, prepared_key = job.preprocess()
        job.resolve_prompt(prepared, prepared_key)
        gaussians, geometry_key = job.geometry(prepared, prepared_key)
        self.last_gaussians = gaussians
        mesh = job.mesh(gaussians, geometry_key)
        ctx.mesh(job.message("geometry", mesh))
        # Failures from here on (model loading included) belong to the texture stage; the artist
        # already has the untextured mesh.
        ctx.report(Stage.TEXTURE, 0, max(inputs.config.texture.steps, 1), "preparing")
        final = job.message("final", mesh.with_texture(job.texture(prepared, mesh)))
        self.last_enhancer = job.enhancer()
        return final


class _GenerateJob:
    """One job's state: its inputs, report, and what it computes once (the reference embedding)."""

    def __init__(self, pipeline: GenerationPipeline, inputs: GenerateInputs, ctx: StageContext) -> None:
        self.registry, self.cache, self.inputs, self.ctx = pipeline.registry, pipeline.cache, inputs, ctx
        self.config = inputs.config
        self.report = JobReport(config=inputs.config.to_dict())
        self.reference_image: torch.Tensor | None = None  # [1, 3, S, S], set by preprocess

    @cached_property
    def reference_embedding(self):
        """Zero123's encoding of the input view: computed once per job, used by SDS, the pseudo
        views and texture refinement (and not at all when geometry comes from the cache and the
        texture is not refined)."""
        zero123 = self.registry.get(self.novel_view)
        return zero123.encode_reference(self.reference_image, self.config.geometry.reference_elevation_deg)

    @property
    def novel_view(self):
        """The record of the novel-view model the `novel_view` option picks."""
        return records.NOVEL_VIEW_STABLE if self.config.geometry.novel_view == "stable-zero123" else records.NOVEL_VIEW

    def enhancer(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The fixer bound to this job's input view, for post-render enhancement (None when off)."""
        fixer_config = self.config.fixer
        if not (fixer_config.enabled and fixer_config.enhance_outputs):
            return None
        fixer, reference = load_fixer(self.registry, fixer_config.model), self.reference_image

        def enhance(renders: torch.Tensor) -> torch.Tensor:
            references = reference.expand(len(renders), -1, -1, -1) if fixer.uses_reference else None
            return fixer.fix(renders, references)

        return enhance

    def message(self, kind: str, mesh: MeshArrays) -> Mesh:
        report = self.report
        metadata = MeshMetadata(prompt=report.prompt, captioned=report.captioned, seed=self.inputs.seed,
                                quality=self.inputs.quality, models=self.registry.preset, tiny=self.registry.is_tiny,
                                cache=dict(report.cache))
        return Mesh(kind=kind, vertices=mesh.vertices, faces=mesh.faces, uvs=mesh.uvs, normals=mesh.normals,
                    texture=mesh.texture, metadata=metadata)

    # --- stages ---------------------------------------------------------------------------------

    def preprocess(self) -> tuple[PreparedInput, str]:
        ctx, report, config = self.ctx, self.report, self.config
        started = time.perf_counter()
        ctx.report(Stage.PREPROCESS, 1, 3, "decoding the image")
        image = decode_image(self.inputs.image)
        ctx.check_cancelled()
        # The prompt matters to preprocessing only when it drives the segmentation.
        prompt_matters = not image.has_alpha and config.preprocess.segmentation
        # The captioning settings do not change the cut-out: a captioner switch reuses it.
        cut_out_settings = dataclasses.replace(config.preprocess, caption_empty_prompt=True, captioner="blip")
        key = content_key("preprocess", PIPELINE_VERSION, self.inputs.image, cut_out_settings,
                          self.inputs.prompt if prompt_matters else None, self.registry.preset)
        entry = self.cache.get("preprocess", key)
        if entry is not None:
            prepared = PreparedInput.from_cache(entry.arrays, entry.meta)
            report.cache["preprocess"] = "hit"
        else:
            ctx.report(Stage.PREPROCESS, 2, 3, "finding the object")
            try:
                prepared = prepare(image, self.inputs.prompt, config.preprocess, self.registry, ctx.check_cancelled)
            except PipelineError:
                ctx.check_cancelled()  # an artist who cancelled wants "cancelled", not the error behind it
                raise
            self.cache.put("preprocess", key, *prepared.cache_payload())
            report.cache["preprocess"] = "miss"
        report.warnings = list(prepared.warnings)
        for warning in prepared.warnings:
            ctx.report(Stage.PREPROCESS, 3, 3, f"warning: {warning}")
        ctx.report(Stage.PREPROCESS, 3, 3, f"object from {prepared.mask_source}")
        self.reference_image = prepared.image_on(1.0)
        report.timed("preprocess", started)
        # Geometry depends on the cut-out, not on how it was obtained: same mask, same key.
        return prepared, content_key(prepared.rgba, prepared.depth)

    def resolve_prompt(self, prepared: PreparedInput, prepared_key: str) -> None:
        """The prompt the texture stage uses: the artist's, else a caption of the cut-out (the one
        place captioning happens; cached by the cut-out), else none."""
        report = self.report
        if self.inputs.prompt or not self.config.preprocess.caption_empty_prompt:
            report.prompt = self.inputs.prompt
            return
        started = time.perf_counter()
        captioner = self.config.preprocess.captioner
        key = content_key("caption", PIPELINE_VERSION, prepared_key, captioner, self.registry.preset)
        entry = self.cache.get("caption", key)
        if entry is not None:
            caption, report.cache["caption"] = entry.meta["caption"], "hit"
        else:
            caption, fallback = self._caption(prepared, captioner)
            if not fallback:  # a fallback caption is not BLIP-2's: the next job tries BLIP-2 again
                self.cache.put("caption", key, {}, {"caption": caption})
            report.cache["caption"] = "miss"
        self.ctx.check_cancelled()
        report.prompt, report.captioned = caption, True
        report.timed("preprocess", started)

    def _caption(self, prepared: PreparedInput, captioner: str) -> tuple[str, bool]:
        """→ (caption, whether BLIP base stood in for a BLIP-2 that is not downloaded). BLIP-2 is
        an optional 15 GB model: an empty prompt on `high` must not fail the job for it."""
        record = records.CAPTIONER_BLIP2 if captioner == "blip2" else records.CAPTIONER
        fallback = False
        try:
            if record is records.CAPTIONER_BLIP2 and not self.registry.present(record):
                # Not downloaded: no 15 GB download in the middle of a job.
                raise ModelUnavailableError(f"it is not downloaded; `{DOWNLOAD_COMMAND} --role captioner_blip2` "
                                            f"gets it")
            model = self.registry.get(record)
        except ModelUnavailableError as error:
            if record is records.CAPTIONER:
                raise
            warning = f"BLIP-2 is not available, captioned with BLIP base instead ({error})"
            self.report.warnings.append(warning)
            self.ctx.report(Stage.PREPROCESS, 3, 3, f"warning: {warning}")
            record, model, fallback = records.CAPTIONER, self.registry.get(records.CAPTIONER), True
        self.ctx.report(Stage.PREPROCESS, 3, 3, f"writing a caption (empty prompt, {record.spec.repo_id})")
        return model.caption(prepared.rgba), fallback

    def geometry(self, prepared: PreparedInput, prepared_key: str) -> tuple[gs.Gaussians, str]:
        self._resolve_multiview()
        ctx, config, report = self.ctx, self.config, self.report
        started = time.perf_counter()
        # The fixer shapes the Gaussians only when it runs inside stage 1: any other fixer change
        # keeps the cached geometry.
        progressive_on = config.fixer.progressive_on
        # Likewise the prompt (or caption) shapes them only through the text prior.
        key = content_key("geometry", PIPELINE_VERSION, prepared_key, config.geometry, self.inputs.seed,
                          self.registry.preset, *((config.fixer,) if progressive_on else ()),
                          *((report.prompt,) if config.geometry.text_prior else ()))
        entry = self.cache.get("geometry", key)
        if entry is not None:
            gaussians = gaussians_from_payload(entry.arrays, self.registry.device)
            report.cache["geometry"] = "hit"
            ctx.report(Stage.GEOMETRY, config.geometry.steps, config.geometry.steps, "reused from the cache")
            self._send_preview(config.geometry.steps, gaussians, force=True)
            report.timed("geometry", started)
            return gaussians, key
        report.cache["geometry"] = "miss"
        pseudo = self._pseudo_views(prepared)
        from ..stages.guidance import Zero123Guidance

        guidance = Zero123Guidance(self.registry.get(self.novel_view), self.reference_embedding, config.geometry)

        progressive = self._progressive_fix(prepared, pseudo) if progressive_on else None
        priors = self._novel_view_priors()

        def on_step(step: int, total: int, gaussians: gs.Gaussians, losses: dict[str, float]) -> None:
            ctx.check_cancelled()
            ctx.report(Stage.GEOMETRY, step, total, f"{len(gaussians)} Gaussians")
            self._send_preview(step, gaussians)

        def on_fix(step: int, total: int, gaussians: gs.Gaussians, message: str) -> None:
            ctx.check_cancelled()  # between two fixed views: a round never holds up a cancel for long
            ctx.report(Stage.GEOMETRY, step, total, message)
            self._send_preview(step, gaussians)

        result = optimise_gaussians(prepared.references(), guidance, pseudo, config.geometry, seed=self.inputs.seed,
                                    device=self.registry.device, on_step=on_step, progressive=progressive,
                                    on_fix=on_fix, priors=priors)
        report.losses["geometry"] = result.losses
        self.cache.put("geometry", key, gaussians_payload(result.gaussians), {"gaussians": len(result.gaussians)})
        report.timed("geometry", started)
        return result.gaussians, key

    def _resolve_multiview(self) -> None:
        """Zero123++ when it is downloaded; otherwise the six views come from Zero123 and the job
        says so. Resolved before the geometry cache key, so the key names the generator that ran."""
        geometry = self.config.geometry
        if geometry.multiview_generator != "zero123pp" or geometry.multiview_weight <= 0 or \
                self.registry.present(records.MULTIVIEW):
            return
        note = (f"Zero123++ ({records.MULTIVIEW.spec.repo_id}) is not downloaded: the six views come from Zero123 "
                f"and need not agree. `{DOWNLOAD_COMMAND} --role multiview` gets it (non-commercial licence)")
        self.report.warnings.append(note)
        self.ctx.report(Stage.PSEUDO_VIEWS, 0, 1, f"note: {note}")
        self.config = dataclasses.replace(self.config, geometry=dataclasses.replace(geometry,
                                                                                   multiview_generator="zero123"))
        self.report.config = self.config.to_dict()

    def _novel_view_priors(self) -> list:
        """Make-It-3D's stage-1 additions the config turns on: the text prior (on the refiner's
        Stable Diffusion) and the CLIP loss to the reference image."""
        from ..stages.guidance import ClipReferenceGuidance, TextPriorGuidance

        config, priors = self.config.geometry, []
        if config.text_prior and self.report.prompt:
            self.ctx.report(Stage.GEOMETRY, 0, config.steps, "loading the text prior (Stable Diffusion 1.5)")
            refiner = self.registry.get(records.REFINER)
            priors.append(TextPriorGuidance(refiner.text_prior, self.report.prompt, config))
        elif config.text_prior:
            warning = "the text prior needs a prompt and the caption is empty: the geometry follows the image only"
            self.report.warnings.append(warning)
            self.ctx.report(Stage.GEOMETRY, 0, config.steps, f"warning: {warning}")
        if config.clip_weight > 0:
            priors.append(ClipReferenceGuidance(self.registry.get(records.CLIP), self.reference_image,
                                                config.clip_weight))
        self.ctx.check_cancelled()
        return priors

    def _progressive_fix(self, prepared: PreparedInput, pseudo: PseudoViews | None):
        """Difix3D's progressive 3D update for stage 1: the job's fixer, fixing renders from the
        reference and pseudo-view poses toward uncovered poses (`progressive_fix_for`)."""
        from ..geometry.progressive_fix import ImageFixerAdapter
        from ..stages.geometry import progressive_fix_for

        fixer_config = self.config.fixer
        self.ctx.report(Stage.GEOMETRY, 0, self.config.geometry.steps, f"loading the fixer ({fixer_config.model})")
        fixer = load_fixer(self.registry, fixer_config.model)
        self.ctx.check_cancelled()
        return progressive_fix_for(prepared.references(), pseudo, self.config.geometry,
                                   ImageFixerAdapter(fixer, seed=self.inputs.seed), fixer_config.schedule,
                                   seed=self.inputs.seed)

    def _pseudo_views(self, prepared: PreparedInput) -> PseudoViews | None:
        config = self.config.geometry
        if config.multiview_weight <= 0 or config.multiview_generator == "off":
            return None
        from ..stages.guidance import pseudo_views

        def on_step(step: int, total: int) -> None:
            self.ctx.check_cancelled()
            self.ctx.report(Stage.PSEUDO_VIEWS, step, total, f"six views from {source}")

        source = "Zero123++" if config.multiview_generator == "zero123pp" else "the novel-view model"

        return pseudo_views(self.registry, self.reference_embedding, prepared, config, novel_view=self.novel_view,
                            generator=torch.Generator().manual_seed(self.inputs.seed), on_step=on_step)

    def _send_preview(self, step: int, gaussians: gs.Gaussians, force: bool = False) -> None:
        if force or self.ctx.preview_due():
            self.ctx.preview(step, **preview_arrays(gaussians, self.config.geometry.preview_splats))

    def mesh(self, gaussians: gs.Gaussians, geometry_key: str) -> MeshArrays:
        ctx, report = self.ctx, self.report
        started = time.perf_counter()
        key = content_key("mesh", PIPELINE_VERSION, geometry_key, self.config.mesh)
        entry = self.cache.get("mesh", key)
        if entry is not None:
            report.cache["mesh"] = "hit"
            ctx.report(Stage.MESH, 1, 1, "reused from the cache")
            report.timed("mesh", started)
            return MeshArrays.from_cache(entry.arrays)
        report.cache["mesh"] = "miss"
        ctx.report(Stage.MESH, 0, len(MESH_STEPS), "extracting the surface")

        def on_step(name: str) -> None:
            ctx.check_cancelled()
            ctx.report(Stage.MESH, MESH_STEPS.index(name) + 1, len(MESH_STEPS), name)

        mesh, facts = extract_mesh(gaussians, self.config.mesh, on_step=on_step, check=ctx.check_cancelled)
        self.cache.put("mesh", key, mesh.cache_payload(), facts)
        ctx.report(Stage.MESH, len(MESH_STEPS), len(MESH_STEPS), f"{len(mesh.faces)} faces")
        report.timed("mesh", started)
        return mesh

    def texture(self, prepared: PreparedInput, mesh: MeshArrays):  # → [T, T, 3] uint8
        from ..stages.guidance import DiffusionTextureGuidance
        from ..stages.texture import refine_texture

        config, ctx, prompt = self.config, self.ctx, self.report.prompt
        if config.texture.steps <= 0:
            return mesh.texture
        started = time.perf_counter()

        def check(step: int, total: int) -> None:
            ctx.check_cancelled()

        refiner = self.registry.get(records.REFINER) if prompt and config.texture.prompt_refine_weight > 0 else None
        fixer = load_fixer(self.registry, config.fixer.model) if config.fixer.texture_targets else None
        clip = (self.registry.get(records.CLIP) if config.texture.clip_weight > 0 or config.texture.cross_view_weight > 0
                else None)
        guidance = DiffusionTextureGuidance(self.registry.get(self.novel_view), self.reference_embedding,
                                            self.reference_image, config.texture, config.geometry, prompt=prompt,
                                            refiner=refiner, fixer=fixer, clip=clip, on_denoise_step=check)

        def on_step(step: int, total: int, losses: dict[str, float]) -> None:
            ctx.check_cancelled()
            ctx.report(Stage.TEXTURE, step, total, "refining the texture")

        result = refine_texture(mesh.to_textured_mesh(self.registry.device), prepared.references(), guidance,
                                config.texture, config.geometry, seed=self.inputs.seed, on_step=on_step)
        self.report.losses["texture"] = result.losses
        self.report.timed("texture", started)
        return texture_bytes(result.texture)
