"""Writers of small data files in the exact formats msabench reads (MMSA
feature pickles, MulT pickles, MAG-BERT word-aligned pickles, bench/data/mag.py),
for tests and benchmarks.

    from tests.datagen import write_mag, write_mmsa, write_mult
    path = write_mmsa(tmp_path, "mosi", "unaligned", sizes=(30, 20, 10))
    path = write_mult(tmp_path, "iemocap", "aligned")
    path = write_mag(tmp_path, "mosi")          # <tmp_path>/mosi.pkl
    pkl, glove, words = write_glove_iemocap(tmp_path)   # IEMOCAP text from a GloVe file

`mutate(data)` lets a test break one thing before the file is written. Values are random
with a weak planted signal (labels follow the mean of the first audio feature), so a model
can learn something in one epoch; shapes, dtypes and key names are the real ones.

`python -m tests.datagen mosei-sized DIR` writes a MOSEI-sized unaligned file (16,326 train
samples, T 50/500/500, dims 768/74/35) through disk-backed arrays, for the memory check.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

# the released MMSA and MulT pickles: dims (text, audio, vision) and T (text, audio, vision)
MMSA_DIMS = {"mosi": (768, 5, 20), "mosei": (768, 74, 35), "sims": (768, 33, 709), "simsv2": (768, 25, 177)}
MMSA_T = {  # CH-SIMS: MMSA config_regression.json seq_lens; CH-SIMS v2: ch-sims-v2 / CLGSI config seq_lens
    ("sims", "unaligned"): (39, 400, 55), ("simsv2", "unaligned"): (50, 925, 232),
    ("mosi", "aligned"): (50, 50, 50), ("mosi", "unaligned"): (50, 375, 500),
    ("mosei", "aligned"): (50, 50, 50), ("mosei", "unaligned"): (50, 500, 500),
}
MULT_DIMS = {"mosi": (300, 5, 20), "mosei": (300, 74, 35), "iemocap": (300, 74, 35)}
MULT_T = {  # aligned IEMOCAP has T 20 (CMU-MultimodalSDK #302); unaligned: third-party inspections
    ("iemocap", "aligned"): (20, 20, 20), ("iemocap", "unaligned"): (20, 400, 500),
    ("mosi", "aligned"): (50, 50, 50), ("mosi", "unaligned"): (50, 375, 500),
    ("mosei", "aligned"): (50, 50, 50), ("mosei", "unaligned"): (50, 500, 500),
}
MULT_NAMES = {
    "mosi": {"aligned": "mosi_data.pkl", "unaligned": "mosi_data_noalign.pkl"},
    "mosei": {"aligned": "mosei_senti_data.pkl", "unaligned": "mosei_senti_data_noalign.pkl"},
    "iemocap": {"aligned": "iemocap_data.pkl", "unaligned": "iemocap_data_noalign.pkl"},
}
MAG_DIMS = {"mosi": (74, 47), "mosei": (74, 35)}  # (acoustic, visual): MAG-BERT README global_configs.py
# words of the MAG writer: single word pieces, several-piece words, punctuation, a capital
MAG_WORDS = ("i", "really", "liked", "this", "movie", "but", "the", "ending", "was", "unbelievably", "boring",
             "hmm", "don't", "Spielberg", "um", "great", "acting", "sl", "terrible", "plot", ".", "it's")
SPLITS = ("train", "valid", "test")
SMALL_SIZES = (30, 20, 10)
CLS, SEP, PAD = 101, 102, 0
Mutate = Optional[Callable[[dict], None]]


SIMS_FILES = {"sims": "SIMS/Processed/unaligned_39.pkl", "simsv2": "SIMS_V2/ch-simsv2s.pkl"}
SIMS = tuple(SIMS_FILES)


def _labels(rng: np.random.Generator, signal: np.ndarray, bound: float = 3.0) -> np.ndarray:
    """Sentiment in [-bound, bound] on the 0.2 grid (MOSI: 3, CH-SIMS: 1), following `signal`,
    with some exact zeros."""
    y = np.clip(np.round(5 * bound / 3 * (1.5 * signal + 0.5 * rng.normal(size=signal.shape))) / 5, -bound, bound)
    y[rng.random(signal.shape) < 0.1] = 0.0
    return y


def _sequences(rng: np.random.Generator, n: int, t: int, d: int, lengths: np.ndarray, signal: np.ndarray,
               dtype) -> np.ndarray:
    x = rng.normal(size=(n, t, d)).astype(dtype)
    x[:, :, 0] += signal[:, None]
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0  # zero padding after each length
    return x


def mmsa_split(rng: np.random.Generator, n: int, dataset: str = "mosi", setting: str = "unaligned",
               split: str = "train", t: Optional[tuple[int, int, int]] = None,
               dims: Optional[tuple[int, int, int]] = None, dtype=np.float32) -> dict:
    """One split dict of an MMSA pickle (the released MMSA layout). `text_bert` is float64 with integer values."""
    t_t, t_a, t_v = t or MMSA_T[(dataset, setting)]
    d_t, d_a, d_v = dims or MMSA_DIMS[dataset]
    signal = rng.normal(size=n)
    n_words = rng.integers(3, t_t - 1, n)
    ids = np.zeros((n, t_t))
    for i, k in enumerate(n_words):
        ids[i, 0], ids[i, 1 : k + 1], ids[i, k + 1] = CLS, rng.integers(1000, 29000, k), SEP
    mask = (ids != PAD).astype(np.float64)
    text_len = mask.sum(1).astype(np.int64)
    if setting == "aligned":
        a_len = v_len = text_len
    else:
        a_len, v_len = rng.integers(1, t_a + 1, n), rng.integers(1, t_v + 1, n)
    y = _labels(rng, signal, 1.0 if dataset in SIMS else 3.0)
    out = {
        "raw_text": np.array([f"clip {i} of {split}" for i in range(n)], dtype=object),
        "id": np.array([f"{split}_vid{i // 4:03d}$_${i % 4}" for i in range(n)], dtype=object),
        "text": _sequences(rng, n, t_t, d_t, text_len, signal, dtype),
        "text_bert": np.stack([ids, mask, np.zeros_like(ids)], axis=1),
        "audio": _sequences(rng, n, t_a, d_a, a_len, signal, dtype),
        "vision": _sequences(rng, n, t_v, d_v, v_len, 0.3 * signal, dtype),
        "annotations": np.array(["Negative" if v < 0 else "Neutral" if v == 0 else "Positive" for v in y],
                                dtype=object),
        "classification_labels": np.sign(y).astype(np.float64) + 1,
        "regression_labels": y.astype(dtype),
    }
    if setting == "unaligned":
        out["audio_lengths"], out["vision_lengths"] = list(a_len), list(v_len)  # a list in some files
    if dataset in SIMS:  # unimodal labels: the multimodal one plus noise, on the same grid
        for m in "TAV":
            out[f"regression_labels_{m}"] = np.clip(np.round(5 * (y + 0.3 * rng.normal(size=n))) / 5, -1, 1).astype(dtype)
        out["text_bert"][:, 0][out["text_bert"][:, 0] >= 21128] %= 21128  # bert-base-chinese vocabulary
    return out


def mmsa_data(dataset: str = "mosi", setting: str = "unaligned", sizes: tuple[int, int, int] = SMALL_SIZES,
              seed: int = 0, **kw) -> dict:
    rng = np.random.default_rng(seed)
    return {s: mmsa_split(rng, n, dataset, setting, s, **kw) for s, n in zip(SPLITS, sizes)}


def write_pickle(obj, path: Path, protocol: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def mmsa_path(root: Path, dataset: str, setting: str) -> Path:
    if dataset in SIMS_FILES:
        return Path(root) / SIMS_FILES[dataset]
    return Path(root) / dataset.upper() / "Processed" / f"{setting}_50.pkl"


def write_mmsa(root: Path, dataset: str = "mosi", setting: str = "unaligned", sizes=SMALL_SIZES, seed: int = 0,
               mutate: Mutate = None, **kw) -> Path:
    """`<root>/MOSI/Processed/unaligned_50.pkl` (or MOSEI / aligned_50; CH-SIMS:
    SIMS/Processed/unaligned_39.pkl, CH-SIMS v2: SIMS_V2/ch-simsv2s.pkl) in MMSA's format."""
    data = mmsa_data(dataset, setting, sizes, seed, **kw)
    if mutate:
        mutate(data)
    return write_pickle(data, mmsa_path(root, dataset, setting))


