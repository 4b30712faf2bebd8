"""Shared pieces of the real-data loaders.

- where the files are (`locate`: data root from `--data-root` or `$MSABENCH_DATA`, the
  candidate names per dataset and setting; a missing file lists every name looked for);
- reading them (`read_pickle`) and telling the two schemas apart from their keys
  (`detect_format`: MMSA feature pickles vs MulT pickles; an unknown schema lists its keys);
- `Problems`: every check adds an error or a counted warning; errors are raised together,
  after all splits were looked at, as one `DataError` in the message form `file [split=..., key=...]: problem`;
- array checks (ranks, non-finite values scanned in chunks, lengths, labels, ids, split sizes);
- SHA-256 of the data file, compared with the sums published in the MMSA README, with a cache;
- `load_real`: the front door both loaders share (locate -> unpickle -> detect -> parse ->
  cross-split checks -> checksum -> `MSAData`).

Memory: arrays are converted one at a time and popped from the unpickled dict, so an
original that needs a cast is freed as soon as its float32 copy exists; float32 input is
used as is (`np.asarray` makes no copy, a view at most) and shared with torch (`torch.from_numpy`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from bench.data.base import SPLITS, DataError, DatasetInfo, MSAData, Split
from models.protocol import BERT_SPECIAL_IDS
from models.constants import SETTINGS, SIMS_DATASETS

DATASET_LABELS = {"mosi": "MOSI", "mosei": "MOSEI", "iemocap": "IEMOCAP", "synthetic": "synthetic", "sims": "CH-SIMS",
                  "simsv2": "CH-SIMS v2"}
# the data root's sub-folder of each dataset (MMSA's layout; SIMS_V2: CLGSI's config_regression.py)
FOLDERS = {"mosi": "MOSI", "mosei": "MOSEI", "iemocap": "IEMOCAP", "sims": "SIMS", "simsv2": "SIMS_V2"}
FORMAT_NAMES = {"mmsa": "MMSA", "mult": "MulT", "mag": "MAG-BERT"}
# the setting `data check` uses when none is given: what the default presets read
# (MMSA MulT/late_fusion on MOSI/MOSEI: unaligned_50; MulT paper IEMOCAP: iemocap_data.pkl)
DEFAULT_SETTING = {"mosi": "unaligned", "mosei": "unaligned", "iemocap": "aligned", "sims": "unaligned",
                   "simsv2": "unaligned"}
TEXT_INPUTS = ("features", "ids", "all", "raw_text")  # "all": every text view the file has (data check);
# "raw_text": token ids made from `raw_text` by the --text-encoder's tokenizer (bench.data.tokenize)

# the standard split sizes of the published pickles; a different count is a warning, an error in strict mode
SPLIT_SIZES = {
    "mosi": {"train": 1284, "valid": 229, "test": 686},
    "mosei": {"train": 16326, "valid": 1871, "test": 4659},
    "iemocap": {"train": 2717, "valid": 798, "test": 938},
    "sims": {"train": 1368, "valid": 456, "test": 457},  # CH-SIMS paper (ACL 2020); MMSA config train_samples
    # train: ch-sims-v2 / CLGSI config train_samples; valid/test: the CH-SIMS v2.0 paper's (ICMI 2022) split
    "simsv2": {"train": 2722, "valid": 647, "test": 1034},
}
# thuiar/MMSA README "Datasets": SHA-256 of the feature files
PUBLISHED_SHA256 = {
    ("mosi", "unaligned_50.pkl"): "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",
    ("mosi", "aligned_50.pkl"): "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",
    ("mosei", "unaligned_50.pkl"): "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",
    ("mosei", "aligned_50.pkl"): "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",
    ("sims", "unaligned_39.pkl"): "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f",
}  # thuiar/ch-sims-v2 publishes no sum for ch-simsv2s.pkl: its status is "no published sum"
MMSA_FILES = {  # MMSA-format files under the dataset folder, per setting (CH-SIMS has no aligned file)
    "mosi": {"aligned": "Processed/aligned_50.pkl", "unaligned": "Processed/unaligned_50.pkl"},
    "mosei": {"aligned": "Processed/aligned_50.pkl", "unaligned": "Processed/unaligned_50.pkl"},
    "sims": {"unaligned": "Processed/unaligned_39.pkl"},  # MMSA config_regression.json featurePath
    "simsv2": {"unaligned": "ch-simsv2s.pkl"},  # thuiar/ch-sims-v2 README: the supervised pickle
}
MULT_FILES = {  # yaohungt/Multimodal-Transformer src/dataset.py: <name>_data[_noalign].pkl
    "mosi": {"aligned": "mosi_data.pkl", "unaligned": "mosi_data_noalign.pkl"},
    "mosei": {"aligned": "mosei_senti_data.pkl", "unaligned": "mosei_senti_data_noalign.pkl"},
    "iemocap": {"aligned": "iemocap_data.pkl", "unaligned": "iemocap_data_noalign.pkl"},
}
MAG_FILES = {"mosi": "mosi.pkl", "mosei": "mosei.pkl"}  # WasifurRahman/BERT_multimodal_transformer datasets/
BERT_VOCAB_SIZE = 30522  # bert-base-uncased, the tokenizer of MMSA's English `text_bert`
BERT_TEXT_DIM = 768  # the text width reported for token ids: MMSA data_loader.py sets feature_dims[0] = 768
CHINESE_BERT_VOCAB_SIZE = 21128  # bert-base-chinese, the tokenizer of CH-SIMS's `text_bert` (MMSA README)
LABEL_RANGE = (-3.0, 3.0)  # MOSI/MOSEI sentiment intensity
SIMS_LABEL_RANGE = (-1.0, 1.0)  # CH-SIMS / CH-SIMS v2 sentiment intensity, multimodal and unimodal
UNIMODAL_LABEL_KEYS = {"t": "regression_labels_T", "a": "regression_labels_A", "v": "regression_labels_V"}
MULT_TEXT_ONLY = "model needs `text_bert`; MulT-format file has GloVe text only"
SOURCES_HINT = ("see README 'Data': MMSA pickles (MOSI, MOSEI, CH-SIMS unaligned_39.pkl) from the thuiar/MMSA "
                "README 'Datasets' links, CH-SIMS v2 ch-simsv2s.pkl from the thuiar/ch-sims-v2 README, "
                "MulT pickles from the yaohungt/Multimodal-Transformer README, MAG-BERT word-aligned "
                "mosi.pkl/mosei.pkl (--data-format mag) from the WasifurRahman/BERT_multimodal_transformer README")
_CHUNK_ELEMENTS = 1 << 25  # non-finite scans work on ~32M values at a time (bounded temporaries)
_HASH_CHUNK = 8 << 20  # bytes read per hashing step
_HASH_CACHE_MIN_BYTES = 64 << 20  # smaller files are re-hashed (under 0.1 s); larger ones cached on disk


# -- problems -----------------------------------------------------------------------------
@dataclass
class Problems:
    """Errors and warnings of one file. Errors are raised together by `raise_if_errors`."""

    file: str
    errors: list[DataError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, problem: str, split: str | None = None, key: str | None = None) -> None:
        self.errors.append(DataError(self.file, problem, split=split, key=key))

    def warn(self, problem: str, split: str | None = None, key: str | None = None) -> None:
        # same "[split=.., key=..]" form as errors, so a warning points at the same place
        self.warnings.append(str(DataError(self.file, problem, split=split, key=key)))

    def raise_if_errors(self) -> None:
        if not self.errors:
            return
        first = self.errors[0]
        if len(self.errors) == 1:
            first.problems = [first]
            raise first
        more = "\n".join(f"  {e}" for e in self.errors[1:20])
        if len(self.errors) > 21:
            more += f"\n  ... and {len(self.errors) - 21} more"
        err = DataError(first.file, f"{first.problem}\n{len(self.errors) - 1} more problem(s):\n{more}",
                        split=first.split, key=first.key)
        err.problems = list(self.errors)
        raise err


# -- locating and reading --------------------------------------------------------------
def resolve_setting(dataset: str, setting: Optional[str]) -> str:
    setting = setting or DEFAULT_SETTING[dataset]
    if setting not in SETTINGS:
        raise DataError(dataset, f"unknown setting '{setting}' (expected one of {', '.join(SETTINGS)})")
    published = MMSA_FILES.get(dataset, {})
    if dataset in SIMS_DATASETS and setting not in published:
        raise DataError(dataset, f"{DATASET_LABELS[dataset]} has no {setting} file (only "
                                 f"{', '.join(f'{k}: {v}' for k, v in published.items())}); use --setting "
                                 f"{', '.join(published)}")
    return setting


def candidate_files(dataset: str, setting: str, formats: tuple[str, ...] = ("mmsa", "mult")) -> list[str]:
    """Paths under the data root, in the order they are tried (MMSA layout first; MAG-BERT's
    `mosi.pkl`/`mosei.pkl` hold word-aligned data whatever the setting)."""
    mmsa_name = MMSA_FILES.get(dataset, {}).get(setting)
    mult = MULT_FILES.get(dataset, {}).get(setting)
    folder = FOLDERS[dataset]
    mmsa = [f"{folder}/{mmsa_name}"] if mmsa_name and "mmsa" in formats else []
    mag = [f"{folder}/{MAG_FILES[dataset]}", MAG_FILES[dataset]] if dataset in MAG_FILES and "mag" in formats else []
    return [*mmsa, *([f"{folder}/{mult}", mult] if mult and "mult" in formats else []), *mag]


def locate(dataset: str, setting: str, data_root: Optional[str], formats: tuple[str, ...] = ("mmsa", "mult")) -> Path:
    """The data file for (dataset, setting); a DataError lists every name looked for."""
    names = candidate_files(dataset, setting, formats)
    root = data_root or os.environ.get("MSABENCH_DATA")
    if not root:
        raise DataError(names[0], f"no data folder given: pass --data-root DIR or set MSABENCH_DATA; "
                                  f"expected DIR/{' or DIR/'.join(names)} ({SOURCES_HINT})")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(names[0], f"data folder {base} does not exist (from "
                                  f"{'--data-root' if data_root else '$MSABENCH_DATA'})")
    for name in names:
        if (base / name).is_file():
            return base / name
    other = next((o for o in SETTINGS if o != setting), setting)
    found = [n for n in candidate_files(dataset, other, formats) if (base / n).is_file()]
    hint = f"; the {other} file {found[0]} exists: --setting {other} reads it" if found else ""
    raise DataError(names[0], f"{DATASET_LABELS[dataset]} {setting} file not found under {base}; looked for "
                              f"{', '.join(names)}{hint} ({SOURCES_HINT})")


def read_pickle(path: Path, problems: Problems) -> Any:
    """Unpickle `path`; unreadable, non-pickle or truncated files become a DataError."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except UnicodeDecodeError:
        # Python-2 pickles of numpy arrays need latin1 to read their byte strings
        try:
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        except Exception as err:  # noqa: BLE001 - reported as data error
            raise DataError(problems.file, f"not a readable pickle ({type(err).__name__}: {err})") from None
    except OSError as err:
        raise DataError(problems.file, f"cannot read {path}: {err.strerror or err}") from None
    except EOFError:
        raise DataError(problems.file, "truncated file (unexpected end of data while unpickling)") from None
    except MemoryError:
        size = path.stat().st_size / 2**30
        raise DataError(problems.file, f"out of memory while unpickling {size:.1f} GiB") from None
    except Exception as err:  # UnpicklingError, ValueError, ModuleNotFoundError, ...: not a usable pickle
        if "truncated" in str(err):
            raise DataError(problems.file, f"truncated file ({type(err).__name__}: {err})") from None
        raise DataError(problems.file, f"not a pickle or a corrupt one ({type(err).__name__}: {err})") from None


