"""Words back from GloVe vectors: text for the BERT models from MulT's IEMOCAP pickles.

MulT's `iemocap_data[_noalign].pkl` carry each utterance's words as 300-d GloVe vectors
(`text`, (N, 20, 300)), no words and no utterance ids (CMU-MultimodalSDK #189: made with SDK
V0, "non-invertible" to utterances). The vectors are rows of a GloVe text file
(glove.840B.300d.txt, the MulT paper), so each word is found again by exact lookup in the file
the user gives (`--glove PATH`), as CMU-MultimodalSDK #250 suggests ("revert the word vectors"):

1. the distinct non-zero vectors of every split are collected (float32 as stored, -0.0 read
   as 0.0); a zero vector is padding or a speech pause (SDK #126) and is skipped;
2. the GloVe file is read once, line by line; a line whose last value matches the last value
   of a wanted vector is parsed in full (float64 -> float32) and compared byte for byte;
   the first line that matches names the word (GloVe files are in frequency order);
3. a vector no line matches becomes `[UNK]`; each sample's text is its words joined by spaces.

The match rate (word positions and distinct vectors) is recorded in `info.source["glove"]`
and logged; below `MIN_MATCH_RATE` the file is refused (not the file that made the vectors),
any miss at all is a counted warning. A file with another width, or none, is an error.
The lookup is cached per process per (GloVe file, vectors); token ids are then made by
`bench.data.tokenize.tokenize_texts` (cached per texts, tokenizer and max length).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from bench.data.base import SPLITS, DataError

logger = logging.getLogger(__name__)

GLOVE_NAME = "glove.840B.300d.txt"  # the file looked for under the data root (the 300-d Common Crawl release; the match rate tells whether it is the one the vectors came from)
# harness decision: fewer matched word positions than this means the file did not make the
# vectors (another GloVe release matches next to none; the right one matches all)
MIN_MATCH_RATE = 0.5
UNK = "[UNK]"  # the BERT tokenizers' own unknown token: kept whole by their special-token split
GLOVE_MAX_LENGTH = 50  # harness decision: MAG-BERT's max_seq_length; MulT keeps <= 20 words per utterance


@dataclass(frozen=True)
class Recovered:
    """Texts per split and the lookup's counts."""

    texts: dict[str, tuple[str, ...]]
    positions: int  # non-zero word vectors in all splits
    positions_matched: int
    vectors: int  # distinct non-zero vectors
    vectors_matched: int
    empty: dict[str, int]  # samples without any non-zero vector, per split

    @property
    def rate(self) -> float:
        return self.positions_matched / self.positions if self.positions else 0.0

    def summary(self, path: str) -> dict:
        return {"file": path, "match_rate": round(self.rate, 6), "positions": self.positions,
                "positions_matched": self.positions_matched, "vectors": self.vectors,
                "vectors_matched": self.vectors_matched, "min_match_rate": MIN_MATCH_RATE}


def find_glove(glove: Optional[str], data_root: Optional[str]) -> Optional[Path]:
    """The GloVe file: `glove` as given (must exist), else `<root>/[IEMOCAP/]glove.840B.300d.txt`
    if there, else None."""
    if glove:
        path = Path(os.path.expanduser(glove))
        if not path.is_file():
            what = "is a folder, not the GloVe text file" if path.is_dir() else "not found"
            raise DataError(str(path), f"GloVe file {what} (--glove: the {GLOVE_NAME} that made the vectors)")
        return path
    root = data_root or os.environ.get("MSABENCH_DATA")
    if not root:
        return None
    base = Path(root).expanduser()
    return next((p for p in (base / "IEMOCAP" / GLOVE_NAME, base / GLOVE_NAME) if p.is_file()), None)


def recover_texts(text: dict[str, np.ndarray], glove: Path) -> Recovered:
    """Each sample's words from its (T, d) vectors (see the module docstring)."""
    rows = {s: _nonzero_rows(text[s]) for s in SPLITS}
    flat = np.concatenate([r for r, _ in rows.values()])
    uniq, inverse = np.unique(_as_void(flat), return_inverse=True)
    vectors = uniq.view(np.float32).reshape(len(uniq), -1) if len(uniq) else flat[:0]
    words = lookup(glove, vectors)
    names = [w if w is not None else UNK for w in words]
    matched_rows = np.asarray([w is not None for w in words], dtype=bool)[inverse.reshape(-1)]
    texts: dict[str, tuple[str, ...]] = {}
    empty: dict[str, int] = {}
    start = 0
    for s in SPLITS:
        r, owner = rows[s]
        ids = inverse.reshape(-1)[start : start + len(r)]
        start += len(r)
        per: list[list[str]] = [[] for _ in range(text[s].shape[0])]
        for i, k in zip(owner.tolist(), ids.tolist(), strict=True):
            per[i].append(names[k])
        texts[s] = tuple(" ".join(w) for w in per)
        empty[s] = sum(1 for w in per if not w)
    return Recovered(texts, len(flat), int(matched_rows.sum()), len(words),
                     sum(w is not None for w in words), empty)


