"""Per-scene generation settings (saved with the .blend, so a scene remembers its last request)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

QUALITY_ITEMS = [
    ("draft", "Draft", "Fast look (about a quarter of Standard's steps)"),
    ("standard", "Standard", "DreamGaussian's budget: ~500 geometry steps, ~50 texture steps"),
    ("high", "High", "Twice Standard's steps, finer mesh and texture"),
]
TEXTURE_ITEMS = [("0", "Preset", "The quality preset's texture size")] + [
    (str(side), f"{side}²", f"{side} × {side} texture") for side in (512, 1024, 2048, 4096)
]


def _image_changed(self, context) -> None:
    # A thumbnail for the panel; preview_ensure must not run inside draw().
    if self.image is not None:
        self.image.preview_ensure()


class Lift3DSettings(bpy.types.PropertyGroup):
    image: PointerProperty(type=bpy.types.Image, name="Image", update=_image_changed,
                           description="Photo or render of the object to lift to 3D")
    prompt: StringProperty(name="Prompt", default="",
                           description="What the object is (names the object to cut out). Empty: the backend "
                                       "writes a caption")
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, image and settings: same geometry")
    faces: IntProperty(name="Faces", default=0, min=0, max=500_000,
                       description="Target face count of the mesh, 500 to 500,000 (0: the quality preset's)")
    texture_size: EnumProperty(name="Texture", items=TEXTURE_ITEMS, default="0")
    segmentation: BoolProperty(name="Cut out the object named by the prompt", default=True,
                               description="Text-guided segmentation; off: use the image's alpha or its backdrop")
    geometry_steps: IntProperty(name="Geometry steps", default=0, min=0, max=20_000,
                                description="Override the preset's geometry optimisation steps (0: preset)")
    texture_steps: IntProperty(name="Texture steps", default=0, min=0, max=2_000,
                               description="Override the preset's texture refinement steps (0: preset)")

    def options(self) -> dict[str, object]:
        """The request options, leaving out what the preset decides."""
        options: dict[str, object] = {"segmentation": bool(self.segmentation)}
        if self.faces:
            options["faces"] = int(self.faces)
        if self.texture_size != "0":
            options["texture_size"] = int(self.texture_size)
        if self.geometry_steps:
            options["geometry_steps"] = int(self.geometry_steps)
        if self.texture_steps:
            options["texture_steps"] = int(self.texture_steps)
        return options


CLASSES = (Lift3DSettings,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.lift3d = PointerProperty(type=Lift3DSettings)


def unregister() -> None:
    del bpy.types.Scene.lift3d
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
