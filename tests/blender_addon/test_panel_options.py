"""The panel's request settings come from the protocol's options table (bpy-free half)."""

from __future__ import annotations

import pytest

from blender_addon.core.panel_options import from_enum_id, panel_properties, request_options, split_supported
from protocol import OptionError, RequestKind
from protocol.options import options_for, validate_options

GENERATE = RequestKind.GENERATE


def defaults() -> dict:
    """A settings object as Blender creates it: every property at its default, no override ticked."""
    values = {}
    for prop in panel_properties(GENERATE):
        values[prop.attr] = prop.keywords["default"]
        if prop.toggle:
            values[prop.toggle] = False
    return values


def test_every_option_has_a_panel_property_with_the_tables_range_and_help():
    props = {prop.attr: prop for prop in panel_properties(GENERATE)}
    assert set(props) == {spec.name for spec in options_for(GENERATE)}
    faces = props["faces"]
    assert (faces.bpy_type, faces.keywords["min"], faces.keywords["max"]) == ("INT", 500, 500_000)
    assert faces.toggle == "use_faces" and "quality preset decides" in faces.keywords["description"]
    assert props["texture_size"].keywords["items"][0] == ("256", "256²", "256 × 256 texture")
    assert props["elevation"].keywords["name"] == "Input elevation (°)" and props["elevation"].toggle is None
    fixer = props["fixer"]
    assert fixer.bpy_type == "ENUM" and fixer.toggle == "use_fixer" and fixer.keywords["default"] == "difix-ref"
    assert [item[0] for item in fixer.keywords["items"]] == ["off", "difix", "difix-ref", "sd-turbo"]
    assert props["progressive_fix"].bpy_type == "BOOL" and props["progressive_fix"].toggle == "use_progressive_fix"
    for prop in props.values():
        assert prop.keywords["description"].startswith(prop.option.help)


def test_untouched_settings_send_no_options():
    assert request_options(GENERATE, defaults().__getitem__) == {}


def test_changed_settings_send_exactly_what_was_changed_and_the_backend_accepts_it():
    values = defaults()
    values.update(use_faces=True, faces=500, use_texture_size=True, texture_size="4096", elevation=25.0,
                  use_fixer=True, fixer="difix", segmentation=False, texture_steps=0)  # no override: not sent
    options = request_options(GENERATE, values.__getitem__)
    assert options == {"faces": 500, "texture_size": 4096, "elevation": 25.0, "fixer": "difix", "segmentation": False}
    assert validate_options(GENERATE, options) == options


def test_a_value_outside_the_table_never_leaves_blender():
    values = defaults()
    values.update(use_faces=True, faces=100)  # e.g. set from a script, bypassing the property's min
    with pytest.raises(OptionError, match="option 'faces' must be an integer from 500 to 500,000"):
        request_options(GENERATE, values.__getitem__)
    with pytest.raises(ValueError, match="not a choice"):
        from_enum_id(next(p.option for p in panel_properties(GENERATE) if p.attr == "texture_size"), "300")


def test_options_an_older_backend_does_not_know_are_left_out_and_named():
    kept, dropped = split_supported({"faces": 900, "fixer": True}, ["faces", "segmentation"])
    assert kept == {"faces": 900} and dropped == ["fixer"]
    assert split_supported({"fixer": True}, []) == ({"fixer": True}, [])  # it did not say: send everything
