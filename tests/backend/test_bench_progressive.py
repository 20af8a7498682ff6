"""Progressive fixing in the reconstruction benchmark (ORACLE EVIDENCE: ground-truth renders stand in
for the fixer). Full figures: `./lift3d bench reconstruct --progressive`."""

import json
import math

import pytest
import torch

from backend.bench import reconstruct
from backend.bench.objects import build_objects
from backend.geometry import cameras as cm
from backend.geometry.optimize import FitConfig
from backend.geometry.progressive_fix import FixSchedule


@pytest.fixture(scope="module")
def checker():
    return build_objects(texture_size=128, names=["checker"])["checker"]


def test_the_oracle_returns_the_truth_at_the_requested_pose_and_the_blurring_oracle_blurs_it(checker):
    pose = cm.OrbitPose(torch.tensor([40.0]), torch.tensor([100.0]), torch.tensor([2.0]))
    noise = torch.rand(1, 3, 32, 32)
    sharp = reconstruct.OracleFixer(checker)(noise, pose, None)
    truth, _ = reconstruct.render_antialiased(checker, cm.cameras_from_poses(pose, width=32, height=32),
                                              backgrounds=reconstruct.WHITE)
    assert torch.allclose(sharp, truth.permute(0, 3, 1, 2), atol=1e-6)  # the pose decides, not the render
    blurred = reconstruct.OracleFixer(checker, sigma_px=8.0)(noise, pose, None)  # σ 1 px at 32²
    assert torch.allclose(blurred, reconstruct.gaussian_blur(sharp, 1.0), atol=1e-6)
    assert blurred.mean().item() == pytest.approx(sharp.mean().item(), abs=0.01)  # blur keeps the mean
    assert (blurred[..., 1:] - blurred[..., :-1]).abs().mean() < 0.8 * (sharp[..., 1:] - sharp[..., :-1]).abs().mean()


def test_gaussian_blur_has_the_requested_width():
    step = torch.zeros(1, 3, 1, 64)
    step[..., 32:] = 1.0
    edge = reconstruct.gaussian_blur(step.expand(1, 3, 8, 64).contiguous(), 2.0)[0, 0, 4]
    # a blurred step is the normal CDF of the distance to the edge (between pixels 31 and 32) in σ
    for i in (29, 31, 33, 35):
        expected = 0.5 * (1 + math.erf((i - 31.5) / 2.0 / math.sqrt(2)))
        assert edge[i].item() == pytest.approx(expected, abs=0.01), i
    assert torch.equal(reconstruct.gaussian_blur(step, 0.0), step)


def test_oracle_fixing_raises_the_held_out_psnr_of_a_sparse_fit():
    """ORACLE EVIDENCE of the mechanism on one object at a toy size (48², 120 steps; ~15 s): the
    same fit from the same start, without and with progressive fixing by a perfect fixer. A run
    this short gives the fixed views few steps, so the schedule starts earlier and leans on them
    harder than the benchmark's (there: +1.5 to +2.5 dB at 256², 500 steps)."""
    torus = build_objects(texture_size=128, names=["torus"])["torus"]
    schedule = FixSchedule(first=0.2, rounds=4, views=6, weight=1.0, probability=0.5)
    results = {}
    for variant in ("none", "oracle"):
        results[variant], _ = reconstruct.reconstruct_object("torus", torus, size=48, fit=FitConfig(steps=120),
                                                             mesh_config=None, initial_gaussians=800, variant=variant,
                                                             schedule=schedule, log=lambda *_: None)
    none, oracle = results["none"], results["oracle"]
    assert oracle.fix["rounds"] == 4 and oracle.fix["views_fixed"] == 24 and oracle.fix["stored_views"] == 6
    assert oracle.fix["min_angle_to_held_out_deg"] > 25  # the oracle never shows the fit a scored view
    assert not none.fix and math.isnan(none.mesh_psnr)  # mesh skipped
    # measured: 27.2 → 28.2 dB
    assert oracle.gaussian_psnr > none.gaussian_psnr + 0.5, (none.gaussian_psnr, oracle.gaussian_psnr)
    assert oracle.gaussian_iou >= none.gaussian_iou - 0.005


def _result(name, variant, gaussian_psnr, mesh_psnr):
    return reconstruct.ObjectResult(name=name, gaussians=100, train_psnr=30.0, gaussian_psnr=gaussian_psnr,
                                    gaussian_iou=0.97, mesh_psnr=mesh_psnr, mesh_iou=0.97, chamfer=0.01, fscore=0.9,
                                    mesh_faces=100, fit_s=1.0, mesh_s=1.0, variant=variant,
                                    fix={} if variant == "none" else {"rounds": 4})


def test_the_side_by_side_table_and_verdicts_are_labelled_oracle_evidence():
    results = [_result("checker", "none", 22.0, 21.5), _result("checker", "oracle", 24.0, 23.0),
               _result("checker", "blur-oracle", 21.6, 21.0),
               _result("globe", "none", 30.0, 29.0), _result("globe", "oracle", 29.9, 29.5),
               _result("globe", "blur-oracle", 29.0, 28.0)]
    table = reconstruct.format_fix_table(results)
    assert "ORACLE EVIDENCE" in table
    assert "24.00 (+2.00) / 23.00 (+1.50)" in table and "21.60 (-0.40)" in table
    verdicts = reconstruct.fix_verdicts(results)
    assert verdicts[0] == ("checker (oracle evidence): oracle +2.00 dB (raises the held-out PSNR); "
                           "blurring oracle -0.40 dB (within the 0.5 dB allowance)")
    assert "DOES NOT raise" in verdicts[1] and "OVER the 0.5 dB allowance" in verdicts[1]
    overall = reconstruct.verdicts(results, 100.0)
    assert overall[0].startswith("checker: ") and sum(line.startswith("checker") for line in overall) == 2
    assert "checker/oracle" in reconstruct.format_table(results)
    json.dumps([r.__dict__ for r in results])
