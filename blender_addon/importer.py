"""Build a Blender object from the arrays of a `mesh` message, straight into `bpy.data`.

Called from a `bpy.app.timers` tick on the main thread, so it uses the data API only (no
`bpy.ops`, whose context checks fail in timers), no temporary files, and bulk `foreach_set`
writes. A failure anywhere leaves `bpy.data` as it was: every datablock created so far is removed
before the exception goes on.

Conventions of the arrays (the project's, README "The 3D engine"): Blender's world (+Z up);
UVs per vertex with the origin at the bottom-left (seams are split vertices); the texture is an
image with row 0 at the TOP (what the backend bakes and writes into its GLB). Blender's
`Image.pixels` starts with the bottom row, so the rows are reversed on the way in.

Speed (100k faces, 1024² texture, see `bench.py`): the texture is packed as an uncompressed TGA
built with numpy (~8 ms; Blender decodes it lazily on first use, like its glTF importer does with
embedded PNGs) instead of setting `Image.pixels` and `Image.pack()`, which PNG-encodes on the main
thread (~90 ms). The price is a larger .blend (raw pixels, about 1.5x a PNG) unless the file is
saved with compression. `Mesh.validate()` (~23 ms) is replaced by numpy checks of what could
crash Blender: out-of-range indices (rejected) and triangles repeating a vertex (dropped).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Iterable

import bpy
import numpy as np

UV_LAYER = "UVMap"
COLOR_ATTRIBUTE = "Col"
ROUGHNESS = 0.8

# Blender 4.5 stores custom normals as a generic "custom_normal" attribute and accepts "free"
# normals written straight into it (one foreach_set); before that the only way in is
# `normals_split_custom_set_from_vertices`, which converts a Python sequence and computes fan
# spaces (~40 ms per 50k vertices).
FREE_NORMALS = bpy.app.version >= (4, 5, 0)
CORNER_VERT_ATTRIBUTE = ".corner_vert"  # internal (dot) name, present in 4.2 and 5.0


@dataclass
class MeshArrays:
    """The arrays of a `protocol.Mesh` message, for callers that have no message (tests, bench)."""

    vertices: np.ndarray                       # [V, 3] float32
    faces: np.ndarray                          # [F, 3] uint32 | int32
    uvs: np.ndarray | None = None              # [V, 2] float32, origin bottom-left
    normals: np.ndarray | None = None          # [V, 3] float32 | float16
    vertex_colors: np.ndarray | None = None    # [V, 3|4] uint8 sRGB
    texture: np.ndarray | None = None          # [H, W, 3|4] uint8 sRGB, row 0 = top


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
    arrays = _checked_arrays(mesh)
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


# --- input checks -------------------------------------------------------------------------------


def _checked_arrays(mesh: Any) -> MeshArrays:
    """The arrays as numpy, shapes and index ranges checked up front: Blender trusts loop vertex
    indices, so an out-of-range one would crash it rather than raise."""
    arrays = MeshArrays(**{name: _optional_array(mesh, name) for name in MeshArrays.__dataclass_fields__})
    v, f = arrays.vertices, arrays.faces
    if v is None or v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices must be a non-empty [V, 3] array, got {None if v is None else v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite values")
    if f is None or f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
        raise ValueError(f"faces must be an integer [F, 3] array, got {None if f is None else f.shape}")
    if len(f) and (int(f.min()) < 0 or int(f.max()) >= len(v)):
        raise ValueError(f"face indices span [{f.min()}, {f.max()}] but there are {len(v)} vertices")
    for name, widths in (("uvs", (2,)), ("normals", (3,)), ("vertex_colors", (3, 4))):
        a = getattr(arrays, name)
        if a is not None and (a.ndim != 2 or len(a) != len(v) or a.shape[1] not in widths):
            raise ValueError(f"{name} must be [V={len(v)}, {'|'.join(map(str, widths))}], got {a.shape}")
    if arrays.vertex_colors is not None and arrays.vertex_colors.dtype != np.uint8:
        raise ValueError(f"vertex_colors must be uint8 sRGB, got {arrays.vertex_colors.dtype}")
    t = arrays.texture
    if t is not None and (t.dtype != np.uint8 or t.ndim != 3 or t.shape[2] not in (3, 4) or 0 in t.shape
                          or max(t.shape[:2]) > 65535):  # TGA's 16-bit width and height
        raise ValueError(f"texture must be uint8 [H, W, 3|4] (sides up to 65535), got {t.dtype} {t.shape}")
    if t is not None and arrays.uvs is None:
        raise ValueError("a texture needs per-vertex uvs")
    return arrays


def _optional_array(mesh: Any, name: str) -> np.ndarray | None:
    value = getattr(mesh, name, None)
    return None if value is None else np.asarray(value)


# --- building -----------------------------------------------------------------------------------


def _build(arrays: MeshArrays, name: str, location: tuple, target_size: float | None,
           properties: dict, created: list) -> "bpy.types.Object":
    """Every datablock is appended to `created` as soon as it exists, for the caller's clean-up."""
    faces = _without_degenerate(arrays.faces)
    me = bpy.data.meshes.new(name)
    created.append(me)
    _fill_geometry(me, _placed_vertices(arrays.vertices, target_size), faces)
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
                    translucent=image is not None and _is_translucent(arrays.texture))
    me.materials.append(material)
    return ob


