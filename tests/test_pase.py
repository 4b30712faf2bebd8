"""PaSE (models/pase.py) : sizes, prototypes, OT, phases, SGM, ablations."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from bench.data.base import MSAData, Split
from bench.train import TrainState, _scale_grads, apply_multipliers, build_optimizer, train_and_test
from models import create_model
from models.layers.seq_encoder import SeqEncoder
from models.pase import PaSE, PhaseSwitch, PrototypeBank, ot_plan, prototype_classes, sgm_factors
from models.base import Multipliers
from models.protocol import Batch
from models.constants import MODALITIES
from models.registry import resolve_config
from tests.conftest import slice_data



def _model(**over) -> PaSE:
    torch.manual_seed(0)
    return create_model("pase", "synthetic", "demo", **over)


@pytest.fixture(scope="module")
def batch(synthetic):
    b = synthetic.train.take(torch.arange(48))
    assert len(set(prototype_classes(b.labels, "regression", 5).tolist())) >= 3  # several classes present
    return b


def _primed(batch, **over) -> PaSE:
    """A model whose prototype banks have seen `batch` once (train-mode forward), then set to eval."""
    model = _model(**over)
    model.train()
    with torch.no_grad():
        model(batch)
    return model.eval()


# -- sizes (docs/models/pase.md) --------------------------------------------------------
@pytest.mark.parametrize("dataset,total", [("mosi", 114_853_527), ("mosei", 114_875_031), ("iemocap", 7_713_075)])
def test_parameter_counts_match_the_spec(dataset, total):
    from bench.cli.ls import parameter_count  # what `python -m bench ls` prints (meta device, BERT-base shapes)

    assert parameter_count("pase", dataset, "paper") == total
    if dataset == "mosi":
        assert abs(total / 114_795_953 - 1) < 0.02  # [supp] Table 2 acceptance bound
        cfg = resolve_config("pase", "mosi", "paper", text_encoder="bert-base")
        with torch.device("meta"):
            model = PaSE(cfg)
        with_grad = sum(p.numel() for n, p in model.named_parameters() if "pooler." not in n)
        assert with_grad == 114_262_935


def test_seq_encoder_layer_size_and_padding_mask():
    enc = SeqEncoder(5, 256, layers=3, heads=4, ffn=1024, dropout=0.1)
    assert sum(p.numel() for p in enc.layers[0].parameters()) == 789_760
    assert sum(p.numel() for p in enc.parameters()) - 1_536 - 65_792 == 2_369_792  # 3 layers + final LN
    learned = SeqEncoder(5, 256, 3, 4, 1024, 0.1, pos="learned", max_len=500)
    assert sum(p.numel() for p in learned.parameters()) - sum(p.numel() for p in enc.parameters()) == 500 * 256
    # steps beyond the true length do not affect the output (key-padding mask + valid-step mean)
    small = SeqEncoder(3, 16, 1, 2, 32, 0.0).eval()
    x = torch.randn(2, 10, 3)
    lengths = torch.tensor([4, 10])
    y = x.clone()
    y[0, 4:] = torch.randn(6, 3) * 10
    with torch.no_grad():
        a, b = small(x, lengths), small(y, lengths)
        assert torch.allclose(a, b, atol=1e-5)
        assert not torch.allclose(small(x, torch.tensor([10, 10]))[0], a[0])


# -- prototypes ----------------------------------------------------------------
def test_prototype_classes_follow_the_bins():
    y = torch.tensor([-2.6, -1.5, -0.5, 0.5, 1.5, 2.5, 0.0])
    assert prototype_classes(y, "regression", 5).tolist() == [0, 0, 2, 2, 4, 4, 2]  # half-to-even
    assert prototype_classes(y, "regression", 7).tolist() == [0, 1, 3, 3, 5, 5, 3]
    assert prototype_classes(y, "regression", 3).tolist() == [0, 0, 0, 2, 2, 2, 1]
    assert prototype_classes(y, "regression", 2).tolist() == [0, 0, 0, 1, 1, 1, 1]
    emo = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]])
    assert prototype_classes(emo, "iemocap", 4).tolist() == [1, -1, -1, 3]  # 0 or >1 positives: no class


def test_prototype_bank_follows_the_ema_formula():
    bank = PrototypeBank(5, 2, momentum=0.98)
    h1 = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0], [5.0, 5.0]])
    bank.update(h1, torch.tensor([0, 0, 2, -1]))  # -1 takes no part
    first0 = (torch.tensor([0.6, 0.8]) + torch.tensor([0.0, 1.0])) / 2  # mean of the normalised h
    assert bank.initialised.tolist() == [True, False, True, False, False]
    assert torch.allclose(bank.protos[0], first0) and torch.allclose(bank.protos[2], torch.tensor([1.0, 0.0]))
    assert torch.equal(bank.protos[1], torch.zeros(2))
    h2 = torch.tensor([[0.0, -2.0], [-1.0, 0.0]])
    bank.update(h2, torch.tensor([0, 1]))
    assert torch.allclose(bank.protos[0], 0.98 * first0 + 0.02 * torch.tensor([0.0, -1.0]))
    assert torch.allclose(bank.protos[1], torch.tensor([-1.0, 0.0]))  # first sight: copied
    assert torch.allclose(bank.protos[2], torch.tensor([1.0, 0.0]))  # absent: unchanged
    assert bank.initialised.tolist() == [True, True, True, False, False]


def test_prototypes_are_buffers_updated_in_training_only(batch):
    model = _model()
    assert not any("banks." in n for n, _ in model.named_parameters())
    assert "banks.t.protos" in model.state_dict() and "banks.v.initialised" in model.state_dict()
    model.eval()
    with torch.no_grad():
        model(batch)
    assert not model.banks["a"].initialised.any()
    model.train()
    model(batch)
    classes = prototype_classes(batch.labels, "regression", 5)
    assert model.banks["a"].initialised.tolist() == [k in set(classes.tolist()) for k in range(5)]


# -- losses --------------------------------------------------------------------
def _branch_grad_norms(model: PaSE) -> dict[str, float]:
    return {m: sum(float(p.grad.norm()) for p in ps if p.grad is not None) for m, ps in model.modality_params().items()}


@pytest.mark.parametrize("term", ["task", "unimodal", "intra", "match", "reg", "omega"])
def test_every_loss_term_sends_gradient_into_each_modality_encoder(term, batch):
    model = _primed(batch)
    model.phase = 2
    parts = model.loss(model(batch), batch)
    assert parts[term].requires_grad and float(parts[term].detach()) != 0.0
    model.zero_grad()
    parts[term].backward()
    norms = _branch_grad_norms(model)
    encoders = {"t": model.text_encoder, "a": model.encoders["a"], "v": model.encoders["v"]}
    for m, enc in encoders.items():
        enc_norm = sum(float(p.grad.norm()) for p in enc.parameters() if p.grad is not None)
        assert enc_norm > 0, f"{term} sends no gradient into the {m} encoder"
    assert all(v > 0 for v in norms.values())


def test_total_loss_combines_the_terms(batch):
    model = _primed(batch)
    cfg = model.cfg
    for phase in (1, 2):
        model.phase = phase
        with torch.no_grad():
            p = model.loss(model(batch), batch)
        inter = p["match"] + cfg.reg_weight * p["reg"] + cfg.omega_weight * p["omega"]
        assert torch.allclose(p["inter"], inter)
        assert torch.allclose(p["unimodal"], (p["unimodal_t"] + p["unimodal_a"] + p["unimodal_v"]) / 3)
        expected = p["task"] + p["unimodal"] + 0.01 * p["intra"] + (0.1 * inter if phase == 2 else 0.0)
        assert torch.allclose(p["total"], expected)
        assert (float(p["inter"]) > 0) == (phase == 2)  # CAL only in phase 2


def test_ot_plan_has_the_uniform_marginals():
    torch.manual_seed(1)
    for k in (2, 3, 5):
        x = F.normalize(torch.randn(k, 8, dtype=torch.float64), dim=-1).requires_grad_()
        y = F.normalize(torch.randn(k, 8, dtype=torch.float64), dim=-1)
        cost = (x[:, None] - y[None]).pow(2).sum(-1)
        q = ot_plan(cost, 0.05, 200)
        assert q.dtype == torch.float64 and (q >= 0).all()
        assert torch.allclose(q.sum(1), torch.full((k,), 1 / k, dtype=torch.float64), atol=1e-9)
        assert torch.allclose(q.sum(0), torch.full((k,), 1 / k, dtype=torch.float64), atol=5e-3)
        (q * cost).sum().backward()  # differentiable through the Sinkhorn iterations
        assert float(x.grad.norm()) > 0


def test_cal_is_zero_with_fewer_than_two_classes(batch):
    model = _model()
    model.train()
    same = dataclasses.replace(batch, labels=torch.full_like(batch.labels, 1.8))  # all in class 4
    model.phase = 2
    p = model.loss(model(same), same)
    assert float(p["inter"]) == 0.0 and float(p["match"]) == 0.0
    assert int(model.banks["t"].initialised.sum()) == 1


# -- gate and ablations -----------------------------------------------------
def test_gate_scales_the_fused_input_without_renormalisation(batch):
    model = _primed(batch)
    with torch.no_grad():
        out = model(batch)
        z = torch.cat([out.extras["gates"][m] * out.features[m] for m in MODALITIES], dim=-1)
        assert torch.allclose(out.pred, model.fusion(z), atol=1e-6)
        g_before = out.extras["gates"]["t"].clone()
        model.gates["t"][2].bias += 3.0  # push the text gate towards 1
        out2 = model(batch)
        assert (out2.extras["gates"]["t"] > g_before + 0.1).all()
        assert not torch.allclose(out2.pred, out.pred, atol=1e-4)


def test_ablation_switches_remove_their_terms(batch):
    model = _primed(batch)
    model.phase = 2

    def parts(**switches):
        model.cfg = dataclasses.replace(model.cfg, **switches)
        with torch.no_grad():
            return model.loss(model(batch), batch)

    base = parts()
    assert all(float(base[k]) > 0 for k in ("intra", "inter"))
    p = parts(use_pcl=False)
    assert float(p["intra"]) == 0.0 and torch.allclose(p["total"], base["total"] - 0.01 * base["intra"])
    p = parts(use_pcl=True, use_cal=False)
    assert float(p["inter"]) == 0.0 and torch.allclose(p["total"], base["total"] - 0.1 * base["inter"])
    model.cfg = dataclasses.replace(model.cfg, use_cal=True, use_gate=False)
    with torch.no_grad():
        out = model(batch)
    assert all(torch.equal(g, torch.ones_like(g)) for g in out.extras["gates"].values())
    z = torch.cat([out.features[m] for m in MODALITIES], dim=-1)
    assert torch.allclose(out.pred, model.fusion(z), atol=1e-6)


# -- dual phase --------------------------------------------------------------------
def test_phase_switch_rule():
    sw = PhaseSwitch(patience=2, min_delta=1e-4, max_warmup=20)
    for epoch, value in enumerate([1.0, 0.9, 0.89995, 0.95]):  # 0.89995 improves by < min_delta
        assert sw.reason(epoch) is None
        sw.observe(value)
    assert sw.reason(4) == "plateau"
    cap = PhaseSwitch(patience=5, min_delta=1e-4, max_warmup=3)
    for epoch, value in enumerate([1.0, 0.9, 0.8]):
        assert cap.reason(epoch) is None
        cap.observe(value)
    assert cap.reason(3) == "cap"


def _state(model: PaSE, data: MSAData, seed: int = 1111) -> TrainState:
    return TrainState(model, build_optimizer(model), data, torch.device("cpu"), seed, amp=False)


def _epoch_start(model: PaSE, state: TrainState, epoch: int = 0) -> dict:
    """What the trainer does before an epoch: the hook, then the model's multipliers applied."""
    rec = model.on_epoch_start(epoch, state)
    apply_multipliers(model, state.optimizer, model.training_multipliers(epoch, state))
    return rec


