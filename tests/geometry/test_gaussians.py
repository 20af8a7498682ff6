import pytest
import torch

from backend.geometry import cameras as cm
from backend.geometry import gaussians as gs


def _random_gaussians(n=50, degree=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return gs.Gaussians.from_tensors(torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) - 3,
                                     torch.randn(n, 4, generator=g), torch.randn(n, generator=g),
                                     torch.randn(n, 1, 3, generator=g), torch.randn(n, k - 1, 3, generator=g), degree)


def test_ply_round_trip_is_exact(tmp_path):
    original = _random_gaussians()
    loaded = gs.load_ply(gs.save_ply(original, tmp_path / "g.ply"))
    assert loaded.sh_degree == 2 and len(loaded) == 50
    for key in gs.PARAM_KEYS:
        assert torch.equal(loaded.params[key], original.params[key]), key
    assert not list(tmp_path.glob("*.tmp"))


def test_ply_header_follows_3dgs(tmp_path):
    path = gs.save_ply(_random_gaussians(n=3, degree=1), tmp_path / "g.ply")
    header = path.read_bytes().split(b"end_header")[0].decode()
    props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    assert props[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert props[9:18] == [f"f_rest_{i}" for i in range(9)]
    assert props[18:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def test_ply_garbage_is_refused(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"not a ply at all")
    with pytest.raises(ValueError, match="not a PLY"):
        gs.load_ply(bad)
    truncated = tmp_path / "short.ply"
    truncated.write_bytes(gs.save_ply(_random_gaussians(n=4, degree=0), tmp_path / "ok.ply").read_bytes()[:-8])
    with pytest.raises(ValueError, match="expected 4 vertices"):
        gs.load_ply(truncated)


def test_activations():
    g = _random_gaussians(n=10, degree=0)
    assert torch.allclose(g.quats.norm(dim=-1), torch.ones(10))
    assert ((g.opacities > 0) & (g.opacities < 1)).all()
    assert (g.scales > 0).all()
    rgb = torch.rand(5, 3)
    assert torch.allclose(gs.sh0_to_rgb(gs.rgb_to_sh0(rgb)), rgb, atol=1e-6)


def test_random_in_sphere_stays_inside_with_touching_scales():
    g = gs.random_in_sphere(2000, radius=0.5, generator=torch.Generator().manual_seed(1))
    assert g.means.norm(dim=-1).max() <= 0.5 + 1e-6
    assert torch.allclose(g.opacities, torch.full((2000,), 0.1), atol=1e-6)
    spacing = (4 / 3 * torch.pi * 0.5**3 / 2000) ** (1 / 3)
    assert 0.3 * spacing < g.scales.median() < 1.5 * spacing


def test_from_depth_unprojects_onto_the_pixel_rays():
    cam = cm.reference_camera(width=32, height=24)
    depth = 1.5 + 0.2 * torch.rand(24, 32)
    mask = torch.zeros(24, 32, dtype=torch.bool)
    mask[4:20, 6:26] = True
    image = torch.rand(24, 32, 3)
    g = gs.from_depth(image, depth, mask, cam)
    assert len(g) == int(mask.sum())
    pix, z = cm.project_points(g.means.detach(), cam)
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert torch.allclose(pix[0], torch.stack([cols + 0.5, rows + 0.5], -1).float(), atol=1e-3)
    assert torch.allclose(z[0], depth[mask], atol=1e-4)
    assert torch.allclose(g.base_colors, image[mask], atol=1e-5)
    sub = gs.from_depth(image, depth, mask, cam, max_points=50, generator=torch.Generator().manual_seed(0))
    assert len(sub) == 50 and sub.scales.mean() > g.scales.mean()


def test_from_depth_with_an_empty_mask_says_so():
    cam = cm.reference_camera(width=8, height=8)
    with pytest.raises(ValueError, match="selects no pixel"):
        gs.from_depth(torch.rand(8, 8, 3), torch.ones(8, 8), torch.zeros(8, 8, dtype=torch.bool), cam)
