"""The framing oracle for Zero123++ v1.2: a known object rendered exactly as Zero123++ frames its
six views — fov 30°, elevations +20/−10°, azimuths 30…330° from the input, the object at the
model's own normalised size (not the input's), on grey, in a 3×2 grid — goes through the tile split
and the pseudo-view targets, and the Gaussians fitted to it must be as good on held-out views as
those fitted to our own six views (fov 49.1° at radius 2, on white). ORACLE: ground truth stands
in for the model."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from backend.bench.objects import OBJECT_RADIUS, build_objects
from backend.bench.reconstruct import held_out_cameras, psnr, render_antialiased
from backend.geometry import cameras as cm
from backend.geometry.splat import render_splats
from backend.models.multiview import ZERO123PP_BACKGROUND, ZERO123PP_FOVY_DEG, MultiViewImages, split_grid
from backend.stages.config import STANDARD
from backend.stages.geometry import PseudoViews, ReferenceTargets, optimise_gaussians
from backend.stages.guidance import pseudo_targets, zero123pp_radius

SIZE = 64
FILL = 0.85  # the oracle's "normalised size": the object's bounding ball fills 85 % of a tile's half-side
ZERO123PP_DISTANCE = OBJECT_RADIUS / (FILL * math.tan(math.radians(ZERO123PP_FOVY_DEG) / 2))
CONFIG = replace(STANDARD.geometry, steps=120, render_sizes=(SIZE, SIZE, SIZE), initial_gaussians=1000,
                 depth_weight=0.0, reference_warmup=False)


def _views(truth, poses, fovy, background):
    cameras = cm.cameras_from_poses(poses, fovy_deg=fovy, width=SIZE, height=SIZE)
    rgb, alpha = render_antialiased(truth, cameras, backgrounds=torch.full((3,), background))
    return rgb.permute(0, 3, 1, 2), alpha[..., 0]


@pytest.fixture(scope="module")
def truth():
    return build_objects(texture_size=256, names=["globe"])["globe"]


@pytest.fixture(scope="module")
def reference(truth):
    pose = cm.OrbitPose(torch.zeros(1), torch.zeros(1), torch.full((1,), cm.DEFAULT_RADIUS))
    image, alpha = _views(truth, pose, cm.ZERO123_FOVY_DEG, 1.0)
    return ReferenceTargets(image[0], (alpha[0] > 0.5).float(), torch.zeros(SIZE, SIZE))


def _zero123pp_grid(truth) -> torch.Tensor:  # → [3, 3·SIZE, 2·SIZE], as the model paints it
    poses = cm.six_view_poses(radius=ZERO123PP_DISTANCE)
    tiles, _ = _views(truth, poses, ZERO123PP_FOVY_DEG, ZERO123PP_BACKGROUND)
    return tiles.reshape(3, 2, 3, SIZE, SIZE).permute(2, 0, 3, 1, 4).reshape(3, 3 * SIZE, 2 * SIZE)


def _heldout_psnr(truth, reference, pseudo) -> float:
    gaussians = optimise_gaussians(reference, None, pseudo, CONFIG, seed=0, splat_backend="torch").gaussians
    test = held_out_cameras(SIZE)
    expected, _ = render_antialiased(truth, test, backgrounds=torch.ones(3))
    with torch.no_grad():
        got = render_splats(gaussians, test, backgrounds=torch.ones(3), backend="torch").rgb.clamp(0, 1)
    return psnr(got, expected)


def test_the_grid_round_trips_through_the_tile_split(truth):
    grid = _zero123pp_grid(truth)
    tiles, _ = _views(truth, cm.six_view_poses(radius=ZERO123PP_DISTANCE), ZERO123PP_FOVY_DEG, ZERO123PP_BACKGROUND)
    torch.testing.assert_close(split_grid(grid), tiles)


def test_the_distance_estimate_places_zero123pp_cameras(truth, reference):
    tiles, alpha = _views(truth, cm.six_view_poses(radius=ZERO123PP_DISTANCE), ZERO123PP_FOVY_DEG,
                          ZERO123PP_BACKGROUND)
    estimate = zero123pp_radius(reference.mask, (alpha > 0.5).float(), CONFIG)
    assert estimate == pytest.approx(ZERO123PP_DISTANCE, rel=0.05)
    assert zero123pp_radius(reference.mask, torch.zeros(6, SIZE, SIZE), CONFIG) == CONFIG.camera_radius


def test_gaussians_fitted_to_zero123pp_framed_views_match_our_own_six_views(truth, reference):
    views = MultiViewImages(split_grid(_zero123pp_grid(truth)), cm.six_view_poses(), ZERO123PP_FOVY_DEG,
                            ZERO123PP_BACKGROUND, own_framing=True)
    pseudo = pseudo_targets(views, reference.mask, CONFIG)
    assert pseudo.fovy_deg == ZERO123PP_FOVY_DEG and pseudo.depth is None
    assert pseudo.poses.radius[0].item() == pytest.approx(ZERO123PP_DISTANCE, rel=0.05)
    assert torch.all(pseudo.images[pseudo.masks[:, None].expand_as(pseudo.images) == 0] == 1.0)  # grey → white
    ours_poses = cm.six_view_poses(radius=cm.DEFAULT_RADIUS)
    ours_images, ours_alpha = _views(truth, ours_poses, cm.ZERO123_FOVY_DEG, 1.0)
    ours = PseudoViews(ours_images, (ours_alpha > 0.5).float(), None, ours_poses, cm.ZERO123_FOVY_DEG)
    framed, own = _heldout_psnr(truth, reference, pseudo), _heldout_psnr(truth, reference, ours)
    assert own > 20.0, f"the fit itself failed ({own:.2f} dB)"
    assert framed >= own - 1.0, f"Zero123++ framing {framed:.2f} dB vs our six views {own:.2f} dB"
