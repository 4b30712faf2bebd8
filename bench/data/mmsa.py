"""`mosi`, `mosei`, `sims`, `simsv2`: MMSA feature pickles.

CH-SIMS: `<root>/SIMS/Processed/unaligned_39.pkl` (MMSA); CH-SIMS v2 (supervised part):
`<root>/SIMS_V2/ch-simsv2s.pkl` (thuiar/ch-sims-v2). Both unaligned only, MMSA format only,
labels in [-1, 1], plus the unimodal labels `regression_labels_T/A/V` (MMSA data_loader.py reads
them for SIMS) as the batch's `labels_t`/`labels_a`/`labels_v`; `text_bert` ids from
bert-base-chinese (vocabulary 21128). CH-SIMS v2: vision -inf set to 0 as well (ch-sims-v2's
loader does). A MOSI/MOSEI file given as CH-SIMS (no unimodal labels), or the reverse, is an error.

Files: `<root>/MOSI/Processed/{aligned_50,unaligned_50}.pkl` (same under `MOSEI/`), root
from `--data-root` or `$MSABENCH_DATA`. MulT's `mosi_data[_noalign].pkl` /
`mosei_senti_data[_noalign].pkl` are accepted too (`<root>/MOSI/` or `<root>/`): the schema
is detected from the keys, not the name, and parsed by `bench.data.mult_pkl`.

Behaviours reproduced from MMSA 2.2.1 `src/MMSA/data_loader.py`:
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

`text_input="raw_text"` (models that tokenize the transcripts; a harness decision): `raw_text`
tokenized by the `--text-encoder` folder's tokenizer (`bench.data.tokenize.tokenize_texts`:
[CLS]/[SEP], truncated to the model's `text_max_length`, cached per process), padded to the
longest text and trimmed per batch (`Split.trim_text`); `text_lengths` = sum(attention_mask),
audio/vision lengths by rule 4. A random-init encoder (`bert-base`, `tiny`) or a folder without
tokenizer files falls back to `text_bert` ids (`info.source["text_source"]` records which); a
real tokenizer and no `raw_text` in the file is an error.

`data_format` (`--data-format`): auto (the MMSA and MulT names below, the schema told by the
keys; if none of them exists, MAG-BERT's word-aligned `mosi.pkl`/`mosei.pkl`, see
`bench.data.mag.resolve_format`) | mmsa | mult | mag (`bench.data.mag`).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import numpy as np
import torch

from bench.data import register_dataset
from bench.data.base import SPLITS, MSAData
from bench.data.mag import load_mag, resolve_format
from bench.data.mult_pkl import parse_mult
from bench.data.tokenize import RAW_TEXT_MAX_LENGTH, encoder_tokenizer, special_ids, tokenize_texts, vocab_size
from bench.data.validate import (
    BERT_TEXT_DIM, BERT_VOCAB_SIZE, CHINESE_BERT_VOCAB_SIZE, LABEL_RANGE, SIMS_LABEL_RANGE, UNIMODAL_LABEL_KEYS, ParseContext, Parsed, Parser, Problems, aligned_lengths_match, as_text, consistent_shapes, count_samples,
    full_lengths, id_strings, int_values, lengths_array, load_real, missing_keys, per_sample, regression_labels,
    take_features,
)
from models.constants import SIMS_DATASETS

TEXT_KEYS = {"ids": "text_bert", "features": "text"}
UNUSED_KEYS = ("raw_text", "annotations", "classification_labels")  # warned about when absent, never read
KNOWN_KEYS = ("id", "raw_text", "text", "text_bert", "audio", "vision", "audio_lengths", "vision_lengths",
              "annotations", "classification_labels", "regression_labels", *UNIMODAL_LABEL_KEYS.values())


MMSA_DATASETS = {  # name -> description (`bench ls`)
    "mosi": "CMU-MOSI: MMSA pickles <root>/MOSI/Processed/{aligned_50,unaligned_50}.pkl "
            "(or MulT's, or MAG-BERT's mosi.pkl)",
    "mosei": "CMU-MOSEI: MMSA pickles <root>/MOSEI/Processed/{aligned_50,unaligned_50}.pkl "
             "(or MulT's, or MAG-BERT's mosei.pkl)",
    "sims": "CH-SIMS: MMSA pickle <root>/SIMS/Processed/unaligned_39.pkl (Chinese; unimodal labels)",
    "simsv2": "CH-SIMS v2 (supervised): <root>/SIMS_V2/ch-simsv2s.pkl (Chinese; unimodal labels)",
}


def _load(dataset: str, data_root: Optional[str] = None, setting: Optional[str] = None,
          text_input: Optional[str] = "features", strict: bool = False, verify_checksum: bool = True,
          data_format: Optional[str] = None, text_encoder: Optional[str] = None,
          text_max_length: Optional[int] = None) -> MSAData:
    """The loader of every dataset in MMSA_DATASETS (registered with its name bound)."""
    fmt = resolve_format(dataset, setting, data_root, data_format)
    if fmt == "mag":
        return load_mag(dataset, data_root, setting, text_input, strict, verify_checksum, text_encoder, text_max_length)
    parsers: dict[str, Parser] = {"mmsa": parse_mmsa, "mult": parse_mult}
    if dataset in SIMS_DATASETS:
        parsers = {"mmsa": parse_mmsa}  # CH-SIMS exists in MMSA's format only
    elif fmt != "auto":
        parsers = {fmt: parsers[fmt]}
    options: dict[str, Any] = {}
    fallback = None
    if text_input == "raw_text":
        choice = encoder_tokenizer(text_encoder)
        if choice.path is None:  # random-init encoders read the file's text_bert ids
            text_input, fallback = "ids", f"text_bert ids (fallback from raw_text: {choice.note})"
        else:
            options = {"tokenizer": choice, "max_length": int(text_max_length or RAW_TEXT_MAX_LENGTH)}
    data = load_real(dataset, parsers, data_root=data_root, setting=setting, text_input=text_input, strict=strict,
                     verify_checksum=verify_checksum, options=options)
    if fallback:
        data.info.source["text_source"] = fallback
    return data


for _name, _description in MMSA_DATASETS.items():
    register_dataset(_name, _description)(functools.partial(_load, _name))


def parse_mmsa(splits: dict[str, dict], ctx: ParseContext) -> Optional[Parsed]:
    """Validate and convert the three split dicts of an MMSA pickle (popping what it converts)."""
    problems = ctx.problems
    train = splits["train"]
    raw = ctx.text_input == "raw_text"
    if ctx.text_input == "all":
        views = tuple(v for v in ("ids", "features") if TEXT_KEYS[v] in train) or ("ids", "features")
    else:
        views = ("ids",) if raw else (ctx.text_input,)
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    ids: dict[str, Optional[list[str]]] = {}
    shapes: dict[str, dict[str, tuple[int, int]]] = {}
    texts: dict[str, list[str]] = {}
    for s in SPLITS:
        out = _parse_split(splits[s], s, ctx, views, shapes, texts)
        if out is not None:
            tensors[s], ids[s] = out
    consistent_shapes(shapes, problems)
    if problems.errors or len(tensors) != len(SPLITS):
        return None
    tr = shapes["train"]
    has_bert = "text_bert" in tr
    if ctx.setting == "unaligned":
        lengths = "from the file (audio_lengths, vision_lengths)"
    elif has_bert:
        lengths = ("aligned: text_bert's sum(input_mask) for audio/vision" if raw
                   else "aligned: text length sum(input_mask) for every modality")
    else:
        lengths = "aligned, no text_bert: full T"
    if raw:
        return _with_raw_text_ids(tensors, ids, texts, tr, ctx, lengths)
    text_t = tr["text_bert"][0] if "ids" in views else tr["text"][0]  # rule 6: text_bert.shape[2] or text.shape[1]
    text_dim = tr["text"][1] if "features" in views else BERT_TEXT_DIM
    return Parsed(
        task="regression", tensors=tensors, ids=ids,
        dims={"t": text_dim, "a": tr["audio"][1], "v": tr["vision"][1]},
        seq_lens={"t": text_t, "a": tr["audio"][0], "v": tr["vision"][0]},
        text_views=views, vocab_size=_vocab_size(ctx.dataset) if "ids" in views else None,
        notes={"lengths": lengths, "text_lengths": "sum(input_mask)" if has_bert else "full T"},
    )


def _with_raw_text_ids(tensors: dict[str, dict[str, torch.Tensor]], ids: dict[str, Optional[list[str]]],
                       texts: dict[str, list[str]], tr: dict[str, tuple[int, int]], ctx: ParseContext,
                       lengths: str) -> Parsed:
    """Token ids from `raw_text` by the encoder's tokenizer (cached), trimmed per batch."""
    choice, max_length = ctx.options["tokenizer"], ctx.options["max_length"]
    for s in SPLITS:
        tok = tokenize_texts(choice.path, max_length, tuple(texts[s]))
        tensors[s].update(tok, text_lengths=tok["text_mask"].sum(1))
    return Parsed(
        task="regression", tensors=tensors, ids=ids,
        dims={"t": BERT_TEXT_DIM, "a": tr["audio"][1], "v": tr["vision"][1]},
        seq_lens={"t": int(tensors["train"]["text_ids"].shape[1]), "a": tr["audio"][0], "v": tr["vision"][0]},
        text_views=("ids",), vocab_size=vocab_size(choice.path), special_ids=special_ids(choice.path), trim_text=True,
        notes={"lengths": lengths, "text_lengths": "sum(attention_mask) of the raw_text tokens",
               "text_source": f"raw_text tokenized by the {choice.note} (max {max_length} tokens, dynamic padding)",
               "tokenizer_path": choice.path},
    )


