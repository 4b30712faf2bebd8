"""`synthetic`: the embedded default dataset, MOSI-shaped, with planted modality strengths.

Generated deterministically from `data_seed` (default 0, independent of the run seed, so
every run seed sees the same data, as with a real dataset). Splits 1284/229/686 (MOSI).

Generative model, per sample i (all draws from one numpy Generator(data_seed)):

    z_t, z_a, z_v ~ N(0, 1) independent latent sentiment cues, eps ~ N(0, 1)
    y_raw = 1.2 z_t + 0.7 z_a + 0.35 z_v + 0.4 z_t z_a + 0.3 eps
    y     = clip(round(5 y_raw) / 5, -3, 3)          # MOSI's 0.2 grid; ~5% exact zeros

Planted strengths: text (1.2) > audio (0.7) > vision (0.35), plus one cross-modal
interaction term (0.4 z_t z_a), so exact Shapley values of a trained model should rank
text > audio > vision.

- Text, token view (BERT models): [CLS] w_1..w_n [SEP] [PAD].., L = 50, n ~ U{6..40};
  ids use the bert-base-uncased conventions ([PAD]=0, [CLS]=101, [SEP]=102) and content
  ids 1000..1999 (1,000 words, vocab_size 2048). Ids 1000..1199 are sentiment words with
  valence v_w = ±U(0.4, 1); the rest are neutral. Each content word is a sentiment word
  with probability 0.4, chosen with probability proportional to exp(2 z_t v_w).
- Text, feature view (feature models such as MulT): a fixed random embedding of the same
  tokens, E[w] = g_w + v_w s with g_w ~ N(0, I_768) and a fixed direction s ~ N(0, 0.25 I);
  E[PAD] = 0. Shape (N, 50, 768), like MMSA's `text`.
- Audio: T = 50, d = 5, true length L_a ~ U{20..50}; x_k = z_a u_a + N(0, 1) for k < L_a,
  zeros after; u_a ~ N(0, I_5) fixed.
- Vision: T = 50, d = 20, L_v ~ U{20..50}; x_k = 0.5 z_v u_v + N(0, 1.5^2) for k < L_v,
  zeros after; u_v ~ N(0, I_20) fixed.
- ids "syn_<split>_<video>$_$<clip>", 12 clips per video, no video in two splits.
- Raw text (`Split.raw_text`, for `text_input="raw_text"` models): the content tokens as
  words from a fixed list of 1,000 pseudo-words, one per content id (`WORDS[id - 1000]`, two
  consonant-vowel syllables, all distinct), joined by spaces; [CLS]/[SEP]/[PAD] are not
  written. So the text is the token view read back, and a real tokenizer maps distinct words
  to distinct word pieces. Made from the ids after every random draw: the tensors above are
  the same with or without it. `load_synthetic(text_input="raw_text", text_encoder=DIR)`
  replaces the token view by the raw text tokenized by DIR's tokenizer (dynamic padding); a
  random-init encoder keeps the synthetic ids and says so in `info.source["text_source"]`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np
import torch

from bench.data import register_dataset
from bench.data.base import DatasetInfo, MSAData, Split
from bench.data.tokenize import RAW_TEXT_MAX_LENGTH, encoder_tokenizer, special_ids, tokenize_texts, vocab_size

SPLIT_SIZES = {"train": 1284, "valid": 229, "test": 686}  # CMU-MOSI
TEXT_LEN, AUDIO_T, VISION_T = 50, 50, 50
TEXT_DIM, AUDIO_DIM, VISION_DIM = 768, 5, 20
VOCAB_SIZE = 2048
PAD_ID, CLS_ID, SEP_ID = 0, 101, 102
CONTENT_IDS = np.arange(1000, 2000)
N_SENTIMENT = 200
WEIGHTS = {"t": 1.2, "a": 0.7, "v": 0.35, "ta": 0.4, "noise": 0.3}
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]  # 70 consonant-vowel syllables
WORDS = tuple(_SYLLABLES[k % 70] + _SYLLABLES[k // 70] for k in range(len(CONTENT_IDS)))  # one per content id


@register_dataset("synthetic", "embedded MOSI-shaped data with planted strengths text > audio > vision (no files)")
def load_synthetic(data_seed: int = 0, text_input: Optional[str] = None, text_encoder: Optional[str] = None,
                   text_max_length: Optional[int] = None, data_root: Optional[str] = None,
                   setting: Optional[str] = None, strict: bool = False, verify_checksum: bool = True,
                   data_format: Optional[str] = None) -> MSAData:
    """Embedded synthetic data (deterministic from `data_seed`). The file options every loader
    takes (data_root, setting, strict, verify_checksum, data_format) have no file to act on here."""
    data = _generate(int(data_seed))
    return with_raw_text_ids(data, text_encoder, text_max_length) if text_input == "raw_text" else data


def raw_text(ids: np.ndarray) -> list[str]:
    """The content tokens of each row of synthetic ids as words (specials dropped)."""
    return [" ".join(WORDS[int(i) - int(CONTENT_IDS[0])] for i in row if CONTENT_IDS[0] <= i <= CONTENT_IDS[-1])
            for row in ids]


def with_raw_text_ids(data: MSAData, text_encoder: Optional[str], max_length: Optional[int]) -> MSAData:
    """A copy whose token view is the raw text tokenized by the encoder's tokenizer, or (no
    tokenizer) the synthetic ids with the fallback recorded. The cached data is not changed."""
    choice = encoder_tokenizer(text_encoder)
    if choice.path is None:
        note = f"synthetic token ids (fallback from raw_text: {choice.note})"
        return dataclasses.replace(data, info=dataclasses.replace(data.info, source={**data.info.source,
                                                                                   "text_source": note}))
    length = int(max_length or RAW_TEXT_MAX_LENGTH)
    splits = {}
    for name in ("train", "valid", "test"):
        split = data.split(name)
        tok = tokenize_texts(choice.path, length, tuple(split.raw_text or ()))
        tensors = {**split.tensors, **tok, "text_lengths": tok["text_mask"].sum(1)}
        splits[name] = dataclasses.replace(split, tensors=tensors, special_ids=special_ids(choice.path),
                                           trim_text=True)
    info = dataclasses.replace(
        data.info, vocab_size=vocab_size(choice.path), special_ids=special_ids(choice.path),
        seq_lens={**data.info.seq_lens, "t": int(splits["train"].tensors["text_ids"].shape[1])},
        source={**data.info.source, "text_source": f"raw_text tokenized by the {choice.note} "
                                                   f"(max {length} tokens, dynamic padding)"},
    )
    return MSAData(info, splits["train"], splits["valid"], splits["test"])


@functools.lru_cache(maxsize=2)
def _generate(data_seed: int) -> MSAData:
    rng = np.random.default_rng(data_seed)
    n = sum(SPLIT_SIZES.values())
    valence, embedding, u_a, u_v = _world(rng)

    # latents and labels
    z = rng.normal(0.0, 1.0, (n, 3))
    eps = rng.normal(0.0, 1.0, n)
    w = WEIGHTS
    y_raw = w["t"] * z[:, 0] + w["a"] * z[:, 1] + w["v"] * z[:, 2] + w["ta"] * z[:, 0] * z[:, 1] + w["noise"] * eps
    labels = np.round(np.clip(np.round(5.0 * y_raw) / 5.0, -3.0, 3.0), 1)

    ids = _text_ids(rng, z[:, 0], valence)
    mask = (ids != PAD_ID).astype(np.int64)
    audio, audio_len = _sequences(rng, z[:, 1], u_a, 1.0, 1.0, AUDIO_T)
    vision, vision_len = _sequences(rng, z[:, 2], u_v, 0.5, 1.5, VISION_T)
    text_feats = torch.from_numpy(embedding.astype(np.float32))[torch.from_numpy(ids)]

    tensors = {
        "text_ids": torch.from_numpy(ids), "text_mask": torch.from_numpy(mask),
        "text_segment": torch.zeros(n, TEXT_LEN, dtype=torch.int64), "text_feats": text_feats,
        "text_lengths": torch.from_numpy(mask.sum(1)), "audio": torch.from_numpy(audio),
        "vision": torch.from_numpy(vision), "audio_lengths": torch.from_numpy(audio_len),
        "vision_lengths": torch.from_numpy(vision_len), "labels": torch.from_numpy(labels.astype(np.float32)),
    }
    splits = _splits(tensors, ids)
    info = DatasetInfo(
        name="synthetic", task="regression", setting="unaligned", dims={"t": TEXT_DIM, "a": AUDIO_DIM, "v": VISION_DIM},
        seq_lens={"t": TEXT_LEN, "a": AUDIO_T, "v": VISION_T}, text_views=("ids", "features", "raw_text"),
        vocab_size=VOCAB_SIZE, special_ids=(CLS_ID, SEP_ID, PAD_ID),
        source={"format": "synthetic", "data_seed": data_seed, "weights": dict(WEIGHTS)},
    )
    return MSAData(info, splits["train"], splits["valid"], splits["test"])


def _world(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fixed "world": vocabulary valences, embedding table, audio/vision directions."""
    valence = np.zeros(VOCAB_SIZE)
    valence[CONTENT_IDS[:N_SENTIMENT]] = rng.choice([-1.0, 1.0], N_SENTIMENT) * rng.uniform(0.4, 1.0, N_SENTIMENT)
    sentiment_dir = rng.normal(0.0, 0.5, TEXT_DIM)
    embedding = rng.normal(0.0, 1.0, (VOCAB_SIZE, TEXT_DIM)) + valence[:, None] * sentiment_dir[None, :]
    embedding[PAD_ID] = 0.0
    return valence, embedding, rng.normal(0.0, 1.0, AUDIO_DIM), rng.normal(0.0, 1.0, VISION_DIM)


