"""The texture pipeline: the artist's mesh + a prompt (+ an optional reference image) → a UV
texture painted onto that mesh. The one orchestrator of the `texture` request kind:

    check the mesh → keep its UVs or unwrap (Stage.UV) → each texel's surface point →
    paint view after view with SD 1.5 + ControlNet depth, back-projecting each into the texels,
    a texture preview after each view (Stage.PAINT) → fill what no view saw, dilate the gutters
    (Stage.TEXTURE) → `painted_texture`

The steps are in `backend/texturing/`. Results are cached by (mesh, prompt, reference, options,
seed, model preset): the same request again returns at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from protocol import MeshMetadata, PaintedTexture, RequestKind, Stage, Texture
from protocol.options import TEXTURE_REQUEST_SIZE, validate_options

from ..geometry.mesh_cleanup import vertex_normals
from ..models import records
from ..models.depth_painter import DepthPainter
from ..models.hub import ModelUnavailableError
from ..models.registry import TINY_NOTICE, ModelRegistry
from ..serving.context import PipelineError, StageContext
from ..serving.jobs import is_out_of_memory
from ..stages.image_io import decode_image
from ..texturing.fill import finish_texture
from ..texturing.generator import DiffusionViewPainter
from ..texturing.mesh_input import MeshInputError, PaintMesh, check_mesh
from ..stages.config import TextureConfig
from ..texturing.painting import PaintConfig, ViewPainter, paint_texture
from ..texturing.refine import PromptTextureGuidance, refine_painted_texture
from ..texturing.seams import seam_error
from ..texturing.texels import texel_surface
from ..texturing.uv_layout import UVLayout, layout
from ..texturing.views import paint_views, view_cameras
from .cache import ResultCache, content_key
from .enhance import header_size

log = logging.getLogger(__name__)

PREVIEW_SIDE = 256
CACHE_STAGE = "texture"


MAX_VIEW_SIZE = 768
"""Stable Diffusion 1.5 + ControlNet depth paints views of up to 768² (SyncMVD's latent view size
of 96 with the same models); its native 512² would cap a 1024² texture's detail (see the README's
texture-oracle table)."""


def view_size_for(texture_size: int) -> int:
    """Side of the painted views: three quarters of the texture's side (an object seen from one
    side shows about that share of its texels' width), from 128 to `MAX_VIEW_SIZE`, a multiple of 8."""
    return int(min(MAX_VIEW_SIZE, max(128, texture_size * 3 // 4)) // 8 * 8)


@dataclass(frozen=True)
class TextureInputs:
    mesh: PaintMesh
    prompt: str
    reference: bytes | None
    seed: int
    texture_size: int
    views: int
    paint_steps: int
    refine_steps: int = 0


@dataclass
class TextureOutcome:
    """Everything one texture job made (the CLI writes it all; the server sends `texture`,
    `corner_uvs` when not kept, and the numbers)."""
    texture: np.ndarray  # [T, T, 3] uint8
    layout: UVLayout
    coverage: float  # share of chart texels a view painted
    seam_error: float
    views: list[np.ndarray] = field(default_factory=list)  # the generated views, uint8 [H, W, 3]
    seconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False


def _uint8(image: torch.Tensor) -> np.ndarray:
    return (image.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def downsampled(texture: torch.Tensor, side: int = PREVIEW_SIDE) -> np.ndarray:
    """texture [T, T, 3] → uint8 [≤side, ≤side, 3] (box filter)."""
    factor = max(1, texture.shape[0] // side)
    small = F.avg_pool2d(texture.permute(2, 0, 1)[None], factor)[0].permute(1, 2, 0) if factor > 1 else texture
    return _uint8(small)


def inputs_from_arrays(vertices: np.ndarray, faces: np.ndarray, corner_uvs: np.ndarray | None,
                       normals: np.ndarray | None, prompt: str, reference: bytes | None, seed: int,
                       options: dict) -> TextureInputs:
    """Checked inputs, or PipelineError(invalid_request / too_large) naming the problem."""
    try:
        mesh = check_mesh(vertices, faces, corner_uvs, normals)
    except MeshInputError as exc:
        raise PipelineError(str(exc), exc.hint, code=exc.code) from None
    if reference is not None:
        header_size(reference, "reference image")
    return TextureInputs(mesh=mesh, prompt=prompt.strip(), reference=reference, seed=seed,
                         texture_size=int(options.get("texture_size", TEXTURE_REQUEST_SIZE)),
                         views=int(options.get("views", 10)), paint_steps=int(options.get("paint_steps", 25)),
                         refine_steps=int(options.get("refine_steps", 0)))


class TexturePipeline:
    """One instance per process; the models stay resident in the shared registry (SD 1.5 is the
    texture stage's refiner, shared)."""

    def __init__(self, registry: ModelRegistry, cache: ResultCache | None = None) -> None:
        self.registry = registry
        self.cache = cache

    def prepare(self, request: Texture) -> TextureInputs:
        options = validate_options(RequestKind.TEXTURE, request.options)
        return inputs_from_arrays(request.vertices, request.faces, request.uvs, request.normals, request.prompt,
                                  None if request.image is None else bytes(request.image), request.seed, options)

    def run(self, inputs: TextureInputs, ctx: StageContext) -> PaintedTexture:
        outcome = self.paint(inputs, ctx)
        return PaintedTexture(
            texture=outcome.texture, uvs=None if outcome.layout.kept else outcome.layout.corner_uvs,
            uv_note=outcome.layout.note, coverage=outcome.coverage,
            metadata=MeshMetadata(prompt=inputs.prompt, seed=inputs.seed, models=self.registry.preset,
                                  tiny=self.registry.is_tiny, cache={CACHE_STAGE: "hit" if outcome.cached else "miss"}))

    def cache_key(self, inputs: TextureInputs) -> str:
        mesh = inputs.mesh
        return content_key(CACHE_STAGE, mesh.vertices, mesh.faces, b"" if mesh.corner_uvs is None else mesh.corner_uvs,
                           b"" if mesh.normals is None else mesh.normals, inputs.prompt, inputs.reference or b"",
                           [inputs.seed, inputs.texture_size, inputs.views, inputs.paint_steps, inputs.refine_steps,
                            self.registry.preset])

    def paint(self, inputs: TextureInputs, ctx: StageContext, painter: ViewPainter | None = None) -> TextureOutcome:
        """The whole job; `painter` replaces the diffusion model (benchmarks' oracles)."""
        registry, mesh = self.registry, inputs.mesh
        if registry.is_tiny and painter is None:
            ctx.report(Stage.UV, 0, 2, f"NOTICE: {TINY_NOTICE}")
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        ctx.report(Stage.UV, 0, 2, f"checking the UVs of {len(mesh.faces):,} triangles")
        uv_layout = layout(mesh, inputs.texture_size)
        ctx.report(Stage.UV, 1, 2, uv_layout.note)
        key = self.cache_key(inputs) if painter is None and self.cache is not None else None
        if key is not None and (entry := self.cache.get(CACHE_STAGE, key)) is not None:
            ctx.report(Stage.TEXTURE, 1, 1, "reused from the cache")
            return TextureOutcome(entry.arrays["texture"], uv_layout, float(entry.meta["coverage"]),
                                  float(entry.meta["seam_error"]), cached=True)
        ctx.check_cancelled()
        device = registry.device
        vertices = torch.from_numpy(uv_layout.vertices).to(device)
        faces = torch.from_numpy(uv_layout.faces).to(device)
        uvs = torch.from_numpy(uv_layout.uvs).to(device)
        base_normals = mesh.normals if mesh.normals is not None else vertex_normals(mesh.vertices, mesh.faces)
        normals = torch.from_numpy(base_normals[uv_layout.source_vertex]).to(device)
        surface = texel_surface(vertices, faces, uvs, normals, inputs.texture_size)
        ctx.report(Stage.UV, 2, 2, f"{uv_layout.note}; {surface.count:,} texels on the surface")
        seconds["uv"] = time.perf_counter() - started

        started = time.perf_counter()
        config = PaintConfig(view_size=view_size_for(inputs.texture_size))
        views = paint_views(inputs.views)
        cameras = view_cameras(views, torch.from_numpy(mesh.centre), mesh.radius, config.view_size,
                               vertices=torch.from_numpy(mesh.vertices)).to(device)
        steps_per_view = inputs.paint_steps
        total_steps = len(views) * steps_per_view

        def on_step(view: int, step: int, total: int) -> None:
            ctx.check_cancelled()
            ctx.report(Stage.PAINT, min(view * steps_per_view + step, total_steps), total_steps,
                       f"view {view + 1} of {len(views)} ({views[view].direction})")

        # Decoded once: the first view starts from it, and the refinement's CLIP term looks at it.
        reference_rgba = None if inputs.reference is None else decode_image(inputs.reference).rgba
        if painter is None:
            painter = self._diffusion_painter(inputs, reference_rgba, ctx, on_step)
        chart_count = max(int(surface.in_chart.sum()), 1)

        def on_view(done: int, total: int, state, generated) -> None:
            ctx.check_cancelled()
            coverage = float((state.painted & surface.in_chart).sum()) / chart_count
            preview = surface.image(state.colours(), fill=1.0)
            new_uvs = uv_layout.corner_uvs if done == 1 and not uv_layout.kept else None
            ctx.texture_preview(done, total, downsampled(preview), coverage, new_uvs)
            ctx.report(Stage.PAINT, done * steps_per_view, total_steps,
                       f"painted {done} of {total} views; {coverage:.0%} of the texture")

        ctx.report(Stage.PAINT, 0, total_steps, f"painting {len(views)} views of {config.view_size}²")
        try:
            result = paint_texture(vertices, faces, uvs, normals, surface, views, cameras, painter, config,
                                   on_view=on_view)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise PipelineError(f"ran out of memory painting the texture: {exc}",
                                    "Use a smaller texture size or fewer views, or a backend with more GPU memory.",
                                    code="out_of_memory") from exc
            raise
        seconds["paint"] = time.perf_counter() - started

        started = time.perf_counter()
        ctx.report(Stage.TEXTURE, 0, 1, "filling what no view saw")
        texture, painted = finish_texture(surface, result.state.colours(), result.state.painted, uv_layout.faces,
                                          uv_layout.source_vertex)
        if inputs.refine_steps > 0:
            texture = self._refine(inputs, uv_layout, texture, surface.mask, reference_rgba, ctx)
        texture_u8 = _uint8(texture)
        coverage = float(painted.sum()) / chart_count
        seams = seam_error(texture_u8, mesh.faces, uv_layout.corner_uvs)
        seconds["texture"] = time.perf_counter() - started
        ctx.report(Stage.TEXTURE, 1, 1, f"{coverage:.1%} of the texture painted by a view, the rest filled")
        if key is not None:
            self.cache.put(CACHE_STAGE, key, {"texture": texture_u8}, {"coverage": coverage, "seam_error": seams})
        return TextureOutcome(texture_u8, uv_layout, coverage, seams, [_uint8(v) for v in result.views], seconds)

    def _refine(self, inputs: TextureInputs, uv_layout: UVLayout, texture: torch.Tensor, mask: torch.Tensor,
                reference_rgba: np.ndarray | None, ctx: StageContext) -> torch.Tensor:
        """The stage-2 machinery on the painted texture (`texturing/refine.py`)."""
        steps = inputs.refine_steps
        ctx.report(Stage.TEXTURE, 0, steps, f"refining the texture: {steps} steps")
        refiner = self.registry.get(records.REFINER)
        clip = self.registry.get(records.CLIP)
        reference = None
        if reference_rgba is not None:  # over white, as the renders are
            rgba = reference_rgba
            rgb = rgba[..., :3].astype(np.float32) / 255 * (rgba[..., 3:] / 255) + (1 - rgba[..., 3:] / 255)
            reference = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
        config = TextureConfig(steps=steps, render_size=min(512, view_size_for(inputs.texture_size)),
                               reference_weight=0.0, clip_weight=0.1)
        guidance = PromptTextureGuidance(refiner, inputs.prompt, config, clip=clip, reference=reference,
                                         on_denoise_step=lambda step, total: ctx.check_cancelled())

        def on_step(step: int, total: int, losses: dict[str, float]) -> None:
            ctx.check_cancelled()
            ctx.report(Stage.TEXTURE, step, total, "refining the texture")

        return refine_painted_texture(uv_layout.vertices, uv_layout.faces, uv_layout.uvs, texture.float(), mask,
                                      guidance, config, seed=inputs.seed, on_step=on_step)

    def _diffusion_painter(self, inputs: TextureInputs, reference_rgba: np.ndarray | None, ctx: StageContext,
                           on_step: Callable[[int, int, int], None]) -> DiffusionViewPainter:
        ctx.report(Stage.PAINT, 0, 1, "loading Stable Diffusion 1.5 + ControlNet depth (first time only)")
        try:
            refiner = self.registry.get(records.REFINER)
            controlnet = self.registry.get(records.CONTROLNET_DEPTH)
        except ModelUnavailableError as exc:
            raise PipelineError(f"the texture painter's models are not available: {exc}",
                                "Download them on the backend machine: `./lift3d backend models download --role "
                                "refiner --role controlnet_depth`.") from exc
        return DiffusionViewPainter(DepthPainter(refiner.pipe, controlnet), inputs.prompt,
                                    steps=inputs.paint_steps, seed=inputs.seed, reference=reference_rgba,
                                    on_step=on_step)