def _raw_texts(x: Any, n: int, problems: Problems, s: str) -> Optional[list[str]]:
    """One transcript per sample: str kept, bytes decoded; anything else is an error; empty
    transcripts (tokenized as [CLS][SEP]) are counted in a warning."""
    key = "raw_text"
    items = per_sample(x, n, problems, s, key, "transcript")
    if items is None:
        return None
    texts = [as_text(v) for v in items]
    bad = [i for i, v in enumerate(texts) if v is None]
    if bad:
        problems.error(f"{len(bad)} transcripts not strings (first at index {bad[0]}: {items[bad[0]]!r})",
                       split=s, key=key)
        return None
    out = [v for v in texts if v is not None]
    empty = [i for i, v in enumerate(out) if not v.strip()]
    if empty:
        problems.warn(f"{len(empty)} empty transcripts, tokenized as [CLS][SEP] (first at index {empty[0]})",
                      split=s, key=key)
    return out


def _parse_split(d: dict, s: str, ctx: ParseContext, views: tuple[str, ...],
                 shapes: dict[str, dict[str, tuple[int, int]]],
                 texts: dict[str, list[str]]) -> Optional[tuple[dict[str, torch.Tensor], list[str]]]:
    problems = ctx.problems
    unaligned = ctx.setting == "unaligned"
    raw = ctx.text_input == "raw_text"  # token ids from raw_text: text_bert is read for aligned lengths only
    n = _count_checked(d, s, problems, views, unaligned, raw, ctx.dataset)
    if n is None:
        return None

    out: dict[str, torch.Tensor] = {}
    audio = take_features(d, "audio", problems, s, shapes, neginf_ok=True)  # rule 2
    # CH-SIMS v2: -inf in vision set to 0 too, as thuiar/ch-sims-v2's data/load_data.py does
    vision = take_features(d, "vision", problems, s, shapes, neginf_ok=ctx.dataset == "simsv2")
    if "features" in views:
        text = take_features(d, "text", problems, s, shapes)
        if text is not None:
            out["text_feats"] = torch.from_numpy(text)
    if raw:
        raw_texts = _raw_texts(d.pop("raw_text"), n, problems, s)
        if raw_texts is None:
            return None
        texts[s] = raw_texts
    mask = _take_text_bert(d, s, problems, shapes, out, ids="ids" in views and not raw, vocab=_vocab_size(ctx.dataset))
    sims = ctx.dataset in SIMS_DATASETS
    label_range = SIMS_LABEL_RANGE if sims else LABEL_RANGE
    labels = regression_labels(d.pop("regression_labels"), problems, s, "regression_labels", label_range)  # rule 3
    unimodal = {f"labels_{m}": regression_labels(d.pop(k), problems, s, k, label_range)
                for m, k in UNIMODAL_LABEL_KEYS.items()} if sims else {}
    sample_ids = id_strings(d.pop("id"), n, problems, s)
    if audio is None or vision is None or labels is None or sample_ids is None or s not in shapes or any(
            v is None for v in unimodal.values()):
        return None
    out.update({k: torch.from_numpy(v) for k, v in unimodal.items() if v is not None})
    t_text = shapes[s]["text_bert"][0] if "ids" in views and "text_bert" in shapes[s] else (
        shapes[s]["text"][0] if "text" in shapes[s] else None)
    if t_text is None and raw:
        t_text = audio.shape[1]  # no text tensor in the file: the raw_text tokens are the text
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
    out.update(audio=torch.from_numpy(audio), vision=torch.from_numpy(vision),
               audio_lengths=torch.from_numpy(np.ascontiguousarray(a_len, dtype=np.int64)),
               vision_lengths=torch.from_numpy(np.ascontiguousarray(v_len, dtype=np.int64)),
               labels=torch.from_numpy(labels),
               text_lengths=torch.from_numpy(text_len) if text_len is not None else full_lengths(n, t_text))
    return out, sample_ids


