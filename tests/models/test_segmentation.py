import json

import numpy as np
import pytest

from backend.models.segmentation import FOREGROUND_PROMPT, SegmentationError, TextSegmenter, fuse_masks, \
    prompts_from_heatmap, save_tiny_clipseg, save_tiny_sam


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-segmentation")
    save_tiny_clipseg(root / "clipseg")
    save_tiny_sam(root / "sam")
    return root / "clipseg", root / "sam"


@pytest.fixture(scope="module")
def segmenter(tiny_folders):
    return TextSegmenter.from_pretrained(*tiny_folders)


def _scene(height: int = 90, width: int = 120) -> np.ndarray:  # uint8 [H, W, 3]: a red square on grey
    image = np.full((height, width, 3), 128, np.uint8)
    image[20:60, 40:90] = (220, 30, 30)
    return image


def _box(shape, y0, y1, x0, x1) -> np.ndarray:  # [H, W] bool
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


# --- fusion ---------------------------------------------------------------------------------------

GRID = (20, 24)
CLIP = _box(GRID, 5, 15, 5, 15)  # a 10 × 10 blob
INSIDE = _box(GRID, 6, 10, 6, 10)  # 16 px, all inside
INSIDE_TOO = _box(GRID, 11, 14, 11, 14)  # 9 px, all inside
MOSTLY_OUT = _box(GRID, 14, 15, 12, 22)  # 10 px in one row, 3 of them (columns 12-14) inside: 30 %


def test_a_sam_mask_inside_the_clipseg_mask_is_accepted():
    fused, ratios = fuse_masks(INSIDE[None], CLIP)
    np.testing.assert_array_equal(ratios, [1.0])
    np.testing.assert_array_equal(fused, INSIDE)


def test_a_sam_mask_mostly_outside_is_rejected():
    fused, ratios = fuse_masks(MOSTLY_OUT[None], CLIP)
    assert fused is None
    np.testing.assert_allclose(ratios, [0.3])


def test_the_accepted_masks_are_united_and_the_rejected_ones_left_out():
    fused, ratios = fuse_masks(np.stack([INSIDE, MOSTLY_OUT, INSIDE_TOO]), CLIP)
    np.testing.assert_allclose(ratios, [1.0, 0.3, 1.0])
    np.testing.assert_array_equal(fused, INSIDE | INSIDE_TOO)
    assert not fused[MOSTLY_OUT & ~CLIP].any()


def test_no_accepted_mask_gives_none_with_the_ratios():
    outside = _box(GRID, 16, 20, 16, 20)
    fused, ratios = fuse_masks(np.stack([MOSTLY_OUT, outside]), CLIP)
    assert fused is None
    np.testing.assert_allclose(ratios, [0.3, 0.0])


def test_an_empty_sam_mask_has_ratio_zero_and_never_qualifies():
    empty = np.zeros(GRID, bool)
    fused, ratios = fuse_masks(np.stack([empty, INSIDE]), CLIP, min_overlap=0.0)
    np.testing.assert_array_equal(ratios, [0.0, 1.0])
    np.testing.assert_array_equal(fused, INSIDE)
    fused, ratios = fuse_masks(empty[None], CLIP, min_overlap=0.0)
    assert fused is None and ratios.tolist() == [0.0]


def test_the_overlap_ratio_is_relative_to_the_sam_mask_and_the_boundary_is_accepted():
    half = _box(GRID, 5, 7, 13, 17)  # 8 px, columns 13-14 inside, 15-16 outside: exactly 0.5
    fused, ratios = fuse_masks(half[None], CLIP, min_overlap=0.5)
    assert ratios.tolist() == [0.5]
    np.testing.assert_array_equal(fused, half)
    assert fuse_masks(half[None], CLIP, min_overlap=0.51)[0] is None
    # Not an IoU: a tiny SAM mask inside a large CLIPSeg blob scores 1.
    assert fuse_masks(_box(GRID, 9, 10, 9, 10)[None], CLIP)[1].tolist() == [1.0]


def test_fusion_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\[M, H, W\]"):
        fuse_masks(np.zeros((2, 10, 10), bool), CLIP)


