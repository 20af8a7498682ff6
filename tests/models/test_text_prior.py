"""Stage 1's text prior: Stable Diffusion 1.5 score distillation under the prompt, on the
refiner's own components (tiny SD 1.5 of the real architecture)."""

import pytest
import torch

from backend.geometry.cameras import OrbitPose
from backend.models import records
from backend.models.text_prior import DIRECTIONS, IMAGE_SIZE, DirectionalPrompts, TextPrior, view_direction


@pytest.fixture(scope="module")
def refiner(tiny_registry):
    return tiny_registry.get(records.REFINER)


@pytest.fixture(scope="module")
def prior(refiner) -> TextPrior:
    return refiner.text_prior


def poses(*pairs) -> OrbitPose:
    elevation, azimuth = zip(*pairs)
    return OrbitPose(torch.tensor(elevation), torch.tensor(azimuth), torch.full((len(pairs),), 2.0))


def test_the_prior_runs_on_the_refiners_components_without_a_second_copy(refiner, prior):
    assert prior.unet is refiner.pipe.unet and prior.vae is refiner.pipe.vae
    assert prior.text_encoder is refiner.pipe.text_encoder and refiner.text_prior is prior
    assert prior.num_train_timesteps == 1000


def test_view_directions_follow_dreamfusion():
    assert [view_direction(0, a) for a in (0, 40, -40, 90, -120, 180, 150, -150, 360)] == \
        ["front", "front", "front", "side", "side", "back", "back", "back", "front"]
    assert view_direction(70, 180) == "overhead" and view_direction(-70, 0) == "front"


def test_each_pose_gets_its_directions_prompt(prior):
    prompts = DirectionalPrompts(prior, "a red mug")
    assert prompts.texts == [f"a red mug, {d} view" for d in DIRECTIONS]
    text = prompts.for_poses(poses((0.0, 10.0), (0.0, 180.0), (0.0, 90.0), (0.0, -10.0)))
    assert text.shape[0] == 4 and prompts.unconditional.shape == (1, *text.shape[1:])
    assert torch.equal(text[0], text[3]) and not torch.equal(text[0], text[1]) and not torch.equal(text[1], text[2])
    plain = DirectionalPrompts(prior, "a red mug", view_dependent=False)
    assert plain.texts == ["a red mug"] and torch.equal(*plain.for_poses(poses((0.0, 0.0), (0.0, 180.0))))
    with pytest.raises(ValueError, match="needs a prompt"):
        DirectionalPrompts(prior, "  ")


def test_text_sds_gradient_reaches_the_rendered_image(prior):
    prompts = DirectionalPrompts(prior, "a wooden chair")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    angles = poses((0.0, 45.0), (10.0, 180.0))
    result = prior.sds(images, prompts.for_poses(angles), prompts.unconditional, step_ratio=0.5,
                       generator=torch.Generator().manual_seed(3))
    result.loss.backward()
    assert result.loss.ndim == 0 and torch.isfinite(result.loss) and result.timesteps.tolist() == [500, 500]
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="2 images but 1 text"):
        prior.sds(images, prompts.for_poses(poses((0.0, 0.0))), prompts.unconditional)


def test_text_sds_gradient_is_the_guided_noise_residual(prior):
    """∂loss/∂latents must be w(t)(ε̂ − ε) with ε̂ the classifier-free-guided prediction under the
    prompt: checked by differentiating w.r.t. the latents, as for Zero123."""
    prompts = DirectionalPrompts(prior, "a wooden chair", view_dependent=False)
    size = IMAGE_SIZE // 8
    latents = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    encode = prior.encode_images
    prior.encode_images = lambda images, generator=None: latents
    try:
        text = prompts.for_poses(poses((0.0, 90.0)))
        result = prior.sds(torch.rand(1, 3, 64, 64), text, prompts.unconditional, guidance_scale=100.0,
                           step_ratio=0.25, generator=torch.Generator().manual_seed(5))
    finally:
        prior.encode_images = encode
    result.loss.backward()
    t = result.timesteps
    assert t.tolist() == [750]
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))  # the same draw
    alpha = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = alpha.sqrt() * latents.detach() + (1 - alpha).sqrt() * noise
    with torch.no_grad():
        conditional = prior.unet(noisy, t, encoder_hidden_states=text).sample
        unconditional = prior.unet(noisy, t, encoder_hidden_states=prompts.unconditional).sample
    expected = (1 - alpha) * (unconditional + 100.0 * (conditional - unconditional) - noise)
    assert expected.abs().mean() > 0.1  # CFG 100 amplifies float noise of batched vs separate U-Net calls
    torch.testing.assert_close(latents.grad, expected, rtol=1e-3, atol=1e-3)
    # The prompt reaches the gradient: another prompt pushes the latents elsewhere.
    latents.grad = None
    other = DirectionalPrompts(prior, "a blue car", view_dependent=False)
    prior.encode_images = lambda images, generator=None: latents
    try:
        prior.sds(torch.rand(1, 3, 64, 64), other.for_poses(poses((0.0, 90.0))), other.unconditional,
                  guidance_scale=100.0, step_ratio=0.25, generator=torch.Generator().manual_seed(5)).loss.backward()
    finally:
        prior.encode_images = encode
    assert not torch.allclose(latents.grad, expected)


def test_renders_are_encoded_at_stable_diffusions_resolution(prior):
    latents = prior.encode_images(torch.rand(1, 3, 96, 96))
    assert latents.shape == (1, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        prior.encode_images(torch.rand(3, 64, 64))
