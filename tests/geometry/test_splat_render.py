import math

import pytest
import torch

from backend.geometry import cameras as cm
from backend.geometry import gaussians as gs
from backend.geometry.optimize import DensifyConfig, FitConfig, GaussianTrainer, OptimConfig, fit_to_views
from backend.geometry.splat import render_splats
from backend.geometry.splat.projection import project
from backend.geometry.splat.torch_renderer import rasterize_tiled, rasterize_untiled


def _single(scale=0.05, opacity=0.8, colour=(0.9, 0.2, 0.1)):
    return gs.from_points(torch.zeros(1, 3), torch.tensor([colour]), scales=torch.tensor([scale]), opacity=opacity)


def test_single_gaussian_footprint_is_analytic():
    size = 65  # odd, so the image centre is a pixel centre
    cam = cm.reference_camera(radius=2.0, fovy_deg=40.0, width=size, height=size)
    focal = cam.Ks[0, 0, 0].item()
    out = render_splats(_single(), cam, backgrounds=torch.zeros(3), backend="torch")
    var = (focal * 0.05 / 2.0) ** 2 + 0.3  # EWA footprint plus gsplat's eps2d dilation
    centre = size // 2
    for offset in (0, 2, 4):
        expected = 0.8 * math.exp(-0.5 * offset**2 / var)
        assert out.alpha[0, centre, centre + offset, 0].item() == pytest.approx(expected, rel=1e-4)
        assert out.alpha[0, centre + offset, centre, 0].item() == pytest.approx(expected, rel=1e-4)
    assert torch.allclose(out.rgb[0, centre, centre], torch.tensor([0.9, 0.2, 0.1]) * 0.8, atol=1e-5)
    assert out.depth[0, centre, centre, 0].item() == pytest.approx(2.0, abs=1e-5)
    radius = math.ceil(3.33 * math.sqrt(var))
    assert out.meta["radii"][0, 0].tolist() == [radius, radius]
    assert torch.allclose(out.meta["means2d"][0, 0], torch.tensor([size / 2, size / 2]))


def test_front_gaussian_occludes_the_back_one():
    pts = torch.tensor([[0.0, 0.3, 0.0], [0.0, -0.3, 0.0]])  # −Y is towards the front camera
    g = gs.from_points(pts, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]), scales=torch.full((2,), 0.1), opacity=0.99)
    out = render_splats(g, cm.reference_camera(width=33, height=33), backend="torch")
    assert out.rgb[0, 16, 16, 2] > 0.95 and out.rgb[0, 16, 16, 0] < 0.05
    assert out.depth[0, 16, 16, 0].item() == pytest.approx(1.7, abs=0.01)


def test_tiled_equals_untiled_on_a_random_scene():
    g = gs.random_in_sphere(400, 0.5, opacity=0.6, sh_degree=1, generator=torch.Generator().manual_seed(0))
    g.params["shN"].data.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    cams = cm.orbit_cameras([0.0, 30.0, -20.0], [0.0, 120.0, 250.0], 1.8, width=50, height=37)
    bg = torch.tensor([[0.0, 0, 0], [1, 1, 1], [0.2, 0.5, 0.7]])
    tiled = render_splats(g, cams, backgrounds=bg, backend="torch")
    untiled = render_splats(g, cams, backgrounds=bg, backend="torch-untiled")
    assert torch.allclose(tiled.rgb, untiled.rgb, atol=1e-5)
    assert torch.allclose(tiled.alpha, untiled.alpha, atol=1e-5)
    assert torch.allclose(tiled.depth, untiled.depth, atol=1e-4)
    assert tiled.rgb.shape == (3, 37, 50, 3) and tiled.depth.shape == (3, 37, 50, 1)
    assert (untiled.alpha > 0.5).float().mean() > 0.2  # the scene is actually visible