# --- prompts from the heat map --------------------------------------------------------------------

def _blob(shape, x, y, sigma, peak) -> np.ndarray:  # [H, W] float32
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))).astype(np.float32)


def test_the_box_bounds_the_mask_and_the_points_sit_on_the_peaks():
    shape = (80, 120)
    heat = _blob(shape, 30, 20, 6, 1.0) + _blob(shape, 80, 55, 8, 0.8) + _blob(shape, 100, 15, 4, 0.5)
    mask = heat >= 0.1
    prompts = prompts_from_heatmap(heat, mask)
    ys, xs = np.nonzero(mask)
    assert prompts.box == (xs.min(), ys.min(), xs.max(), ys.max())
    assert prompts.points == ((30, 20), (80, 55), (100, 15))  # highest heat first
    assert all(mask[y, x] for x, y in prompts.points)


def test_at_most_max_points_and_one_point_per_plateau():
    heat = np.zeros((60, 60), np.float32)
    heat[10:16, 10:16] = 1.0  # a flat peak: 36 equal maxima side by side
    heat[40:45, 40:45] = 0.6
    prompts = prompts_from_heatmap(heat, heat > 0, max_points=3)
    assert prompts.points == ((10, 10), (40, 40))
    assert prompts.box == (10, 10, 44, 44)
    assert len(prompts_from_heatmap(heat, heat > 0, max_points=1).points) == 1


def test_prompts_need_a_non_empty_mask():
    with pytest.raises(ValueError, match="empty"):
        prompts_from_heatmap(np.zeros((8, 8), np.float32), np.zeros((8, 8), bool))


# --- the segmenter --------------------------------------------------------------------------------

def test_the_tiny_folders_are_laid_out_like_the_real_repositories_and_reload(tiny_folders):
    from transformers import CLIPSegProcessor, SamProcessor

    clipseg, sam = tiny_folders
    for folder in tiny_folders:
        assert (folder / "config.json").is_file() and (folder / "preprocessor_config.json").is_file()
        assert (folder / "model.safetensors").is_file()
    assert json.loads((clipseg / "config.json").read_text())["model_type"] == "clipseg"
    processor = CLIPSegProcessor.from_pretrained(clipseg)
    assert processor.image_processor.size == {"height": 352, "width": 352}
    ids = processor.tokenizer("a red chair").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and len(processor.tokenizer) == 49408  # CLIP's real ids
    sam_processor = SamProcessor.from_pretrained(sam)
    assert sam_processor.image_processor.size == {"longest_edge": 1024}
    config = json.loads((sam / "config.json").read_text())
    assert config["prompt_encoder_config"]["image_size"] == config["vision_config"]["image_size"] == 1024


