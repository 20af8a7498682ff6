"""Difix3D's progressive 3D update: at intervals during an optimisation, render poses moved part
of the way from the training poses toward the poses nothing covers, clean those renders with a
single-step fixer, and train on them as extra views with a lower weight, round after round, so the
fixed views move outward.

The schedule below is the contract (stage 1 and the reconstruction benchmark both use it); the
rounds themselves are implemented beside it:

* `round_steps(schedule, N)`: the steps at which rounds run (before that step's update);
* every target pose (a pose nothing covers) starts at its nearest training pose (angle between
  viewing directions) and each fix of it moves it `shift` of the remaining way toward the target
  in orbit parameters (elevation, azimuth along the shorter arc, radius): after k fixes it sits
  1 − (1 − shift)^k of the way;
* `ProgressiveFix.run_round` renders the next `views` targets (fewest fixes first) on white,
  hands them to the fixer with the nearest training image as reference, and stores the results
  in a `FixedViewStore` keyed by target, so a newer fix of a target replaces the older one;
  `check()` runs before every view (raise from it to cancel);
* `ProgressiveFix.sample` draws a stored view for a step with `probability`; `fixed_view_loss`
  weighs its photometric loss (render on white vs fixed image on white) by `weight`.

A fixer is any `ViewFixer`: renders [N, 3, H, W] in [0, 1] on white, their `OrbitPose`s and the
references (or None) → fixed images of the same shape. `ImageFixerAdapter` wraps the pipeline's
single-step image fixers (`backend.stages.fixing.ImageFixer`, typed structurally here so the 3D
engine never imports the model code); the reconstruction benchmark passes oracles that use the
pose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import ZERO123_FOVY_DEG, Cameras, OrbitPose, cameras_from_poses, orbit_positions
from .gaussians import Gaussians
from .splat import render_splats

LAST_ROUND = 0.9
"""The last round runs at this fraction of the steps (the final 10 % trains on its views)."""


@dataclass(frozen=True)
class FixSchedule:
    """When and how far the fix rounds go (Difix3D's gsplat trainer: a round every 2k of 60k steps,
    poses shifted 0.5 toward the targets, novel data sampled with probability 0.3 and weighted 0.3)."""

    first: float = 0.3
    """The first round runs at this fraction of the steps (the Gaussians must show the object)."""
    rounds: int = 4
    """Rounds between `first` and the last 10 % of the steps (evenly spaced)."""
    views: int = 4
    """Novel poses rendered and fixed per round."""
    shift: float = 0.5
    """Each round moves every novel pose this fraction of the remaining way from its nearest
    training pose toward its target pose (precisely: each fix of a target moves its pose; with
    more targets than `views`, a target moves in the rounds that fix it)."""
    weight: float = 0.3
    """Loss weight of a fixed view relative to a training view."""
    probability: float = 0.3
    """Chance that a step also trains on one fixed view."""

    def __post_init__(self) -> None:
        if not 0.0 < self.first < 1.0:
            raise ValueError(f"the first fix round must be inside the run (0 < first < 1), got {self.first}")
        if self.rounds < 1 or self.views < 1:
            raise ValueError(f"a fix schedule needs at least one round and one view, got {self.rounds}, {self.views}")
        if not 0.0 < self.shift <= 1.0:
            raise ValueError(f"shift must be in (0, 1], got {self.shift}")
        if self.weight < 0 or not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"weight must be >= 0 and probability in [0, 1], got {self.weight}, {self.probability}")

    def round_steps(self, total_steps: int) -> list[int]:
        """See `round_steps`."""
        return round_steps(self, total_steps)


UNCOVERED_ELEVATIONS_DEG = (45.0, 45.0, 45.0, -45.0, -45.0, -45.0)
UNCOVERED_AZIMUTHS_DEG = (90.0, 225.0, 315.0, 30.0, 165.0, 270.0)
"""Default target poses (absolute elevation, azimuth relative to the input view): three above and
three below the band the input and the six views cover (elevations −10…+20°), 45–62° from the
nearest of those seven. Picked so that every pose on the way to them (after 1–4 fixes with
shift 0.5), not just the targets, stays at least 25° from every held-out pose of the
reconstruction benchmark: an oracle fixer never hands the fit a scored view."""


def uncovered_poses(radius: float = 2.0, reference_azimuth_deg: float = 0.0) -> OrbitPose:
    """The default target poses (see `UNCOVERED_ELEVATIONS_DEG`)."""
    count = len(UNCOVERED_AZIMUTHS_DEG)
    return OrbitPose(torch.tensor(UNCOVERED_ELEVATIONS_DEG),
                     torch.tensor(UNCOVERED_AZIMUTHS_DEG) + reference_azimuth_deg,
                     torch.full((count,), float(radius)))


def round_steps(schedule: FixSchedule, total_steps: int) -> list[int]:
    """The steps (0-based, before that step's update) at which a fix round runs in a run of
    `total_steps`: `schedule.rounds` evenly spaced from `first` to `LAST_ROUND` of the run, both
    included (one round: at `first`). Rounds that would fall on the same step in a short run
    merge, so the list is strictly increasing and may be shorter than `rounds`."""
    if total_steps < 1:
        return []
    last = max(schedule.first, LAST_ROUND)
    if schedule.rounds == 1:
        fractions = [schedule.first]
    else:
        fractions = [schedule.first + i * (last - schedule.first) / (schedule.rounds - 1)
                     for i in range(schedule.rounds)]
    steps = sorted({min(max(int(round(f * total_steps)), 0), total_steps - 1) for f in fractions})
    return steps


# --- poses ----------------------------------------------------------------------------------------

def pose_count(pose: OrbitPose) -> int:
    return pose.elevation_deg.reshape(-1).shape[0]


def pose_subset(pose: OrbitPose, index: Tensor | list[int] | int) -> OrbitPose:
    index = torch.as_tensor([index] if isinstance(index, int) else index, dtype=torch.long).reshape(-1)
    return OrbitPose(pose.elevation_deg.reshape(-1)[index].float(), pose.azimuth_deg.reshape(-1)[index].float(),
                     pose.radius.reshape(-1)[index].float())


def concat_poses(poses: list[OrbitPose]) -> OrbitPose:
    return OrbitPose(torch.cat([p.elevation_deg.reshape(-1).float() for p in poses]),
                     torch.cat([p.azimuth_deg.reshape(-1).float() for p in poses]),
                     torch.cat([p.radius.reshape(-1).float() for p in poses]))


def wrap_degrees(angle: Tensor) -> Tensor:
    """Angles wrapped to [−180, 180)."""
    return torch.remainder(angle + 180.0, 360.0) - 180.0


def view_angles(a: OrbitPose, b: OrbitPose) -> Tensor:  # → [A, B] degrees
    """Angle between the viewing directions of every pose of `a` and every pose of `b`."""
    da = orbit_positions(a.elevation_deg.reshape(-1), a.azimuth_deg.reshape(-1), 1.0)
    db = orbit_positions(b.elevation_deg.reshape(-1), b.azimuth_deg.reshape(-1), 1.0)
    cross = torch.linalg.cross(da[:, None, :].expand(-1, len(db), -1), db[None, :, :].expand(len(da), -1, -1))
    return torch.rad2deg(torch.atan2(cross.norm(dim=-1), da @ db.T))  # exact near 0°, unlike acos


def nearest_pose(candidates: OrbitPose, poses: OrbitPose) -> Tensor:  # → [P] indices into candidates
    """For every pose, the candidate whose viewing direction is closest. Ties (within 0.001°, so
    symmetric layouts do not depend on rounding) go to the lower index."""
    angles = torch.round(view_angles(poses, candidates) * 1000.0)
    return angles.argmin(dim=1)  # argmin returns the first of equal minima


def shift_poses(start: OrbitPose, target: OrbitPose, fraction: Tensor | float) -> OrbitPose:
    """Poses `fraction` of the way from `start` to `target` in orbit parameters: elevation and
    radius linearly, azimuth along the shorter arc (through ±180° when that is shorter). The
    azimuth is not re-wrapped (start 170°, target −170°, half-way → 180°)."""
    f = torch.as_tensor(fraction, dtype=torch.float32)
    d_azimuth = wrap_degrees(target.azimuth_deg.float() - start.azimuth_deg.float())
    return OrbitPose(start.elevation_deg.float() + f * (target.elevation_deg.float() - start.elevation_deg.float()),
                     start.azimuth_deg.float() + f * d_azimuth,
                     start.radius.float() + f * (target.radius.float() - start.radius.float()))


def shift_fraction(shift: float, level: int | Tensor) -> Tensor:
    """How far along a target's path its pose is after `level` fixes: 1 − (1 − shift)^level."""
    return 1.0 - (1.0 - shift) ** torch.as_tensor(level, dtype=torch.float32)


# --- fixers ---------------------------------------------------------------------------------------

class ViewFixer(Protocol):
    def __call__(self, renders: Tensor, poses: OrbitPose, references: Tensor | None) -> Tensor:
        """renders [N, 3, H, W] in [0, 1] on white, seen from absolute `poses` [N]; references
        [N, 3, H, W] (the nearest training image on white) or None → fixed images [N, 3, H, W]."""
        ...


class _ImageFixer(Protocol):
    """`backend.stages.fixing.ImageFixer`, restated structurally (the 3D engine imports no model code)."""

    uses_reference: bool

    def fix(self, images: Tensor, references: Tensor | None = None, *,
            generator: torch.Generator | None = None) -> Tensor: ...


class ImageFixerAdapter:
    """A pipeline image fixer (Difix, Difix-ref, SD-Turbo) as a `ViewFixer`: the poses are not
    used; references are passed only to fixers that use them. Seeded, so runs repeat."""

    def __init__(self, fixer: _ImageFixer, *, seed: int = 0) -> None:
        self.fixer = fixer
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, renders: Tensor, poses: OrbitPose, references: Tensor | None) -> Tensor:
        use = getattr(self.fixer, "uses_reference", False) and references is not None
        fixed = self.fixer.fix(renders, references if use else None, generator=self.generator)
        return fixed.to(renders.device, renders.dtype).clamp(0.0, 1.0)


