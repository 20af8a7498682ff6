"""Image captioning: when the user gives no prompt, the caption stands in for it (the text prior,
the text losses and the refiner need words).

Two models behind one wrapper, told apart by their saved config:
* BLIP base (`Salesforce/blip-image-captioning-base`): light, the default;
* BLIP-2 OPT-2.7b (`Salesforce/blip2-opt-2.7b`): Make-It-3D's captioner (and DreamGaussian's
  preprocessing helper), a frozen ViT-g and OPT-2.7B bridged by a Q-Former; `high` uses it.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

NUM_BEAMS = 3
"""BLIP's paper decodes captions with beam search of width 3; deterministic, unlike sampling."""

# The special tokens BLIP adds to bert-base-uncased: "[DEC]" starts every caption (the text
# config's bos_token_id), "[ENC]" marks image-grounded encoding.
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_TINY_WORDS = ("a an the of on in with and is are at to photo picture image view close up white black red "
               "green blue yellow brown grey gray orange pink purple small large old wooden metal plastic "
               "cat dog bird horse car chair table lamp cup mug vase bottle shoe toy robot house tree flower "
               "person man woman child sitting standing next front background top").split()


def _rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3|4] → uint8 [H, W, 3]; RGBA is composited on white, as BLIP saw products
    photographed on white rather than on the black that dropping alpha would leave."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"the image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"the image must be uint8 (0-255), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image must be [H, W, 3] (RGB) or [H, W, 4] (RGBA), got shape {image.shape}")
    if image.shape[2] == 3:
        return image
    alpha = image[..., 3:].astype(np.float32) / 255  # [H, W, 1]
    rgb = image[..., :3].astype(np.float32) * alpha + 255 * (1 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Seed a forked RNG for the duration (the caller's RNG state is restored afterwards)."""
    if seed is None:
        yield
        return
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class Captioner:
    def __init__(self, processor, model):
        self.processor = processor
        self.model = model.eval().requires_grad_(False)
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> Captioner:
        """BLIP or BLIP-2, whichever the folder's config.json names (`model_type`)."""
        from transformers import Blip2ForConditionalGeneration, Blip2Processor, BlipForConditionalGeneration, \
            BlipProcessor

        model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
        if model_type == "blip-2":
            processor, model_class = Blip2Processor.from_pretrained(path), Blip2ForConditionalGeneration
        elif model_type == "blip":
            processor, model_class = BlipProcessor.from_pretrained(path), BlipForConditionalGeneration
        else:
            raise ValueError(f"{path} holds a {model_type!r} model, not a BLIP or BLIP-2 captioner")
        return cls(processor, model_class.from_pretrained(path, dtype=dtype).to(device))

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return (self.model,)

    @torch.no_grad()
    def caption(self, image: np.ndarray, *, max_new_tokens: int = 30, seed: int | None = 0) -> str:
        """image uint8 [H, W, 3|4] → a short caption, stripped (may be empty for the tiny model).

        Decoding is beam search (never sampling), so the same image gives the same caption and
        `seed` cannot change it; it seeds a forked torch RNG around generation (None: no fork) so
        that neither the caller's RNG state nor a future sampling option leaks across calls."""
        from PIL import Image

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        rgb = _rgb(image)
        inputs = self.processor(images=Image.fromarray(np.ascontiguousarray(rgb)), return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)  # [1, 3, 384², or 224² for BLIP-2]
        with _seeded(seed, self.device):
            tokens = self.model.generate(pixel_values=pixel_values, max_new_tokens=max_new_tokens,
                                         num_beams=NUM_BEAMS, do_sample=False)  # [1, T]
        return clean_caption(self.processor.decode(tokens[0], skip_special_tokens=True))


def clean_caption(text: str) -> str:
    """One line of printable text: a byte-level tokenizer (BLIP-2's OPT) cut off by the token limit
    can end inside a UTF-8 character, which decodes to U+FFFD; captions become prompts."""
    text = "".join(c for c in text if c != "\ufffd" and (c.isprintable() or c.isspace()))
    return " ".join(text.split())


def _tiny_vocab() -> list[str]:
    """A small WordPiece vocabulary in bert-base-uncased's style: specials, words, letters and
    their "##" continuations (so any lowercase ascii text tokenizes without [UNK])."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    punctuation = list(".,'-!?")
    words = [w for w in dict.fromkeys(_TINY_WORDS) if w not in letters]
    return _SPECIALS + punctuation + letters + [f"##{c}" for c in letters] + words


def save_tiny_blip(folder: Path) -> None:
    """BLIP captioning's architecture (ViT at 384², BERT-style decoder cross-attending to it) with
    tiny random weights, BLIP's processor settings and a small offline WordPiece tokenizer that
    gets BLIP's extra tokens the way BLIP's own code adds them to bert-base-uncased."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = _tiny_vocab()
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")  # bert-base-uncased's file format
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True,
                              model_max_length=512)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})

    torch.manual_seed(0)
    config = BlipConfig(
        # The generation ids must be the tokenizer's: [DEC] starts the caption, [SEP] ends it.
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=512,
                         bos_token_id=tokenizer.convert_tokens_to_ids("[DEC]"),
                         sep_token_id=tokenizer.sep_token_id, eos_token_id=tokenizer.sep_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        # The real 384² input with 32² patches (144 tokens) keeps the tiny ViT cheap; BLIP's default
        # initializer_range (1e-10) would make the image embedding constant.
        vision_config=dict(image_size=384, patch_size=32, hidden_size=32, intermediate_size=37,
                           num_hidden_layers=2, num_attention_heads=4, initializer_range=0.02),
        projection_dim=32, image_text_hidden_size=32)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    # Component by component, like the real repository (preprocessor_config.json + tokenizer files).
    BlipImageProcessor(size={"height": 384, "width": 384}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


BLIP2_QUERY_TOKENS = 4
"""The tiny BLIP-2's Q-Former queries (32 in the real model)."""


def _tiny_byte_level_bpe() -> tuple[list[str], list[tuple[str, str]]]:
    """OPT's specials, the printable ASCII bytes in GPT-2's byte-level spelling ("Ġ" is the space;
    any ASCII text tokenizes, like the tiny BLIP's vocabulary) and merges spelling " word" for the
    tiny words letter by letter, as GPT-2's BPE builds its words."""
    alphabet = ["Ġ", *(chr(c) for c in range(0x21, 0x7F))]
    vocab, merges = ["<s>", "<pad>", "</s>", "<unk>", *alphabet], []
    for word in dict.fromkeys(_TINY_WORDS):
        piece = "Ġ"
        for letter in word:
            if piece + letter not in vocab:
                merges.append((piece, letter))
                vocab.append(piece + letter)
            piece += letter
    return vocab, merges


def save_tiny_blip2(folder: Path) -> None:
    """BLIP-2 OPT's architecture (ViT, Q-Former, OPT decoder) with tiny random weights, BLIP-2's
    processor settings (224², OpenAI CLIP normalisation, `<image>` placeholders for the queries)
    and a small offline byte-level BPE tokenizer in OPT's layout (vocab.json + merges.txt, with
    `<s>`, `<pad>`, `</s>`, `<unk>` at OPT's ids 0–3)."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor, \
        GPT2Tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _tiny_byte_level_bpe()
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = GPT2Tokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), bos_token="</s>",
                              eos_token="</s>", unk_token="<unk>", pad_token="<pad>", add_bos_token=True)
    images = BlipImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.48145466, 0.4578275, 0.40821073],
                                image_std=[0.26862954, 0.26130258, 0.27577711])
    processor = Blip2Processor(images, tokenizer, num_query_tokens=BLIP2_QUERY_TOKENS)
    tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    torch.manual_seed(0)
    config = Blip2Config(
        vision_config=dict(image_size=224, patch_size=32, intermediate_size=37, **tiny),
        qformer_config=dict(intermediate_size=37, encoder_hidden_size=32, vocab_size=len(tokenizer), **tiny),
        text_config=dict(model_type="opt", vocab_size=len(tokenizer), ffn_dim=37, word_embed_proj_dim=32,
                         max_position_embeddings=128, bos_token_id=2, eos_token_id=2, pad_token_id=1, **tiny),
        num_query_tokens=BLIP2_QUERY_TOKENS, image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    Blip2ForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    images.save_pretrained(folder)  # preprocessor_config.json, as the repository has it
