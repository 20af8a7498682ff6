"""The scene pipeline: a prompt (and an optional first image) → a 3D scene grown along a camera
path. The one orchestrator of the `scene` request kind:

    check the path and options → load SD 1.5 inpainting, Depth Anything V2 (and SD 1.5 for the
    first keyframe when no image is given) (Stage.PREPROCESS) → grow the Gaussians keyframe by
    keyframe with replay, a splat preview after each (Stage.KEYFRAMES, `scene/grow.py`) → fuse
    the keyframes' depth into a vertex-coloured mesh (Stage.MESH) → `scene_result`

Results are cached by (prompt, image, path, options, seed, model preset): the same request again
returns at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from protocol import MeshMetadata, RequestKind, Scene, SceneResult, Stage
from protocol.options import QUALITY_NAMES, SCENE_PRESETS, OptionError, validate_options

from ..geometry import gaussians as gs
from ..geometry.cameras import Cameras
from ..models import records
from ..models.hub import ModelUnavailableError
from ..models.inpainting import text_to_image
from ..models.registry import TINY_NOTICE, ModelRegistry
from ..scene import trajectory as tr
from ..scene.align import AlignmentError
from ..scene.fuse import FusedMesh, fuse_keyframes
from ..scene.grow import KeyframeStats, SceneCallbacks, SceneConfig, SceneGrower
from ..serving.context import PipelineError, StageContext
from ..serving.jobs import is_out_of_memory
from ..stages.geometry import gaussians_from_payload, gaussians_payload, preview_arrays
from ..stages.image_io import decode_image
from .cache import ResultCache, content_key
from .enhance import header_size

log = logging.getLogger(__name__)

CACHE_STAGE = "scene"
MAX_PREVIEW_SPLATS = 200_000
DIFFUSION_SIDE = 512
"""Stable Diffusion 1.5 draws at 512² (what it was trained at; at 256² its pictures fall apart): a
keyframe is drawn or inpainted at least this large and resized to the keyframe size."""


FIRST_STEPS_FACTOR = 2
"""The first keyframe, alone, is optimised twice as long as each later one's replay."""


@dataclass(frozen=True)
class SceneInputs:
    prompt: str
    image: bytes | None
    trajectory: tr.Trajectory
    config: SceneConfig
    inpaint_steps: int
    quality: str


@dataclass
class SceneOutcome:
    gaussians: gs.Gaussians
    mesh: FusedMesh
    keyframes: list[int]
    keyframe_images: list[np.ndarray] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False


def scene_inputs(prompt: str, image: bytes | None, trajectory: str, poses: np.ndarray | None, fov_deg: float,
                 quality: str, seed: int, options: dict) -> SceneInputs:
    """Checked inputs, or PipelineError (invalid_request) / OptionError naming the problem."""
    options = validate_options(RequestKind.SCENE, options)
    if quality not in QUALITY_NAMES:
        raise OptionError("quality", f"unknown quality preset {quality!r:.40}",
                          hint=f"Choose one of: {', '.join(QUALITY_NAMES)}.")
    prompt = prompt.strip()
    if not prompt:
        raise PipelineError("a scene needs a prompt: it says what to paint wherever the camera looks next",
                            "Describe the scene, e.g. 'a cosy living room with a fireplace'.", code="invalid_request")
    if image is not None:
        header_size(image, "first image")
    preset = SCENE_PRESETS[quality]
    frames = int(options.get("frames", 12))
    try:
        if trajectory == "camera":
            if poses is None:
                raise tr.TrajectoryError("trajectory 'camera' needs the camera's poses", "Send one pose per frame.")
            path = tr.from_blender(poses, fov_deg)
        else:
            if poses is not None:
                raise tr.TrajectoryError(f"trajectory {trajectory!r} is a preset; poses go with 'camera'")
            path = tr.preset(trajectory, frames, fovy_deg=fov_deg)
    except tr.TrajectoryError as exc:
        raise PipelineError(str(exc), exc.hint, code="invalid_request") from None
    replay = int(options.get("replay_steps", preset.replay_steps))
    config = SceneConfig(size=int(options.get("scene_size", preset.size)), keyframes=frames,
                         steps_per_keyframe=replay, first_steps=FIRST_STEPS_FACTOR * replay, seed=seed)
    return SceneInputs(prompt, image, path, config, int(options.get("inpaint_steps", preset.inpaint_steps)), quality)


def _resized(image: Tensor, side: int, mode: str = "bilinear") -> Tensor:  # [1, C, H, W] → [1, C, side, side]
    if image.shape[-1] == side:
        return image
    kwargs = {"antialias": True, "align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(image, (side, side), mode=mode, **kwargs)


def square(rgb: np.ndarray, size: int) -> Tensor:
    """uint8 [H, W, 3] → the centre square resized to size² → float [size, size, 3] in [0, 1]."""
    image = torch.from_numpy(np.ascontiguousarray(rgb[..., :3])).float() / 255
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top:top + side, left:left + side].permute(2, 0, 1)[None]
    return F.interpolate(crop, (size, size), mode="bilinear", antialias=True, align_corners=False)[0].permute(1, 2, 0)


