"""Every request option and quality preset, defined once.

The Blender panel builds its properties from this table (type, range or choices, default, help
text), the backend validates each request against it before it answers `accepted`, and the
command line takes its `--option` names and `--preset` choices from it. Standard library only:
both sides import it (the add-on through its vendored copy).

An option whose `default` is None is decided by the quality preset unless the request sets it
(the panel shows such options behind an "override" checkbox). Adding an option: one `OptionSpec`
here, and one line mapping it onto the pipeline's config (`backend/pipelines/generate_request.py`);
the panel and the CLI pick it up from here.

An option may serve several request kinds (`fixer`: generate and enhance). Per kind it may refuse
some of its values (`refused`: an enhance request cannot turn the fixer off) and say what leaving it
out means where no quality preset decides (`unset`); `validate_options(kind, ...)` applies both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .kinds import RequestKind

OptionValue = int | float | bool | str
OptionKind = Literal["int", "float", "bool", "choice"]


class OptionError(ValueError):
    """A request option (or the quality preset) the backend cannot accept; names it and what is
    allowed. `option` is the offending name ('quality' for the preset)."""

    def __init__(self, option: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.option = option
        self.hint = hint


@dataclass(frozen=True)
class QualityPreset:
    name: str
    label: str
    description: str


QUALITY_PRESETS: tuple[QualityPreset, ...] = (
    QualityPreset("draft", "Draft", "A quick look: 100 geometry steps, 64³ mesh grid, 256² texture, 5 texture steps"),
    QualityPreset("standard", "Standard", "DreamGaussian's budget: 500 geometry steps, 20,000 faces, 1024² "
                                          "texture, 50 texture steps"),
    QualityPreset("high", "High", "1,000 geometry steps, 192³ mesh grid, 50,000 faces, 2048² texture, "
                                  "100 texture steps, progressive fixing with Difix-ref (non-commercial), the "
                                  "prompt as a text prior for the geometry, BLIP-2 captions"),
)
QUALITY_NAMES: tuple[str, ...] = tuple(p.name for p in QUALITY_PRESETS)
DEFAULT_QUALITY = "standard"


@dataclass(frozen=True)
class Choice:
    value: int | str
    label: str
    description: str = ""


@dataclass(frozen=True)
class OptionSpec:
    name: str
    """The key in a request's `options` map."""
    kind: OptionKind
    label: str
    """Short UI label."""
    help: str
    """One or two sentences for tooltips and `--help`."""
    request_kinds: frozenset[RequestKind]
    default: OptionValue | None = None
    """The value when a request leaves the option out; None: the quality preset decides."""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Choice, ...] = ()
    initial: OptionValue | None = None
    """What an override control starts at, for options the preset decides (inside the range)."""
    legacy: tuple[tuple[OptionValue, OptionValue], ...] = ()
    """(old value, value it now means): values an older add-on of the same protocol major may send
    (`fixer` was a bool before protocol 2.1)."""
    unit: str = ""
    """'deg' for angles (the panel shows degrees and sends degrees)."""
    advanced: bool = True
    """Shown in the panel's Advanced section (False: next to the prompt)."""
    refused: tuple[tuple[RequestKind, OptionValue, str], ...] = ()
    """(request kind, value, why): values requests of that kind may not use (the panel leaves them out)."""
    unset: tuple[tuple[RequestKind, str], ...] = ()
    """(request kind, what leaving the option out means in words), for kinds where neither the quality
    preset nor `default` decides it."""
    values: tuple[OptionValue, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(c.value for c in self.choices))
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"option {self.name}: a choice needs choices")
        if self.kind in ("int", "float") and (self.minimum is None or self.maximum is None):
            raise ValueError(f"option {self.name}: numbers need a range")
        for value in (self.default, self.initial):
            if value is not None:
                self.check(value)
        if self.default is None and self.initial is None and self.kind != "bool":
            raise ValueError(f"option {self.name}: a preset-decided option needs an `initial` value")

    @property
    def preset_decides(self) -> bool:
        return self.default is None

    def values_for(self, kind: RequestKind) -> tuple[OptionValue, ...]:
        """The choices a request of `kind` may use."""
        refused = {value for refused_kind, value, _ in self.refused if refused_kind == kind}
        return tuple(v for v in self.values if v not in refused)

    def when_unset(self, kind: RequestKind) -> str:
        """What a request of `kind` that leaves this option out gets, in words."""
        for unset_kind, words in self.unset:
            if unset_kind == kind:
                return words
        if self.preset_decides:
            return "the quality preset decides"
        return f"{self.default}"

    def check_for(self, kind: RequestKind, value: Any) -> OptionValue:
        """`check`, plus the values requests of `kind` may not use."""
        value = self.check(value)
        for refused_kind, refused_value, why in self.refused:
            if refused_kind == kind and value == refused_value:
                allowed = ", ".join(str(v) for v in self.values_for(kind))
                raise OptionError(self.name, f"option '{self.name}' cannot be {value!r} for {_article(kind)} "
                                             f"{kind.value} request: {why}",
                                  hint=f"Use one of {allowed}, or leave it out ({self.when_unset(kind)}).")
        return value

    def allowed(self) -> str:
        """What values are allowed, in words: 'an integer from 500 to 500,000'."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(str(v) for v in self.values)
        what = "an integer" if self.kind == "int" else "a number"
        return f"{what} from {_number(self.minimum)} to {_number(self.maximum)}" + (
            " (degrees)" if self.unit == "deg" else "")

    def check(self, value: Any) -> OptionValue:
        """`value` as this option's type, or OptionError naming the option and the allowed values."""
        for old, new in self.legacy:
            if type(value) is type(old) and value == old:
                value = new
        ok = False
        if self.kind == "bool":
            ok = isinstance(value, bool)
        elif self.kind == "choice":
            ok = not isinstance(value, bool) and value in self.values
        elif self.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and self.minimum <= value <= self.maximum
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            value = float(value)
            ok = self.minimum <= value <= self.maximum
        if not ok:
            raise OptionError(self.name, f"option '{self.name}' must be {self.allowed()}, got {value!r:.40}",
                              hint=f"{self.label}: {self.help}")
        return value