def _count_checked(d: dict, s: str, problems: Problems, views: tuple[str, ...], unaligned: bool,
                   raw: bool, dataset: str) -> Optional[int]:
    """The split's number of samples, after checking its keys (None: an error was recorded)."""
    if "features" not in views:
        d.pop("text", None)  # the unused view is dropped first: memory
    needed = ["id", "regression_labels", "audio", "vision", *(["raw_text"] if raw else (TEXT_KEYS[v] for v in views))]
    if unaligned:
        needed += ["audio_lengths", "vision_lengths"]  # MMSA reads them unconditionally for unaligned data
    if not _unimodal_keys_fit(d, s, problems, dataset) or missing_keys(d, needed, problems, s):
        return None
    absent = [k for k in UNUSED_KEYS if k not in d]
    if absent:
        problems.warn(f"unused keys missing: {', '.join(absent)}", split=s)
    counted = [k for k in KNOWN_KEYS if k in d and (unaligned or not k.endswith("_lengths"))]
    return count_samples(d, counted, problems, s)


def _vocab_size(dataset: str) -> int:
    return CHINESE_BERT_VOCAB_SIZE if dataset in SIMS_DATASETS else BERT_VOCAB_SIZE


def _unimodal_keys_fit(d: dict, s: str, problems: Problems, dataset: str) -> bool:
    """CH-SIMS files carry `regression_labels_T/A/V` (MMSA reads them for SIMS); MOSI/MOSEI files
    do not. Either mismatch is an error that names the dataset the file looks like."""
    keys = list(UNIMODAL_LABEL_KEYS.values())
    present = [k for k in keys if k in d]
    if dataset in SIMS_DATASETS and len(present) < len(keys):
        absent = [k for k in keys if k not in d]
        problems.error(f"key missing: CH-SIMS files carry the unimodal labels {', '.join(keys)} (a MOSI/MOSEI "
                       f"file? --dataset mosi or mosei reads it; keys found: {', '.join(sorted(map(str, d)))})",
                       split=s, key=absent[0])
        return False
    if dataset not in SIMS_DATASETS and present:
        problems.error(f"unexpected key: unimodal labels are CH-SIMS's ({', '.join(present)}); a CH-SIMS file "
                       f"given as {dataset}? (--dataset sims or simsv2 reads it)", split=s, key=present[0])
        return False
    return True


