"""Build a Blender object from the arrays of a `mesh` message, straight into `bpy.data`.

Called from a `bpy.app.timers` tick on the main thread, so it uses the data API only (no
`bpy.ops`, whose context checks fail in timers), no temporary files, and bulk `foreach_set`
writes. A failure anywhere leaves `bpy.data` as it was: every datablock created so far is removed
before the exception goes on.

The arrays are checked, placed and encoded by the bpy-free `core.mesh_arrays` (conventions
there); this module only writes them into datablocks.

Speed (100k faces, 1024² texture, see `bench.py`): the texture is packed as an uncompressed TGA
built with numpy (~8 ms; Blender decodes it lazily on first use, like its glTF importer does with
embedded PNGs) instead of setting `Image.pixels` and `Image.pack()`, which PNG-encodes on the main
thread (~90 ms). The price is a larger .blend (raw pixels, about 1.5x a PNG) unless the file is
saved with compression. `Mesh.validate()` (~23 ms) is replaced by numpy checks of what could
crash Blender: out-of-range indices (rejected) and triangles repeating a vertex (dropped).
"""

from __future__ import annotations

from typing import Any, Iterable

import bpy
import numpy as np

from .core.mesh_arrays import (
    MeshArrays,
    checked_arrays,
    is_translucent,
    placed_vertices,
    tga_bytes,
    without_degenerate,
)

UV_LAYER = "UVMap"
COLOR_ATTRIBUTE = "Col"
ROUGHNESS = 0.8

__all__ = ["MeshArrays", "build_mesh_object", "copy_transform", "remove_object"]  # MeshArrays: for callers' convenience

# Blender 4.5 stores custom normals as a generic "custom_normal" attribute and accepts "free"
# normals written straight into it (one foreach_set); before that the only way in is
# `normals_split_custom_set_from_vertices`, which converts a Python sequence and computes fan
# spaces (~40 ms per 50k vertices).
FREE_NORMALS = bpy.app.version >= (4, 5, 0)
CORNER_VERT_ATTRIBUTE = ".corner_vert"  # internal (dot) name, present in 4.2 and 5.0


# --- public API ---------------------------------------------------------------------------------


def build_mesh_object(mesh: Any, *, name: str, location: Iterable[float] = (0.0, 0.0, 0.0),
                      target_size: float | None = 1.0, properties: dict | None = None,
                      collection: "bpy.types.Collection | None" = None) -> "bpy.types.Object":
    """A new object holding `mesh` (anything with the `MeshArrays` attributes), linked to
    `collection` (default: the scene's master collection).

    The vertex data is moved so the object's origin is the bottom centre of its bounding box and,
    unless `target_size` is None, scaled so its largest dimension is `target_size`; the object
    itself sits at `location` with scale 1. Each entry of `properties` becomes a custom property.
    All or nothing: on any error no datablock created here is left behind.
    """
    arrays = checked_arrays(mesh)
    created: list[bpy.types.ID] = []
    try:
        ob = _build(arrays, name, tuple(location), target_size, properties or {}, created)
        (collection or bpy.context.scene.collection).objects.link(ob)
    except BaseException:
        _remove_ids(created)
        raise
    return ob


def remove_object(ob: "bpy.types.Object") -> None:
    """Remove `ob`, then its mesh, materials and their images when nothing else uses them."""
    data = ob.data
    materials = [m for m in getattr(data, "materials", ()) if m is not None]
    images = {img for m in materials for img in _material_images(m)}
    bpy.data.objects.remove(ob)
    if isinstance(data, bpy.types.Mesh) and data.users == 0:
        bpy.data.meshes.remove(data)
    for material in materials:
        if material.users == 0:
            bpy.data.materials.remove(material)
    for image in images:
        if image.users == 0:
            bpy.data.images.remove(image)


