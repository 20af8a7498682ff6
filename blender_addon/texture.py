"""Texture Selected, the bpy side: reading the artist's mesh for the request, and painting the
texture onto the object (live while the backend paints, then the result) or putting the object back
exactly as it was. What to send and how the job goes is decided in `core` (`core.texture_arrays`,
`core.jobs`); the operators are in `operators.py`.

Non-destructive: the mesh's topology, its UV layers (data, active and render flags), its modifiers
and every material slot but the one painted into stay as they are. What a job adds is recorded as it
is added (`TextureEdit`, kept on the job) and taken out again when the job is cancelled or fails:

  image      'Lift3D Texture <object>', a new image datablock (packed TGA once final)
  material   New material: 'Lift3D <object>' (Image Texture → Principled BSDF → Material Output) in
             the active slot (a slot is added when there is none; the material it held stays in the
             file, with a fake user once nothing else uses it). Active material: an Image Texture
             node linked into its Principled BSDF's Base Color. A material or node a previous
             Texture Selected made (for this object) is reused, its image swapped: painting again
             replaces the previous texture instead of stacking new ones.
  UV layer   'Lift3D UV', only when the backend made new UVs, with a UV Map node naming it; when it
             kept the sent UVs, a UV Map node naming the layer they came from.

Runs from the session's timer tick (data API only, no operators).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import importer
from .core.jobs import Job, texture_image_name
from .core.mesh_arrays import tga_bytes
from .core.texture_arrays import (
    TextureMesh,
    TextureMeshError,
    blender_pixels,
    bounds,
    check_counts,
    corner_uvs,
    loop_uvs,
    modifier_warning,
    shape_differs,
    triangles,
)

UV_LAYER = "Lift3D UV"
IMAGE_NODE = "Lift3D Texture"
UV_NODE = "Lift3D UV Map"
MATERIAL_TAG = "lift3d_texture_material"
"""Custom property of a material Texture Selected made (painting again reuses it)."""
IMAGE_TAG = "lift3d_texture_job"
"""Custom property of a texture image: the job that painted it."""
MATERIAL_MODES = [
    ("NEW", "New material", "A new material 'Lift3D <object>' (Image Texture → Principled BSDF) in the active "
                            "material slot; the material it replaces stays in the file"),
    ("ACTIVE", "Active material's Base Color", "An Image Texture node linked into the Base Color of the active "
                                               "material's Principled BSDF"),
]


class TextureTargetError(RuntimeError):
    """The object cannot take the texture (gone, changed, no material to paint into)."""


@dataclass
class TextureEdit:
    """What a texture job has changed so far, by name (datablock references do not survive undo)."""

    object_uid: int
    image: str = ""
    material: str = ""
    material_created: bool = False
    slot: int | None = None
    """The material slot given the new material (New material mode)."""
    slot_added: bool = False
    slot_previous: str | None = None
    nodes_created: list[str] = field(default_factory=list)
    base_color_recorded: bool = False
    base_color_previous: tuple[str, str] | None = None
    """(node name, output identifier) that fed the Principled BSDF's Base Color before."""
    node_image_recorded: bool = False
    node_image_previous: str | None = None
    """The image a reused Lift3D image node showed before (the previous texture)."""
    uv_map_recorded: bool = False
    uv_map_previous: str = ""
    uv_layer_created: str = ""
    uv_layer_previous: np.ndarray | None = None
    """The data of a 'Lift3D UV' layer a previous job made, before it was overwritten."""
    uv_written: str = ""
    """The UV layer the job wrote the backend's new UVs into (previews then show on it)."""
    properties_previous: dict | None = None


_MISSING = object()


# -- reading the mesh --------------------------------------------------------------------------------


def target(uid: int):
    return next((ob for ob in bpy.data.objects if ob.session_uid == uid), None)


def principled(material):
    """The Principled BSDF that feeds the active Material Output's Surface, else the first one."""
    tree = material.node_tree if material is not None else None
    if tree is None or (bpy.app.version < (5, 0, 0) and not material.use_nodes):  # 5.0: always node-based
        return None
    for node in tree.nodes:
        if node.type == "OUTPUT_MATERIAL" and node.is_active_output and node.inputs["Surface"].is_linked:
            source = node.inputs["Surface"].links[0].from_node
            if source.type == "BSDF_PRINCIPLED":
                return source
    return next((node for node in tree.nodes if node.type == "BSDF_PRINCIPLED"), None)