def _nonzero_rows(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, sample index of each row): the non-zero (T, d) rows of (N, T, d), in order."""
    flat = arr.reshape(-1, arr.shape[-1])
    keep = flat.any(1)
    owner = np.repeat(np.arange(arr.shape[0]), arr.shape[1])[keep]
    return np.ascontiguousarray(flat[keep] + np.float32(0.0)), owner  # + 0: -0.0 -> 0.0


def _as_void(rows: np.ndarray) -> np.ndarray:
    """Each float32 row as one opaque value (np.unique over whole rows, byte equality)."""
    return np.ascontiguousarray(rows, dtype=np.float32).view(np.dtype((np.void, 4 * rows.shape[1]))).reshape(-1)


_LOOKUPS: dict[tuple, list[Optional[str]]] = {}  # (GloVe file, size, mtime, vectors digest) -> words


def lookup(path: Path, vectors: np.ndarray) -> list[Optional[str]]:
    """The word of each row of `vectors` (None: no line of the file has it), cached per process."""
    st = path.stat()
    digest = hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, vectors.shape, digest)
    if key not in _LOOKUPS:
        _LOOKUPS[key] = scan_glove(path, vectors)
    return list(_LOOKUPS[key])


def scan_glove(path: Path, vectors: np.ndarray) -> list[Optional[str]]:
    """One pass over the GloVe text file (`word v1 ... vd` per line; a word may hold spaces,
    so the vector is the last d fields)."""
    width = vectors.shape[1]
    wanted = {row.tobytes(): i for i, row in enumerate(vectors)}
    last = {float(v) for v in vectors[:, -1]} if len(vectors) else set()
    words: list[Optional[str]] = [None] * len(vectors)
    left = len(wanted)
    with open(path, "rb") as f:
        check_width(path, f.readline(), width)
        f.seek(0)
        for line in f:
            if not left:
                break
            line = line.rstrip(b"\r\n")
            try:
                if float(np.float32(float(line[line.rfind(b" ") + 1 :]))) not in last:
                    continue
            except ValueError:
                continue
            parts = line.rsplit(b" ", width)
            if len(parts) != width + 1:
                continue
            try:
                vec = np.asarray([float(x) for x in parts[1:]], dtype=np.float64).astype(np.float32) + np.float32(0.0)
            except ValueError:
                continue
            i = wanted.get(vec.tobytes())
            if i is not None and words[i] is None:
                words[i] = parts[0].decode("utf-8", errors="replace")
                left -= 1
    return words


def check_width(path: Path, first: bytes, width: int) -> None:
    """The file's first line must be a word and `width` numbers (the word itself may be one)."""
    fields = first.split()
    if not fields:
        raise DataError(str(path), "GloVe file is empty")
    trailing = next((k for k, x in enumerate(reversed(fields)) if not _is_number(x)), len(fields))  # numbers at the end
    have = min(trailing, len(fields) - 1)
    if have != width:
        raise DataError(str(path), f"GloVe vectors are {have}-d (first line: a word and {have} numbers), the "
                                   f"pickle's `text` is {width}-d: not the file that made the vectors "
                                   f"({GLOVE_NAME}, the unzipped text file)")


def _is_number(x: bytes) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def check_rate(rec: Recovered, path: Path) -> None:
    """Refuse a file that matches fewer than MIN_MATCH_RATE of the word positions."""
    if rec.positions and rec.rate < MIN_MATCH_RATE:
        raise DataError(str(path), f"GloVe file matches {rec.positions_matched:,} of {rec.positions:,} word vectors "
                                   f"({rec.rate:.1%}; {rec.vectors_matched:,} of {rec.vectors:,} distinct), below "
                                   f"the {MIN_MATCH_RATE:.0%} minimum: not the GloVe file that made the pickle's "
                                   f"`text` ({GLOVE_NAME})", key="text")
    logger.info("GloVe lookup in %s: %d of %d word vectors matched (%.2f%%)", path, rec.positions_matched,
                rec.positions, 100 * rec.rate)