def detect_format(obj: Any, problems: Problems) -> str:
    """'mmsa' (has `regression_labels`) or 'mult' (has `labels`), from the first split's keys."""
    if not isinstance(obj, dict):
        raise DataError(problems.file, f"top level is a {type(obj).__name__}, expected a dict with "
                                       f"train/valid/test")
    split = next((obj[s] for s in SPLITS if isinstance(obj.get(s), dict)), None)
    if split is None:
        found = ", ".join(map(repr, obj)) or "none"
        mag = " (a MAG-BERT word-aligned pickle? --data-format mag reads it)" if isinstance(obj.get("dev"), list) else ""
        raise DataError(problems.file, f"no train/valid/test split dicts at the top level (keys found: {found}){mag}")
    keys = set(split)
    if "regression_labels" in keys:
        return "mmsa"
    if "labels" in keys:
        return "mult"
    raise DataError(problems.file, "unknown schema: neither MMSA (`regression_labels`, `text_bert`, ...) nor "
                                   "MulT (`labels`, `text`, ...); keys found: " + ", ".join(sorted(map(str, keys))))


def split_dicts(obj: dict, problems: Problems, keys: Optional[dict[str, str]] = None, kind: Any = dict,
                what: str = "a dict of arrays") -> dict[str, Any]:
    """The train/valid/test entries (`keys`: split -> the file's key for it; default the same), each
    a `kind` (`what` in words); a missing split is an error, an extra one a warning."""
    keys = keys or {s: s for s in SPLITS}
    out = {}
    for s, key in keys.items():
        if key not in obj:
            problems.error(f"split '{key}' missing (splits found: {', '.join(map(str, obj))})", split=key)
        elif not isinstance(obj[key], kind):
            problems.error(f"split is a {type(obj[key]).__name__}, expected {what}", split=key)
        else:
            out[s] = obj[key]
    if extra := [str(k) for k in obj if k not in keys.values()]:
        problems.warn(f"extra top-level entries ignored: {', '.join(extra)}")
    return out


