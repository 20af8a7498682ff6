"""A benchmark-only model set: the real architectures at full size with random weights, laid out
as the tiny preset lays out its folders, so the registry loads them through the very same loaders.

What a GPU pays per call is a matter of shapes, not of weight values, so the whole pipeline timed on
this set costs what it costs with the real weights; its output is noise. Only `gpu-check` builds
it (into a folder of its own, marked `full_size_random`); no preset or request can reach it.

Each folder starts as its tiny version (processors, tokenizers, schedulers, index files: nothing
there depends on the model's size), then the weight-bearing parts are replaced by the full-size
architecture (hyperparameters in `full_size_models`, which documents where they come from).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..models import records
from ..models.catalogue import ModelSpec
from ..models.tiny import MARKER, ensure_tiny
from . import full_size_models as fs

LABEL = "full_size_random"


def _zero123_xl(folder: Path) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from ..models.zero123 import CLIPCameraProjection

    fs.sd_unet(8).save_pretrained(folder / "unet")
    fs.sd_vae().save_pretrained(folder / "vae")
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=768)).save_pretrained(folder / "image_encoder")
    CLIPCameraProjection(embedding_dim=768, additional_embeddings=4).save_pretrained(folder / "clip_camera_projection")


def _zero123pp_v12(folder: Path) -> None:
    """Zero123++ v1.2 is Stable Diffusion 2's UNet (1024-wide cross-attention, linear projections,
    head dims 5/10/20/20) with OpenCLIP ViT-H's text encoder and a ViT-H/14 image encoder."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    UNet2DConditionModel(sample_size=96, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                         layers_per_block=2, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                         use_linear_projection=True).save_pretrained(folder / "unet")
    fs.sd_vae().save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                                 max_position_embeddings=77, hidden_act="gelu")).save_pretrained(folder / "text_encoder")
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=1024, hidden_act="gelu")).save_pretrained(folder / "vision_encoder")


def _depth_anything_v2_small(folder: Path) -> None:
    model = fs.depth_anything_v2_small("cpu", torch.float32).model
    model.save_pretrained(folder)


def _open_clip_vit_b32(folder: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    model_cfg = open_clip.get_model_config("ViT-B-32")
    model = open_clip.CLIP(**model_cfg)
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"] = model_cfg
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))


def _clipseg_rd64_refined(folder: Path) -> None:
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    config = CLIPSegConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77),
        vision_config=dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072,
                           num_hidden_layers=12, num_attention_heads=12),
        projection_dim=512, reduce_dim=64, extract_layers=[3, 6, 9], decoder_num_attention_heads=4,
        decoder_intermediate_size=2048, use_complex_transposed_convolution=True)
    CLIPSegForImageSegmentation(config).save_pretrained(folder)


def _sam_vit_base(folder: Path) -> None:
    from transformers import SamConfig, SamModel

    SamModel(SamConfig()).save_pretrained(folder)  # transformers' defaults are SAM ViT-B's


def _sd15(folder: Path) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    fs.sd_unet(4).half().save_pretrained(folder / "unet", variant="fp16")
    fs.sd_vae().half().save_pretrained(folder / "vae", variant="fp16")
    CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                 max_position_embeddings=77)).half().save_pretrained(
        folder / "text_encoder", variant="fp16")


def _blip_base(folder: Path) -> None:
    from transformers import BlipConfig, BlipForConditionalGeneration

    tiny = BlipConfig.from_pretrained(folder)
    text = tiny.text_config
    # BLIP base: ViT-B/16 at 384², a 12-layer 768-wide BERT decoder (the token ids stay the tiny
    # tokenizer's, whose vocabulary is smaller than bert-base-uncased's; the cost is the same).
    config = BlipConfig(
        text_config=dict(vocab_size=text.vocab_size, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=512, bos_token_id=text.bos_token_id,
                         sep_token_id=text.sep_token_id, eos_token_id=text.eos_token_id,
                         pad_token_id=text.pad_token_id),
        vision_config=dict(image_size=384, patch_size=16, hidden_size=768, intermediate_size=3072,
                           num_hidden_layers=12, num_attention_heads=12, initializer_range=0.02),
        projection_dim=512, image_text_hidden_size=256)
    BlipForConditionalGeneration(config).save_pretrained(folder)


FULL_SIZE: dict[str, Callable[[Path], None]] = {
    "ashawkey/zero123-xl-diffusers": _zero123_xl,
    "sudo-ai/zero123plus-v1.2": _zero123pp_v12,
    "depth-anything/Depth-Anything-V2-Small-hf": _depth_anything_v2_small,
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K": _open_clip_vit_b32,
    "CIDAS/clipseg-rd64-refined": _clipseg_rd64_refined,
    "facebook/sam-vit-base": _sam_vit_base,
    "stable-diffusion-v1-5/stable-diffusion-v1-5": _sd15,
    "Salesforce/blip-image-captioning-base": _blip_base,
}
"""Repository → its full-size builder: every model the `standard` preset runs (the captioner for
an empty prompt). Difix (the `high` preset) is timed per call by `bench models --full-size`."""

STANDARD_RECORDS = (records.NOVEL_VIEW, records.MULTIVIEW, records.DEPTH, records.CLIP, records.SEGMENTER, records.REFINER,
                    records.CAPTIONER)


def specs_for(record_list=STANDARD_RECORDS) -> list[ModelSpec]:
    return [spec for record in record_list for spec in record.weights]


def is_full_size(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get(LABEL) is True
    except (OSError, ValueError):
        return False


def build_full_size_set(root: Path, specs: list[ModelSpec] | None = None, log: Callable[[str], None] = print) -> Path:
    """Build (or reuse) the full-size random set under `root`; returns `root`, to be used as the
    registry's tiny root (ModelSettings(preset="tiny", tiny_dir=root))."""
    for spec in specs if specs is not None else specs_for():
        build = FULL_SIZE.get(spec.repo_id)
        if build is None:
            raise KeyError(f"no full-size builder for {spec.repo_id}")
        folder, _ = ensure_tiny(spec, root)
        if is_full_size(folder):
            continue
        torch.manual_seed(0)
        build(folder)
        marker = json.loads((folder / MARKER).read_text())
        marker[LABEL] = True
        # Written last: an interrupted build leaves a folder that is rebuilt next time.
        (folder / MARKER).write_text(json.dumps(marker))
        log(f"built full-size random {spec.repo_id}")
    return root