_GENERATE = frozenset({RequestKind.GENERATE})
_GENERATE_AND_ENHANCE = frozenset({RequestKind.GENERATE, RequestKind.ENHANCE})
_GENERATE_AND_TEXTURE = frozenset({RequestKind.GENERATE, RequestKind.TEXTURE})
_TEXTURE = frozenset({RequestKind.TEXTURE})
_SCENE = frozenset({RequestKind.SCENE})
TEXTURE_REQUEST_SIZE = 1024
"""A `texture` request's texture side when it leaves `texture_size` out."""

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "segmentation", "bool", "Cut out the object named by the prompt",
        "Text-guided segmentation (CLIPSeg + SAM) of what the prompt names. Off: the image's alpha, or "
        "its plain backdrop keyed out.", _GENERATE, default=True, advanced=False),
    OptionSpec(
        "elevation", "float", "Input elevation",
        "How far above the object the input photo was taken, in degrees (0: level with it; product shots "
        "from above: about 20 to 30). Sets the novel-view model's pose of the input.",
        _GENERATE, default=0.0, minimum=-60.0, maximum=60.0, unit="deg"),
    OptionSpec(
        "faces", "int", "Faces", "Target face count of the mesh.", _GENERATE,
        minimum=500, maximum=500_000, initial=20_000),
    OptionSpec(
        "texture_size", "choice", "Texture", "Side of the square texture image, in pixels.", _GENERATE_AND_TEXTURE,
        choices=tuple(Choice(side, f"{side}²", f"{side} × {side} texture") for side in (256, 512, 1024, 2048, 4096)),
        initial=1024, unset=((RequestKind.TEXTURE, f"{TEXTURE_REQUEST_SIZE}"),)),
    OptionSpec(
        "geometry_steps", "int", "Geometry steps", "Optimisation steps of the 3D Gaussians (stage 1).", _GENERATE,
        minimum=1, maximum=5000, initial=500),
    OptionSpec(
        "texture_steps", "int", "Texture steps",
        "Texture refinement steps (stage 2); 0 keeps the texture baked from the Gaussians.", _GENERATE,
        minimum=0, maximum=1000, initial=50),
    OptionSpec(
        "fixer", "choice", "Fixer",
        "Single-step artefact fixer for rendered views (Difix3D+): it cleans the views that progressive "
        "fixing adds in stage 1, the texture stage's targets and the final renders. Difix and Difix-ref "
        "(with the nearest input view as reference) are non-commercial (NVIDIA licence); SD-Turbo is the "
        "alternative for commercial use (Stability AI Community License).", _GENERATE_AND_ENHANCE,
        choices=(Choice("off", "Off", "No fixer"),
                 Choice("difix", "Difix", "nvidia/difix, one step at t = 199 (non-commercial)"),
                 Choice("difix-ref", "Difix (reference)", "nvidia/difix_ref, guided by the nearest input view "
                                                          "(non-commercial)"),
                 Choice("sd-turbo", "SD-Turbo", "stabilityai/sd-turbo img2img at t = 199 (commercial use under "
                                                "the Stability AI Community License)")),
        initial="difix-ref", legacy=((False, "off"), (True, "sd-turbo")),
        refused=((RequestKind.ENHANCE, "off", "enhancing an image is running the fixer on it"),),
        unset=((RequestKind.ENHANCE, "Difix-ref when a reference image is sent, Difix without one"),)),
    OptionSpec(
        "progressive_fix", "bool", "Progressive fixing",
        "Difix3D's progressive 3D update in stage 1: at intervals, render poses moved part of the way toward "
        "uncovered angles, clean them with the fixer and train on them too. Needs a fixer.", _GENERATE),
    OptionSpec(
        "multiview", "choice", "Multi-view generator",
        "Where stage 1's six pseudo-ground-truth views come from. Zero123++ generates them together, so "
        "they agree with each other (non-commercial licence; used when downloaded, else Zero123); Zero123 "
        "samples each on its own (commercial-safe); off trains without them.", _GENERATE,
        choices=(Choice("zero123pp", "Zero123++", "sudo-ai/zero123plus-v1.2: six joint views (CC-BY-NC-4.0)"),
                 Choice("zero123", "Zero123", "six independent samples of the novel-view model"),
                 Choice("off", "Off", "no pseudo views")),
        initial="zero123pp"),
    OptionSpec(
        "novel_view", "choice", "Novel-view model",
        "The model that imagines the unseen sides (score distillation, Zero123 pseudo views, texture "
        "refinement).", _GENERATE,
        choices=(Choice("zero123-xl", "Zero123-XL", "ashawkey/zero123-xl-diffusers (OpenRAIL-M: commercial use "
                                                    "with use restrictions)"),
                 Choice("stable-zero123", "Stable Zero123", "ashawkey/stable-zero123-diffusers: sharper, "
                                                            "non-commercial; optional download")),
        default="zero123-xl"),
    OptionSpec(
        "text_prior", "bool", "Prompt shapes the geometry",
        "Make-It-3D's text prior: Stable Diffusion 1.5 guides the sides the photo does not show toward the "
        "prompt (or the caption). On, a new prompt re-runs the geometry; off, only the texture.", _GENERATE),
    OptionSpec(
        "captioner", "choice", "Captioner",
        "The model that writes a prompt when you leave it empty.", _GENERATE,
        choices=(Choice("blip", "BLIP", "Salesforce/blip-image-captioning-base: light (1 GB)"),
                 Choice("blip2", "BLIP-2", "Salesforce/blip2-opt-2.7b: better captions, 15 GB download; its "
                                           "language model is under Meta's non-commercial OPT licence")),
        initial="blip"),
)
TEXTURE_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "views", "int", "Views",
        "How many views paint the texture: a ring around the object (at two heights from eight views on) "
        "plus one from the top and one from the bottom. More views cover more of a complex shape and take "
        "longer.", _TEXTURE, default=10, minimum=4, maximum=16),
    OptionSpec(
        "paint_steps", "int", "Paint steps",
        "Denoising steps of the depth-conditioned diffusion model per view.", _TEXTURE,
        default=25, minimum=1, maximum=100),
    OptionSpec(
        "refine_steps", "int", "Refine steps",
        "After painting, refine the texture as the generation's texture stage does: random views denoised "
        "under the prompt (SD 1.5 img2img) and pulled back into the texture, with CLIP consistency to the "
        "prompt and the reference image. 0: off.", _TEXTURE, default=0, minimum=0, maximum=500),
)
SCENE_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "frames", "int", "Keyframes",
        "How many keyframes the scene grows at, spread evenly along the camera path. Each one inpaints "
        "what the scene does not show yet from there; more keyframes cover a long path more closely.",
        _SCENE, default=12, minimum=2, maximum=64, advanced=False),
    OptionSpec(
        "scene_size", "choice", "Keyframe size", "Side of the square keyframes in pixels.", _SCENE,
        choices=tuple(Choice(side, f"{side}²", f"{side} × {side} keyframes") for side in (256, 384, 512)),
        initial=384),
    OptionSpec(
        "replay_steps", "int", "Replay steps",
        "Optimisation steps of the Gaussians after each keyframe, on views drawn from every keyframe so far "
        "(so the scene does not forget the first ones).", _SCENE, minimum=1, maximum=2000, initial=80),
    OptionSpec(
        "inpaint_steps", "int", "Inpaint steps",
        "Denoising steps of the inpainting model per keyframe (and of the text-to-image model that draws the "
        "first keyframe when no image is given).", _SCENE, minimum=1, maximum=100, initial=30),
)


