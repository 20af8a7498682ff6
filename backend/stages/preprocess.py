"""Preprocess: the artist's image → a centred, square cut-out of the object, its mask and its
monocular depth (the caption for an empty prompt is the pipeline's `caption` step).

The object mask comes from, in order: the image's own alpha; text-guided segmentation of the
object the prompt names (CLIPSeg + SAM); background removal (the same models asked for "the main
object") when the prompt is empty; or, with segmentation switched off, keying out the plain
background colour seen along the image border.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from ..serving.context import PipelineError
from ..models import records
from .config import PreprocessConfig
from .geometry import ReferenceTargets
from .image_io import DecodedImage


@dataclass
class PreparedInput:
    rgba: np.ndarray  # [S, S, 4] uint8: the object centred with a border, alpha = mask
    depth: np.ndarray  # [S, S] float32 relative inverse depth (larger = nearer), 0 outside the mask
    mask_source: str  # "alpha" | "text" | "foreground" | "border colour"
    warnings: list[str] = field(default_factory=list)

    @property
    def mask(self) -> np.ndarray:  # [S, S] bool
        return self.rgba[..., 3] >= 128

    def image_on(self, background: float = 1.0) -> torch.Tensor:  # → [1, 3, S, S] float in [0, 1]
        rgb = torch.from_numpy(self.rgba[..., :3].astype(np.float32) / 255.0)
        alpha = torch.from_numpy(self.rgba[..., 3:].astype(np.float32) / 255.0)
        return (rgb * alpha + background * (1 - alpha)).permute(2, 0, 1)[None]

    def references(self) -> ReferenceTargets:
        """The reference-view targets both optimisation stages fit: the cut-out on white, its
        mask and its monocular depth."""
        return ReferenceTargets(self.image_on(1.0)[0], torch.from_numpy(self.mask.astype(np.float32)),
                                torch.from_numpy(self.depth))

    def cache_payload(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, meta) for the result cache."""
        return {"rgba": self.rgba, "depth": self.depth}, {"mask_source": self.mask_source, "warnings": self.warnings}

    @classmethod
    def from_cache(cls, arrays: dict[str, np.ndarray], meta: dict) -> PreparedInput:
        return cls(np.array(arrays["rgba"]), np.array(arrays["depth"]), meta["mask_source"], list(meta["warnings"]))


def border_colour_mask(rgba: np.ndarray, tolerance: float = 0.12) -> np.ndarray:  # [H, W, 4] → [H, W] bool
    """The object on a plain backdrop: everything that differs from the median border colour by
    more than `tolerance` (RGB distance in [0, 1] units), largest connected region, holes filled."""
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    distance = np.linalg.norm(rgb - np.median(border, axis=0), axis=-1)
    mask = distance > tolerance
    labels, count = ndimage.label(mask)
    if count == 0:
        raise PipelineError("no object stands out from the image's background",
                            hint="turn segmentation on, or give the image a transparent background",
                            code="invalid_request")
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(labels == largest)


def recentre(rgba: np.ndarray, mask: np.ndarray, size: int, border_ratio: float) -> np.ndarray:
    """Crop the object's box, scale its longer side to (1 − 2·border_ratio)·size and centre it on
    a transparent square canvas [size, size, 4] (DreamGaussian's framing, which matches the
    object size Zero123 was trained on)."""
    if not mask.any():
        raise PipelineError("the object mask is empty", hint="check the prompt names the object in the image",
                            code="invalid_request")
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    crop = rgba[top:bottom, left:right].copy()
    crop[..., 3] = np.where(mask[top:bottom, left:right], crop[..., 3], 0)
    height, width = crop.shape[:2]
    target = max(1, int(round(size * (1 - 2 * border_ratio))))
    scale = target / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    # Resample premultiplied colour so the transparent surroundings do not bleed into the edges.
    premultiplied = crop.astype(np.float32)
    premultiplied[..., :3] *= premultiplied[..., 3:] / 255.0
    channels = [np.asarray(Image.fromarray(premultiplied[..., c]).resize((new_w, new_h), Image.Resampling.LANCZOS))
                for c in range(4)]
    resized = np.clip(np.stack(channels, -1), 0, 255)
    alpha = resized[..., 3:] / 255.0
    resized[..., :3] = np.where(alpha > 0, resized[..., :3] / np.maximum(alpha, 1e-6), 0)
    canvas = np.zeros((size, size, 4), np.uint8)
    y, x = (size - new_h) // 2, (size - new_w) // 2
    canvas[y:y + new_h, x:x + new_w] = np.clip(resized + 0.5, 0, 255).astype(np.uint8)
    return canvas


def object_mask(image: DecodedImage, prompt: str, config: PreprocessConfig, segmenter_factory
                ) -> tuple[np.ndarray, str, list[str]]:
    """→ (mask [H, W] bool, where it came from, warnings)."""
    if image.has_alpha:
        return image.rgba[..., 3] >= 128, "alpha", []
    if not config.segmentation:
        return border_colour_mask(image.rgba), "border colour", []
    from ..models.segmentation import SegmentationError

    try:
        result = segmenter_factory().segment(image.rgba[..., :3], prompt)
    except SegmentationError as exc:
        raise PipelineError(str(exc), hint="use a prompt that names the object in the picture, or turn "
                                           "segmentation off for images on a plain background",
                            code="invalid_request") from None
    return result.mask, result.source, list(result.warnings)


def prepare(image: DecodedImage, prompt: str, config: PreprocessConfig, registry,
            check: Callable[[], None] = lambda: None) -> PreparedInput:
    """The whole preprocess stage (models come from `registry`, loaded on first use); `check()`
    runs between model calls (raise from it to cancel). The prompt only names what to cut out."""
    mask, source, warnings = object_mask(image, prompt.strip(), config, lambda: registry.get(records.SEGMENTER))
    check()
    rgba = recentre(image.rgba, mask, config.size, config.border_ratio)
    prepared = PreparedInput(rgba, np.zeros((config.size, config.size), np.float32), source, warnings=warnings)
    depth = registry.get(records.DEPTH).predict(prepared.image_on(1.0))[0].cpu().numpy()
    prepared.depth = np.where(prepared.mask, depth, 0.0).astype(np.float32)
    check()
    return prepared
