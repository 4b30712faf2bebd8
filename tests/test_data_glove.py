"""IEMOCAP text for the BERT models (bench/data/glove.py, bench/data/mult_pkl.py): the words of
MulT's GloVe vectors found again by exact lookup in a GloVe file, tokenized, cached, refused
when the file is wrong; BERT models then train on IEMOCAP's 4 binary emotions."""

from __future__ import annotations

import numpy as np
import pytest

import bench.data.glove as glove_mod
from bench.data import DataError, load_dataset
from bench.data.glove import MIN_MATCH_RATE, UNK
from bench.data.tokenize import load_tokenizer, tokenize_texts
from tests.datagen import glove_table, write_glove, write_glove_iemocap

SIZES = (12, 8, 6)


def load(root, glove, text_input="ids", **kw):
    return load_dataset("iemocap", data_root=str(root), text_input=text_input, glove=str(glove),
                        text_encoder="tiny", verify_checksum=False, **kw)


def expected_text(words: list) -> str:
    return " ".join(w if w is not None else UNK for w in words)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A GloVe-text IEMOCAP pickle with 10 % out-of-file vectors, its GloVe file, the truth."""
    root = tmp_path_factory.mktemp("iemo")
    _, glove, truth = write_glove_iemocap(root, sizes=SIZES, seed=3, oov=0.1)
    return root, glove, truth


def test_every_word_is_found_again_and_misses_are_unk(made, monkeypatch):
    root, glove, truth = made
    seen = {}
    real = glove_mod.recover_texts
    monkeypatch.setattr("bench.data.mult_pkl.recover_texts",
                        lambda text, path: seen.setdefault("rec", real(text, path)))
    data = load(root, glove)
    rec = seen["rec"]
    for s in ("train", "valid", "test"):
        assert list(rec.texts[s]) == [expected_text(w) for w in truth[s]]  # cased, spaces, numbers, order
    assert "New York" in " ".join(rec.texts["train"]) and UNK in " ".join(rec.texts["train"])
    # the token ids are the tokenizer's ids of those texts, [CLS] ... [SEP], padding trimmed per batch
    tok = load_tokenizer(data.info.source["tokenizer_path"])
    first = data.train.tensors["text_ids"][0]
    want = tok(rec.texts["train"][0])["input_ids"]
    assert first[: len(want)].tolist() == want and tok.unk_token_id in data.train.tensors["text_ids"]
    assert data.info.text_views == ("ids",) and "text_feats" not in data.train.tensors
    assert data.train.trim_text and data.info.special_ids == (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
    assert data.train.tensors["text_lengths"].tolist() == data.train.tensors["text_mask"].sum(1).tolist()


def test_match_rate_is_counted_recorded_and_warned(made):
    root, glove, truth = made
    data = load(root, glove)
    words = [w for s in truth.values() for sample in s for w in sample]
    misses = sum(w is None for w in words)
    assert misses  # the fixture planted some
    g = data.info.source["glove"]
    assert (g["positions"], g["positions_matched"]) == (len(words), len(words) - misses)
    assert g["match_rate"] == pytest.approx(1 - misses / len(words), abs=1e-6)
    assert g["vectors_matched"] == len({w for w in words if w is not None})
    warned = [w for w in data.info.warnings if "read as [UNK]" in w]
    assert len(warned) == 1 and f"{misses:,} of {len(words):,} word vectors" in warned[0] and str(glove) in warned[0]


def test_zero_vectors_are_padding_and_minus_zero_is_zero(tmp_path):
    words, values = glove_table()
    values[1, 7] = 0.0  # the file writes 0.000000; the pickle below stores -0.0 there
    rows = np.asarray([[float(f"{v:.6f}") for v in r] for r in values]).astype(np.float32)
    text = {s: np.zeros((2, 4, rows.shape[1]), np.float32) for s in ("train", "valid", "test")}
    text["train"][0, 1], text["train"][0, 3] = rows[3], rows[12]  # a zero row between two words
    text["valid"][1, 0] = rows[1]
    text["valid"][1, 0, 7] = -0.0
    rec = glove_mod.recover_texts(text, write_glove(tmp_path / "g.txt", words, values))
    assert rec.texts["train"] == (f"{words[3]} {words[12]}", "")
    assert rec.texts["valid"] == ("", words[1]) and rec.empty == {"train": 1, "valid": 1, "test": 2}
    assert (rec.positions, rec.positions_matched) == (3, 3)


def test_the_lookup_and_the_tokens_are_made_once_per_file(made, monkeypatch):
    root, glove, _ = made
    calls = []
    real = glove_mod.scan_glove
    monkeypatch.setattr(glove_mod, "scan_glove", lambda path, vectors: calls.append(path) or real(path, vectors))
    monkeypatch.setattr(glove_mod, "_LOOKUPS", {})
    tokenize_texts.cache_clear()
    first, second = load(root, glove), load(root, glove)
    assert len(calls) == 1  # the GloVe file is read once
    info = tokenize_texts.cache_info()
    assert (info.misses, info.hits) == (3, 3)  # three splits tokenized once; the second load's from the cache
    assert first.train.tensors["text_ids"] is second.train.tensors["text_ids"]
    load(root, glove, text_max_length=12)  # another max length: new tokens, the same lookup
    assert len(calls) == 1


def test_all_keeps_the_glove_features_beside_the_ids(made):
    root, glove, _ = made
    data = load(root, glove, text_input="all")
    assert data.info.text_views == ("ids", "features") and data.info.dims["t"] == 300
    assert data.train.tensors["text_feats"].shape[1:] == (20, 300) and "text_ids" in data.train.tensors


def test_glove_file_is_found_under_the_data_root(made, tmp_path):
    root, glove, _ = made
    (root / "IEMOCAP" / "glove.840B.300d.txt").write_bytes(glove.read_bytes())
    try:
        data = load_dataset("iemocap", data_root=str(root), text_input="ids", text_encoder="tiny",
                            verify_checksum=False)
    finally:
        (root / "IEMOCAP" / "glove.840B.300d.txt").unlink()
    assert data.info.source["glove"]["file"].endswith("IEMOCAP/glove.840B.300d.txt")


def test_without_a_glove_file_a_bert_model_is_refused(made):
    root, _, _ = made
    with pytest.raises(DataError, match="--glove PATH"):
        load_dataset("iemocap", data_root=str(root), text_input="ids", text_encoder="tiny")


@pytest.mark.parametrize("case", ["few", "width", "missing", "empty"])
def test_a_wrong_glove_file_is_an_error_naming_it(made, tmp_path, case):
    root, _, _ = made
    path = tmp_path / f"{case}.txt"
    if case == "few":  # the right words, other vectors, plus one line that matches: under the minimum
        words, values = glove_table(seed=3)
        other = glove_table(seed=4)[1]
        other[0] = values[0]
        write_glove(path, words, other)
        match = f"below the {MIN_MATCH_RATE:.0%} minimum"
    elif case == "width":
        write_glove(path, *glove_table(dim=50))
        match = "GloVe vectors are 50-d .* `text` is 300-d"
    elif case == "empty":
        path.write_text("")
        match = "GloVe file is empty"
    else:
        match = "GloVe file not found"
    with pytest.raises(DataError, match=match) as e:
        load(root, path)
    assert e.value.file == str(path)


def test_bert_models_train_on_iemocap_with_four_binary_heads(made, tmp_path):
    import json

    from bench import api

    root, glove, _ = made
    frame = api.run("bert_text,mag_bert", datasets="iemocap", seeds="1111", out=tmp_path, epochs=1,
                    text_encoder="tiny", data_root=str(root), glove=str(glove), contributions=False, robustness=False)
    assert list(frame["status"]) == ["ok", "ok"]
    for path in sorted(tmp_path.glob("iemocap/*/seed1111.json")):
        res = json.loads(path.read_text())
        assert res["task"] == "iemocap" and res["config"]["model"]["n_out"] == 8
        assert {"Acc_Happy", "F1_Angry", "mean_acc"} <= set(res["metrics"]["test"])
        assert res["data"]["source"]["glove"]["match_rate"] > MIN_MATCH_RATE
        assert res["config"]["run"]["glove"] == str(glove)


def test_bert_runs_get_their_own_load_beside_the_feature_models(made):
    from bench.config import RunConfig
    from bench.runner import data_key, load_sweep_data, plan_runs

    root, glove, _ = made
    runs = plan_runs([RunConfig(model=m, dataset="iemocap", text_encoder="tiny", data_root=str(root), glove=str(glove))
                      for m in ("mult", "bert_text")])
    assert data_key(runs[0]) != data_key(runs[1])
    loaded = load_sweep_data(runs)
    mult, bert = (loaded[data_key(p)] for p in runs)
    assert mult.info.text_views == ("features",) and "glove" not in mult.info.source
    assert bert.info.text_views == ("ids",)
    assert mult.train.tensors["text_lengths"].unique().tolist() == [20]  # MulT's full T, untouched


def test_data_check_prints_the_match_rate(made, capsys):
    from bench.cli import main

    root, glove, _ = made
    with pytest.raises(SystemExit) as e:
        main(["data", "check", "--dataset", "iemocap", "--data-root", str(root), "--glove", str(glove),
              "--no-checksum"])
    out = capsys.readouterr().out
    assert e.value.code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("glove "))
    g = load(root, glove).info.source["glove"]
    assert f"{g['positions_matched']:,} of {g['positions']:,} word vectors matched ({g['match_rate']:.2%}" in line
    assert "views: ids, features" in out and "read as [UNK]" in out
