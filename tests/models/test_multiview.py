import json
import sys

import pytest
import torch

from backend.geometry.cameras import SIX_VIEW_AZIMUTHS_DEG, SIX_VIEW_ELEVATIONS_DEG
from backend.models import records
from backend.models.multiview import ReferenceAttention, Zero123MultiView, Zero123PlusPlus, split_grid


def test_split_grid_is_row_major_over_three_rows_and_two_columns():
    # A synthetic 640×960 Zero123++ image: tile k is filled with the value k (tiles 320²).
    grid = torch.zeros(3, 960, 640)
    for k in range(6):
        row, col = divmod(k, 2)
        grid[:, row * 320:(row + 1) * 320, col * 320:(col + 1) * 320] = k
    tiles = split_grid(grid)
    assert tiles.shape == (6, 3, 320, 320)
    for k in range(6):
        assert torch.all(tiles[k] == k), f"tile {k} came from the wrong place"


def test_split_grid_keeps_the_content_of_each_tile():
    grid = torch.rand(3, 30, 20, generator=torch.Generator().manual_seed(0))
    tiles = split_grid(grid)
    torch.testing.assert_close(tiles[3], grid[:, 10:20, 10:20])  # second row, right column
    torch.testing.assert_close(tiles[4], grid[:, 20:30, 0:10])


def test_split_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        split_grid(torch.zeros(3, 31, 20))
    with pytest.raises(ValueError):
        split_grid(torch.zeros(1, 3, 30, 20))


def test_zero123_generates_the_six_views_with_their_poses(tiny_registry):
    zero123 = tiny_registry.get(records.NOVEL_VIEW)
    reference = zero123.encode_reference(torch.rand(1, 3, 64, 64), elevation_deg=5.0)
    steps = []
    views = Zero123MultiView(zero123).generate(reference, steps=2, generator=torch.Generator().manual_seed(0),
                                                on_step=lambda i, n: steps.append(i))
    assert views.images.shape == (6, 3, 256, 256)
    assert views.poses.azimuth_deg.tolist() == list(SIX_VIEW_AZIMUTHS_DEG)
    assert views.poses.elevation_deg.tolist() == list(SIX_VIEW_ELEVATIONS_DEG)
    assert steps == [1, 2] and views.background == 1.0


@pytest.fixture(scope="module")
def zero123pp(tiny_registry):
    return tiny_registry.get(records.MULTIVIEW)


def test_zero123pp_loads_from_the_repository_layout_without_its_pipeline_code(zero123pp, tiny_registry):
    folder = tiny_registry.folder(records.MULTIVIEW.spec)
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "vision_encoder", "feature_extractor_clip",
                "feature_extractor_vae", "scheduler"):
        assert (folder / sub).is_dir(), sub
    assert len(zero123pp.ramping) == 77 and zero123pp.ramping[0] == 0 and zero123pp.ramping[-1] == 1
    assert not any("zero123plus" in name or "diffusers_modules" in name for name in sys.modules)
    self_attention = [name for name in zero123pp.unet.attn_processors if name.endswith("attn1.processor")]
    assert self_attention and all(isinstance(zero123pp.unet.attn_processors[n], ReferenceAttention)
                                  for n in self_attention)


def test_zero123pp_paints_six_tiles_on_grey_with_its_cameras(zero123pp):
    steps = []
    image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    views = zero123pp.generate(image, steps=3, tile=64, generator=torch.Generator().manual_seed(1),
                               on_step=lambda i, n: steps.append((i, n)))
    assert views.images.shape == (6, 3, 64, 64) and 0 <= views.images.min() and views.images.max() <= 1
    assert views.fovy_deg == 30.0 and views.background == 0.5 and steps == [(1, 3), (2, 3), (3, 3)]
    assert views.poses.azimuth_deg.tolist() == list(SIX_VIEW_AZIMUTHS_DEG)
    assert views.poses.elevation_deg.tolist() == list(SIX_VIEW_ELEVATIONS_DEG)
    again = zero123pp.generate(image, steps=3, tile=64, generator=torch.Generator().manual_seed(1))
    other = zero123pp.generate(image.flip(-1), steps=3, tile=64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(views.images, again.images) and not torch.allclose(views.images, other.images)
    with pytest.raises(ValueError, match="one RGB image"):
        zero123pp.generate(torch.rand(2, 3, 64, 64), steps=1, tile=64)


def test_the_input_conditions_both_attention_paths(zero123pp, monkeypatch):
    """Cross-attention: the empty prompt's embedding, plus the CLIP image embedding ramped per token
    (the unconditional half has the text alone). Self-attention: every step runs the reference pass
    (write) and then the real pass (read), each self-attention layer once per pass."""
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    context, latents = zero123pp._conditions(image, torch.Generator().manual_seed(0))
    assert context.shape[0] == 2 and latents.shape == (2, 4, 40, 40)  # the VAE processor's 320² input
    torch.testing.assert_close(context[1, 0], context[0, 0])  # ramp 0 on the first token: text only
    assert not torch.allclose(context[1, -1], context[0, -1])  # ramp 1 on the last: the image added
    modes = []
    original = ReferenceAttention.__call__

    def spy(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        modes.append((self.bank.mode, hidden_states.shape[1]))
        return original(self, attn, hidden_states, encoder_hidden_states, *args, **kwargs)

    monkeypatch.setattr(ReferenceAttention, "__call__", spy)
    zero123pp.generate(image, steps=2, tile=64, generator=torch.Generator().manual_seed(3))
    layers = sum(name.endswith("attn1.processor") for name in zero123pp.unet.attn_processors)
    assert [m for m, _ in modes] == (["write"] * layers + ["read"] * layers) * 2
    assert zero123pp.bank.mode is None and zero123pp.bank.states == {}


def test_a_snapshot_without_ramping_coefficients_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="not a Zero123\\+\\+ v1.2 snapshot"):
        Zero123PlusPlus.from_pretrained(tmp_path)