@pytest.fixture(scope="module")
def tiny_data(synthetic):
    return slice_data(synthetic, 64, 32, 32)


@pytest.fixture(scope="module")
def micro_data(synthetic):
    return slice_data(synthetic, 16, 8, 8)


@pytest.mark.parametrize("losses,cap,switch,reason", [
    ([1.0, 0.9, 0.9, 0.9, 0.9, 0.9], 20, 4, "plateau"),  # patience 2: no improvement in epochs 2, 3
    ([1.0, 0.9, 0.8, 0.7, 0.6], 3, 3, "cap"),
])
def test_phase_switch_through_the_hooks(micro_data, losses, cap, switch, reason):
    model = _model(switch_patience=2, max_warmup_epochs=cap)
    state = _state(model, micro_data)
    phases = []
    for epoch, loss in enumerate(losses):
        rec = model.on_epoch_start(epoch, state)
        phases.append(rec["phase"])
        assert rec["sgm"]["applied"] == (rec["phase"] == 2)
        assert ("switch_epoch" in rec) == (epoch == switch)
        state.valid_metrics = {"loss": loss}
        model.on_epoch_end(epoch, state)
    assert phases == [1] * switch + [2] * (len(losses) - switch)
    assert model.summary() == {"switch_epoch": switch, "switch_reason": reason}