def mult_split(rng: np.random.Generator, n: int, dataset: str = "iemocap", setting: str = "aligned",
               split: str = "train", t: Optional[tuple[int, int, int]] = None, with_id: bool = False) -> dict:
    """One split dict of a MulT pickle (the released MulT layout): IEMOCAP labels (N, 4, 2) one-hot pairs, MOSI/MOSEI (N, 1, 1)."""
    t_t, t_a, t_v = t or MULT_T[(dataset, setting)]
    d_t, d_a, d_v = MULT_DIMS[dataset]
    signal = rng.normal(size=n)
    full = lambda tt: np.full(n, tt)  # noqa: E731 - MulT files carry no lengths
    out = {
        "text": _sequences(rng, n, t_t, d_t, full(t_t), signal, np.float32),
        "audio": _sequences(rng, n, t_a, d_a, full(t_a), signal, np.float32),
        "vision": _sequences(rng, n, t_v, d_v, full(t_v), 0.3 * signal, np.float32),
    }
    if dataset == "iemocap":
        emotion = np.digitize(signal, [-0.7, 0.0, 0.7])  # one present emotion per sample, from the signal
        labels = np.zeros((n, 4, 2), dtype=np.float32)
        labels[:, :, 0] = 1
        labels[np.arange(n), emotion] = (0, 1)
        out["labels"] = labels
    else:
        out["labels"] = _labels(rng, signal).astype(np.float32).reshape(n, 1, 1)
    if with_id:  # MulT's MOSI layout: (video, start, end) byte fields
        out["id"] = np.array([[f"{split}v{i // 4}".encode(), str(i % 4).encode(), b"0"] for i in range(n)])
    return out


