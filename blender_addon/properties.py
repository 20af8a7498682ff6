"""Per-scene settings of Generate, Enhance Render, Texture Selected and Scene mode (saved with the .blend, so a
scene remembers its last request).

The request options are not written out here: each one's property (type, range or choices,
default, tooltip) is generated from the protocol's options table through `core.panel_options`, so
the panel can never offer a value the backend refuses.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .core.panel_options import PanelProperty, panel_properties, request_options
from .texture import MATERIAL_MODES
from .core.wire import RequestKind, options

QUALITY_ITEMS = [(p.name, p.label, p.description) for p in options.QUALITY_PRESETS]
SCENE_QUALITY_ITEMS = [(p.name, p.label, options.SCENE_PRESETS[p.name].description) for p in options.QUALITY_PRESETS]
_CONSTRUCTORS = {"BOOL": BoolProperty, "INT": IntProperty, "FLOAT": FloatProperty, "ENUM": EnumProperty}


def _image_changed(self, context) -> None:
    # A thumbnail for the panel; preview_ensure must not run inside draw().
    if self.image is not None:
        self.image.preview_ensure()


def _option_annotations(props: list[PanelProperty], kind: RequestKind = RequestKind.GENERATE) -> dict:
    annotations = {}
    for prop in props:
        annotations[prop.attr] = _CONSTRUCTORS[prop.bpy_type](**prop.keywords)
        if prop.toggle is not None:
            label = prop.option.label.lower()
            annotations[prop.toggle] = BoolProperty(
                name=f"Set {label}", default=False,
                description=f"Use this value instead of the quality preset's ({label})" if kind == RequestKind.GENERATE
                else f"Use this value (unticked: {prop.option.when_unset(kind)})")
    return annotations


class Lift3DEnhanceSettings(bpy.types.PropertyGroup):
    """Enhance Render: what to enhance, an optional reference, and the enhance request's options."""

    __annotations__ = {
        "source": EnumProperty(name="Source", default="RENDER", items=[
            ("RENDER", "Render Result", "The last render (F12), as Blender would save it"),
            ("IMAGE", "Image", "An image in this file"),
        ], description="What to enhance"),
        "image": PointerProperty(type=bpy.types.Image, name="Image", description="The image to enhance"),
        "reference": PointerProperty(
            type=bpy.types.Image, name="Reference",
            description="Optional: a clean view of the same subject (a photo, or the input image of a Lift3D "
                        "result). Difix-ref looks at it; without one, Difix is used"),
        **_option_annotations(panel_properties(RequestKind.ENHANCE), RequestKind.ENHANCE),
    }

    def options(self) -> dict[str, object]:
        """The options of an Enhance request, leaving out what the backend decides."""
        return request_options(RequestKind.ENHANCE, lambda attr: getattr(self, attr))


class Lift3DTextureSettings(bpy.types.PropertyGroup):
    """Texture Selected: what to paint on the active mesh, and where the texture goes."""

    __annotations__ = {
        "prompt": StringProperty(name="Prompt", default="",
                                 description="What the surface should look like (e.g. weathered red paint over wood)"),
        "reference": PointerProperty(
            type=bpy.types.Image, name="Reference",
            description="Optional: an image whose look the texture follows (PNG, JPEG or WebP are sent as they are)"),
        "seed": IntProperty(name="Seed", default=0, min=0, description="Same seed, mesh and settings: same texture"),
        "material": EnumProperty(name="Material", items=MATERIAL_MODES, default="NEW",
                                 description="Where the texture goes"),
        **_option_annotations(panel_properties(RequestKind.TEXTURE), RequestKind.TEXTURE),
    }

    def options(self) -> dict[str, object]:
        """The options of a Texture request, leaving out what the backend's defaults decide."""
        return request_options(RequestKind.TEXTURE, lambda attr: getattr(self, attr))


TRAJECTORY_ITEMS = [
    ("orbit", "Look Around", "Turn in place at eye height, a step of half the field of view per keyframe"),
    ("forward", "Walk Forward", "Walk 2 m straight ahead (+Y)"),
    ("pan", "Slide Sideways", "Slide 2 m to the right (+X) while looking ahead"),
    ("camera", "Active Camera's Animation", "The scene camera's path from the start to the end frame"),
]


class Lift3DSceneSettings(bpy.types.PropertyGroup):
    """Scene mode: a prompt (and an optional first image) grown into a 3D scene along a camera path."""

    __annotations__ = {
        "prompt": StringProperty(name="Prompt", default="",
                                 description="What the scene shows (e.g. a cosy living room with a fireplace)"),
        "image": PointerProperty(type=bpy.types.Image, name="First Image",
                                 description="Optional: the first keyframe (its centre square). Without one, Stable "
                                             "Diffusion draws it from the prompt"),
        "trajectory": EnumProperty(name="Path", items=TRAJECTORY_ITEMS, default="orbit",
                                   description="Where the camera goes while the scene grows"),
        "quality": EnumProperty(name="Quality", items=SCENE_QUALITY_ITEMS, default=options.DEFAULT_SCENE_QUALITY),
        "seed": IntProperty(name="Seed", default=0, min=0, description="Same seed, prompt and path: same scene"),
        **_option_annotations(panel_properties(RequestKind.SCENE), RequestKind.SCENE),
    }

    def options(self) -> dict[str, object]:
        """The options of a Scene request, leaving out what the preset or the defaults decide."""
        return request_options(RequestKind.SCENE, lambda attr: getattr(self, attr))


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
        "enhance": PointerProperty(type=Lift3DEnhanceSettings, name="Enhance Render"),
        "texture": PointerProperty(type=Lift3DTextureSettings, name="Texture Selected"),
        "scene": PointerProperty(type=Lift3DSceneSettings, name="Scene"),
    }

    def options(self) -> dict[str, object]:
        """The request options of a Generate, leaving out what the preset or the defaults decide."""
        return request_options(RequestKind.GENERATE, lambda attr: getattr(self, attr))


CLASSES = (Lift3DEnhanceSettings, Lift3DTextureSettings, Lift3DSceneSettings, Lift3DSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.lift3d = PointerProperty(type=Lift3DSettings)


def unregister() -> None:
    del bpy.types.Scene.lift3d
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
