"""The panel's request settings, derived from the protocol's options table (bpy-free).

`panel_properties(kind)` says which Blender properties to create (type, label, tooltip, default,
range or enum items) for every option of a request kind; `properties.py` turns each into a
`bpy.props` call, and `panels.py` draws them in the same order. An option the quality preset
decides gets a `use_<name>` checkbox: unticked, the request leaves the option out. `request_options`
reads the settings back into the `options` map of a request, leaving out what the preset or the
option's default decides, so a backend that predates an option is only sent it when it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .wire import RequestKind, options

OptionSpec = options.OptionSpec


@dataclass(frozen=True)
class PanelProperty:
    option: OptionSpec
    bpy_type: str
    """'BOOL', 'INT', 'FLOAT' or 'ENUM': which bpy.props constructor."""
    keywords: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of that constructor (name, description, default, min, max, items)."""

    @property
    def attr(self) -> str:
        return self.option.name

    @property
    def toggle(self) -> str | None:
        """The override checkbox of an option the preset decides (None: always sent when changed)."""
        return f"use_{self.option.name}" if self.option.preset_decides else None


def panel_properties(kind: RequestKind) -> list[PanelProperty]:
    return [_panel_property(spec, kind) for spec in options.options_for(kind)]


def _panel_property(spec: OptionSpec, kind: RequestKind) -> PanelProperty:
    start = spec.initial if spec.preset_decides else spec.default
    name = spec.label + (" (°)" if spec.unit == "deg" else "")
    description = spec.help + (f" Unticked: {spec.when_unset(kind)}." if spec.preset_decides else "")
    keywords: dict[str, Any] = {"name": name, "description": description}
    if spec.kind == "bool":
        return PanelProperty(spec, "BOOL", {**keywords, "default": bool(start)})
    if spec.kind == "choice":
        allowed = spec.values_for(kind)  # a value this kind refuses is never offered
        items = [(enum_id(c.value), c.label, c.description or c.label) for c in spec.choices if c.value in allowed]
        start = start if start in allowed else allowed[0]
        return PanelProperty(spec, "ENUM", {**keywords, "items": items, "default": enum_id(start)})
    bounds = {"min": spec.minimum, "max": spec.maximum}
    if spec.kind == "int":
        return PanelProperty(spec, "INT", {**keywords, "default": int(start), **{k: int(v) for k, v in bounds.items()}})
    return PanelProperty(spec, "FLOAT", {**keywords, "default": float(start), **bounds})


def enum_id(value: Any) -> str:
    """Blender enum identifiers are strings; option choices may be ints (texture sizes)."""
    return str(value)


def from_enum_id(spec: OptionSpec, identifier: str) -> Any:
    for value in spec.values:
        if enum_id(value) == identifier:
            return value
    raise ValueError(f"{identifier!r} is not a choice of option {spec.name}")


def request_options(kind: RequestKind, read: Callable[[str], Any]) -> dict[str, Any]:
    """The `options` map of a request from the panel's settings; `read(attr)` returns a property's
    value (e.g. `lambda attr: getattr(settings, attr)`). Checked against the options table, so a
    value the backend would refuse never leaves Blender."""
    out: dict[str, Any] = {}
    for prop in panel_properties(kind):
        spec = prop.option
        if prop.toggle is not None and not read(prop.toggle):
            continue
        value = read(prop.attr)
        value = from_enum_id(spec, value) if spec.kind == "choice" else value
        value = float(value) if spec.kind == "float" else int(value) if spec.kind == "int" else value
        if prop.toggle is None and value == spec.default:
            continue
        out[spec.name] = spec.check_for(kind, value)
    return out


def split_supported(requested: Mapping[str, Any], backend_options: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(options the backend accepts, names it does not know) — an empty list from the backend (an
    older welcome without it) means it cannot tell, and everything is sent."""
    if not backend_options:
        return dict(requested), []
    kept = {name: value for name, value in requested.items() if name in backend_options}
    return kept, sorted(set(requested) - set(kept))