def mult_data(dataset: str = "iemocap", setting: str = "aligned", sizes=SMALL_SIZES, seed: int = 0, **kw) -> dict:
    rng = np.random.default_rng(seed)
    return {s: mult_split(rng, n, dataset, setting, s, **kw) for s, n in zip(SPLITS, sizes)}


def write_mult(root: Path, dataset: str = "iemocap", setting: str = "aligned", sizes=SMALL_SIZES, seed: int = 0,
               mutate: Mutate = None, folder: Optional[str] = "IEMOCAP", **kw) -> Path:
    """MulT's `<folder>/iemocap_data.pkl` (folder None: flat under root, as in MulT's data/)."""
    data = mult_data(dataset, setting, sizes, seed, **kw)
    if mutate:
        mutate(data)
    base = Path(root) / folder if folder else Path(root)
    return write_pickle(data, base / MULT_NAMES[dataset][setting])


def mag_split(rng: np.random.Generator, n: int, dataset: str = "mosi", split: str = "train",
              words: tuple[int, int] = (3, 20)) -> list:
    """One split of a MAG-BERT pickle: [((words, visual, acoustic), label, segment), ...] with
    visual (n_words, 47|35) and acoustic (n_words, 74) float arrays, the label a (1, 1) array
    and the segment `video[clip]` (CMU-MultimodalSDK form)."""
    d_a, d_v = MAG_DIMS[dataset]
    signal = rng.normal(size=n)
    labels = _labels(rng, signal)
    out = []
    for i in range(n):
        k = int(rng.integers(words[0], words[1] + 1))
        w = [MAG_WORDS[j] for j in rng.integers(0, len(MAG_WORDS), k)]
        acoustic = rng.normal(size=(k, d_a))
        acoustic[:, 0] += signal[i]
        visual = rng.normal(size=(k, d_v)).astype(np.float32)
        out.append(((w, visual, acoustic), np.array([[labels[i]]], dtype=np.float32), f"{split}vid{i // 4:03d}[{i % 4}]"))
    return out


def mag_data(dataset: str = "mosi", sizes=SMALL_SIZES, seed: int = 0, **kw) -> dict:
    rng = np.random.default_rng(seed)
    return {key: mag_split(rng, n, dataset, key, **kw) for key, n in zip(("train", "dev", "test"), sizes)}


def write_mag(root: Path, dataset: str = "mosi", sizes=SMALL_SIZES, seed: int = 0, mutate: Mutate = None,
              folder: Optional[str] = None, **kw) -> Path:
    """MAG-BERT's `<root>/mosi.pkl` (folder "MOSI": `<root>/MOSI/mosi.pkl`); splits train/dev/test."""
    data = mag_data(dataset, sizes, seed, **kw)
    if mutate:
        mutate(data)
    base = Path(root) / folder if folder else Path(root)
    return write_pickle(data, base / f"{dataset}.pkl")


# GloVe-format words: cased, punctuation, a number, a word with a space (glove.840B has some)
GLOVE_WORDS = ("i", "really", "liked", "this", "movie", "but", "the", "ending", "was", "boring", ",", ".",
               "Spielberg", "don't", "it's", "1990", "great", "acting", "terrible", "plot", "New York")