def copy_transform(src: "bpy.types.Object", dst: "bpy.types.Object") -> None:
    """Give `dst` the location, rotation (in `src`'s rotation mode) and scale of `src`, so a
    replacement (final mesh for geometry mesh, regenerated asset for the old one) lands where the
    artist put the previous object."""
    dst.location = src.location
    dst.rotation_mode = src.rotation_mode
    dst.rotation_euler = src.rotation_euler
    dst.rotation_quaternion = src.rotation_quaternion
    dst.rotation_axis_angle = src.rotation_axis_angle
    dst.scale = src.scale


# --- building -----------------------------------------------------------------------------------


def _build(arrays: MeshArrays, name: str, location: tuple, target_size: float | None,
           properties: dict, created: list) -> "bpy.types.Object":
    """Every datablock is appended to `created` as soon as it exists, for the caller's clean-up."""
    faces = without_degenerate(arrays.faces)
    me = bpy.data.meshes.new(name)
    created.append(me)
    _fill_geometry(me, placed_vertices(arrays.vertices, target_size), faces)
    if arrays.uvs is not None:
        _set_uvs(me, arrays.uvs, faces)
    me.update(calc_edges=True)
    me.shade_smooth()
    if arrays.normals is not None:
        _set_custom_normals(me, arrays.normals)
    if arrays.vertex_colors is not None:
        _set_vertex_colors(me, arrays.vertex_colors)

    ob = bpy.data.objects.new(name, me)
    created.append(ob)
    ob.location = location
    for key, value in properties.items():
        ob[key] = value

    image = None
    if arrays.texture is not None:
        image = _new_image(ob.name, arrays.texture)
        created.append(image)
    material = bpy.data.materials.new(ob.name)
    created.append(material)
    _setup_material(material, image, with_vertex_colors=arrays.vertex_colors is not None,
                    translucent=image is not None and is_translucent(arrays.texture))
    me.materials.append(material)
    return ob


def _fill_geometry(me: "bpy.types.Mesh", vertices: np.ndarray, faces: np.ndarray) -> None:
    """vertices [V, 3] float32, faces [F, 3] int: all triangles, so loop_start = 3·i."""
    n_faces = len(faces)
    me.vertices.add(len(vertices))
    # Through the "position" attribute: a plain copy, where `vertices.foreach_set("co")` walks
    # the vertices one by one (~100x slower).
    me.attributes["position"].data.foreach_set("vector", vertices.ravel())
    me.loops.add(3 * n_faces)
    corner_verts = faces.astype(np.int32, copy=False).ravel()
    # ".corner_vert" is the storage behind `loops[i].vertex_index`; Blender's own glTF importer
    # writes it directly (0.1 ms instead of 17 ms per 100k faces). Fall back to the loop API if a
    # future version renames it.
    if me.attributes.get(CORNER_VERT_ATTRIBUTE) is not None:
        me.attributes[CORNER_VERT_ATTRIBUTE].data.foreach_set("value", corner_verts)
    else:
        me.loops.foreach_set("vertex_index", corner_verts)
    me.polygons.add(n_faces)
    me.polygons.foreach_set("loop_start", np.arange(0, 3 * n_faces, 3, dtype=np.int32))


def _set_uvs(me: "bpy.types.Mesh", uvs: np.ndarray, faces: np.ndarray) -> None:
    """Per-vertex uvs [V, 2] become per-loop uvs [3F, 2] (seams are already split vertices)."""
    me.uv_layers.new(name=UV_LAYER)
    per_loop = uvs.astype(np.float32, copy=False)[faces.ravel()]  # [3F, 2]
    # A UV map is a FLOAT2 corner attribute; writing it as one is a plain copy, where
    # `uv_layers[...].data.foreach_set("uv")` goes loop by loop (0.1 ms instead of 7 ms per 100k).
    me.attributes[UV_LAYER].data.foreach_set("vector", per_loop.ravel())


