"""The generation pipeline: the one orchestrator that runs the stages in order, talks through the
stage context, and reuses cached results.

    preprocess → geometry (Gaussians) → mesh (sent as `geometry`) → texture → `final` mesh

Prompt iteration is cheap because every expensive result is cached by content hash:
preprocess by (image bytes, prompt when it drives the segmentation, settings); geometry by (the
prepared image, settings, seed, model preset); mesh by (geometry key, settings). Changing only
the prompt re-runs segmentation (when it is on) and the texture stage; if the new mask is the
same, geometry and mesh come from the cache.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from protocol import Generate, Mesh

from .cache import ResultCache, content_key
from .context import PipelineError, StageContext
from .geometry import gaussians as gs
from .models.registry import TINY_NOTICE, ModelRegistry
from .stages.config import QUALITY_PRESETS, GenerationConfig
from .stages.geometry import PseudoViews, ReferenceTargets, optimise_gaussians, preview_arrays
from .stages.image_io import decode_image
from .stages.preprocess import PreparedInput, prepare

log = logging.getLogger(__name__)

PIPELINE_VERSION = 1
"""Part of every cache key: bump when a stage's output changes for the same inputs."""


@dataclass
class JobReport:
    """What a run did, for `report.json` and the final mesh's metadata."""

    timings: dict[str, float] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)  # stage → "hit" | "miss"
    losses: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    prompt: str = ""
    warnings: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "timings_s": self.timings, "cache": self.cache, "warnings": self.warnings,
                "losses": self.losses, "config": self.config}


def config_from_request(quality: str, options: dict[str, Any]) -> GenerationConfig:
    """The quality preset with the request's options applied; unknown or invalid options are
    refused with a message naming them (a typo must not silently fall back to a default)."""
    if quality not in QUALITY_PRESETS:
        raise PipelineError(f"unknown quality preset {quality!r}", hint=f"use one of {', '.join(QUALITY_PRESETS)}",
                            code="invalid_request")
    config = QUALITY_PRESETS[quality]
    setters = {
        "faces": lambda c, v: replace(c, mesh=replace(c.mesh, target_faces=_int(v, "faces", 500, 500_000))),
        "texture_size": lambda c, v: replace(c, mesh=replace(c.mesh, bake=replace(
            c.mesh.bake, texture_size=_choice(v, "texture_size", (256, 512, 1024, 2048, 4096))))),
        "segmentation": lambda c, v: replace(c, preprocess=replace(c.preprocess, segmentation=_bool(v, "segmentation"))),
        "elevation": lambda c, v: replace(c, geometry=replace(c.geometry, reference_elevation_deg=float(
            _number(v, "elevation", -60, 60)))),
        "geometry_steps": lambda c, v: replace(c, geometry=replace(c.geometry, steps=_int(v, "geometry_steps", 1, 5000))),
        "texture_steps": lambda c, v: replace(c, texture=replace(c.texture, steps=_int(v, "texture_steps", 0, 1000))),
        "fixer": lambda c, v: replace(c, texture=replace(c.texture, fixer=_bool(v, "fixer"))),
    }
    for name, value in options.items():
        if name not in setters:
            raise PipelineError(f"unknown option {name!r}", hint=f"known options: {', '.join(sorted(setters))}",
                                code="invalid_request")
        config = setters[name](config, value)
    return config


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise PipelineError(f"option {name} must be a number in [{lo}, {hi}], got {value!r}", code="invalid_request")
    return value


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PipelineError(f"option {name} must be an integer, got {value!r}", code="invalid_request")
    return int(_number(value, name, lo, hi))


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise PipelineError(f"option {name} must be true or false, got {value!r}", code="invalid_request")
    return value


def _choice(value: Any, name: str, allowed: tuple) -> Any:
    if value not in allowed or isinstance(value, bool):
        raise PipelineError(f"option {name} must be one of {allowed}, got {value!r}", code="invalid_request")
    return value


def _gaussian_arrays(gaussians: gs.Gaussians) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in gaussians.params.items()}


def _gaussians_from(arrays: dict[str, np.ndarray], device: torch.device) -> gs.Gaussians:
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.from_numpy(np.array(v)).to(device))
                                     for k, v in arrays.items()})
    degree = int(round((arrays["shN"].shape[1] + 1) ** 0.5)) - 1
    return gs.Gaussians(params, sh_degree=degree)


