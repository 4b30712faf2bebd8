"""Semi-IIN (models/semi_iin.py) against flow-ljh/Semi-IIN@55f1c4d:
parameter counts, the intra/inter masks against the released slicing, attention, gates and the
whole forward against a direct slow computation, the loss terms' gradient paths, the optional
self-training stage (and its error message), and a demo training run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.catalog import row_label
from bench.data.stage_data import load_stage_data
from bench.data.unlabeled import UnlabeledDataError, check_unlabeled_dir
from bench.train import train_and_test
from models import create_model
from models.base import count_parameters
from models.registry import get_model_entry
from models.layers.transformer import dropout_keep, sinusoidal_positions
from models.semi_iin import (
    NATIVE, GroupMaskedAttention, SemiIIN, emotion_classes,
    group_mask,
)
from tests.conftest import slice_data, train_demo

INF = float("-inf")


def n_params(*mods) -> int:
    return sum(p.numel() for m in mods for p in m.parameters())


def meta(dataset: str = "mosi", **over) -> SemiIIN:
    with torch.device("meta"):
        return create_model("semi_iin", dataset, "official", **over)


# -- parameter counts (docs/models/semi_iin.md; the paper's 1.6M / 1.3M) ---------------------------
def test_native_parameter_counts():
    masked, plain = meta(**NATIVE), meta(**NATIVE, attention="global")
    assert count_parameters(masked) == {"total": 1_602_376, "trainable": 1_602_376}
    assert count_parameters(plain) == {"total": 1_338_056, "trainable": 1_338_056}
    assert masked.seq_len == 252 and masked.token_lengths == (100, 100, 50)  # 800 HuBERT frames -> 100
    assert n_params(masked.intra) == n_params(masked.inter) == 198_528
    assert n_params(masked.gate_val, masked.gate_emo) == 65_792
    assert n_params(masked.proj_t, masked.proj_a1, masked.proj_a2, masked.proj_v) == 393_216 + 524_288 + 65_536 + 98_304
    assert n_params(masked.mlp, masked.fc_val, masked.fc_emo) == 25_288
    assert masked.pos_embed.numel() == 32_256
    assert count_parameters(meta(**{**NATIVE, "dims": (768, 1024, 256)}))["total"] == 1_504_072  # BERT-size formula


def test_mmsa_counts_as_bench_ls_prints():
    from bench.cli.ls import parameter_count

    assert parameter_count("semi_iin", "mosi", "official") == 961_096  # 768/5/20, T = 2 + 50 + 375 + 500
    assert parameter_count("semi_iin", "mosei", "official") == 1_009_352  # 768/74/35, T = 2 + 50 + 500 + 500
    assert meta("mosi").seq_len == 927 and meta("mosei").seq_len == 1052


def test_presets_and_unsupported():
    entry = get_model_entry("semi_iin")
    assert entry.resolve_preset("synthetic", None) == "demo"
    assert "iemocap" in entry.unsupported and ("mosi", "official") in entry.presets
    cfg = entry.presets[("mosi", "official")]
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.max_epochs, cfg.optimizer) == (1e-4, 1e-4, 32, 30, "adam")
    assert (cfg.text_input, cfg.setting, cfg.dims_from_data, cfg.unlabeled_dir) == ("features", "unaligned", True, None)
    assert entry.presets[("mosei", "official")].pseudo_top_k is None and cfg.pseudo_top_k == 40
    assert row_label("semi_iin", dataclasses.asdict(cfg)) == "Semi-IIN (supervised)"
    assert row_label("semi_iin", dataclasses.asdict(cfg) | {"unlabeled_dir": "/data/ami"}) == "Semi-IIN"


# -- masks and attention ---------------------------------------------------------------------------
def released_mask(la: int, lt: int, lv: int, inter: bool) -> torch.Tensor:
    """multihead_attention_orign.py:123-146 with its 2/100/100 constants as arguments: additive -inf."""
    s, a, t = 2, 2 + la, 2 + la + lt
    m = torch.zeros(s + la + lt + lv, s + la + lt + lv)
    m[:s, :s] = INF
    if inter:
        m[s:a, s:a] = INF
        m[a:t, a:t] = INF
        m[t:, t:] = INF
    else:
        m[s:a, a:] = INF
        m[a:t, s:a] = INF
        m[a:t, t:] = INF
        m[t:, s:t] = INF
    return m


@pytest.mark.parametrize("lengths", [(3, 4, 2), (100, 100, 50), (1, 1, 1)])
@pytest.mark.parametrize("inter", [True, False])
def test_masks_equal_the_released_slicing(lengths, inter):
    assert torch.equal(group_mask(lengths, inter), released_mask(*lengths, inter) == 0)


def slow_attention(attn, x: torch.Tensor, allowed, kv: torch.Tensor | None = None) -> torch.Tensor:
    """One query, one head at a time: softmax(q.k / sqrt(dh) - inf where masked) v, concat, out_proj;
    queries from x, keys and values from kv (default x)."""
    d, h = attn.d, attn.heads
    dh = d // h
    w, b = attn.in_proj_weight, attn.in_proj_bias
    kv = x if kv is None else kv
    out = torch.zeros_like(x)
    for n in range(x.shape[0]):
        q, k, v = (z[n] @ w[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d] for i, z in enumerate((x, kv, kv)))
        heads = []
        for j in range(h):
            sl = slice(j * dh, (j + 1) * dh)
            rows = []
            for i in range(x.shape[1]):
                scores = torch.stack([q[i, sl] @ k[m, sl] / math.sqrt(dh) if allowed is None or allowed[i, m]
                                      else torch.tensor(INF, dtype=x.dtype) for m in range(x.shape[1])])
                rows.append(torch.softmax(scores, 0) @ v[:, sl])
            heads.append(torch.stack(rows))
        out[n] = torch.cat(heads, -1) @ attn.out_proj.weight.T + attn.out_proj.bias
    return out


@pytest.mark.parametrize("inter", [True, False, None])
def test_masked_attention_matches_slow_loop(inter):
    torch.manual_seed(0)
    allowed = None if inter is None else group_mask((3, 2, 2), inter)
    attn = GroupMaskedAttention(8, 2, 0.0, allowed).double().eval()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    assert torch.allclose(attn(x, x), slow_attention(attn, x, allowed), atol=1e-12)


def test_cpu_dropout_path_is_the_same_function_without_dropout():
    torch.manual_seed(0)
    attn = GroupMaskedAttention(8, 2, 0.5, group_mask((3, 2, 2), True)).double().train()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    attn.attn_dropout = 1e-12  # the hand-written CPU path, with (almost) nothing dropped
    assert torch.allclose(attn(x, x), slow_attention(attn, x, attn.allowed), atol=1e-9)


def slow_forward(model: SemiIIN, text, audio, vision) -> tuple[torch.Tensor, torch.Tensor]:
    """The released CMFM forward (eval) written out directly, with the inferred MulT wrapper."""
    cfg, d = model.cfg, model.cfg.d

    def conv(x, c):
        return F.conv1d(x.transpose(1, 2), c.weight, None, c.stride, c.padding).transpose(1, 2)

    def sinusoid(x):  # fairseq SinusoidalPositionalEmbedding, padding_idx 0, fed x[:, :, 0]
        half = d // 2
        freq = torch.exp(torch.arange(half, dtype=x.dtype) * -(math.log(10000) / (half - 1)))
        pos = torch.arange(1, x.shape[1] + 1, dtype=x.dtype)[:, None] * freq
        table = torch.cat([torch.sin(pos), torch.cos(pos)], 1)
        return table[None] * (x[:, :, :1] != 0)

    def encoder(enc, x, allowed):
        layer = enc.layers[0]
        x = x * math.sqrt(d) + sinusoid(x)
        x = x + slow_attention(layer.attn, layer.ln_attn(x), allowed)
        x = x + layer.fc2(F.relu(layer.fc1(layer.ln_ffn(x))))
        return enc.norm(x)

    w = model.token_type.weight
    a = conv(conv(audio, model.proj_a1), model.proj_a2) + w[0]
    t = conv(text, model.proj_t) + w[1]
    v = conv(vision, model.proj_v) + w[2]
    b = t.shape[0]
    z = torch.cat([model.val_token.expand(b, 1, d), model.cls_token.expand(b, 1, d), a, t, v], 1) + model.pos_embed
    intra, inter = z, z
    for _ in range(2):  # sharing_num: the same encoder object twice
        intra = encoder(model.intra, intra, group_mask(model.token_lengths, False))
        inter = encoder(model.inter, inter, group_mask(model.token_lengths, True))

    def gate(g, x_intra, x_inter):
        weight = torch.sigmoid(x_inter @ g.A_affine.weight.T + x_intra @ g.V_affine.weight.T + g.V_affine.bias)
        return x_inter * weight + x_intra * (1 - weight)

    f_val, f_emo = gate(model.gate_val, intra[:, 0], inter[:, 0]), gate(model.gate_emo, intra[:, 1], inter[:, 1])

    def mlp(x):  # Linear -> Linear, no activation
        for lin in model.mlp:
            x = x @ lin.weight.T + lin.bias
        return x

    return model.fc_val(mlp(f_val)), model.fc_emo(mlp(f_emo))


@pytest.mark.parametrize("frontend", ["stride1", "stride8"])
def test_forward_matches_direct_computation(frontend):
    torch.manual_seed(0)
    model = create_model("semi_iin", "synthetic", dims=(6, 5, 4), seq_lens=(3, 9, 2), d=8, heads=2,
                         mlp_layers=(8, 4), audio_frontend=frontend).double().eval()
    g = torch.Generator().manual_seed(1)
    text, audio, vision = (torch.randn(2, n, w, generator=g, dtype=torch.float64) for n, w in ((3, 6), (9, 5), (2, 4)))
    pred, emo = model.predict(text, audio, vision)
    ref_pred, ref_emo = slow_forward(model, text, audio, vision)
    assert pred.shape == (2, 1) and emo.shape == (2, 7)
    assert torch.allclose(pred, ref_pred, atol=1e-10) and torch.allclose(emo, ref_emo, atol=1e-10)
    # inputs shorter / longer than seq_lens are zero-padded / truncated on the time axis
    short = model.predict(text[:, :2], audio, vision)[0]
    assert torch.allclose(short, model.predict(F.pad(text[:, :2], (0, 0, 0, 1)), audio, vision)[0])
    long = model.predict(text, audio, torch.cat([vision, vision], 1))[0]
    assert torch.allclose(long, pred)


# -- the wrapper's key/value stream: the network calls layer(x, x, x) (model.py:151-163) -----------
def tiny(**over) -> SemiIIN:
    return create_model("semi_iin", "synthetic", dims=(6, 5, 4), seq_lens=(3, 9, 2), d=8, heads=2,
                        mlp_layers=(8, 4), **over).double()


def tiny_inputs():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(2, n, w, generator=g, dtype=torch.float64) for n, w in ((3, 6), (9, 5), (2, 4))]


@pytest.mark.parametrize("attention", ["masked", "global"])
def test_kv_stream_is_the_same_function_in_eval(attention):
    torch.manual_seed(0)
    model = tiny(attention=attention).eval()
    assert model.cfg.wrapper_kv_stream  # default: as the released MulT encoder behaves
    two = model.predict(*tiny_inputs())
    model.cfg = replace(model.cfg, wrapper_kv_stream=False)
    one = model.predict(*tiny_inputs())
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(two, one))


def test_kv_stream_draws_its_own_embed_dropout_in_training():
    """Train mode: the key/value stream is embedded again with a second dropout draw, and keys
    and values both come from it; the one-stream wrapper differs under the same seed."""
    torch.manual_seed(0)
    model = tiny(input_dropout=0.0, attn_dropout=0.0, relu_dropout=0.0, res_dropout=0.0,
                 wrapper_embed_dropout=0.5).train()
    enc, allowed = model.intra, model.intra.layers[0].attn.allowed
    x = torch.randn(2, model.seq_len, 8, dtype=torch.float64)
    torch.manual_seed(5)
    two = model.encode_with(enc, x)
    torch.manual_seed(5)  # by hand from the layer's pieces: two embed-dropout draws, query then key stream
    h = x * math.sqrt(8) + sinusoidal_positions(x)
    xq = h * dropout_keep(h.shape, 0.5, x.device)
    xk = h * dropout_keep(h.shape, 0.5, x.device)
    layer = enc.layers[0]
    y = xq + slow_attention(layer.attn, layer.ln_attn(xq), allowed, kv=layer.ln_attn(xk))
    y = y + layer.fc2(F.relu(layer.fc1(layer.ln_ffn(y))))
    assert not torch.equal(xq, xk)
    assert torch.allclose(two, enc.norm(y), atol=1e-10)
    model.cfg = replace(model.cfg, wrapper_kv_stream=False)
    torch.manual_seed(5)
    one = model.encode_with(enc, x)
    assert not torch.allclose(one, two, atol=1e-3)
    torch.manual_seed(5)  # one stream: the query draw alone, keys and values from it
    xq = h * dropout_keep(h.shape, 0.5, x.device)
    y = xq + slow_attention(layer.attn, layer.ln_attn(xq), allowed)
    y = y + layer.fc2(F.relu(layer.fc1(layer.ln_ffn(y))))
    assert torch.allclose(one, enc.norm(y), atol=1e-10)


def test_global_attention_has_no_gates_and_does_not_add_the_position_table(synthetic):
    torch.manual_seed(0)
    model = create_model("semi_iin", "synthetic", attention="global").train()
    assert not hasattr(model, "gate_val") and not hasattr(model, "intra")
    batch = synthetic.train.take(torch.arange(4))
    model.loss(model(batch), batch)["total"].backward()
    assert model.pos_embed.grad is None  # built, never used (as coded)
    assert model.encoder.layers[0].attn.allowed is None


def test_input_dropout_follows_train_mode_unless_the_released_default_is_asked_for(synthetic):
    batch = synthetic.train.take(torch.arange(4))
    torch.manual_seed(0)
    model = create_model("semi_iin", "synthetic").eval()
    with torch.no_grad():
        assert torch.equal(model(batch).pred, model(batch).pred)
        model.cfg = type(model.cfg)(**{**model.cfg.__dict__, "input_dropout_in_eval": True})
        assert not torch.equal(model(batch).pred, model(batch).pred)


# -- loss ------------------------------------------------------------------------------------------
def test_emotion_bins_are_supplementary_table_6():
    v = torch.tensor([-3.0, -2.51, -2.5, -1.51, -1.5, -0.6, -0.5, 0.0, 0.49, 0.5, 1.49, 1.5, 2.49, 2.5, 3.0])
    assert emotion_classes(v).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 6]


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {n: p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()}


def test_loss_value_and_which_parameters_each_term_reaches(synthetic):
    torch.manual_seed(0)
    model = create_model("semi_iin", "synthetic").train()
    batch = synthetic.train.take(torch.arange(8))
    out = model(batch)
    parts = model.loss(out, batch)
    v = batch.labels.float()
    mse = ((out.pred.reshape(-1) - v) ** 2).mean()
    logits = out.extras["emotion_logits"]
    target = [min(6, max(0, math.floor(x + 0.5) + 3)) for x in v.tolist()]
    ce = -torch.stack([torch.log_softmax(logits[i], 0)[c] for i, c in enumerate(target)]).mean()
    assert torch.allclose(parts["mse"], mse) and torch.allclose(parts["ce"], ce)
    assert torch.allclose(parts["total"], 0.6 * mse + 0.4 * ce)
    g_mse, g_ce = _grads(model, parts["mse"]), _grads(model, parts["ce"])
    for n in g_mse:
        if n.startswith(("fc_val.", "gate_val.")):
            assert g_mse[n] and not g_ce[n], n
        elif n.startswith(("fc_emo.", "gate_emo.")):
            assert g_ce[n] and not g_mse[n], n
        else:  # shared: encoders, front-ends, tokens, positions, MLP (val and cls see each other via two passes)
            assert g_mse[n] and g_ce[n], n


# -- self-training stage ---------------------------------------------------------------------------
def write_unlabeled(directory, n: int = 12, dims=(768, 5, 20), drop=None, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {"text": rng.normal(size=(n, 50, dims[0])), "audio": rng.normal(size=(n, 30, dims[1])),
              "vision": rng.normal(size=(n, 40, dims[2]))}
    arrays = {k: v.astype(np.float32) for k, v in arrays.items() if k != drop}
    np.savez(directory / "unlabeled.npz", **arrays)


def test_without_unlabeled_dir_there_is_no_stage():
    assert create_model("semi_iin", "synthetic").stages() == []


def test_unlabeled_dir_errors_name_what_is_needed(tmp_path):
    model = create_model("semi_iin", "synthetic", unlabeled_dir=str(tmp_path / "ami"))
    with pytest.raises(UnlabeledDataError) as err:
        load_stage_data(model.stages()[1].data, model.cfg)
    msg = str(err.value)
    for needed in ("unlabeled.npz", "'text' (N, T_t, 768)", "'audio' (N, T_a, 5)", "'vision' (N, T_v, 20)",
                   "does not exist", "AMI", "unlabeled_dir"):
        assert needed in msg, needed
    write_unlabeled(tmp_path, drop="vision")
    with pytest.raises(UnlabeledDataError, match="lacks 'vision'"):
        check_unlabeled_dir(str(tmp_path), (768, 5, 20))
    write_unlabeled(tmp_path, dims=(768, 74, 20))
    with pytest.raises(UnlabeledDataError, match=r"'audio' has shape \(12, 30, 74\)"):
        check_unlabeled_dir(str(tmp_path), (768, 5, 20))
    (tmp_path / "unlabeled.npz").write_text("not a zip")
    with pytest.raises(UnlabeledDataError, match="not a readable .npz"):
        check_unlabeled_dir(str(tmp_path), (768, 5, 20))


def test_pseudo_labels_keep_the_top_k_per_class_and_reach_the_emotion_head_only(tmp_path, synthetic):
    write_unlabeled(tmp_path, n=30)
    torch.manual_seed(0)
    model = create_model("semi_iin", "synthetic", unlabeled_dir=str(tmp_path), pseudo_top_k=2)
    assert [s.name for s in model.stages()] == ["supervised", "self_training"]
    clips = load_stage_data(model.stages()[1].data, model.cfg)
    info = model.pseudo_label(clips, torch.device("cpu"), 1111, n_labeled=90)
    model.eval()
    with torch.no_grad():
        probs = F.softmax(model.predict(clips["text"], clips["audio"], clips["vision"])[1], -1)
    conf, label = probs.max(-1)
    per_class = [min(2, int((label == c).sum())) for c in range(7)]
    assert info["pseudo_per_class"] == per_class and info["pseudo_labeled"] == sum(per_class)
    assert info["pseudo_per_batch"] == max(1, round(32 * sum(per_class) / (90 + sum(per_class))))
    idx = model._pseudo["index"]
    assert torch.equal(model._pseudo["labels"], label[idx])
    for c in range(7):  # the kept clips of class c are its most confident ones
        top = torch.sort(conf[label == c], descending=True).values[:2]
        assert torch.allclose(torch.sort(conf[idx][label[idx] == c], descending=True).values, top)
    model.train()
    plain = synthetic.train.take(torch.arange(4))
    assert model.self_training_loss(model(plain), plain).keys() == {"total", "mse", "ce"}  # no partners: labeled only
    n = info["pseudo_per_batch"]
    order = torch.randperm(sum(per_class), generator=torch.Generator().manual_seed(1111))  # the seeded draw
    batch = model.training_batch(plain, None)  # as the trainer does: the next pseudo batch rides along
    assert batch.partners is not None and torch.equal(batch.partners.index, idx[order[:n]])
    assert torch.equal(batch.partners.labels, label[idx][order[:n]])
    t = min(clips["audio"].shape[1], batch.partners.audio.shape[1])
    assert torch.equal(batch.partners.audio[:, :t], clips["audio"][idx[order[:n]], :t])
    parts = model.self_training_loss(model(batch), batch)
    assert set(parts) == {"total", "mse", "ce", "ce_pseudo"}
    assert torch.allclose(parts["total"], 0.6 * parts["mse"] + 0.4 * parts["ce"] + 0.2 * parts["ce_pseudo"])
    g = _grads(model, parts["ce_pseudo"])
    assert g["fc_emo.weight"] and g["gate_emo.V_affine.weight"] and g["proj_t.weight"]
    assert not g["fc_val.weight"] and not g["gate_val.A_affine.weight"]


@pytest.mark.slow
def test_self_training_runs_as_a_second_stage(tmp_path, small_synthetic):
    write_unlabeled(tmp_path, n=24)
    data = slice_data(small_synthetic, 64, 32, 32)
    torch.manual_seed(0)
    model = create_model("semi_iin", "synthetic", unlabeled_dir=str(tmp_path), seq_lens=(20, 20, 20),
                         max_epochs=2, early_stop_patience=None)
    out = train_and_test(model, data, seed=1111, device=torch.device("cpu"), contributions=False, robustness=False)
    assert [s["name"] for s in out["stages"]] == ["supervised", "self_training"]
    info = out["stages"][1]["info"]
    assert info["unlabeled_clips"] == 24 and 1 <= info["pseudo_labeled"] <= 24
    assert "ce_pseudo" in out["stages"][1]["history"][0]["train"]
    assert row_label("semi_iin", dataclasses.asdict(model.cfg)) == "Semi-IIN"


# -- demo training ---------------------------------------------------------------------------------
def test_demo_trains_and_the_loss_goes_down(small_synthetic):
    torch.manual_seed(0)
    model = create_model("semi_iin", "synthetic", max_epochs=3, early_stop_patience=None)
    out = train_demo(model, small_synthetic, (96, 32, 32))
    assert out["params"]["with_grad"] == out["params"]["total"]
    assert row_label("semi_iin", dataclasses.asdict(model.cfg)) == "Semi-IIN (supervised)"