def test_compositing_gradients_match_finite_differences():
    torch.manual_seed(0)
    cams = cm.orbit_cameras([10.0], [20.0], 2.0, width=12, height=10)
    means = (torch.rand(4, 3, dtype=torch.float64) - 0.5) * 0.4
    quats = torch.randn(4, 4, dtype=torch.float64)
    scales = torch.full((4, 3), 0.08, dtype=torch.float64)
    proj = project(means, quats, scales, cams.viewmats.double(), cams.Ks.double(), 12, 10)
    means2d = proj.means2d.detach().requires_grad_()
    conics = proj.conics.detach().requires_grad_()
    opac = torch.full((4,), 0.7, dtype=torch.float64, requires_grad=True)
    feats = torch.rand(1, 4, 3, dtype=torch.float64, requires_grad=True)

    def render(m2d, con, o, f):
        proj.means2d, proj.conics = m2d, con
        image, alpha = rasterize_tiled(proj, o, f, 12, 10, tile_size=8)
        return image, alpha

    assert torch.autograd.gradcheck(render, (means2d, conics, opac, feats), eps=1e-6, atol=1e-5)


def test_gradients_reach_every_parameter():
    g = gs.random_in_sphere(100, 0.4, opacity=0.5, sh_degree=1, generator=torch.Generator().manual_seed(0))
    g.params["scales"].data[:, 0] += 1.0  # anisotropic, or rotations would not matter
    out = render_splats(g, cm.orbit_cameras([0.0, 45.0], [0.0, 90.0], width=24, height=24), backend="torch")
    out.meta["means2d"].retain_grad()
    (out.rgb.mean() + out.depth.mean()).backward()
    for key in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        assert g.params[key].grad is not None and g.params[key].grad.abs().sum() > 0, key
    assert out.meta["means2d"].grad.abs().sum() > 0


def test_bad_inputs_are_refused():
    g = _single()
    cam = cm.reference_camera(width=8, height=8)
    with pytest.raises(ValueError, match="unknown splat backend"):
        render_splats(g, cam, backend="vulkan")
    with pytest.raises(ValueError, match="backgrounds"):
        render_splats(g, cam, backgrounds=torch.zeros(2, 3), backend="torch")
    with pytest.raises(ValueError, match="sh_degree"):
        render_splats(g, cam, sh_degree=2, backend="torch")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            render_splats(g, cam, backend="gsplat")


def _target_scene():
    truth = gs.random_in_sphere(300, 0.45, opacity=0.9, generator=torch.Generator().manual_seed(3))
    truth.params["sh0"].data = gs.rgb_to_sh0(torch.rand(300, 1, 3, generator=torch.Generator().manual_seed(4)))
    truth.params["scales"].data += 0.7
    cams = cm.orbit_cameras([0, 20, -10, 20, -10, 20, -10.0], [0, 30, 90, 150, 210, 270, 330.0], 2.0,
                            width=32, height=32)
    with torch.no_grad():
        out = render_splats(truth, cams, backgrounds=torch.zeros(3), backend="torch")
    mask = out.alpha[..., 0]
    return cams, (out.rgb / mask[..., None].clamp_min(1e-6)).clamp(0, 1), mask


def test_a_short_fit_lowers_the_loss_and_densifies():
    cams, images, masks = _target_scene()
    start = gs.random_in_sphere(150, 0.5, generator=torch.Generator().manual_seed(5))
    config = FitConfig(steps=60, optim=OptimConfig(densify=DensifyConfig(refine_start=20, refine_every=20,
                                                                          grow_grad2d=2e-5)))
    losses = fit_to_views(start, cams, images, masks, config, backend="torch")
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
    assert len(start) > 150  # DefaultStrategy cloned/split Gaussians using the torch renderer's means2d


@pytest.mark.gpu
def test_gsplat_and_torch_renderers_agree():
    g = gs.random_in_sphere(3000, 0.5, opacity=0.5, sh_degree=2, generator=torch.Generator().manual_seed(0)).to("cuda")
    g.params["shN"].data.normal_(0, 0.2)
    cams = cm.orbit_cameras([0.0, 30.0], [10.0, 200.0], 2.0, width=128, height=96)
    a = render_splats(g, cams, backgrounds=torch.ones(3), backend="gsplat")
    b = render_splats(g, cams, backgrounds=torch.ones(3), backend="torch")
    mse = (a.rgb - b.rgb).square().mean().item()
    assert 10 * math.log10(1 / max(mse, 1e-20)) >= 40
    assert torch.equal(a.meta["radii"].cpu(), b.meta["radii"].cpu())


