import pytest
import torch

from backend.stages.config import DRAFT, HIGH, QUALITY_CONFIGS, STANDARD
from backend.stages.losses import clip_consistency_loss, foreground_mask, pearson_depth_loss


def test_pearson_loss_ignores_the_monocular_scale_and_shift():
    rendered = torch.rand(32, 32, generator=torch.Generator().manual_seed(0)) + 1.5  # distances
    mask = torch.ones(32, 32, dtype=torch.bool)
    inverse = 3.0 - 0.7 * rendered  # any decreasing affine map of the distance: perfectly consistent
    assert pearson_depth_loss(rendered, inverse, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert pearson_depth_loss(rendered, 5 * inverse + 2, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert pearson_depth_loss(rendered, -inverse, mask).item() == pytest.approx(2.0, abs=1e-5)  # reversed


def test_pearson_loss_only_looks_inside_the_mask_and_has_a_gradient():
    rendered = torch.rand(16, 16, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    mono = torch.rand(16, 16, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:12, 4:12] = True
    loss = pearson_depth_loss(rendered, mono, mask)
    loss.backward()
    assert 0 < loss.item() < 2
    assert rendered.grad[~mask].abs().sum() == 0 and rendered.grad[mask].abs().sum() > 0


def test_pearson_loss_is_zero_without_information():
    rendered = torch.rand(16, 16, requires_grad=True)
    tiny_mask = torch.zeros(16, 16, dtype=torch.bool)
    tiny_mask[0, :3] = True
    assert pearson_depth_loss(rendered, torch.rand(16, 16), tiny_mask).item() == 0.0
    flat = pearson_depth_loss(rendered, torch.ones(16, 16), torch.ones(16, 16, dtype=torch.bool))
    assert flat.item() == 0.0
    flat.backward()  # still part of the graph, so a loss sum stays differentiable


def test_foreground_mask_and_clip_consistency():
    images = torch.ones(1, 3, 8, 8)
    images[0, :, 2:5, 2:5] = 0.2
    mask = foreground_mask(images, 1.0)
    assert mask.sum() == 9 and mask[0, 3, 3]
    unit = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    assert clip_consistency_loss(unit, unit[:1]).item() == pytest.approx((1 - (unit @ unit[:1].T)).mean().item())


def test_presets_are_replaced_instances_ordered_by_budget():
    assert QUALITY_CONFIGS == {"draft": DRAFT, "standard": STANDARD, "high": HIGH}
    assert STANDARD.geometry.steps == 500 and STANDARD.texture.steps == 50  # DreamGaussian's budget
    for field in ("steps",):
        assert getattr(DRAFT.geometry, field) < getattr(STANDARD.geometry, field) < getattr(HIGH.geometry, field)
    assert DRAFT.mesh.target_faces < STANDARD.mesh.target_faces < HIGH.mesh.target_faces
    assert DRAFT.texture.steps < STANDARD.texture.steps < HIGH.texture.steps
    # Everything not deliberately changed is shared with the standard preset.
    assert DRAFT.geometry.rgb_weight == STANDARD.geometry.rgb_weight and HIGH.geometry.optim == STANDARD.geometry.optim
