"""Operators: Generate, Regenerate, Cancel, Connect, and the two ways of choosing an image.

They validate, build the request and hand it to the session; the timer does the rest, so none of
them blocks. Problems are reported with what to do about them.
"""

from __future__ import annotations

import json

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ImportHelper

from . import preferences, session
from .core.image_source import ImageSourceError, image_bytes, unsendable
from .core.jobs import JobRequest


def _endpoint_and_connect(context) -> None:
    prefs = preferences.get(context)
    endpoint = session.Endpoint(prefs.backend_address.strip(), bpy.path.abspath(prefs.keys_dir) if prefs.keys_dir
                                else "", prefs.client_name.strip() or "client")
    sess = session.get()
    sess.preview_points = prefs.preview_points
    sess.ensure_connected(endpoint, auto_start=prefs.auto_start, python=bpy.path.abspath(prefs.python_path),
                          models=prefs.local_models)


def blocked_reason(context, image) -> str:
    """Why Generate cannot run now ('' when it can); shown in the panel and the tooltip."""
    if session.get().busy:
        return "A job is running: wait for it or cancel it"
    if image is None:
        return "Choose an image first"
    if unsendable(image):
        return f"'{image.name}' is not a saved still image"
    return ""


def _refuse(operator, message: str, hint: str = "") -> set[str]:
    """Report a problem in the status bar and keep it on the panel (reports scroll away)."""
    session.get().error = (message, hint)
    text = message if message.endswith(".") else message + "."
    operator.report({"ERROR"}, f"Lift3D: {text} {hint}".strip())
    return {"CANCELLED"}


def _submit(operator, context, image, prompt: str, quality: str, seed: int, options: dict,
            replaces: int | None = None) -> set[str]:
    try:
        data = image_bytes(image)
    except (ImageSourceError, OSError) as exc:
        return _refuse(operator, str(exc))
    request = JobRequest(image=data, prompt=prompt.strip(), quality=quality, seed=seed, options=options,
                         image_name=image.name, image_path=image.filepath,
                         location=tuple(context.scene.cursor.location),
                         target_size=preferences.get(context).object_size, replaces=replaces,
                         scene_name=context.scene.name)
    try:
        _endpoint_and_connect(context)
        session.get().submit(request)
    except session.ConnectError as exc:
        return _refuse(operator, str(exc), exc.hint)
    if not request.prompt:
        operator.report({"INFO"}, "Lift3D: empty prompt, the backend will caption the image")
    return {"FINISHED"}


class LIFT3D_OT_generate(bpy.types.Operator):
    """Lift the image to a textured 3D mesh with the backend"""

    bl_idname = "lift3d.generate"
    bl_label = "Generate 3D"

    @classmethod
    def poll(cls, context):
        settings = getattr(context.scene, "lift3d", None)
        reason = "Lift3D is not set up in this scene" if settings is None else blocked_reason(context, settings.image)
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def execute(self, context):
        s = context.scene.lift3d
        return _submit(self, context, s.image, s.prompt, s.quality, s.seed, s.options())


