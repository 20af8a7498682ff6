"""Operators: Generate, Regenerate, Enhance Render, Texture Selected, Regenerate Texture, Generate
Scene, Cancel, Connect, and the two ways of choosing an image.

They validate, build the request and hand it to the session; the timer does the rest, so none of
them blocks. Problems are reported with what to do about them.
"""

from __future__ import annotations

import json

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ImportHelper

from . import enhance, preferences, scene_mode, session, texture
from .core.image_source import ImageSourceError, image_bytes, unsendable
from .core.jobs import EnhanceRequest, JobRequest, SceneRequest, TextureRequest
from .core.texture_arrays import TextureMeshError


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


def _connect_and_submit(operator, context, request) -> set[str]:
    """Connect (starting a local backend when the preferences say so) and send `request`."""
    try:
        _endpoint_and_connect(context)
        session.get().submit(request)
    except session.ConnectError as exc:
        return _refuse(operator, str(exc), exc.hint)
    return {"FINISHED"}


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


def enhance_blocked_reason(context, settings) -> str:
    """Why Enhance Render cannot run now ('' when it can); shown in the panel and the tooltip."""
    if session.get().busy:
        return "A job is running: wait for it or cancel it"
    if settings.source == "RENDER":
        if enhance.render_result() is None:
            return "Render an image first (F12)"
    elif settings.image is None:
        return "Choose the image to enhance"
    elif unsendable(settings.image):
        return unsendable(settings.image)
    if settings.reference is not None and unsendable(settings.reference):
        return "Reference: " + unsendable(settings.reference)
    return ""


class LIFT3D_OT_enhance(bpy.types.Operator):
    """Clean up the last render (or the chosen image) with the backend's single-step fixer
    (Difix3D+); the result is a new image of the same size, packed into the file"""

    bl_idname = "lift3d.enhance"
    bl_label = "Enhance Render"

    @classmethod
    def poll(cls, context):
        settings = getattr(context.scene, "lift3d", None)
        reason = ("Lift3D is not set up in this scene" if settings is None
                  else enhance_blocked_reason(context, settings.enhance))
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def execute(self, context):
        settings = context.scene.lift3d.enhance
        try:
            data, size, source_name = enhance.source_bytes(settings, context.scene)
            reference = enhance.reference_bytes(settings.reference)
        except (ImageSourceError, OSError) as exc:
            return _refuse(self, str(exc))
        request = EnhanceRequest(image=data, source_name=source_name, size=size, reference=reference,
                                 reference_name=settings.reference.name if settings.reference else "",
                                 options=settings.options())
        return _connect_and_submit(self, context, request)


NO_TEXTURE_PROMPT = "Describe the texture (or choose a reference image)"


def texture_blocked_reason(context, settings, material_mode: str | None = None) -> str:
    """Why Texture Selected cannot run now ('' when it can); shown in the panel and the tooltip."""
    if session.get().busy:
        return "A job is running: wait for it or cancel it"
    reason = texture.target_reason(context.active_object, material_mode or settings.material)
    if reason:
        return reason
    if not settings.prompt.strip() and settings.reference is None:
        return NO_TEXTURE_PROMPT
    if settings.reference is not None and unsendable(settings.reference):
        return "Reference: " + unsendable(settings.reference)
    return ""


def _submit_texture(operator, context, *, prompt: str, reference, seed: int, options: dict, material: str,
                    uv_layer: str | None = None) -> set[str]:
    """Read the active mesh, warn when its modifiers change its shape, and send the request."""
    ob = context.active_object
    reason = "A job is running: wait for it or cancel it" if session.get().busy else texture.target_reason(ob, material)
    if reason:
        return _refuse(operator, reason)
    me = ob.data
    if uv_layer is None:
        uv_layer = me.uv_layers.active.name if me.uv_layers.active is not None else ""
    try:
        mesh = texture.read_mesh(ob, uv_layer)
        image = image_bytes(reference) if reference is not None else None
    except (TextureMeshError, ImageSourceError, OSError) as exc:
        return _refuse(operator, str(exc))
    warning = texture.shape_warning(ob, context.evaluated_depsgraph_get(), mesh)
    request = TextureRequest(mesh=mesh, prompt=prompt.strip(), object_uid=ob.session_uid, object_name=ob.name,
                             material=material, image=image, image_name=reference.name if reference else "",
                             seed=seed, options=options)
    try:
        _endpoint_and_connect(context)
        job = session.get().submit(request)
    except session.ConnectError as exc:
        return _refuse(operator, str(exc), exc.hint)
    if warning:
        job.warnings.append(warning[:1].upper() + warning[1:] + ".")
        operator.report({"WARNING"}, f"Lift3D: {warning}.")
    return {"FINISHED"}


class LIFT3D_OT_texture(bpy.types.Operator):
    """Paint a texture onto the active mesh from the prompt (and the optional reference image) with the
    backend. It appears on the object as it is painted; the mesh, its UV maps, modifiers and other
    material slots stay as they are, and Cancel puts everything back"""

    bl_idname = "lift3d.texture"
    bl_label = "Texture Selected"

    @classmethod
    def poll(cls, context):
        settings = getattr(context.scene, "lift3d", None)
        reason = ("Lift3D is not set up in this scene" if settings is None
                  else texture_blocked_reason(context, settings.texture))
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def execute(self, context):
        s = context.scene.lift3d.texture
        return _submit_texture(self, context, prompt=s.prompt, reference=s.reference, seed=s.seed,
                               options=s.options(), material=s.material)


