"""MMSA feature pickles (bench/data/mmsa.py) and the loader validation (bench/data/validate.py),
on small files written in the exact format by tests/datagen.py."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch

from bench.data import DataError, load_dataset
from bench.data import validate
from tests.datagen import MMSA_DIMS, MMSA_T, mmsa_data, mmsa_path, write_mmsa, write_pickle


def load(root, dataset="mosi", setting="unaligned", text_input="features", **kw):
    return load_dataset(dataset, data_root=str(root), setting=setting, text_input=text_input, **kw)


def at(root, message: str) -> str:
    """A message as the loader words it: it starts with the file's full path, not its basename."""
    return f"{mmsa_path(root, 'mosi', 'unaligned').parent}/{message}"


@pytest.fixture(scope="module")
def base_data():
    """MOSI unaligned split dicts (30/20/10), copied by each test before it breaks something."""
    return mmsa_data("mosi", "unaligned", seed=3)


def write_broken(tmp_path, base_data, mutate, setting="unaligned"):
    data = copy.deepcopy(base_data) if setting == "unaligned" else mmsa_data("mosi", setting, seed=3)
    mutate(data)
    return write_pickle(data, mmsa_path(tmp_path, "mosi", setting))


# -- formats load as MMSA does ---------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["mosi", "mosei"])
@pytest.mark.parametrize("setting", ["aligned", "unaligned"])
def test_every_mmsa_layout_loads_with_dims_and_lengths_from_the_data(tmp_path, dataset, setting):
    write_mmsa(tmp_path, dataset, setting, sizes=(12, 8, 6))
    t_t, t_a, t_v = MMSA_T[(dataset, setting)]
    d_t, d_a, d_v = MMSA_DIMS[dataset]
    feats = load(tmp_path, dataset, setting, "features")
    ids = load(tmp_path, dataset, setting, "ids")
    for data in (feats, ids):
        assert data.info.dims == {"t": 768, "a": d_a, "v": d_v}
        assert data.info.seq_lens == {"t": t_t, "a": t_a, "v": t_v}
        assert data.info.task == "regression" and data.info.setting == setting
        assert [len(data.train), len(data.valid), len(data.test)] == [12, 8, 6]
        t = data.train.tensors
        assert t["audio"].shape == (12, t_a, d_a) and t["audio"].dtype == torch.float32
        assert t["vision"].shape == (12, t_v, d_v) and t["vision"].dtype == torch.float32
        assert t["labels"].shape == (12,) and t["labels"].dtype == torch.float32
        for k in ("audio_lengths", "vision_lengths", "text_lengths"):
            assert t[k].dtype == torch.int64 and t[k].shape == (12,)
    # only the text view asked for is kept (memory)
    assert feats.info.text_views == ("features",) and "text_ids" not in feats.train.tensors
    assert feats.train.tensors["text_feats"].shape == (12, t_t, d_t)
    assert ids.info.text_views == ("ids",) and "text_feats" not in ids.train.tensors
    assert ids.train.tensors["text_ids"].dtype == torch.int64 and ids.info.vocab_size == validate.BERT_VOCAB_SIZE
    assert feats.info.source["format"] == "mmsa" and feats.info.source["file"] == f"{setting}_50.pkl"


def test_lengths_rule_aligned_uses_text_length_unaligned_reads_the_file(tmp_path):
    """Lengths read only for unaligned data; aligned -> sum(input_mask)."""
    raw = mmsa_data("mosi", "aligned", sizes=(6, 4, 4), seed=1)
    for s in raw:  # lengths keys in an aligned file are ignored, whatever they say
        raw[s]["audio_lengths"] = [999] * len(raw[s]["id"])
    write_pickle(raw, mmsa_path(tmp_path, "mosi", "aligned"))
    data = load(tmp_path, "mosi", "aligned", "ids")
    mask_sum = torch.from_numpy(raw["valid"]["text_bert"][:, 1].sum(1).astype(np.int64))
    assert torch.equal(data.valid.tensors["audio_lengths"], mask_sum)
    assert torch.equal(data.valid.tensors["vision_lengths"], mask_sum)
    assert torch.equal(data.valid.tensors["text_lengths"], mask_sum)

    raw = mmsa_data("mosi", "unaligned", sizes=(6, 4, 4), seed=1)
    write_pickle(raw, mmsa_path(tmp_path, "mosi", "unaligned"))
    data = load(tmp_path, "mosi", "unaligned", "features")
    assert data.test.tensors["audio_lengths"].tolist() == [int(v) for v in raw["test"]["audio_lengths"]]
    assert data.test.tensors["vision_lengths"].tolist() == [int(v) for v in raw["test"]["vision_lengths"]]


