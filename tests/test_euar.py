"""EUAR: exact parameter counts (released code, PaSE supplement), the uncertainty-aware routing
and its losses against a slow per-sample reference, gradients of every loss term, batch-dependent
evaluation in split order, the last-position text read, presets, and a short demo training."""

import dataclasses
import math

import pytest
import torch

from bench.train import build_optimizer, evaluate
from models import create_model, get_model_entry
from models.base import count_parameters
from models.euar import EUARConfig, UncertaintyMoE, route
from models.layers.text_encoder import BERT_BASE_PARAMS
from tests.conftest import train_demo

POOLER = 590_592  # bert-base pooler Linear(768, 768)
DEAD = 165_888 + 73 + 3 * 144  # EUAR.proj_l, fusion.decoder, 3 x MoE_block.add_norm


def meta_model(dataset: str, **over):
    with torch.device("meta"):
        return create_model("euar", dataset, "official", text_encoder="bert-base", **over)


def n(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- parameter counts (docs/models/euar.md) --------------------------------------------------------
@pytest.mark.parametrize("dataset,dims,total", [
    ("mosei", None, 110_436_422),  # MAG/MIB A74/V35 = PaSE supplement Table 2
    ("mosi", None, 110_439_014),  # MAG/MIB A74/V47 (global_configs.py)
    ("mosi", (768, 5, 20), 110_418_278),  # MMSA aligned_50 MOSI widths
    ("mosei", (768, 74, 35), 110_436_422),  # MMSA aligned_50 MOSEI widths
])
def test_parameter_counts(dataset, dims, total):
    model = meta_model(dataset, **({"dims": dims} if dims else {}))
    counts = count_parameters(model)
    assert counts == {"total": total, "trainable": total}
    dead = sum(p.numel() for name, p in model.named_parameters() if "unused_" in name)
    assert dead == DEAD
    with_grad = sum(p.numel() for name, p in model.named_parameters() if "unused_" not in name and "pooler." not in name)
    assert with_grad == total - POOLER - DEAD  # 109,679,437 for V35


def test_breakdown():
    m = meta_model("mosei")
    assert n(m.text) == BERT_BASE_PARAMS and n(m.text_proj) == n(m.unused_proj_l) == 165_888
    assert (n(m.proj_a), n(m.proj_v)) == (15_984, 7_560)
    assert n(m.trans_a) == n(m.trans_v) == 189_576
    assert n(m.fusion.classifier) == 92_185 and n(m.fusion.unused_decoder) == 73
    assert all(n(m.fusion.moe[k]) == 42_484 for k in "tav")


# -- routing against a slow reference ---------------------------------------------------------
def slow_moe(moe: UncertaintyMoE, x: torch.Tensor, gate_norm: str):
    """MoE.py written out sample by sample and expert by expert (float64)."""
    c = moe.cfg
    B, E = x.shape[0], c.num_experts
    x = x.double()
    W, b = moe.gate.weight.double(), moe.gate.bias.double()
    probs, mask = [], []
    for i in range(B):
        logits = [float(W[e] @ x[i] + b[e]) for e in range(E)]
        z = sum(math.exp(v) for v in logits)
        p = [math.exp(v) / z for v in logits]
        chosen = sorted(range(E), key=lambda e: -p[e])[: c.top_k]
        probs.append(p)
        mask.append([1.0 if e in chosen else 0.0 for e in range(E)])
    g = [[0.0] * E for _ in range(B)]
    for i in range(B):
        for e in range(E):
            if gate_norm == "batch":  # per expert, over the batch, times int(B)
                den = sum(probs[j][e] * mask[j][e] for j in range(B)) + c.gate_eps
                g[i][e] = probs[i][e] * mask[i][e] / den * int(c.capacity_factor * B)
            else:
                den = sum(probs[i][k] * mask[i][k] for k in range(E)) + c.gate_eps
                g[i][e] = probs[i][e] * mask[i][e] / den
    mu = [[moe.mu[e].weight.double() @ x[i] + moe.mu[e].bias.double() for e in range(E)] for i in range(B)]
    lv = [[moe.logvar[e].weight.double() @ x[i] + moe.logvar[e].bias.double() for e in range(E)] for i in range(B)]
    out = torch.stack([sum(g[i][e] * mu[i][e] for e in range(E)) for i in range(B)])
    lb = E**2 * sum((sum(probs[i][e] for i in range(B)) / B) * (sum(mask[i][e] for i in range(B)) / B)
                    for e in range(E)) / E
    kl = sum(sum(float((-(1 + lv[i][e] - mu[i][e] ** 2 - lv[i][e].exp()) / 2).sum()) for i in range(B)) / B
             for e in range(E)) / E
    u = sum(sum(g[i][e] * float(lv[i][e].exp().sum()) for e in range(E)) for i in range(B)) / B
    return out, torch.tensor(g, dtype=torch.float64), {"lb": lb, "kl": kl, "u": u}


@pytest.mark.parametrize("gate_norm", ["batch", "per_sample"])
def test_routing_matches_slow_reference(gate_norm):
    torch.manual_seed(0)
    cfg = EUARConfig(d_model=6, gate_norm=gate_norm, batch_dependent_eval=gate_norm == "batch")
    moe = UncertaintyMoE(cfg)
    x = torch.randn(7, 6)
    with torch.no_grad():
        out, parts = moe(x)
        ref_out, ref_g, ref_parts = slow_moe(moe, x, gate_norm)
        g, _, mask = route(moe.gate(x), cfg.top_k, gate_norm, cfg.capacity_factor, cfg.gate_eps)
    assert torch.allclose(g.double(), ref_g, atol=1e-6)
    assert (mask.sum(1) == 3).all()  # top-3 of 4 experts
    assert torch.allclose(out.double(), ref_out, atol=1e-5)
    for k in ("lb", "kl", "u"):
        assert float(parts[k]) == pytest.approx(ref_parts[k], rel=1e-5), k


def test_batch_gate_is_normalised_across_the_batch():
    torch.manual_seed(1)
    logits = torch.randn(5, 4)
    g, _, mask = route(logits, 3, "batch", 1.0, 1e-6)
    assert torch.allclose(g.sum(0), 5 * torch.ones(4), atol=1e-4)  # each expert's weights sum to int(B)
    g1, _, m1 = route(logits[:1], 3, "batch", 1.0, 1e-6)  # batch of one: exactly 1 on the chosen experts
    assert torch.allclose(g1, m1, atol=1e-5)


# -- the model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batch(synthetic):
    lengths = synthetic.train.tensors["text_mask"].sum(1)
    return synthetic.train.take(torch.nonzero(lengths < 30).flatten()[:8])  # short: padding gets trimmed


def demo(**over):
    torch.manual_seed(0)
    return create_model("euar", "synthetic", **over)


def test_text_is_read_from_the_last_position(batch):
    model = demo().eval()
    with torch.no_grad():
        seq = model.text(batch.text_ids, batch.text_mask, None)  # full length, no token_type_ids
        ref = model.text_proj(seq.transpose(1, 2))[:, :, -1]  # EUAR.py: outputs[:, :, -1]
        assert torch.allclose(model.encode_text(batch), ref, atol=1e-5)  # trimmed BERT columns: same numbers
        model.cfg = dataclasses.replace(model.cfg, trim_padding=False)
        assert torch.allclose(model.encode_text(batch), ref, atol=1e-6)
        h = model.proj_a(batch.audio.transpose(1, 2)).transpose(1, 2)
        assert torch.allclose(model.encode(batch)["a"], model.trans_a(h)[:, -1], atol=1e-5)  # outputa[-1]


def test_every_loss_term_reaches_its_parameters(batch):
    model = demo().train()
    names = {
        "moe_lb": ("gate.",),  # load balance: the gate only
        "moe_kl": ("mu.", "logvar."),  # KL: both expert heads, not the gate
        "moe_u": ("gate.", "logvar."),  # U-loss: gate weights and the variances, not mu
    }
    for part, allowed in names.items():
        model.zero_grad(set_to_none=True)
        out = model(batch)
        model.loss(out, batch)[part].backward()
        got = {nm for nm, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert got, part
        assert all(nm.startswith("fusion.moe.") or nm.startswith(("text", "proj_", "trans_")) for nm in got)
        moe_got = {nm.split(".", 3)[3] for nm in got if nm.startswith("fusion.moe.")}
        assert {a for a in allowed if any(g.startswith(a) for g in moe_got)} == set(allowed), part
        assert all(g.startswith(allowed) for g in moe_got), (part, moe_got)
        assert any(nm.startswith("text.") for nm in got) and any(nm.startswith("trans_a.") for nm in got)
    model.zero_grad(set_to_none=True)
    model.loss(model(batch), batch)["task"].backward()
    got = {nm for nm, p in model.named_parameters() if p.grad is not None}
    assert not any(".logvar." in nm for nm in got)  # the output is mu: the task loss never reaches logvar
    assert any(".mu." in nm for nm in got) and any(".gate." in nm for nm in got)
    model.zero_grad(set_to_none=True)
    parts = model.loss(model(batch), batch)
    expected = 10 * parts["task"] + 1e-5 * (parts["moe_lb"] + parts["moe_kl"] + parts["moe_u"])
    assert torch.allclose(parts["total"], expected)
    parts["total"].backward()
    missing = {nm for nm, p in model.named_parameters() if p.grad is None}
    assert missing == {nm for nm, _ in model.named_parameters() if "unused_" in nm or "pooler." in nm}


def test_prediction_depends_on_batch_companions(synthetic):
    model = demo().eval()
    split = synthetic.valid
    with torch.no_grad():
        first = model(split.take(torch.tensor([0, 1, 2, 3, 4, 5]))).pred[0]
        other = model(split.take(torch.tensor([0, 6, 7, 8, 9, 10]))).pred[0]
        assert not torch.allclose(first, other, atol=1e-4)
        per_sample = demo(gate_norm="per_sample", batch_dependent_eval=False).eval()
        a = per_sample(split.take(torch.tensor([0, 1, 2, 3, 4, 5]))).pred[0]
        b = per_sample(split.take(torch.tensor([0, 6, 7, 8, 9, 10]))).pred[0]
        assert torch.allclose(a, b, atol=1e-5)


def test_eval_in_split_order_is_deterministic(synthetic):
    model = demo(eval_batch_size=16).eval()
    split = synthetic.valid.subset(torch.arange(40))
    bs = model.cfg.eval_batch_size
    first = evaluate(model, split, torch.device("cpu"), bs)
    again = evaluate(model, split, torch.device("cpu"), bs)
    key = next(iter(first))
    assert torch.equal(first[key][0], again[key][0])
    with torch.no_grad():
        manual = torch.cat([model(split.take(torch.arange(i, min(i + bs, 40)))).pred for i in range(0, 40, bs)])
    assert torch.allclose(first[key][0], manual, atol=1e-6)
    assert model.summary()["batch_dependent_eval"] is True


def test_config_checks_and_presets():
    entry = get_model_entry("euar")
    assert "iemocap" not in entry.unsupported
    iemocap, mosei = entry.presets[("iemocap", "official")], entry.presets[("mosei", "official")]
    assert (iemocap.task, iemocap.n_out) == ("iemocap", 8)  # harness preset: MOSEI's with 4 x 2 logits
    assert dataclasses.replace(iemocap, task="regression", n_out=1, dataset="mosei") == dataclasses.replace(
        mosei, dataset="mosei")
    for ds, v in (("mosi", 47), ("mosei", 35)):
        cfg = entry.presets[(ds, "official")]
        assert cfg.dims == (768, 74, v) and cfg.text_input == "ids" and cfg.setting == "aligned"
        assert cfg.dims_from_data and cfg.batch_dependent_eval and cfg.gate_norm == "batch"
        assert (cfg.lr_bert, cfg.lr, cfg.batch_size, cfg.eval_batch_size, cfg.max_epochs) == (1e-5, 2e-5, 32, 128, 200)
        assert (cfg.scheduler, cfg.scheduler_patience, cfg.scheduler_factor) == ("plateau", 2, 0.9)
        assert cfg.early_stop_patience is None and cfg.selection_metric == "loss"
    with pytest.raises(ValueError, match="batch_dependent_eval"):
        demo(gate_norm="per_sample")
    with pytest.raises(ValueError, match="text_pool"):
        demo(text_pool="max")


def test_optimizer_groups():
    model = demo()
    opt = build_optimizer(model)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"bert": 5e-4, "other": 1e-3, "unused": 0.0}
    bert = {id(p) for p in opt.param_groups[0]["params"]}
    assert bert == {id(p) for p in [*model.text.parameters(), *model.text_proj.parameters()]}
    assert [id(p) for p in opt.param_groups[2]["params"]] == [id(model.unused_proj_l.weight)]


@pytest.mark.slow
def test_demo_trains_and_loss_goes_down(synthetic):
    model = demo(max_epochs=3, early_stop_patience=None)
    result = train_demo(model, synthetic, (128, 32, 32))
    assert result["model_summary"]["batch_dependent_eval"] is True
    assert result["params"]["with_grad"] == result["params"]["total"] - sum(
        p.numel() for nm, p in model.named_parameters() if "unused_" in nm or "pooler." in nm)
