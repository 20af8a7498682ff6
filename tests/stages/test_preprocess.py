import numpy as np
import pytest

from backend.serving.context import PipelineError
from backend.stages.config import PreprocessConfig
from backend.stages.image_io import DecodedImage
from backend.stages.preprocess import PreparedInput, border_colour_mask, object_mask, recentre


def _object(height=120, width=200, box=(30, 50, 90, 170), colour=(200, 40, 30), background=(250, 250, 250)):
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = background, 255
    top, left, bottom, right = box
    rgba[top:bottom, left:right, :3] = colour
    mask = np.zeros((height, width), bool)
    mask[top:bottom, left:right] = True
    return rgba, mask


def test_recentre_scales_and_centres_the_object_with_a_border():
    rgba, mask = _object()  # a 60 × 120 object
    out = recentre(rgba, mask, size=256, border_ratio=0.2)
    assert out.shape == (256, 256, 4) and out.dtype == np.uint8
    rows, cols = np.nonzero(out[..., 3] >= 128)
    width, height = cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
    assert abs(width - round(256 * 0.6)) <= 1 and abs(height - width / 2) <= 2  # longer side = 60 %, aspect kept
    assert abs((cols.min() + cols.max()) / 2 - 127.5) <= 1 and abs((rows.min() + rows.max()) / 2 - 127.5) <= 1
    inside = out[..., 3] == 255
    # Premultiplied resampling: no dark or background fringe bleeds into the object's colour.
    assert np.abs(out[inside][:, :3].astype(int) - (200, 40, 30)).max() <= 2
    assert (out[..., 3] == 0).sum() > 0.5 * 256 * 256


def test_recentre_refuses_an_empty_mask():
    rgba, _ = _object()
    with pytest.raises(PipelineError, match="empty"):
        recentre(rgba, np.zeros(rgba.shape[:2], bool), 64, 0.2)


def test_border_colour_keying_finds_the_object_and_fills_its_holes():
    rgba, mask = _object()
    rgba[50:60, 100:110, :3] = (250, 250, 250)  # a hole of background colour inside the object
    rgba[5:8, 5:8, :3] = (10, 10, 10)  # a speck of dust: not the largest region
    found = border_colour_mask(rgba)
    assert np.array_equal(found, mask)
    with pytest.raises(PipelineError, match="no object stands out"):
        border_colour_mask(np.full((32, 32, 4), 255, np.uint8))


def test_object_mask_prefers_alpha_and_keys_without_segmentation():
    rgba, mask = _object()
    transparent = rgba.copy()
    transparent[..., 3] = np.where(mask, 255, 0)
    got, source, warnings = object_mask(DecodedImage(transparent, True, "RGBA"), "a cat",
                                        PreprocessConfig(), segmenter_factory=None)
    assert source == "alpha" and np.array_equal(got, mask) and warnings == []
    got, source, _ = object_mask(DecodedImage(rgba, False, "RGB"), "", PreprocessConfig(segmentation=False),
                                 segmenter_factory=None)
    assert source == "border colour" and np.array_equal(got, mask)


def test_prepared_input_composites_on_a_background():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[1, 1] = (255, 0, 0, 255)
    prepared = PreparedInput(rgba, np.zeros((4, 4), np.float32), "alpha")
    white = prepared.image_on(1.0)
    assert white.shape == (1, 3, 4, 4) and white[0, :, 1, 1].tolist() == [1.0, 0.0, 0.0]
    assert white[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0] and prepared.mask.sum() == 1
