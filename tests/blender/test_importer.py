"""The mesh importer in real (headless) Blender: geometry, UVs, texture orientation and packing,
placement, normals, vertex colours, all-or-nothing failure and clean removal."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from blender_addon import importer  # noqa: E402  (needs bpy)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def octahedron(texture: np.ndarray | None = None, **extra) -> importer.MeshArrays:
    """6 vertices, 8 faces, spanning x in [-1, 1], y in [-0.5, 0.5], z in [0, 3] (largest: z, 3)."""
    vertices = np.array([[1, 0, 1.5], [-1, 0, 1.5], [0, 0.5, 1.5], [0, -0.5, 1.5], [0, 0, 3], [0, 0, 0]],
                        np.float32)
    faces = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4],
                      [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]], np.uint32)
    uvs = np.array([[0.1, 0.2], [0.9, 0.2], [0.5, 0.1], [0.5, 0.9], [0.3, 0.7], [0.7, 0.3]], np.float32)
    return importer.MeshArrays(vertices, faces, uvs=uvs, texture=texture, **extra)


def marked_texture(height: int = 4, width: int = 8) -> np.ndarray:
    """Row 0 (the image top) blue, the last row (the image bottom) red, green between, and one
    odd texel at the bottom row, column 1."""
    texture = np.zeros((height, width, 3), np.uint8)
    texture[:] = GREEN
    texture[0] = BLUE
    texture[-1] = RED
    texture[-1, 1] = (10, 20, 30)
    return texture


def datablock_counts() -> dict[str, int]:
    return {name: len(getattr(bpy.data, name)) for name in ("objects", "meshes", "materials", "images")}


def image_pixels(image) -> np.ndarray:
    pixels = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(pixels)
    return pixels


def material_nodes(ob) -> dict[str, object]:
    return {n.bl_idname: n for n in ob.data.materials[0].node_tree.nodes}


def test_geometry_and_per_loop_uvs(empty_scene):
    mesh = octahedron()
    ob = importer.build_mesh_object(mesh, name="asset")
    me = ob.data
    assert (len(me.vertices), len(me.polygons), len(me.loops)) == (6, 8, 24)
    corner_verts = np.empty(24, np.int32)
    me.loops.foreach_get("vertex_index", corner_verts)
    np.testing.assert_array_equal(corner_verts, mesh.faces.ravel())
    assert me.uv_layers.keys() == ["UVMap"]
    uvs = np.empty(48, np.float32)
    me.uv_layers["UVMap"].data.foreach_get("uv", uvs)
    np.testing.assert_array_equal(uvs.reshape(-1, 2), mesh.uvs[mesh.faces.ravel()])
    assert ob.name in empty_scene.collection.objects
    assert all(p.use_smooth for p in me.polygons)


def test_loop_api_fallback_when_the_corner_attribute_is_missing(empty_scene, monkeypatch):
    monkeypatch.setattr(importer, "CORNER_VERT_ATTRIBUTE", ".no_such_attribute")
    mesh = octahedron()
    me = importer.build_mesh_object(mesh, name="asset").data
    corner_verts = np.empty(24, np.int32)
    me.loops.foreach_get("vertex_index", corner_verts)
    np.testing.assert_array_equal(corner_verts, mesh.faces.ravel())


def test_triangles_repeating_a_vertex_are_dropped(empty_scene):
    mesh = octahedron()
    good = mesh.faces
    mesh.faces = np.concatenate([good[:3], [[0, 0, 4], [1, 2, 2]], good[3:], [[5, 3, 5]]]).astype(np.int32)
    me = importer.build_mesh_object(mesh, name="asset").data
    assert len(me.polygons) == 8
    corner_verts = np.empty(24, np.int32)
    me.loops.foreach_get("vertex_index", corner_verts)
    np.testing.assert_array_equal(corner_verts, good.ravel())
    uvs = np.empty(48, np.float32)
    me.uv_layers["UVMap"].data.foreach_get("uv", uvs)
    np.testing.assert_array_equal(uvs.reshape(-1, 2), mesh.uvs[good.ravel()])


def test_texture_is_packed_with_the_image_bottom_row_first(empty_scene):
    texture = marked_texture()
    ob = importer.build_mesh_object(octahedron(texture), name="asset")
    nodes = material_nodes(ob)
    image = nodes["ShaderNodeTexImage"].image
    assert image.name == ob.name
    assert tuple(image.size) == (8, 4)
    assert image.colorspace_settings.name == "sRGB"
    assert image.packed_file is not None
    pixels = image_pixels(image).reshape(4, 8, 4)
    # Image.pixels starts at the image bottom, which is the texture's last row (row 0 = top).
    np.testing.assert_allclose(pixels[0, 0], (1, 0, 0, 1), atol=1e-6)
    np.testing.assert_allclose(pixels[0, 1], (10 / 255, 20 / 255, 30 / 255, 1), atol=1e-6)
    np.testing.assert_allclose(pixels[-1, :, :3], np.tile((0, 0, 1), (8, 1)), atol=1e-6)
    np.testing.assert_allclose(pixels[..., :3], texture[::-1] / 255, atol=1e-6)
    bsdf = nodes["ShaderNodeBsdfPrincipled"]
    assert bsdf.inputs["Base Color"].links[0].from_node == nodes["ShaderNodeTexImage"]
    assert not bsdf.inputs["Alpha"].links  # opaque texture
    assert bsdf.inputs["Metallic"].default_value == 0.0
    assert bsdf.inputs["Roughness"].default_value == pytest.approx(importer.ROUGHNESS)


def test_packed_texture_survives_save_and_reopen(empty_scene, tmp_path):
    texture = marked_texture()
    name = importer.build_mesh_object(octahedron(texture), name="asset").name
    path = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert name not in bpy.data.objects
    bpy.ops.wm.open_mainfile(filepath=str(path))
    image = material_nodes(bpy.data.objects[name])["ShaderNodeTexImage"].image
    assert image.packed_file is not None
    assert tuple(image.size) == (8, 4)
    np.testing.assert_allclose(image_pixels(image).reshape(4, 8, 4)[..., :3], texture[::-1] / 255, atol=1e-6)


def test_translucent_texture_drives_alpha(empty_scene):
    texture = np.full((2, 2, 4), 255, np.uint8)
    texture[0, 0, 3] = 128
    ob = importer.build_mesh_object(octahedron(texture), name="asset")
    nodes = material_nodes(ob)
    assert nodes["ShaderNodeBsdfPrincipled"].inputs["Alpha"].links[0].from_node == nodes["ShaderNodeTexImage"]
    alpha = image_pixels(nodes["ShaderNodeTexImage"].image).reshape(2, 2, 4)[..., 3]
    assert alpha[1, 0] == pytest.approx(128 / 255, abs=1e-6)  # texture row 0 is the image top


@pytest.mark.parametrize("target_size, expected_height", [(2.0, 2.0), (None, 3.0)])
def test_origin_at_bottom_centre_and_scaled_to_target(empty_scene, target_size, expected_height):
    mesh = octahedron()
    mesh.vertices = mesh.vertices + np.float32([5, -7, 11])  # far from the origin
    location = (1.0, 2.0, 3.0)
    ob = importer.build_mesh_object(mesh, name="asset", location=location, target_size=target_size)
    bpy.context.view_layer.update()
    assert tuple(ob.scale) == (1, 1, 1)
    assert tuple(ob.location) == location
    local = np.empty(18, np.float32)
    ob.data.vertices.foreach_get("co", local)
    world = np.array([tuple(ob.matrix_world @ bpy_vector(p)) for p in local.reshape(-1, 3)])
    lo, hi = world.min(axis=0), world.max(axis=0)
    assert lo[2] == pytest.approx(location[2], abs=1e-6)
    np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, location[:2], atol=1e-6)
    assert (hi - lo).max() == pytest.approx(expected_height, abs=1e-5)
    assert hi[2] - lo[2] == pytest.approx(expected_height, abs=1e-5)  # z was the largest dimension


def bpy_vector(p):
    import mathutils

    return mathutils.Vector(p)


def test_custom_properties(empty_scene):
    properties = {"lift3d_prompt": "a red mug", "lift3d_seed": 42, "scale": 0.5}
    ob = importer.build_mesh_object(octahedron(), name="asset", properties=properties)
    assert (ob["lift3d_prompt"], ob["lift3d_seed"], ob["scale"]) == ("a red mug", 42, 0.5)


@pytest.mark.parametrize("free_normals", [True, False])
def test_custom_normals_from_vertices(empty_scene, monkeypatch, free_normals):
    """Both paths: the attribute written directly (Blender 4.5+) and the 4.2 API call."""
    if free_normals and bpy.app.version < (4, 5, 0):
        pytest.skip("free custom normals (the custom_normal attribute) are Blender 4.5+")
    monkeypatch.setattr(importer, "FREE_NORMALS", free_normals)
    mesh = octahedron()
    centred = mesh.vertices - mesh.vertices.mean(axis=0)
    tilted = centred / np.linalg.norm(centred, axis=1, keepdims=True) + np.float32([0.3, 0, 0])
    mesh.normals = (tilted / np.linalg.norm(tilted, axis=1, keepdims=True)).astype(np.float16)
    me = importer.build_mesh_object(mesh, name="asset").data
    assert me.has_custom_normals
    corner = np.empty(3 * len(me.loops), np.float32)
    me.corner_normals.foreach_get("vector", corner)
    np.testing.assert_allclose(corner.reshape(-1, 3), mesh.normals[mesh.faces.ravel()].astype(np.float32),
                               atol=2e-3)


def test_vertex_colours_only_get_a_colour_attribute_material(empty_scene):
    mesh = octahedron()
    mesh.uvs = None
    mesh.vertex_colors = np.array([RED, GREEN, BLUE, (10, 20, 30), (255, 255, 255), (0, 0, 0)], np.uint8)
    ob = importer.build_mesh_object(mesh, name="geometry")
    me = ob.data
    attribute = me.color_attributes["Col"]
    assert (attribute.data_type, attribute.domain) == ("BYTE_COLOR", "POINT")
    assert me.color_attributes.active_color_name == "Col"
    srgb = np.empty(24, np.float32)
    me.attributes["Col"].data.foreach_get("color_srgb", srgb)
    np.testing.assert_allclose(srgb.reshape(-1, 4)[:, :3], mesh.vertex_colors / 255, atol=1e-6)
    np.testing.assert_array_equal(srgb.reshape(-1, 4)[:, 3], 1.0)
    assert len(me.uv_layers) == 0
    nodes = material_nodes(ob)
    assert "ShaderNodeTexImage" not in nodes
    colour = nodes["ShaderNodeVertexColor"]
    assert colour.layer_name == "Col"
    assert nodes["ShaderNodeBsdfPrincipled"].inputs["Base Color"].links[0].from_node == colour
    assert len(bpy.data.images) == 0


@pytest.mark.parametrize("bad, message", [
    (dict(texture=np.zeros((4, 4), np.uint8)), "texture"),
    (dict(faces=np.array([[0, 1, 6]], np.uint32)), "face indices"),
    (dict(uvs=np.zeros((5, 2), np.float32)), "uvs"),
    (dict(vertices=np.full((6, 3), np.nan, np.float32)), "NaN"),
])
def test_bad_arrays_raise_and_create_nothing(empty_scene, bad, message):
    mesh = octahedron(marked_texture())
    for name, value in bad.items():
        setattr(mesh, name, value)
    before = datablock_counts()
    with pytest.raises(ValueError, match=message):
        importer.build_mesh_object(mesh, name="asset")
    assert datablock_counts() == before


@pytest.mark.parametrize("failing_step", ["_setup_material", "_new_image", "_set_custom_normals"])
def test_failure_midway_removes_everything_created(empty_scene, monkeypatch, failing_step):
    importer.build_mesh_object(octahedron(marked_texture()), name="existing")  # must survive
    before = datablock_counts()
    names_before = {name: set(getattr(bpy.data, name).keys()) for name in before}

    def boom(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(importer, failing_step, boom)
    mesh = octahedron(marked_texture(), normals=np.tile(np.float32([0, 0, 1]), (6, 1)))
    with pytest.raises(RuntimeError, match="injected"):
        importer.build_mesh_object(mesh, name="asset", properties={"lift3d": 1})
    assert datablock_counts() == before
    assert {name: set(getattr(bpy.data, name).keys()) for name in before} == names_before


def test_unsupported_property_value_rolls_back(empty_scene):
    before = datablock_counts()
    with pytest.raises(TypeError):
        importer.build_mesh_object(octahedron(marked_texture()), name="asset", properties={"bad": object()})
    assert datablock_counts() == before


def test_remove_object_leaves_no_orphans(empty_scene):
    before = datablock_counts()
    ob = importer.build_mesh_object(octahedron(marked_texture()), name="asset")
    assert datablock_counts() == {k: v + 1 for k, v in before.items()}
    importer.remove_object(ob)
    assert datablock_counts() == before


def test_remove_object_keeps_shared_data(empty_scene):
    ob = importer.build_mesh_object(octahedron(marked_texture()), name="asset")
    twin = bpy.data.objects.new("twin", ob.data)  # a linked duplicate shares mesh and material
    empty_scene.collection.objects.link(twin)
    material, image = ob.data.materials[0], material_nodes(ob)["ShaderNodeTexImage"].image
    importer.remove_object(ob)
    assert twin.data.materials[0] == material
    assert image.name in bpy.data.images and material.name in bpy.data.materials


def test_copy_transform(empty_scene):
    src = importer.build_mesh_object(octahedron(), name="src")
    dst = importer.build_mesh_object(octahedron(), name="dst")
    src.location, src.rotation_mode = (1, 2, 3), "XYZ"
    src.rotation_euler, src.scale = (0.1, 0.2, 0.3), (2, 2, 2)
    importer.copy_transform(src, dst)
    assert tuple(dst.location) == tuple(src.location)
    assert dst.rotation_mode == "XYZ"
    assert tuple(dst.rotation_euler) == pytest.approx((0.1, 0.2, 0.3))
    assert tuple(dst.scale) == (2, 2, 2)
    src.rotation_mode = "QUATERNION"
    src.rotation_quaternion = (0.5, 0.5, 0.5, 0.5)
    importer.copy_transform(src, dst)
    assert dst.rotation_mode == "QUATERNION"
    assert tuple(dst.rotation_quaternion) == pytest.approx((0.5, 0.5, 0.5, 0.5))


def test_links_to_the_given_collection(empty_scene):
    collection = bpy.data.collections.new("Lift3D")
    empty_scene.collection.children.link(collection)
    ob = importer.build_mesh_object(octahedron(), name="asset", collection=collection)
    assert ob.name in collection.objects and ob.name not in empty_scene.collection.objects