# -- per-key checks ----------------------------------------------------------------------
def count_samples(d: dict, keys: list[str], problems: Problems, split: str) -> Optional[int]:
    """N shared by `keys` of one split; None (after an error listing each key's N) if they differ."""
    counts = {}
    for k in keys:
        if k in d:
            try:
                counts[k] = len(d[k])
            except TypeError:
                problems.error(f"is a {type(d[k]).__name__}, expected one entry per sample", split=split, key=k)
    if len(set(counts.values())) > 1:
        problems.error("number of samples differs across keys: " + ", ".join(f"{k} {n}" for k, n in counts.items()),
                       split=split)
        return None
    if not counts:
        return None
    n = next(iter(counts.values()))
    if n == 0:
        problems.error("empty split (N = 0)", split=split)
        return None
    return n


def float_array(x: Any, rank: Optional[int], problems: Problems, split: str, key: str) -> Optional[np.ndarray]:
    """`x` as a float32 array of the given rank (None: any; no copy when it already is one), else None."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        problems.error(f"cannot be read as a float array ({err})", split=split, key=key)
        return None
    if rank is not None and arr.ndim != rank:
        problems.error(f"rank {arr.ndim} (shape {arr.shape}), expected {rank}", split=split, key=key)
        return None
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)  # a copy: batches index contiguous memory
    elif not arr.flags.writeable:
        arr = arr.copy()  # -inf is replaced in place; torch wants writable memory
    return arr


def take_features(d: dict, key: str, problems: Problems, split: str, shapes: dict[str, dict[str, tuple[int, int]]],
                  neginf_ok: bool = False) -> Optional[np.ndarray]:
    """Pop `key` from the split dict, cast to float32 (N, T, d), check non-finite values
    (see `check_features`) and record (T, d) for the cross-split checks."""
    arr = float_array(d.pop(key), 3, problems, split, key)
    if arr is None:
        return None
    check_features(arr, problems, split, key, neginf_ok)
    shapes.setdefault(split, {})[key] = (int(arr.shape[1]), int(arr.shape[2]))
    return arr


def missing_keys(d: dict, needed: list[str], problems: Problems, split: str) -> bool:
    """Error for each needed key that is absent (listing the keys found); True if any is."""
    absent = [k for k in needed if k not in d]
    for k in absent:
        problems.error(f"key missing (keys found: {', '.join(sorted(map(str, d)))})", split=split, key=k)
    return bool(absent)


@dataclass
class NonFinite:
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    first_nan: int = -1  # sample index (first axis)
    first_posinf: int = -1
    first_neginf: int = -1
    neginf_samples: int = 0


def scan_nonfinite(arr: np.ndarray) -> NonFinite:
    """Counts of NaN/+inf/-inf values and the first sample holding each, in bounded chunks."""
    out = NonFinite()
    per_sample = max(1, arr.size // max(1, arr.shape[0]))
    step = max(1, _CHUNK_ELEMENTS // per_sample)
    for start in range(0, arr.shape[0], step):
        chunk = arr[start : start + step]
        if np.isfinite(chunk).all():
            continue
        for name, test in (("nan", np.isnan), ("posinf", np.isposinf), ("neginf", np.isneginf)):
            hit = test(chunk)
            count = int(hit.sum())
            if not count:
                continue
            setattr(out, name, getattr(out, name) + count)
            per = hit.reshape(hit.shape[0], -1).any(1)
            if getattr(out, "first_" + name) < 0:
                setattr(out, "first_" + name, start + int(per.argmax()))
            if name == "neginf":
                out.neginf_samples += int(per.sum())
    return out


def zero_neginf(arr: np.ndarray) -> None:
    """audio == -inf -> 0, in place and in chunks (MMSA data_loader.py, MulT src/dataset.py)."""
    per_sample = max(1, arr.size // max(1, arr.shape[0]))
    step = max(1, _CHUNK_ELEMENTS // per_sample)
    for start in range(0, arr.shape[0], step):
        chunk = arr[start : start + step]
        np.copyto(chunk, 0.0, where=np.isneginf(chunk))


def check_features(arr: np.ndarray, problems: Problems, split: str, key: str, neginf_ok: bool,
                   row_starts: Optional[np.ndarray] = None) -> None:
    """NaN/+inf: error; -inf: error, or (audio) a counted warning and set to 0. `row_starts`:
    `arr` holds the rows of all samples one after another (MAG pickles), sample i from row
    row_starts[i]; the "first at index" then names the sample, not the row."""
    nf = scan_nonfinite(arr)
    if row_starts is not None:
        for name in ("nan", "posinf", "neginf"):
            first = getattr(nf, "first_" + name)
            if first >= 0:
                setattr(nf, "first_" + name, int(np.searchsorted(row_starts, first, side="right")) - 1)
        if nf.neginf:  # scan_nonfinite counted rows (words): count the samples they belong to
            rows = np.flatnonzero(np.isneginf(arr).reshape(arr.shape[0], -1).any(1))
            nf.neginf_samples = len(np.unique(np.searchsorted(row_starts, rows, side="right")))
    for name, label in (("nan", "NaN"), ("posinf", "+inf")):
        if getattr(nf, name):
            problems.error(f"{getattr(nf, name)} {label} values (first at index {getattr(nf, 'first_' + name)})",
                           split=split, key=key)
    if nf.neginf:
        if neginf_ok:
            problems.warn(f"{nf.neginf} -inf values in {nf.neginf_samples} samples set to 0 (as MMSA and MulT do)",
                          split=split, key=key)
            zero_neginf(arr)
        else:
            problems.error(f"{nf.neginf} -inf values (first at index {nf.first_neginf})", split=split, key=key)


def int_values(x: Any, problems: Problems, split: str, key: str, what: str = "values") -> Optional[np.ndarray]:
    """Integer-valued numbers (int or float dtype) as int64; non-integral values are an error."""
    try:
        arr = np.asarray(x)
        if arr.dtype.kind not in "iub":
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        problems.error(f"cannot be read as numbers ({err})", split=split, key=key)
        return None
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            flat = bad.reshape(bad.shape[0], -1).any(1) if arr.ndim > 1 else bad
            i = int(flat.argmax())
            problems.error(f"{int(bad.sum())} {what} not integers (first at index {i}: "
                           f"{_show(arr[i])})", split=split, key=key)
            return None
    return arr.astype(np.int64)


def lengths_array(x: Any, t: int, problems: Problems, split: str, key: str) -> Optional[np.ndarray]:
    """Valid steps per sample: rank 1, integers, 1 <= length <= T of that modality."""
    arr = int_values(x, problems, split, key)
    if arr is None:
        return None
    if arr.ndim != 1:
        problems.error(f"rank {arr.ndim} (shape {arr.shape}), expected 1", split=split, key=key)
        return None
    return None if flag_values((arr < 1) | (arr > t), arr, f"values outside 1..{t}", problems, split, key) else arr


def regression_labels(x: Any, problems: Problems, split: str, key: str,
                      label_range: tuple[float, float] = LABEL_RANGE) -> Optional[np.ndarray]:
    """Sentiment labels as float32 (N,): accepts (N,), (N,1) and MulT's (N,1,1); finite, in
    `label_range` ([-3, 3]; CH-SIMS [-1, 1])."""
    arr = float_array(x, None, problems, split, key)
    if arr is None:
        return None
    if arr.ndim == 0 or arr.reshape(arr.shape[0], -1).shape[1] != 1 or arr.ndim > 3:
        problems.error(f"shape {arr.shape}, expected (N,), (N, 1) or (N, 1, 1): one sentiment value per sample",
                       split=split, key=key)
        return None
    arr = np.ascontiguousarray(arr.reshape(-1))
    if flag_values(~np.isfinite(arr), arr, "non-finite labels", problems, split, key):
        return None
    lo, hi = label_range
    outside = flag_values((arr < lo) | (arr > hi), arr, f"labels outside [{lo:g}, {hi:g}]", problems, split, key, "g")
    return None if outside else arr


def flag_values(bad: np.ndarray, arr: np.ndarray, what: str, problems: Problems, split: str, key: str,
                spec: str = "") -> bool:
    """Error "N <what> (first at index i: value, formatted with `spec`)" where `bad` holds; True if it does."""
    if not bad.any():
        return False
    i = int(bad.argmax())
    problems.error(f"{int(bad.sum())} {what} (first at index {i}: {arr[i]:{spec}})", split=split, key=key)
    return True


def per_sample(x: Any, n: int, problems: Problems, split: str, key: str, what: str) -> Optional[list]:
    """`x` as a list of n items, or None: not iterable is an error naming `what` it should
    hold; a wrong length is left to the N check, which reports it."""
    try:
        items = list(x)
    except TypeError:
        problems.error(f"is a {type(x).__name__}, expected one {what} per sample", split=split, key=key)
        return None
    return items if len(items) == n else None


def id_strings(x: Any, n: int, problems: Problems, split: str, key: str = "id") -> Optional[list[str]]:
    """One string per sample: str kept, bytes decoded as UTF-8, multi-field records joined with `$_$`."""
    items = per_sample(x, n, problems, split, key, "id")
    if items is None:
        return None

    def one(v: Any) -> str:
        if isinstance(v, (list, tuple, np.ndarray)):
            return "$_$".join(one(f) for f in (v.tolist() if isinstance(v, np.ndarray) and v.ndim == 0 else v))
        text = as_text(v)
        return str(v) if text is None else text

    return [one(v) for v in items]


def as_text(v: Any) -> Optional[str]:
    """A str as it is, bytes decoded as UTF-8 (errors replaced); None for anything else."""
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", errors="replace")
    return str(v) if isinstance(v, (str, np.str_)) else None


def _show(v: Any) -> str:
    a = np.asarray(v)
    return np.array2string(a, threshold=8, separator=", ") if a.ndim else f"{a.item():g}"


# -- cross-split checks ------------------------------------------------------------------
def check_ids(ids: dict[str, list[str]], problems: Problems) -> None:
    """Same id in two splits: error (first 5); duplicates within a split and the same video
    (part before `$_$`) in two splits: warnings with counts."""
    seen: dict[str, str] = {}
    clashes: list[str] = []
    for s, lst in ids.items():
        unique = set(lst)
        if len(unique) < len(lst):
            problems.warn(f"{len(lst) - len(unique)} duplicate ids within the split", split=s, key="id")
        clashes += [f"{i!r} ({seen[i]}, {s})" for i in unique if i in seen]
        seen.update({i: s for i in unique if i not in seen})
    if clashes:
        problems.error(f"{len(clashes)} ids appear in two splits (first 5: {'; '.join(sorted(clashes)[:5])})", key="id")
    videos = {s: {i.split("$_$", 1)[0] for i in lst} for s, lst in ids.items()}
    for a, b in itertools.combinations(videos, 2):
        both = videos[a] & videos[b]
        if both:
            problems.warn(f"{len(both)} videos have clips in both {a} and {b} (standard folds are by video; "
                          f"first: {', '.join(sorted(both)[:3])})", key="id")


def check_split_sizes(dataset: str, sizes: dict[str, int], problems: Problems, strict: bool) -> None:
    expected = SPLIT_SIZES.get(dataset)
    if not expected:
        return
    for s, n in sizes.items():
        if n != expected[s]:
            msg = f"{n} samples, the standard {DATASET_LABELS[dataset]} {s} split has {expected[s]}"
            (problems.error if strict else problems.warn)(msg + (" (strict mode)" if strict else ""), split=s)


# -- checksums -----------------------------------------------------------------------------
_HASHES: dict[tuple[str, int, int], str] = {}  # in-process cache: (real path, size, mtime_ns) -> sha256


def _cache_file() -> Path:
    base = os.environ.get("MSABENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "msabench")
    return Path(base) / "sha256.json"


def sha256_file(path: Path, compute: Optional[Callable[[Path], str]] = None) -> str:
    """SHA-256 of a file, read in chunks. Cached by (real path, size, mtime) in memory and, for
    files >= 64 MiB, in `$MSABENCH_CACHE/sha256.json` (default ~/.cache/msabench), so a
    multi-GB file is hashed once, not at every run; a changed file has a new size or mtime."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    disk_key = "|".join(map(str, key))
    use_disk = st.st_size >= _HASH_CACHE_MIN_BYTES
    cache: dict[str, str] = {}
    if use_disk:
        with contextlib.suppress(OSError, ValueError):
            cache = json.loads(_cache_file().read_text())
        if disk_key in cache:
            _HASHES[key] = cache[disk_key]
            return cache[disk_key]
    digest = (compute or _sha256)(path)
    _HASHES[key] = digest
    if use_disk:
        cache[disk_key] = digest
        with contextlib.suppress(OSError):  # best effort: a read-only home only costs a re-hash next time
            target = _cache_file()
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(cache, f, indent=0)
            os.replace(tmp, target)
    return digest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def checksum(path: Path, dataset: str, problems: Problems, verify: bool) -> dict[str, Any]:
    """SHA-256 and its status against the MMSA README sums: match | mismatch (warning) |
    no published sum | skipped."""
    published = PUBLISHED_SHA256.get((dataset, path.name))
    if not verify:
        return {"sha256": None, "sha256_published": published, "checksum": "skipped"}
    digest = sha256_file(path)
    status = "no published sum" if published is None else "match" if digest == published else "mismatch"
    if published is not None and digest != published:
        problems.warn(f"SHA-256 {digest[:12]}... differs from the published sum {published[:12]}... "
                      f"(thuiar/MMSA README): the file differs from the published one (a re-extraction?)")
    return {"sha256": digest, "sha256_published": published, "checksum": status}


