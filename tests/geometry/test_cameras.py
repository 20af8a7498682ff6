import math

import pytest
import torch

from backend.geometry import cameras as cm


def test_front_view_looks_at_the_origin_with_z_up():
    cam = cm.reference_camera(width=64, height=48)
    assert torch.allclose(cam.centers[0], torch.tensor([0.0, -2.0, 0.0]), atol=1e-6)
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.3], [0.3, 0.0, 0.0]])
    pix, depth = cm.project_points(pts, cam)
    assert torch.allclose(pix[0, 0], torch.tensor([32.0, 24.0]), atol=1e-4)  # the target is the image centre
    assert pix[0, 1, 1] < 24.0  # world up is image up (smaller row)
    assert pix[0, 2, 0] > 32.0  # world +X is image right from the front view
    assert torch.allclose(depth[0], torch.full((3,), 2.0), atol=1e-5)


def test_look_at_is_a_rotation_even_at_the_poles():
    eye = torch.tensor([[0.0, 0.0, 3.0], [1.0, 2.0, -0.5], [0.0, 0.0, -2.0]])
    c2w = cm.look_at(eye, torch.zeros(3))
    R = c2w[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(3), atol=1e-5)
    forward = R[:, :, 2]
    assert torch.allclose(forward, -torch.nn.functional.normalize(eye, dim=-1), atol=1e-5)


def test_orbit_angles_follow_the_documented_convention():
    cams = cm.orbit_cameras([0.0, 0.0, 30.0], [0.0, 90.0, 0.0], 2.0)
    centres = cams.centers
    assert torch.allclose(centres[1], torch.tensor([2.0, 0.0, 0.0]), atol=1e-5)  # +90° azimuth → +X side
    assert torch.allclose(centres[2], torch.tensor([0.0, -2 * math.cos(math.radians(30)), 1.0]), atol=1e-5)


def test_six_view_set():
    pose = cm.six_view_poses()
    assert pose.azimuth_deg.tolist() == [30.0, 90.0, 150.0, 210.0, 270.0, 330.0]
    assert pose.elevation_deg.tolist() == [20.0, -10.0, 20.0, -10.0, 20.0, -10.0]
    cams = cm.six_view_cameras(width=32, height=32)
    assert len(cams) == 6
    elevations = torch.rad2deg(torch.asin(cams.centers[:, 2] / cams.centers.norm(dim=-1)))
    assert torch.allclose(elevations, pose.elevation_deg, atol=1e-3)


def test_relative_pose_wraps_azimuth_and_subtracts():
    ref = cm.OrbitPose(torch.tensor([10.0]), torch.tensor([170.0]), torch.tensor([2.0]))
    tgt = cm.OrbitPose(torch.tensor([-5.0, 30.0]), torch.tensor([-170.0, 160.0]), torch.tensor([2.5, 2.0]))
    rel = cm.relative_pose(ref, tgt)
    assert rel.elevation_deg.tolist() == [-15.0, 20.0]
    assert torch.allclose(rel.azimuth_deg, torch.tensor([20.0, -10.0]))
    assert rel.radius.tolist() == [0.5, 0.0]


def test_opengl_pipeline_gives_the_same_pixels():
    """Independent check: a textbook OpenGL view + projection + viewport transform must land every
    point on the same pixel as the OpenCV intrinsics."""
    cams = cm.orbit_cameras([15.0, -20.0], [40.0, 200.0], 2.5, fovy_deg=40.0, width=80, height=60)
    pts = torch.rand(50, 3) - 0.5
    pix, _ = cm.project_points(pts, cams)
    view_gl = torch.linalg.inv(cm.opencv_to_opengl(cams.camtoworlds))
    proj = cm.opengl_projection(cams.Ks, 80, 60, near=0.1, far=10.0)
    hom = torch.cat([pts, torch.ones(50, 1)], -1)
    clip = torch.einsum("cij,cjk,pk->cpi", proj, view_gl, hom)
    ndc = clip[..., :3] / clip[..., 3:]
    u = (ndc[..., 0] + 1) / 2 * 80
    v = (1 - ndc[..., 1]) / 2 * 60  # OpenGL NDC y is up; pixel rows go down
    assert torch.allclose(torch.stack([u, v], -1), pix, atol=1e-3)
    assert ((ndc[..., 2] > -1) & (ndc[..., 2] < 1)).all()
    assert torch.allclose(cm.opengl_to_opencv(cm.opencv_to_opengl(cams.camtoworlds)), cams.camtoworlds)


