"""Add-on preferences: where the backend is, whether to start one, keys, preview density."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .core.wire import DEFAULT_ADDRESS

# The extension's module name is `bl_ext.<repo>.lift3d` when installed and `blender_addon` in a
# checkout, so the preferences are keyed by whatever package this is.
ADDON_ID = __package__


class Lift3DPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    backend_address: StringProperty(
        name="Backend address", default=DEFAULT_ADDRESS,
        description="ZeroMQ address of the Lift3D backend, e.g. tcp://127.0.0.1:5571 or tcp://gpu-box:5571")
    auto_start: BoolProperty(
        name="Start a local backend automatically", default=True,
        description="When the address is on this machine and nothing answers there, start "
                    "'PYTHON -m backend serve' in the background at the first Generate")
    python_path: StringProperty(
        name="Backend Python", subtype="FILE_PATH", default="",
        description="Python of the Lift3D backend environment (e.g. <lift3d checkout>/.venv/bin/python)")
    local_models: EnumProperty(
        name="Models", default="auto",
        items=[("auto", "Auto", "Full models when downloaded, otherwise an error that says how to get them"),
               ("full", "Full", "The real models (download them first: python -m backend models download)"),
               ("tiny", "Tiny (test only)", "Random weights: the output is noise; only checks the wiring")],
        description="Model preset of a backend started by the add-on")
    keys_dir: StringProperty(
        name="Key folder", subtype="DIR_PATH", default="",
        description="CURVE key folder made by 'python -m backend keys generate' (for a remote backend "
                    "started with --keys); empty for a local, unencrypted backend")
    client_name: StringProperty(
        name="Client key", default="client", description="Name of this client's key pair inside the key folder")
    preview_points: IntProperty(
        name="Preview points", default=50_000, min=1_000, max=500_000,
        description="Most splats shown in the live preview (fewer keeps the viewport fast)")
    object_size: FloatProperty(
        name="Object size", default=1.0, min=0.01, soft_max=10.0, subtype="DISTANCE",
        description="Largest dimension of an imported result")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "backend_address")
        box = layout.box()
        box.prop(self, "auto_start")
        col = box.column()
        col.enabled = self.auto_start
        col.prop(self, "python_path")
        col.prop(self, "local_models")
        box = layout.box()
        box.label(text="Remote backend (encrypted)")
        box.prop(self, "keys_dir")
        box.prop(self, "client_name")
        layout.prop(self, "preview_points")
        layout.prop(self, "object_size")


def get(context: bpy.types.Context | None = None) -> Lift3DPreferences:
    context = context or bpy.context
    return context.preferences.addons[ADDON_ID].preferences


CLASSES = (Lift3DPreferences,)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
