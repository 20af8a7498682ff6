"""The degraded-guidance oracle (issue 13's evidence): stand-ins that spoil the truth the way real
models do, joint (one cast and pose error for a set) or independent (one per view), and the
cross-view colour-spread metric."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.bench.degraded import Degradation, colour_spread, degrade
from backend.bench.objects import build_objects
from backend.bench.oracle import Guidance, run_variant
from backend.bench.reconstruct import held_out_cameras, render_antialiased
from backend.geometry import cameras as cm
from backend.stages.config import STANDARD

SIZE = 48
CAST_ONLY = Degradation(colour_shift=0.1, blur_px=0.0, jitter_deg=0.0, noise=0.0)


@pytest.fixture(scope="module")
def globe():
    return build_objects(texture_size=128, names=["globe"])["globe"]


def _fitted_casts(images, truth, masks):
    """Per view and channel, the (gain, offset) that maps the truth's colours onto the images."""
    casts = []
    for image, exact, mask in zip(images, truth, masks):
        inside = mask > 0.99
        view = []
        for channel in range(3):
            x, y = exact[channel][inside], image[channel][inside]
            design = torch.stack([x, torch.ones_like(x)], dim=-1)
            view.append(torch.linalg.lstsq(design, y[:, None]).solution[:, 0])
        casts.append(torch.stack(view))
    return torch.stack(casts)  # [B, 3, 2]


def test_joint_views_share_one_cast_and_independent_views_each_get_their_own(globe):
    poses = cm.six_view_poses()
    exact, masks = degrade(globe, poses, 49.1, SIZE, Degradation(0, 0, 0, 0), torch.Generator().manual_seed(0),
                           shared=True)
    joint, joint_masks = degrade(globe, poses, 49.1, SIZE, CAST_ONLY, torch.Generator().manual_seed(1), shared=True)
    apart, _ = degrade(globe, poses, 49.1, SIZE, CAST_ONLY, torch.Generator().manual_seed(1), shared=False)
    assert joint.shape == (6, 3, SIZE, SIZE) and torch.equal(joint_masks, masks)
    assert torch.all(joint[:, :, masks.sum(0) == 0] == 1.0)  # the background stays white
    joint_casts, apart_casts = _fitted_casts(joint, exact, masks), _fitted_casts(apart, exact, masks)
    assert (joint_casts - joint_casts[:1]).abs().max() < 0.02
    assert (apart_casts - apart_casts[:1]).abs().amax(dim=(1, 2))[1:].min() > 0.02
    again, _ = degrade(globe, poses, 49.1, SIZE, CAST_ONLY, torch.Generator().manual_seed(1), shared=False)
    assert torch.equal(again, apart)


def test_pose_error_blur_and_noise_each_spoil_the_views(globe):
    poses = cm.six_view_poses()
    size = 128  # the blur is 1.5 px at 256², scaled with the size
    exact, _ = degrade(globe, poses, 49.1, size, Degradation(0, 0, 0, 0), torch.Generator().manual_seed(0), shared=True)
    for spoilt in (Degradation(0, 0, 2.5, 0), Degradation(0, 1.5, 0, 0), Degradation(0, 0, 0, 0.03)):
        images, _ = degrade(globe, poses, 49.1, size, spoilt, torch.Generator().manual_seed(2), shared=False)
        error = (images - exact).abs().mean().item()
        assert 1e-3 < error < 0.1, (spoilt, error)


def test_colour_spread_is_small_for_the_truth_and_grows_with_view_dependent_colour(globe):
    cameras = held_out_cameras(SIZE)
    truth_rgb, _ = render_antialiased(globe, cameras, backgrounds=torch.ones(3))
    spread = colour_spread(globe, truth_rgb, cameras)
    tinted = truth_rgb * torch.linspace(0.8, 1.0, len(cameras)).view(-1, 1, 1, 1)
    assert 0 <= spread < 0.06 and colour_spread(globe, tinted, cameras) > spread + 0.01


def test_a_degraded_variant_runs_the_pipeline_stages_and_scores_the_spread(globe):
    geometry = replace(STANDARD.geometry, steps=8, render_sizes=(32, 32, 32), initial_gaussians=300)
    texture = replace(STANDARD.texture, steps=2, render_size=32)
    row, panels = run_variant("globe", globe, "degraded, joint views + text prior", geometry, texture, 32, 0,
                              log=lambda _: None, guidance=Guidance(Degradation(), joint_views=True, text_prior=True))
    assert row.variant == "degraded, joint views + text prior" and row.gaussians > 0
    for value in (row.gaussian_psnr, row.final_psnr, row.gaussian_spread, row.final_spread, row.truth_spread):
        assert value == value and value >= 0  # finite, not NaN
    assert len(panels) == 2