def test_dual_phase_off_starts_in_phase_two(micro_data):
    model = _model(dual_phase=False)
    assert model.on_epoch_start(0, _state(model, micro_data))["phase"] == 2
    assert model.summary() == {"switch_epoch": 0, "switch_reason": "dual_phase_off"}


# -- SGM ---------------------------------------------------------------------------
def test_sgm_factors():
    norm, phi = sgm_factors({"t": 0.5, "a": 0.25, "v": 0.25})
    assert norm == pytest.approx({"t": 0.5, "a": 0.25, "v": 0.25})
    assert phi["a"] == 1.0 and phi["v"] == 1.0 and phi["t"] == pytest.approx(math.exp(-0.5))
    _, phi = sgm_factors({"t": 0.6, "a": 0.3, "v": -0.1})  # psi <= 0: phi 1, others towards 1/e
    assert phi["v"] == 1.0 and phi["t"] == pytest.approx(math.exp(-1), rel=1e-6)


def _text_dominant(model: PaSE, data: MSAData) -> MSAData:
    """Make the fused head read (almost) only text, and relabel the training split with the
    model's own predictions: text then carries nearly all the utility, vision/audio little."""
    d = model.cfg.d
    with torch.no_grad():
        model.fusion[0].weight[:, d:] *= 0.01
    state = _state(model, data)
    preds, _ = state.predict(data.train)
    train = Split("train", {**data.train.tensors, "labels": preds.reshape(-1)}, data.train.ids, data.train.special_ids)
    return MSAData(data.info, train, data.valid, data.test)