def glove_table(words=GLOVE_WORDS, dim: int = 300, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """A GloVe table: each word's values as the file writes them (6 decimals) and as float64."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(scale=0.4, size=(len(words), dim)), 6)
    values[values == 0] = 1e-6  # no zero component: a stored vector is never mistaken for padding
    return list(words), values


def write_glove(path: Path, words: list[str], values: np.ndarray) -> Path:
    """`word v1 ... vd` per line, as glove.840B.300d.txt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{w} {' '.join(f'{v:.6f}' for v in row)}\n" for w, row in zip(words, values)))
    return path


def glove_mult(data: dict, words: list[str], values: np.ndarray, seed: int = 0, oov: float = 0.0,
               t: int = 20) -> dict[str, list[list[str]]]:
    """Replace each split's `text` with GloVe rows (float32, front zero padding, up to `t`
    words); a fraction `oov` of the words get a vector no line of the file has. Returns each
    sample's words (`None` for an out-of-file vector)."""
    rng = np.random.default_rng(seed)
    table = np.asarray([[float(f"{v:.6f}") for v in row] for row in values]).astype(np.float32)
    out = {}
    for s, d in data.items():
        n = len(d["labels"])
        text = np.zeros((n, t, values.shape[1]), dtype=np.float32)
        per = []
        for i in range(n):
            k = int(rng.integers(1, t + 1))
            idx = rng.integers(0, len(words), k)
            text[i, t - k :] = table[idx]
            sample = [words[j] for j in idx]
            for j in np.flatnonzero(rng.random(k) < oov):
                text[i, t - k + j] = rng.normal(size=values.shape[1]).astype(np.float32)
                sample[j] = None
            per.append(sample)
        d["text"] = text
        out[s] = per
    return out


def write_glove_iemocap(root: Path, setting: str = "aligned", sizes=SMALL_SIZES, seed: int = 0, oov: float = 0.0,
                        glove_name: str = "glove.txt") -> tuple[Path, Path, dict[str, list[list[str]]]]:
    """MulT's `<root>/IEMOCAP/iemocap_data[_noalign].pkl` whose `text` rows come from the GloVe
    file `<root>/<glove_name>` (written too). Returns (pickle, GloVe file, each sample's words)."""
    words, values = glove_table(seed=seed)
    glove = write_glove(Path(root) / glove_name, words, values)
    data = mult_data("iemocap", setting, sizes, seed)
    truth = glove_mult(data, words, values, seed=seed, oov=oov)
    return write_pickle(data, Path(root) / "IEMOCAP" / MULT_NAMES["iemocap"][setting]), glove, truth


def write_mosei_sized(root: Path, n_train: int = 16326, n_other: int = 64, seed: int = 0) -> Path:
    """A MOSEI-sized unaligned MMSA file (float32 features), built from disk-backed arrays so
    that writing it needs little memory. Returns its path."""
    rng = np.random.default_rng(seed)
    t_t, t_a, t_v = MMSA_T[("mosei", "unaligned")]
    d_t, d_a, d_v = MMSA_DIMS["mosei"]
    data = {}
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        for s, n in zip(SPLITS, (n_train, n_other, n_other)):
            small = mmsa_split(rng, n, "mosei", "unaligned", s, t=(t_t, 4, 4), dims=(1, d_a, d_v))
            for key, shape in (("text", (n, t_t, d_t)), ("audio", (n, t_a, d_a)), ("vision", (n, t_v, d_v))):
                mm = np.lib.format.open_memmap(Path(scratch) / f"{s}_{key}.npy", "w+", np.float32, shape)
                step = 512
                for i in range(0, n, step):
                    mm[i : i + step] = rng.standard_normal((min(step, n - i), *shape[1:]), dtype=np.float32)
                small[key] = np.asarray(mm)  # plain ndarray view: pickled as an ndarray, not a memmap
            small["audio"][0, :3, 0] = -np.inf  # COVAREP files carry some -inf
            small["audio_lengths"] = list(np.random.default_rng(1).integers(1, t_a + 1, n))
            small["vision_lengths"] = list(np.random.default_rng(2).integers(1, t_v + 1, n))
            data[s] = small
        path = write_pickle(data, mmsa_path(root, "mosei", "unaligned"))
        del data
    return path


if __name__ == "__main__":  # python -m tests.datagen mosei-sized DIR
    if len(sys.argv) != 3 or sys.argv[1] != "mosei-sized":
        sys.exit("usage: python -m tests.datagen mosei-sized DIR")
    p = write_mosei_sized(Path(sys.argv[2]))
    print(f"{p} {p.stat().st_size / 2**30:.2f} GiB")
