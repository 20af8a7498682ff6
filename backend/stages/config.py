"""Typed configuration of the generation pipeline and its quality presets.

Defaults follow DreamGaussian's image-to-3D budget (500 geometry steps, 50 texture steps) plus
the additions of Lift3D's plan: multi-view pseudo-ground-truth, monocular-depth supervision and
CLIP semantic consistency. Presets are `replace()`d instances of the default, never copies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..geometry.extract import MeshStageConfig
from ..geometry.optimize import DensifyConfig, OptimConfig
from ..geometry.progressive_fix import FixSchedule

FIXER_MODELS = ("off", "difix", "difix-ref", "sd-turbo")
"""The `fixer` option's values (protocol/options.py); `backend/stages/fixing.py` loads each."""
MULTIVIEW_GENERATORS = ("zero123pp", "zero123", "off")
"""The `multiview` option's values: Zero123++ v1.2 (joint views), six Zero123 samples, or none."""
NOVEL_VIEW_MODELS = ("zero123-xl", "stable-zero123")
"""The `novel_view` option's values (`models/records.py`: NOVEL_VIEW, NOVEL_VIEW_STABLE)."""
CAPTIONERS = ("blip", "blip2")
"""The `captioner` option's values: BLIP base (light) and BLIP-2 OPT-2.7b (`models/captioner.py`)."""


@dataclass(frozen=True)
class PreprocessConfig:
    size: int = 512
    """Side of the square, recentred reference image."""
    border_ratio: float = 0.2
    """Empty margin around the object, as a fraction of the side (Zero123's object framing)."""
    segmentation: bool = True
    """Segment the object the prompt names (CLIPSeg + SAM). Off: use the image's alpha, or key
    out a plain background colour."""
    caption_empty_prompt: bool = True
    """Caption the image when the prompt is empty, so the text prior and the texture stage have a text."""
    captioner: str = "blip"
    """blip (BLIP base, light) or blip2 (BLIP-2 OPT-2.7b, as Make-It-3D; `high`): the `captioner` option."""

    def __post_init__(self) -> None:
        if self.captioner not in CAPTIONERS:
            raise ValueError(f"captioner must be one of {', '.join(CAPTIONERS)}, got {self.captioner!r}")


# DreamGaussian's densification mapped onto gsplat's DefaultStrategy (see the project notes):
# screen-space gradient threshold 0.01, prune below opacity 0.01, refine every 100 steps from 100.
STAGE1_OPTIM = OptimConfig(densify=DensifyConfig(grow_grad2d=0.01, grow_scale3d=0.01, prune_opa=0.01,
                                                 prune_scale3d=0.1, refine_start=100, refine_every=100,
                                                 refine_stop=10_000, reset_every=10_000))