def target_reason(ob, material_mode: str) -> str:
    """Why `ob` cannot be textured ('' when it can)."""
    if ob is None or ob.type != "MESH":
        return "Select a mesh object to texture (the active object)"
    if ob.library is not None or ob.data.library is not None:
        return f"'{ob.name}' is linked from another file: make it local first"
    if ob.mode == "EDIT":
        return "Leave Edit Mode first"
    if len(ob.data.polygons) == 0:
        return f"'{ob.name}' has no faces to paint"
    if material_mode == "ACTIVE":
        material = ob.active_material
        if material is None:
            return f"'{ob.name}' has no active material: choose 'New material'"
        if principled(material) is None:
            return f"The material '{material.name}' has no Principled BSDF: choose 'New material'"
    return ""


def read_mesh(ob, uv_layer: str = "") -> TextureMesh:
    """The object's own mesh (no modifiers, object space) as a texture request sends it; `uv_layer`:
    the UV layer whose UVs go with it ('' for none). Raises TextureMeshError."""
    me = ob.data
    n_vertices, n_loops, n_polygons = len(me.vertices), len(me.loops), len(me.polygons)
    me.calc_loop_triangles()
    n_triangles = len(me.loop_triangles)
    check_counts(ob.name, n_vertices, n_polygons, n_triangles)
    vertices = np.empty(n_vertices * 3, np.float32)
    position = me.attributes.get("position")
    if position is not None and position.data_type == "FLOAT_VECTOR":
        position.data.foreach_get("vector", vertices)  # a plain copy (vertices' "co" goes one by one)
    else:
        me.vertices.foreach_get("co", vertices)
    if not np.isfinite(vertices).all():
        raise TextureMeshError(f"'{ob.name}' has vertices at infinite or undefined positions: fix them first")
    tri_vertices = np.empty(n_triangles * 3, np.int32)
    tri_loops = np.empty(n_triangles * 3, np.int32)
    me.loop_triangles.foreach_get("vertices", tri_vertices)
    me.loop_triangles.foreach_get("loops", tri_loops)
    faces, tri_loops = triangles(tri_vertices, tri_loops, n_vertices, n_loops)
    uvs = None
    if uv_layer:
        if me.uv_layers.get(uv_layer) is None:
            raise TextureMeshError(f"'{ob.name}' has no UV map '{uv_layer}'")
        uvs = corner_uvs(_read_uvs(me, uv_layer, n_loops), tri_loops)
    normals = np.empty(n_vertices * 3, np.float32)
    if hasattr(me, "vertex_normals"):
        me.vertex_normals.foreach_get("vector", normals)
    else:  # pragma: no cover - before Blender 4.1
        me.vertices.foreach_get("normal", normals)
    return TextureMesh(vertices=vertices.reshape(-1, 3), faces=faces, tri_loops=tri_loops, n_loops=n_loops,
                       n_polygons=n_polygons, uvs=uvs, normals=normals.reshape(-1, 3), uv_layer=uv_layer)


def _read_uvs(me, name: str, n_loops: int) -> np.ndarray:
    out = np.empty(n_loops * 2, np.float32)
    attribute = me.attributes.get(name)
    if attribute is not None and attribute.data_type == "FLOAT2" and attribute.domain == "CORNER":
        attribute.data.foreach_get("vector", out)  # a plain copy; the UV layer's "uv" goes loop by loop
    else:
        me.uv_layers[name].data.foreach_get("uv", out)
    return out.reshape(-1, 2)


def shape_warning(ob, depsgraph, mesh: TextureMesh) -> str:
    """A warning ('' for none) when what the viewport shows (modifiers, shape keys) is not the base
    mesh the texture is painted on."""
    evaluated = ob.evaluated_get(depsgraph).data
    if not isinstance(evaluated, bpy.types.Mesh):
        return modifier_warning(ob.name)
    positions = np.empty(len(evaluated.vertices) * 3, np.float32)
    position = evaluated.attributes.get("position")
    if position is not None and position.data_type == "FLOAT_VECTOR":
        position.data.foreach_get("vector", positions)
    else:
        evaluated.vertices.foreach_get("co", positions)
    if shape_differs(len(mesh.vertices), bounds(mesh.vertices), len(evaluated.vertices), bounds(positions)):
        return modifier_warning(ob.name)
    return ""


# -- painting ----------------------------------------------------------------------------------------


def paint(job: Job, effect) -> None:
    """Carry out a `PaintTexture`; all or nothing: on an error the object is put back first."""
    try:
        name = _paint(job, effect)
    except (TextureTargetError, TextureMeshError, ValueError, RuntimeError, MemoryError, TypeError,
            KeyError, IndexError) as exc:
        traceback.print_exc()
        revert(job)
        job.texture_failed(str(exc), effect.final)
        return
    if name is not None:
        job.texture_painted(name, effect.final)


