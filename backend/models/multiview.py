"""Multi-view pseudo-ground-truth: images of the object at the fixed six-view set.

* Zero123: six independent samples at the six poses relative to the input view (they need not
  agree with each other; commercial-safe weights).
* Zero123++ v1.2 (non-commercial weights): all six views generated jointly, in one image, so they
  agree — a 3×2 grid of 320² tiles in row-major order:

    (30°, +20°)  (90°, −10°)
    (150°, +20°) (210°, −10°)
    (270°, +20°) (330°, −10°)      azimuth relative to the input, elevation absolute; fov 30°

  Its sampling runs in the project on diffusers' and transformers' own classes (the repository's
  custom pipeline is never fetched or executed): the input conditions the UNet twice — its CLIP
  image embedding, scaled per token by the repository's `ramping_coefficients`, is added to the
  empty prompt's text embedding (cross-attention), and its VAE latent, noised to the step's
  level, runs through the same UNet first, whose self-attention inputs are then appended to the
  keys and values of every self-attention layer of the real pass ("reference-only" attention).
  Classifier-free guidance drops both (text embedding alone, the latent of an all-zero input,
  mid-grey after the processor's normalisation, as upstream does). Latents
  live in the model's shifted space (z − 0.22)·0.75, and the decoded image is scaled by 1.6 back.
  It paints the object on grey (0.5) at a normalised size, whatever the input's framing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..geometry.cameras import ZERO123_FOVY_DEG, OrbitPose, relative_pose, six_view_poses
from .zero123 import ReferenceEmbedding, StepCallback, Zero123

ZERO123PP_FOVY_DEG = 30.0
ZERO123PP_GRID = (3, 2)  # rows, columns
ZERO123PP_BACKGROUND = 0.5  # it paints the object on grey


@dataclass
class MultiViewImages:
    images: Tensor  # [6, 3, S, S] in [0, 1]
    poses: OrbitPose  # absolute orbit poses of the six views (input view at azimuth 0)
    fovy_deg: float  # the field of view the generator renders with
    background: float  # grey level of the generated background
    own_framing: bool = False
    """The generator frames the object its own way (Zero123++: a normalised size at its own fov), so
    the cameras' distance must be measured from the views (`stages/guidance.zero123pp_radius`)."""


def split_grid(grid: Tensor, rows: int = ZERO123PP_GRID[0], cols: int = ZERO123PP_GRID[1]) -> Tensor:
    """grid [3, rows·h, cols·w] → tiles [rows·cols, 3, h, w] in row-major order."""
    if grid.ndim != 3 or grid.shape[1] % rows or grid.shape[2] % cols:
        raise ValueError(f"a [3, H, W] grid with H divisible by {rows} and W by {cols} is needed, "
                         f"got {tuple(grid.shape)}")
    c, height, width = grid.shape
    h, w = height // rows, width // cols
    return grid.reshape(c, rows, h, cols, w).permute(1, 3, 0, 2, 4).reshape(rows * cols, c, h, w)


class Zero123MultiView:
    """The six views sampled from Zero123, one batch."""

    def __init__(self, zero123: Zero123):
        self.zero123 = zero123

    def generate(self, reference: ReferenceEmbedding, *, radius: float = 2.0, steps: int = 50,
                 guidance_scale: float = 5.0, generator: torch.Generator | None = None,
                 on_step: StepCallback | None = None) -> MultiViewImages:
        target = six_view_poses(radius=radius)
        ref_pose = OrbitPose(torch.tensor([reference.elevation_deg]), torch.zeros(1), torch.tensor([float(radius)]))
        relative = relative_pose(ref_pose, target)
        images = self.zero123.sample(reference, relative, steps=steps, guidance_scale=guidance_scale,
                                     generator=generator, on_step=on_step)
        return MultiViewImages(images, target, ZERO123_FOVY_DEG, background=1.0)


ZERO123PP_TILE = 320
LATENT_SHIFT, LATENT_SCALE = 0.22, 0.75  # the model's latent space: (z − 0.22)·0.75
IMAGE_SCALE = 0.8 / 0.5  # decoded images are scaled by this back to [−1, 1]
INPUT_BACKGROUND = 127 / 255  # the repository pastes RGBA inputs on this grey


class ReferenceBank:
    """Self-attention inputs of the reference pass, written per layer, read by the real pass."""

    def __init__(self) -> None:
        self.mode: str | None = None  # "write", "read" or None (plain attention)
        self.states: dict[str, Tensor] = {}


