"""Difix and Difix-ref on tiny weights of the published layout: the inference path (one UNet call
at t = 199 on the render's own latent, no noise drawn, the reference reaching the UNet), the VAE's
skip connections and LoRA merge, and the joint attention over (render, reference)."""

import pytest
import torch

from backend.models import records
from backend.models.difix import (
    DIFIX_TIMESTEP,
    JointViewsAttention,
    merge_lora,
    skip_conv_channels,
)
from backend.stages.fixing import FIXER_RECORDS, fixer_record, load_fixer


@pytest.fixture(scope="module")
def difix(tiny_registry):
    return tiny_registry.get(records.DIFIX)


@pytest.fixture(scope="module")
def difix_ref(tiny_registry):
    return tiny_registry.get(records.DIFIX_REF)


def _images(n=2, size=64, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _spy_unet(fixer, seen):
    forward = fixer.unet.forward

    def spy(sample, timestep, *args, **kwargs):
        seen.append((tuple(sample.shape), timestep.tolist(), sample.clone()))
        return forward(sample, timestep, *args, **kwargs)

    return forward, spy


def test_one_unet_step_at_t199_on_the_renders_latent_without_noise(difix, monkeypatch):
    images = _images()
    seen = []
    forward, spy = _spy_unet(difix, seen)
    monkeypatch.setattr(difix.unet, "forward", spy)

    def no_noise(*args, **kwargs):
        raise AssertionError("Difix must not draw noise")

    monkeypatch.setattr(torch, "randn", no_noise)
    monkeypatch.setattr(torch, "randn_like", no_noise)
    out = difix.fix(images)
    assert out.shape == images.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    (shape, timesteps, latent), = seen
    assert shape == (2, 4, 8, 8) and timesteps == [DIFIX_TIMESTEP] * 2
    # The UNet's input is exactly the scaled posterior mean of the render: no noise was added.
    from backend.models.difix import encode_with_skips

    with torch.no_grad():
        mean, _ = encode_with_skips(difix.vae, images * 2 - 1)
    assert torch.allclose(latent, mean * difix.vae.config.scaling_factor, atol=1e-6)
    monkeypatch.undo()
    assert torch.equal(difix.fix(images), out)  # deterministic: the same render gets the same fix


def test_plain_difix_ignores_references(difix):
    images = _images()
    assert not difix.uses_reference
    assert torch.equal(difix.fix(images), difix.fix(images, _images(seed=5)))


def test_difix_ref_passes_the_reference_through_the_unet(difix_ref, monkeypatch):
    images, refs = _images(), _images(seed=7, size=32)  # references are resized to the renders' size
    seen = []
    forward, spy = _spy_unet(difix_ref, seen)
    monkeypatch.setattr(difix_ref.unet, "forward", spy)
    out = difix_ref.fix(images, refs)
    (shape, timesteps, _), = seen
    assert shape == (4, 4, 8, 8) and timesteps == [DIFIX_TIMESTEP] * 4  # (render, reference) pairs
    assert out.shape == images.shape
    monkeypatch.undo()
    other = difix_ref.fix(images, _images(seed=8, size=32))
    assert (out - other).abs().max() > 1e-4  # the reference changes the fix: it reached the UNet
    # Each pair attends only within itself: fixing one pair alone gives the same result.
    alone = difix_ref.fix(images[1:], refs[1:])
    assert torch.allclose(alone, out[1:], atol=1e-5)


def test_difix_ref_refuses_mismatched_references_and_bad_images(difix_ref, difix):
    with pytest.raises(ValueError, match="2 images need 2 references"):
        difix_ref.fix(_images(), _images(n=1))
    with pytest.raises(ValueError, match="multiples of 8"):
        difix.fix(torch.rand(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        difix.fix(torch.rand(3, 32, 32))


def test_the_vae_skip_connections_carry_the_render(difix):
    """The decoder adds the encoder's activations: decoding the same latent with the skips of
    another image changes the output (what lets Difix keep the render's detail)."""
    from backend.models.difix import decode_with_skips, encode_with_skips

    with torch.no_grad():
        mean, skips = encode_with_skips(difix.vae, _images(n=1) * 2 - 1)
        _, other = encode_with_skips(difix.vae, _images(n=1, seed=3) * 2 - 1)
        own = decode_with_skips(difix.vae, mean, skips)
        swapped = decode_with_skips(difix.vae, mean, other)
        none = decode_with_skips(difix.vae, mean, skips, use_skips=False)
    assert own.shape == (1, 3, 64, 64)
    assert (own - swapped).abs().max() > 1e-4 and (own - none).abs().max() > 1e-4


def test_skip_channels_match_stable_diffusions_vae():
    assert skip_conv_channels([128, 256, 512, 512]) == [(512, 512), (256, 512), (128, 512), (128, 256)]


def test_lora_merge_equals_peft_forward_for_convolutions_and_linear_layers():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1)
    down, up = torch.nn.Conv2d(6, 4, 3, padding=1, bias=False), torch.nn.Conv2d(4, 5, 1, bias=False)
    linear, l_down, l_up = torch.nn.Linear(7, 3), torch.nn.Linear(7, 4, bias=False), torch.nn.Linear(4, 3, bias=False)
    state = {"c.base_layer.weight": conv.weight, "c.base_layer.bias": conv.bias,
             "c.lora_A.vae_skip.weight": down.weight, "c.lora_B.vae_skip.weight": up.weight,
             "l.base_layer.weight": linear.weight, "l.base_layer.bias": linear.bias,
             "l.lora_A.vae_skip.weight": l_down.weight, "l.lora_B.vae_skip.weight": l_up.weight,
             "plain.weight": torch.ones(2)}
    merged = merge_lora({k: v.detach() for k, v in state.items()})
    assert set(merged) == {"c.weight", "c.bias", "l.weight", "l.bias", "plain.weight"}
    x, v = torch.randn(2, 6, 9, 9), torch.randn(2, 7)
    scale = 8 / 4  # PEFT: lora_alpha 8 over rank 4
    with torch.no_grad():
        expected = conv(x) + scale * up(down(x))
        got = torch.nn.functional.conv2d(x, merged["c.weight"], merged["c.bias"], padding=1)
        assert torch.allclose(got, expected, atol=1e-5)
        expected = linear(v) + scale * l_up(l_down(v))
        assert torch.allclose(torch.nn.functional.linear(v, merged["l.weight"], merged["l.bias"]), expected, atol=1e-5)
    with pytest.raises(ValueError, match="incomplete LoRA"):
        merge_lora({"c.base_layer.weight": conv.weight, "c.lora_A.vae_skip.weight": down.weight})
    with pytest.raises(ValueError, match="another adapter"):
        merge_lora({"c.lora_A.default.weight": down.weight})


def test_joint_attention_mixes_within_a_pair_only():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    attention = Attention(16, heads=2, dim_head=8)
    attention.set_processor(JointViewsAttention(views=2))
    tokens = torch.randn(4, 5, 16)  # two (render, reference) pairs of 5 tokens each
    with torch.no_grad():
        both = attention(tokens)
        first_pair = attention(tokens[:2])
        changed = tokens.clone()
        changed[1] += 1  # the first pair's reference
        after = attention(changed)
    assert torch.allclose(both[:2], first_pair, atol=1e-6)
    assert (after[0] - both[0]).abs().max() > 1e-4  # the render attends to its reference
    assert torch.allclose(after[2:], both[2:], atol=1e-6)  # the other pair is untouched


def test_every_fixer_option_value_loads_its_model(tiny_registry):
    from protocol.options import option

    assert set(option("fixer").values) == {"off", *FIXER_RECORDS}
    assert fixer_record("off") is None and load_fixer(tiny_registry, "off") is None
    for name in FIXER_RECORDS:
        fixer = load_fixer(tiny_registry, name)
        out = fixer.fix(_images(n=1), _images(n=1, seed=2))
        assert out.shape == (1, 3, 64, 64), name
    assert load_fixer(tiny_registry, "difix-ref").uses_reference and not load_fixer(tiny_registry, "difix").uses_reference
    with pytest.raises(ValueError, match="unknown fixer"):
        fixer_record("difix-xl")
