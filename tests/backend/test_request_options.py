"""Every request option, walked from the panel's property through the wire message and the
server's check into the pipeline's config: one table (protocol/options.py), no second copy."""

from __future__ import annotations

import pytest

from backend.pipelines.generate_request import OPTION_FIELDS, config_for, field_at, inputs_from, unmapped_options
from backend.stages.config import QUALITY_CONFIGS
from blender_addon.core.panel_options import enum_id, panel_properties, request_options
from protocol import Generate, OptionError, RequestKind, decode, encode
from protocol.options import QUALITY_NAMES, options_for

GENERATE = RequestKind.GENERATE
PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)


def changed_value(spec):
    """A valid value different from the option's default and from every preset's where one exists
    (a choice of two that the presets use both of: different from the draft preset's, the one
    these tests start from)."""
    presets = {field_at(config, OPTION_FIELDS[spec.name]) for config in QUALITY_CONFIGS.values()}
    draft = field_at(QUALITY_CONFIGS["draft"], OPTION_FIELDS[spec.name])
    if spec.kind == "bool":
        return not draft if spec.default is None else not spec.default
    candidates = list(spec.values) if spec.kind == "choice" else [spec.minimum, spec.maximum,
                                                                    (spec.minimum + spec.maximum) / 2]
    candidates = [int(v) if spec.kind == "int" else v for v in candidates]
    unused = [v for v in candidates if v not in presets and v != spec.default]
    return unused[0] if unused else next(v for v in candidates if v != draft and v != spec.default)


def test_every_option_lands_in_the_config_and_the_presets_agree_with_the_table():
    assert unmapped_options() == set() and set(QUALITY_CONFIGS) == set(QUALITY_NAMES)
    for spec in options_for(GENERATE):
        for quality, config in QUALITY_CONFIGS.items():
            value = field_at(config, OPTION_FIELDS[spec.name])
            if spec.preset_decides:
                assert spec.check(value) == value, f"{quality} preset's {spec.name} is outside the table"
            else:
                assert value == spec.default, f"{quality} preset's {spec.name} disagrees with the table's default"


@pytest.mark.parametrize("spec", options_for(GENERATE), ids=lambda spec: spec.name)
def test_a_panel_setting_reaches_the_pipeline_config(spec):
    value = changed_value(spec)
    settings = {}
    for prop in panel_properties(GENERATE):
        settings[prop.attr] = prop.keywords["default"]
        if prop.toggle:
            settings[prop.toggle] = False
    prop = next(p for p in panel_properties(GENERATE) if p.attr == spec.name)
    settings[spec.name] = enum_id(value) if spec.kind == "choice" else value
    if prop.toggle:
        settings[prop.toggle] = True
    options = request_options(GENERATE, settings.__getitem__)
    assert options == {spec.name: value}
    received = decode(encode(Generate(image=PNG, prompt="a chair", quality="draft", seed=1, options=options))).message
    config = inputs_from(received).config
    assert field_at(config, OPTION_FIELDS[spec.name]) == value
    # ...and nothing else moved from the preset.
    assert config == config_for("draft", {spec.name: value})
    assert config.to_dict() != QUALITY_CONFIGS["draft"].to_dict()


def test_inputs_are_typed_and_bad_requests_name_what_is_wrong():
    inputs = inputs_from(Generate(image=PNG, prompt="  a chair ", quality="high", seed=3, options={"elevation": 20}))
    assert inputs.prompt == "a chair" and inputs.seed == 3 and inputs.quality == "high"
    assert inputs.config.geometry.reference_elevation_deg == 20.0 and isinstance(inputs.image, bytes)
    with pytest.raises(OptionError, match="unknown quality preset 'ultra'"):
        inputs_from(Generate(image=PNG, prompt="", quality="ultra", seed=0))
    with pytest.raises(OptionError, match="option 'elevation' must be a number from -60 to 60"):
        inputs_from(Generate(image=PNG, prompt="", quality="draft", seed=0, options={"elevation": 95}))
