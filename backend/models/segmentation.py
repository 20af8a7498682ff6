"""Text-guided segmentation: CLIPSeg finds the object the prompt names, SAM draws its outline.

As in "Text-guided One Image to 3D Generation": CLIPSeg (CIDAS/clipseg-rd64-refined) turns the
prompt into a coarse heat map; its binary mask gives SAM (facebook/sam-vit-base) a box and a few
points; SAM's candidate masks are kept when they mostly lie inside the CLIPSeg mask. CLIPSeg knows
*what* to cut out but its edges are blurry (it predicts at 352², then is upsampled); SAM has sharp
edges but no notion of the prompt, so each checks the other.

Images with a real alpha channel need no model: their alpha already is the mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

FOREGROUND_PROMPT = "the main object"
"""The CLIPSeg query used for plain background removal (empty prompt)."""
MAX_POINTS = 3
"""How many positive points SAM gets besides the box: more points over-constrain its masks."""
ALPHA_THRESHOLD = 128


class SegmentationError(ValueError):
    """The prompt names nothing CLIPSeg can find in the image (or nothing is left to segment)."""


@dataclass
class SegmentationResult:
    mask: np.ndarray  # [H, W] bool, the image's size
    source: str  # "alpha" | "text" | "foreground"
    heatmap: np.ndarray | None  # [H, W] float32 in [0, 1]; None for "alpha"
    overlap: float  # best fusion ratio |SAM ∩ CLIPSeg| / |SAM| (1.0 for "alpha")
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SamPrompts:
    """Prompts in image pixel indices, SAM's convention (its prompt encoder adds the half pixel)."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1, inclusive
    points: tuple[tuple[int, int], ...]  # (x, y), highest heat first


# --- pure helpers ---------------------------------------------------------------------------------

def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless `image` is uint8 [H, W, 3] or [H, W, 4] with H, W > 0."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"the image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"the image must be uint8 (0-255), got {image.dtype}; convert it with "
                         f"(image * 255).round().astype(np.uint8) if it is float in [0, 1]")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"the image must be [H, W, 3] (RGB) or [H, W, 4] (RGBA), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image is empty (shape {image.shape})")


def alpha_mask(image: np.ndarray) -> np.ndarray | None:
    """[H, W, 3|4] uint8 → [H, W] bool from the alpha channel, or None when there is no alpha or
    it is fully opaque (an opaque alpha says nothing about the object: segment it instead)."""
    if image.shape[2] != 4:
        return None
    alpha = image[..., 3]  # [H, W] uint8
    if (alpha == 255).all():
        return None
    return alpha >= ALPHA_THRESHOLD


def fuse_masks(sam_masks: np.ndarray, clip_mask: np.ndarray,
               min_overlap: float = 0.5) -> tuple[np.ndarray | None, np.ndarray]:
    """sam_masks [M, H, W] bool, clip_mask [H, W] bool → (union of the SAM masks whose ratio
    |SAM ∩ CLIP| / |SAM| ≥ min_overlap, or None when none does; the ratios [M] float).

    The ratio is relative to the SAM mask, not an IoU: a SAM mask of one part of the object (a
    chair's seat) lies fully inside CLIPSeg's blob and is kept, while one that spills into the
    background is not. Empty SAM masks get ratio 0, so they never qualify."""
    sam_masks = np.asarray(sam_masks, dtype=bool)
    clip_mask = np.asarray(clip_mask, dtype=bool)
    if sam_masks.ndim != 3 or sam_masks.shape[1:] != clip_mask.shape:
        raise ValueError(f"sam_masks must be [M, H, W] and clip_mask [H, W] of the same size, got "
                         f"{sam_masks.shape} and {clip_mask.shape}")
    area = sam_masks.sum(axis=(1, 2))  # [M]
    inside = (sam_masks & clip_mask).sum(axis=(1, 2))  # [M]
    ratios = np.where(area > 0, inside / np.maximum(area, 1), 0.0).astype(np.float64)  # [M]
    keep = (area > 0) & (ratios >= min_overlap)
    if not keep.any():
        return None, ratios
    return sam_masks[keep].any(axis=0), ratios