# --- fixed views ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FixedView:
    """One fixed novel view: its target, how many fixes the target has had (this one included),
    the round and step that made it, its pose and the fixed image [3, H, W] on white."""

    target: int
    level: int
    round: int
    step: int
    pose: OrbitPose  # [1]
    image: Tensor


class FixedViewStore:
    """The fixed views, one per target: a newer fix of a target replaces the older one."""

    def __init__(self) -> None:
        self._views: dict[int, FixedView] = {}

    def put(self, view: FixedView) -> FixedView | None:
        """Store `view`; returns the older view of the same target it replaced (or None)."""
        old = self._views.get(view.target)
        self._views[view.target] = view
        return old

    def get(self, target: int) -> FixedView | None:
        return self._views.get(target)

    def __len__(self) -> int:
        return len(self._views)

    def __contains__(self, target: int) -> bool:
        return target in self._views

    @property
    def views(self) -> list[FixedView]:
        """Every stored view, by target."""
        return [self._views[t] for t in sorted(self._views)]

    def sample(self, generator: torch.Generator) -> FixedView:
        """One stored view, uniformly."""
        if not self._views:
            raise LookupError("no fixed views yet")
        views = self.views
        return views[int(torch.randint(len(views), (1,), generator=generator))]


def fixed_view_loss(render: Tensor, view: FixedView, weight: float, kind: str = "l1") -> Tensor:
    """`weight` × the photometric loss between a render on white [3, H, W] (or [H, W, 3]) and the
    fixed image on white (resized to the render when the run's resolution changed)."""
    if render.ndim != 3:
        raise ValueError(f"render must be one image [3, H, W] or [H, W, 3], got {tuple(render.shape)}")
    channels_last = render.shape[-1] == 3 and render.shape[0] != 3
    rgb = render.permute(2, 0, 1) if channels_last else render
    target = view.image.to(rgb.device, rgb.dtype)
    if target.shape[-2:] != rgb.shape[-2:]:
        target = F.interpolate(target[None], rgb.shape[-2:], mode="bilinear", align_corners=False,
                               antialias=target.shape[-1] > rgb.shape[-1])[0]
    if kind == "l1":
        error = (rgb - target).abs().mean()
    elif kind == "mse":
        error = F.mse_loss(rgb, target)
    else:
        raise ValueError(f"loss kind must be l1 or mse, got {kind!r}")
    return weight * error