class ReferenceAttention:
    """A self-attention processor that records (write) or appends (read) the reference pass's
    hidden states as extra keys and values, around diffusers' own processor."""

    def __init__(self, name: str, bank: ReferenceBank, inner) -> None:
        self.name, self.bank, self.inner = name, bank, inner

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, **kwargs) -> Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if self.bank.mode == "write":
            self.bank.states[self.name] = context
        elif self.bank.mode == "read":
            context = torch.cat([context, self.bank.states.pop(self.name)], dim=1)
        return self.inner(attn, hidden_states, context, attention_mask, temb)


class Zero123PlusPlus:
    """Zero123++ v1.2 from its repository's components, sampled by the project's own loop."""

    def __init__(self, unet, vae, text_encoder, tokenizer, vision_encoder, clip_processor, vae_processor,
                 scheduler_config, ramping: list[float]):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.vision_encoder, self.clip_processor, self.vae_processor = vision_encoder, clip_processor, vae_processor
        self.scheduler_config, self.device, self.dtype = scheduler_config, unet.device, unet.dtype
        self.ramping = torch.tensor(ramping, dtype=torch.float32)  # [77]: per text token
        self.bank = ReferenceBank()
        unet.set_attn_processor({name: ReferenceAttention(name, self.bank, AttnProcessor2_0())
                                 if name.endswith("attn1.processor") else AttnProcessor2_0()
                                 for name in unet.attn_processors})
        for module in self.modules:
            module.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> Zero123PlusPlus:
        """From a local snapshot of `sudo-ai/zero123plus-v1.2` (or a tiny one laid out the same)."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

        from .weights import torch_variant

        path = Path(path)
        index = json.loads((path / "model_index.json").read_text())
        if "ramping_coefficients" not in index:
            raise ValueError(f"{path / 'model_index.json'} has no ramping_coefficients: not a Zero123++ v1.2 snapshot")
        kwargs = dict(dtype=dtype, variant=torch_variant(path, ("unet", "vae")))
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kwargs)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype)
        vision_encoder = CLIPVisionModelWithProjection.from_pretrained(path, subfolder="vision_encoder", dtype=dtype)
        scheduler = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
        model = cls(unet, vae, text_encoder, CLIPTokenizer.from_pretrained(path, subfolder="tokenizer"),
                    vision_encoder, CLIPImageProcessor.from_pretrained(path, subfolder="feature_extractor_clip"),
                    CLIPImageProcessor.from_pretrained(path, subfolder="feature_extractor_vae"), scheduler,
                    index["ramping_coefficients"])
        return model.to(device)

    def to(self, device: torch.device | str) -> Zero123PlusPlus:
        for module in self.modules:
            module.to(device)
        self.device = torch.device(device)
        return self

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return self.unet, self.vae, self.text_encoder, self.vision_encoder

    def _scheduler(self):
        """Euler ancestral with trailing timesteps: the authors' recommendation for v1.2."""
        from diffusers import EulerAncestralDiscreteScheduler

        config = {k: v for k, v in self.scheduler_config.items() if not k.startswith("_")}
        return EulerAncestralDiscreteScheduler.from_config({**config, "timestep_spacing": "trailing"})

    def _conditions(self, image: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """image [1, 3, H, W] in [0, 1] → (text context [2, 77, D]: unconditional then conditional,
        reference latents [2, 4, h, w]: a black image's then the input's, unscaled)."""
        pil = _to_pil(image)
        vae_in = self.vae_processor(images=pil, return_tensors="pt").pixel_values.to(self.device, self.dtype)
        latents = self.vae.encode(torch.cat([torch.zeros_like(vae_in), vae_in])).latent_dist.sample(generator)
        clip_in = self.clip_processor(images=pil, return_tensors="pt").pixel_values.to(self.device, self.dtype)
        image_embeds = self.vision_encoder(clip_in).image_embeds  # [1, D]
        tokens = self.tokenizer([""], padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt").input_ids.to(self.device)
        text = self.text_encoder(tokens)[0]  # [1, 77, D]
        ramp = self.ramping.to(self.device, text.dtype)[None, :, None]
        return torch.cat([text, text + image_embeds[:, None] * ramp]), latents

    def _guided_noise(self, scheduler, latents: Tensor, t: Tensor, context: Tensor, reference: Tensor,
                      guidance_scale: float, generator: torch.Generator | None) -> Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        noise = randn_tensor(reference.shape, generator=generator, device=self.device, dtype=reference.dtype)
        noisy_reference = scheduler.scale_model_input(scheduler.add_noise(reference, noise, t.reshape(-1)), t)
        model_in = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        try:
            self.bank.mode = "write"
            self.unet(noisy_reference, t, encoder_hidden_states=context)
            self.bank.mode = "read"
            prediction = self.unet(model_in, t, encoder_hidden_states=context).sample
        finally:
            self.bank.mode, self.bank.states = None, {}
        unconditional, conditional = prediction.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    @torch.no_grad()
    def generate(self, image: Tensor, *, steps: int = 28, guidance_scale: float = 4.0,
                 generator: torch.Generator | None = None, on_step: StepCallback | None = None,
                 tile: int = ZERO123PP_TILE) -> MultiViewImages:
        """image [1, 3, H, W] in [0, 1], the object on grey (`INPUT_BACKGROUND`) → the six views
        [6, 3, tile, tile] on grey. `tile` is the model's 320 (smaller only for tests on the CPU).
        `guidance_scale` must exceed 1: the conditioning runs as a CFG pair, as upstream's does."""
        from diffusers.utils.torch_utils import randn_tensor

        if image.ndim != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"Zero123++ takes one RGB image [1, 3, H, W], got {tuple(image.shape)}")
        if tile % 8:
            raise ValueError(f"the tile side must be a multiple of 8, got {tile}")
        if guidance_scale <= 1:
            raise ValueError(f"guidance_scale must exceed 1 (classifier-free guidance), got {guidance_scale}")
        rows, cols = ZERO123PP_GRID
        scheduler = self._scheduler()
        scheduler.set_timesteps(steps, device=self.device)
        context, reference = self._conditions(image, generator)
        shape = (1, self.unet.config.in_channels, rows * tile // 8, cols * tile // 8)
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        latents = latents * scheduler.init_noise_sigma
        for i, t in enumerate(scheduler.timesteps):
            noise = self._guided_noise(scheduler, latents, t, context, reference, guidance_scale, generator)
            latents = scheduler.step(noise, t, latents, generator=generator).prev_sample
            if on_step is not None:
                on_step(i + 1, len(scheduler.timesteps))
        latents = latents / LATENT_SCALE + LATENT_SHIFT
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample * IMAGE_SCALE
        grid = (decoded[0].float() / 2 + 0.5).clamp(0, 1)
        return MultiViewImages(split_grid(grid), six_view_poses(), ZERO123PP_FOVY_DEG, background=ZERO123PP_BACKGROUND,
                               own_framing=True)


def _to_pil(image: Tensor):
    from PIL import Image

    pixels = (image[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(pixels)


_RAMP_TOKENS = 77  # one ramping coefficient per text token


def save_tiny_zero123pp(folder: Path) -> None:
    """Zero123++ v1.2's layout (unet, vae, text_encoder + tokenizer, vision_encoder, both feature
    extractors, an Euler-ancestral v-prediction scheduler, ramping coefficients in model_index.json)
    with tiny random weights. Its UNet attends only at its lowest resolution, so the tiny model's
    reference attention stays cheap on a CPU; the real one attends at every level."""
    from diffusers import EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, \
        CLIPVisionModelWithProjection

    from .tiny_configs import SD_SCHEDULE, tiny_vae
    from .tiny_tokenizers import CLIP_VOCAB_SIZE, clip_tokenizer

    folder = Path(folder)
    torch.manual_seed(0)
    width = 32  # cross-attention width (1024 in the real model)
    UNet2DConditionModel(
        sample_size=96, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), cross_attention_dim=width,
        attention_head_dim=8, norm_num_groups=32).save_pretrained(folder / "unet")
    tiny_vae().save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, hidden_size=width, intermediate_size=37,
                                 num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=_RAMP_TOKENS)
                  ).save_pretrained(folder / "text_encoder")
    clip_tokenizer().save_pretrained(folder / "tokenizer")
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        image_size=224, patch_size=32, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, projection_dim=width)).save_pretrained(folder / "vision_encoder")
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
        folder / "feature_extractor_clip")
    CLIPImageProcessor(size={"shortest_edge": 320}, crop_size={"height": 320, "width": 320},
                       image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(
        folder / "feature_extractor_vae")
    schedule = {k: v for k, v in SD_SCHEDULE.items() if k not in ("clip_sample", "set_alpha_to_one")}
    EulerAncestralDiscreteScheduler(prediction_type="v_prediction", timestep_spacing="trailing",
                                    **schedule).save_pretrained(folder / "scheduler")
    ramping = np.linspace(0.0, 1.0, _RAMP_TOKENS).round(4).tolist()
    # The repository's index names its custom pipeline class; Lift3D loads the components one by one.
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": ["pipeline", "Zero123PlusPipeline"], "ramping_coefficients": ramping,
        "feature_extractor_clip": ["transformers", "CLIPImageProcessor"],
        "feature_extractor_vae": ["transformers", "CLIPImageProcessor"],
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "vision_encoder": ["transformers", "CLIPVisionModelWithProjection"]},
        indent=2))
