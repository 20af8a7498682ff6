"""Depth alignment: a known affine-in-disparity distortion is undone on the known pixels, and the
new pixels meet the known ones without a step."""

import pytest
import torch

from backend.scene.align import (AlignmentError, aligned_depth, border_correction, first_frame_depth,
                                 fit_scale_shift)


def _slanted_depth(h=64, w=64) -> torch.Tensor:
    """A floor-like plane receding from 1.5 m at the bottom to 6 m at the top."""
    rows = torch.linspace(0, 1, h)[:, None].expand(h, w)
    return 1.5 + 4.5 * (1 - rows) ** 1.5 + 0.2 * torch.linspace(0, 1, w)[None, :]


@pytest.mark.parametrize("scale,shift", [(0.6, 0.02), (1.8, -0.05), (1.0, 0.1)])
def test_fit_recovers_a_known_affine_distortion(scale, shift):
    truth = 1.0 / _slanted_depth()
    generator = torch.Generator().manual_seed(0)
    # The model's relative disparity: the truth mapped by the inverse of (scale, shift), with 1 % noise.
    predicted = (truth - shift) / scale * (1 + 0.01 * torch.randn(truth.shape, generator=generator))
    fit = fit_scale_shift(predicted, truth, torch.ones_like(truth, dtype=torch.bool))
    assert fit.scale == pytest.approx(scale, rel=0.02)
    assert fit.shift == pytest.approx(shift, abs=0.005)
    assert not fit.scale_only and fit.residual < 0.02


def test_outliers_do_not_tilt_the_fit():
    truth = 1.0 / _slanted_depth()
    predicted = truth / 1.3
    target = truth.clone()
    target[:8] = 5.0  # a band of wrong rendered pixels (a smeared edge)
    fit = fit_scale_shift(predicted, target, torch.ones_like(truth, dtype=torch.bool))
    assert fit.scale == pytest.approx(1.3, rel=0.01)
    assert fit.inliers < 0.9


def test_a_head_on_wall_fits_a_scale_only():
    """One depth everywhere cannot tell scale from shift: the fit keeps shift 0."""
    truth = torch.full((32, 32), 1 / 2.5) * (1 + 0.001 * torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
    fit = fit_scale_shift(truth / 0.7, truth, torch.ones(32, 32, dtype=torch.bool))
    assert fit.scale_only and fit.shift == 0.0
    assert fit.scale == pytest.approx(0.7, rel=0.01)


def test_too_few_known_pixels_or_a_reversed_estimate_are_refused():
    truth = 1.0 / _slanted_depth()
    few = torch.zeros_like(truth, dtype=torch.bool)
    few[0, :10] = True
    with pytest.raises(AlignmentError, match="known pixels"):
        fit_scale_shift(truth, truth, few)
    with pytest.raises(AlignmentError, match="runs against"):
        fit_scale_shift(-truth, truth, torch.ones_like(truth, dtype=torch.bool))


def test_aligned_depth_keeps_known_pixels_and_places_new_ones():
    depth = _slanted_depth()
    truth = 1.0 / depth
    known = torch.zeros_like(depth, dtype=torch.bool)
    known[:, :40] = True
    predicted = (truth - 0.03) / 0.8
    out, fit = aligned_depth(predicted, torch.where(known, depth, 0.0), known, ~known)
    assert torch.equal(out[known], depth[known])
    assert torch.allclose(out[~known], depth[~known], rtol=0.01)
    assert fit.scale == pytest.approx(0.8, rel=0.01)


def test_the_border_correction_closes_the_step_and_fades():
    residual = torch.full((32, 64), 0.05)
    known = torch.zeros(32, 64, dtype=torch.bool)
    known[:, :32] = True
    field = border_correction(torch.where(known, residual, 0.0), known, ~known, sigma_px=4.0)
    assert field[:, :32].abs().max() == 0  # only new pixels are corrected
    assert field[:, 32].mean() == pytest.approx(0.05, rel=0.1)  # the full residual at the border
    assert field[:, 63].abs().max() < 0.005  # gone far inside the new region


def test_first_frame_depth_sets_the_median_and_caps_the_sky():
    predicted = 1.0 / _slanted_depth()
    predicted[:4] = 0.0  # sky: disparity 0
    depth = first_frame_depth(predicted, median_depth=3.0)
    assert depth[4:].median() == pytest.approx(3.0, rel=0.05)
    assert (depth[:4] == 0).all()