class LIFT3D_OT_texture_regenerate(bpy.types.Operator):
    """Paint the active object's Lift3D texture again with the panel's texture prompt (empty: the one it
    was painted with), reusing its seed, settings, reference image, material choice and UV map; the new
    texture replaces the previous one"""

    bl_idname = "lift3d.texture_regenerate"
    bl_label = "Regenerate Texture"

    @classmethod
    def poll(cls, context):
        ob = context.active_object
        settings = getattr(context.scene, "lift3d", None)
        if ob is None or "lift3d_texture_prompt" not in ob or settings is None:
            cls.poll_message_set("Select an object textured by Lift3D")
            return False
        reason = texture_blocked_reason(context, settings.texture, str(ob.get("lift3d_texture_material", "NEW")))
        if reason == NO_TEXTURE_PROMPT and (ob.get("lift3d_texture_prompt") or ob.get("lift3d_texture_reference")):
            reason = ""  # the stored prompt (or reference image) is used
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def execute(self, context):
        ob = context.active_object
        reference = None
        if ob.get("lift3d_texture_reference"):
            reference = bpy.data.images.get(ob["lift3d_texture_reference"])
            if reference is None:
                return _refuse(self, f"the reference image '{ob['lift3d_texture_reference']}' of '{ob.name}' is "
                                     "not in this file any more",
                               "Choose a reference in the panel and press Texture Selected.")
        try:
            options = json.loads(ob.get("lift3d_texture_options", "{}"))
        except json.JSONDecodeError as exc:
            return _refuse(self, f"the stored texture settings of '{ob.name}' are damaged: {exc}",
                           "Press Texture Selected instead.")
        uv_layer = str(ob.get("lift3d_texture_uv", ""))
        if not uv_layer or ob.data.uv_layers.get(uv_layer) is None:
            uv_layer = None  # the active UV map, as for Texture Selected
        prompt = context.scene.lift3d.texture.prompt.strip() or str(ob.get("lift3d_texture_prompt", ""))
        return _submit_texture(self, context, prompt=prompt, reference=reference,
                               seed=int(ob.get("lift3d_texture_seed", 0)), options=options,
                               material=str(ob.get("lift3d_texture_material", "NEW")), uv_layer=uv_layer)


NO_SCENE_PROMPT = "Write a prompt: it says what to paint wherever the camera looks next"


def scene_blocked_reason(context, settings) -> str:
    """Why Generate Scene cannot run now ('' when it can); shown in the panel and the tooltip."""
    if session.get().busy:
        return "A job is running: wait for it or cancel it"
    if not settings.prompt.strip():
        return NO_SCENE_PROMPT
    if settings.image is not None and unsendable(settings.image):
        return "First image: " + unsendable(settings.image)
    if settings.trajectory == "camera" and (context.scene.camera is None or context.scene.camera.type != "CAMERA"):
        return "The scene has no active camera to take the path from"
    return ""


class LIFT3D_OT_scene(bpy.types.Operator):
    """Grow a 3D scene from the prompt (and the optional first image) along the camera path: the live
    splats appear as it grows, then a coloured mesh and a camera flying the path (one undo step)"""

    bl_idname = "lift3d.scene"
    bl_label = "Generate Scene"

    @classmethod
    def poll(cls, context):
        settings = getattr(context.scene, "lift3d", None)
        reason = "Lift3D is not set up in this scene" if settings is None else scene_blocked_reason(
            context, settings.scene)
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def execute(self, context):
        s = context.scene.lift3d.scene
        reason = scene_blocked_reason(context, s)
        if reason:
            return _refuse(self, reason)
        poses, fov, frames = None, 60.0, ()
        try:
            if s.trajectory == "camera":
                poses, fov, frames = scene_mode.read_camera_path(context.scene, context.scene.camera)
            image = image_bytes(s.image) if s.image is not None else None
        except (scene_mode.CameraPathError, ImageSourceError, OSError) as exc:
            return _refuse(self, str(exc))
        request = SceneRequest(prompt=s.prompt.strip(), trajectory=s.trajectory, poses=poses, fov_deg=fov,
                               image=image, image_name=s.image.name if s.image is not None else "",
                               quality=s.quality, seed=s.seed, options=s.options(), frames=frames,
                               frame_start=context.scene.frame_start, scene_name=context.scene.name)
        return _connect_and_submit(self, context, request)


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


CLASSES = (LIFT3D_OT_generate, LIFT3D_OT_regenerate, LIFT3D_OT_enhance, LIFT3D_OT_texture, LIFT3D_OT_texture_regenerate,
           LIFT3D_OT_scene,
           LIFT3D_OT_cancel, LIFT3D_OT_connect, LIFT3D_OT_open_image, LIFT3D_OT_use_editor_image)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