@dataclass(frozen=True)
class GeometryConfig:
    steps: int = 500
    initial_gaussians: int = 5000
    """Random initial Gaussians inside a ball of radius `initial_radius`."""
    initial_radius: float = 0.5
    render_sizes: tuple[int, int, int] = (128, 256, 512)
    """Progressive render resolution: the first until 30 % of the steps, the second until 60 %."""
    reference_elevation_deg: float = 0.0
    """Elevation of the input camera above the object, degrees (product shots from above: about
    20–30). Set by the `elevation` request option."""
    camera_radius: float = 2.0
    fovy_deg: float = 49.1
    novel_elevation_range_deg: tuple[float, float] = (-30.0, 30.0)

    rgb_weight: float = 10_000.0
    """Reference view: weight of MSE(render, image) (DreamGaussian: 10⁴)."""
    mask_weight: float = 1_000.0
    """Reference view: weight of MSE(alpha, mask) (DreamGaussian: 10³)."""
    reference_warmup: bool = True
    """Ramp the reference losses with step/steps, so SDS shapes the object before the reference
    view fixes its appearance."""

    sds_weight: float = 1.0
    """Score distillation from the novel-view model (0 turns it off)."""
    guidance_scale: float = 5.0
    t_range: tuple[float, float] = (0.02, 0.98)
    anneal_timesteps: bool = True

    multiview_weight: float = 1_000.0
    """MSE to the six pseudo-ground-truth views (0 turns it off)."""
    multiview_samples: int = 50
    """Denoising steps used to generate the pseudo views (once per job)."""
    multiview_generator: str = "zero123pp"
    """zero123pp (Zero123++ v1.2: six views generated jointly, so they agree; non-commercial
    weights; used when downloaded, else zero123 with a note), zero123 (six independent samples of
    the novel-view model; commercial-safe) or off: the `multiview` option."""
    novel_view: str = "zero123-xl"
    """zero123-xl (commercial-safe) or stable-zero123 (sharper, non-commercial; conditioned on the
    input's elevation as well): the model behind SDS, the Zero123 pseudo views and the texture
    stage's refinement. The `novel_view` option."""

    depth_weight: float = 10.0
    """1 − Pearson(rendered depth, monocular depth) on the reference and pseudo views (0: off)."""

    text_prior: bool = False
    """Make-It-3D's text prior: SDS from Stable Diffusion 1.5 under the prompt (or the caption) at
    the novel view, annealed like the Zero123 term (the `text_prior` option; on in `high`). On, the
    prompt shapes the geometry and is part of its cache key; off, a prompt-only change re-runs only
    what depends on the prompt (segmentation, texture)."""
    text_sds_weight: float = 0.025
    """The text prior's weight (the Zero123 term's is `sds_weight`, 1: Magic123 weighs its 2D prior 1 to
    the 3D prior's 40)."""
    text_guidance_scale: float = 100.0
    """Classifier-free guidance of the text prior (DreamFusion's and Magic123's 100 for SD's SDS)."""
    view_dependent_prompt: bool = True
    """Append "front / side / back / overhead view" by the novel camera's pose (DreamFusion)."""
    clip_weight: float = 0.0
    """Make-It-3D's CLIP loss in the coarse stage: 1 − cos(CLIP(novel render), CLIP(reference)).
    0 turns it off (`high`: 1, Make-It-3D's ratio to its reference L1 mapped onto our MSE weight)."""

    optim: OptimConfig = field(default_factory=lambda: STAGE1_OPTIM)
    preview_splats: int = 50_000
    """At most this many splats per live preview (the most opaque ones)."""

    def __post_init__(self) -> None:
        if self.multiview_generator not in MULTIVIEW_GENERATORS:
            raise ValueError(f"multiview must be one of {', '.join(MULTIVIEW_GENERATORS)}, "
                             f"got {self.multiview_generator!r}")
        if self.novel_view not in NOVEL_VIEW_MODELS:
            raise ValueError(f"novel_view must be one of {', '.join(NOVEL_VIEW_MODELS)}, got {self.novel_view!r}")
        if self.steps < 1:
            raise ValueError(f"geometry steps must be at least 1, got {self.steps}")
        if any(s % 8 for s in self.render_sizes):
            raise ValueError(f"render sizes must be multiples of 8, got {self.render_sizes}")


