"""MulT pickles (bench/data/mult_pkl.py): IEMOCAP, and MulT's MOSI/MOSEI files,
on small files written in the exact format by tests/datagen.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bench.data import DataError, load_dataset
from bench.data.validate import MULT_TEXT_ONLY
from tests.datagen import MULT_DIMS, MULT_NAMES, MULT_T, mmsa_data, mult_data, write_mult, write_pickle


def load(root, dataset="iemocap", setting="aligned", text_input="features", **kw):
    return load_dataset(dataset, data_root=str(root), setting=setting, text_input=text_input, **kw)


@pytest.fixture(scope="module")
def base_data():
    return mult_data("iemocap", "aligned", seed=5, with_id=True)


def write_broken(tmp_path, base_data, mutate):
    data = copy.deepcopy(base_data)
    mutate(data)
    return write_pickle(data, tmp_path / "IEMOCAP" / "iemocap_data.pkl")


@pytest.mark.parametrize("setting", ["aligned", "unaligned"])
@pytest.mark.parametrize("folder", ["IEMOCAP", None], ids=["IEMOCAP_folder", "flat"])
def test_iemocap_loads_labels_as_four_binary_tasks(tmp_path, setting, folder):
    path = write_mult(tmp_path, "iemocap", setting, sizes=(12, 8, 6), folder=folder, seed=1)
    raw = mult_data("iemocap", setting, sizes=(12, 8, 6), seed=1)
    data = load(tmp_path, setting=setting)
    t_t, t_a, t_v = MULT_T[("iemocap", setting)]
    d_t, d_a, d_v = MULT_DIMS["iemocap"]
    info = data.info
    assert info.task == "iemocap" and info.setting == setting and info.source["format"] == "mult"
    assert info.source["path"] == str(path.resolve()) and info.text_views == ("features",)
    assert info.dims == {"t": d_t, "a": d_a, "v": d_v} and info.seq_lens == {"t": t_t, "a": t_a, "v": t_v}
    t = data.valid.tensors
    assert t["labels"].dtype == torch.int64 and t["labels"].shape == (8, 4)
    assert torch.equal(t["labels"], torch.from_numpy(raw["valid"]["labels"].argmax(-1)))  # MulT: argmax(-1)
    assert (t["labels"].sum(1) == 1).all()
    # MulT files carry no lengths: every length is the modality's full T
    assert t["audio_lengths"].tolist() == [t_a] * 8 and t["vision_lengths"].tolist() == [t_v] * 8
    assert t["text_lengths"].tolist() == [t_t] * 8 and "lengths" in info.source
    assert t["text_feats"].shape == (8, t_t, d_t) and t["text_feats"].dtype == torch.float32
    # no `id` (the public IEMOCAP files have none): warning, positional ids, overlap check skipped
    assert data.valid.ids[:2] == ["valid:0", "valid:1"]
    assert any("no `id` key" in w and "overlap check is skipped" in w for w in info.warnings)


def test_mult_ids_are_decoded_and_joined(tmp_path):
    write_mult(tmp_path, "iemocap", "aligned", sizes=(8, 8, 8), with_id=True)
    data = load(tmp_path)
    assert data.train.ids[5] == "trainv1$_$1$_$0"
    assert not any("no `id` key" in w for w in data.info.warnings)


def test_mult_mosi_file_is_detected_from_its_keys(tmp_path):
    """MulT's mosi_data_noalign.pkl is accepted for `mosi`, wherever it is, by its keys."""
    raw = mult_data("mosi", "unaligned", sizes=(8, 6, 6), seed=2, with_id=True)
    raw["train"]["audio"][1, 2, 3] = -np.inf
    write_pickle(raw, tmp_path / MULT_NAMES["mosi"]["unaligned"])
    data = load(tmp_path, "mosi", "unaligned")
    assert data.info.source["format"] == "mult" and data.info.task == "regression"
    assert data.info.dims == {"t": 300, "a": 5, "v": 20}
    assert data.train.labels.shape == (8,) and data.train.labels.dtype == torch.float32
    np.testing.assert_allclose(data.test.labels.numpy(), raw["test"]["labels"].reshape(-1))
    assert data.train.tensors["audio"][1, 2, 3].item() == 0.0
    assert any("1 -inf values in 1 samples set to 0" in w for w in data.info.warnings)
    # a MulT file under the MMSA name is still read as MulT (format from keys, not names)
    write_pickle(raw, tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl")
    assert load(tmp_path, "mosi", "unaligned").info.source["format"] == "mult"


def test_bert_models_cannot_read_mult_files(tmp_path):
    write_mult(tmp_path, "iemocap", "aligned", sizes=(4, 4, 4))
    with pytest.raises(DataError) as e:
        load(tmp_path, text_input="ids")
    assert e.value.problem.startswith(MULT_TEXT_ONLY) and "--glove PATH" in e.value.problem
    assert e.value.key == "text_bert"


def test_an_mmsa_file_is_not_iemocap(tmp_path):
    write_pickle(mmsa_data("mosi", "aligned", sizes=(4, 4, 4)), tmp_path / "IEMOCAP" / "iemocap_data.pkl")
    with pytest.raises(DataError, match="MMSA-format file, but IEMOCAP is read from MulT pickles"):
        load(tmp_path)


def test_missing_iemocap_file_lists_both_places(tmp_path):
    with pytest.raises(DataError) as e:
        load(tmp_path, setting="unaligned")
    assert "IEMOCAP/iemocap_data_noalign.pkl, iemocap_data_noalign.pkl" in str(e.value)
    assert "yaohungt/Multimodal-Transformer README" in str(e.value)


def _labels(split, index, value):
    def mutate(d):
        d[split]["labels"][index] = value
    return mutate


ERRORS = [
    ("pair_not_one_hot", _labels("train", (3, 1), (1.0, 1.0)), "1 label pairs not one-hot {0, 1} (first at index 3",
     "train", "labels"),
    ("pair_not_binary", _labels("valid", (0, 2), (0.5, 0.5)), "label pairs not one-hot {0, 1} (first at index 0",
     "valid", "labels"),
    ("label_nan", _labels("test", (1, 0, 0), np.nan), "1 non-finite label values (first at index 1)", "test", "labels"),
    ("labels_not_iemocap_shape", lambda d: d["train"].update(labels=np.zeros((30, 1, 1), np.float32)),
     "shape (30, 1, 1), expected (N, 4, 2)", "train", "labels"),
    ("text_missing", lambda d: d["valid"].pop("text"), "key missing", "valid", "text"),
    ("n_differs", lambda d: d["test"].update(audio=d["test"]["audio"][:-2]),
     "number of samples differs across keys: text 10, audio 8, vision 10, labels 10, id 10", "test", None),
    ("nan_text", lambda d: d["train"]["text"].__setitem__((2, 0, 0), np.nan), "1 NaN values (first at index 2)",
     "train", "text"),
    ("neginf_vision", lambda d: d["valid"]["vision"].__setitem__((4, 0, 0), -np.inf),
     "1 -inf values (first at index 4)", "valid", "vision"),
    ("aligned_T_differs", lambda d: [d[s].update(vision=d[s]["vision"][:, :15]) for s in d],
     "aligned setting but T differs across modalities: text 20, audio 20, vision 15", "train", None),
    ("id_in_two_splits", lambda d: d["test"].update(id=np.concatenate([d["valid"]["id"][:1], d["test"]["id"][1:]])),
     "1 ids appear in two splits", None, "id"),
]


@pytest.mark.parametrize("name, mutate, fragment, split, key", ERRORS, ids=[c[0] for c in ERRORS])
def test_bad_mult_input_is_an_error(tmp_path, base_data, name, mutate, fragment, split, key):
    path = write_broken(tmp_path, base_data, mutate)
    with pytest.raises(DataError) as e:
        load(tmp_path)
    assert e.value.file == str(path) and e.value.split == split and e.value.key == key, str(e.value)
    assert fragment in e.value.problem, str(e.value)


def test_samples_without_exactly_one_emotion_are_a_counted_warning(tmp_path, base_data):
    def mutate(d):
        d["train"]["labels"][2] = [(1, 0)] * 4  # no emotion present
        d["train"]["labels"][3] = [(0, 1), (0, 1), (1, 0), (1, 0)]  # two present

    path = write_broken(tmp_path, base_data, mutate)
    data = load(tmp_path)
    assert (f"{path} [split=train, key=labels]: 2 samples with != 1 present emotion (counts: 0: 1, 1: 28, "
            "2: 1); kept, excluded from the 4-way extras only") in data.info.warnings
    assert data.train.labels[2].tolist() == [0, 0, 0, 0] and data.train.labels[3].tolist() == [1, 1, 0, 0]


def test_neginf_audio_is_zeroed_with_a_warning(tmp_path, base_data):
    path = write_broken(tmp_path, base_data, lambda d: d["test"]["audio"].__setitem__((1, slice(0, 3), 0), -np.inf))
    data = load(tmp_path)
    assert f"{path} [split=test, key=audio]: 3 -inf values in 1 samples set to 0 (as MMSA and MulT do)" \
        in data.info.warnings
    assert data.test.tensors["audio"][1, :3, 0].tolist() == [0.0, 0.0, 0.0]
