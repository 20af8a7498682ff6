"""Difix3D's progressive 3D update (`backend/geometry/progressive_fix.py`): schedule, pose shifting,
the store of fixed views, sampling and weighting, the fixer adapter, cancellation inside a round,
and both integrations (`fit_to_views`, stage 1's `optimise_gaussians`)."""

import threading
import time
from dataclasses import replace

import pytest
import torch

from backend.geometry import gaussians as gs
from backend.geometry.cameras import OrbitPose, orbit_cameras
from backend.geometry.optimize import FitConfig, fit_to_views
from backend.geometry.progressive_fix import (
    FixedView,
    FixedViewStore,
    FixSchedule,
    ImageFixerAdapter,
    ProgressiveFix,
    concat_poses,
    fixed_view_loss,
    nearest_pose,
    pose_subset,
    round_steps,
    shift_poses,
    uncovered_poses,
    view_angles,
    wrap_degrees,
)


def poses(*triples) -> OrbitPose:
    e, a, r = zip(*triples)
    return OrbitPose(torch.tensor(e, dtype=torch.float32), torch.tensor(a, dtype=torch.float32),
                     torch.tensor(r, dtype=torch.float32))


TRAINING = poses((0, 0, 2), (20, 30, 2), (-10, 90, 2), (20, 150, 2), (-10, 210, 2), (20, 270, 2), (-10, 330, 2))


class Recorder:
    """A fixer that records what it was given and returns a constant image (the call number / 100)."""

    def __init__(self):
        self.calls = []

    def __call__(self, renders, poses, references):
        self.calls.append((renders.clone(), poses, None if references is None else references.clone()))
        return torch.full_like(renders, len(self.calls) / 100)


def small_gaussians(seed=0):
    return gs.random_in_sphere(300, 0.4, opacity=0.5, generator=torch.Generator().manual_seed(seed))


# --- schedule ----------------------------------------------------------------------------------------

def test_round_steps_are_evenly_spaced_from_first_to_the_last_tenth():
    assert FixSchedule().round_steps(500) == [150, 250, 350, 450]
    assert round_steps(FixSchedule(first=0.2, rounds=5), 1000) == [200, 375, 550, 725, 900]
    assert round_steps(FixSchedule(first=0.4, rounds=1), 100) == [40]
    assert round_steps(FixSchedule(first=0.95, rounds=3), 100) == [95]  # after 90 %: all at `first`, merged
    short = round_steps(FixSchedule(rounds=8), 5)  # rounds that land on the same step merge
    assert short == sorted(set(short)) and all(0 <= s < 5 for s in short) and len(short) < 8
    assert round_steps(FixSchedule(), 0) == []


def test_schedule_validates_its_fields():
    for bad in (dict(first=0.0), dict(first=1.0), dict(rounds=0), dict(views=0), dict(shift=0.0), dict(shift=1.5),
                dict(weight=-1.0), dict(probability=1.5)):
        with pytest.raises(ValueError):
            FixSchedule(**bad)


# --- poses -------------------------------------------------------------------------------------------

def test_shift_moves_monotonically_toward_the_target_in_orbit_parameters():
    start, target = poses((10, 20, 2.0)), poses((50, 100, 3.0))
    fractions = [0.0, 0.5, 0.75, 0.875, 1.0]
    path = [shift_poses(start, target, f) for f in fractions]
    assert [float(p.elevation_deg) for p in path] == pytest.approx([10, 30, 40, 45, 50])
    assert [float(p.azimuth_deg) for p in path] == pytest.approx([20, 60, 80, 90, 100])
    assert [float(p.radius) for p in path] == pytest.approx([2.0, 2.5, 2.75, 2.875, 3.0])
    to_target = [float(view_angles(p, target)) for p in path]
    assert all(a > b for a, b in zip(to_target, to_target[1:])) and to_target[-1] < 1e-2