@dataclass(frozen=True)
class TextureConfig:
    steps: int = 50
    """Texture refinement steps (0: keep the baked texture)."""
    learning_rate: float = 0.2
    """Adam on the texture logits (DreamGaussian: 0.2)."""
    render_size: int = 512
    supersample: int = 2
    """Renders are made at supersample × render_size and averaged down, so every texel under a
    pixel gets a gradient (one bilinear sample per pixel updates a speckle of texels and leaves
    the rest, which shows as noise on a texture finer than the render)."""
    refine_every: int = 1
    """Denoise a fresh view every this many steps (views are reused in between)."""
    strength: tuple[float, float] = (0.2, 0.05)
    """SDEdit strength of the novel-view refinement at the first and last step (diffusers
    convention: 1 = pure noise; DreamGaussian's 0.8 → 0.95 in its inverted convention)."""
    denoise_steps: int = 50
    """Length of the DDIM schedule the strength is a fraction of."""
    guidance_scale: float = 5.0
    prompt_refine_weight: float = 0.5
    """Weight of the prompt-driven SD img2img target against the image-driven Zero123 one (used
    only when there is a prompt; 0 turns it off)."""
    prompt_strength: float = 0.3
    prompt_steps: int = 20
    reference_weight: float = 1.0
    """MSE to the input image at the reference view."""
    clip_weight: float = 0.1
    """1 − cos(CLIP(render), CLIP(reference)) and, with a prompt, 1 − cos(CLIP(render), CLIP(text))."""
    cross_view_weight: float = 0.0
    """Cross-view semantic consistency (`cross_view.py`): 1 − cos of dense CLIP features at pixel
    pairs of two views that see the same surface point. 0 turns it off (the default until the
    degraded-guidance oracle shows what it buys; `high` uses it)."""
    cross_view_offset_deg: float = 45.0
    """Azimuth between the step's view and the second view the term compares it with."""


@dataclass(frozen=True)
class FixerConfig:
    """Difix3D+: one single-step fixer used in three places."""

    model: str = "off"
    """off | difix | difix-ref | sd-turbo (the `fixer` request option)."""
    progressive: bool = False
    """Progressive fixing in stage 1 (the `progressive_fix` option); needs a model."""
    schedule: FixSchedule = field(default_factory=FixSchedule)
    texture_targets: bool = True
    """Also clean stage 2's refinement targets."""
    enhance_outputs: bool = True
    """Also clean the final renders (turntable, contact sheet): Difix3D+'s post-render step."""

    def __post_init__(self) -> None:
        if self.model not in FIXER_MODELS:
            raise ValueError(f"fixer must be one of {', '.join(FIXER_MODELS)}, got {self.model!r}")

    @property
    def enabled(self) -> bool:
        return self.model != "off"

    @property
    def progressive_on(self) -> bool:
        return self.enabled and self.progressive


@dataclass(frozen=True)
class GenerationConfig:
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    mesh: MeshStageConfig = field(default_factory=MeshStageConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)
    fixer: FixerConfig = field(default_factory=FixerConfig)

    def to_dict(self) -> dict:
        return asdict(self)


STANDARD = GenerationConfig()
DRAFT = replace(
    STANDARD,
    preprocess=replace(STANDARD.preprocess, size=256),
    # Six quick Zero123 samples: a draft is a quick look, and its views need not agree.
    geometry=replace(STANDARD.geometry, steps=100, render_sizes=(64, 96, 128), multiview_samples=10,
                     initial_gaussians=2000, multiview_generator="zero123"),
    mesh=replace(STANDARD.mesh, grid_resolution=64, target_faces=5000, carve_render_size=96,
                 bake=replace(STANDARD.mesh.bake, texture_size=256, render_size=256)),
    texture=replace(STANDARD.texture, steps=5, render_size=128, denoise_steps=20, prompt_steps=10),
)
HIGH = replace(
    STANDARD,
    preprocess=replace(STANDARD.preprocess, captioner="blip2"),
    # Make-It-3D's text prior and CLIP loss on the highest preset, where a prompt change re-running
    # the geometry costs least of the artist's iteration.
    geometry=replace(STANDARD.geometry, steps=1000, multiview_samples=75, text_prior=True, clip_weight=1.0),
    mesh=replace(STANDARD.mesh, grid_resolution=192, target_faces=50_000,
                 bake=replace(STANDARD.mesh.bake, texture_size=2048)),
    texture=replace(STANDARD.texture, steps=100, cross_view_weight=0.05),
    # Difix3D+ on the highest preset only until its cost on a GPU is measured for `standard`.
    fixer=replace(STANDARD.fixer, model="difix-ref", progressive=True),
)
QUALITY_CONFIGS: dict[str, GenerationConfig] = {"draft": DRAFT, "standard": STANDARD, "high": HIGH}
