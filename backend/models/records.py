"""Every model Lift3D can use, registered in one place: one `ModelRecord` per role the pipeline
loads, holding its catalogue entries (repository, revision, licence, sizes, files, tiny builder)
and its loader.

    registry.get(records.DEPTH)   # -> DepthEstimator, loaded once per process

Adding a model touches its record here and its wrapper module (the `from_pretrained` and the
`save_tiny_*` function that the record names). Importing this module is cheap: loaders import
their wrapper when called and tiny builders are named lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .catalogue import (
    DIFFUSERS_CONFIGS, SD_CONFIGS, TRANSFORMERS_CONFIGS, LoadContext, ModelRecord, ModelSpec, TinyBuilder,
    diffusers_weights, transformers_weights)

if TYPE_CHECKING:
    from .captioner import Captioner
    from .clip import Clip
    from .depth_painter import DepthControlNet
    from .depth import DepthEstimator
    from .multiview import Zero123PlusPlus
    from .difix import DifixFixer
    from .inpainting import SceneInpainter
    from .refiners import PromptRefiner, TurboFixer
    from .segmentation import TextSegmenter
    from .zero123 import Zero123

_ZERO123_WEIGHTS = diffusers_weights("unet", "vae", "clip_camera_projection") + transformers_weights("image_encoder")
_SD_WEIGHTS = diffusers_weights("unet", "vae") + transformers_weights("text_encoder")


def _zero123(ctx: LoadContext) -> Zero123:
    from .zero123 import Zero123

    return Zero123.from_pretrained(ctx.folder, stable=False, **ctx.placement())


NOVEL_VIEW: ModelRecord[Zero123] = ModelRecord("novel_view", (ModelSpec(
    role="novel_view", repo_id="ashawkey/zero123-xl-diffusers",
    licence="MIT code; weights CreativeML OpenRAIL-M (Stable Diffusion derivative)", commercial=True,
    size_mb=3500, vram_mb=2800, configs=DIFFUSERS_CONFIGS, weights=_ZERO123_WEIGHTS,
    tiny=TinyBuilder("zero123:save_tiny_zero123"),
    summary="Zero123-XL: novel views of the object at relative camera poses (SDS, pseudo-views, refinement)"),
), _zero123)


def _stable_zero123(ctx: LoadContext) -> Zero123:
    from .zero123 import Zero123

    return Zero123.from_pretrained(ctx.folder, stable=True, **ctx.placement())


NOVEL_VIEW_STABLE: ModelRecord[Zero123] = ModelRecord("novel_view_stable", (ModelSpec(
    role="novel_view_stable", repo_id="ashawkey/stable-zero123-diffusers",
    licence="Stability AI Non-Commercial Research Community License", commercial=False,
    size_mb=3500, vram_mb=2800, configs=DIFFUSERS_CONFIGS, weights=_ZERO123_WEIGHTS,
    tiny=TinyBuilder("zero123:save_tiny_zero123"), optional=True,
    summary="Stable Zero123: sharper novel views, polar-angle conditioning (non-commercial)"),
), _stable_zero123)


def _zero123_plus_plus(ctx: LoadContext) -> Zero123PlusPlus:
    from .multiview import Zero123PlusPlus

    return Zero123PlusPlus.from_pretrained(ctx.folder, **ctx.placement())


MULTIVIEW: ModelRecord[Zero123PlusPlus] = ModelRecord("multiview", (ModelSpec(
    role="multiview", repo_id="sudo-ai/zero123plus-v1.2",
    licence="CC-BY-NC-4.0 weights (Apache-2.0 code)", commercial=False,
    size_mb=5200, vram_mb=5000, configs=DIFFUSERS_CONFIGS,
    weights=diffusers_weights("unet", "vae") + transformers_weights("text_encoder", "vision_encoder"),
    tiny=TinyBuilder("multiview:save_tiny_zero123pp"), optional=True,
    summary="Zero123++ v1.2: the six pseudo views generated jointly in one image (`multiview=zero123pp`; "
            "sampled in the project, no Hub code)"),
), _zero123_plus_plus)


def _depth(ctx: LoadContext) -> DepthEstimator:
    from .depth import DepthEstimator

    return DepthEstimator.from_pretrained(ctx.folder, **ctx.placement())


DEPTH: ModelRecord[DepthEstimator] = ModelRecord("depth", (ModelSpec(
    role="depth", repo_id="depth-anything/Depth-Anything-V2-Small-hf",
    licence="Apache-2.0", commercial=True, size_mb=100, vram_mb=60,
    configs=TRANSFORMERS_CONFIGS, weights=transformers_weights(""),
    tiny=TinyBuilder("depth:save_tiny_depth_anything"),
    summary="Depth Anything V2 Small: relative inverse depth for the depth losses"),
), _depth)


def _clip(ctx: LoadContext) -> Clip:
    from .clip import Clip

    return Clip.from_pretrained(ctx.folder, **ctx.placement())


CLIP: ModelRecord[Clip] = ModelRecord("clip", (ModelSpec(
    role="clip", repo_id="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    licence="MIT", commercial=True, size_mb=610, vram_mb=350,
    configs=("open_clip_config.json",), weights=(("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),),
    tiny=TinyBuilder("clip:save_tiny_open_clip"),
    summary="OpenCLIP ViT-B/32: semantic-consistency loss and similarity scores"),
), _clip)


def _segmenter(ctx: LoadContext) -> TextSegmenter:
    from .segmentation import TextSegmenter

    clipseg, sam = ctx.folders
    return TextSegmenter.from_pretrained(clipseg, sam, **ctx.placement())


SEGMENTER: ModelRecord[TextSegmenter] = ModelRecord("segmenter", (
    ModelSpec(
        role="clipseg", repo_id="CIDAS/clipseg-rd64-refined",
        licence="Apache-2.0", commercial=True, size_mb=600, vram_mb=320,
        configs=TRANSFORMERS_CONFIGS, weights=transformers_weights(""),
        tiny=TinyBuilder("segmentation:save_tiny_clipseg"),
        summary="CLIPSeg: heat map of the object the prompt names"),
    ModelSpec(
        role="sam", repo_id="facebook/sam-vit-base",
        licence="Apache-2.0", commercial=True, size_mb=375, vram_mb=200,
        configs=TRANSFORMERS_CONFIGS, weights=transformers_weights(""),
        tiny=TinyBuilder("segmentation:save_tiny_sam"),
        summary="Segment Anything (ViT-B): precise object mask from CLIPSeg's points and box"),
), _segmenter)


def _refiner(ctx: LoadContext) -> PromptRefiner:
    from .refiners import PromptRefiner

    return PromptRefiner.from_pretrained(ctx.folder, **ctx.placement())


REFINER: ModelRecord[PromptRefiner] = ModelRecord("refiner", (ModelSpec(
    role="refiner", repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
    licence="CreativeML OpenRAIL-M", commercial=True, size_mb=2100, vram_mb=2600,
    configs=SD_CONFIGS, weights=_SD_WEIGHTS, tiny=TinyBuilder("refiners:save_tiny_sd15"),
    summary="Stable Diffusion 1.5 img2img: prompt-driven texture refinement"),
), _refiner)


def _sd_turbo(ctx: LoadContext) -> TurboFixer:
    from .refiners import TurboFixer

    return TurboFixer.from_pretrained(ctx.folder, **ctx.placement())


SD_TURBO: ModelRecord[TurboFixer] = ModelRecord("sd_turbo", (ModelSpec(
    role="sd_turbo", repo_id="stabilityai/sd-turbo",
    licence="Stability AI Community License (free for commercial use below US$1M annual revenue; above that, "
            "a Stability AI enterprise licence)", commercial=True,
    size_mb=2600, vram_mb=2600, configs=SD_CONFIGS, weights=_SD_WEIGHTS,
    tiny=TinyBuilder("refiners:save_tiny_sd_turbo"), optional=True,
    summary="SD-Turbo img2img at t = 199: the fixer for commercial use (`fixer=sd-turbo`)"),
), _sd_turbo)


def _controlnet_depth(ctx: LoadContext) -> DepthControlNet:
    from .depth_painter import DepthControlNet

    return DepthControlNet.from_pretrained(ctx.folder, **ctx.placement())


CONTROLNET_DEPTH: ModelRecord[DepthControlNet] = ModelRecord("controlnet_depth", (ModelSpec(
    role="controlnet_depth", repo_id="lllyasviel/control_v11f1p_sd15_depth",
    licence="CreativeML OpenRAIL-M", commercial=True, size_mb=730, vram_mb=730,
    configs=("config.json",),
    weights=(("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors",
              "diffusion_pytorch_model.bin"),),
    tiny=TinyBuilder("depth_painter:save_tiny_controlnet_depth"),
    summary="ControlNet 1.1 depth for SD 1.5: paints views of the artist's mesh that follow its shape "
            "(Texture Selected, with the refiner's Stable Diffusion 1.5)"),
), _controlnet_depth)


def _inpainter(ctx: LoadContext) -> SceneInpainter:
    from .inpainting import SceneInpainter

    return SceneInpainter.from_pretrained(ctx.folder, **ctx.placement())


INPAINTER: ModelRecord[SceneInpainter] = ModelRecord("inpainter", (ModelSpec(
    role="inpainter", repo_id="stable-diffusion-v1-5/stable-diffusion-inpainting",
    licence="CreativeML OpenRAIL-M", commercial=True, size_mb=2100, vram_mb=2600,
    configs=SD_CONFIGS, weights=_SD_WEIGHTS, tiny=TinyBuilder("inpainting:save_tiny_sd_inpainting"),
    optional=True,
    summary="Stable Diffusion 1.5 inpainting: fills what each new keyframe of a text → scene job does not show "
            "yet (Scene mode)"),
), _inpainter)


_DIFIX_LICENCE = ("NVIDIA License (non-commercial: research or evaluation only), on SD-Turbo's weights "
                  "(Stability AI Community License)")


def _difix(ctx: LoadContext) -> DifixFixer:
    from .difix import DifixFixer

    return DifixFixer.from_pretrained(ctx.folder, reference=False, **ctx.placement())


DIFIX: ModelRecord[DifixFixer] = ModelRecord("difix", (ModelSpec(
    role="difix", repo_id="nvidia/difix", licence=_DIFIX_LICENCE, commercial=False,
    size_mb=2500, vram_mb=2600, configs=SD_CONFIGS, weights=_SD_WEIGHTS,
    tiny=TinyBuilder("difix:save_tiny_difix"), optional=True,
    summary="Difix: single-step fixer of rendering artefacts (Difix3D+), one step at t = 199"),
), _difix)


def _difix_ref(ctx: LoadContext) -> DifixFixer:
    from .difix import DifixFixer

    return DifixFixer.from_pretrained(ctx.folder, reference=True, **ctx.placement())


DIFIX_REF: ModelRecord[DifixFixer] = ModelRecord("difix_ref", (ModelSpec(
    role="difix_ref", repo_id="nvidia/difix_ref", licence=_DIFIX_LICENCE, commercial=False,
    size_mb=2500, vram_mb=2600, configs=SD_CONFIGS, weights=_SD_WEIGHTS,
    tiny=TinyBuilder("difix:save_tiny_difix_ref"), optional=True,
    summary="Difix-ref: Difix guided by a reference view (joint self-attention over render and reference)"),
), _difix_ref)


def _captioner(ctx: LoadContext) -> Captioner:
    from .captioner import Captioner

    return Captioner.from_pretrained(ctx.folder, **ctx.placement())


CAPTIONER: ModelRecord[Captioner] = ModelRecord("captioner", (ModelSpec(
    role="captioner", repo_id="Salesforce/blip-image-captioning-base",
    licence="BSD-3-Clause", commercial=True, size_mb=990, vram_mb=500,
    configs=TRANSFORMERS_CONFIGS, weights=transformers_weights(""), tiny=TinyBuilder("captioner:save_tiny_blip"),
    summary="BLIP base: a caption when the prompt is empty"),
), _captioner)


CAPTIONER_BLIP2: ModelRecord[Captioner] = ModelRecord("captioner_blip2", (ModelSpec(
    role="captioner_blip2", repo_id="Salesforce/blip2-opt-2.7b",
    licence="MIT (model card); its language model OPT-2.7B comes under Meta's OPT licence (non-commercial "
            "research)", commercial=False, size_mb=15_500, vram_mb=7_800,
    configs=TRANSFORMERS_CONFIGS,
    weights=tuple((f"model-0000{i}-of-00002.safetensors", f"pytorch_model-0000{i}-of-00002.bin") for i in (1, 2)),
    tiny=TinyBuilder("captioner:save_tiny_blip2"), optional=True,
    summary="BLIP-2 OPT-2.7b: Make-It-3D's captioner, for an empty prompt (`captioner=blip2`, `high`)"),
), _captioner)


RECORDS: tuple[ModelRecord, ...] = (NOVEL_VIEW, NOVEL_VIEW_STABLE, MULTIVIEW, DEPTH, CLIP, SEGMENTER, REFINER,
                                    CONTROLNET_DEPTH, INPAINTER, DIFIX, DIFIX_REF, SD_TURBO, CAPTIONER,
                                    CAPTIONER_BLIP2)
"""Every record, in the order `models list` shows them."""

CATALOGUE: dict[str, ModelSpec] = {s.role: s for record in RECORDS for s in record.weights}
"""Every catalogue entry by role (clipseg and sam are separate entries of the segmenter record)."""


def record_for(role: str) -> ModelRecord:
    """The record that loads catalogue entry `role` (or the record named `role`): for the CLI's
    `--role`. The pipeline uses the record constants above."""
    for record in RECORDS:
        if record.name == role or any(s.role == role for s in record.weights):
            return record
    known = sorted({*CATALOGUE, *(r.name for r in RECORDS)})
    raise KeyError(f"unknown model role {role!r}; known roles: {', '.join(known)}")
