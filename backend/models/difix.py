"""Difix (`nvidia/difix`) and Difix-ref (`nvidia/difix_ref`): Difix3D+'s single-step fixer of
rendering artefacts, run in the project on diffusers' and transformers' own classes (the
repositories' `DifixPipeline` and custom VAE class are never imported or executed).

What the published weights are (Difix3D's `src/model.py`, `src/pipeline_difix.py`):

* SD-Turbo's UNet, fine-tuned; SD-Turbo's CLIP text encoder with the fixed prompt
  "remove degradation"; no classifier-free guidance.
* SD-Turbo's VAE with four 1×1 **skip convolutions** that add the encoder's activations (taken
  at the input of each down block) to the input of the matching decoder up block, scaled by
  `gamma`, and a rank-4 LoRA (adapter "vae_skip") on the decoder's convolutions, attention
  projections and skip convolutions. The VAE file stores PEFT's keys (`<module>.base_layer.*`,
  `<module>.lora_A.vae_skip.weight`, `<module>.lora_B.vae_skip.weight`); they are merged into
  plain weights on load with PEFT's default scale lora_alpha / r = 8 / r.
* Inference: encode the render (no noise is added), predict the noise at t = 199, take the
  one-step estimate of the clean latent, decode it with the render's own skip activations.
* Difix-ref also encodes a reference view; the two views go through the UNet as one batch whose
  **self-attention layers attend jointly over both views' tokens** (its `mv_unet`), so the
  reference steers the fix. Only the render is decoded.

Images are float [B, 3, H, W] in [0, 1] with sides that are multiples of 8.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .weights import torch_variant

DIFIX_TIMESTEP = 199
"""Difix's noise level (its ablation: PSNR peaks at τ = 200, 17.73 dB, against 12.18 at 1000)."""
DIFIX_PROMPT = "remove degradation"
"""The one prompt Difix was trained with."""
LORA_ADAPTER = "vae_skip"
LORA_ALPHA = 8
"""PEFT's default `lora_alpha`, which Difix's `LoraConfig(r=4, ...)` trained with: scale 8 / r."""
LORA_TARGETS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out",
                "skip_conv_1", "skip_conv_2", "skip_conv_3", "skip_conv_4", "to_k", "to_q", "to_v", "to_out.0")
"""Decoder modules carrying the LoRA (name suffixes, as Difix selects them)."""
VAE_EXTRA_CONFIG = ("gamma", "ignore_skip", "lora_rank")
"""Keys the repositories' VAE config adds to AutoencoderKL's."""


# --- VAE with skip connections -----------------------------------------------------------------

def skip_conv_channels(block_out_channels: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
    """(in, out) channels of skip_conv_1..n: encoder down-block inputs, deepest first, onto decoder
    up-block inputs (SD's VAE: (512, 512), (256, 512), (128, 512), (128, 256))."""
    channels = list(block_out_channels)
    encoder_inputs = [channels[0]] + channels[:-1]
    reversed_out = channels[::-1]
    decoder_inputs = [reversed_out[0]] + reversed_out[:-1]
    return list(zip(encoder_inputs[::-1], decoder_inputs))


def add_skip_convs(vae) -> None:
    """Give `vae.decoder` its skip_conv_i modules (bias-free 1×1), registered under the names the
    published state dict uses."""
    for index, (c_in, c_out) in enumerate(skip_conv_channels(vae.config.block_out_channels), start=1):
        setattr(vae.decoder, f"skip_conv_{index}", torch.nn.Conv2d(c_in, c_out, kernel_size=1, bias=False))


def skip_convs(vae) -> list[torch.nn.Conv2d]:
    return [getattr(vae.decoder, f"skip_conv_{i}") for i in range(1, len(vae.decoder.up_blocks) + 1)]


def encode_with_skips(vae, images: Tensor) -> tuple[Tensor, list[Tensor]]:
    """images [B, 3, H, W] in [-1, 1] → (posterior mean [B, 4, H/8, W/8], unscaled; the encoder's
    activation at the input of each down block, shallowest first)."""
    encoder = vae.encoder
    hidden = encoder.conv_in(images)
    skips = []
    for block in encoder.down_blocks:
        skips.append(hidden)
        hidden = block(hidden)
    hidden = encoder.mid_block(hidden)
    hidden = encoder.conv_out(encoder.conv_act(encoder.conv_norm_out(hidden)))
    if vae.quant_conv is not None:
        hidden = vae.quant_conv(hidden)
    # The posterior's mean, not a sample: the same render always gets the same fix (progressive
    # fixing and the cache rely on it); the SD VAE's posterior spread is negligible next to it.
    mean, _log_variance = hidden.chunk(2, dim=1)
    return mean, skips


def decode_with_skips(vae, latents: Tensor, skips: list[Tensor], *, gamma: float = 1.0,
                      use_skips: bool = True) -> Tensor:
    """latents [B, 4, h, w], unscaled → images [B, 3, 8h, 8w] in about [-1, 1]."""
    if vae.post_quant_conv is not None:
        latents = vae.post_quant_conv(latents)
    decoder = vae.decoder
    hidden = decoder.mid_block(decoder.conv_in(latents), None)
    hidden = hidden.to(next(iter(decoder.up_blocks.parameters())).dtype)
    for block, conv, skip in zip(decoder.up_blocks, skip_convs(vae), reversed(skips)):
        if use_skips:
            hidden = hidden + conv(skip.to(hidden.dtype) * gamma)
        hidden = block(hidden, None)
    return decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(hidden)))