@dataclass(frozen=True)
class ScenePreset:
    """What a quality preset means for a `scene` request (the options it decides)."""
    size: int
    replay_steps: int
    inpaint_steps: int

    @property
    def description(self) -> str:
        return (f"{self.size}² keyframes, {self.replay_steps} replay steps per keyframe, {self.inpaint_steps} "
                f"inpainting steps")


SCENE_PRESETS: dict[str, ScenePreset] = {
    "draft": ScenePreset(size=256, replay_steps=40, inpaint_steps=20),
    "standard": ScenePreset(size=384, replay_steps=80, inpaint_steps=30),
    "high": ScenePreset(size=512, replay_steps=150, inpaint_steps=50),
}
DEFAULT_SCENE_QUALITY = "draft"
"""A scene is many generations' work: its requests and the panel default to draft."""
OPTIONS = OPTIONS + TEXTURE_OPTIONS + SCENE_OPTIONS
_BY_NAME: dict[str, OptionSpec] = {spec.name: spec for spec in OPTIONS}


def option(name: str) -> OptionSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown option {name!r}; known: {', '.join(_BY_NAME)}") from None


def options_for(kind: RequestKind) -> tuple[OptionSpec, ...]:
    return tuple(spec for spec in OPTIONS if kind in spec.request_kinds)


