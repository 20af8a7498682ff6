"""The 3D Viewport sidebar panel (N panel, "Lift3D" tab). Draw code only reads state."""

from __future__ import annotations

import textwrap

import bpy

from . import operators, session
from .core.jobs import Phase, format_seconds
from .core.panel_options import PanelProperty, panel_properties
from .core.wire import RequestKind


# `placeholder` (grey hint text in an empty field) is newer than some supported Blender versions.
_HAS_PLACEHOLDER = "placeholder" in bpy.types.UILayout.bl_rna.functions["prop"].parameters


def _option_rows(layout, settings, advanced: bool | None, kind: RequestKind = RequestKind.GENERATE) -> None:
    """The request options of one panel section (`advanced` None: all of them), in the options
    table's order. An option the preset (or the backend) decides is a checkbox and its value, greyed
    out until ticked."""
    for prop in panel_properties(kind):
        if advanced is None or prop.option.advanced == advanced:
            _option_row(layout, settings, prop)


def _option_row(layout, settings, prop: PanelProperty) -> None:
    if prop.toggle is None:
        layout.prop(settings, prop.attr)
        return
    row = layout.row(align=True, heading=prop.keywords["name"])
    row.prop(settings, prop.toggle, text="")
    value = row.row(align=True)
    value.active = getattr(settings, prop.toggle)
    value.prop(settings, prop.attr, text="")


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 42) -> None:
    # Keep the text's own line breaks (a backend log tail is one line per entry).
    lines = [wrapped for line in text.splitlines() for wrapped in textwrap.wrap(line, width)] or [""]
    for index, line in enumerate(lines):
        layout.label(text=line, icon=icon if index == 0 else "BLANK1")