def test_mmsa_behaviours_cast_neginf_labels_ids_index(tmp_path):
    """Rules 1-3, 7: float64 input cast to float32, audio -inf -> 0 (vision untouched, counted
    warning), (N, 1) labels, only regression_labels read, ids and per-split index."""
    raw = mmsa_data("mosi", "unaligned", sizes=(8, 6, 6), seed=2, dtype=np.float64)
    tr = raw["train"]
    tr["audio"][0, 0, :2] = -np.inf
    tr["audio"][3, 1, 0] = -np.inf
    tr["regression_labels"] = tr["regression_labels"].reshape(-1, 1)
    for s in raw:  # garbage in the keys MMSA 2.x never reads
        raw[s]["classification_labels"] = ["not a label"] * len(raw[s]["id"])
        del raw[s]["annotations"]
    write_pickle(raw, mmsa_path(tmp_path, "mosi", "unaligned"))
    data = load(tmp_path, "mosi", "unaligned", "all")
    t = data.train.tensors
    assert t["audio"].dtype == torch.float32 and t["text_feats"].dtype == torch.float32
    assert t["audio"][0, 0, :2].tolist() == [0.0, 0.0] and t["audio"][3, 1, 0].item() == 0.0
    assert torch.isfinite(t["audio"]).all()
    np.testing.assert_allclose(t["audio"][1].numpy(), raw["train"]["audio"][1].astype(np.float32))
    assert t["labels"].shape == (8,)
    np.testing.assert_allclose(t["labels"].numpy(), raw["train"]["regression_labels"].reshape(-1), rtol=1e-6)
    neg = [w for w in data.info.warnings if "-inf" in w]
    assert neg == [at(tmp_path, "unaligned_50.pkl [split=train, key=audio]: 3 -inf values in 2 samples set to 0 "
                             "(as MMSA and MulT do)")]
    assert any("unused keys missing: annotations" in w for w in data.info.warnings)
    batch = data.valid.take(torch.tensor([4, 1]))
    assert batch.index.tolist() == [4, 1]
    assert batch.ids == [raw["valid"]["id"][4], raw["valid"]["id"][1]]
    assert data.info.text_views == ("ids", "features")


def test_float32_input_is_not_copied(tmp_path, monkeypatch):
    """A float32 array from the pickle becomes the tensor's storage (no copy)."""
    raw = mmsa_data("mosi", "unaligned", sizes=(6, 4, 4), seed=2)
    seen = {}
    real = validate.float_array

    def spy(x, *a, **k):
        out = real(x, *a, **k)
        seen[a[3]] = (x, out)  # key -> (input, output)
        return out

    monkeypatch.setattr(validate, "float_array", spy)
    write_pickle(raw, mmsa_path(tmp_path, "mosi", "unaligned"))
    data = load(tmp_path)
    src, out = seen["vision"]
    assert src.dtype == np.float32 and np.shares_memory(out, src)  # the unpickled array's memory, not a copy
    assert data.test.tensors["vision"].numpy().ctypes.data == out.ctypes.data


def test_seq_lens_and_dims_come_from_train_split(tmp_path):
    write_mmsa(tmp_path, "mosi", "unaligned", sizes=(6, 4, 4), t=(50, 40, 60))
    data = load(tmp_path)
    assert data.info.seq_lens == {"t": 50, "a": 40, "v": 60}  # not MMSA's config [50, 500, 375]


# -- finding files -----------------------------------------------------------------------
def test_missing_file_error_lists_expected_names(tmp_path):
    with pytest.raises(DataError) as e:
        load(tmp_path, "mosei", "aligned")
    msg = str(e.value)
    for name in ("MOSEI/Processed/aligned_50.pkl", "MOSEI/mosei_senti_data.pkl", "mosei_senti_data.pkl"):
        assert name in msg
    assert "thuiar/MMSA README" in msg


def test_missing_file_points_at_the_other_setting(tmp_path):
    write_mmsa(tmp_path, "mosi", "aligned", sizes=(4, 4, 4))
    with pytest.raises(DataError, match="the aligned file MOSI/Processed/aligned_50.pkl exists: --setting aligned"):
        load(tmp_path, "mosi", "unaligned")


