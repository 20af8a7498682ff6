import math

import pytest
import torch

from backend.geometry import cameras as cm
from backend.geometry import mesh_raster as mr

W, H = 16, 12


def _camera(width=W, height=H, focal=None):
    """Identity pose (OpenCV camera at the origin looking down +z)."""
    f = float(width) if focal is None else focal
    K = torch.tensor([[[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]])
    return torch.eye(4)[None], K


def _quad(z=2.0, half_x=1.0, half_y=1.0):
    # OpenCV y points down, so the image's bottom edge is +y and UV (0, 0) sits at (−x, +y).
    v = torch.tensor([[-half_x, half_y, z], [half_x, half_y, z], [half_x, -half_y, z], [-half_x, -half_y, z]])
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return v, f, uv


def test_full_screen_quad_uvs_are_exact_at_pixel_centres():
    # With focal W, the quad x = ±1, y = ±H/W at z = 2 projects exactly onto the W×H image.
    v, f, uv = _quad(half_y=H / W)
    viewmat, K = _camera(focal=float(W))
    frags = mr.rasterize(v, f, viewmat, K, W, H)
    assert frags.mask.all()
    got = mr.interpolate(uv, frags, f)[0]
    cols, rows = torch.meshgrid(torch.arange(W) + 0.5, torch.arange(H) + 0.5, indexing="xy")
    expected = torch.stack([cols / W, 1 - rows / H], -1)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(frags.depth, torch.full((1, H, W), 2.0))


def test_tilted_plane_is_perspective_correct():
    """Interpolated 3D positions must equal the ray–plane intersection at every pixel centre."""
    v = torch.tensor([[-1.0, -1.0, 1.5], [1.0, -1.0, 3.5], [1.0, 1.0, 3.5], [-1.0, 1.0, 1.5]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    viewmat, K = _camera(32, 32, focal=20.0)
    frags = mr.rasterize(v, f, viewmat, K, 32, 32)
    pos = mr.interpolate(v, frags, f)[0][frags.mask[0]]
    rows, cols = torch.nonzero(frags.mask[0], as_tuple=True)
    ray = torch.stack([(cols + 0.5 - 16) / 20, (rows + 0.5 - 16) / 20, torch.ones_like(rows, dtype=torch.float)], -1)
    # plane z = 2.5 + x through the four corners
    t = 2.5 / (1 - ray[:, 0])
    assert torch.allclose(pos, ray * t[:, None], atol=1e-4)
    assert torch.allclose(frags.depth[0][frags.mask[0]], t, atol=1e-4)
    assert frags.mask.float().mean() > 0.3


def test_nearer_triangle_wins_whatever_the_order():
    near_tri = [[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [0.0, 1.0, 2.0]]
    far_tri = [[-1.0, -1.0, 3.0], [1.0, -1.0, 3.0], [0.0, 1.0, 3.0]]
    viewmat, K = _camera(focal=8.0)
    for order in ([near_tri, far_tri], [far_tri, near_tri]):
        v = torch.tensor(order[0] + order[1])
        f = torch.tensor([[0, 1, 2], [3, 4, 5]])
        frags = mr.rasterize(v, f, viewmat, K, W, H)
        winner = 0 if order[0] is near_tri else 1
        assert (frags.triangle_ids[frags.mask] == winner).all()
        assert torch.allclose(frags.depth[frags.mask], torch.tensor(2.0))


def test_empty_pixels_have_no_triangle_and_zero_attributes():
    v, f, uv = _quad(half_x=0.2, half_y=0.2)
    viewmat, K = _camera()
    frags = mr.rasterize(v, f, viewmat, K, W, H)
    assert (~frags.mask).any() and frags.mask.any()
    assert (frags.triangle_ids[~frags.mask] == -1).all()
    assert (mr.interpolate(uv, frags, f)[~frags.mask] == 0).all()
    assert (frags.depth[~frags.mask] == 0).all()


def test_texture_rows_and_uv_origin():
    texture = torch.zeros(4, 4, 3)
    texture[0, :, 0] = 1.0  # the image's top row is red
    texture[-1, :, 2] = 1.0  # bottom row blue
    uv = torch.tensor([[[[0.5, 0.95], [0.5, 0.05]]]])  # v = 1 is the top of the image
    out = mr.sample_texture(texture, uv, filter="nearest")
    assert out[0, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert out[0, 0, 1].tolist() == [0.0, 0.0, 1.0]


def test_bilinear_blends_and_nearest_does_not():
    texture = torch.tensor([[[0.0], [1.0]]])  # one row, two texels
    mid = torch.tensor([[[[0.5, 0.5]]]])
    centre = torch.tensor([[[[0.25, 0.5]]]])
    assert mr.sample_texture(texture, mid)[0, 0, 0, 0].item() == pytest.approx(0.5)
    assert mr.sample_texture(texture, mid, filter="nearest")[0, 0, 0, 0].item() in (0.0, 1.0)
    assert mr.sample_texture(texture, centre)[0, 0, 0, 0].item() == pytest.approx(0.0)
    wrapped = mr.sample_texture(texture, torch.tensor([[[[1.25, 0.5]]]]), boundary="wrap")
    assert wrapped[0, 0, 0, 0].item() == pytest.approx(0.0)


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    texture = torch.rand(5, 6, 2, dtype=torch.float64, requires_grad=True)
    uv = torch.rand(1, 3, 4, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: mr.sample_texture(t, uv), (texture,))
    v, f, _ = _quad(half_x=0.6, half_y=0.5)
    viewmat, K = _camera()
    frags = mr.rasterize(v.double(), f, viewmat.double(), K.double(), W, H)
    attrs = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: mr.interpolate(a, frags, f), (attrs,))


def test_barycentrics_carry_vertex_gradients():
    v, f, uv = _quad(half_x=0.6, half_y=0.5)
    v.requires_grad_()
    viewmat, K = _camera()
    frags = mr.rasterize(v, f, viewmat, K, W, H)
    mr.interpolate(uv, frags, f).sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0


def test_optimising_a_texture_through_the_render_lowers_the_loss():
    torch.manual_seed(0)
    v, f, uv = _quad()
    viewmat, K = _camera(focal=float(W))
    frags = mr.rasterize(v, f, viewmat, K, W, H)
    uv_image = mr.interpolate(uv, frags, f)
    target = mr.sample_texture(torch.rand(8, 8, 3), uv_image)  # reachable: rendered from some texture
    texture = torch.full((8, 8, 3), 0.5, requires_grad=True)
    optimiser = torch.optim.Adam([texture], lr=0.1)
    losses = []
    for _ in range(30):
        loss = (mr.sample_texture(texture, uv_image) - target).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_sphere_silhouette_matches_its_projection():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=4)
    v, f = torch.tensor(sphere.vertices, dtype=torch.float32) * 0.5, torch.tensor(sphere.faces)
    cams = cm.orbit_cameras([10.0], [30.0], 2.0, fovy_deg=40.0, width=64, height=64)
    frags = mr.rasterize(v, f, cams.viewmats, cams.Ks, 64, 64)
    # Angular radius of a sphere of radius r at distance d: asin(r/d).
    focal = cams.Ks[0, 0, 0].item()
    radius_px = focal * math.tan(math.asin(0.5 / 2.0))
    assert frags.mask.sum().item() == pytest.approx(math.pi * radius_px**2, rel=0.03)
    assert frags.depth[0, 32, 32].item() == pytest.approx(1.5, abs=0.01)


def test_bad_inputs_are_refused():
    v, f, _ = _quad()
    viewmat, K = _camera()
    with pytest.raises(ValueError, match="face indices"):
        mr.rasterize(v, torch.tensor([[0, 1, 7]]), viewmat, K, W, H)
    with pytest.raises(ValueError, match="integer"):
        mr.rasterize(v, f.float(), viewmat, K, W, H)
    with pytest.raises(ValueError, match="positive"):
        mr.rasterize(v, f, viewmat, K, 0, H)
    with pytest.raises(ValueError, match="unknown mesh rasteriser"):
        mr.rasterize(v, f, viewmat, K, W, H, backend="opengl")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="non-commercial"):
            mr.rasterize(v, f, viewmat, K, W, H, backend="nvdiffrast")


@pytest.mark.gpu
def test_nvdiffrast_and_torch_agree():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=4)
    v = torch.tensor(sphere.vertices, dtype=torch.float32, device="cuda") * 0.5
    f = torch.tensor(sphere.faces, device="cuda")
    uv = (v[:, :2] + 0.5).clamp(0, 1)
    texture = torch.rand(64, 64, 3, device="cuda")
    cams = cm.orbit_cameras([10.0, -30.0], [30.0, 200.0], 2.0, width=128, height=96).to("cuda")
    images = {}
    for backend in ("torch", "nvdiffrast"):
        frags = mr.rasterize(v, f, cams.viewmats, cams.Ks, 128, 96, backend=backend)
        images[backend] = mr.sample_texture(texture, mr.interpolate(uv, frags, f)) * frags.mask[..., None]
    mse = (images["torch"] - images["nvdiffrast"]).square().mean().item()
    assert 10 * math.log10(1 / max(mse, 1e-20)) >= 40