class LIFT3D_OT_regenerate(bpy.types.Operator):
    """Generate the selected Lift3D result again with the panel's prompt, reusing its image, seed and
    settings (geometry comes from the backend's cache, so a prompt change is quick)"""

    bl_idname = "lift3d.regenerate"
    bl_label = "Regenerate"

    prompt: StringProperty(name="Prompt", description="New prompt (default: the panel's prompt)", default="")

    @classmethod
    def poll(cls, context):
        ob = context.active_object
        if ob is None or "lift3d_prompt" not in ob:
            cls.poll_message_set("Select an object made by Lift3D")
            return False
        if session.get().busy:
            cls.poll_message_set("A job is running: wait for it or cancel it")
            return False
        return True

    def execute(self, context):
        ob = context.active_object
        image = bpy.data.images.get(ob.get("lift3d_image", ""))
        if image is None and ob.get("lift3d_image_path"):
            try:
                image = bpy.data.images.load(ob["lift3d_image_path"], check_existing=True)
            except RuntimeError as exc:
                return _refuse(self, f"the source image of '{ob.name}' cannot be loaded: {exc}",
                               "Choose the image in the panel and press Generate 3D.")
        if image is None:
            return _refuse(self, f"the source image of '{ob.name}' is not in this file any more",
                           "Choose the image in the panel and press Generate 3D.")
        try:
            options = json.loads(ob.get("lift3d_options", "{}"))
        except json.JSONDecodeError as exc:
            return _refuse(self, f"the stored settings of '{ob.name}' are damaged: {exc}",
                           "Generate it again from the panel.")
        prompt = self.prompt or context.scene.lift3d.prompt
        return _submit(self, context, image, prompt, str(ob.get("lift3d_preset", "standard")),
                       int(ob.get("lift3d_seed", 0)), options, replaces=ob.session_uid)


class LIFT3D_OT_cancel(bpy.types.Operator):
    """Stop the running job (nothing half-built is left in the scene)"""

    bl_idname = "lift3d.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return session.get().busy

    def execute(self, context):
        session.get().cancel()
        return {"FINISHED"}


class LIFT3D_OT_connect(bpy.types.Operator):
    """Connect to the backend (starting a local one if the preferences say so)"""

    bl_idname = "lift3d.connect"
    bl_label = "Connect"

    @classmethod
    def poll(cls, context):
        if session.get().busy:
            # A new connection is a new client to the backend, which cancels the old client's jobs.
            cls.poll_message_set("Not while a job is running")
            return False
        return True

    def execute(self, context):
        try:
            session.get().disconnect()
            _endpoint_and_connect(context)
        except session.ConnectError as exc:
            return _refuse(self, str(exc), exc.hint)
        session.get().error = None
        return {"FINISHED"}


class LIFT3D_OT_open_image(bpy.types.Operator, ImportHelper):
    """Open an image file as the Lift3D input"""

    bl_idname = "lift3d.open_image"
    bl_label = "Open Image"

    filter_glob: StringProperty(default="*.png;*.jpg;*.jpeg;*.webp;*.tif;*.tiff;*.exr;*.bmp", options={"HIDDEN"})

    def execute(self, context):
        known = set(bpy.data.images)
        try:
            image = bpy.data.images.load(self.filepath, check_existing=True)
        except RuntimeError as exc:
            return _refuse(self, f"cannot open {self.filepath}: {exc}", "Choose a PNG, JPEG or WebP file.")
        if image.size[0] == 0:  # Blender loads lazily: an unreadable file gives an image without pixels
            if image not in known:
                bpy.data.images.remove(image)
            return _refuse(self, f"cannot open {self.filepath}: Blender cannot read it as an image",
                           "Choose a PNG, JPEG or WebP file.")
        context.scene.lift3d.image = image
        return {"FINISHED"}


def editor_image(context):
    """The image shown in an Image Editor of the current screen (the active area's first)."""
    areas = [context.area] if context.area else []
    areas += list(context.screen.areas) if context.screen else []
    for area in areas:
        if area.type == "IMAGE_EDITOR" and area.spaces.active.image is not None:
            return area.spaces.active.image
    return None


class LIFT3D_OT_use_editor_image(bpy.types.Operator):
    """Use the image open in the Image Editor"""

    bl_idname = "lift3d.use_editor_image"
    bl_label = "From Image Editor"

    @classmethod
    def poll(cls, context):
        if editor_image(context) is None:
            cls.poll_message_set("No Image Editor with an image is open")
            return False
        return True

    def execute(self, context):
        context.scene.lift3d.image = editor_image(context)
        return {"FINISHED"}


CLASSES = (LIFT3D_OT_generate, LIFT3D_OT_regenerate, LIFT3D_OT_cancel, LIFT3D_OT_connect, LIFT3D_OT_open_image,
           LIFT3D_OT_use_editor_image)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