def check_quality(name: Any) -> str:
    if name not in QUALITY_NAMES:
        raise OptionError("quality", f"unknown quality preset {name!r:.40}",
                          hint=f"Choose one of: {', '.join(QUALITY_NAMES)}.")
    return name


def validate_options(kind: RequestKind, options: Mapping[str, Any]) -> dict[str, OptionValue]:
    """The request's options checked against the table → a normalised copy (floats as float).
    Raises OptionError for the first unknown option or bad value (a typo must not silently fall
    back to a default)."""
    known = {spec.name: spec for spec in options_for(kind)}
    out: dict[str, OptionValue] = {}
    for name, value in options.items():
        spec = known.get(name)
        if spec is None:
            raise OptionError(str(name), f"unknown option {str(name)!r:.40} for {_article(kind)} {kind.value} request",
                              hint=f"Known options: {', '.join(known)}. An add-on newer than the backend may "
                                   f"send options it does not know: update the backend.")
        out[name] = spec.check_for(kind, value)
    return out


def enhance_fixer(options: Mapping[str, OptionValue], has_reference: bool) -> str:
    """The fixer an `enhance` request runs, from its validated options: the `fixer` option, or when
    it is left out Difix-ref with a reference image and Difix without one."""
    fixer = options.get("fixer")
    if fixer is None:
        return "difix-ref" if has_reference else "difix"
    return str(fixer)


def _article(kind: RequestKind) -> str:
    return "an" if kind.value[:1] in "aeiou" else "a"


def parse_cli_value(spec: OptionSpec, text: str) -> OptionValue:
    """A `--option NAME=VALUE` string as the option's type (the check comes after)."""
    lowered = text.strip().lower()
    if spec.kind == "bool":
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise OptionError(spec.name, f"option '{spec.name}' must be {spec.allowed()}, got {text!r:.40}")
    try:
        if spec.kind == "int" or (spec.kind == "choice" and isinstance(spec.values[0], int)):
            return int(lowered)
        if spec.kind == "float":
            return float(lowered)
    except ValueError:
        raise OptionError(spec.name, f"option '{spec.name}' must be {spec.allowed()}, got {text!r:.40}") from None
    return text.strip()


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"
