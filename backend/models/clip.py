"""CLIP (OpenCLIP): image and text embeddings, a differentiable image path for losses, and
similarity scores. Loaded from a local folder holding `open_clip_config.json` and the weights,
which is how the Hub repositories (e.g. laion/CLIP-ViT-B-32-laion2B-s34B-b79K) are laid out."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

_PRECISION = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


class Clip:
    def __init__(self, model, tokenizer, mean: tuple[float, ...], std: tuple[float, ...], image_size: int):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.image_size = image_size

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> Clip:
        import open_clip

        name = f"local-dir:{Path(path).resolve()}"
        model = open_clip.create_model(name, precision=_PRECISION[dtype], device=device)
        config = json.loads((Path(path) / "open_clip_config.json").read_text())
        preprocess = config.get("preprocess_cfg", {})
        mean = tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN))
        std = tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD))
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        return cls(model, open_clip.get_tokenizer(name), mean, std, int(size))

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return (self.model,)

    def _model_input(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [0, 1] → the model's input: resized and normalised, its dtype."""
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"images must be float [B, 3, H, W] in [0, 1], got {images.dtype} {tuple(images.shape)}")
        x = F.interpolate(images.to(self.device, torch.float32), (self.image_size, self.image_size),
                          mode="bicubic", align_corners=False, antialias=True)
        return ((x - self._mean) / self._std).to(self.dtype)

    def encode_images(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [0, 1] → unit embeddings [B, D] float32. Differentiable in the
        images (the weights are frozen), so it can drive a loss."""
        return F.normalize(self.model.encode_image(self._model_input(images)).float(), dim=-1)

    def dense_features(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [0, 1] → unit patch features [B, D, h, w] float32 in the joint
        embedding space (each patch token through the final layer norm and the projection, as
        MaskCLIP reads dense CLIP features; h × w is the patch grid, e.g. 7 × 7 for ViT-B/32).
        Differentiable in the images."""
        visual = self.model.visual
        x = visual.transformer(visual._embeds(self._model_input(images)))
        _, tokens = visual._global_pool(x)  # [B, N, width], the class token left out
        tokens = visual.ln_post(tokens)
        if visual.proj is not None:
            tokens = tokens @ visual.proj
        h, w = visual.grid_size
        return F.normalize(tokens.float(), dim=-1).transpose(1, 2).reshape(len(images), -1, h, w)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> Tensor:  # → unit embeddings [T, D] float32
        if not texts:
            raise ValueError("no texts to encode")
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    @staticmethod
    def similarity(a: Tensor, b: Tensor) -> Tensor:  # [N, D], [M, D] unit → cosine [N, M]
        return a @ b.T


def save_tiny_open_clip(folder: Path) -> None:
    """A ViT CLIP with tiny random weights in the Hub layout (config + safetensors)."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model_cfg = {"embed_dim": 32,
                 "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 16},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2}}
    model = open_clip.CLIP(**model_cfg)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg,
              "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
