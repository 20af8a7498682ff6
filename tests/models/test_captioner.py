import json

import numpy as np
import pytest
import torch

from backend.models.captioner import BLIP2_QUERY_TOKENS, Captioner, _rgb, clean_caption, save_tiny_blip, save_tiny_blip2


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-blip")
    save_tiny_blip(folder)
    return folder


@pytest.fixture(scope="module")
def captioner(tiny_folder):
    return Captioner.from_pretrained(tiny_folder)


def _noise(height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:  # uint8 [H, W, 3]
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_the_tiny_folder_is_laid_out_like_the_real_repository_and_its_ids_agree(tiny_folder):
    from transformers import BlipProcessor

    for name in ("config.json", "preprocessor_config.json", "vocab.txt", "tokenizer_config.json",
                 "model.safetensors"):
        assert (tiny_folder / name).is_file(), name
    processor = BlipProcessor.from_pretrained(tiny_folder)
    assert processor.image_processor.size == {"height": 384, "width": 384}
    tokenizer = processor.tokenizer
    text = json.loads((tiny_folder / "config.json").read_text())["text_config"]
    # generate() starts from bos ([DEC]), stops at sep and pads with pad: all must be the tokenizer's.
    assert tokenizer.bos_token == "[DEC]" and text["bos_token_id"] == tokenizer.bos_token_id
    assert text["sep_token_id"] == tokenizer.sep_token_id and text["pad_token_id"] == tokenizer.pad_token_id
    assert text["vocab_size"] == len(tokenizer)
    ids = tokenizer("a photo of a red chair, xyz!", add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids


def test_a_caption_is_a_stripped_deterministic_string(captioner):
    image = _noise()
    caption = captioner.caption(image)
    assert isinstance(caption, str) and caption == caption.strip() and caption
    assert captioner.caption(image.copy()) == caption
    assert captioner.caption(image, seed=1) == caption  # beam search: the seed cannot change it
    assert captioner.caption(np.full((60, 80, 3), 255, np.uint8)) != caption  # the image reaches the decoder


def test_max_new_tokens_bounds_the_caption(captioner):
    assert len(captioner.caption(_noise(), max_new_tokens=2).split()) <= 2
    with pytest.raises(ValueError, match="max_new_tokens"):
        captioner.caption(_noise(), max_new_tokens=0)


def test_the_callers_rng_is_left_alone(captioner):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    captioner.caption(_noise(), max_new_tokens=3, seed=7)
    assert torch.equal(torch.get_rng_state(), state)


def test_rgba_is_composited_on_white(captioner):
    rgba = np.dstack([_noise(), np.zeros((60, 80), np.uint8)])  # fully transparent
    white = np.full((60, 80, 3), 255, np.uint8)
    assert captioner.caption(rgba) == captioner.caption(white)
    pixels = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 100, 200, 128]]], np.uint8)
    np.testing.assert_array_equal(_rgb(pixels), [[[10, 20, 30], [255, 255, 255], [127, 177, 227]]])


@pytest.mark.parametrize("image, message", [
    (np.zeros((16, 16, 3), np.float32), "uint8"),
    (np.zeros((16, 16, 2), np.uint8), r"\[H, W, 3\]"),
    (np.zeros((16, 16), np.uint8), r"\[H, W, 3\]"),
    (np.zeros((16, 0, 3), np.uint8), r"\[H, W, 3\]"),
    ("image.png", "numpy array"),
])
def test_bad_images_are_rejected(captioner, image, message):
    with pytest.raises(ValueError, match=message):
        captioner.caption(image)


@pytest.fixture(scope="module")
def blip2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-blip2")
    save_tiny_blip2(folder)
    return folder


def test_the_tiny_blip2_is_laid_out_like_the_real_repository(blip2_folder):
    from transformers import Blip2Processor

    for name in ("config.json", "preprocessor_config.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                 "model.safetensors"):
        assert (blip2_folder / name).is_file(), name
    config = json.loads((blip2_folder / "config.json").read_text())
    assert config["model_type"] == "blip-2" and config["text_config"]["model_type"] == "opt"
    processor = Blip2Processor.from_pretrained(blip2_folder)
    tokenizer = processor.tokenizer
    # OPT's ids: <pad> 1, </s> 2 starts and ends a caption; the queries' placeholder is the config's.
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (1, 2, 2)
    assert config["image_token_index"] == tokenizer.convert_tokens_to_ids("<image>")
    assert config["num_query_tokens"] == processor.num_query_tokens == BLIP2_QUERY_TOKENS
    assert processor.image_processor.size == {"height": 224, "width": 224}
    ids = tokenizer(" a photo of a red chair, xyz!", add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(ids)[:3] == ["Ġa", "Ġphoto", "Ġof"]  # the merges spell the words


def test_blip2_captions_through_the_same_wrapper(blip2_folder):
    from transformers import Blip2ForConditionalGeneration

    blip2 = Captioner.from_pretrained(blip2_folder)
    assert isinstance(blip2.model, Blip2ForConditionalGeneration)
    image = _noise()
    caption = blip2.caption(image)
    assert isinstance(caption, str) and caption == clean_caption(caption) and caption
    assert blip2.caption(image.copy()) == caption and caption.isascii()
    assert len(blip2.caption(image, max_new_tokens=3)) <= 3 * max(len(t) for t in caption.split()) + 2


def test_a_folder_of_another_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ValueError, match="not a BLIP or BLIP-2 captioner"):
        Captioner.from_pretrained(tmp_path)


def test_captions_are_cleaned_into_one_printable_line():
    assert clean_caption("  a red\nmug \ufffd\x07 on a table\ufffd ") == "a red mug on a table"
    assert clean_caption("\ufffd\ufffd") == ""