def _text_ids(rng: np.random.Generator, z_t: np.ndarray, valence: np.ndarray) -> np.ndarray:
    """Token ids [CLS] w_1..w_k [SEP] [PAD].., sentiment words drawn by exp(2 z_t v_w)."""
    n = z_t.size
    sentiment_ids, neutral_ids = CONTENT_IDS[:N_SENTIMENT], CONTENT_IDS[N_SENTIMENT:]
    ids = np.full((n, TEXT_LEN), PAD_ID, dtype=np.int64)
    n_words = rng.integers(6, 41, n)
    sent_val = valence[sentiment_ids]
    for i in range(n):
        k = n_words[i]
        is_sent = rng.random(k) < 0.4
        logits = 2.0 * z_t[i] * sent_val
        p = np.exp(logits - logits.max())
        words = rng.choice(neutral_ids, k)
        n_sent = int(is_sent.sum())
        if n_sent:
            words[is_sent] = rng.choice(sentiment_ids, n_sent, p=p / p.sum())
        ids[i, 0], ids[i, 1 : k + 1], ids[i, k + 1] = CLS_ID, words, SEP_ID
    return ids


def _sequences(rng: np.random.Generator, latent: np.ndarray, direction: np.ndarray, scale: float, noise: float,
               t: int) -> tuple[np.ndarray, np.ndarray]:
    """Audio / vision sequences with true lengths (zeros after each length)."""
    n = latent.size
    lengths = rng.integers(20, t + 1, n)
    x = scale * latent[:, None, None] * direction[None, None, :] + rng.normal(0.0, noise, (n, t, direction.size))
    x *= (np.arange(t)[None, :] < lengths[:, None])[:, :, None]
    return x.astype(np.float32), lengths.astype(np.int64)


def _splits(tensors: dict[str, torch.Tensor], ids: np.ndarray) -> dict[str, Split]:
    """The tensors cut into SPLIT_SIZES, with synthetic sample ids and raw text."""
    splits, start = {}, 0
    for name, size in SPLIT_SIZES.items():
        sl = slice(start, start + size)
        sample_ids = [f"syn_{name}_{j // 12:03d}$_${j % 12}" for j in range(size)]
        splits[name] = Split(name, {k: v[sl] for k, v in tensors.items()}, sample_ids, (CLS_ID, SEP_ID, PAD_ID),
                             raw_text=raw_text(ids[sl]))
        start += size
    return splits