# -- model/data compatibility hints ----------------------------------------------------
# feature dims (t, a, v) of the known files (MulT #40; MMSA #48, #62, #104)
_DIM_HINTS = {
    "t": {768: "BERT features (MMSA file)", 300: "GloVe text (MulT-format file)"},
    "a": {5: "MOSI file (MMSA's 5 selected COVAREP dims)", 74: "MOSEI file or 74-d COVAREP MOSI",
          33: "CH-SIMS file (--dataset sims)", 25: "CH-SIMS v2 file (--dataset simsv2)"},
    "v": {20: "MOSI file (MMSA's 20 selected Facet dims)", 35: "MOSEI file", 47: "47-d Facet MOSI (MAG-BERT/CMU-SDK)",
          709: "CH-SIMS file (--dataset sims)", 177: "CH-SIMS v2 file (--dataset simsv2)"},
}


def dim_hint(modality: str, have: int) -> str:
    """A guess at what a file with this feature dim is, e.g. 'MOSEI file or 74-d COVAREP MOSI?'."""
    hint = _DIM_HINTS.get(modality, {}).get(int(have))
    return f"{hint}?" if hint else ""


# -- the shared front door ---------------------------------------------------------------
@dataclass
class ParseContext:
    dataset: str
    setting: str
    text_input: str
    problems: Problems
    options: dict[str, Any] = field(default_factory=dict)  # format-specific (raw_text: tokenizer, max_length)