def merge_lora(state: dict[str, Tensor], *, alpha: float = LORA_ALPHA,
               adapter: str = LORA_ADAPTER) -> dict[str, Tensor]:
    """PEFT's layout (`m.base_layer.weight`, `m.lora_A.<adapter>.weight`, `m.lora_B.<adapter>.weight`)
    → plain weights (`m.weight` = base + alpha / r · B·A), for convolutions and linear layers. A
    state dict without LoRA keys comes back unchanged."""
    merged: dict[str, Tensor] = {}
    lora: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        if f".lora_A.{adapter}." in key or f".lora_B.{adapter}." in key:
            module, _, rest = key.partition(".lora_")
            lora.setdefault(module, {})[rest[0]] = value
        elif ".lora_" in key:
            raise ValueError(f"LoRA weight {key!r} belongs to another adapter than {adapter!r}")
        else:
            merged[key.replace(".base_layer.", ".")] = value
    for module, pair in lora.items():
        if set(pair) != {"A", "B"} or f"{module}.weight" not in merged:
            raise ValueError(f"incomplete LoRA for {module!r}: has {sorted(pair)}, base weight "
                             f"{'present' if f'{module}.weight' in merged else 'missing'}")
        base, down, up = merged[f"{module}.weight"], pair["A"], pair["B"]
        rank = down.shape[0]
        delta = (up.flatten(1).float() @ down.flatten(1).float()).reshape(base.shape) * (alpha / rank)
        merged[f"{module}.weight"] = (base.float() + delta).to(base.dtype)
    return merged


def _weight_file(folder: Path) -> Path:
    for name in ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors",
                 "diffusion_pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no VAE weights in {folder} (expected diffusion_pytorch_model[.fp16].safetensors)")


