import numpy as np
import pytest
import torch

from backend.models import records
from backend.models.depth import model_input_size


@pytest.fixture(scope="module")
def depth(tiny_registry):
    return tiny_registry.get(records.DEPTH)


@pytest.fixture(scope="module")
def clip(tiny_registry):
    return tiny_registry.get(records.CLIP)


@pytest.mark.parametrize("size", [(256, 256), (480, 640), (1080, 720), (100, 900)])
def test_input_size_matches_the_transformers_processor(tiny_registry, size):
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(tiny_registry.folder(records.DEPTH.spec))
    image = np.zeros((*size, 3), np.uint8)
    expected = processor(images=image, return_tensors="pt").pixel_values.shape[-2:]
    assert model_input_size(*size) == tuple(expected)


def test_depth_shapes_range_and_determinism(depth):
    images = torch.rand(2, 3, 120, 90, generator=torch.Generator().manual_seed(0))
    first, again = depth.predict(images), depth.predict(images)
    assert first.shape == (2, 120, 90) and first.dtype == torch.float32
    assert (first >= 0).all() and torch.isfinite(first).all()
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        depth.predict(torch.rand(1, 1, 32, 32))


def test_clip_embeddings_are_unit_and_the_image_path_is_differentiable(clip):
    images = torch.rand(2, 3, 100, 100, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    image_embeddings = clip.encode_images(images)
    text_embeddings = clip.encode_texts(["a red chair", "a photo of a cat", ""])
    assert image_embeddings.shape == (2, clip.model.text_projection.shape[1])
    assert text_embeddings.shape == (3, image_embeddings.shape[1])
    torch.testing.assert_close(image_embeddings.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(text_embeddings.norm(dim=-1), torch.ones(3))
    similarity = clip.similarity(image_embeddings, text_embeddings)
    assert similarity.shape == (2, 3) and (similarity.abs() <= 1 + 1e-5).all()
    (1 - similarity[:, 0]).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.model.parameters())  # weights stay frozen


def test_clip_text_is_deterministic_and_distinguishes_texts(clip):
    a, b = clip.encode_texts(["a red chair"]), clip.encode_texts(["a red chair"])
    c = clip.encode_texts(["a green dragon"])
    assert torch.equal(a, b) and not torch.allclose(a, c)
    with pytest.raises(ValueError, match="no texts"):
        clip.encode_texts([])
