"""The live splat preview in real (headless) Blender: evaluated point clouds, in-place updates,
resizing, deterministic subsampling, colour/opacity/radius encoding, and clean-up."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from blender_addon import preview  # noqa: E402  (needs bpy)
from blender_addon.core import splat_arrays  # noqa: E402


def splats(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """positions f16, colors u8, opacities u8, scales f16: the wire dtypes of a preview message."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.3, (n, 3)).astype(np.float16), rng.integers(0, 256, (n, 3), dtype=np.uint8),
            rng.integers(0, 256, n, dtype=np.uint8), rng.uniform(0.005, 0.02, (n, 3)).astype(np.float16))


def positions_of(ob) -> np.ndarray:
    return read(ob.data, "position", "vector", 3)


def read(me, name: str, prop: str, width: int) -> np.ndarray:
    values = np.empty(len(me.vertices) * width, np.float32)
    me.attributes[name].data.foreach_get(prop, values)
    return values.reshape(len(me.vertices), width) if width > 1 else values


def evaluated_count(ob) -> int:
    """Points in the evaluated geometry (0 when there is no point cloud)."""
    geometry, points = evaluated_points(ob)
    return 0 if points is None else len(points.points)


def evaluated_points(ob):
    """The point cloud the Geometry Nodes modifier makes (the GeometrySet must stay referenced
    while its parts are used)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = ob.evaluated_get(depsgraph)
    if not hasattr(evaluated, "evaluated_geometry"):  # Blender 4.2: the cloud is an instance
        clouds = [i.object.data for i in depsgraph.object_instances
                  if i.is_instance and i.parent.original == ob and i.object.type == "POINTCLOUD"]
        return SimpleNamespace(mesh=evaluated.data), clouds[0] if clouds else None
    geometry = evaluated.evaluated_geometry()
    return geometry, geometry.pointcloud


def test_creates_a_point_cloud_with_one_point_per_splat(empty_scene):
    data = splats(1000)
    ob = preview.update_preview("job-1", *data, location=(1, 2, 3))
    assert ob.name == preview.OBJECT_NAME
    assert ob["lift3d_preview"] == "job-1"
    assert tuple(ob.location) == (1, 2, 3)
    assert ob.name in empty_scene.collection.objects
    assert ob.modifiers[0].node_group.name == preview.NODE_GROUP_NAME
    geometry, points = evaluated_points(ob)
    assert len(points.points) == 1000
    assert geometry.mesh is None or len(geometry.mesh.vertices) == 0  # all vertices became points
    assert {"radius", "Col"} <= set(points.attributes.keys())
    radius = np.empty(1000, np.float32)
    points.attributes["radius"].data.foreach_get("value", radius)
    np.testing.assert_allclose(radius, read(ob.data, "radius", "value", 1))
    assert points.materials[0].name == preview.MATERIAL_NAME
    position = np.empty(3000, np.float32)
    points.attributes["position"].data.foreach_get("vector", position)
    np.testing.assert_allclose(position.reshape(-1, 3), data[0].astype(np.float32), atol=1e-6)


def test_updates_in_place(empty_scene):
    ob = preview.update_preview("job-1", *splats(500, seed=1))
    mesh_pointer, object_pointer = ob.data.as_pointer(), ob.as_pointer()
    ob.location = (5, 0, 0)  # the artist moved it
    new = splats(500, seed=2)
    again = preview.update_preview("job-1", *new, location=(9, 9, 9))
    assert again.as_pointer() == object_pointer and again.data.as_pointer() == mesh_pointer
    assert len(bpy.data.objects) == 1 and len(bpy.data.meshes) == 1
    assert tuple(again.location) == (5, 0, 0)  # location applies on creation only
    np.testing.assert_allclose(positions_of(again), new[0].astype(np.float32), atol=1e-6)
    assert evaluated_count(again) == 500


@pytest.mark.parametrize("sizes", [(500, 800), (800, 300), (300, 0, 40)])
def test_resizes_when_the_splat_count_changes(empty_scene, sizes):
    for i, n in enumerate(sizes):
        data = splats(n, seed=i)
        ob = preview.update_preview("job-1", *data)
        assert len(ob.data.vertices) == n
        np.testing.assert_allclose(positions_of(ob), data[0].astype(np.float32), atol=1e-6)
        np.testing.assert_allclose(read(ob.data, "radius", "value", 1), splat_arrays.radii(data[3]))
        assert evaluated_count(ob) == n
    assert len(bpy.data.meshes) == 1


def test_subsamples_evenly_and_stably(empty_scene):
    data = splats(1000)
    ob = preview.update_preview("job-1", *data, max_points=300)
    assert len(ob.data.vertices) == 300
    keep = (np.arange(300) * 1000) // 300
    assert len(np.unique(keep)) == 300 and keep[0] == 0 and keep[-1] < 1000
    np.testing.assert_allclose(positions_of(ob), data[0][keep].astype(np.float32), atol=1e-6)
    first = positions_of(ob)
    preview.update_preview("job-1", *data, max_points=300)  # the same message again: same subset
    np.testing.assert_array_equal(positions_of(ob), first)
    assert evaluated_count(ob) == 300


def test_colours_are_linear_with_opacity_as_alpha(empty_scene):
    positions = np.zeros((4, 3), np.float32)
    colors = np.array([[255, 0, 128, 7], [0, 255, 0, 0], [0, 0, 255, 0], [128, 128, 128, 255]], np.uint8)
    scales = np.full((4, 3), 0.01, np.float32)
    ob = preview.update_preview("job-1", positions, colors, np.array([255, 51, 0, 128], np.uint8), scales)
    attribute = ob.data.color_attributes["Col"]
    assert (attribute.data_type, attribute.domain) == ("FLOAT_COLOR", "POINT")
    rgba = read(ob.data, "Col", "color", 4)
    srgb_128 = ((128 / 255 + 0.055) / 1.055) ** 2.4  # 0.2159: sRGB mid grey is dark in linear
    np.testing.assert_allclose(rgba[0], (1, 0, srgb_128, 1), atol=1e-6)
    # alpha is the opacity; the colour's own alpha channel is ignored
    np.testing.assert_allclose(rgba[:, 3], (1, 0.2, 0, 128 / 255), atol=1e-6)
    np.testing.assert_allclose(rgba[3, :3], srgb_128, atol=1e-6)
    # Blender agrees: its sRGB view of the same attribute gives back the bytes.
    srgb = read(ob.data, "Col", "color_srgb", 4)
    np.testing.assert_allclose(srgb[:, :3] * 255, colors[:, :3], atol=0.01)
    # float opacities are taken as 0..1 and clipped
    opacities = np.array([0.5, 1.5, -1, 0.25], np.float16)
    preview.update_preview("job-1", positions, colors[:, :3], opacities, scales)
    np.testing.assert_allclose(read(ob.data, "Col", "color", 4)[:, 3], (0.5, 1, 0, 0.25), atol=1e-6)


def test_radius_from_the_two_largest_standard_deviations(empty_scene):
    scales = np.array([[0.1, 0.1, 0.0], [0.3, 0.1, 0.2], [1e-5, 1e-5, 1e-5]], np.float32)
    ob = preview.update_preview("job-1", np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8),
                                np.full(3, 255, np.uint8), scales)
    k = splat_arrays.RADIUS_PER_STD
    np.testing.assert_allclose(read(ob.data, "radius", "value", 1), (0.1 * k, 0.25 * k, splat_arrays.MIN_RADIUS),
                               rtol=1e-6)
    assert k == pytest.approx(1.1774, abs=1e-4)


def test_two_jobs_get_two_objects_sharing_group_and_material(empty_scene):
    a = preview.update_preview("job-a", *splats(100, seed=1))
    b = preview.update_preview("job-b", *splats(200, seed=2))
    assert a != b and a.data != b.data
    assert preview.find_preview("job-a") == a and preview.find_preview("job-b") == b
    assert preview.find_preview("job-c") is None
    assert a.modifiers[0].node_group == b.modifiers[0].node_group
    assert len(bpy.data.node_groups) == 1 and len(bpy.data.materials) == 1
    assert (len(a.data.vertices), len(b.data.vertices)) == (100, 200)


def test_remove_preview_cleans_up(empty_scene):
    preview.update_preview("job-a", *splats(100))
    preview.update_preview("job-b", *splats(100))
    preview.remove_preview("job-a")
    assert preview.find_preview("job-a") is None
    assert len(bpy.data.objects) == 1 and len(bpy.data.meshes) == 1
    assert preview.NODE_GROUP_NAME in bpy.data.node_groups  # job-b still uses it
    preview.remove_preview("job-b")
    preview.remove_preview("job-b")  # removing twice is harmless
    assert (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.node_groups), len(bpy.data.materials)) \
        == (0, 0, 0, 0)


def test_recreated_after_the_artist_deletes_it(empty_scene):
    ob = preview.update_preview("job-1", *splats(100))
    bpy.data.objects.remove(ob)
    ob = preview.update_preview("job-1", *splats(100))
    assert ob["lift3d_preview"] == "job-1" and evaluated_count(ob) == 100


def test_modifier_restored_if_removed(empty_scene):
    ob = preview.update_preview("job-1", *splats(100))
    ob.modifiers.remove(ob.modifiers[0])
    preview.update_preview("job-1", *splats(100))
    assert evaluated_count(ob) == 100


@pytest.mark.parametrize("bad", [
    dict(colors=np.zeros((10, 3), np.float32)),
    dict(opacities=np.zeros(9, np.uint8)),
    dict(scales=np.zeros((10, 2), np.float32)),
    dict(positions=np.zeros((10, 2), np.float32)),
])
def test_bad_arrays_raise_before_touching_the_scene(empty_scene, bad):
    arrays = dict(zip(("positions", "colors", "opacities", "scales"), splats(10)))
    arrays.update(bad)
    with pytest.raises(ValueError):
        preview.update_preview("job-1", **arrays)
    assert len(bpy.data.objects) == 0 and len(bpy.data.meshes) == 0


def test_goes_into_the_given_collection(empty_scene):
    collection = bpy.data.collections.new("Lift3D")
    empty_scene.collection.children.link(collection)
    ob = preview.update_preview("job-1", *splats(10), collection=collection)
    assert ob.name in collection.objects and ob.name not in empty_scene.collection.objects