def test_sgm_suppresses_the_dominant_modality_in_phase_two(tiny_data):
    model = _model(dual_phase=False)
    data = _text_dominant(model, tiny_data)
    state = _state(model, data)
    rec = model.on_epoch_start(0, state)["sgm"]
    assert all(g["lr"] == g["base_lr"] for g in state.optimizer.param_groups)  # the model writes no lr
    rec = _epoch_start(model, state)["sgm"]
    assert rec["split"] == "train_subsample" and rec["n"] == 64 and rec["applied"]
    assert set(rec["utility"]) == {"", "t", "a", "v", "ta", "tv", "av", "tav"}
    phi, psi = rec["phi"], rec["psi"]
    assert max(psi, key=psi.get) == "t" and phi["t"] < 0.9
    weakest = min(rec["psi_norm"], key=rec["psi_norm"].get)
    assert phi[weakest] == 1.0
    assert sum(psi.values()) == pytest.approx(rec["utility"]["tav"] - rec["utility"][""])  # efficiency
    lrs = {g["name"]: (g["lr"], g["base_lr"]) for g in state.optimizer.param_groups}
    assert lrs["text"][0] == pytest.approx(lrs["text"][1] * phi["t"])
    assert lrs[{"t": "text", "a": "audio", "v": "vision"}[weakest]][0] == lrs["shared"][0] == lrs["shared"][1]


def test_sgm_is_logged_but_not_applied_without_use_sgm(tiny_data):
    model = _model(dual_phase=False, use_sgm=False)
    data = _text_dominant(model, tiny_data)
    state = _state(model, data)
    rec = _epoch_start(model, state)["sgm"]
    assert not rec["applied"] and rec["phi"]["t"] < 1.0
    assert all(g["lr"] == g["base_lr"] for g in state.optimizer.param_groups)


def test_sgm_subsample_is_fixed_per_seed(synthetic):
    data = slice_data(synthetic, 200, 16, 16)
    model = _model(sgm_subsample=32)
    state = _state(model, data, seed=1)
    model.on_epoch_start(0, state)
    first = list(model._sgm_split.ids)
    model.on_epoch_start(1, state)
    assert model._sgm_split.ids == first and len(first) == 32
    other = _model(sgm_subsample=32)
    other.on_epoch_start(0, _state(other, data, seed=2))
    assert other._sgm_split.ids != first


def test_sgm_grad_mode_scales_branch_gradients(batch):
    model = _primed(batch, sgm_mode="grad", dual_phase=False)
    model.train()
    model.phi = {"t": 0.5, "a": 1.0, "v": 0.8}
    model.loss(model(batch), batch)["total"].backward()
    before = {m: [p.grad.clone() for p in ps if p.grad is not None] for m, ps in model.modality_params().items()}
    model.after_backward(0)  # the model scales nothing itself: the trainer applies its multipliers
    assert all(torch.equal(p.grad, b) for m, ps in model.modality_params().items()
               for p, b in zip([p for p in ps if p.grad is not None], before[m]))
    assert model.training_multipliers(0, None) == Multipliers(grad=model.phi)
    _scale_grads(apply_multipliers(model, build_optimizer(model), model.training_multipliers(0, None)))
    for m, ps in model.modality_params().items():
        after = [p.grad for p in ps if p.grad is not None]
        assert all(torch.allclose(a, b * model.phi[m]) for a, b in zip(after, before[m]))
    with pytest.raises(ValueError, match="grad_accum_steps"):
        _model(sgm_mode="grad", grad_accum_steps=2)
    with pytest.raises(ValueError, match="scheduler"):
        _model(scheduler="plateau")