@dataclass
class Parsed:
    """What a format parser hands back: Batch-keyed tensors per split plus info fields."""

    task: str
    tensors: dict[str, dict[str, torch.Tensor]]
    ids: dict[str, Optional[list[str]]]
    dims: dict[str, int]
    seq_lens: dict[str, int]
    text_views: tuple[str, ...]
    vocab_size: Optional[int] = None
    notes: dict[str, Any] = field(default_factory=dict)
    special_ids: tuple[int, int, int] = BERT_SPECIAL_IDS  # (cls, sep, pad) of the token ids
    trim_text: bool = False  # dynamic padding of the token ids per batch (`Split.trim_text`)


Parser = Callable[[dict[str, dict], ParseContext], Optional[Parsed]]


def load_real(dataset: str, parsers: dict[str, Parser], *, data_root: Optional[str] = None,
              setting: Optional[str] = None, text_input: Optional[str] = "features", strict: bool = False,
              verify_checksum: bool = True, options: Optional[dict[str, Any]] = None) -> MSAData:
    """Locate, unpickle, detect the schema, parse and validate every split, then check ids,
    split sizes and the checksum. Nothing is returned unless every check passed. Only the
    formats in `parsers` are looked for; `options` reach the parser (`ParseContext.options`)."""
    setting = resolve_setting(dataset, setting)
    text_input = check_text_input(dataset, text_input)
    path = locate(dataset, setting, data_root, tuple(parsers))
    problems = Problems(str(path))  # messages name the full path, as resolved from the data root
    obj = read_pickle(path, problems)
    fmt = detect_format(obj, problems)
    if fmt not in parsers:
        raise DataError(str(path), f"{FORMAT_NAMES[fmt]}-format file, but {DATASET_LABELS[dataset]} is read from "
                                 f"{' or '.join(FORMAT_NAMES[p] for p in parsers)} pickles")
    splits = split_dicts(obj, problems)
    del obj  # the split dicts are popped as they are converted: originals are freed early
    ctx = ParseContext(dataset, setting, text_input, problems, dict(options or {}))
    parsed = parsers[fmt](splits, ctx) if len(splits) == 3 else None
    del splits
    return finish_load(dataset, setting, path, fmt, problems, parsed, strict, verify_checksum)


