"""CH-SIMS (`sims`) and CH-SIMS v2 (`simsv2`): MMSA-format pickles with unimodal labels, on
small files written in the exact released format (names, widths, T) by tests/datagen.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from bench.data import DataError, load_dataset
from bench.data import validate
from tests.datagen import MMSA_DIMS, MMSA_T, SIMS, mmsa_data, mmsa_path, write_mmsa, write_pickle
from tests.test_data_cli import bench_inprocess

SIZES = (12, 8, 6)


def load(root, dataset, **kw):
    return load_dataset(dataset, data_root=str(root), **{"text_input": "all", **kw})


def broken(root, dataset, mutate):
    data = mmsa_data(dataset, "unaligned", SIZES, seed=1)
    mutate(data)
    return write_pickle(data, mmsa_path(root, dataset, "unaligned"))


@pytest.mark.parametrize("dataset", SIMS)
def test_released_layout_loads_with_unimodal_labels_in_the_batch(tmp_path, dataset):
    path = write_mmsa(tmp_path, dataset, "unaligned", sizes=SIZES, seed=2)
    raw = mmsa_data(dataset, "unaligned", SIZES, seed=2)
    data = load(tmp_path, dataset)
    info = data.info
    assert path.relative_to(tmp_path).as_posix() == {"sims": "SIMS/Processed/unaligned_39.pkl",
                                                    "simsv2": "SIMS_V2/ch-simsv2s.pkl"}[dataset]
    assert (info.dims["t"], info.dims["a"], info.dims["v"]) == MMSA_DIMS[dataset]
    assert (info.seq_lens["t"], info.seq_lens["a"], info.seq_lens["v"]) == MMSA_T[(dataset, "unaligned")]
    assert info.setting == "unaligned" and info.vocab_size == validate.CHINESE_BERT_VOCAB_SIZE
    idx = torch.tensor([5, 0, 3])
    batch = data.valid.take(idx)
    for m, key in validate.UNIMODAL_LABEL_KEYS.items():
        got = getattr(batch, f"labels_{m}")
        assert got.dtype == torch.float32 and got.shape == (3,)
        np.testing.assert_array_equal(got.numpy(), np.asarray(raw["valid"][key])[idx.numpy()])
    np.testing.assert_array_equal(batch.labels.numpy(), raw["valid"]["regression_labels"][idx.numpy()])
    moved = batch.to(torch.device("cpu"))
    assert moved.labels_v is not None


def test_mosi_has_no_unimodal_labels_in_its_batch(tmp_path):
    write_mmsa(tmp_path, "mosi", "unaligned", sizes=SIZES)
    batch = load(tmp_path, "mosi").train.take(torch.arange(2))
    assert batch.labels_t is None and batch.labels_a is None and batch.labels_v is None


@pytest.mark.parametrize("dataset", SIMS)
def test_no_aligned_file_is_a_clear_error(tmp_path, dataset):
    write_mmsa(tmp_path, dataset, "unaligned", sizes=SIZES)
    with pytest.raises(DataError, match=r"has no aligned file .*unaligned.*use --setting unaligned"):
        load(tmp_path, dataset, setting="aligned")


def _label(split, key, i, value):
    def mutate(d):
        d[split][key][i] = value
    return mutate


@pytest.mark.parametrize("dataset", SIMS)
@pytest.mark.parametrize("key", ["regression_labels", "regression_labels_A"])
def test_labels_outside_minus1_1_name_file_split_key(tmp_path, dataset, key):
    path = broken(tmp_path, dataset, _label("test", key, 2, 1.4))
    with pytest.raises(DataError) as e:
        load(tmp_path, dataset)
    assert str(e.value) == f"{path} [split=test, key={key}]: 1 labels outside [-1, 1] (first at index 2: 1.4)"


def test_mosi_labels_keep_their_range(tmp_path):
    write_mmsa(tmp_path, "mosi", "unaligned", sizes=SIZES, mutate=_label("test", "regression_labels", 2, 2.6))
    assert load(tmp_path, "mosi").test.labels[2].item() == pytest.approx(2.6)


def test_mosi_file_given_as_sims_names_the_missing_unimodal_labels(tmp_path):
    src = write_mmsa(tmp_path / "m", "mosi", "unaligned", sizes=SIZES)
    dst = mmsa_path(tmp_path, "sims", "unaligned")
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with pytest.raises(DataError) as e:
        load(tmp_path, "sims")
    msg = str(e.value)
    assert msg.startswith(f"{dst} [split=train, key=regression_labels_T]: key missing: CH-SIMS files carry the "
                          "unimodal labels regression_labels_T, regression_labels_A, regression_labels_V (a MOSI/MOSEI")


@pytest.mark.parametrize("dataset", SIMS)
def test_sims_file_given_as_mosi_is_refused(tmp_path, dataset):
    src = write_mmsa(tmp_path / "s", dataset, "unaligned", sizes=SIZES)
    dst = mmsa_path(tmp_path, "mosi", "unaligned")
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with pytest.raises(DataError) as e:
        load(tmp_path, "mosi")
    assert str(e.value).startswith(f"{dst} [split=train, key=regression_labels_T]: unexpected key: unimodal labels "
                                   "are CH-SIMS's")
    assert "--dataset sims or simsv2 reads it" in str(e.value)


def test_chinese_vocabulary_bounds_the_token_ids(tmp_path):
    def big_id(d):
        d["valid"]["text_bert"][1, 0, 1] = validate.CHINESE_BERT_VOCAB_SIZE
    path = broken(tmp_path, "sims", big_id)
    with pytest.raises(DataError) as e:
        load(tmp_path, "sims", text_input="ids")
    assert str(e.value) == f"{path} [split=valid, key=text_bert]: 1 token ids outside [0, 21128) (first at index 1: 21128)"


@pytest.mark.parametrize("dataset, ok", [("simsv2", True), ("sims", False)])
def test_vision_neginf_zeroed_for_simsv2_only(tmp_path, dataset, ok):
    def neginf(d):
        d["train"]["vision"][0, 0, 0] = -np.inf
    path = broken(tmp_path, dataset, neginf)
    if ok:
        data = load(tmp_path, dataset)
        assert data.train.tensors["vision"][0, 0, 0].item() == 0.0
        assert any("[split=train, key=vision]: 1 -inf values in 1 samples set to 0" in w for w in data.info.warnings)
    else:
        with pytest.raises(DataError, match=r"\[split=train, key=vision\]: 1 -inf values \(first at index 0\)"):
            load(tmp_path, dataset)
        assert path.exists()


def test_split_sizes_and_checksums(tmp_path):
    write_mmsa(tmp_path, "sims", "unaligned", sizes=SIZES)
    write_mmsa(tmp_path, "simsv2", "unaligned", sizes=SIZES)
    sims, v2 = load(tmp_path, "sims"), load(tmp_path, "simsv2")
    assert sims.info.source["sha256_published"] == validate.PUBLISHED_SHA256[("sims", "unaligned_39.pkl")]
    assert sims.info.source["checksum"] == "mismatch"
    assert v2.info.source["checksum"] == "no published sum"
    assert any("12 samples, the standard CH-SIMS train split has 1368" in w for w in sims.info.warnings)
    assert any("6 samples, the standard CH-SIMS v2 test split has 1034" in w for w in v2.info.warnings)
    with pytest.raises(DataError, match=r"12 samples, the standard CH-SIMS v2 train split has 2722 \(strict mode\)"):
        load(tmp_path, "simsv2", strict=True)


@pytest.mark.parametrize("dataset, label", [("sims", "CH-SIMS"), ("simsv2", "CH-SIMS v2")])
def test_data_check_cli(tmp_path, capsys, dataset, label):
    write_mmsa(tmp_path, dataset, "unaligned", sizes=SIZES)
    code, out, err = bench_inprocess(capsys, "data", "check", "--dataset", dataset, "--data-root", str(tmp_path))
    assert code == 0, err
    t, a, v = MMSA_T[(dataset, "unaligned")]
    dt, da, dv = MMSA_DIMS[dataset]
    assert out.startswith(f"{label} ({dataset}), unaligned, task regression")
    assert f"dims      t {dt}, a {da}, v {dv}   seq_lens t {t}, a {a}, v {v}" in out
    assert "views: ids, features; vocab 21128" in out
    assert f"OK: {dataset} unaligned passed validation" in out