# -- IEMOCAP path (text_encoder seq) ---------------------------------------------
def test_seq_text_encoder_on_iemocap_shaped_input():
    torch.manual_seed(0)
    model = create_model("pase", "iemocap", "paper", d=32, enc_layers=1, enc_heads=2, enc_ffn=64, head_hidden=16)
    assert isinstance(model.text_encoder, SeqEncoder) and model.cfg.n_out == 8
    n = 12
    labels = torch.zeros(n, 4, dtype=torch.long)
    labels[torch.arange(n), torch.arange(n) % 4] = 1
    labels[0] = 0  # no emotion: task loss only
    b = Batch(
        audio=torch.randn(n, 20, 74), vision=torch.randn(n, 20, 35),
        audio_lengths=torch.full((n,), 20), vision_lengths=torch.randint(5, 21, (n,)),
        labels=labels, index=torch.arange(n), text_feats=torch.randn(n, 20, 300),
        text_lengths=torch.randint(3, 21, (n,)),
    )
    model.train()
    model.phase = 2
    out = model(b)
    assert out.pred.shape == (n, 8) and all(u.shape == (n, 8) for u in out.unimodal.values())
    assert model.banks["t"].initialised.tolist() == [True] * 4
    parts = model.loss(out, b)
    assert torch.isclose(parts["task"], F.cross_entropy(out.pred.reshape(-1, 2), labels.reshape(-1)))
    assert float(parts["inter"].detach()) > 0 and float(parts["intra"].detach()) > 0
    parts["total"].backward()
    assert all(p.grad is not None for p in model.text_encoder.parameters())
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model(b).pred, model(b.without({"t"})).pred)


def test_seq_text_needs_features():
    with pytest.raises(ValueError, match="text_input"):
        create_model("pase", "mosi", "paper", text_encoder="seq")


# -- the trainer runs it end to end ------------------------------------------------------
def test_trains_through_both_phases_in_the_trainer(tiny_data):
    model = _model(max_epochs=3, max_warmup_epochs=1, switch_patience=5)
    result = train_and_test(model, tiny_data, seed=1111, device=torch.device("cpu"), amp=False)
    hist = result["history"]
    assert [h["phase"] for h in hist] == [1, 2, 2]
    assert hist[1]["switch_epoch"] == 1 and "switch_epoch" not in hist[0]
    assert result["model_summary"] == {"switch_epoch": 1, "switch_reason": "cap"}
    for h in hist:
        assert set(h["sgm"]) == {"split", "n", "utility", "psi", "psi_norm", "phi", "applied"}
        assert set(h["gate_mean"]) == set(MODALITIES) and h["gate_mean_on"] == "train"
        assert {"task", "unimodal", "intra", "match", "reg", "omega", "inter", "total"} <= set(h["train"])
        phi = h["sgm"]["phi"] if h["sgm"]["applied"] else dict.fromkeys(MODALITIES, 1.0)
        lr = model.cfg.lr
        assert h["lr"] == {"text": lr * phi["t"], "audio": lr * phi["a"], "vision": lr * phi["v"], "shared": lr}
    assert min(hist[2]["lr"].values()) < model.cfg.lr  # SGM slowed some modality down
    assert hist[0]["train"]["inter"] == 0.0 and hist[2]["train"]["inter"] > 0
    assert hist[2]["ot_marginal_err_max"] < 5e-3
    assert result["params"]["with_grad"] == result["params"]["total"] - sum(
        p.numel() for n, p in model.named_parameters() if "pooler." in n)


def test_uncached_hub_name_says_to_pass_a_checkpoint():
    from models.layers.text_encoder import TextEncoderError

    try:
        create_model("pase", "mosi", "paper")  # text_encoder="bert-base-uncased": only if cached locally
    except TextEncoderError as err:
        assert "--text-encoder PATH" in str(err)
    else:
        pytest.skip("bert-base-uncased is in the local Hugging Face cache")
