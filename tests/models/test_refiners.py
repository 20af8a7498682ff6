import pytest
import torch

from backend.models import records
from backend.models.refiners import FIXER_TIMESTEP


@pytest.fixture(scope="module")
def refiner(tiny_registry):
    return tiny_registry.get(records.REFINER)


@pytest.fixture(scope="module")
def fixer(tiny_registry):
    return tiny_registry.get(records.SD_TURBO)


def test_prompt_refiner_shapes_range_and_determinism(refiner):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    first = refiner.refine(images, "a red chair", strength=0.5, steps=4, generator=torch.Generator().manual_seed(1))
    again = refiner.refine(images, "a red chair", strength=0.5, steps=4, generator=torch.Generator().manual_seed(1))
    other = refiner.refine(images, "a blue car", strength=0.5, steps=4, generator=torch.Generator().manual_seed(1))
    assert first.shape == images.shape and first.dtype == torch.float32
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again)
    assert not torch.equal(first, other)  # the prompt reaches the UNet


def test_prompt_refiner_reports_every_step_and_can_be_stopped(refiner):
    steps = []
    refiner.refine(torch.rand(1, 3, 32, 32), "a cat", strength=0.5, steps=8, on_step=lambda i, n: steps.append((i, n)))
    assert steps and [i for i, _ in steps] == list(range(1, len(steps) + 1))
    assert all(n == len(steps) for _, n in steps)

    def stop(step, total):
        raise InterruptedError

    with pytest.raises(InterruptedError):
        refiner.refine(torch.rand(1, 3, 32, 32), "a cat", strength=0.5, steps=8, on_step=stop)


def test_sd_turbo_fixer_is_one_step_at_difix_noise_level(fixer):
    seen = []
    forward = fixer.pipe.unet.forward

    def spy(sample, timestep, *args, **kwargs):
        seen.append(float(timestep))
        return forward(sample, timestep, *args, **kwargs)

    fixer.pipe.unet.forward = spy
    try:
        out = fixer.fix(torch.rand(1, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    finally:
        fixer.pipe.unet.forward = forward
    assert seen == [FIXER_TIMESTEP]
    assert out.shape == (1, 3, 64, 64) and 0 <= out.min() and out.max() <= 1


def test_refiner_loads_half_precision_files_as_float32_on_cpu(refiner, tiny_registry):
    folder = tiny_registry.folder(records.REFINER.spec)
    assert (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert refiner.pipe.unet.dtype == torch.float32


def test_bad_input_is_rejected(refiner):
    with pytest.raises(ValueError, match="multiples of 8"):
        refiner.refine(torch.rand(1, 3, 30, 30), "a cat")
    with pytest.raises(ValueError, match="strength"):
        refiner.refine(torch.rand(1, 3, 32, 32), "a cat", strength=1.5)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        refiner.refine(torch.rand(3, 32, 32), "a cat")
