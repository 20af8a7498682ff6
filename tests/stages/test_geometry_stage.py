from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.geometry import gaussians as gs
from backend.geometry.cameras import OrbitPose
from backend.stages.config import STANDARD
from backend.stages.geometry import PseudoViews, ReferenceTargets, optimise_gaussians, preview_arrays, render_size


def _disc(size: int = 64) -> ReferenceTargets:
    yy, xx = np.mgrid[:size, :size]
    mask = torch.from_numpy(((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2).astype(np.float32))
    image = torch.ones(3, size, size)
    image[1:] -= 0.8 * mask  # red on white
    return ReferenceTargets(image, mask, mask * 0.5)


class CountingGuidance:
    """Records what stage 1 asks the guidance for; returns a differentiable zero-ish loss."""

    def __init__(self):
        self.calls = []

    def sds_loss(self, images, poses, step_ratio, generator):
        self.calls.append((tuple(images.shape), float(poses.elevation_deg[0]), step_ratio))
        return images.mean() * 0.0


def test_render_size_grows_with_the_steps():
    config = STANDARD.geometry
    assert [render_size(config, r) for r in (0.1, 0.29, 0.3, 0.59, 0.6, 1.0)] == [128, 128, 256, 256, 512, 512]


def test_the_reference_losses_fit_the_silhouette_and_colour():
    config = replace(STANDARD.geometry, steps=60, render_sizes=(64, 64, 64), initial_gaussians=1500,
                     reference_warmup=False, depth_weight=0.0)
    losses = optimise_gaussians(_disc(), None, None, config, seed=0, splat_backend="torch").losses
    first, last = np.mean(losses["reference rgb"][:5]), np.mean(losses["reference rgb"][-5:])
    assert last < 0.3 * first
    assert np.mean(losses["reference mask"][-5:]) < 0.3 * np.mean(losses["reference mask"][:5])
    assert "sds" not in losses and "multiview" not in losses


def test_every_term_runs_and_the_guidance_sees_novel_views_at_the_schedule():
    reference = _disc(32)
    views = torch.ones(6, 3, 32, 32)
    pseudo = PseudoViews(views, torch.zeros(6, 32, 32), torch.zeros(6, 32, 32),
                         OrbitPose(torch.tensor([20.0, -10.0] * 3), torch.arange(30.0, 360.0, 60.0), torch.full((6,), 2.0)),
                         49.1)
    guidance = CountingGuidance()
    seen = []
    config = replace(STANDARD.geometry, steps=10, render_sizes=(16, 24, 32), initial_gaussians=300,
                     reference_elevation_deg=10.0)
    result = optimise_gaussians(reference, guidance, pseudo, config, seed=1, splat_backend="torch",
                                on_step=lambda step, total, g, losses: seen.append((step, total, sorted(losses))))
    assert [s for s, _, _ in seen] == list(range(1, 11)) and all(t == 10 for _, t, _ in seen)
    assert seen[-1][2] == ["depth", "multiview", "reference mask", "reference rgb", "sds"]
    sizes = [shape[-1] for shape, _, _ in guidance.calls]
    assert sizes == [16, 16, 24, 24, 24, 32, 32, 32, 32, 32]
    assert all(-20.0 <= elevation <= 40.0 for _, elevation, _ in guidance.calls)  # reference ± 30°
    assert [round(r, 1) for _, _, r in guidance.calls] == [round(0.1 * i, 1) for i in range(1, 11)]
    assert len(result.gaussians) > 0


def test_preview_keeps_the_most_opaque_splats_in_compact_dtypes():
    g = gs.random_in_sphere(1000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        g.params["opacities"].copy_(torch.linspace(-5, 5, 1000))
    arrays = preview_arrays(g, 100)
    assert {k: v.dtype for k, v in arrays.items()} == {"positions": np.float16, "colors": np.uint8,
                                                      "opacities": np.uint8, "scales": np.float16,
                                                      "rotations": np.float16}
    assert len(arrays["positions"]) == 100 and arrays["opacities"].min() >= 250  # the top 10 % (sigmoid ≥ 0.98)
    assert len(preview_arrays(g, 5000)["positions"]) == 1000



class PullToColour:
    """A novel-view prior that wants the render to be one colour (differentiable, easy to see)."""

    def __init__(self, name, weight, colour):
        self.name, self.weight, self.colour = name, weight, torch.tensor(colour).view(1, 3, 1, 1)
        self.calls, self.values = [], []

    def loss(self, images, poses, step_ratio, generator):
        self.calls.append((tuple(images.shape), step_ratio))
        loss = ((images - self.colour) ** 2).mean()
        self.values.append(float(loss.detach()))
        return loss


def test_novel_view_priors_are_weighted_logged_and_shape_the_gaussians():
    config = replace(STANDARD.geometry, steps=30, render_sizes=(32, 32, 32), initial_gaussians=400, depth_weight=0.0)
    guidance, prior = CountingGuidance(), PullToColour("text sds", 5000.0, [0.0, 0.0, 1.0])
    base = optimise_gaussians(_disc(32), CountingGuidance(), None, config, seed=2, splat_backend="torch")
    pulled = optimise_gaussians(_disc(32), guidance, None, config, seed=2, splat_backend="torch",
                                priors=[prior, PullToColour("clip", 0.0, [0.0, 0.0, 0.0])])
    assert "text sds" not in base.losses and "clip" not in base.losses
    assert pulled.losses["text sds"] == pytest.approx([5000.0 * v for v in prior.values]) and len(prior.values) == 30
    assert pulled.losses["clip"] == [0.0] * 30  # a zero weight is logged as zero
    # The prior sees the Zero123 term's novel view, at the same step ratio.
    assert prior.calls == [(shape, ratio) for shape, _, ratio in guidance.calls]

    def blueness(gaussians):
        colours = gaussians.base_colors.detach()
        return float(colours[:, 2].mean() - colours[:, :2].mean())

    assert blueness(pulled.gaussians) > blueness(base.gaussians) + 0.05
