"""The options table: ranges, choices, messages, and the CLI's parsing."""

from __future__ import annotations

import pytest

from protocol.kinds import RequestKind, Stage, progress_spans, stage_of
from protocol.options import (
    OPTIONS,
    QUALITY_NAMES,
    OptionError,
    check_quality,
    enhance_fixer,
    option,
    options_for,
    parse_cli_value,
    validate_options,
)

GENERATE = RequestKind.GENERATE


def test_every_option_has_help_a_label_and_a_kind_and_preset_decided_ones_start_in_range():
    assert len({spec.name for spec in OPTIONS}) == len(OPTIONS)
    for spec in OPTIONS:
        assert spec.label and spec.help.endswith(".") and spec.request_kinds
        if spec.preset_decides and spec.kind != "bool":
            assert spec.check(spec.initial) == spec.initial


@pytest.mark.parametrize("name, bad, allowed", [
    ("faces", 499, "an integer from 500 to 500,000"),
    ("faces", 20_000.0, "an integer from 500 to 500,000"),
    ("faces", True, "an integer from 500 to 500,000"),
    ("geometry_steps", 20_000, "an integer from 1 to 5,000"),
    ("texture_steps", 2_000, "an integer from 0 to 1,000"),
    ("texture_size", 300, "one of 256, 512, 1024, 2048, 4096"),
    ("texture_size", "1024", "one of 256, 512, 1024, 2048, 4096"),
    ("elevation", 75, "a number from -60 to 60 (degrees)"),
    ("elevation", float("nan"), "a number from -60 to 60 (degrees)"),
    ("segmentation", "yes", "true or false"),
    ("fixer", 1, "one of off, difix, difix-ref, sd-turbo"),
    ("fixer", "difix-xl", "one of off, difix, difix-ref, sd-turbo"),
    ("progressive_fix", "on", "true or false"),
])
def test_a_bad_value_is_refused_naming_the_option_and_the_allowed_values(name, bad, allowed):
    with pytest.raises(OptionError) as info:
        validate_options(GENERATE, {name: bad})
    assert info.value.option == name
    assert f"option '{name}' must be {allowed}" in str(info.value)
    assert info.value.hint.startswith(option(name).label)


def test_good_values_pass_and_numbers_are_normalised():
    options = validate_options(GENERATE, {"faces": 500, "elevation": 30, "texture_size": 4096, "fixer": "difix",
                                          "texture_steps": 0, "segmentation": False, "progressive_fix": True})
    assert options == {"faces": 500, "elevation": 30.0, "texture_size": 4096, "fixer": "difix", "texture_steps": 0,
                       "segmentation": False, "progressive_fix": True}
    assert isinstance(options["elevation"], float)


def test_unknown_options_and_presets_are_refused_with_what_is_known():
    with pytest.raises(OptionError, match="unknown option 'face'") as info:
        validate_options(GENERATE, {"face": 20_000})
    assert "faces" in info.value.hint
    with pytest.raises(OptionError, match="unknown quality preset 'ultra'") as info:
        check_quality("ultra")
    assert info.value.option == "quality" and "draft, standard, high" in info.value.hint
    assert check_quality("draft") == "draft" and QUALITY_NAMES == ("draft", "standard", "high")


def test_command_line_values_are_parsed_by_the_option_type():
    assert parse_cli_value(option("faces"), "20000") == 20_000
    assert parse_cli_value(option("texture_size"), "2048") == 2048
    assert parse_cli_value(option("elevation"), "-12.5") == -12.5
    assert parse_cli_value(option("segmentation"), "off") is False
    assert parse_cli_value(option("fixer"), " difix-ref") == "difix-ref"
    assert parse_cli_value(option("progressive_fix"), "True") is True
    with pytest.raises(OptionError, match="option 'faces' must be an integer"):
        parse_cli_value(option("faces"), "many")
    with pytest.raises(OptionError, match="option 'progressive_fix' must be true or false"):
        parse_cli_value(option("progressive_fix"), "maybe")


def test_an_older_addons_boolean_fixer_still_means_what_it_meant():
    """Before protocol 2.1 `fixer` was a bool (an SD-Turbo pass); within protocol 2 it still works."""
    assert validate_options(GENERATE, {"fixer": True}) == {"fixer": "sd-turbo"}
    assert validate_options(GENERATE, {"fixer": False}) == {"fixer": "off"}


def test_the_panel_exposes_the_options_the_backend_had_hidden():
    names = {spec.name for spec in options_for(GENERATE)}
    assert {"elevation", "fixer", "progressive_fix"} <= names


def test_stage_spans_cover_the_bar_in_order_and_unknown_stage_names_are_tolerated():
    spans = progress_spans(GENERATE)
    assert list(spans) == [Stage.PREPROCESS, Stage.PSEUDO_VIEWS, Stage.GEOMETRY, Stage.MESH, Stage.TEXTURE]
    ends = [end for _, end in spans.values()]
    assert ends == sorted(ends) and spans[Stage.PREPROCESS][0] == 0.0 and ends[-1] == pytest.approx(1.0)
    assert stage_of("pseudo views") is Stage.PSEUDO_VIEWS and stage_of("dreaming") is None
    assert Stage.PSEUDO_VIEWS.label == "Pseudo views"


ENHANCE = RequestKind.ENHANCE


def test_the_fixer_option_serves_enhance_requests_which_cannot_turn_it_off():
    assert [spec.name for spec in options_for(ENHANCE)] == ["fixer"]
    fixer = option("fixer")
    assert fixer.values_for(ENHANCE) == ("difix", "difix-ref", "sd-turbo")
    assert fixer.values_for(GENERATE) == ("off", "difix", "difix-ref", "sd-turbo")
    assert validate_options(ENHANCE, {"fixer": "sd-turbo"}) == {"fixer": "sd-turbo"}
    assert validate_options(GENERATE, {"fixer": "off"}) == {"fixer": "off"}
    for off in ("off", False):  # an older add-on's False means off too
        with pytest.raises(OptionError, match="option 'fixer' cannot be 'off' for an enhance request") as info:
            validate_options(ENHANCE, {"fixer": off})
        assert info.value.option == "fixer"
        assert "difix, difix-ref, sd-turbo" in info.value.hint and "Difix-ref when a reference" in info.value.hint
    with pytest.raises(OptionError, match="must be one of off, difix, difix-ref, sd-turbo"):
        validate_options(ENHANCE, {"fixer": "difix3d"})
    with pytest.raises(OptionError, match="unknown option 'faces' for an enhance request") as info:
        validate_options(ENHANCE, {"faces": 900})
    assert "Known options: fixer" in info.value.hint


def test_an_enhance_without_a_fixer_uses_difix_ref_with_a_reference_and_difix_without():
    assert enhance_fixer({}, has_reference=True) == "difix-ref"
    assert enhance_fixer({}, has_reference=False) == "difix"
    assert enhance_fixer({"fixer": "sd-turbo"}, has_reference=True) == "sd-turbo"
    assert option("fixer").when_unset(ENHANCE) == "Difix-ref when a reference image is sent, Difix without one"
    assert option("fixer").when_unset(GENERATE) == "the quality preset decides"