def test_blender_matrix_round_trip():
    cams = cm.orbit_cameras([25.0], [-60.0], 3.0)
    matrix_world = cm.opencv_viewmat_to_blender(cams.viewmats[0])
    # A Blender camera looks down its local -Z: that axis must point at the origin.
    look = -matrix_world[:3, 2]
    assert torch.allclose(look, -matrix_world[:3, 3] / matrix_world[:3, 3].norm(), atol=1e-6)
    back = cm.blender_to_opencv_viewmat(matrix_world)
    assert torch.allclose(back.float(), cams.viewmats[0], atol=1e-5)


def test_resized_keeps_the_field_of_view():
    cam = cm.reference_camera(width=256, height=256)
    small = cam.resized(64, 64)
    pts = torch.tensor([[0.2, 0.1, 0.3]])
    assert torch.allclose(cm.project_points(pts, small)[0] * 4, cm.project_points(pts, cam)[0], atol=1e-4)


@pytest.mark.parametrize("bad", [dict(elevation_deg=[100.0], azimuth_deg=[0.0]),
                                 dict(elevation_deg=[0.0, 1.0], azimuth_deg=[0.0]),
                                 dict(elevation_deg=[0.0], azimuth_deg=[0.0], radius=0.0)])
def test_bad_orbits_are_refused(bad):
    with pytest.raises(ValueError):
        cm.orbit_cameras(**bad)


@pytest.mark.blender
@pytest.mark.parametrize("fit,size,shift", [("AUTO", (64, 48), (0.0, 0.0)), ("AUTO", (40, 70), (0.1, -0.05)),
                                            ("VERTICAL", (64, 48), (0.0, 0.2)), ("HORIZONTAL", (50, 80), (-0.1, 0.0))])
def test_blender_camera_matches_blenders_own_projection(fit, size, shift):
    """Independent check against Blender's `world_to_camera_view`."""
    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix, Vector

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    data = bpy.data.cameras.new("lift3d-test-cam")
    data.lens, data.sensor_width, data.sensor_height, data.sensor_fit = 35.0, 36.0, 24.0, fit
    data.shift_x, data.shift_y = shift
    obj = bpy.data.objects.new("lift3d-test-cam", data)
    scene.collection.objects.link(obj)
    try:
        cams = cm.orbit_cameras([20.0], [35.0], 2.5)
        obj.matrix_world = Matrix(cm.opencv_viewmat_to_blender(cams.viewmats[0]).tolist())
        bpy.context.view_layer.update()
        K = cm.blender_intrinsics(data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, *size,
                                  data.shift_x, data.shift_y)
        viewmat = cm.blender_to_opencv_viewmat(torch.tensor([list(r) for r in obj.matrix_world]))
        ours = cm.Cameras(viewmat[None].float(), K[None].float(), *size)
        pts = torch.rand(20, 3) * 0.8 - 0.4
        pix, _ = cm.project_points(pts, ours)
        for p, uv in zip(pts, pix[0]):
            ndc = world_to_camera_view(scene, obj, Vector(p.tolist()))
            assert abs(ndc.x * size[0] - uv[0].item()) < 1e-3
            assert abs((1 - ndc.y) * size[1] - uv[1].item()) < 1e-3
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.cameras.remove(data)


def test_zero123_encoding_matches_polar_angles_measured_from_camera_positions():
    """Independent check: polar and azimuth angles recomputed from the cameras' positions."""
    ref = cm.OrbitPose(torch.tensor([10.0]), torch.tensor([0.0]), torch.tensor([2.0]))
    tgt = cm.OrbitPose(torch.tensor([30.0, -20.0, 0.0]), torch.tensor([45.0, 200.0, -90.0]),
                       torch.tensor([2.0, 2.5, 1.5]))
    encoding = cm.zero123_pose_encoding(cm.relative_pose(ref, tgt))

    def angles(pose):
        c = cm.cameras_from_poses(pose).centers.double()
        polar = torch.acos(c[:, 2] / c.norm(dim=-1))  # from the up axis
        azimuth = torch.atan2(c[:, 0], -c[:, 1])  # from the front view towards +X
        return polar, azimuth, c.norm(dim=-1)

    ref_polar, ref_azimuth, ref_radius = angles(ref)
    polar, azimuth, radius = angles(tgt)
    assert torch.allclose(encoding[:, 0].double(), polar - ref_polar, atol=1e-5)
    assert torch.allclose(encoding[:, 1].double(), torch.sin(azimuth - ref_azimuth), atol=1e-5)
    assert torch.allclose(encoding[:, 2].double(), torch.cos(azimuth - ref_azimuth), atol=1e-5)
    assert torch.allclose(encoding[:, 3].double(), radius - ref_radius, atol=1e-5)
    stable = cm.stable_zero123_pose_encoding(cm.relative_pose(ref, tgt), 10.0)
    assert torch.allclose(stable[:, :3], encoding[:, :3])
    assert torch.allclose(stable[:, 3].double(), ref_polar.expand(3), atol=1e-5)
