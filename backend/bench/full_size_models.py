"""The real models' architectures at full size with random weights (no download): what a user's
GPU pays per call is a matter of shapes, not of weight values.

Hyperparameters are the published ones: Zero123-XL and Stable Diffusion 1.5 share SD 1.x's UNet
(320/640/1280/1280 channels, 2 layers per block, 768-wide cross-attention; Zero123 takes 8 input
channels), SD's VAE (128/256/512/512), Zero123's image encoder is CLIP ViT-L/14, SD 1.5's text
encoder CLIP ViT-L/14's text tower, Depth Anything V2 Small a DINOv2 ViT-S/14 with a DPT head,
and OpenCLIP ViT-B/32 is open_clip's stock config. Difix is SD-Turbo's (SD 2.1's) UNet (1024-wide
cross-attention, linear projections, head dims 5/10/20/20), its text encoder OpenCLIP ViT-H/14's
text tower, and SD's VAE with Difix's four skip convolutions.
"""

from __future__ import annotations

import torch

from backend.models.clip import Clip
from backend.models.depth import DepthEstimator
from backend.models.difix import DifixFixer
from backend.models.refiners import PromptRefiner
from backend.models.zero123 import CLIPCameraProjection, Zero123

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def sd_unet(in_channels: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=32 if in_channels == 8 else 64, in_channels=in_channels, out_channels=4,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                                cross_attention_dim=768, attention_head_dim=8)


def sd_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         sample_size=256, scaling_factor=0.18215)


def sd_scheduler():
    from diffusers import DDIMScheduler

    from backend.models.tiny_configs import SD_SCHEDULE

    return DDIMScheduler(**SD_SCHEDULE)


def zero123_xl(device, dtype) -> Zero123:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=768))
    modules = [sd_unet(8), sd_vae(), encoder, CLIPCameraProjection(768, 4)]
    for module in modules:
        module.to(device, dtype)
    return Zero123(*modules, sd_scheduler(), CLIP_MEAN, CLIP_STD, 224, stable=False)


def sd15_img2img(device, dtype) -> PromptRefiner:
    from diffusers import StableDiffusionImg2ImgPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from backend.models.tiny_tokenizers import clip_tokenizer

    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77))
    pipe = StableDiffusionImg2ImgPipeline(vae=sd_vae(), text_encoder=text, tokenizer=clip_tokenizer(),
                                          unet=sd_unet(4), scheduler=sd_scheduler(), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return PromptRefiner(pipe.to(device, dtype))


def difix_ref(device, dtype) -> DifixFixer:
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from backend.models.difix import add_skip_convs
    from backend.models.tiny_configs import SD_SCHEDULE
    from backend.models.tiny_tokenizers import clip_tokenizer

    unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                                layers_per_block=2, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                use_linear_projection=True)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                        num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu"))
    vae = sd_vae()
    add_skip_convs(vae)
    schedule = {k: v for k, v in SD_SCHEDULE.items() if k != "set_alpha_to_one"}
    return DifixFixer(unet.to(device, dtype), vae.to(device).float(), text.to(device, dtype), clip_tokenizer(),
                      DDPMScheduler(**schedule).alphas_cumprod, "epsilon", reference=True)


def depth_anything_v2_small(device, dtype) -> DepthEstimator:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12,
                            num_attention_heads=6, mlp_ratio=4, out_features=["stage3", "stage6", "stage9", "stage12"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                                 neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32)
    model = DepthAnythingForDepthEstimation(config).to(device, dtype)
    return DepthEstimator(model, IMAGENET_MEAN, IMAGENET_STD, 518, 14)


def open_clip_vit_b32(device, dtype) -> Clip:
    import open_clip

    precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")
    model = open_clip.create_model("ViT-B-32", pretrained=None, precision=precision, device=device)
    return Clip(model, open_clip.get_tokenizer("ViT-B-32"), tuple(CLIP_MEAN), tuple(CLIP_STD), 224)
