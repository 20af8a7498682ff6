"""Camera paths: the presets move as named, an artist's path round-trips through Blender's
matrices, and bad paths are refused with the pose and the reason."""

import math

import numpy as np
import pytest
import torch

from backend.scene import trajectory as tr


def test_orbit_turns_left_in_place_and_stops_one_step_short_of_a_full_turn():
    path = tr.preset("orbit", 12)
    centres = path.camtoworlds[:, :3, 3]
    assert torch.allclose(centres, torch.tensor(tr.EYE).expand_as(centres))
    forward = path.camtoworlds[:, :3, 2]
    assert torch.allclose(forward[0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    keys = tr.keyframe_indices(len(path), 12)
    yaw = [math.degrees(math.atan2(-f[0].item(), f[1].item())) % 360 for f in forward[keys]]
    assert yaw == pytest.approx([30.0 * i for i in range(12)], abs=1e-3)


@pytest.mark.parametrize("name,axis", [("forward", 1), ("pan", 0)])
def test_walks_move_along_their_axis_looking_ahead(name, axis):
    path = tr.preset(name, 5, walk_m=2.0)
    moved = path.camtoworlds[-1, :3, 3] - path.camtoworlds[0, :3, 3]
    assert moved[axis] == pytest.approx(2.0) and moved.abs().sum() == pytest.approx(2.0)
    assert torch.allclose(path.camtoworlds[:, :3, 2], torch.tensor([0.0, 1.0, 0.0]).expand(len(path), 3))


def test_keyframes_spread_evenly_and_held_out_poses_sit_between_them():
    assert tr.keyframe_indices(45, 12) == [round(i * 44 / 11) for i in range(12)]
    assert tr.keyframe_indices(5, 12) == [0, 1, 2, 3, 4]
    keys = tr.keyframe_indices(45, 12)
    held = tr.held_out_indices(45, keys)
    assert len(held) == 11 and all(a < h < b for a, h, b in zip(keys, held, keys[1:]))


def test_a_blender_camera_path_round_trips():
    path = tr.preset("orbit", 4)
    matrices = tr.to_blender(path)
    # A Blender camera looks down its −Z: the first pose's −Z axis is the world's +Y.
    assert np.allclose(-matrices[0, :3, 2], [0, 1, 0], atol=1e-6)
    again = tr.from_blender(matrices * np.array([2.0, 2.0, 2.0, 1.0], np.float32), fovy_deg=50.0)  # scaled camera
    assert torch.allclose(again.camtoworlds, path.camtoworlds, atol=1e-5)
    assert again.fovy_deg == 50.0 and again.name == "camera"


@pytest.mark.parametrize("matrices,message", [
    (np.zeros((0, 4, 4)), "empty"),
    (np.repeat(np.eye(4)[None], tr.MAX_POSES + 1, 0), "at most 500"),
    (np.stack([np.eye(4), np.full((4, 4), np.nan)]), "pose 1 holds a non-finite"),
    (np.stack([np.eye(4), np.diag([1.0, 1.0, -1.0, 1.0])]), "pose 1 is not a rotation"),
    (np.stack([np.eye(4), np.diag([1.0, 0.0, 1.0, 1.0])]), "pose 1 is not a rotation"),
    (np.eye(3)[None], "4 × 4"),
])
def test_bad_paths_are_refused_by_pose_and_reason(matrices, message):
    with pytest.raises(tr.TrajectoryError, match=message) as error:
        tr.from_blender(matrices)
    assert error.value.hint or "4 × 4" in message


def test_a_bad_field_of_view_or_preset_is_refused():
    with pytest.raises(tr.TrajectoryError, match="field of view"):
        tr.from_blender(np.eye(4)[None], fovy_deg=0.0)
    for bad in (0.0, -10.0, 180.0, float("nan")):
        with pytest.raises(tr.TrajectoryError, match="field of view"):
            tr.preset("orbit", 12, fovy_deg=bad)
    with pytest.raises(tr.TrajectoryError, match="unknown trajectory preset 'spiral'"):
        tr.preset("spiral", 12)
    with pytest.raises(tr.TrajectoryError, match="keyframes"):
        tr.preset("orbit", 0)
