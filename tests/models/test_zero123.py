import math

import pytest
import torch

from backend.geometry.cameras import OrbitPose
from backend.models import records
from backend.models.zero123 import IMAGE_SIZE, Zero123


@pytest.fixture(scope="module")
def zero123(tiny_registry) -> Zero123:
    return tiny_registry.get(records.NOVEL_VIEW)


@pytest.fixture(scope="module")
def reference(zero123):
    image = torch.rand(1, 3, 200, 200, generator=torch.Generator().manual_seed(1))
    return zero123.encode_reference(image, elevation_deg=10.0)


def poses(*pairs) -> OrbitPose:
    elevation, azimuth = zip(*pairs)
    return OrbitPose(torch.tensor(elevation), torch.tensor(azimuth), torch.zeros(len(pairs)))


def test_reference_embedding_shapes(zero123, reference):
    width = zero123.camera_projection.config.embedding_dim
    assert reference.clip.shape == (1, 1, width)
    assert reference.latent.shape == (1, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8)  # the real VAE factor
    assert reference.clip.dtype == torch.float32 and reference.elevation_deg == 10.0
    with pytest.raises(ValueError, match="one reference image"):
        zero123.encode_reference(torch.rand(2, 3, 64, 64))


def test_classifier_free_guidance_drops_both_conditions(zero123, reference):
    context, concat = zero123._conditions(reference, poses((0.0, 30.0), (5.0, 90.0)))
    assert context.shape[0] == concat.shape[0] == 4
    assert context[2:].abs().sum() == 0 and concat[2:].abs().sum() == 0
    assert context[:2].abs().sum() > 0 and torch.equal(concat[0], reference.latent[0])
    # Different poses give different contexts: the camera reaches the cross-attention.
    assert not torch.allclose(context[0], context[1])


def test_pose_embedding_variants(zero123, reference):
    relative = poses((20.0, 90.0))
    plain = zero123.pose_embedding(reference, relative)[0, 0]
    assert plain.tolist() == pytest.approx([math.radians(-20.0), 1.0, 0.0, 0.0], abs=1e-6)
    zero123.stable = True
    try:
        stable = zero123.pose_embedding(reference, relative)[0, 0]
    finally:
        zero123.stable = False
    assert stable[3].item() == pytest.approx(math.radians(90.0 - 10.0))  # polar angle of the input view


def test_sds_gradient_reaches_the_rendered_image(zero123, reference):
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    result = zero123.sds(images, reference, poses((0.0, 45.0), (-10.0, 180.0)), step_ratio=0.5,
                         generator=torch.Generator().manual_seed(3))
    result.loss.backward()
    assert result.loss.ndim == 0 and torch.isfinite(result.loss)
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0
    assert result.timesteps.tolist() == [500, 500]


def test_sds_loss_gradient_is_weighted_noise_residual(zero123, reference):
    """∂loss/∂latents must be w(t)(ε̂ − ε): check by differentiating w.r.t. the latents."""
    latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    zero123_encode = zero123.encode_images
    zero123.encode_images = lambda images, generator=None: latents
    try:
        result = zero123.sds(torch.rand(1, 3, 64, 64), reference, poses((0.0, 90.0)), step_ratio=0.25,
                             generator=torch.Generator().manual_seed(5))
    finally:
        zero123.encode_images = zero123_encode
    result.loss.backward()
    t = result.timesteps
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))  # the same draw
    noisy = zero123._scheduler().add_noise(latents.detach(), noise, t)
    context, concat = zero123._conditions(reference, poses((0.0, 90.0)))
    with torch.no_grad():
        predicted = zero123._guided_noise(noisy, t, context, concat, 5.0)
    expected = (1 - zero123.alphas_cumprod[t]).view(-1, 1, 1, 1) * (predicted - noise)
    torch.testing.assert_close(latents.grad, expected, rtol=1e-4, atol=1e-5)


def test_sds_timestep_schedule(zero123):
    assert zero123.sds_timesteps(1, step_ratio=0.0).item() == 980  # clipped to t_range's top
    assert zero123.sds_timesteps(1, step_ratio=1.0).item() == 20
    random = zero123.sds_timesteps(64, t_range=(0.2, 0.6), generator=torch.Generator().manual_seed(0))
    assert random.min() >= 200 and random.max() <= 600 and len(random.unique()) > 10
    with pytest.raises(ValueError, match="t_range"):
        zero123.sds_timesteps(1, t_range=(0.5, 1.2))


def test_sample_is_deterministic_with_a_seed(zero123, reference):
    relative = poses((20.0, 30.0), (-10.0, 90.0))
    first = zero123.sample(reference, relative, steps=3, generator=torch.Generator().manual_seed(7))
    again = zero123.sample(reference, relative, steps=3, generator=torch.Generator().manual_seed(7))
    other = zero123.sample(reference, relative, steps=3, generator=torch.Generator().manual_seed(8))
    assert first.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and first.dtype == torch.float32
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_refine_runs_the_strength_fraction_of_steps(zero123, reference):
    steps = []
    images = torch.rand(1, 3, 96, 96)
    out = zero123.refine(images, reference, poses((0.0, 60.0)), strength=0.3, steps=10,
                         generator=torch.Generator().manual_seed(0), on_step=lambda i, n: steps.append((i, n)))
    assert out.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert steps == [(i, 3) for i in range(1, 4)]
    with pytest.raises(ValueError, match="strength"):
        zero123.refine(images, reference, poses((0.0, 60.0)), strength=0.0)
    with pytest.raises(ValueError, match="poses"):
        zero123.refine(images, reference, poses((0.0, 60.0), (0.0, 90.0)))


def test_a_raising_step_callback_stops_sampling(zero123, reference):
    seen = []

    def cancel_after_two(step, total):
        seen.append(step)
        if step == 2:
            raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        zero123.sample(reference, poses((0.0, 30.0)), steps=20, on_step=cancel_after_two)
    assert seen == [1, 2]


def test_bad_images_are_rejected(zero123, reference):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        zero123.sds(torch.rand(1, 4, 64, 64), reference, poses((0.0, 30.0)))
    with pytest.raises(ValueError, match="floating point"):
        zero123.encode_images(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