def test_the_tiny_builders_are_deterministic(tiny_folders, tmp_path):
    from safetensors.torch import load_file

    save_tiny_sam(tmp_path)
    first, again = load_file(tiny_folders[1] / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert first.keys() == again.keys()
    assert all((first[k] == again[k]).all() for k in first)


def test_segment_end_to_end_with_the_tiny_models(segmenter):
    image = _scene()
    result = segmenter.segment(image, "a red square", heat_threshold=0.0)
    assert result.source == "text"
    assert result.mask.shape == (90, 120) and result.mask.dtype == bool and result.mask.any()
    assert result.heatmap.shape == (90, 120) and result.heatmap.dtype == np.float32
    assert 0 <= result.heatmap.min() and result.heatmap.max() <= 1
    # A zero threshold makes the CLIPSeg mask the whole image, so every non-empty SAM mask qualifies
    # and the result is their union.
    assert result.overlap == 1.0 and result.warnings == []
    prompts = prompts_from_heatmap(result.heatmap, np.ones((90, 120), bool))
    np.testing.assert_array_equal(result.mask, segmenter.sam_masks(image, prompts).any(axis=0))
    again = segmenter.segment(image.copy(), "a red square", heat_threshold=0.0)
    np.testing.assert_array_equal(again.mask, result.mask)
    np.testing.assert_array_equal(again.heatmap, result.heatmap)


def test_an_empty_prompt_removes_the_background(segmenter):
    image = _scene(64, 48)
    result = segmenter.segment(image, "   ", heat_threshold=0.0)
    assert result.source == "foreground" and result.mask.shape == (64, 48)
    np.testing.assert_array_equal(result.heatmap, segmenter.heatmap(image, FOREGROUND_PROMPT))


def test_an_opaque_alpha_channel_is_ignored(segmenter):
    rgba = np.dstack([_scene(), np.full((90, 120), 255, np.uint8)])
    result = segmenter.segment(rgba, "a red square", heat_threshold=0.0)
    assert result.source == "text"
    rgb_only = segmenter.segment(_scene(), "a red square", heat_threshold=0.0)
    np.testing.assert_array_equal(result.mask, rgb_only.mask)


def test_a_real_alpha_channel_is_the_mask_without_any_model(segmenter, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the alpha path must not run a model")

    monkeypatch.setattr(segmenter, "heatmap", no_model)
    monkeypatch.setattr(segmenter, "sam_masks", no_model)
    alpha = np.zeros((40, 50), np.uint8)  # a transparent border
    alpha[5:35, 5:45] = 255
    alpha[10, 10], alpha[11, 11], alpha[0, 0] = 127, 128, 200  # the threshold is alpha ≥ 128
    result = segmenter.segment(np.dstack([_scene(40, 50), alpha]), "a red square")
    assert result.source == "alpha" and result.heatmap is None and result.overlap == 1.0
    np.testing.assert_array_equal(result.mask, alpha >= 128)
    assert not result.mask[10, 10] and result.mask[11, 11] and result.mask[0, 0]
    with pytest.raises(SegmentationError, match="alpha"):
        segmenter.segment(np.dstack([_scene(40, 50), np.full((40, 50), 100, np.uint8)]), "")


def test_disagreeing_sam_masks_fall_back_to_clipseg_with_a_warning(segmenter, monkeypatch):
    heat = np.zeros((30, 40), np.float32)
    heat[5:15, 5:15] = 0.9
    outside = _box((30, 40), 20, 30, 20, 40)[None]  # [1, H, W]: nowhere near the heat
    monkeypatch.setattr(segmenter, "heatmap", lambda rgb, prompt: heat)
    monkeypatch.setattr(segmenter, "sam_masks", lambda rgb, prompts: outside)
    result = segmenter.segment(_scene(30, 40), "a cat")
    np.testing.assert_array_equal(result.mask, heat >= 0.1)
    assert result.overlap == 0.0 and result.source == "text"
    assert len(result.warnings) == 1
    assert "'a cat'" in result.warnings[0] and "using the CLIPSeg mask" in result.warnings[0]


def test_a_prompt_that_matches_nothing_raises_an_actionable_error(segmenter, monkeypatch):
    monkeypatch.setattr(segmenter, "heatmap", lambda rgb, prompt: np.full(rgb.shape[:2], 0.05, np.float32))
    with pytest.raises(SegmentationError, match="a purple giraffe") as error:
        segmenter.segment(_scene(), "a purple giraffe")
    assert isinstance(error.value, ValueError)
    assert "prompt" in str(error.value) and "segmentation off" in str(error.value)


@pytest.mark.parametrize("image, message", [
    (np.zeros((16, 16, 3), np.float32), "uint8"),
    (np.zeros((16, 16, 2), np.uint8), r"\[H, W, 3\]"),
    (np.zeros((16, 16), np.uint8), r"\[H, W, 3\]"),
    (np.zeros((0, 16, 3), np.uint8), "empty"),
    ([[[0, 0, 0]]], "numpy array"),
])
def test_bad_images_are_rejected(segmenter, image, message):
    with pytest.raises(ValueError, match=message):
        segmenter.segment(image, "a chair")


def test_bad_thresholds_are_rejected(segmenter):
    with pytest.raises(ValueError, match="min_overlap"):
        segmenter.segment(_scene(), "a chair", min_overlap=1.5)
    with pytest.raises(ValueError, match="heat_threshold"):
        segmenter.segment(_scene(), "a chair", heat_threshold=-0.1)
