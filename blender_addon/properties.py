"""Per-scene generation settings (saved with the .blend, so a scene remembers its last request).

The request options are not written out here: each one's property (type, range or choices,
default, tooltip) is generated from the protocol's options table through `core.panel_options`, so
the panel can never offer a value the backend refuses.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .core.panel_options import PanelProperty, panel_properties, request_options
from .core.wire import RequestKind, options

QUALITY_ITEMS = [(p.name, p.label, p.description) for p in options.QUALITY_PRESETS]
_CONSTRUCTORS = {"BOOL": BoolProperty, "INT": IntProperty, "FLOAT": FloatProperty, "ENUM": EnumProperty}


def _image_changed(self, context) -> None:
    # A thumbnail for the panel; preview_ensure must not run inside draw().
    if self.image is not None:
        self.image.preview_ensure()


def _option_annotations(props: list[PanelProperty]) -> dict:
    annotations = {}
    for prop in props:
        annotations[prop.attr] = _CONSTRUCTORS[prop.bpy_type](**prop.keywords)
        if prop.toggle is not None:
            annotations[prop.toggle] = BoolProperty(
                name=f"Set {prop.option.label.lower()}", default=False,
                description=f"Use this value instead of the quality preset's ({prop.option.label.lower()})")
    return annotations


class Lift3DSettings(bpy.types.PropertyGroup):
    __annotations__ = {
        "image": PointerProperty(type=bpy.types.Image, name="Image", update=_image_changed,
                                 description="Photo or render of the object to lift to 3D"),
        "prompt": StringProperty(name="Prompt", default="",
                                 description="What the object is (names the object to cut out). Empty: the backend "
                                             "writes a caption"),
        "quality": EnumProperty(name="Quality", items=QUALITY_ITEMS, default=options.DEFAULT_QUALITY),
        "seed": IntProperty(name="Seed", default=0, min=0, description="Same seed, image and settings: same geometry"),
        **_option_annotations(panel_properties(RequestKind.GENERATE)),
    }

    def options(self) -> dict[str, object]:
        """The request options of a Generate, leaving out what the preset or the defaults decide."""
        return request_options(RequestKind.GENERATE, lambda attr: getattr(self, attr))


CLASSES = (Lift3DSettings,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.lift3d = PointerProperty(type=Lift3DSettings)


def unregister() -> None:
    del bpy.types.Scene.lift3d
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
