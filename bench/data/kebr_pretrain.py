"""KEBR's unlabeled pre-training clips (source "kebr_pretrain_clips"; the released pretrain.py
and data_loader.py): the EmoVoxCeleb pickle, the VADER lexicon and a BERT tokenizer, checked
before training and turned into masked batches (`PretrainBatch`) for the pretrain stage."""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any, Iterator

import torch

from bench.data.base import DataError
from models.kebr import LEXICON_FILE, PRETRAIN_FILE, PretrainBatch


class PretrainDataError(DataError):
    """The pre-training set is missing or unusable; names the file, key and what is needed."""


def load_lexicon(path: Path) -> dict[str, float]:
    """VADER lexicon: token <TAB> mean valence <TAB> ... (data_loader.py load_lexicon)."""
    rows = (line.split("\t") for line in path.read_text(encoding="utf-8").splitlines())
    return {parts[0]: float(parts[1]) for parts in rows if len(parts) >= 2 and parts[0]}


def mask_sentiment_word(tokens: list[str], lexicon: dict[str, float], rng: random.Random,
                        max_length: int = 39, scale: float = 0.75) -> tuple[list[str], float, int]:
    """data_loader.py `mask_text_bert`: (masked tokens, target, position of [MASK] incl. [CLS]).
    Every occurrence of the first highest-|valence| lexicon token is masked; none: a random
    token, target 0. A mask beyond position max_length - 3 crops the tokens to [idx-20, idx+19]."""
    tokens = list(tokens) or ["[MASK]"]  # harness: an empty transcript (the code's randint would fail)
    found = [t for t in tokens if t in lexicon]
    if not found:
        idx = rng.randint(0, min(len(tokens) - 1, max_length - 3))
        tokens[idx] = "[MASK]"
        return tokens, 0.0, idx + 1
    word = max(found, key=lambda t: abs(lexicon[t]))  # max() keeps the first maximal, as scores.index(max(...))
    masked = ["[MASK]" if t == word else t for t in tokens]
    idx = masked.index("[MASK]")
    if idx > max_length - 3:
        masked, idx = masked[idx - 20:idx + 19], 20
    return masked, round(lexicon[word] * scale, 3), idx + 1


def _need(cfg: Any, directory: str, root: Path) -> str:
    return (f"KEBR's knowledge-enhanced pre-training (pretrain_dir='{directory}') needs the unlabeled "
            f"EmoVoxCeleb set (VoxCeleb1 clips of English speakers, transcripts and features) that the released "
            f"pretrain.py reads: {root / PRETRAIN_FILE} = {{'raw_text': [str], 'audio': (N, T_a, {cfg.dims[1]}), "
            f"'video': (N, T_v, {cfg.dims[2]})}} with the same audio/vision features as the fine-tuning data (the "
            f"released code: librosa 33-d x 400 frames, OpenFace 709-d x 55), and the VADER lexicon "
            f"{root / LEXICON_FILE} (KEBR data/vader_lexicon.txt). Leave pretrain_dir unset for "
            f"'KEBR (no pre-training)'")


def _read_pickle(root: Path, need: str) -> dict:
    missing = [str(p) for p in (root / PRETRAIN_FILE, root / LEXICON_FILE) if not p.is_file()]
    if not root.is_dir() or missing:
        raise PretrainDataError(missing[0] if missing else str(root),
                                f"{need}; missing: {', '.join(missing) or str(root)}")
    with open(root / PRETRAIN_FILE, "rb") as f:
        info = pickle.load(f)
    lacking = sorted({"raw_text", "audio", "video"} - set(info)) if isinstance(info, dict) else ["raw_text"]
    if lacking:
        raise PretrainDataError(str(root / PRETRAIN_FILE), f"{need}; the pickle lacks the keys raw_text/audio/video",
                                key=",".join(lacking))
    return info


class UnlabeledClips:
    """The EmoVoxCeleb pickle (pretrain.py `load_emovoxceleb_pkl`), tokenized once, masked per draw."""

    def __init__(self, cfg: Any, directory: str):
        root = Path(directory).expanduser()
        need = _need(cfg, directory, root)
        info = _read_pickle(root, need)
        self.audio = torch.as_tensor(info["audio"], dtype=torch.float32)
        self.video = torch.as_tensor(info["video"], dtype=torch.float32)
        n = len(info["raw_text"])
        for key, x in (("audio", self.audio), ("video", self.video)):
            if x.ndim != 3 or len(x) != n or x.shape[2] != cfg.dims[1 if key == "audio" else 2]:
                raise PretrainDataError(str(root / PRETRAIN_FILE), f"{need}; got audio {tuple(self.audio.shape)}, "
                                        f"video {tuple(self.video.shape)} for {n} transcripts", key=key)
        from transformers import AutoTokenizer

        where = cfg.pretrain_tokenizer or cfg.text_encoder
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(Path(where).expanduser()), local_files_only=True)
        except (OSError, ValueError) as err:
            raise PretrainDataError(str(where), f"{need}; and a tokenizer: '{where}' has none (set pretrain_tokenizer "
                                    f"to a folder with vocab.txt): {err}") from None
        self.tokens = [self.tokenizer.tokenize(str(t)) for t in info["raw_text"]]
        self.lexicon = load_lexicon(root / LEXICON_FILE)
        self.length: int = cfg.text_length or 39
        self.scale: float = cfg.valence_scale

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, i: int, rng: random.Random, length: int) -> tuple[list[int], list[int], float, int]:
        masked, target, pos = mask_sentiment_word(self.tokens[i], self.lexicon, rng, length, self.scale)
        tok = self.tokenizer
        ids = [tok.cls_token_id, *tok.convert_tokens_to_ids(masked)[:length - 2], tok.sep_token_id]
        n_attended = min(len(self.tokens[i]) + 2, length)  # data_loader.py: mask of the *unmasked* text
        return ids + [tok.pad_token_id] * (length - len(ids)), [1] * n_attended + [0] * (length - n_attended), \
            target, pos

    def batches(self, batch_size: int, seed: int) -> Iterator[PretrainBatch]:
        """Shuffled batches, cycling over the set for ever (a fresh order each pass)."""
        gen, rng = torch.Generator().manual_seed(seed), random.Random(seed)
        length = self.length
        while True:
            for chunk in torch.randperm(len(self), generator=gen).split(batch_size):
                rows = [self.encode(i, rng, length) for i in chunk.tolist()]
                ids, mask, target, pos = zip(*rows, strict=True)
                yield PretrainBatch(torch.tensor(ids), torch.tensor(mask), torch.zeros(len(rows), length, dtype=torch.long),
                                    self.audio[chunk], self.video[chunk], torch.tensor(target), torch.tensor(pos),
                                    int(self.tokenizer.sep_token_id))


def load(cfg: Any, directory: str) -> UnlabeledClips:
    """The checked pre-training clips in `directory` for a KEBR config."""
    return UnlabeledClips(cfg, directory)
