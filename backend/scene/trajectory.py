"""Camera paths for text → 3D scene: the presets and an artist's own path, checked.

A `Trajectory` is a dense path of camera poses in Lift3D's world (Blender's, +Z up; see
`geometry.cameras`) as OpenCV camera→world matrices, plus one vertical field of view. The scene
grows at `keyframes` of them, spread evenly along the path (`keyframe_indices`); the poses between
keyframes are what the oracle benchmark holds out.

Presets start at `EYE` (eye height 1.6 m above the origin) looking along +Y (Blender's front):

    orbit     look around from one point: the yaw turns counter-clockwise (to the left) in equal
              steps of at most half the field of view (so each keyframe shares half of the last
              one), up to one step short of a full turn
    forward   walk straight ahead (+Y)
    pan       slide to the right (+X) while looking ahead
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from protocol.limits import MAX_SCENE_KEYFRAMES as MAX_KEYFRAMES
from protocol.limits import MAX_SCENE_POSES as MAX_POSES

from ..geometry.cameras import Cameras, blender_to_opencv_viewmat, intrinsics_from_fov

PRESETS = ("orbit", "forward", "pan")
EYE = (0.0, 0.0, 1.6)
DEFAULT_FOVY_DEG = 60.0
WALK_M = 2.0
"""How far `forward` and `pan` move over the whole path."""
PATH_STEPS_PER_KEYFRAME = 4
"""A preset's path has this many poses per keyframe interval (the in-between ones are held out)."""


class TrajectoryError(ValueError):
    """A path that cannot be used; the message says which pose and why, `hint` what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Trajectory:
    camtoworlds: Tensor  # [P, 4, 4] float32, OpenCV camera→world in Lift3D's world
    fovy_deg: float = DEFAULT_FOVY_DEG
    name: str = "custom"

    def __len__(self) -> int:
        return self.camtoworlds.shape[0]

    def cameras(self, size: int, indices: list[int] | None = None) -> Cameras:
        """Square `size`² cameras at the path's poses (all, or `indices`)."""
        c2w = self.camtoworlds if indices is None else self.camtoworlds[indices]
        K = intrinsics_from_fov(self.fovy_deg, size, size)
        return Cameras(torch.linalg.inv(c2w.double()).float(), K.expand(len(c2w), 3, 3).clone(), size, size)


def keyframe_indices(poses: int, keyframes: int) -> list[int]:
    """`keyframes` path indices spread evenly from the first pose to the last (all of them when the
    path is shorter)."""
    if poses <= keyframes:
        return list(range(poses))
    if keyframes == 1:
        return [0]
    return [round(i * (poses - 1) / (keyframes - 1)) for i in range(keyframes)]