class ModelInpainter:
    """The grower's `Inpainter` on the real models: SD 1.5 inpainting, SD 1.5 text-to-image."""

    def __init__(self, inpainter, refiner, steps: int, ctx: StageContext, progress) -> None:
        self.inpainter, self.refiner, self.steps, self.ctx, self.progress = inpainter, refiner, steps, ctx, progress

    def _on_step(self, what: str):
        def on_step(step: int, total: int) -> None:
            self.ctx.check_cancelled()
            self.progress(f"{what}: denoising step {step} of {total}")
        return on_step

    def first_frame(self, prompt: str, camera: Cameras, generator: torch.Generator) -> Tensor:
        side = max(DIFFUSION_SIDE, camera.width)
        image = text_to_image(self.refiner.pipe, prompt, side, steps=self.steps, generator=generator,
                              on_step=self._on_step("drawing the first keyframe"))
        return _resized(image.float(), camera.width)[0].permute(1, 2, 0)

    def inpaint(self, image: Tensor, mask: Tensor, prompt: str, camera: Cameras, generator: torch.Generator) -> Tensor:
        side = max(DIFFUSION_SIDE, camera.width)
        big_image = _resized(image.permute(2, 0, 1)[None].float(), side)
        big_mask = _resized(mask[None, None].float(), side, mode="nearest")
        out = self.inpainter.inpaint(big_image, big_mask, prompt, steps=self.steps, generator=generator,
                                     on_step=self._on_step("inpainting"))
        return _resized(out.float(), camera.width)[0].permute(1, 2, 0)


class ModelDepth:
    """The grower's `DepthModel` on Depth Anything V2 (relative disparity)."""

    def __init__(self, estimator) -> None:
        self.estimator = estimator

    def estimate(self, image: Tensor, camera: Cameras) -> Tensor:
        return self.estimator.predict(image.permute(2, 0, 1)[None])[0]


