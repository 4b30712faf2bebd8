"""GLoMo (models/glomo.py): exact parameter counts, the noisy top-k MoE against a slow
per-sample reference, where each loss term sends its gradient, the code's optimiser
behaviour, and the demo preset training on synthetic data."""

import dataclasses
import math
import statistics

import pytest
import torch

from bench.schedule import Scheduler
from bench.train import build_optimizer
from models import create_model
from models.base import count_parameters
from models.glomo import NoisyTopKMoE
from models.layers.text_encoder import BERT_BASE_PARAMS, build_text_encoder
from models.registry import get_model_entry

from tests.conftest import train_demo

POOLER = 590_592  # bert-base-uncased pooler: Linear(768, 768)


def meta_model(dataset: str, **overrides):
    with torch.device("meta"):
        return create_model("glomo", dataset, "official", text_encoder="bert-base", **overrides)


# -- parameter counts (docs/models/glomo.md; PaSE supplement Table 2 for MOSI) ---------------------
@pytest.mark.parametrize("dataset,dims,total", [
    ("mosi", None, 109_818_887),  # MAG MOSI widths 74/47, d 48, 4 layers
    ("mosei", None, 115_949_447),  # MAG MOSEI 74/35, d 192, 3 layers
    ("mosi", (768, 5, 20), 109_805_063),  # MMSA aligned_50 MOSI widths
    ("mosei", (768, 74, 35), 115_949_447),  # MMSA aligned_50 MOSEI widths (= MAG's)
])
def test_parameter_counts(dataset, dims, total):
    model = meta_model(dataset, dims=dims)
    assert count_parameters(model) == {"total": total, "trainable": total}
    assert sum(p.numel() for p in model.text.parameters()) == BERT_BASE_PARAMS - POOLER
    assert model.text.pooler is None


def test_mosi_breakdown():
    model = meta_model("mosi")
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert (n(model.text_global), n(model.text_conv)) == (36_912, 110_592)
    assert (n(model.audio.proj), n(model.audio.encoder), n(model.vision.proj)) == (10_656, 113_184, 6_768)
    assert n(model.moe) == 86_400 and n(model.fusion) == 416_608
    assert n(model.pool_global) + n(model.pool_local) == 14_214 and n(model.classifier) == 97