@dataclass
class RoundReport:
    """What one round did (for progress messages and benchmarks)."""

    round: int
    step: int
    views: list[FixedView] = field(default_factory=list)
    replaced: int = 0
    """How many of its views replaced an older fix of the same target."""
    seconds: float = 0.0


class ProgressiveFix:
    """The state of progressive fixing over one optimisation run (use one instance per run).

    `training_poses` [P] are the poses of the views the run trains on; `target_poses` [T] the
    poses nothing covers; `references` [P, 3, H, W] the training images on white (handed to the
    fixer, the one nearest each novel pose; None: no references)."""

    def __init__(self, schedule: FixSchedule, fixer: ViewFixer, training_poses: OrbitPose, target_poses: OrbitPose,
                 *, references: Tensor | None = None, fovy_deg: float = ZERO123_FOVY_DEG, seed: int = 0) -> None:
        if pose_count(training_poses) < 1 or pose_count(target_poses) < 1:
            raise ValueError("progressive fixing needs at least one training pose and one target pose")
        if references is not None and (references.ndim != 4 or references.shape[:2] != (pose_count(training_poses), 3)):
            raise ValueError(f"references must be [{pose_count(training_poses)}, 3, H, W], "
                             f"got {tuple(references.shape)}")
        self.schedule, self.fixer, self.fovy_deg = schedule, fixer, fovy_deg
        self.training_poses = pose_subset(training_poses, list(range(pose_count(training_poses))))
        self.target_poses = pose_subset(target_poses, list(range(pose_count(target_poses))))
        self.references = references
        self.starts = pose_subset(self.training_poses, nearest_pose(self.training_poses, self.target_poses))
        """Each target's nearest training pose: where its path begins."""
        self.levels = [0] * pose_count(target_poses)
        self.store = FixedViewStore()
        self.rounds_done = 0
        self.generator = torch.Generator().manual_seed(seed)
        self._steps: tuple[int, list[int]] | None = None

    @property
    def targets(self) -> int:
        return len(self.levels)

    def round_steps(self, total_steps: int) -> list[int]:
        if self._steps is None or self._steps[0] != total_steps:
            self._steps = (total_steps, round_steps(self.schedule, total_steps))
        return self._steps[1]

    def due(self, step: int, total_steps: int) -> bool:
        """Whether a round runs before `step` (0-based) of a run of `total_steps`."""
        return step in self.round_steps(total_steps)

    def pose(self, target: int, level: int) -> OrbitPose:
        """Target `target`'s pose after `level` fixes."""
        return shift_poses(pose_subset(self.starts, target), pose_subset(self.target_poses, target),
                           shift_fraction(self.schedule.shift, level))

    def next_targets(self) -> list[int]:
        """The targets the next round fixes: `views` of them, fewest fixes first (ties by index)."""
        order = sorted(range(self.targets), key=lambda t: (self.levels[t], t))
        return order[: min(self.schedule.views, self.targets)]

    def reference_for(self, pose: OrbitPose, size: tuple[int, int]) -> Tensor | None:  # → [1, 3, H, W]
        if self.references is None:
            return None
        image = self.references[int(nearest_pose(self.training_poses, pose)[0])][None].float()
        if tuple(image.shape[-2:]) != size:
            image = F.interpolate(image, size, mode="bilinear", align_corners=False, antialias=image.shape[-1] > size[1])
        return image

    def run_round(self, gaussians: Gaussians, *, width: int, height: int | None = None, step: int = 0,
                  check: Callable[[], None] | None = None, on_view: Callable[[int, int], None] | None = None,
                  backend: str = "auto") -> RoundReport:
        """Render the next targets' shifted poses on white at width × height, fix them one at a
        time and store them. `check()` runs before each view (raise to cancel: the views already
        fixed stay stored, the target levels stay consistent); `on_view(done, views)` after each."""
        started = time.perf_counter()
        height = width if height is None else height
        report = RoundReport(self.rounds_done + 1, step)
        targets = self.next_targets()
        white = torch.ones(3, device=gaussians.device)
        for done, target in enumerate(targets):
            if check is not None:
                check()
            level = self.levels[target] + 1
            pose = self.pose(target, level)
            camera = cameras_from_poses(pose, fovy_deg=self.fovy_deg, width=width, height=height)
            with torch.no_grad():
                render = render_splats(gaussians, camera, backgrounds=white, backend=backend).rgb
                render = render.permute(0, 3, 1, 2).clamp(0.0, 1.0)  # [1, 3, H, W]
                reference = self.reference_for(pose, (height, width))
                fixed = self.fixer(render, pose, None if reference is None else reference.to(render.device))
            if tuple(fixed.shape) != tuple(render.shape):
                raise ValueError(f"the fixer returned {tuple(fixed.shape)} for renders {tuple(render.shape)}")
            view = FixedView(target, level, report.round, step, pose,
                             fixed[0].detach().to(gaussians.device, torch.float32).clamp(0.0, 1.0))
            report.replaced += self.store.put(view) is not None
            self.levels[target] = level
            report.views.append(view)
            if on_view is not None:
                on_view(done + 1, len(targets))
        self.rounds_done += 1
        report.seconds = time.perf_counter() - started
        return report

    def sample(self, generator: torch.Generator) -> FixedView | None:
        """The fixed view a step also trains on, with probability `schedule.probability` once any
        exist (else None). Draws from `generator` only when views exist, so a run is unchanged
        until the first round."""
        if not len(self.store) or self.schedule.weight <= 0:
            return None
        if float(torch.rand((), generator=generator)) >= self.schedule.probability:
            return None
        return self.store.sample(generator)

    def camera(self, view: FixedView, width: int, height: int | None = None) -> Cameras:
        return cameras_from_poses(view.pose, fovy_deg=self.fovy_deg, width=width,
                                  height=width if height is None else height)

    def loss(self, render: Tensor, view: FixedView, kind: str = "l1") -> Tensor:
        return fixed_view_loss(render, view, self.schedule.weight, kind)