def check_text_input(dataset: str, text_input: Optional[str]) -> str:
    text_input = text_input or "all"
    if text_input not in TEXT_INPUTS:
        raise DataError(dataset, f"unknown text input '{text_input}' (expected one of {', '.join(TEXT_INPUTS)})")
    return text_input


def finish_load(dataset: str, setting: str, path: Path, fmt: str, problems: Problems, parsed: Optional[Parsed],
                strict: bool, verify_checksum: bool) -> MSAData:
    """After a parser: raise its errors, then the cross-split checks (ids, split sizes), the
    checksum, and the `MSAData` (every loader ends here)."""
    problems.raise_if_errors()
    assert parsed is not None
    if all(v is not None for v in parsed.ids.values()):
        check_ids(parsed.ids, problems)  # type: ignore[arg-type]
    check_split_sizes(dataset, {s: int(parsed.tensors[s]["labels"].shape[0]) for s in SPLITS}, problems, strict)
    source = {"file": path.name, "path": str(path.resolve()), "format": fmt, "size_bytes": path.stat().st_size,
              **checksum(path, dataset, problems, verify_checksum), **parsed.notes}
    problems.raise_if_errors()
    ids = {s: parsed.ids[s] or [f"{s}:{i}" for i in range(int(parsed.tensors[s]["labels"].shape[0]))]
           for s in SPLITS}
    split_objs = {s: Split(s, parsed.tensors[s], ids[s], parsed.special_ids, trim_text=parsed.trim_text)
                  for s in SPLITS}
    info = DatasetInfo(
        name=dataset, task=parsed.task, setting=setting, dims=parsed.dims, seq_lens=parsed.seq_lens,
        text_views=parsed.text_views, vocab_size=parsed.vocab_size, special_ids=parsed.special_ids,
        source=source, warnings=list(problems.warnings),
    )
    return MSAData(info, split_objs["train"], split_objs["valid"], split_objs["test"])


def consistent_shapes(shapes: dict[str, dict[str, tuple[int, int]]], problems: Problems) -> None:
    """Feature dim and T of every key must equal the train split's (shapes: split -> key -> (T, d))."""
    ref = shapes.get("train", {})
    for s, per_key in shapes.items():
        for k, (t, d) in per_key.items():
            t0, d0 = ref.get(k, (t, d))  # train against itself, or a key train lacks: nothing to compare
            if d != d0:
                problems.error(f"feature dim {d}, train has {d0}", split=s, key=k)
            if t != t0:
                problems.error(f"sequence length T {t}, train has {t0}", split=s, key=k)


def aligned_lengths_match(t: dict[str, int], problems: Problems, split: str) -> None:
    """Aligned data: one time axis shared by text, audio and vision."""
    if len(set(t.values())) > 1:
        problems.error("aligned setting but T differs across modalities: "
                       + ", ".join(f"{k} {v}" for k, v in t.items()) + " (is this the unaligned file?)", split=split)


def full_lengths(n: int, t: int) -> torch.Tensor:
    return torch.full((n,), t, dtype=torch.int64)
