import pytest
import torch

from backend.geometry.cameras import SIX_VIEW_AZIMUTHS_DEG, SIX_VIEW_ELEVATIONS_DEG
from backend.models import records
from backend.models.multiview import Zero123MultiView, split_grid


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


def test_zero123_plus_plus_is_full_preset_only(tiny_registry):
    from backend.models.hub import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="no tiny version"):
        tiny_registry.get(records.MULTIVIEW)