def _paint(job: Job, effect) -> str | None:
    request = job.request
    ob = target(request.object_uid)
    if ob is None or ob.type != "MESH":
        raise TextureTargetError(f"the object '{request.object_name}' was deleted while its texture was painted")
    me = ob.data
    if effect.final:
        if me.is_editmode:  # the edit mesh would overwrite what is written into the mesh now
            job.texture_waiting(effect, f"The texture is ready: leave Edit Mode on '{ob.name}' to put it on")
            return None
        if (len(me.loops), len(me.polygons)) != (request.mesh.n_loops, request.mesh.n_polygons):
            raise TextureTargetError(f"the mesh of '{ob.name}' changed while it was textured (faces were added or "
                                     "removed), so the texture no longer fits it")
    if job.edit is None:
        job.edit = TextureEdit(object_uid=request.object_uid)
    edit: TextureEdit = job.edit
    image = _update_image(job, edit, effect)
    uv_name = request.mesh.uv_layer
    if effect.uvs is not None and not me.is_editmode:  # new UVs: with the first preview and the result
        # (In Edit Mode a preview's UVs are skipped: leaving it would overwrite them; the result,
        # which waits for Edit Mode to end, brings them again.)
        uv_name = edit.uv_written = _write_uvs(job, ob, edit, effect.uvs)
    elif edit.uv_written:
        uv_name = edit.uv_written
    material = _material(ob, edit, request.material)
    _wire(material, edit, image, uv_name)
    if effect.final:
        _finish(ob, edit, image, effect, uv_name)
    return image.name


def _update_image(job: Job, edit: TextureEdit, effect):
    image = bpy.data.images.get(edit.image) if edit.image else None
    pixels = np.asarray(effect.pixels)
    height, width = pixels.shape[:2]
    if effect.final:
        if image is None:
            image = _tagged(job, edit, importer.packed_image(effect.image_name, pixels))
        else:
            # Packed as a TGA file (as generated meshes' textures are): no PNG encoding on the main thread.
            data = tga_bytes(pixels)
            image.pack(data=data, data_len=len(data))
            image.source = "FILE"  # Blender decodes the packed file (full size) instead of the preview's pixels
    else:
        if image is None:
            image = bpy.data.images.new(texture_image_name(job.request.object_name), width, height, alpha=False)
            _srgb(image)  # before the pixels: a colour space change regenerates a generated image's pixels
            _tagged(job, edit, image)
        elif tuple(image.size) != (width, height):
            image.scale(width, height)
        image.pixels.foreach_set(blender_pixels(pixels))
        image.update_tag()
        return image
    _srgb(image)
    return image


def _srgb(image) -> None:
    """8-bit sRGB colours: what the backend paints and the material shows (Blender's default for
    byte images; set in case a colour management config says otherwise)."""
    if image.colorspace_settings.name != "sRGB":
        image.colorspace_settings.name = "sRGB"


def _tagged(job: Job, edit: TextureEdit, image):
    """A new image of the job's: recorded, and tagged (a revert removes only the job's own image)."""
    edit.image = image.name
    image[IMAGE_TAG] = job.id or ""
    return image


def _write_uvs(job: Job, ob, edit: TextureEdit, uvs) -> str:
    """The backend's per-corner UVs into the 'Lift3D UV' layer (new, or the one a previous texture
    job made for this object, whose data is kept for a revert); the mesh's other layers are not
    touched."""
    me, mesh = ob.data, job.request.mesh
    per_loop, disagreeing = loop_uvs(uvs, mesh.tri_loops, mesh.n_loops)
    if disagreeing:
        job.warnings.append(f"{disagreeing:,} polygon corners got different UVs from the triangles that share them "
                            "(the backend's unwrap cut seams through polygons): the texture may show seams there. "
                            "To avoid it, give the mesh overlap-free UVs inside 0..1 (e.g. Smart UV Project), "
                            "which are kept, or triangulate it first")
    ours = edit.uv_layer_created or (UV_LAYER if ob.get("lift3d_texture_uv") == UV_LAYER else "")
    layer = me.uv_layers.get(ours) if ours else None
    if layer is None:
        layer = me.uv_layers.new(name=UV_LAYER, do_init=False)
        if layer is None:
            raise TextureTargetError(f"'{me.name}' already has {len(me.uv_layers)} UV maps (Blender's limit) and the "
                                     "backend made new UVs: remove a UV map, or make the active one overlap-free "
                                     "inside 0..1 so the backend can keep it")
        edit.uv_layer_created = layer.name
    elif not edit.uv_layer_created and edit.uv_layer_previous is None:
        edit.uv_layer_previous = _read_uvs(me, layer.name, mesh.n_loops)
    name = layer.name
    _write_layer(me, name, per_loop)
    return name