def load_skip_vae(folder: Path):
    """The Difix VAE from `folder` (config.json + weights): AutoencoderKL + skip convolutions, LoRA
    merged, float32 (its config asks for upcasting; it is 84M parameters). → (vae, extra config)."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    extra = {key: config.pop(key) for key in VAE_EXTRA_CONFIG if key in config}
    vae = AutoencoderKL.from_config(config)
    add_skip_convs(vae)
    path = _weight_file(folder)
    state = load_file(path) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu",
                                                                              weights_only=True)
    missing, unexpected = vae.load_state_dict(merge_lora(state), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match Difix's VAE: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return vae.float().eval().requires_grad_(False), extra


# --- joint self-attention over (render, reference) ---------------------------------------------

class JointViewsAttention:
    """A self-attention processor that lets the `views` consecutive images of each group attend to
    one another's tokens: [(b·v), n, d] → [b, v·n, d] → standard attention → back. Difix-ref's
    `mv_unet` does exactly this in every transformer block's self-attention (attn1)."""

    def __init__(self, views: int = 2) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.views, self.inner = views, AttnProcessor2_0()

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs) -> Tensor:
        groups, tokens, width = hidden_states.shape[0] // self.views, hidden_states.shape[1], hidden_states.shape[2]
        joint = hidden_states.reshape(groups, self.views * tokens, width)
        out = self.inner(attn, joint, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        return out.reshape(groups * self.views, tokens, width)


def use_joint_self_attention(unet, views: int = 2) -> int:
    """Set JointViewsAttention on every self-attention (attn1) of `unet` → how many."""
    processors = dict(unet.attn_processors)
    joint = JointViewsAttention(views)
    count = 0
    for name in processors:
        if ".attn1." in name:
            processors[name] = joint
            count += 1
    unet.set_attn_processor(processors)
    return count


# --- the fixer ---------------------------------------------------------------------------------

class DifixFixer:
    """`fix(renders, references)` → cleaned renders, one UNet step."""

    def __init__(self, unet, vae, text_encoder, tokenizer, alphas_cumprod: Tensor, prediction_type: str, *,
                 reference: bool, gamma: float = 1.0, use_skips: bool = True):
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.uses_reference = reference
        self.gamma, self.use_skips = gamma, use_skips
        self.device, self.dtype = unet.device, unet.dtype
        self.prediction_type = prediction_type
        self.alpha_bar = float(alphas_cumprod[DIFIX_TIMESTEP])
        for module in (unet, vae, text_encoder):
            module.eval().requires_grad_(False)
        if reference:
            use_joint_self_attention(unet, views=2)
        with torch.no_grad():
            ids = tokenizer([DIFIX_PROMPT], max_length=tokenizer.model_max_length, padding="max_length",
                            truncation=True, return_tensors="pt").input_ids.to(self.device)
            self.prompt_embedding = text_encoder(ids)[0]  # [1, 77, D]

    @classmethod
    def from_pretrained(cls, path: str | Path, *, reference: bool, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> DifixFixer:
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        folder = Path(path)
        variant = torch_variant(folder, ("unet",))
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", variant=variant, torch_dtype=dtype)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder",
                                                     variant=torch_variant(folder, ("text_encoder",)), dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        # Only the noise schedule matters for one step; DDPM reads any SD-family scheduler config.
        scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
        vae, extra = load_skip_vae(folder / "vae")
        return cls(unet.to(device), vae.to(device), text_encoder.to(device), tokenizer, scheduler.alphas_cumprod,
                   scheduler.config.prediction_type, reference=reference, gamma=float(extra.get("gamma", 1.0)),
                   use_skips=not extra.get("ignore_skip", False))

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return self.unet, self.vae, self.text_encoder

    def clean_latent(self, latents: Tensor, prediction: Tensor) -> Tensor:
        """The one-step estimate of the clean latent at t = 199 (what DDPM's step gives when the
        next timestep is before 0, minus its 1e-10-scaled noise)."""
        a = self.alpha_bar
        if self.prediction_type == "epsilon":
            return (latents - (1 - a) ** 0.5 * prediction) / a ** 0.5
        if self.prediction_type == "v_prediction":
            return a ** 0.5 * latents - (1 - a) ** 0.5 * prediction
        if self.prediction_type == "sample":
            return prediction
        raise ValueError(f"unsupported prediction type {self.prediction_type!r}")

    @torch.no_grad()
    def fix(self, images: Tensor, references: Tensor | None = None, *,
            generator: torch.Generator | None = None) -> Tensor:
        """images [B, 3, H, W] in [0, 1] → [B, 3, H, W] in [0, 1]. Difix-ref uses `references`
        [B, 3, H', W'] (resized to the images' size; without one, each render is its own
        reference); Difix ignores them. Deterministic: no noise is drawn (`generator` unused)."""
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"images must be float [B, 3, H, W] in [0, 1], got {images.dtype} {tuple(images.shape)}")
        if images.shape[-1] % 8 or images.shape[-2] % 8:
            raise ValueError(f"image sides must be multiples of 8 (the VAE's factor), got {tuple(images.shape[-2:])}")
        batch, size = images.shape[0], images.shape[-2:]
        x = images.to(self.device, torch.float32) * 2 - 1
        if self.uses_reference:
            refs = images if references is None else references
            if refs.shape[0] != batch:
                raise ValueError(f"{batch} images need {batch} references, got {refs.shape[0]}")
            refs = refs.to(self.device, torch.float32)
            if refs.shape[-2:] != size:
                refs = F.interpolate(refs, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
            # (b v): each render followed by its reference, the grouping the joint attention expects.
            x = torch.stack([x, refs * 2 - 1], dim=1).flatten(0, 1)
        mean, skips = encode_with_skips(self.vae, x)
        latents = (mean * self.vae.config.scaling_factor).to(self.dtype)
        timestep = torch.full((latents.shape[0],), DIFIX_TIMESTEP, device=self.device, dtype=torch.long)
        context = self.prompt_embedding.expand(latents.shape[0], -1, -1)
        prediction = self.unet(latents, timestep, encoder_hidden_states=context).sample
        clean = self.clean_latent(latents.float(), prediction.float())
        if self.uses_reference:  # only the renders are decoded, each with its own skips
            clean = clean[0::2]
            skips = [s[0::2] for s in skips]
        out = decode_with_skips(self.vae, clean / self.vae.config.scaling_factor, skips, gamma=self.gamma,
                                use_skips=self.use_skips)
        return (out.clamp(-1, 1) * 0.5 + 0.5).float()


# --- tiny versions -----------------------------------------------------------------------------

def save_tiny_difix(folder: Path) -> None:
    _save_tiny(folder, reference=False)


def save_tiny_difix_ref(folder: Path) -> None:
    _save_tiny(folder, reference=True)


def _save_tiny(folder: Path, *, reference: bool) -> None:
    """Difix's layout with tiny random weights: unet/, text_encoder/, tokenizer/, scheduler/ as
    saved by diffusers and transformers, and vae/ as the repositories store it (AutoencoderKL's
    config plus gamma / ignore_skip / lora_rank; PEFT-style LoRA keys on the decoder), with
    non-zero LoRA weights so loading must merge them."""
    from diffusers import DDPMScheduler
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from .tiny_configs import SD_SCHEDULE, tiny_unet, tiny_vae
    from .tiny_tokenizers import CLIP_VOCAB_SIZE, clip_tokenizer

    torch.manual_seed(1 if reference else 0)
    folder.mkdir(parents=True, exist_ok=True)
    width = 32  # text width = cross-attention width (1024 in SD-Turbo)
    tiny_unet(in_channels=4, cross_attention_dim=width).save_pretrained(folder / "unet")
    CLIPTextModel(CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, hidden_size=width, intermediate_size=37,
                                 num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77)
                  ).save_pretrained(folder / "text_encoder")
    clip_tokenizer().save_pretrained(folder / "tokenizer")
    schedule = {k: v for k, v in SD_SCHEDULE.items() if k != "set_alpha_to_one"}
    DDPMScheduler(**schedule).save_pretrained(folder / "scheduler")

    vae, rank = tiny_vae(), 4
    add_skip_convs(vae)
    state = vae.state_dict()
    lora_state: dict[str, Tensor] = {}
    for name, module in vae.named_modules():
        if not (name.startswith("decoder") and any(name.endswith(t) for t in LORA_TARGETS)):
            continue
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            continue
        for param in ("weight", "bias"):
            if f"{name}.{param}" in state:
                lora_state[f"{name}.base_layer.{param}"] = state.pop(f"{name}.{param}")
        if isinstance(module, torch.nn.Conv2d):
            down = torch.randn(rank, module.in_channels, *module.kernel_size) * 0.05
            up = torch.randn(module.out_channels, rank, 1, 1) * 0.05
        else:
            down, up = torch.randn(rank, module.in_features) * 0.05, torch.randn(module.out_features, rank) * 0.05
        lora_state[f"{name}.lora_A.{LORA_ADAPTER}.weight"] = down
        lora_state[f"{name}.lora_B.{LORA_ADAPTER}.weight"] = up
    (folder / "vae").mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in {**state, **lora_state}.items()},
              folder / "vae" / "diffusion_pytorch_model.safetensors")
    config = dict(vae.config) | {"_class_name": "AutoencoderKL", "gamma": 1.0, "ignore_skip": False, "lora_rank": rank}
    (folder / "vae" / "config.json").write_text(json.dumps(
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if not k.startswith("_use")},
        indent=2))
    # The repositories name their own pipeline class here; Lift3D never loads it.
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": ["pipeline_difix", "DifixPipeline"], "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["autoencoder_kl", "AutoencoderKL"]}, indent=2))
