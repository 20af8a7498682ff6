"""The growing loop on a known room with ORACLE models (the true render inside the mask, the true
disparity under a random affine distortion): the scene covers the held-out views, replay keeps the
first keyframe, the alignment recovers the scale, and the fused mesh lies on the true surface."""

import numpy as np
import pytest
import torch

from backend.bench.scene_oracle import keyframe_psnr, surface_scores, visible_truth_points
from backend.bench.scene_oracles import ConstantInpainter, DistortedDepth, TruthInpainter, true_depth, true_render
from backend.bench.scenes import build_scene, scene_eye
from backend.scene import trajectory as tr
from backend.scene.fuse import fuse_keyframes
from backend.bench.reconstruct import psnr
from backend.scene.grow import SceneCallbacks, SceneConfig, SceneGrower, render_scene

SIZE = 64
FRAMES = 5


@pytest.fixture(scope="module")
def room():
    return build_scene("room", texture_size=512)


def _grow(room, *, newest_share=0.5, inpainter=None, steps=30):
    path = tr.preset("orbit", FRAMES, eye=tuple(float(x) for x in scene_eye(room)))
    first = true_depth(room, path.cameras(SIZE, [0]))
    config = SceneConfig(size=SIZE, keyframes=FRAMES, first_steps=2 * steps, steps_per_keyframe=steps,
                         newest_share=newest_share, first_median_depth=float(first[first > 0].median()),
                         points_per_keyframe=4096, backend="torch")
    depth = DistortedDepth(room, seed=1)
    first_after_add: list[float] = []

    def on_keyframe(stats, entry, gaussians) -> None:  # the first keyframe, right after its own fit
        if stats.keyframe == 0:
            first_after_add.append(keyframe_psnr(gaussians, entry, "torch"))

    grower = SceneGrower(path, "a room", inpainter or TruthInpainter(room), depth, config,
                         SceneCallbacks(on_keyframe=on_keyframe))
    return grower.grow(), path, depth, first_after_add[0]


def _first_view_psnr(grown) -> float:
    return keyframe_psnr(grown.gaussians, grown.support.entries[0], "torch")


def test_the_scene_covers_views_between_keyframes_and_the_mesh_lies_on_the_truth(room):
    grown, path, depth, _ = _grow(room)
    assert len(grown.support) == FRAMES and [s.keyframe for s in grown.stats] == list(range(FRAMES))
    assert all(0.2 < s.inpainted < 0.8 for s in grown.stats[1:])  # each 30° turn brings in new space
    held = tr.held_out_indices(len(path), grown.keyframes)
    cameras = path.cameras(SIZE, held)
    with torch.no_grad():
        scores = [psnr(render_scene(grown.gaussians, cameras[i], "torch").rgb[0].clamp(0, 1),
                       true_render(room, cameras[i])) for i in range(len(held))]
    assert min(scores) > 20.0, scores
    # Scale: every later keyframe's inpainted depth within 5 % of the truth at this coarse size (the
    # distortion drew scales from 0.5 to 2; the benchmark's target at 256² is 2 %).
    ratios = []
    for entry in grown.support.entries[1:]:
        truth = true_depth(room, entry.camera)
        pick = entry.added & (truth > 0)
        ratios.append(float((truth[pick] / entry.depth[pick]).median()))
    assert all(abs(r - 1) < 0.05 for r in ratios), ratios
    assert max(abs(np.log(s)) for s, _ in depth.draws) > 0.2  # the distortion was not a no-op
    mesh = fuse_keyframes(grown.gaussians, grown.support, backend="torch")
    chamfer, fscore, _, _ = surface_scores(mesh, visible_truth_points(room, path, size=SIZE))
    assert fscore > 0.8 and len(mesh.faces) > 1000


def test_replay_keeps_the_first_keyframe(room):
    replayed, _, _, after_add = _grow(room, newest_share=0.5)
    newest_only, _, _, _ = _grow(room, newest_share=1.0)  # one view per step, always the newest: no replay
    kept, forgotten = _first_view_psnr(replayed), _first_view_psnr(newest_only)
    assert kept > forgotten + 1.0, (kept, forgotten)
    assert after_add - kept < 2.0


def test_masks_never_repaint_what_the_scene_already_shows(room):
    """With a flat-grey inpainting oracle, the first keyframe's part of every later view stays as it
    was: no mask landed on it."""
    grown, path, _, _ = _grow(room, inpainter=ConstantInpainter(room), steps=20)
    for entry in grown.support.entries[1:]:
        grey = (entry.image - 0.5).abs().max(-1).values < 1e-6
        assert grey[entry.added].all()  # the oracle filled exactly the mask
        # Outside it the view is the render of what earlier keyframes saw: the room, not the grey
        # (a few pixels next to an earlier grey patch may render grey too).
        assert (grey & ~entry.added).float().mean() < 0.01
    # and the first keyframe itself keeps its colours
    assert _first_view_psnr(grown) > 22.0