class GenerationPipeline:
    """The server's pipeline callable: one instance per process, holding the resident models and
    the result cache across jobs."""

    def __init__(self, registry: ModelRegistry, cache: ResultCache | None = None):
        self.registry = registry
        self.cache = cache if cache is not None else ResultCache()
        self.last_report: JobReport | None = None
        self.last_gaussians: gs.Gaussians | None = None
        """The stage-1 result of the last job (the CLI writes it as splats.ply)."""
        self._preloaded = threading.Event()
        self._preloaded.set()

    def start_preload(self) -> threading.Thread:
        """Load the models every job needs in a background thread, so the server answers at once
        and the first job starts at full speed. Jobs wait for it to finish (cancellable): importing
        diffusers/transformers modules from two threads at once can fail half-way."""
        self._preloaded.clear()
        thread = threading.Thread(target=self.preload, name="lift3d-preload", daemon=True)
        thread.start()
        return thread

    def preload(self) -> None:
        try:
            from .stages import guidance  # noqa: F401  (the stage-2 imports too, in this one thread)

            for name in ("novel_view", "depth", "clip", "segmenter", "refiner"):
                try:
                    started = time.perf_counter()
                    self.registry.get(name)
                    log.info("preloaded %s in %.1f s", name, time.perf_counter() - started)
                except Exception as exc:  # the job that needs it will report the failure with context
                    log.warning("could not preload %s: %s", name, exc)
        finally:
            self._preloaded.set()

    def wait_for_preload(self, ctx: StageContext) -> None:
        if self._preloaded.is_set():
            return
        ctx.report("preprocess", 0, 3, "waiting for the models to load")
        while not self._preloaded.wait(0.2):
            ctx.check_cancelled()

    # --- the job --------------------------------------------------------------------------------

    def __call__(self, request: Generate, ctx: StageContext) -> Mesh:
        report = JobReport()
        self.last_report, self.last_gaussians = report, None
        config = config_from_request(request.quality, dict(request.options))
        report.config = config.to_dict()
        self.wait_for_preload(ctx)
        if self.registry.is_tiny:
            ctx.report("preprocess", 0, 3, f"NOTICE: {TINY_NOTICE}")
        prepared, preprocess_key = self._preprocess(request, config, ctx, report)
        gaussians, geometry_key = self._geometry(prepared, preprocess_key, request.seed, config, ctx, report)
        self.last_gaussians = gaussians
        mesh_arrays = self._mesh(gaussians, geometry_key, config, ctx, report)
        ctx.mesh(self._mesh_message("geometry", mesh_arrays, request, report))
        # Failures from here on (model loading included) belong to the texture stage; the artist
        # already has the untextured mesh.
        ctx.report("texture", 0, max(config.texture.steps, 1), "preparing")
        texture = self._texture(prepared, mesh_arrays, request.seed, config, ctx, report)
        final = dict(mesh_arrays, texture=texture)
        return self._mesh_message("final", final, request, report)

    def _timed(self, report: JobReport, name: str, started: float) -> None:
        report.timings[name] = report.timings.get(name, 0.0) + time.perf_counter() - started

    # --- stages ---------------------------------------------------------------------------------

    def _preprocess(self, request: Generate, config: GenerationConfig, ctx: StageContext,
                    report: JobReport) -> tuple[PreparedInput, str]:
        started = time.perf_counter()
        ctx.report("preprocess", 1, 3, "decoding the image")
        image = decode_image(request.image)
        ctx.check_cancelled()
        # The prompt matters to preprocessing only when it drives the segmentation (or the caption).
        prompt_matters = not image.has_alpha and config.preprocess.segmentation
        key = content_key("preprocess", PIPELINE_VERSION, request.image, config.preprocess,
                          request.prompt.strip() if prompt_matters else None, self.registry.preset)
        entry = self.cache.get("preprocess", key)
        if entry is not None:
            meta = entry.meta
            prepared = PreparedInput(np.array(entry.arrays["rgba"]), np.array(entry.arrays["depth"]),
                                     meta["prompt"], meta["mask_source"], meta["captioned"], list(meta["warnings"]))
            if not prompt_matters and request.prompt.strip():
                # Cached from a run with another prompt (or none): this run's prompt wins.
                prepared.prompt, prepared.captioned = request.prompt.strip(), False
            elif not prompt_matters and not prepared.captioned:
                prepared.prompt = ""
            report.cache["preprocess"] = "hit"
        else:
            ctx.report("preprocess", 2, 3, "finding the object")
            try:
                prepared = prepare(image, request.prompt, config.preprocess, self.registry, ctx.check_cancelled)
            except PipelineError:
                ctx.check_cancelled()  # an artist who cancelled wants "cancelled", not the error behind it
                raise
            self.cache.put("preprocess", key, {"rgba": prepared.rgba, "depth": prepared.depth},
                           {"prompt": prepared.prompt, "mask_source": prepared.mask_source,
                            "captioned": prepared.captioned, "warnings": prepared.warnings})
            report.cache["preprocess"] = "miss"
        if not prepared.captioned and not request.prompt.strip() and config.preprocess.caption_empty_prompt:
            prepared.prompt = self.registry.get("captioner").caption(prepared.rgba)
            prepared.captioned = True
        ctx.check_cancelled()
        report.prompt, report.warnings = prepared.prompt, list(prepared.warnings)
        for warning in prepared.warnings:
            ctx.report("preprocess", 3, 3, f"warning: {warning}")
        ctx.report("preprocess", 3, 3, f"object from {prepared.mask_source}")
        self._timed(report, "preprocess", started)
        # Geometry depends on the cut-out, not on how it was obtained: same mask, same key.
        return prepared, content_key(prepared.rgba, prepared.depth)

    def _references(self, prepared: PreparedInput) -> ReferenceTargets:
        image = prepared.image_on(1.0)[0]
        return ReferenceTargets(image, torch.from_numpy(prepared.mask.astype(np.float32)),
                                torch.from_numpy(prepared.depth))

    def _geometry(self, prepared: PreparedInput, prepared_key: str, seed: int, config: GenerationConfig,
                  ctx: StageContext, report: JobReport) -> tuple[gs.Gaussians, str]:
        started = time.perf_counter()
        key = content_key("geometry", PIPELINE_VERSION, prepared_key, config.geometry, seed, self.registry.preset)
        entry = self.cache.get("geometry", key)
        device = self.registry.device
        if entry is not None:
            gaussians = _gaussians_from(entry.arrays, device)
            report.cache["geometry"] = "hit"
            ctx.report("geometry", config.geometry.steps, config.geometry.steps, "reused from the cache")
            self._send_preview(ctx, config.geometry.steps, gaussians, config, force=True)
            self._timed(report, "geometry", started)
            return gaussians, key
        report.cache["geometry"] = "miss"
        zero123 = self.registry.get("novel_view")
        reference_image = prepared.image_on(1.0)
        embedding = zero123.encode_reference(reference_image, config.geometry.reference_elevation_deg)
        pseudo = self._pseudo_views(embedding, reference_image, seed, config, ctx)
        from .stages.guidance import Zero123Guidance

        guidance = Zero123Guidance(zero123, embedding, config.geometry)

        def on_step(step: int, total: int, gaussians: gs.Gaussians, losses: dict[str, float]) -> None:
            ctx.check_cancelled()
            ctx.report("geometry", step, total, f"{len(gaussians)} Gaussians")
            self._send_preview(ctx, step, gaussians, config)

        result = optimise_gaussians(self._references(prepared), guidance, pseudo, config.geometry, seed=seed,
                                    device=device, on_step=on_step)
        report.losses["geometry"] = result.losses
        self.cache.put("geometry", key, _gaussian_arrays(result.gaussians), {"gaussians": len(result.gaussians)})
        self._timed(report, "geometry", started)
        return result.gaussians, key

    def _pseudo_views(self, embedding, reference_image, seed: int, config: GenerationConfig,
                      ctx: StageContext) -> PseudoViews | None:
        if config.geometry.multiview_weight <= 0:
            return None
        from .stages.guidance import pseudo_views

        def on_step(step: int, total: int) -> None:
            ctx.check_cancelled()
            ctx.report("pseudo views", step, total, "six views from the novel-view model")

        return pseudo_views(self.registry, embedding, reference_image, config.geometry,
                            generator=torch.Generator().manual_seed(seed), on_step=on_step)

    def _send_preview(self, ctx: StageContext, step: int, gaussians: gs.Gaussians, config: GenerationConfig,
                      force: bool = False) -> None:
        if not (force or ctx.preview_due()):
            return
        arrays = preview_arrays(gaussians, config.geometry.preview_splats)
        ctx.preview(step, **arrays)

    def _mesh(self, gaussians: gs.Gaussians, geometry_key: str, config: GenerationConfig, ctx: StageContext,
              report: JobReport) -> dict[str, np.ndarray]:
        from .geometry.extract import extract_textured_mesh

        started = time.perf_counter()
        key = content_key("mesh", PIPELINE_VERSION, geometry_key, config.mesh)
        entry = self.cache.get("mesh", key)
        if entry is not None:
            report.cache["mesh"] = "hit"
            ctx.report("mesh", 1, 1, "reused from the cache")
            self._timed(report, "mesh", started)
            return {k: np.array(v) for k, v in entry.arrays.items()}
        report.cache["mesh"] = "miss"
        steps = ("density grid", "fill interior", "marching cubes", "clean", "decimate", "uv atlas", "bake")
        ctx.report("mesh", 0, len(steps), "extracting the surface")

        def on_step(name: str) -> None:
            ctx.check_cancelled()
            ctx.report("mesh", steps.index(name) + 1, len(steps), name)

        try:
            extracted = extract_textured_mesh(gaussians, config.mesh, on_step=on_step, check=ctx.check_cancelled)
        except ValueError as exc:
            raise PipelineError(f"no mesh could be extracted from the Gaussians: {exc}",
                                hint="try another seed or the standard preset; check the object mask") from exc
        mesh = extracted.mesh
        arrays = {"vertices": mesh.vertices.cpu().numpy().astype(np.float32),
                  "faces": mesh.faces.cpu().numpy().astype(np.uint32),
                  "uvs": mesh.uvs.cpu().numpy().astype(np.float32),
                  "normals": mesh.normals.cpu().numpy().astype(np.float32),
                  "texture": (mesh.texture.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()}
        self.cache.put("mesh", key, arrays, {"coverage": extracted.coverage, "timings": extracted.timings})
        ctx.report("mesh", len(steps), len(steps), f"{len(arrays['faces'])} faces")
        self._timed(report, "mesh", started)
        return arrays

    def _texture(self, prepared: PreparedInput, mesh_arrays: dict[str, np.ndarray], seed: int,
                 config: GenerationConfig, ctx: StageContext, report: JobReport) -> np.ndarray:
        from .geometry.textured_mesh import TexturedMesh
        from .stages.guidance import DiffusionTextureGuidance
        from .stages.texture import refine_texture

        started = time.perf_counter()
        baked = mesh_arrays["texture"]
        if config.texture.steps <= 0:
            return baked
        device = self.registry.device
        mesh = TexturedMesh(torch.from_numpy(mesh_arrays["vertices"]).to(device),
                            torch.from_numpy(mesh_arrays["faces"].astype(np.int64)).to(device),
                            torch.from_numpy(mesh_arrays["uvs"]).to(device),
                            torch.from_numpy(baked.astype(np.float32) / 255.0).to(device),
                            torch.from_numpy(mesh_arrays["normals"]).to(device))
        zero123 = self.registry.get("novel_view")
        reference_image = prepared.image_on(1.0)
        embedding = zero123.encode_reference(reference_image, config.geometry.reference_elevation_deg)

        def check(step: int, total: int) -> None:
            ctx.check_cancelled()

        refiner = self.registry.get("refiner") if prepared.prompt and config.texture.prompt_refine_weight > 0 else None
        fixer = self.registry.get("fixer") if config.texture.fixer else None
        clip = self.registry.get("clip") if config.texture.clip_weight > 0 else None
        guidance = DiffusionTextureGuidance(zero123, embedding, reference_image, config.texture, config.geometry,
                                            prompt=prepared.prompt, refiner=refiner, fixer=fixer, clip=clip,
                                            on_denoise_step=check)

        def on_step(step: int, total: int, losses: dict[str, float]) -> None:
            ctx.check_cancelled()
            ctx.report("texture", step, total, "refining the texture")

        result = refine_texture(mesh, self._references(prepared), guidance, config.texture, config.geometry,
                                seed=seed, on_step=on_step)
        report.losses["texture"] = result.losses
        self._timed(report, "texture", started)
        return (result.texture.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()

    def _mesh_message(self, kind: str, arrays: dict[str, np.ndarray], request: Generate, report: JobReport) -> Mesh:
        metadata = {"prompt": report.prompt[:200], "seed": request.seed, "quality": request.quality,
                    "models": self.registry.preset, "tiny": self.registry.is_tiny,
                    "cache": ",".join(f"{k}:{v}" for k, v in report.cache.items())}
        return Mesh(kind=kind, vertices=arrays["vertices"], faces=arrays["faces"], uvs=arrays["uvs"],
                    normals=arrays["normals"], texture=arrays["texture"], metadata=metadata)