def test_depth_targets_pull_the_fit_toward_the_true_depth():
    from backend.stages.losses import pearson_depth_loss

    truth = gs.random_in_sphere(300, 0.45, opacity=0.9, generator=torch.Generator().manual_seed(3))
    truth.params["scales"].data += 0.7
    cams, images, masks = _target_scene()
    with torch.no_grad():
        depth = render_splats(truth, cams, backend="torch").depth[..., 0]
    inverse = torch.where(masks > 0.5, 1.0 / depth.clamp_min(1e-6), 0.0)

    def depth_error(weight: float) -> float:
        start = gs.random_in_sphere(150, 0.5, generator=torch.Generator().manual_seed(5))
        fit_to_views(start, cams, images, masks, FitConfig(steps=60, depth_weight=weight), backend="torch",
                     depths=inverse)
        with torch.no_grad():
            rendered = render_splats(start, cams, backend="torch").depth[..., 0]
        return sum(float(pearson_depth_loss(rendered[c], inverse[c], masks[c] > 0.5)) for c in range(len(cams)))

    assert depth_error(0.5) < 0.8 * depth_error(0.0)


@pytest.mark.parametrize("depth", [0.0, 1e-30, -0.5])
def test_a_gaussian_in_the_camera_plane_or_behind_it_gets_finite_gradients(depth):
    """Culled Gaussians still sit in the dense projection tensors; one exactly in the camera's plane
    used to turn the backward pass into NaN (0 · inf) and, through Adam, its parameters too."""
    camera = cm.Cameras(torch.eye(4)[None], cm.intrinsics_from_fov(60.0, 32, 32)[None], 32, 32)
    means = torch.tensor([[0.0, 0.0, 2.0], [0.3, 0.1, depth]])
    g = gs.from_points(means, torch.full((2, 3), 0.5), scales=torch.full((2,), 0.05), opacity=0.9)
    render = render_splats(g, camera, backgrounds=torch.zeros(3), backend="torch")
    (render.rgb.sum() + render.depth.sum()).backward()
    for name, param in g.params.items():
        assert torch.isfinite(param.grad).all(), name
    assert render.meta["radii"][0, 1].eq(0).all() and render.meta["radii"][0, 0].gt(0).all()
    assert g.params["means"].grad[0].abs().sum() > 0  # the visible one still learns


def test_appending_gaussians_keeps_the_optimisers_moments_for_the_old_ones():
    g = gs.random_in_sphere(50, 0.4, opacity=0.5, generator=torch.Generator().manual_seed(0))
    trainer = GaussianTrainer(g, OptimConfig(), total_steps=10)
    cameras = cm.orbit_cameras([0.0], [0.0], width=24, height=24)
    for step in range(2):
        render = render_splats(g, cameras, backgrounds=torch.zeros(3), backend="torch")
        trainer.before_backward(step, render)
        render.rgb.mean().backward()
        trainer.after_backward(step, render)
    before = {k: trainer.optimizers[k].state[g.params[k]]["exp_avg_sq"].clone() for k in ("means", "sh0")}
    extra = gs.random_in_sphere(20, 0.4, opacity=0.5, generator=torch.Generator().manual_seed(1))
    trainer.append(extra)
    assert len(g) == 70 and g.params["means"].shape == (70, 3)
    for key, old in before.items():
        state = trainer.optimizers[key].state[g.params[key]]
        assert torch.equal(state["exp_avg_sq"][:50], old) and (state["exp_avg_sq"][50:] == 0).all()
        assert trainer.optimizers[key].param_groups[0]["params"][0] is g.params[key]
    assert trainer.state["grad2d"] is None  # densification statistics restart at the new size
    render = render_splats(g, cameras, backgrounds=torch.zeros(3), backend="torch")
    trainer.before_backward(2, render)
    render.rgb.mean().backward()
    trainer.after_backward(2, render)
    assert torch.isfinite(g.params["means"]).all() and g.params["means"].grad is None