def held_out_indices(poses: int, keyframes: list[int]) -> list[int]:
    """The path poses halfway between consecutive keyframes (what the scene never trained on)."""
    out = []
    for a, b in zip(keyframes, keyframes[1:]):
        if b - a >= 2:
            out.append((a + b) // 2)
    return out


def _yaw_camtoworld(eye: np.ndarray, yaw_deg: float) -> np.ndarray:
    """OpenCV camera→world at `eye` looking level, turned `yaw_deg` to the left of +Y."""
    yaw = math.radians(yaw_deg)
    forward = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    right = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return c2w


def check_fov(fovy_deg: float) -> float:
    """The vertical field of view in degrees, or TrajectoryError when it is not between 1 and 170."""
    if not (isinstance(fovy_deg, (int, float)) and math.isfinite(fovy_deg) and 1.0 < fovy_deg < 170.0):
        raise TrajectoryError(f"the field of view must be between 1 and 170 degrees, got {fovy_deg:g}",
                              "Use the camera's vertical field of view (60 is the default).")
    return float(fovy_deg)


def preset(name: str, keyframes: int, *, eye: tuple[float, float, float] = EYE, fovy_deg: float = DEFAULT_FOVY_DEG,
           walk_m: float = WALK_M) -> Trajectory:
    """A preset path with `PATH_STEPS_PER_KEYFRAME` poses per keyframe interval."""
    if name not in PRESETS:
        raise TrajectoryError(f"unknown trajectory preset {name!r}", f"Choose one of {', '.join(PRESETS)}, or "
                                                                      f"send the camera's own poses.")
    fovy_deg = check_fov(fovy_deg)
    if not 1 <= keyframes <= MAX_KEYFRAMES:
        raise TrajectoryError(f"keyframes must be from 1 to {MAX_KEYFRAMES}, got {keyframes}")
    count = max(1, (keyframes - 1) * PATH_STEPS_PER_KEYFRAME + 1)
    t = np.linspace(0.0, 1.0, count) if count > 1 else np.zeros(1)
    origin = np.asarray(eye, dtype=np.float64)
    if name == "orbit":
        sweep = min(360.0 * (keyframes - 1) / keyframes, (keyframes - 1) * fovy_deg / 2)
        poses = [_yaw_camtoworld(origin, sweep * s) for s in t]
    elif name == "forward":
        poses = [_yaw_camtoworld(origin + np.array([0.0, walk_m * s, 0.0]), 0.0) for s in t]
    else:
        poses = [_yaw_camtoworld(origin + np.array([walk_m * s, 0.0, 0.0]), 0.0) for s in t]
    return Trajectory(torch.tensor(np.stack(poses), dtype=torch.float32), fovy_deg, name)


def from_blender(matrices: np.ndarray, fovy_deg: float = DEFAULT_FOVY_DEG) -> Trajectory:
    """An artist's path: Blender camera `matrix_world`s [P, 4, 4] (a scaled camera is fine) →
    a checked Trajectory. TrajectoryError for an empty path, more than `MAX_POSES` poses, a
    non-finite number, a degenerate or mirrored rotation, or a field of view outside (1, 170)°."""
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (4, 4):
        raise TrajectoryError(f"camera poses must be 4 × 4 matrices, got an array of shape {list(m.shape)}",
                              "Send one matrix_world per frame.")
    if len(m) == 0:
        raise TrajectoryError("the camera path is empty", "Animate the active camera (or choose a preset).")
    if len(m) > MAX_POSES:
        raise TrajectoryError(f"the camera path has {len(m)} poses; at most {MAX_POSES} are accepted",
                              "Shorten the animation or sample it less often.")
    bad = np.flatnonzero(~np.isfinite(m).all(axis=(1, 2)))
    if len(bad):
        raise TrajectoryError(f"camera pose {int(bad[0])} holds a non-finite number (NaN or infinity)",
                              "Check the camera's animation curves at that frame.")
    rotation = m[:, :3, :3] / np.maximum(np.linalg.norm(m[:, :3, :3], axis=1, keepdims=True), 1e-12)
    det = np.linalg.det(rotation)
    off = np.abs(np.einsum("pji,pjk->pik", rotation, rotation) - np.eye(3)).max(axis=(1, 2))
    broken = np.flatnonzero((det < 0.5) | (off > 1e-3) | (np.linalg.norm(m[:, :3, :3], axis=1) < 1e-9).any(1))
    if len(broken):
        raise TrajectoryError(f"camera pose {int(broken[0])} is not a rotation (skewed, mirrored or zero scale)",
                              "Apply the camera's scale or remove its negative scale / shear.")
    fovy_deg = check_fov(fovy_deg)
    viewmats = blender_to_opencv_viewmat(torch.from_numpy(m))
    return Trajectory(torch.linalg.inv(viewmats).float(), float(fovy_deg), "camera")


def to_blender(trajectory: Trajectory) -> np.ndarray:
    """The path as Blender camera `matrix_world`s [P, 4, 4] float32 (for `cameras.json` and the
    animated camera)."""
    from ..geometry.cameras import opencv_viewmat_to_blender

    viewmats = torch.linalg.inv(trajectory.camtoworlds.double())
    return opencv_viewmat_to_blender(viewmats).float().numpy()
