"""`mosi`, `mosei`: MMSA feature pickles (specs/data-and-metrics.md §2).

Files: `<root>/MOSI/Processed/{aligned_50,unaligned_50}.pkl` (same under `MOSEI/`), root
from `--data-root` or `$MSABENCH_DATA`. MulT's `mosi_data[_noalign].pkl` /
`mosei_senti_data[_noalign].pkl` are accepted too (`<root>/MOSI/` or `<root>/`): the schema
is detected from the keys, not the name, and parsed by `bench.data.mult_pkl`.

Behaviours reproduced from MMSA 2.2.1 `src/MMSA/data_loader.py` (spec §2 rules 1-8):
1. `text`, `text_bert`, `audio`, `vision` cast to float32 (token ids then to int64 for the
   embedding); labels = `regression_labels` as float32, (N,) or (N, 1).
2. `audio == -inf` -> 0 (audio only), counted in a warning.
3. Only `regression_labels` is read (never `classification_labels`/`annotations`).
4. `audio_lengths`/`vision_lengths` are read for unaligned files only. Aligned files have
   one time axis: every length is the text length, sum(input_mask) (what MMSA's Self-MM uses).
   Without `text_bert` the lengths are T (noted in `info.source["lengths"]`).
5. BERT models read `text_bert` (text dim reported as 768); feature models read `text`
   (dim = text.shape[2]). Only the view asked for is kept; `text_input="all"` keeps both.
6. Dims and sequence lengths come from the train split, never from a config.
7. Every sample carries its position (`index`, added by `Split.take`) and its `id`.
8. The file's SHA-256 goes into `info.source` and is compared with the MMSA README sums.
`text_lengths` = sum(input_mask) whenever `text_bert` is present (else T).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from bench.data import register_dataset
from bench.data.base import SPLITS, MSAData
from bench.data.mult_pkl import parse_mult
from bench.data.validate import (
    BERT_VOCAB_SIZE, ParseContext, Parsed, Problems, aligned_lengths_match, consistent_shapes, count_samples,
    full_lengths, id_strings, int_values, lengths_array, load_real, missing_keys, regression_labels, take_features,
)

TEXT_KEYS = {"ids": "text_bert", "features": "text"}
UNUSED_KEYS = ("raw_text", "annotations", "classification_labels")  # warned about when absent, never read
KNOWN_KEYS = ("id", "raw_text", "text", "text_bert", "audio", "vision", "audio_lengths", "vision_lengths",
              "annotations", "classification_labels", "regression_labels")
BERT_TEXT_DIM = 768  # MMSA data_loader.py sets feature_dims[0] = 768 for text_bert


def _load(dataset: str, data_root: Optional[str], setting: Optional[str], text_input: Optional[str], strict: bool,
          verify_checksum: bool) -> MSAData:
    return load_real(dataset, {"mmsa": parse_mmsa, "mult": parse_mult}, data_root=data_root, setting=setting,
                     text_input=text_input, strict=strict, verify_checksum=verify_checksum)


@register_dataset("mosi", "CMU-MOSI: MMSA pickles <root>/MOSI/Processed/{aligned_50,unaligned_50}.pkl (or MulT's)")
def load_mosi(data_root: Optional[str] = None, setting: Optional[str] = None, text_input: Optional[str] = "features",
              strict: bool = False, verify_checksum: bool = True, **_ignored) -> MSAData:
    """CMU-MOSI from MMSA feature pickles (or MulT's mosi_data*.pkl)."""
    return _load("mosi", data_root, setting, text_input, strict, verify_checksum)


@register_dataset("mosei", "CMU-MOSEI: MMSA pickles <root>/MOSEI/Processed/{aligned_50,unaligned_50}.pkl (or MulT's)")
def load_mosei(data_root: Optional[str] = None, setting: Optional[str] = None, text_input: Optional[str] = "features",
               strict: bool = False, verify_checksum: bool = True, **_ignored) -> MSAData:
    """CMU-MOSEI from MMSA feature pickles (or MulT's mosei_senti_data*.pkl)."""
    return _load("mosei", data_root, setting, text_input, strict, verify_checksum)


def parse_mmsa(splits: dict[str, dict], ctx: ParseContext) -> Optional[Parsed]:
    """Validate and convert the three split dicts of an MMSA pickle (popping what it converts)."""
    problems = ctx.problems
    train = splits["train"]
    if ctx.text_input == "all":
        views = tuple(v for v in ("ids", "features") if TEXT_KEYS[v] in train) or ("ids", "features")
    else:
        views = (ctx.text_input,)
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    ids: dict[str, Optional[list[str]]] = {}
    shapes: dict[str, dict[str, tuple[int, int]]] = {}
    for s in SPLITS:
        out = _parse_split(splits[s], s, ctx, views, shapes)
        if out is not None:
            tensors[s], ids[s] = out
    consistent_shapes(shapes, problems)
    if problems.errors or len(tensors) != len(SPLITS):
        return None
    tr = shapes["train"]
    has_bert = "text_bert" in tr
    text_t = tr["text_bert"][0] if "ids" in views else tr["text"][0]  # rule 6: text_bert.shape[2] or text.shape[1]
    text_dim = tr["text"][1] if "features" in views else BERT_TEXT_DIM
    if ctx.setting == "unaligned":
        lengths = "from the file (audio_lengths, vision_lengths)"
    elif has_bert:
        lengths = "aligned: text length sum(input_mask) for every modality"
    else:
        lengths = "aligned, no text_bert: full T"
    return Parsed(
        task="regression",
        tensors=tensors,
        ids=ids,
        dims={"t": text_dim, "a": tr["audio"][1], "v": tr["vision"][1]},
        seq_lens={"t": text_t, "a": tr["audio"][0], "v": tr["vision"][0]},
        text_views=views,
        vocab_size=BERT_VOCAB_SIZE if "ids" in views else None,
        notes={"lengths": lengths, "text_lengths": "sum(input_mask)" if has_bert else "full T"},
    )


def _parse_split(d: dict, s: str, ctx: ParseContext, views: tuple[str, ...],
                 shapes: dict[str, dict[str, tuple[int, int]]]) -> Optional[tuple[dict[str, torch.Tensor], list[str]]]:
    problems = ctx.problems
    unaligned = ctx.setting == "unaligned"
    if "features" not in views:
        d.pop("text", None)  # the unused view is dropped first: memory
    needed = ["id", "regression_labels", "audio", "vision", *(TEXT_KEYS[v] for v in views)]
    if unaligned:
        needed += ["audio_lengths", "vision_lengths"]  # MMSA reads them unconditionally for unaligned data
    if missing_keys(d, needed, problems, s):
        return None
    absent = [k for k in UNUSED_KEYS if k not in d]
    if absent:
        problems.warn(f"unused keys missing: {', '.join(absent)}", split=s)
    counted = [k for k in KNOWN_KEYS if k in d and (unaligned or not k.endswith("_lengths"))]
    n = count_samples(d, counted, problems, s)
    if n is None:
        return None

    out: dict[str, torch.Tensor] = {}
    audio = take_features(d, "audio", problems, s, shapes, neginf_ok=True)  # rule 2
    vision = take_features(d, "vision", problems, s, shapes)
    if "features" in views:
        text = take_features(d, "text", problems, s, shapes)
        if text is not None:
            out["text_feats"] = torch.from_numpy(text)
    mask = None
    if "text_bert" in d:
        rows = _text_bert(d.pop("text_bert"), problems, s, check_ids="ids" in views)
        if rows is not None:
            shapes.setdefault(s, {})["text_bert"] = (rows[0].shape[1], 3)
            mask = rows[1]
            if "ids" in views:
                out.update(text_ids=torch.from_numpy(rows[0]), text_mask=torch.from_numpy(rows[1]),
                           text_segment=torch.from_numpy(rows[2]))
    labels = regression_labels(d.pop("regression_labels"), problems, s, "regression_labels")  # rule 3
    sample_ids = id_strings(d.pop("id"), n, problems, s)
    if audio is None or vision is None or labels is None or sample_ids is None or s not in shapes:
        return None
    t_text = shapes[s]["text_bert"][0] if "ids" in views and "text_bert" in shapes[s] else (
        shapes[s]["text"][0] if "text" in shapes[s] else None)
    if t_text is None:
        return None
    text_len = mask.sum(1) if mask is not None else None
    if unaligned:  # rule 4
        a_len = lengths_array(d.pop("audio_lengths"), audio.shape[1], problems, s, "audio_lengths")
        v_len = lengths_array(d.pop("vision_lengths"), vision.shape[1], problems, s, "vision_lengths")
        if a_len is None or v_len is None:
            return None
    else:
        aligned_lengths_match({"text": t_text, "audio": audio.shape[1], "vision": vision.shape[1]}, problems, s)
        a_len = v_len = text_len if text_len is not None else np.full(n, t_text, dtype=np.int64)
    out.update(
        audio=torch.from_numpy(audio),
        vision=torch.from_numpy(vision),
        audio_lengths=torch.from_numpy(np.ascontiguousarray(a_len, dtype=np.int64)),
        vision_lengths=torch.from_numpy(np.ascontiguousarray(v_len, dtype=np.int64)),
        labels=torch.from_numpy(labels),
        text_lengths=torch.from_numpy(text_len) if text_len is not None else full_lengths(n, t_text),
    )
    return out, sample_ids


def _text_bert(x: Any, problems: Problems, s: str,
               check_ids: bool) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(N, 3, L) rows input_ids, input_mask, segment_ids -> three int64 (N, L) arrays.
    Ids (checked only when the model reads them) in [0, vocab), segment ids and mask 0/1,
    at least one unmasked token per sample."""
    key = "text_bert"
    arr = int_values(x, problems, s, key)
    if arr is None:
        return None
    if arr.ndim != 3 or arr.shape[1] != 3:
        problems.error(f"shape {arr.shape}, expected (N, 3, L): rows input_ids, input_mask, segment_ids",
                       split=s, key=key)
        return None
    ids, mask, seg = (np.ascontiguousarray(arr[:, r]) for r in range(3))
    checks = [(mask, (mask != 0) & (mask != 1), "input_mask values not 0/1")]
    if check_ids:
        checks += [(ids, (ids < 0) | (ids >= BERT_VOCAB_SIZE), f"token ids outside [0, {BERT_VOCAB_SIZE})"),
                   (seg, (seg != 0) & (seg != 1), "segment ids not 0/1")]
    ok = True
    for values, bad, what in checks:
        if bad.any():
            rows = bad.any(1)
            i = int(rows.argmax())
            problems.error(f"{int(bad.sum())} {what} (first at index {i}: {values[i][bad[i]][0]})", split=s, key=key)
            ok = False
    if ok and (mask.sum(1) == 0).any():
        empty = mask.sum(1) == 0
        problems.error(f"{int(empty.sum())} samples with an all-zero input_mask (first at index {int(empty.argmax())})",
                       split=s, key=key)
        ok = False
    return (ids, mask, seg) if ok else None