def _write_layer(me, name: str, per_loop: np.ndarray) -> None:
    # Looked up by name each time: a kept layer reference can dangle once the mesh changes.
    attribute = me.attributes.get(name)
    if attribute is not None and attribute.data_type == "FLOAT2" and attribute.domain == "CORNER":
        attribute.data.foreach_set("vector", per_loop.ravel())
    else:
        me.uv_layers[name].data.foreach_set("uv", per_loop.ravel())
    me.update()


def _material(ob, edit: TextureEdit, mode: str):
    """The material the image goes into, decided at the first paint and recorded."""
    if edit.material:
        material = bpy.data.materials.get(edit.material)
        if material is None:
            raise TextureTargetError(f"the material '{edit.material}' was removed while the texture was painted")
        return material
    if mode == "ACTIVE":
        material = ob.active_material
        if material is None or principled(material) is None:
            raise TextureTargetError(target_reason(ob, mode) or f"'{ob.name}' has no material to paint into")
        edit.material = material.name
        return material
    slots = ob.material_slots
    index = ob.active_material_index if len(slots) else 0
    current = slots[index].material if len(slots) else None
    if current is not None and current.get(MATERIAL_TAG) and current.users == 1:
        edit.material = current.name  # this object's previous Texture Selected material: painted again
        return current
    material = bpy.data.materials.new(f"Lift3D {ob.name}")
    edit.material, edit.material_created = material.name, True
    material[MATERIAL_TAG] = True
    if material.node_tree is None:  # Blender < 5.0 creates the tree on demand
        material.use_nodes = True
    if principled(material) is None:
        importer._fresh_principled(material)
    bsdf = principled(material)
    bsdf.inputs["Roughness"].default_value = importer.ROUGHNESS
    if len(slots):
        edit.slot, edit.slot_previous = index, current.name if current is not None else None
        slots[index].material = material
    else:
        ob.data.materials.append(material)
        edit.slot, edit.slot_added = 0, True
    return material


def _wire(material, edit: TextureEdit, image, uv_name: str) -> None:
    """Image Texture (named 'Lift3D Texture') → the Principled BSDF's Base Color, with a UV Map node
    naming `uv_name` when there is one. Idempotent; what it replaces is recorded once."""
    bsdf = principled(material)
    if bsdf is None:
        raise TextureTargetError(f"the material '{material.name}' no longer has a Principled BSDF")
    nodes, links = material.node_tree.nodes, material.node_tree.links
    tex = nodes.get(IMAGE_NODE)
    if tex is not None and tex.type != "TEX_IMAGE":
        tex = None
    if tex is None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.name = tex.label = IMAGE_NODE
        tex.location = (bsdf.location.x - 360, bsdf.location.y)
        edit.nodes_created.append(tex.name)
    elif not edit.node_image_recorded:
        edit.node_image_previous = tex.image.name if tex.image is not None else None
        edit.node_image_recorded = True
    if tex.image != image:
        tex.image = image
    base = bsdf.inputs["Base Color"]
    if not any(link.from_node == tex for link in base.links):
        if not edit.base_color_recorded:
            edit.base_color_previous = ((base.links[0].from_node.name, base.links[0].from_socket.identifier)
                                        if base.is_linked else None)
            edit.base_color_recorded = True
        for link in list(base.links):
            links.remove(link)
        links.new(tex.outputs["Color"], base)
    if not uv_name:
        return
    uv = nodes.get(UV_NODE)
    if uv is not None and uv.type != "UVMAP":
        uv = None
    if uv is None:
        uv = nodes.new("ShaderNodeUVMap")
        uv.name = uv.label = UV_NODE
        uv.location = (tex.location.x - 220, tex.location.y - 120)
        edit.nodes_created.append(uv.name)
    elif not edit.uv_map_recorded:
        edit.uv_map_previous, edit.uv_map_recorded = uv.uv_map, True
    if uv.uv_map != uv_name:
        uv.uv_map = uv_name
    vector = tex.inputs["Vector"]
    if not any(link.from_node == uv for link in vector.links):
        links.new(uv.outputs["UV"], vector)