def test_azimuth_takes_the_short_way_round():
    start, target = poses((0, 170, 2)), poses((0, -170, 2))  # 20° apart across ±180°, not 340°
    half = shift_poses(start, target, 0.5)
    assert float(wrap_degrees(half.azimuth_deg)) == pytest.approx(-180.0)  # i.e. 180°, never 0°
    steps = [float(wrap_degrees(shift_poses(start, target, f).azimuth_deg - target.azimuth_deg).abs())
             for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert steps == pytest.approx([20, 15, 10, 5, 0], abs=1e-4)
    back = shift_poses(poses((0, 10, 2)), poses((0, 350, 2)), 0.5)  # and the other way
    assert float(back.azimuth_deg) == pytest.approx(0.0)


def test_targets_start_at_their_nearest_training_pose_and_approach_with_every_fix():
    fix = ProgressiveFix(FixSchedule(shift=0.5), Recorder(), TRAINING, uncovered_poses(2.0))
    nearest = nearest_pose(TRAINING, fix.target_poses)
    angles = view_angles(fix.target_poses, TRAINING)
    assert torch.allclose(angles.gather(1, nearest[:, None])[:, 0], angles.min(1).values, atol=1e-3)
    for t in range(fix.targets):
        start = pose_subset(TRAINING, int(nearest[t]))
        assert float(view_angles(fix.pose(t, 0), start)) < 1e-2  # level 0: the training pose itself
        distances = [float(view_angles(fix.pose(t, level), pose_subset(fix.target_poses, t))) for level in range(6)]
        assert all(a > b for a, b in zip(distances, distances[1:]))
        # each fix covers half of the remaining way (in orbit parameters)
        total = distances[0]
        assert distances[1] == pytest.approx(total / 2, rel=0.1) and distances[2] == pytest.approx(total / 4, rel=0.15)


def test_default_targets_and_the_paths_to_them_stay_far_from_the_benchmark_held_out_poses():
    from backend.bench.reconstruct import held_out_poses

    targets = uncovered_poses(2.0)
    assert view_angles(targets, TRAINING).min() > 40  # nothing covers them
    fix = ProgressiveFix(FixSchedule(shift=0.5), Recorder(), TRAINING, targets)
    path = concat_poses([fix.pose(t, level) for t in range(fix.targets) for level in range(1, 9)])
    assert view_angles(path, held_out_poses()).min() > 25  # an oracle never hands the fit a scored view


def test_ties_between_equally_near_training_poses_go_to_the_lower_index():
    candidates = poses((20, 150, 2), (20, 270, 2))
    assert nearest_pose(candidates, poses((45, 210, 2))).tolist() == [0]  # exactly between the two
    assert nearest_pose(candidates, poses((45, 211, 2))).tolist() == [1]


# --- rounds and the store ----------------------------------------------------------------------------

def test_a_round_fixes_renders_on_white_with_the_nearest_reference_and_stores_them():
    references = torch.stack([torch.full((3, 8, 8), i / 10) for i in range(len(TRAINING.radius))])
    fixer = Recorder()
    fix = ProgressiveFix(FixSchedule(views=2), fixer, TRAINING, uncovered_poses(2.0), references=references)
    g = small_gaussians()
    report = fix.run_round(g, width=16, step=7)
    assert [v.target for v in report.views] == [0, 1] and report.replaced == 0 and report.round == 1
    for (renders, pose, reference), view in zip(fixer.calls, report.views):
        assert renders.shape == (1, 3, 16, 16) and 0 <= renders.min() and renders.max() <= 1
        assert renders[0, :, 0, 0].tolist() == pytest.approx([1, 1, 1], abs=1e-3)  # empty corner: white background
        assert float(view_angles(pose, fix.pose(view.target, 1))) < 1e-3
        nearest = int(nearest_pose(TRAINING, pose))
        assert reference.shape == (1, 3, 16, 16)  # resized to the render
        assert reference.mean().item() == pytest.approx(nearest / 10, abs=1e-5)
    assert len(fix.store) == 2 and fix.store.get(0).step == 7 and fix.store.get(0).level == 1


def test_a_newer_fix_replaces_the_older_one_and_the_fewest_fixed_go_first():
    fixer = Recorder()
    fix = ProgressiveFix(FixSchedule(views=4), fixer, TRAINING, uncovered_poses(2.0))  # 6 targets, 4 per round
    g = small_gaussians()
    first = fix.run_round(g, width=8, step=1)
    second = fix.run_round(g, width=8, step=2)
    assert [v.target for v in first.views] == [0, 1, 2, 3]
    assert [v.target for v in second.views] == [4, 5, 0, 1]  # never fixed first, then by index
    assert second.replaced == 2 and len(fix.store) == 6
    assert fix.levels == [2, 2, 1, 1, 1, 1]
    newest = fix.store.get(0)
    assert newest.round == 2 and newest.level == 2
    assert newest.image.mean().item() == pytest.approx(0.07)  # the 7th call's image, not the 1st's
    assert float(view_angles(newest.pose, fix.pose(0, 2))) < 1e-3
    assert fix.store.get(2).round == 1  # not refixed yet: the round-1 version stays


def test_store_keeps_one_view_per_target():
    store = FixedViewStore()
    pose = poses((0, 0, 2))
    assert store.put(FixedView(3, 1, 1, 10, pose, torch.zeros(3, 4, 4))) is None
    old = store.put(FixedView(3, 2, 2, 20, pose, torch.ones(3, 4, 4)))
    assert old.level == 1 and len(store) == 1 and store.get(3).level == 2 and 3 in store and 4 not in store
    with pytest.raises(LookupError):
        FixedViewStore().sample(torch.Generator())


def test_sampling_follows_the_probability_and_the_loss_the_weight():
    fix = ProgressiveFix(FixSchedule(probability=0.3, weight=0.25, views=6), Recorder(), TRAINING, uncovered_poses(2.0))
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert fix.sample(generator) is None  # nothing fixed yet: no draw at all
    assert torch.equal(generator.get_state(), state)
    fix.run_round(small_gaussians(), width=8)
    draws = [fix.sample(generator) for _ in range(4000)]
    hits = [d for d in draws if d is not None]
    assert 0.27 < len(hits) / len(draws) < 0.33
    counts = torch.bincount(torch.tensor([d.target for d in hits]), minlength=6)
    assert counts.min() > 0.7 * len(hits) / 6  # uniform over the stored views
    never = ProgressiveFix(FixSchedule(probability=0.0), Recorder(), TRAINING, uncovered_poses(2.0))
    never.run_round(small_gaussians(), width=8)
    assert all(never.sample(generator) is None for _ in range(200))

    view = FixedView(0, 1, 1, 0, poses((0, 0, 2)), torch.full((3, 8, 8), 0.5))
    render = torch.full((8, 8, 3), 0.9, requires_grad=True)  # channels-last, like SplatRender.rgb
    assert fix.loss(render, view).item() == pytest.approx(0.25 * 0.4)
    assert fixed_view_loss(render.permute(2, 0, 1), view, 2.0, "mse").item() == pytest.approx(2.0 * 0.16)
    bigger = torch.full((3, 16, 16), 0.5)  # resolution changed since the fix: the image is resized
    assert fixed_view_loss(bigger, view, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_image_fixer_adapter_passes_references_only_to_fixers_that_use_them():
    class Fixer:
        def __init__(self, uses_reference):
            self.uses_reference, self.seen = uses_reference, []

        def fix(self, images, references=None, *, generator=None):
            self.seen.append((references, generator))
            return images * 2 - 0.5  # out of range on purpose

    renders, refs = torch.full((1, 3, 8, 8), 0.6), torch.zeros(1, 3, 8, 8)
    for uses in (True, False):
        inner = Fixer(uses)
        out = ImageFixerAdapter(inner, seed=3)(renders, poses((0, 0, 2)), refs)
        assert out.max().item() == pytest.approx(0.7)
        assert (inner.seen[0][0] is refs) == uses and isinstance(inner.seen[0][1], torch.Generator)
    clipped = ImageFixerAdapter(Fixer(False))(torch.ones(1, 3, 8, 8), poses((0, 0, 2)), None)
    assert clipped.max().item() == 1.0


# --- cancellation ------------------------------------------------------------------------------------

class SlowFixer:
    """0.2 s per view; a full round of 20 views would take 4 s."""

    def __init__(self, cancel: threading.Event, after: int):
        self.cancel, self.after, self.calls = cancel, after, 0
        self.cancelled_at = None

    def __call__(self, renders, poses, references):
        time.sleep(0.2)
        self.calls += 1
        if self.calls == self.after:
            self.cancel.set()
            self.cancelled_at = time.perf_counter()
        return renders


class Cancelled(Exception):
    pass


def test_cancelling_inside_a_round_returns_within_a_second():
    cancel = threading.Event()
    targets = concat_poses([poses((45, a, 2)) for a in range(0, 360, 18)])  # 20 targets
    fixer = SlowFixer(cancel, after=2)
    fix = ProgressiveFix(FixSchedule(views=20), fixer, TRAINING, targets)

    def check():
        if cancel.is_set():
            raise Cancelled

    with pytest.raises(Cancelled):
        fix.run_round(small_gaussians(), width=16, check=check)
    assert time.perf_counter() - fixer.cancelled_at < 1.0
    assert fixer.calls == 2 and len(fix.store) == 2 and sum(fix.levels) == 2  # state stays consistent


def test_cancelling_a_round_inside_fit_to_views_returns_within_a_second():
    cancel = threading.Event()
    targets = concat_poses([poses((45, a, 2)) for a in range(0, 360, 18)])
    fixer = SlowFixer(cancel, after=1)
    cameras = orbit_cameras([0.0, 20.0], [0.0, 90.0], 2.0, width=16, height=16)
    fix = ProgressiveFix(FixSchedule(views=20, first=0.5), fixer, poses((0, 0, 2), (20, 90, 2)), targets)
    steps_done = []

    def check():
        if cancel.is_set():
            raise Cancelled

    with pytest.raises(Cancelled):
        fit_to_views(small_gaussians(), cameras, torch.rand(2, 16, 16, 3), torch.ones(2, 16, 16),
                     FitConfig(steps=10), backend="torch", progressive=fix, check=check,
                     on_step=lambda step, loss: steps_done.append(step))
    assert time.perf_counter() - fixer.cancelled_at < 1.0
    assert steps_done == list(range(5)) and fixer.calls == 1  # the round ran before step 5


# --- integrations ------------------------------------------------------------------------------------

def test_fit_to_views_trains_on_the_fixed_views():
    """A fixer that paints every novel view red pulls the Gaussians' colour seen from the target
    poses toward red; without fixing the fit stays on its grey training images."""
    cameras = orbit_cameras([0.0, 0.0], [0.0, 180.0], 2.0, width=24, height=24)
    images, masks = torch.full((2, 24, 24, 3), 0.5), torch.zeros(2, 24, 24)
    masks[:, 6:18, 6:18] = 1
    training = poses((0, 0, 2), (0, 180, 2))
    targets = poses((60, 90, 2), (-60, 270, 2))

    def red(renders, poses, references):
        out = torch.ones_like(renders)
        out[:, 1:] = torch.where(renders[:, 1:] < 0.95, 0.0, 1.0)  # the object red, the background white
        return out

    seen = orbit_cameras([60.0, -60.0], [90.0, 270.0], 2.0, width=24, height=24)
    results = {}
    for name, progressive in (("none", None),
                              ("red", ProgressiveFix(FixSchedule(first=0.2, rounds=3, views=2, shift=1.0, weight=2.0,
                                                                 probability=0.5), red, training, targets))):
        g = gs.random_in_sphere(400, 0.3, opacity=0.5, generator=torch.Generator().manual_seed(0))
        rounds = []
        fit_to_views(g, cameras, images, masks, FitConfig(steps=60), backend="torch", progressive=progressive,
                     on_round=rounds.append)
        with torch.no_grad():
            from backend.geometry.splat import render_splats

            render = render_splats(g, seen, backgrounds=torch.ones(3), backend="torch")
        inside = render.alpha[..., 0] > 0.5
        rgb = render.rgb[inside]
        results[name] = (rgb[:, 0] - rgb[:, 1:].mean(1)).mean().item()  # redness
        if progressive is not None:
            assert [r.step for r in rounds] == [12, 33, 54] and len(progressive.store) == 2
    assert results["red"] > results["none"] + 0.1


def test_stage_one_runs_fix_rounds_and_reports_them():
    from backend.stages.config import STANDARD
    from backend.stages.geometry import PseudoViews, optimise_gaussians, progressive_fix_for
    from tests.stages.test_geometry_stage import _disc

    reference = _disc(32)
    pseudo = PseudoViews(torch.ones(6, 3, 32, 32), torch.zeros(6, 32, 32), None,
                         OrbitPose(torch.tensor([20.0, -10.0] * 3), torch.arange(30.0, 360.0, 60.0),
                                   torch.full((6,), 2.0)), 49.1)
    config = replace(STANDARD.geometry, steps=20, render_sizes=(16, 24, 32), initial_gaussians=300, depth_weight=0.0)
    fixer = Recorder()
    progressive = progressive_fix_for(reference, pseudo, config, fixer, FixSchedule(views=3, probability=1.0))
    assert progressive.references.shape == (7, 3, 32, 32) and progressive.targets == 6
    messages, steps = [], []
    result = optimise_gaussians(reference, None, pseudo, config, seed=0, splat_backend="torch",
                                on_step=lambda step, total, g, losses: steps.append(step),
                                progressive=progressive, on_fix=lambda step, total, g, msg: messages.append((step, msg)))
    assert steps == list(range(1, 21))
    assert progressive.round_steps(20) == [6, 10, 14, 18] and len(fixer.calls) == 12
    assert all(renders.shape[-1] == 32 for renders, _, _ in fixer.calls)  # the largest render size
    assert messages[0] == (6, "fixing novel views, round 1/4: view 1/3")
    assert [m for s, m in messages if s == 18][-1].startswith("fixing novel views, round 4/4: 3 views fixed")
    # probability 1: every step after the first round trains on a fixed view
    assert len(result.losses["fixed view"]) == 20 - 6

    # a target the input view already covers is dropped
    high = replace(config, reference_elevation_deg=45.0)
    covered = progressive_fix_for(reference, pseudo, high, fixer, FixSchedule(),
                                  target_poses=poses((45, 5, 2), (-40, 150, 2)))
    assert covered.targets == 1 and float(covered.target_poses.elevation_deg) == -40.0


def test_stage_one_cancels_inside_a_round():
    from backend.stages.config import STANDARD
    from backend.stages.geometry import optimise_gaussians, progressive_fix_for
    from tests.stages.test_geometry_stage import _disc

    cancel = threading.Event()
    fixer = SlowFixer(cancel, after=1)
    config = replace(STANDARD.geometry, steps=10, render_sizes=(16, 16, 16), initial_gaussians=200, depth_weight=0.0)
    targets = concat_poses([poses((45, a, 2)) for a in range(0, 360, 18)])
    progressive = progressive_fix_for(_disc(16), None, config, fixer, FixSchedule(views=20), target_poses=targets)

    def on_fix(step, total, g, message):
        if cancel.is_set():
            raise Cancelled

    with pytest.raises(Cancelled):
        optimise_gaussians(_disc(16), None, None, config, splat_backend="torch", progressive=progressive, on_fix=on_fix)
    assert time.perf_counter() - fixer.cancelled_at < 1.0 and fixer.calls == 1
