"""Every pretrained model Lift3D can use: where it comes from, what it costs, what it allows.

One `ModelSpec` per role. The `full` preset downloads `repo_id` into the normal Hugging Face
cache; the `tiny` preset writes the same architecture with small random weights into a local
folder laid out like that repository (see `tiny.py`), and both load through the same
`from_pretrained` code in the wrappers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    role: str
    """What the pipeline uses it for; the registry key."""
    repo_id: str
    """Hugging Face repository of the real weights."""
    licence: str
    """Licence of the weights, as stated on the model card."""
    commercial: bool
    """Whether the weights' licence allows commercial use (possibly with use-based restrictions)."""
    size_mb: int
    """Approximate download size of the files in `allow_patterns`."""
    vram_mb: int
    """Approximate GPU memory of the loaded weights in half precision."""
    configs: tuple[str, ...]
    """Glob patterns of the small files to fetch (configs, tokenizers, scheduler)."""
    weights: tuple[tuple[str, ...], ...]
    """One entry per weight file, each an ordered preference of names (half precision, then
    safetensors, then pickle): the download takes the first name the repository has, so no
    repository is fetched twice in two formats."""
    revision: str = "main"
    """Git revision on the Hub; pin a commit here to freeze the weights."""
    optional: bool = False
    """Only used when a setting asks for it; `models download` skips it unless named."""
    companion: str | None = None
    """Another repository fetched with this one in full (e.g. the code of a custom pipeline)."""
    has_tiny: bool = True
    """Whether the tiny preset can build it (models with remote code cannot be rebuilt offline)."""
    summary: str = ""


_DIFFUSERS_CONFIGS = ("model_index.json", "*/config.json", "*/preprocessor_config.json", "scheduler/*.json",
                      "tokenizer/*")
_TRANSFORMERS_CONFIGS = ("*.json", "*.txt")
_SD_CONFIGS = ("model_index.json", "*/config.json", "scheduler/*.json", "tokenizer/*")


def _diffusers_weights(*folders: str) -> tuple[tuple[str, ...], ...]:
    return tuple((f"{d}/diffusion_pytorch_model.fp16.safetensors", f"{d}/diffusion_pytorch_model.safetensors",
                  f"{d}/diffusion_pytorch_model.bin") for d in folders)


def _transformers_weights(*folders: str) -> tuple[tuple[str, ...], ...]:
    prefix = [f"{d}/" if d else "" for d in folders]
    return tuple((f"{p}model.fp16.safetensors", f"{p}model.safetensors", f"{p}pytorch_model.bin") for p in prefix)


_ZERO123_WEIGHTS = (_diffusers_weights("unet", "vae", "clip_camera_projection")
                    + _transformers_weights("image_encoder"))
_SD_WEIGHTS = _diffusers_weights("unet", "vae") + _transformers_weights("text_encoder")

CATALOGUE: dict[str, ModelSpec] = {spec.role: spec for spec in (
    ModelSpec(
        role="novel_view", repo_id="ashawkey/zero123-xl-diffusers",
        licence="MIT code; weights CreativeML OpenRAIL-M (Stable Diffusion derivative)", commercial=True,
        size_mb=3500, vram_mb=2800,
        configs=_DIFFUSERS_CONFIGS, weights=_ZERO123_WEIGHTS,
        summary="Zero123-XL: novel views of the object at relative camera poses (SDS, pseudo-views, refinement)"),
    ModelSpec(
        role="novel_view_stable", repo_id="ashawkey/stable-zero123-diffusers",
        licence="Stability AI Non-Commercial Research Community License", commercial=False,
        size_mb=3500, vram_mb=2800,
        configs=_DIFFUSERS_CONFIGS, weights=_ZERO123_WEIGHTS,
        optional=True,
        summary="Stable Zero123: sharper novel views, polar-angle conditioning (non-commercial)"),
    ModelSpec(
        role="multiview", repo_id="sudo-ai/zero123plus-v1.2",
        licence="CC-BY-NC-4.0 weights (Apache-2.0 code)", commercial=False,
        size_mb=5200, vram_mb=5000,
        configs=_DIFFUSERS_CONFIGS,
        weights=_diffusers_weights("unet", "vae") + _transformers_weights("text_encoder", "vision_encoder"),
        optional=True, has_tiny=False, companion="sudo-ai/zero123plus-pipeline",
        summary="Zero123++ v1.2: the six fixed views in one pass (its pipeline code comes from the Hub)"),
    ModelSpec(
        role="depth", repo_id="depth-anything/Depth-Anything-V2-Small-hf",
        licence="Apache-2.0", commercial=True, size_mb=100, vram_mb=60,
        configs=_TRANSFORMERS_CONFIGS, weights=_transformers_weights(""),
        summary="Depth Anything V2 Small: relative inverse depth for the depth losses"),
    ModelSpec(
        role="clip", repo_id="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        licence="MIT", commercial=True, size_mb=610, vram_mb=350,
        configs=("open_clip_config.json",),
        weights=(("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),),
        summary="OpenCLIP ViT-B/32: semantic-consistency loss and similarity scores"),
    ModelSpec(
        role="clipseg", repo_id="CIDAS/clipseg-rd64-refined",
        licence="Apache-2.0", commercial=True, size_mb=600, vram_mb=320,
        configs=_TRANSFORMERS_CONFIGS, weights=_transformers_weights(""),
        summary="CLIPSeg: heat map of the object the prompt names"),
    ModelSpec(
        role="sam", repo_id="facebook/sam-vit-base",
        licence="Apache-2.0", commercial=True, size_mb=375, vram_mb=200,
        configs=_TRANSFORMERS_CONFIGS, weights=_transformers_weights(""),
        summary="Segment Anything (ViT-B): precise object mask from CLIPSeg's points and box"),
    ModelSpec(
        role="refiner", repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        licence="CreativeML OpenRAIL-M", commercial=True, size_mb=2100, vram_mb=2600,
        configs=_SD_CONFIGS, weights=_SD_WEIGHTS,
        summary="Stable Diffusion 1.5 img2img: prompt-driven texture refinement"),
    ModelSpec(
        role="fixer", repo_id="stabilityai/sd-turbo",
        licence="Stability AI Community License (commercial use needs a Stability licence)", commercial=False,
        size_mb=2600, vram_mb=2600,
        configs=_SD_CONFIGS, weights=_SD_WEIGHTS,
        optional=True,
        summary="SD-Turbo: single-step artefact fixer for rendered views (Difix3D+-style)"),
    ModelSpec(
        role="captioner", repo_id="Salesforce/blip-image-captioning-base",
        licence="BSD-3-Clause", commercial=True, size_mb=990, vram_mb=500,
        configs=_TRANSFORMERS_CONFIGS, weights=_transformers_weights(""),
        summary="BLIP base: a caption when the prompt is empty"),
)}


def spec(role: str) -> ModelSpec:
    try:
        return CATALOGUE[role]
    except KeyError:
        raise KeyError(f"unknown model role {role!r}; known roles: {', '.join(CATALOGUE)}") from None