def _finish(ob, edit: TextureEdit, image, effect, uv_name: str) -> None:
    """The result is on the object: the previous Lift3D texture it replaced goes, the image takes its
    name, and the object remembers what made it (for Regenerate)."""
    previous = bpy.data.images.get(edit.node_image_previous) if edit.node_image_previous else None
    if previous is not None and previous != image and previous.get(IMAGE_TAG) is not None and previous.users == 0:
        bpy.data.images.remove(previous)
    replaced = bpy.data.materials.get(edit.slot_previous) if edit.slot_previous else None
    if replaced is not None and replaced.users == 0:
        replaced.use_fake_user = True  # unused now, it would not be saved: the artist may want it back
    if image.name != effect.image_name and effect.image_name not in bpy.data.images:
        image.name = effect.image_name
    edit.image = image.name
    properties = {**(effect.properties or {}), "lift3d_texture_uv": uv_name or "", "lift3d_texture_image": image.name}
    edit.properties_previous = {key: ob.get(key, _MISSING) for key in properties}
    for key, value in properties.items():
        ob[key] = value


# -- putting the object back -------------------------------------------------------------------------


def revert(job: Job) -> None:
    """Undo everything the job changed (a cancelled or failed texture job); each step on its own, so
    one that cannot be undone (the artist deleted the material meanwhile) does not stop the rest."""
    edit: TextureEdit | None = job.edit
    job.edit = None
    if edit is None:
        return
    ob = target(edit.object_uid)
    material = bpy.data.materials.get(edit.material) if edit.material else None
    for step in (_revert_nodes, _revert_slot, _revert_datablocks, _revert_uvs, _revert_properties):
        try:
            step(job, edit, ob, material)
        except (ReferenceError, RuntimeError, ValueError, KeyError, IndexError, TypeError):
            traceback.print_exc()
            print(f"Lift3D: could not fully put '{job.request.object_name}' back ({step.__name__})")


def _revert_nodes(job: Job, edit: TextureEdit, ob, material) -> None:
    if material is None or material.node_tree is None:
        return
    nodes, links = material.node_tree.nodes, material.node_tree.links
    if edit.uv_map_recorded and nodes.get(UV_NODE) is not None:
        nodes[UV_NODE].uv_map = edit.uv_map_previous
    if edit.node_image_recorded and nodes.get(IMAGE_NODE) is not None:
        previous = edit.node_image_previous
        nodes[IMAGE_NODE].image = bpy.data.images.get(previous) if previous else None
    for name in edit.nodes_created:
        if nodes.get(name) is not None:
            nodes.remove(nodes[name])
    if edit.base_color_previous is not None:
        bsdf = principled(material)
        node_name, identifier = edit.base_color_previous
        source = nodes.get(node_name)
        output = next((s for s in source.outputs if s.identifier == identifier), None) if source else None
        if bsdf is not None and output is not None:
            base = bsdf.inputs["Base Color"]
            for link in list(base.links):
                links.remove(link)
            links.new(output, base)


def _revert_slot(job: Job, edit: TextureEdit, ob, material) -> None:
    if ob is None or edit.slot is None or material is None:
        return
    if edit.slot_added:
        materials = ob.data.materials
        index = next((i for i, m in enumerate(materials) if m == material), None)
        if index is not None:
            materials.pop(index=index)
    elif edit.slot < len(ob.material_slots) and ob.material_slots[edit.slot].material == material:
        previous = edit.slot_previous
        ob.material_slots[edit.slot].material = bpy.data.materials.get(previous) if previous else None


def _revert_datablocks(job: Job, edit: TextureEdit, ob, material) -> None:
    if edit.material_created and material is not None and material.users == 0:
        bpy.data.materials.remove(material)
    image = bpy.data.images.get(edit.image) if edit.image else None
    if image is not None and image.get(IMAGE_TAG) == (job.id or ""):
        bpy.data.images.remove(image)


def _revert_uvs(job: Job, edit: TextureEdit, ob, material) -> None:
    if ob is None:
        return
    me = ob.data
    if edit.uv_layer_created and me.uv_layers.get(edit.uv_layer_created) is not None:
        me.uv_layers.remove(me.uv_layers[edit.uv_layer_created])
    if edit.uv_layer_previous is not None and me.uv_layers.get(UV_LAYER) is not None \
            and len(me.loops) == len(edit.uv_layer_previous):
        _write_layer(me, UV_LAYER, edit.uv_layer_previous)


def _revert_properties(job: Job, edit: TextureEdit, ob, material) -> None:
    if ob is None or edit.properties_previous is None:
        return
    for key, value in edit.properties_previous.items():
        if value is _MISSING:
            if key in ob:
                del ob[key]
        else:
            ob[key] = value