def _without_degenerate(faces: np.ndarray) -> np.ndarray:
    """faces [F, 3] minus triangles that use a vertex twice: Blender's edit mode cannot represent
    them (`Mesh.validate()` would delete them too, at ~20x the cost of this check)."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    degenerate = (a == b) | (b == c) | (a == c)
    return faces[~degenerate] if degenerate.any() else faces


def placement(points: np.ndarray, target_size: float | None) -> tuple[float, np.ndarray]:
    """(scale, anchor [3]) for points [N, 3]: `(points - anchor) * scale` puts the bbox bottom
    centre at the origin with the largest bbox dimension = `target_size` (scale 1 for None or a
    zero-size bbox). The live preview is placed by the same rule, so the mesh replaces it in place."""
    p = points.astype(np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    anchor = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    extent = float((hi - lo).max())
    scale = target_size / extent if target_size is not None and extent > 0 else 1.0
    return scale, anchor


def _placed_vertices(vertices: np.ndarray, target_size: float | None) -> np.ndarray:
    """[V, 3] float32 placed by `placement`."""
    scale, anchor = placement(vertices, target_size)
    return ((vertices.astype(np.float64) - anchor) * scale).astype(np.float32)


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


def _tga_bytes(texture: np.ndarray) -> bytes:
    """[H, W, 3|4] uint8 RGB(A), row 0 = top → an uncompressed true-colour TGA file. TGA stores
    BGR(A) rows bottom first (origin bottom-left, descriptor bit 5 clear), which is also the order
    of `Image.pixels`, so the rows are reversed once here."""
    h, w, c = texture.shape
    header = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, w, h, 8 * c, 8 if c == 4 else 0)
    body = texture[::-1, :, (2, 1, 0, 3)[:c]]  # [H, W, c] BGR(A), bottom row first
    return header + np.ascontiguousarray(body).tobytes()


def _new_image(name: str, texture: np.ndarray) -> "bpy.types.Image":
    """An sRGB image whose pixels are `texture`, packed into the .blend as a TGA file (survives
    save/reopen with no file on disk). Blender decodes the packed file when the image is first
    used; the 8x8 placeholder size is replaced by the file's."""
    data = _tga_bytes(texture)
    image = bpy.data.images.new(name, width=8, height=8)
    image.pack(data=data, data_len=len(data))
    image.source = "FILE"  # same steps as Blender's glTF importer for embedded images
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


def _is_translucent(texture: np.ndarray) -> bool:
    """texture [H, W, 3|4] uint8 has an alpha below 255 somewhere: only then is Alpha linked (an
    opaque asset should not pay for transparency in EEVEE; same rule as the backend's GLB)."""
    return texture.shape[2] == 4 and bool((texture[..., 3] < 255).any())


def _material_images(material: "bpy.types.Material") -> list:
    if material.node_tree is None:
        return []
    return [n.image for n in material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]


def _remove_ids(ids: list) -> None:
    """Remove datablocks created by a failed build (objects first, so nothing still uses the rest)."""
    alive = [i for i in ids if i is not None]
    if alive:
        bpy.data.batch_remove(alive)