def test_data_root_from_environment_and_missing_root(tmp_path, monkeypatch):
    write_mmsa(tmp_path, "mosi", "unaligned", sizes=(4, 4, 4))
    monkeypatch.delenv("MSABENCH_DATA", raising=False)
    with pytest.raises(DataError, match="pass --data-root DIR or set MSABENCH_DATA"):
        load_dataset("mosi", setting="unaligned")
    monkeypatch.setenv("MSABENCH_DATA", str(tmp_path))
    assert len(load_dataset("mosi", setting="unaligned").train) == 4
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nope")


# -- file-level errors --------------------------------------------------------
def _not_pickle(path):
    path.write_text("this is a CSV file,1,2,3\n")


def _truncated(path):
    full = pickle.dumps(mmsa_data("mosi", "unaligned", sizes=(4, 4, 4)), protocol=4)
    path.write_bytes(full[: len(full) // 2])


def _top_list(path):
    path.write_bytes(pickle.dumps([1, 2, 3]))


def _unknown_schema(path):
    data = mmsa_data("mosi", "unaligned", sizes=(4, 4, 4))
    for s in data:
        data[s]["sentiment"] = data[s].pop("regression_labels")
    path.write_bytes(pickle.dumps(data))


@pytest.mark.parametrize("make, fragment", [
    (_not_pickle, "not a pickle"),
    (_truncated, "truncated file"),
    (_top_list, "top level is a list"),
    (_unknown_schema, "unknown schema"),
], ids=["not_pickle", "truncated", "top_level_not_dict", "unknown_schema"])
def test_file_level_errors(tmp_path, make, fragment):
    path = mmsa_path(tmp_path, "mosi", "unaligned")
    path.parent.mkdir(parents=True)
    make(path)
    with pytest.raises(DataError) as e:
        load(tmp_path)
    assert str(e.value).startswith(at(tmp_path, "unaligned_50.pkl: ")) and fragment in str(e.value)
    if make is _unknown_schema:  # the keys found are listed
        assert "sentiment" in str(e.value) and "text_bert" in str(e.value)


def test_unreadable_file_is_a_data_error(tmp_path, monkeypatch):
    write_mmsa(tmp_path, sizes=(4, 4, 4))

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(validate, "open", denied, raising=False)  # shadows the builtin in that module
    with pytest.raises(DataError, match="cannot read .*Permission denied"):
        load(tmp_path)


# -- per-split checks ---------------------------------------------------------
def _set(split, key, fn):
    def mutate(d):
        d[split][key] = fn(d[split][key])
    return mutate


def _item(split, key, index, value):
    def mutate(d):
        arr = d[split][key]
        arr[index] = value
    return mutate


def _ids_in_two_splits(d):
    d["test"]["id"][0] = d["train"]["id"][0]


def _empty(d):
    d["test"] = {k: v[:0] for k, v in d["test"].items()}


def _both(*fns):
    def mutate(d):
        for f in fns:
            f(d)
    return mutate


ERRORS = [
    # (id, mutate, text_input, fragment, split, key)
    ("split_missing", lambda d: d.pop("valid"), "features", "split 'valid' missing", "valid", None),
    ("key_missing_audio", lambda d: d["train"].pop("audio"), "features", "key missing", "train", "audio"),
    ("key_missing_label", lambda d: d["test"].pop("regression_labels"), "features", "key missing", "test",
     "regression_labels"),
    ("key_missing_lengths", lambda d: d["valid"].pop("vision_lengths"), "features", "key missing", "valid",
     "vision_lengths"),
    ("key_missing_text_bert", lambda d: d["train"].pop("text_bert"), "ids", "key missing", "train", "text_bert"),
    ("id_missing", lambda d: d["train"].pop("id"), "features", "key missing", "train", "id"),
    ("n_differs", _set("valid", "vision", lambda v: v[:-1]), "features",
     "number of samples differs across keys", "valid", None),
    ("rank_feature", _set("train", "audio", lambda v: v[:, :, 0]), "features", "rank 2", "train", "audio"),
    ("rank_text_bert", _set("train", "text_bert", lambda v: v[:, :2]), "ids", "expected (N, 3, L)", "train",
     "text_bert"),
    ("rank_lengths", _set("test", "audio_lengths", lambda v: np.array(v)[:, None]), "features", "rank 2", "test",
     "audio_lengths"),
    ("rank_labels", _set("train", "regression_labels", lambda v: np.stack([v, v], 1)), "features",
     "expected (N,), (N, 1) or (N, 1, 1)", "train", "regression_labels"),
    ("dim_between_splits", _set("valid", "audio", lambda v: np.concatenate([v, v[:, :, :1]], 2)), "features",
     "feature dim 6, train has 5", "valid", "audio"),
    ("T_between_splits", _both(_set("test", "vision", lambda v: v[:, :400]),
                               _set("test", "vision_lengths", lambda v: [min(int(x), 400) for x in v])),
     "features", "sequence length T 400, train has 500", "test", "vision"),
    ("nan_feature", _item("train", "vision", (3, 5, 1), np.nan), "features", "1 NaN values (first at index 3)",
     "train", "vision"),
    ("posinf_feature", _item("valid", "audio", (2, 0, 0), np.inf), "features", "1 +inf values (first at index 2)",
     "valid", "audio"),
    ("nan_label", _item("train", "regression_labels", 4, np.nan), "features", "1 non-finite labels (first at index 4",
     "train", "regression_labels"),
    ("neginf_text", _item("train", "text", (1, 0, 0), -np.inf), "features", "1 -inf values (first at index 1)",
     "train", "text"),
    ("neginf_vision", _item("test", "vision", (6, 0, 0), -np.inf), "features", "1 -inf values (first at index 6)",
     "test", "vision"),
    ("lengths_not_integers", _set("train", "audio_lengths", lambda v: [2.5] + list(v[1:])), "features",
     "1 values not integers (first at index 0: 2.5)", "train", "audio_lengths"),
    ("lengths_zero", _set("train", "vision_lengths", lambda v: [0] + list(v[1:])), "features",
     "1 values outside 1..500 (first at index 0: 0)", "train", "vision_lengths"),
    ("ids_not_integral", _item("train", "text_bert", (0, 0, 1), 5.5), "ids", "not integers (first at index 0",
     "train", "text_bert"),
    ("ids_outside_vocab", _item("valid", "text_bert", (2, 0, 1), 40000), "ids",
     "1 token ids outside [0, 30522) (first at index 2: 40000)", "valid", "text_bert"),
    ("mask_not_01", _item("valid", "text_bert", (1, 1, 0), 2), "ids",
     "1 input_mask values not 0/1 (first at index 1: 2)", "valid", "text_bert"),
    ("label_range", _item("test", "regression_labels", 0, 3.4), "features",
     "1 labels outside [-3, 3] (first at index 0: 3.4)", "test", "regression_labels"),
    ("empty_split", _empty, "features", "empty split (N = 0)", "test", None),
    ("id_in_two_splits", _ids_in_two_splits, "features", "1 ids appear in two splits (first 5: 'train_vid000$_$0'",
     None, "id"),
]


@pytest.mark.parametrize("name, mutate, text_input, fragment, split, key", ERRORS, ids=[c[0] for c in ERRORS])
def test_bad_input_is_an_error_naming_file_split_key(tmp_path, base_data, name, mutate, text_input, fragment, split,
                                                     key):
    write_broken(tmp_path, base_data, mutate)
    with pytest.raises(DataError) as e:
        load(tmp_path, text_input=text_input)
    err = e.value
    assert err.file == str(mmsa_path(tmp_path, "mosi", "unaligned")) and err.split == split and err.key == key, str(err)
    assert fragment in err.problem, str(err)
    where = ", ".join(p for p in (f"split={split}" if split else "", f"key={key}" if key else "") if p)
    assert str(err).startswith(at(tmp_path, f"unaligned_50.pkl [{where}]: " if where else "unaligned_50.pkl: "))


def test_aligned_file_with_different_T_per_modality_is_an_error(tmp_path, base_data):
    write_broken(tmp_path, base_data, _set("train", "audio", lambda v: v[:, :40]), setting="aligned")
    with pytest.raises(DataError, match=r"aligned_50.pkl \[split=train\]: aligned setting but T differs across "
                                        r"modalities: text 50, audio 40, vision 50"):
        load(tmp_path, setting="aligned")


def test_spec_message_example_exactly(tmp_path, base_data):
    def mutate(d):
        lengths = list(d["valid"]["audio_lengths"])
        lengths[17], lengths[18], lengths[19] = 0, 0, 400
        d["valid"]["audio_lengths"] = lengths

    write_broken(tmp_path, base_data, mutate)
    with pytest.raises(DataError) as e:
        load(tmp_path)
    assert str(e.value) == at(tmp_path, "unaligned_50.pkl [split=valid, key=audio_lengths]: "
                                        "3 values outside 1..375 (first at index 17: 0)")


def test_all_problems_are_collected_before_raising(tmp_path, base_data):
    write_broken(tmp_path, base_data, _both(_item("train", "vision", (0, 0, 0), np.nan),
                                            _item("test", "regression_labels", 1, -7.0)))
    with pytest.raises(DataError) as e:
        load(tmp_path)
    assert len(e.value.problems) == 2
    text = str(e.value)
    assert "[split=train, key=vision]: 1 NaN values" in text and "[split=test, key=regression_labels]" in text


WARNINGS = [
    ("extra_split", lambda d: d.update(dev={}), "unaligned_50.pkl: extra top-level entries ignored: dev"),
    ("unused_keys_missing", lambda d: [d["valid"].pop(k) for k in ("raw_text", "annotations")],
     "unaligned_50.pkl [split=valid]: unused keys missing: raw_text, annotations"),
    ("neginf_audio", _both(_item("test", "audio", (0, 0, 0), -np.inf), _item("test", "audio", (0, 1, 0), -np.inf)),
     "unaligned_50.pkl [split=test, key=audio]: 2 -inf values in 1 samples set to 0 (as MMSA and MulT do)"),
    ("duplicate_id_in_split", _item("train", "id", 1, "train_vid000$_$0"),
     "unaligned_50.pkl [split=train, key=id]: 1 duplicate ids within the split"),
    ("video_in_two_splits", _item("test", "id", 0, "train_vid000$_$99"),
     "unaligned_50.pkl [key=id]: 1 videos have clips in both train and test (standard folds are by video; first: "
     "train_vid000)"),
]


@pytest.mark.parametrize("name, mutate, expected", WARNINGS, ids=[c[0] for c in WARNINGS])
def test_suspicious_input_is_a_counted_warning(tmp_path, base_data, name, mutate, expected):
    write_broken(tmp_path, base_data, mutate)
    data = load(tmp_path)
    assert at(tmp_path, expected) in data.info.warnings, data.info.warnings


def test_split_sizes_warn_and_strict_mode_errors(tmp_path):
    write_mmsa(tmp_path, "mosi", "aligned", sizes=(1284, 229, 686), t=(6, 6, 6), dims=(8, 5, 20))
    data = load(tmp_path, setting="aligned")
    assert not any("standard" in w for w in data.info.warnings)  # the standard sizes pass silently
    write_mmsa(tmp_path, "mosi", "aligned", sizes=(1284, 228, 686), t=(6, 6, 6), dims=(8, 5, 20))
    data = load(tmp_path, setting="aligned")
    assert at(tmp_path, "aligned_50.pkl [split=valid]: 228 samples, the standard MOSI valid split has 229") \
        in data.info.warnings
    with pytest.raises(DataError, match=r"\[split=valid\]: 228 samples, the standard MOSI valid split has 229 "
                                        r"\(strict mode\)"):
        load(tmp_path, setting="aligned", strict=True)


# -- checksums -------------------------------------------------------------------------------
def test_checksum_recorded_and_compared_with_the_published_sum(tmp_path, monkeypatch):
    path = write_mmsa(tmp_path, sizes=(4, 4, 4))
    digest = validate._sha256(path)
    data = load(tmp_path)
    assert data.info.source["sha256"] == digest and data.info.source["checksum"] == "mismatch"
    assert any("differs from the published sum 78e0f8b5ef8f" in w for w in data.info.warnings)
    monkeypatch.setitem(validate.PUBLISHED_SHA256, ("mosi", "unaligned_50.pkl"), digest)
    data = load(tmp_path)
    assert data.info.source["checksum"] == "match" and not any("SHA-256" in w for w in data.info.warnings)
    data = load(tmp_path, verify_checksum=False)
    assert data.info.source["checksum"] == "skipped" and data.info.source["sha256"] is None


def test_checksum_is_cached_by_path_size_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("MSABENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(validate, "_HASH_CACHE_MIN_BYTES", 0)  # use the on-disk cache for this small file
    monkeypatch.setattr(validate, "_HASHES", {})
    calls = []

    def counting(path):
        calls.append(path)
        return validate._sha256(path)

    path = write_mmsa(tmp_path / "data", sizes=(4, 4, 4))
    first = validate.sha256_file(path, counting)
    assert validate.sha256_file(path, counting) == first and len(calls) == 1  # in memory
    validate._HASHES.clear()
    assert validate.sha256_file(path, counting) == first and len(calls) == 1  # from the sidecar cache
    assert first in (tmp_path / "cache" / "sha256.json").read_text()
    write_mmsa(tmp_path / "data", sizes=(5, 4, 4))  # a changed file is hashed again
    second = validate.sha256_file(path, counting)
    assert len(calls) == 2 and second != first and second == validate._sha256(path)
