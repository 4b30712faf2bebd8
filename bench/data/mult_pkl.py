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
- No token ids: BERT models cannot use these files (`MULT_TEXT_ONLY`).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from bench.data import register_dataset
from bench.data.base import SPLITS, MSAData
from bench.data.validate import (
    MULT_TEXT_ONLY, ParseContext, Parsed, Problems, aligned_lengths_match, consistent_shapes, count_samples,
    full_lengths, id_strings, load_real, missing_keys, regression_labels, take_features,
)

EMOTIONS = ("Neutral", "Happy", "Sad", "Angry")  # MulT label order


@register_dataset("iemocap", "IEMOCAP, MulT protocol (4 binary emotions): <root>/[IEMOCAP/]iemocap_data[_noalign].pkl")
def load_iemocap(data_root: Optional[str] = None, setting: Optional[str] = None,
                 text_input: Optional[str] = "features", strict: bool = False, verify_checksum: bool = True,
                 data_format: Optional[str] = None, text_encoder: Optional[str] = None,
                 text_max_length: Optional[int] = None) -> MSAData:
    """IEMOCAP from MulT's pickles (4 binary emotion tasks). `data_format` is checked by
    `load_dataset` (MulT only); the text options have nothing to tokenize here (no raw text)."""
    return load_real("iemocap", {"mult": parse_mult}, data_root=data_root, setting=setting, text_input=text_input,
                     strict=strict, verify_checksum=verify_checksum)


def parse_mult(splits: dict[str, dict], ctx: ParseContext) -> Optional[Parsed]:
    """Validate and convert the three split dicts of a MulT pickle (popping what it converts)."""
    problems = ctx.problems
    if ctx.text_input == "ids":
        problems.error(MULT_TEXT_ONLY, key="text_bert")
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
    return Parsed(
        task="iemocap" if ctx.dataset == "iemocap" else "regression",
        tensors=tensors,
        ids=ids,
        dims={"t": tr["text"][1], "a": tr["audio"][1], "v": tr["vision"][1]},
        seq_lens={"t": tr["text"][0], "a": tr["audio"][0], "v": tr["vision"][0]},
        text_views=("features",),
        notes={"lengths": "full T (MulT-format files have no lengths)", "text_lengths": "full T",
               "ids": "from the file" if not no_id else "missing: <split>:<index>; cross-split id check skipped"},
    )


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
    if ctx.dataset == "iemocap":
        labels = iemocap_labels(d.pop("labels"), problems, s)
    else:
        labels = regression_labels(d.pop("labels"), problems, s, "labels")
    sample_ids = id_strings(d.pop("id"), n, problems, s) if "id" in d else None
    if text is None or audio is None or vision is None or labels is None:
        return None
    t = {"text": text.shape[1], "audio": audio.shape[1], "vision": vision.shape[1]}
    if ctx.setting == "aligned":
        aligned_lengths_match(t, problems, s)
    tensors = {
        "text_feats": torch.from_numpy(text),
        "audio": torch.from_numpy(audio),
        "vision": torch.from_numpy(vision),
        "labels": torch.from_numpy(labels),
        "text_lengths": full_lengths(n, t["text"]),
        "audio_lengths": full_lengths(n, t["audio"]),
        "vision_lengths": full_lengths(n, t["vision"]),
    }
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