def _take_text_bert(d: dict, s: str, problems: Problems, shapes: dict[str, dict[str, tuple[int, int]]],
                    out: dict[str, torch.Tensor], ids: bool, vocab: int) -> Optional[np.ndarray]:
    """Pop `text_bert` where present: (N, 3, L) rows input_ids, input_mask, segment_ids, checked
    (ids only when the model reads them) to be in [0, vocab), segment ids and mask 0/1, at least
    one unmasked token per sample. Its shape goes into `shapes`, its rows as three int64 (N, L)
    tensors into `out` when the model reads the ids. Returns the mask (None: absent or bad)."""
    key = "text_bert"
    arr = int_values(d.pop(key), problems, s, key) if key in d else None
    if arr is None:
        return None
    if arr.ndim != 3 or arr.shape[1] != 3:
        problems.error(f"shape {arr.shape}, expected (N, 3, L): rows input_ids, input_mask, segment_ids",
                       split=s, key=key)
        return None
    token_ids, mask, seg = (np.ascontiguousarray(arr[:, r]) for r in range(3))
    checks = [(mask, (mask != 0) & (mask != 1), "input_mask values not 0/1")]
    if ids:
        checks += [(token_ids, (token_ids < 0) | (token_ids >= vocab), f"token ids outside [0, {vocab})"),
                   (seg, (seg != 0) & (seg != 1), "segment ids not 0/1")]
    before = len(problems.errors)
    for values, bad, what in checks:
        if bad.any():
            i = int(bad.any(1).argmax())
            problems.error(f"{int(bad.sum())} {what} (first at index {i}: {values[i][bad[i]][0]})", split=s, key=key)
    empty = mask.sum(1) == 0
    if len(problems.errors) == before and empty.any():
        problems.error(f"{int(empty.sum())} samples with an all-zero input_mask (first at index {int(empty.argmax())})",
                       split=s, key=key)
    if len(problems.errors) != before:
        return None
    shapes.setdefault(s, {})[key] = (token_ids.shape[1], 3)
    if ids:
        out.update(text_ids=torch.from_numpy(token_ids), text_mask=torch.from_numpy(mask),
                   text_segment=torch.from_numpy(seg))
    return mask
