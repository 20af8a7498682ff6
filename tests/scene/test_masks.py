"""Inpainting masks: they cover what the scene cannot explain from a new view (nothing rendered, or
rendered at a depth no keyframe saw) and never a well-observed pixel."""

import torch

from backend.geometry import gaussians as gs
from backend.geometry.cameras import Cameras
from backend.scene import trajectory as tr
from backend.scene.grow import render_scene
from backend.scene.masks import MaskConfig, inpaint_mask, observed, seen_by, well_observed

SIZE = 64


def _wall_scene(distance: float = 3.0) -> tuple[gs.Gaussians, Cameras, torch.Tensor]:
    """A textured wall facing the first camera at `distance`, built from that camera's depth."""
    path = tr.preset("orbit", 12)
    camera = path.cameras(SIZE, [0])
    depth = torch.full((SIZE, SIZE), distance)
    image = torch.rand(SIZE, SIZE, 3, generator=torch.Generator().manual_seed(0))
    return gs.from_depth(image, depth, torch.ones(SIZE, SIZE, dtype=torch.bool), camera, opacity=0.95), path, depth


def _observed_from(gaussians, camera, support_camera, support_depth, config=MaskConfig()):
    with torch.no_grad():
        render = render_scene(gaussians, camera, "torch")
    return observed(render.alpha[0, ..., 0], render.depth[0, ..., 0], camera, support_camera, support_depth[None],
                    support_depth[None] > 0, config).seen


def test_the_view_that_built_the_scene_needs_no_inpainting():
    gaussians, path, depth = _wall_scene()
    camera = path.cameras(SIZE, [0])
    seen = _observed_from(gaussians, camera, camera, depth)
    config = MaskConfig()
    # The image's outermost pixels are only partly covered by splats (alpha below the threshold).
    assert seen[2:-2, 2:-2].all()
    assert inpaint_mask(seen, config)[4:-4, 4:-4].sum() == 0


def test_turning_away_masks_the_unseen_side_and_never_a_well_observed_pixel():
    gaussians, path, depth = _wall_scene()
    first, turned = path.cameras(SIZE, [0]), path.cameras(SIZE, [2])  # 15° to the left
    seen = _observed_from(gaussians, turned, first, depth)
    config = MaskConfig()
    mask = inpaint_mask(seen, config)
    # Turning left brings new space in on the left; the right part still shows the wall.
    assert mask[:, :4].all()
    assert not mask[:, -16:].any()
    assert not (mask & well_observed(seen, config)).any()
    # Only a thin dilation ring of the observed pixels is covered (rows away from the wall's
    # partly covered top and bottom edges).
    ring = (mask & seen)[5:-5]
    assert ring.float().sum(dim=1).max() <= 2 * config.dilate_px + 1


def test_a_point_at_a_depth_no_keyframe_saw_is_not_observed():
    """Smeared splats across a depth edge render at in-between depths: they need inpainting."""
    path = tr.preset("orbit", 12)
    camera = path.cameras(SIZE, [0])
    depth = torch.full((1, SIZE, SIZE), 3.0)
    on_wall = torch.tensor([[0.0, 3.0, 1.6]])  # straight ahead, on the wall
    in_front = torch.tensor([[0.0, 2.0, 1.6]])  # a metre in front of it: never seen
    assert seen_by(on_wall, camera, depth, depth > 0, 0.03)[0].all()
    assert not seen_by(in_front, camera, depth, depth > 0, 0.03)[0].any()
    behind = torch.tensor([[0.0, -2.0, 1.6]])  # behind the camera
    assert not seen_by(behind, camera, depth, depth > 0, 0.03)[0].any()


def test_observed_pixels_take_the_depth_the_keyframes_stored_not_the_renders():
    """The render's expected depth sits in front of the surface (blobs are hit front first); aligning
    new keyframes to it would drift nearer keyframe after keyframe."""
    gaussians, path, depth = _wall_scene(distance=3.0)
    turned, first = path.cameras(SIZE, [1]), path.cameras(SIZE, [0])  # 7.5° to the left
    with torch.no_grad():
        render = render_scene(gaussians, turned, "torch")
    observation = observed(render.alpha[0, ..., 0], render.depth[0, ..., 0], turned, first, depth[None],
                           depth[None] > 0, MaskConfig())
    seen = observation.seen
    assert seen.float().mean() > 0.7
    # The wall is the plane y = 3 (3 m in front of the first camera): each seen pixel's depth must be
    # where its ray from the turned camera (same centre) meets that plane.
    camera = turned
    rows, cols = torch.nonzero(seen, as_tuple=True)
    K, c2w = camera.Ks[0], camera.camtoworlds[0]
    rays = torch.stack([(cols + 0.5 - K[0, 2]) / K[0, 0], (rows + 0.5 - K[1, 2]) / K[1, 1], torch.ones_like(
        rows, dtype=torch.float32)], -1) @ c2w[:3, :3].T
    true_z = (3.0 - c2w[1, 3]) / rays[:, 1]  # the camera-space depth at which each ray meets y = 3
    assert torch.allclose(observation.depth[rows, cols], true_z, rtol=1e-4)
    rendered_error = (render.depth[0, ..., 0][rows, cols] / true_z - 1).abs().mean()
    assert rendered_error > 10 * (observation.depth[rows, cols] / true_z - 1).abs().mean()


def test_specks_are_dropped_and_holes_dilated():
    seen = torch.ones(32, 32, dtype=torch.bool)
    seen[5, 5] = False  # one stray pixel
    seen[20:24, 20:24] = False  # a real hole
    mask = inpaint_mask(seen, MaskConfig(dilate_px=2, min_region_px=4))
    assert not mask[5, 5]
    assert mask[18:26, 18:26].all() and mask.sum() == 64


def test_one_pixel_seams_go_with_the_specks_and_two_pixel_gaps_stay():
    seen = torch.ones(32, 32, dtype=torch.bool)
    seen[10, 4:28] = False  # a one-pixel seam where two surfaces' splats meet
    seen[20:22, 4:28] = False  # a real two-pixel gap
    seen[0, 0:2] = False  # two pixels in the corner: outside the image counts as explained
    mask = inpaint_mask(seen, MaskConfig(dilate_px=0, min_region_px=4))
    assert not mask[10].any() and not mask[0].any()
    assert mask[20:22, 4:28].all() and mask.sum() == 48
