"""Monocular depth: Depth Anything V2 (Small, Apache-2.0) through transformers.

Returns *relative inverse depth* (disparity-like: larger = nearer, unknown scale and shift), so
callers compare it with rendered depth through a scale/shift-invariant loss (Pearson).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor


def model_input_size(height: int, width: int, target: int = 518, multiple: int = 14) -> tuple[int, int]:
    """The size transformers' DPT processor resizes to with keep_aspect_ratio: the side whose
    scale is closer to 1 decides, both rounded to the nearest multiple of the patch size."""
    scale_h, scale_w = target / height, target / width
    scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h

    def snap(x: float) -> int:
        return max(multiple, int(round(x / multiple)) * multiple)

    return snap(scale * height), snap(scale * width)


class DepthEstimator:
    def __init__(self, model, mean: list[float], std: list[float], target: int, multiple: int):
        self.model = model.eval().requires_grad_(False)
        self.device, self.dtype = model.device, model.dtype
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self._target, self._multiple = target, multiple

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> DepthEstimator:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        processor = AutoImageProcessor.from_pretrained(path)
        model = AutoModelForDepthEstimation.from_pretrained(path, dtype=dtype).to(device)
        size = processor.size
        target = size.get("height") or size.get("shortest_edge")
        return cls(model, processor.image_mean, processor.image_std, int(target),
                   int(getattr(processor, "ensure_multiple_of", 14) or 14))

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return (self.model,)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [0, 1] → relative inverse depth [B, H, W] float32 (≥ 0)."""
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"images must be float [B, 3, H, W] in [0, 1], got {images.dtype} {tuple(images.shape)}")
        height, width = images.shape[-2:]
        size = model_input_size(height, width, self._target, self._multiple)
        x = F.interpolate(images.to(self.device, torch.float32), size, mode="bicubic", align_corners=False,
                          antialias=True).clamp(0, 1)
        x = ((x - self._mean) / self._std).to(self.dtype)
        depth = self.model(pixel_values=x).predicted_depth.float()  # [B, h, w]
        depth = F.interpolate(depth[:, None], (height, width), mode="bilinear", align_corners=False)[:, 0]
        return depth.clamp_min(0)


def save_tiny_depth_anything(folder: Path) -> None:
    """Depth Anything V2's architecture (DINOv2 backbone + DPT head) with tiny random weights and
    the real processor settings (518, multiple of 14, ImageNet statistics)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                            intermediate_size=37, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[16, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type="relative")
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      resample=3, do_pad=False, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
