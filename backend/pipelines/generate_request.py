"""A `generate` request → the typed input of the generate pipeline.

The options themselves (names, types, ranges, help) are defined once in `protocol/options.py`;
this module only says where each lands in `GenerationConfig`, as a dotted path, so the request
→ config step is data and a test can walk every option through it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from protocol import Generate, RequestKind
from protocol.options import OptionValue, check_quality, options_for, validate_options

from ..stages.config import QUALITY_CONFIGS, GenerationConfig

OPTION_FIELDS: dict[str, str] = {
    "segmentation": "preprocess.segmentation",
    "elevation": "geometry.reference_elevation_deg",
    "faces": "mesh.target_faces",
    "texture_size": "mesh.bake.texture_size",
    "geometry_steps": "geometry.steps",
    "texture_steps": "texture.steps",
    "fixer": "fixer.model",
    "progressive_fix": "fixer.progressive",
    "multiview": "geometry.multiview_generator",
    "novel_view": "geometry.novel_view",
    "text_prior": "geometry.text_prior",
    "captioner": "preprocess.captioner",
}
"""option name → the config field it sets (every option of the generate kind has one)."""


@dataclass(frozen=True)
class GenerateInputs:
    """What one generate job works from: checked, typed, and free of the wire message."""

    image: bytes
    """The encoded image file (PNG, JPEG or WebP) as the artist sent it."""
    prompt: str
    config: GenerationConfig
    seed: int
    quality: str


def inputs_from(request: Generate) -> GenerateInputs:
    """Raises protocol.OptionError naming a bad option or preset."""
    config = config_for(check_quality(request.quality), validate_options(RequestKind.GENERATE, request.options))
    return GenerateInputs(image=bytes(request.image), prompt=request.prompt.strip(), config=config, seed=request.seed,
                          quality=request.quality)


def config_for(quality: str, options: dict[str, OptionValue]) -> GenerationConfig:
    """The preset's config with the (already validated) options applied."""
    config = QUALITY_CONFIGS[quality]
    for name, value in options.items():
        config = with_field(config, OPTION_FIELDS[name], value)
    return config


def with_field(config: Any, path: str, value: Any) -> Any:
    """A copy of the nested frozen dataclass `config` with the field at dotted `path` replaced."""
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: with_field(getattr(config, head), rest, value)})


def field_at(config: Any, path: str) -> Any:
    for name in path.split("."):
        config = getattr(config, name)
    return config


def unmapped_options() -> set[str]:
    """Options of the generate kind with no config field (a test keeps this empty)."""
    return {spec.name for spec in options_for(RequestKind.GENERATE)} - set(OPTION_FIELDS)