def prompts_from_heatmap(heatmap: np.ndarray, mask: np.ndarray, max_points: int = MAX_POINTS) -> SamPrompts:
    """heatmap [H, W] float, mask [H, W] bool (non-empty) → SAM's box and points.

    The box bounds the whole binary mask; the points are the highest local maxima of the heat
    inside it, more than a tenth of the shorter side apart so that two points never mark the
    same peak."""
    from scipy.ndimage import maximum_filter

    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    if not mask.any():
        raise ValueError("the mask is empty: no prompts to derive")
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))

    height, width = heatmap.shape
    radius = max(1, min(height, width) // 10)
    heat = np.where(mask, heatmap.astype(np.float32), -np.inf)  # [H, W]; outside the mask never wins
    peaks = (heat == maximum_filter(heat, size=2 * radius + 1, mode="nearest")) & mask  # [H, W] bool
    py, px = np.nonzero(peaks)  # [N] each, in row-major order
    score = heat[py, px]  # [N]
    # A plateau yields many equal maxima side by side (a saturated heat map: millions): take the
    # best candidate left, then drop every candidate within `radius` of it. argmax returns the
    # first of equal scores, so ties go to the top-left one and the result is deterministic.
    points: list[tuple[int, int]] = []
    while len(points) < max_points and np.isfinite(score).any():
        i = int(np.argmax(score))
        points.append((int(px[i]), int(py[i])))
        score = np.where(np.maximum(np.abs(px - px[i]), np.abs(py - py[i])) > radius, score, -np.inf)
    return SamPrompts(box=box, points=tuple(points))


# --- the models -----------------------------------------------------------------------------------

def _pil(rgb: np.ndarray):
    # PIL images leave no doubt about the channel axis (tiny numpy arrays can be misread as CHW).
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(rgb))  # uint8 [H, W, 3] → an RGB image