def test_text_encoder_without_pooler_exposes_hidden_states():
    enc = build_text_encoder("tiny", vocab_size=2048, pooler=False).eval()
    assert enc.pooler is None
    ids = torch.randint(1000, 2048, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():
        hs = enc.hidden_states(ids, mask)
        assert len(hs) == enc.bert.config.num_hidden_layers + 1
        assert torch.allclose(hs[-1], enc(ids, mask), atol=1e-6)


# -- the noisy top-k MoE against a direct per-sample computation ------------------------------
def phi(z: float, mean: float) -> float:
    return 0.5 * (1.0 + math.erf((z - mean) / math.sqrt(2.0)))


def reference_moe(moe: NoisyTopKMoE, x: torch.Tensor, noise: torch.Tensor | None):
    """MoE.py computed sample by sample in float64 Python: (y, aux loss)."""
    wg, wn = moe.w_gate.detach().double(), moe.w_noise.detach().double()
    x = x.double()
    n_exp, k = wg.shape[1], moe.k
    ys, gates_all, loads = [], [], [0.0] * n_exp
    for b in range(x.shape[0]):
        clean = [float(x[b] @ wg[:, i]) for i in range(n_exp)]
        if noise is not None:
            std = [math.log1p(math.exp(float(x[b] @ wn[:, i]))) + moe.noise_epsilon for i in range(n_exp)]
            logits = [clean[i] + float(noise[b, i]) * std[i] for i in range(n_exp)]
        else:
            logits = clean
        order = sorted(range(n_exp), key=lambda i: -logits[i])
        top = order[:k]
        z = [math.exp(logits[i] - logits[top[0]]) for i in top]
        gates = [0.0] * n_exp
        for i, zi in zip(top, z):
            gates[i] = zi / sum(z)
        gates_all.append(gates)
        outs = [moe.experts[i](x[b].float()).double() for i in range(n_exp)]
        if moe.combine == "log":
            ys.append(torch.log(sum(gates[i] * torch.exp(outs[i]) for i in top)))
        else:
            ys.append(sum(gates[i] * outs[i] for i in top))
        for i in range(n_exp):
            if noise is not None:  # P(i in the top k under fresh noise), Normal(cdf_mean, 1)
                in_top = logits[i] > logits[order[k]]
                thr = logits[order[k]] if in_top else logits[order[k - 1]]
                loads[i] += phi((clean[i] - thr) / std[i], moe.cdf_mean)
            else:
                loads[i] += float(gates[i] > 0)
    importance = [sum(g[i] for g in gates_all) for i in range(n_exp)]
    cv2 = lambda v: statistics.variance(v) / (statistics.mean(v) ** 2 + 1e-10)  # noqa: E731
    return torch.stack(ys), moe.loss_weight * (cv2(importance) + cv2(loads))


@pytest.mark.parametrize("combine", ["log", "linear"])
@pytest.mark.parametrize("train", [True, False])
def test_moe_matches_slow_reference(combine, train):
    torch.manual_seed(0)
    moe = NoisyTopKMoE(12, 4, experts=3, hidden=4, k=2, combine=combine).train(train)
    assert not moe.w_gate.any() and not moe.w_noise.any()  # zero-initialised, as coded
    with torch.no_grad():  # non-trivial gates for the check
        moe.w_gate.normal_(0, 0.5)
        moe.w_noise.normal_(0, 0.5)
    x = torch.randn(7, 12)
    torch.manual_seed(1)
    y, aux = moe(x)
    torch.manual_seed(1)
    noise = torch.randn(7, 3) if train else None  # the gating's only random draw
    y_ref, aux_ref = reference_moe(moe, x, noise)
    assert torch.allclose(y.double(), y_ref, atol=1e-5)
    assert aux.item() == pytest.approx(aux_ref, rel=1e-4)
    if combine == "log" and not train:  # the code's combination is not the gate-weighted sum
        gates, _ = moe.gating(x)
        linear = sum(gates[:, i : i + 1] * moe.experts[i](x) for i in range(3))
        assert not torch.allclose(y, linear, atol=1e-3)


def test_moe_zero_gates_and_log_eps():
    moe = NoisyTopKMoE(6, 3, experts=3, hidden=3, k=2).eval()
    gates, load = moe.gating(torch.randn(4, 6))
    assert torch.equal(gates, torch.tensor([[0.5, 0.5, 0.0]] * 4))  # zero gates: tie -> experts 0, 1
    assert torch.equal(load, torch.tensor([4.0, 4.0, 0.0]))
    with torch.no_grad():  # outputs so negative that exp underflows: eps, not log(0)
        for e in moe.experts:
            e.fc2.bias.fill_(-1e4)
    y, _ = moe(torch.randn(4, 6))
    assert torch.isfinite(y).all() and torch.allclose(y, torch.full_like(y, math.log(torch.finfo(torch.float64).eps)))


# -- gradients of each loss term ------------------------------------------------------------------
@pytest.fixture(scope="module")
def batch(synthetic):
    return synthetic.train.take(torch.arange(8))


def test_each_loss_term_reaches_its_parameters(batch):
    torch.manual_seed(0)
    model = create_model("glomo", "synthetic").train()
    out = model(batch)
    parts = model.loss(out, batch)
    assert torch.allclose(parts["total"], parts["task"] + parts["moe"])
    params = dict(model.named_parameters())

    def grads(term: str) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        parts[term].backward(retain_graph=True)
        return {n: p.grad for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}

    task = grads("task")
    moe = grads("moe")
    for m in "tav":
        for w in ("w_gate", "w_noise"):  # noisy logits -> top-k softmax -> output; and the CV² loss
            assert f"moe.{m}.{w}" in task and f"moe.{m}.{w}" in moe
        assert f"moe.{m}.experts.0.fc1.weight" in task and f"moe.{m}.experts.0.fc1.weight" not in moe
    assert "classifier.weight" in task and "text.bert.embeddings.word_embeddings.weight" in task
    # the load-balancing loss depends on the gating only; with the zero-initialised gates
    # (d logits / d x = w_gate = 0) it reaches exactly the six gate matrices
    assert set(moe) == {f"moe.{m}.{w}" for m in "tav" for w in ("w_gate", "w_noise")}


def test_gates_get_no_noise_gradient_in_eval(batch):
    model = create_model("glomo", "synthetic").eval()
    out = model(batch)
    model.loss(out, batch)["total"].backward()
    assert model.moe["t"].w_noise.grad is None and model.moe["t"].w_gate.grad is not None


# -- the code's optimiser behaviour and initialisation -------------------------------------------
def test_param_groups_follow_the_name_rule():
    model = create_model("glomo", "synthetic")
    decay, no_decay = model.param_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "text.bert.embeddings.LayerNorm.weight" in nd and "audio.encoder.layers.0.attn.in_proj_bias" in nd
    assert "audio.encoder.layers.0.ln_attn.weight" not in nd and "fusion.layers.0.norm1.weight" not in nd
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0


def test_optimizer_reset_and_step_schedule():
    model = create_model("glomo", "mosi", "official", text_encoder="tiny", text_vocab_size=2048)
    opt = build_optimizer(model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert len(opt.state) > 0
    sched = Scheduler(model.lr_schedule(), opt, 1, model.cfg.max_epochs)  # the trainer applies the declaration
    sched.start_epoch(0)
    assert len(opt.state) > 0 and all(g["lr"] == 4e-5 for g in opt.param_groups)
    sched.start_epoch(1)
    assert len(opt.state) == 0  # a new AdamW each epoch (main_GLoMo.py train_epoch)
    sched.start_epoch(85)
    assert all(g["lr"] == pytest.approx(4e-6) for g in opt.param_groups)  # --schedule 80 100
    sched.start_epoch(100)
    assert all(g["lr"] == pytest.approx(4e-7) for g in opt.param_groups)
    demo = create_model("glomo", "synthetic").lr_schedule()
    assert demo.kind is None and demo.optimizer_reset == "every_epoch"  # reset without milestones


def test_initialisation():
    torch.manual_seed(0)
    model = create_model("glomo", "mosi", "official", text_encoder="tiny", text_vocab_size=2048)
    assert all(not model.moe[m].w_gate.any() and not model.moe[m].w_noise.any() for m in "tav")
    assert abs(model.moe["a"].experts[0].fc1.weight.std().item() - 0.02) < 0.002  # HF N(0, 0.02)
    assert not model.classifier.bias.any()
    l0, l1 = model.fusion.layers  # nn.TransformerEncoder deep-copies its layer: same in-proj at init
    assert torch.equal(l0.self_attn.in_proj_weight, l1.self_attn.in_proj_weight)
    assert not torch.equal(l0.linear1.weight, l1.linear1.weight)


def test_presets_and_registry():
    entry = get_model_entry("glomo")
    assert entry.preset_names("mosi") == ["official"] and entry.preset_names("synthetic") == ["demo"]
    assert "iemocap" not in entry.unsupported
    iemocap, mosei = entry.presets[("iemocap", "official")], entry.presets[("mosei", "official")]
    assert (iemocap.task, iemocap.n_out) == ("iemocap", 8)  # harness preset: MOSEI's with 4 x 2 logits
    assert dataclasses.replace(iemocap, task="regression", n_out=1, dataset="mosei") == dataclasses.replace(
        mosei, dataset="mosei")
    mosi, mosei = entry.presets[("mosi", "official")], entry.presets[("mosei", "official")]
    assert (mosi.d, mosi.layers, mosi.batch_size, mosi.lr, mosi.max_epochs, mosi.dims) == (48, 4, 240, 4e-5, 70, (768, 74, 47))
    assert (mosei.d, mosei.layers, mosei.batch_size, mosei.lr, mosei.max_epochs, mosei.dims) == (
        192, 3, 64, 1e-5, 100, (768, 74, 35))
    assert (mosi.text_max_length, mosei.text_max_length) == (60, 80)  # --max_seq_length (MAG loader)
    assert all(c.text_input == "ids" and c.setting == "aligned" and c.dims_from_data for c in (mosi, mosei))


# -- the demo preset trains ---------------------------------------------------------------------
@pytest.mark.slow
def test_demo_trains_and_loss_goes_down(synthetic):
    torch.manual_seed(0)
    model = create_model("glomo", "synthetic", max_epochs=3, early_stop_patience=None)
    out = train_demo(model, synthetic, (128, 32, 32))
    assert out["params"]["with_grad"] == out["params"]["total"]