def _set_custom_normals(me: "bpy.types.Mesh", normals: np.ndarray) -> None:
    """normals [V, 3] float32|float16, one per vertex."""
    n = normals.astype(np.float32)
    if FREE_NORMALS:
        me.attributes.new("custom_normal", "FLOAT_VECTOR", "POINT")
        me.attributes["custom_normal"].data.foreach_set("vector", n.ravel())
    else:
        me.normals_split_custom_set_from_vertices(n)


def _set_vertex_colors(me: "bpy.types.Mesh", colors: np.ndarray) -> None:
    """colors [V, 3|4] uint8 sRGB into a byte colour attribute (stored as sRGB bytes, so nothing
    is lost), made the active and render colour so the viewport and the material show it."""
    me.color_attributes.new(COLOR_ATTRIBUTE, "BYTE_COLOR", "POINT")
    rgba = np.ones((len(colors), 4), np.float32)
    rgba[:, : colors.shape[1]] = colors * np.float32(1 / 255)
    # Re-looked-up by name on purpose: a kept attribute reference can dangle after the mesh
    # changes (see the crash note in tech notes §4.6).
    me.attributes[COLOR_ATTRIBUTE].data.foreach_set("color_srgb", rgba.ravel())
    me.color_attributes.active_color_name = COLOR_ATTRIBUTE
    me.attributes.default_color_name = COLOR_ATTRIBUTE


def _new_image(name: str, texture: np.ndarray) -> "bpy.types.Image":
    return packed_image(name, texture)


def packed_image(name: str, pixels: np.ndarray) -> "bpy.types.Image":
    """An sRGB image whose pixels are `pixels` ([H, W, 3|4] uint8, top row first), packed into the
    .blend as a TGA file (survives save/reopen with no file on disk). Blender decodes the packed
    file when the image is first used; the 8x8 placeholder size is replaced by the file's. Used for
    mesh textures and for Enhance Render's results. On an error nothing is left behind."""
    data = tga_bytes(pixels)
    image = bpy.data.images.new(name, width=8, height=8)
    try:
        image.pack(data=data, data_len=len(data))
        image.source = "FILE"  # same steps as Blender's glTF importer for embedded images
    except BaseException:
        bpy.data.images.remove(image)
        raise
    return image


def _setup_material(material: "bpy.types.Material", image: "bpy.types.Image | None", *,
                    with_vertex_colors: bool, translucent: bool = False) -> None:
    """Principled BSDF fed by the texture, else by the colour attribute, else plain grey."""
    if material.node_tree is None:  # Blender < 5.0 creates the tree on demand
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    # Found by type, not by name: node names follow the UI language when "new data" is translated.
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = _fresh_principled(material)
    bsdf.inputs["Roughness"].default_value = ROUGHNESS
    bsdf.inputs["Metallic"].default_value = 0.0
    if image is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.location = (bsdf.location.x - 400, bsdf.location.y)
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        if translucent:
            links.new(tex.outputs["Alpha"], bsdf.inputs["Alpha"])
    elif with_vertex_colors:
        attr = nodes.new("ShaderNodeVertexColor")  # "Color Attribute" in the UI
        attr.layer_name = COLOR_ATTRIBUTE
        attr.location = (bsdf.location.x - 300, bsdf.location.y)
        links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])


def _fresh_principled(material: "bpy.types.Material") -> "bpy.types.ShaderNodeBsdfPrincipled":
    """Principled BSDF → Material Output, for a node tree that lacks the default one."""
    nodes = material.node_tree.nodes
    nodes.clear()
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (300, 0)
    material.node_tree.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    return bsdf


def _material_images(material: "bpy.types.Material") -> list:
    if material.node_tree is None:
        return []
    return [n.image for n in material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]


def _remove_ids(ids: list) -> None:
    """Remove datablocks created by a failed build (objects first, so nothing still uses the rest)."""
    alive = [i for i in ids if i is not None]
    if alive:
        bpy.data.batch_remove(alive)
