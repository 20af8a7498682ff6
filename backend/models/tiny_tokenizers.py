"""Tokenizers for the `tiny` preset, built offline from files that ship inside installed packages.

The real repositories carry their own tokenizer files; the tiny ones are written next to the tiny
weights with `save_pretrained`, so both load through the same `from_pretrained` call.
"""

from __future__ import annotations

import gzip
from functools import lru_cache

CLIP_VOCAB_SIZE = 49408
_CLIP_MERGES = 49152 - 256 - 2  # the BPE table size CLIP was trained with


@lru_cache(maxsize=1)
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    # open_clip ships CLIP's real BPE table, so the tiny tokenizer produces the real token ids.
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:_CLIP_MERGES + 1]
    merges = [tuple(line.split()) for line in lines if line]
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(max_length: int = 77):
    """A `transformers.CLIPTokenizer` with CLIP's real vocabulary (49,408 ids)."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=max_length)