class ScenePipeline:
    """One instance per process; the models stay resident in the shared registry."""

    def __init__(self, registry: ModelRegistry, cache: ResultCache | None = None) -> None:
        self.registry = registry
        self.cache = cache

    def prepare(self, request: Scene) -> SceneInputs:
        return scene_inputs(request.prompt, None if request.image is None else bytes(request.image), request.trajectory,
                            None if request.poses is None else np.array(request.poses), request.fov_deg,
                            request.quality, request.seed, request.options)

    def run(self, inputs: SceneInputs, ctx: StageContext) -> SceneResult:
        outcome = self.grow(inputs, ctx)
        mesh = outcome.mesh
        return SceneResult(
            vertices=mesh.vertices, faces=mesh.faces.astype(np.uint32), vertex_colors=mesh.colors,
            cameras=tr.to_blender(inputs.trajectory), keyframes=np.asarray(outcome.keyframes, np.int32),
            fov_deg=inputs.trajectory.fovy_deg, gaussians=len(outcome.gaussians),
            metadata=MeshMetadata(prompt=inputs.prompt, seed=inputs.config.seed, quality=inputs.quality,
                                  models=self.registry.preset, tiny=self.registry.is_tiny,
                                  cache={CACHE_STAGE: "hit" if outcome.cached else "miss"}))

    def cache_key(self, inputs: SceneInputs) -> str:
        c = inputs.config
        return content_key(CACHE_STAGE, inputs.prompt, inputs.image or b"", inputs.trajectory.camtoworlds.numpy(),
                           [inputs.trajectory.fovy_deg, c.size, c.keyframes, c.steps_per_keyframe, c.first_steps,
                            inputs.inpaint_steps, c.seed, self.registry.preset])

    def grow(self, inputs: SceneInputs, ctx: StageContext) -> SceneOutcome:
        registry, config = self.registry, inputs.config
        if registry.is_tiny:
            ctx.report(Stage.PREPROCESS, 0, 1, f"NOTICE: {TINY_NOTICE}")
        key = self.cache_key(inputs) if self.cache is not None else None
        if key is not None and (entry := self.cache.get(CACHE_STAGE, key)) is not None:
            ctx.report(Stage.MESH, 1, 1, "reused from the cache")
            arrays = entry.arrays
            gaussians = gaussians_from_payload({k[2:]: v for k, v in arrays.items() if k.startswith("g_")}, "cpu")
            return SceneOutcome(gaussians, FusedMesh(arrays["vertices"], arrays["faces"], arrays["colors"]),
                                [int(k) for k in arrays["keyframes"]], list(arrays["keyframe_images"]),
                                list(entry.meta.get("stats", [])), cached=True)
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        first_image = None
        if inputs.image is not None:
            first_image = square(decode_image(inputs.image).rgba[..., :3], config.size)
        inpainter, depth = self._models(inputs, ctx, need_text_to_image=first_image is None)
        seconds["load"] = time.perf_counter() - started
        keyframes = tr.keyframe_indices(len(inputs.trajectory), config.keyframes)
        total = config.first_steps + config.steps_per_keyframe * (len(keyframes) - 1)
        state = {"keyframe": 0}

        def progress(message: str) -> None:
            ctx.report(Stage.KEYFRAMES, grower.steps_done, total,
                       f"keyframe {state['keyframe'] + 1} of {len(keyframes)}: {message}")

        def on_step(step: int, total_steps: int) -> None:
            ctx.check_cancelled()
            if step % 5 == 0 or step == total_steps:
                ctx.report(Stage.KEYFRAMES, step, total_steps,
                           f"keyframe {state['keyframe'] + 1} of {len(keyframes)}: optimising the scene")

        images: list[np.ndarray] = []
        stats: list[dict] = []

        def on_keyframe(kf: KeyframeStats, entry, gaussians: gs.Gaussians) -> None:
            images.append((entry.image.detach().cpu().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
            stats.append({"keyframe": kf.keyframe, "path_index": kf.path_index, "inpainted": kf.inpainted,
                          "gaussians": kf.gaussians, "seconds": kf.seconds, "note": kf.note,
                          "scale": None if kf.alignment is None else kf.alignment.scale,
                          "shift": None if kf.alignment is None else kf.alignment.shift})
            state["keyframe"] = kf.keyframe + 1
            if kf.note:
                log.warning("%s", kf.note)
                ctx.report(Stage.KEYFRAMES, grower.steps_done, total, f"WARNING: {kf.note}")
            ctx.report(Stage.KEYFRAMES, grower.steps_done, total,
                       f"keyframe {kf.keyframe + 1} of {len(keyframes)} added: {kf.inpainted:.0%} inpainted, "
                       f"{kf.gaussians:,} Gaussians")
            if ctx.preview_due():  # throttled: no arrays built for a preview that would be dropped
                ctx.preview(kf.keyframe, **preview_arrays(gaussians, MAX_PREVIEW_SPLATS))

        progress_inpainter = ModelInpainter(*inpainter, inputs.inpaint_steps, ctx, lambda m: progress(m))
        grower = SceneGrower(inputs.trajectory, inputs.prompt, progress_inpainter, depth, config,
                             SceneCallbacks(check=ctx.check_cancelled, on_step=on_step, on_keyframe=on_keyframe),
                             device=registry.device)
        started = time.perf_counter()
        ctx.report(Stage.KEYFRAMES, 0, total, f"growing the scene at {len(keyframes)} keyframes of {config.size}²")
        try:
            grown = grower.grow(first_image)
        except AlignmentError as exc:
            raise PipelineError(f"the depth of a keyframe could not be put into the scene: {exc}",
                                "Try another seed or prompt; if it happens again, report it with the prompt and "
                                "the path.") from exc
        except Exception as exc:
            if is_out_of_memory(exc):
                raise PipelineError(f"ran out of memory growing the scene: {exc}",
                                    "Use fewer keyframes or a smaller keyframe size, or a backend with more GPU "
                                    "memory.", code="out_of_memory") from exc
            raise
        seconds["keyframes"] = time.perf_counter() - started
        started = time.perf_counter()
        ctx.report(Stage.MESH, 0, 1, "fusing the keyframes' depth into a mesh")
        gaussians = grown.gaussians.detached().to("cpu")
        mesh = fuse_keyframes(grown.gaussians, grown.support, check=ctx.check_cancelled)
        seconds["mesh"] = time.perf_counter() - started
        ctx.report(Stage.MESH, 1, 1, f"{len(mesh.faces):,} triangles")
        if key is not None:
            arrays = {"vertices": mesh.vertices, "faces": mesh.faces, "colors": mesh.colors,
                      "keyframes": np.asarray(grown.keyframes, np.int32), "keyframe_images": np.stack(images),
                      **{f"g_{k}": v for k, v in gaussians_payload(gaussians).items()}}
            self.cache.put(CACHE_STAGE, key, arrays, {"stats": stats})
        return SceneOutcome(gaussians, mesh, grown.keyframes, images, stats, seconds)

    def _models(self, inputs: SceneInputs, ctx: StageContext, need_text_to_image: bool):
        ctx.report(Stage.PREPROCESS, 0, 1, "loading SD 1.5 inpainting and Depth Anything V2 (first time only)")
        try:
            inpainter = self.registry.get(records.INPAINTER)
            refiner = self.registry.get(records.REFINER) if need_text_to_image else None
            depth = self.registry.get(records.DEPTH)
        except ModelUnavailableError as exc:
            roles = "--role inpainter --role depth" + (" --role refiner" if need_text_to_image else "")
            raise PipelineError(f"the scene models are not available: {exc}",
                                f"Download them on the backend machine: `./lift3d backend models download "
                                f"{roles}`.") from exc
        ctx.report(Stage.PREPROCESS, 1, 1, "models ready")
        return (inpainter, refiner), ModelDepth(depth)