class TextSegmenter:
    def __init__(self, clipseg_processor, clipseg_model, sam_processor, sam_model):
        self.clipseg_processor = clipseg_processor
        self.clipseg = clipseg_model.eval().requires_grad_(False)
        self.sam_processor = sam_processor
        self.sam = sam_model.eval().requires_grad_(False)
        parameter = next(self.sam.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    @classmethod
    def from_pretrained(cls, clipseg_path: str | Path, sam_path: str | Path, *,
                        device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> TextSegmenter:
        """Load both models from local folders (a Hub snapshot or a tiny folder laid out the same)."""
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor, SamModel, SamProcessor

        clipseg_processor = CLIPSegProcessor.from_pretrained(clipseg_path)
        clipseg = CLIPSegForImageSegmentation.from_pretrained(clipseg_path, dtype=dtype).to(device)
        sam_processor = SamProcessor.from_pretrained(sam_path)
        sam = SamModel.from_pretrained(sam_path, dtype=dtype).to(device)
        return cls(clipseg_processor, clipseg, sam_processor, sam)

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return (self.clipseg, self.sam)

    def segment(self, image: np.ndarray, prompt: str, *, min_overlap: float = 0.5,
                heat_threshold: float = 0.1) -> SegmentationResult:
        """image uint8 [H, W, 3|4] + prompt → the object's mask [H, W] bool.

        A non-opaque alpha channel is used as is; an empty prompt removes the background; any
        other prompt selects the object it names. Raises SegmentationError when CLIPSeg finds
        nothing for the prompt."""
        check_image(image)
        for name, value in (("min_overlap", min_overlap), ("heat_threshold", heat_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        alpha = alpha_mask(image)
        if alpha is not None:
            if not alpha.any():
                raise SegmentationError(
                    f"the image's alpha channel hides every pixel (no alpha ≥ {ALPHA_THRESHOLD}); "
                    f"use an image whose object is opaque, or drop the alpha channel to segment it by prompt")
            return SegmentationResult(mask=alpha, source="alpha", heatmap=None, overlap=1.0)

        rgb = image[..., :3]  # [H, W, 3] uint8; an opaque alpha carries nothing
        text = (prompt or "").strip()
        source = "text" if text else "foreground"
        query = text or FOREGROUND_PROMPT
        heat = self.heatmap(rgb, query)  # [H, W] float32
        clip_mask = heat >= heat_threshold  # [H, W] bool
        if not clip_mask.any():
            raise SegmentationError(
                f"CLIPSeg found nothing matching {query!r} in the image (highest score {heat.max():.2f} < "
                f"heat threshold {heat_threshold}); try a prompt that names the object as it appears "
                f"(e.g. 'a red chair'), leave the prompt empty to remove the background, or turn "
                f"segmentation off if the image is already cut out")

        prompts = prompts_from_heatmap(heat, clip_mask)
        sam_masks = self.sam_masks(rgb, prompts)  # [M, H, W] bool
        fused, ratios = fuse_masks(sam_masks, clip_mask, min_overlap)
        best = float(ratios.max()) if ratios.size else 0.0
        warnings: list[str] = []
        if fused is None:
            message = (f"SAM masks did not agree with CLIPSeg for {query!r} (best overlap {best:.2f} < "
                       f"{min_overlap}); using the CLIPSeg mask")
            log.warning(message)
            warnings.append(message)
            fused = clip_mask
        return SegmentationResult(mask=fused, source=source, heatmap=heat, overlap=best, warnings=warnings)

    @torch.no_grad()
    def heatmap(self, rgb: np.ndarray, prompt: str) -> np.ndarray:
        """rgb uint8 [H, W, 3] + prompt → CLIPSeg's probability [H, W] float32 in [0, 1]."""
        inputs = self.clipseg_processor(text=[prompt], images=[_pil(rgb)], padding=True, truncation=True,
                                        return_tensors="pt")
        device, dtype = self.clipseg.device, self.clipseg.dtype
        logits = self.clipseg(input_ids=inputs["input_ids"].to(device),
                              attention_mask=inputs["attention_mask"].to(device),
                              pixel_values=inputs["pixel_values"].to(device, dtype)).logits
        # CLIPSeg squeezes a batch of one to [h, w]; restore [1, 1, h, w] for interpolate.
        probability = torch.sigmoid(logits.float().reshape(1, 1, *logits.shape[-2:]))
        heat = F.interpolate(probability, size=rgb.shape[:2], mode="bilinear", align_corners=False)
        return heat[0, 0].clamp(0, 1).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def sam_masks(self, rgb: np.ndarray, prompts: SamPrompts) -> np.ndarray:
        """rgb uint8 [H, W, 3] + one box and its points → SAM's candidate masks [M, H, W] bool
        (multimask output: whole, part and sub-part of what the prompts point at)."""
        # Nesting: [image][point batch][point][x, y]; one box per point batch; all points positive.
        points = [[[list(p) for p in prompts.points]]]
        labels = [[[1] * len(prompts.points)]]
        inputs = self.sam_processor(images=_pil(rgb), input_points=points, input_labels=labels,
                                    input_boxes=[[list(prompts.box)]], return_tensors="pt")
        # Pixels and coordinates in the model's dtype (float16 on CUDA); labels stay integers.
        model_inputs = {k: inputs[k].to(self.device, self.dtype)
                        for k in ("pixel_values", "input_points", "input_boxes")}
        model_inputs["input_labels"] = inputs["input_labels"].to(self.device)
        outputs = self.sam(**model_inputs, multimask_output=True)
        masks = self.sam_processor.post_process_masks(
            outputs.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"])[0]
        # masks: [1, M, H, W] bool (one point batch, M = 3 candidates), at the image's size
        return masks.reshape(-1, *rgb.shape[:2]).numpy().astype(bool)


# --- the tiny preset ------------------------------------------------------------------------------
# Processors are written component by component (preprocessor_config.json + tokenizer files), the
# layout of the real repositories; ProcessorMixin.save_pretrained would write a combined
# processor_config.json instead, which the real snapshots do not have.

def save_tiny_clipseg(folder: Path) -> None:
    """CLIPSeg rd64-refined's architecture (ViT-B/16-style vision tower declared at 224 and run at
    352 through position interpolation, the 'complex' transposed-convolution decoder) with tiny
    random weights; CLIP's real tokenizer and the real processor settings."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, ViTImageProcessor

    from .tiny_tokenizers import clip_tokenizer

    torch.manual_seed(0)
    config = CLIPSegConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77),
        # patch 16 like the real model: the refined decoder upsamples by (patch / 4)², i.e. back to 352.
        vision_config=dict(image_size=224, patch_size=16, hidden_size=32, intermediate_size=37,
                           num_hidden_layers=3, num_attention_heads=4),
        projection_dim=32, reduce_dim=16, extract_layers=[0, 1, 2], decoder_num_attention_heads=2,
        decoder_intermediate_size=16, use_complex_transposed_convolution=True)
    CLIPSegForImageSegmentation(config).save_pretrained(folder)
    ViTImageProcessor(do_resize=True, size={"height": 352, "width": 352}, resample=2, do_rescale=True,
                      do_normalize=True, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    clip_tokenizer().save_pretrained(folder)


def save_tiny_sam(folder: Path) -> None:
    """SAM's architecture (windowed ViT with one global-attention block, prompt encoder, two-way
    mask decoder) with tiny random weights and the real 1024² processor: a 2-layer, 32-wide ViT
    stays well under a second per image on a CPU even at 64 × 64 patches, so nothing needs a
    smaller input size and the tiny model exercises the real resize/pad/post-process path."""
    from transformers import (SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel,
                              SamPromptEncoderConfig, SamVisionConfig)

    torch.manual_seed(0)
    image_size, patch_size, channels = 1024, 16, 16
    config = SamConfig(
        vision_config=SamVisionConfig(hidden_size=32, output_channels=channels, num_hidden_layers=2,
                                      num_attention_heads=2, image_size=image_size, patch_size=patch_size,
                                      mlp_dim=64, window_size=8, global_attn_indexes=[1],
                                      num_pos_feats=channels // 2,  # sin + cos = the prompt width
                                      # SAM's default (1e-10) would make the tiny image embedding
                                      # constant, so its masks would ignore the image entirely.
                                      initializer_range=0.02),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=channels, image_size=image_size,
                                                     patch_size=patch_size, mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=channels, num_hidden_layers=2,
                                                 num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16))
    SamModel(config).save_pretrained(folder)
    SamImageProcessor(size={"longest_edge": image_size}, pad_size={"height": image_size, "width": image_size},
                      image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