class _Sidebar:
    """Where every Lift3D panel lives: the 3D Viewport's sidebar, "Lift3D" tab."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Lift3D"


class LIFT3D_PT_main(_Sidebar, bpy.types.Panel):
    bl_label = "Lift3D"
    bl_idname = "LIFT3D_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.lift3d
        sess = session.get()

        icon, status = sess.status()
        row = layout.row(align=True)
        row.label(text=status, icon=icon)
        row.operator("lift3d.connect", text="", icon="FILE_REFRESH")

        col = layout.column(align=True)
        col.template_ID(settings, "image", open="lift3d.open_image")
        col.operator("lift3d.use_editor_image", icon="IMAGE")
        image = settings.image
        if image is not None and image.preview is not None:
            layout.template_icon(icon_value=image.preview.icon_id, scale=6.0)
            layout.label(text=f"{image.size[0]} × {image.size[1]} px")

        hint = {"placeholder": "What is it? (e.g. a red armchair)"} if _HAS_PLACEHOLDER else {}
        layout.prop(settings, "prompt", text="", **hint)
        row = layout.row(align=True)
        row.prop(settings, "quality", expand=True)
        layout.prop(settings, "seed")
        _option_rows(layout, settings, advanced=False)

        job = sess.job
        if sess.busy:
            layout.progress(factor=job.progress_factor(), type="BAR", text=job.progress_text())
            if job.note:
                _wrapped(layout, job.note, icon="INFO")
            layout.operator("lift3d.cancel", icon="CANCEL")
        else:
            row = layout.row()
            row.scale_y = 1.6
            row.operator("lift3d.generate", icon="MESH_MONKEY")
            reason = operators.blocked_reason(context, image)
            if reason:
                layout.label(text=reason, icon="INFO")
            elif not settings.prompt.strip():
                layout.label(text="Empty prompt: a caption is used", icon="INFO")

        shown = sess.job or sess.last_job
        if shown is not None and shown.ignored_options:
            _wrapped(layout, f"This backend ignores {', '.join(shown.ignored_options)}: update it to use them",
                     icon="INFO")
        for warning in shown.warnings if shown is not None else ():
            _wrapped(layout, warning, icon="ERROR")

        if sess.error is not None:
            box = layout.box()
            message, hint = sess.error
            _wrapped(box, message[:1].upper() + message[1:] or "The job failed", icon="ERROR")
            if hint:
                _wrapped(box, hint)
        elif sess.last_job is not None and sess.last_job.phase == Phase.DONE:
            done = sess.last_job
            made = done.result_image if done.is_enhance or done.is_texture else done.final_object
            layout.label(text=f"Done in {format_seconds(done.elapsed_s)}: {made}", icon="CHECKMARK")
            if done.metadata is not None and done.metadata.tiny:
                layout.label(text="Tiny models: the result is noise", icon="ERROR")


class LIFT3D_PT_advanced(_Sidebar, bpy.types.Panel):
    bl_label = "Advanced"
    bl_idname = "LIFT3D_PT_advanced"
    bl_parent_id = "LIFT3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.lift3d
        layout = self.layout
        layout.use_property_split = True
        _option_rows(layout, settings, advanced=True)


class LIFT3D_PT_result(_Sidebar, bpy.types.Panel):
    """The selected Lift3D object: what made it, and Regenerate."""

    bl_label = "Selected Result"
    bl_idname = "LIFT3D_PT_result"
    bl_parent_id = "LIFT3D_PT_main"

    @classmethod
    def poll(cls, context):
        ob = context.active_object
        return ob is not None and "lift3d_prompt" in ob

    def draw(self, context):
        ob = context.active_object
        layout = self.layout
        _wrapped(layout, f"Prompt: {ob['lift3d_prompt'] or '(caption)'}")
        layout.label(text=f"Seed {ob.get('lift3d_seed', 0)} · {ob.get('lift3d_preset', '?')} · "
                          f"{ob.get('lift3d_stage', '?')} mesh")
        if ob.get("lift3d_image"):
            layout.label(text=f"Image: {ob['lift3d_image']}", icon="IMAGE_DATA")
        layout.operator("lift3d.regenerate", icon="FILE_REFRESH")


class LIFT3D_PT_enhance(_Sidebar, bpy.types.Panel):
    """Enhance Render: the single-step fixer on the last render or an image; the result is a new image."""

    bl_label = "Enhance Render"
    bl_idname = "LIFT3D_PT_enhance"
    bl_parent_id = "LIFT3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.lift3d.enhance
        sess = session.get()
        layout = self.layout
        layout.row(align=True).prop(settings, "source", expand=True)
        if settings.source == "IMAGE":
            layout.template_ID(settings, "image", open="image.open")
        layout.prop(settings, "reference")
        col = layout.column()
        col.use_property_split = True
        _option_rows(col, settings, advanced=None, kind=RequestKind.ENHANCE)
        welcome = sess.client.welcome if sess.client is not None else None
        if welcome is not None and "enhance" not in welcome.request_kinds:
            _wrapped(layout, "This backend does not offer Enhance: update it", icon="ERROR")
        row = layout.row()
        row.scale_y = 1.4
        row.operator("lift3d.enhance", icon="SHADERFX")
        reason = operators.enhance_blocked_reason(context, settings)
        if reason and not sess.busy:
            _wrapped(layout, reason, icon="INFO")
        done = sess.last_job
        if done is not None and done.is_enhance and done.result_image:
            _wrapped(layout, f"Made image '{done.result_image}' (see the Image Editor)", icon="IMAGE_DATA")


class LIFT3D_PT_texture(_Sidebar, bpy.types.Panel):
    """Texture Selected: paint a texture onto the active mesh; it fills in on the object as it is painted."""

    bl_label = "Texture Selected"
    bl_idname = "LIFT3D_PT_texture"
    bl_parent_id = "LIFT3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.lift3d.texture
        sess = session.get()
        layout = self.layout
        ob = context.active_object
        layout.label(text=f"Object: {ob.name}" if ob is not None and ob.type == "MESH" else "Object: (no mesh active)",
                     icon="OBJECT_DATA")
        hint = {"placeholder": "What should it look like? (e.g. mossy stone)"} if _HAS_PLACEHOLDER else {}
        layout.prop(settings, "prompt", text="", **hint)
        layout.template_ID(settings, "reference", open="image.open")
        layout.row(align=True).prop(settings, "material", expand=True)
        col = layout.column()
        col.use_property_split = True
        col.prop(settings, "seed")
        _option_rows(col, settings, advanced=None, kind=RequestKind.TEXTURE)
        welcome = sess.client.welcome if sess.client is not None else None
        if welcome is not None and "texture" not in welcome.request_kinds:
            _wrapped(layout, "This backend does not texture meshes: update it", icon="ERROR")
        job = sess.job
        if job is not None and job.is_texture and sess.busy:
            layout.progress(factor=job.progress_factor(), type="BAR", text=job.progress_text())
            if job.coverage is not None:
                layout.label(text=f"Painted {job.coverage:.0%} of the texture so far")
            layout.operator("lift3d.cancel", icon="CANCEL")
            return
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("lift3d.texture", icon="TEXTURE")
        if ob is not None and "lift3d_texture_prompt" in ob:
            row.operator("lift3d.texture_regenerate", text="", icon="FILE_REFRESH")
        reason = operators.texture_blocked_reason(context, settings)
        if reason and not sess.busy:
            _wrapped(layout, reason, icon="INFO")
        done = sess.last_job
        if done is not None and done.is_texture and done.phase == Phase.DONE:
            coverage = f" ({done.coverage:.0%} seen by the views)" if done.coverage is not None else ""
            _wrapped(layout, f"Painted '{done.result_image}' onto '{done.request.object_name}'{coverage}",
                     icon="IMAGE_DATA")
            if done.uv_note:
                _wrapped(layout, f"UVs: {done.uv_note}")


class LIFT3D_PT_scene(_Sidebar, bpy.types.Panel):
    """Scene mode: grow a 3D scene from a prompt along a camera path; the splats appear as it grows."""

    bl_label = "Scene"
    bl_idname = "LIFT3D_PT_scene"
    bl_parent_id = "LIFT3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.lift3d.scene
        sess = session.get()
        layout = self.layout
        hint = {"placeholder": "What is the scene? (e.g. a cosy living room)"} if _HAS_PLACEHOLDER else {}
        layout.prop(settings, "prompt", text="", **hint)
        layout.template_ID(settings, "image", open="image.open")
        layout.prop(settings, "trajectory")
        if settings.trajectory == "camera":
            camera = context.scene.camera
            scene = context.scene
            layout.label(text=f"{camera.name}: frames {scene.frame_start} to {scene.frame_end}" if camera is not None
                         else "No active camera", icon="CAMERA_DATA")
        layout.row(align=True).prop(settings, "quality", expand=True)
        col = layout.column()
        col.use_property_split = True
        col.prop(settings, "seed")
        _option_rows(col, settings, advanced=None, kind=RequestKind.SCENE)
        welcome = sess.client.welcome if sess.client is not None else None
        if welcome is not None and "scene" not in welcome.request_kinds:
            _wrapped(layout, "This backend does not grow scenes: update it", icon="ERROR")
        job = sess.job
        if job is not None and job.is_scene and sess.busy:
            layout.progress(factor=job.progress_factor(), type="BAR", text=job.progress_text())
            if job.note:
                _wrapped(layout, job.note, icon="INFO")
            layout.operator("lift3d.cancel", icon="CANCEL")
            return
        row = layout.row()
        row.scale_y = 1.4
        row.operator("lift3d.scene", icon="SCENE_DATA")
        reason = operators.scene_blocked_reason(context, settings)
        if reason and not sess.busy:
            _wrapped(layout, reason, icon="INFO")
        done = sess.last_job
        if done is not None and done.is_scene and done.phase == Phase.DONE:
            _wrapped(layout, f"Made '{done.final_object}' and the camera '{done.result_camera}'", icon="CHECKMARK")


CLASSES = (LIFT3D_PT_main, LIFT3D_PT_advanced, LIFT3D_PT_result, LIFT3D_PT_enhance, LIFT3D_PT_texture,
           LIFT3D_PT_scene)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
