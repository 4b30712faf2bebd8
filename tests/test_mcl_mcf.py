"""MCL-MCF: parameter counts, the contrastive unit and each contrastive level against direct
computations, which loss term reaches which parameters, presets, and a short demo training run."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from bench.train import build_optimizer
from models import create_model
from models.base import count_parameters
from models.mcl_mcf import Clip, MCLMCF, MCLMCFConfig
from models.registry import get_model_entry
from tests.conftest import train_demo

POOLER = 590_592
SCALE = math.log(1 / 0.07)


def meta_model(dataset: str, **kw) -> MCLMCF:
    with torch.device("meta"):
        return create_model("mcl_mcf", dataset, "official", text_encoder="bert-base", **kw)


def n_params(*mods) -> int:
    return sum(p.numel() for m in mods for p in m.parameters())


# -- parameter counts (docs/models/mcl_mcf.md) --------------------------------------------------
@pytest.mark.parametrize("dataset,total", [("mosi", 308_778_168), ("mosei", 308_799_672)])
def test_parameter_counts(dataset, total):
    counts = count_parameters(meta_model(dataset))
    assert counts == {"total": total, "trainable": total}


def test_breakdown_mosi():
    m = meta_model("mosi")
    assert n_params(m.text_enc) == 109_482_240
    assert (n_params(m.visual_enc), n_params(m.acoustic_enc)) == (26_176, 22_336)
    assert n_params(m.fusion_prj) == 82_305
    assert m.tcf_features == 256_036
    assert n_params(m.tfn_tv, m.tfn_ta, m.tfn_av) == 196_636_416  # 3 * 2 * (256036 * 128 + 128)
    assert n_params(m.conv_tfn_t, m.conv_tfn_v, m.conv_tfn_a) == 951
    assert n_params(m.ta_clip, m.tv_clip, m.av_clip, m.mass_t_clip, m.mass_v_clip, m.mass_a_clip,
                    m.mass_tav_clip) == 386_816
    assert n_params(m.conv_tv, m.conv_av, m.conv_vt, m.conv_tav, m.conv_res) == 1_221_376
    assert n_params(m.get_res_t, m.get_res_v, m.get_res_a, m.get_res_tav) == 919_552


# -- the contrastive unit -------------------------------------------------------------------------
def clip_reference(unit: Clip, x: torch.Tensor, y: torch.Tensor) -> float:
    """encoders.py Clip written out in float64: x^ = unit(W_x x + b), y^ = W_y unit(y) + b,
    logits = ln(1/0.07) x^.y^, loss = (row CE + column CE) / 2 with targets on the diagonal."""
    wx, bx = unit.proj_x.weight.detach().double(), unit.proj_x.bias.detach().double()
    wy, by = unit.proj_y.weight.detach().double(), unit.proj_y.bias.detach().double()
    px = [row @ wx.T + bx for row in x.double()]
    px = [v / v.norm() for v in px]
    py = [(row / row.norm()) @ wy.T + by for row in y.double()]
    n = len(px)
    logits = [[SCALE * float(px[i] @ py[j]) for j in range(n)] for i in range(n)]
    rows = sum(-logits[i][i] + math.log(sum(math.exp(v) for v in logits[i])) for i in range(n)) / n
    cols = sum(-logits[j][j] + math.log(sum(math.exp(logits[i][j]) for i in range(n))) for j in range(n)) / n
    return (rows + cols) / 2


@pytest.fixture
def unit():
    torch.manual_seed(0)
    return Clip(7, 4, dim=6, logit_scale=SCALE)


def test_clip_matches_direct_computation(unit):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 7, generator=g), torch.randn(5, 4, generator=g)
    got = unit(x, y).detach()
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(clip_reference(unit, x, y), rel=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # projections in bf16, logits and CE in fp32
        low = unit(x, y).detach()
    assert low.dtype == torch.float32 and float(low) == pytest.approx(float(got), rel=5e-2)


def test_clip_quirks(unit):
    """y is normalised before its projection (its scale is irrelevant; x's is not, through the
    bias before the normalisation), the projected y is not renormalised, and the scale is ln(1/0.07)."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(6, 7, generator=g), torch.randn(6, 4, generator=g)
    unit.requires_grad_(False)
    base = float(unit(x, y))
    assert float(unit(x, 10 * y)) == pytest.approx(base, rel=1e-6)
    assert float(unit(10 * x, y)) != pytest.approx(base, rel=1e-4)
    with torch.no_grad():
        unit.proj_y.weight.mul_(3.0)
        unit.proj_y.bias.mul_(3.0)  # a renormalised y^ would not see this
    assert float(unit(x, y)) != pytest.approx(base, rel=1e-3)
    assert MCLMCFConfig().logit_scale == pytest.approx(2.6593, abs=1e-4)  # the preset value, not the fixture's


def test_clip_norm_eps_only_guards_zero_inputs():
    torch.manual_seed(0)
    raw, guarded = Clip(3, 3, 4, SCALE), Clip(3, 3, 4, SCALE, eps=1e-12)
    guarded.load_state_dict(raw.state_dict())
    x, y = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.equal(raw(x, y), guarded(x, y))
    y[1] = 0.0  # e.g. an all-zero ReLU map: the code's x / ||x|| gives NaN
    assert torch.isnan(raw(x, y)) and torch.isfinite(guarded(x, y))


# -- the three levels on the demo model -----------------------------------------------------------
def revive_tcf(model: MCLMCF) -> None:
    """Non-negative TCF conv weights and positive biases: on the non-negative outer products no
    map is then all zeros (a dead stack passes no gradient, see the test below)."""
    with torch.no_grad():
        for seq in (model.conv_tfn_t, model.conv_tfn_v, model.conv_tfn_a):
            for conv in (seq[0], seq[2], seq[4]):
                conv.weight.abs_()
                conv.bias.fill_(0.1)


@pytest.fixture
def demo(synthetic):
    torch.manual_seed(0)
    model = create_model("mcl_mcf", "synthetic").train()
    revive_tcf(model)
    batch = synthetic.train.take(torch.arange(6))
    return model, batch


def test_dead_tcf_stack_is_nan_as_coded_and_finite_with_the_guard(synthetic):
    """Seed 0's demo model has an all-zero TA map (a dead conv stack at init): it is the y of
    two TCF Clips, so the code's x / ||x|| gives NaN; the default norm_eps gives a finite loss
    and the dead stack no gradient."""
    batch = synthetic.train.take(torch.arange(6))
    torch.manual_seed(0)
    guarded = create_model("mcl_mcf", "synthetic").train()
    raw = create_model("mcl_mcf", "synthetic", norm_eps=0.0).train()
    raw.load_state_dict(guarded.state_dict())
    with torch.no_grad():
        maps = guarded.tcf_maps(guarded.branches(guarded.encode(batch)))
    assert float(maps["ta"].abs().sum()) == 0.0
    torch.manual_seed(1)
    assert torch.isnan(raw.loss(raw(batch), batch)["nce3"])
    torch.manual_seed(1)
    parts = guarded.loss(guarded(batch), batch)
    assert torch.isfinite(parts["total"])
    parts["total"].backward()
    assert all(float(p.grad.abs().sum()) == 0.0 for p in guarded.conv_tfn_v.parameters())


def k1(conv, x):
    """A kernel-1 Conv1d as a matrix product."""
    return x.double() @ conv.weight.squeeze(-1).double().T + conv.bias.double()


def test_levels_match_direct_computation(demo):
    model, batch = demo
    model.eval()  # deterministic encodings; the level methods do not depend on the mode
    with torch.no_grad():
        reps = model.encode(batch)
        t, a, v = reps["t"], reps["a"], reps["v"]
        # level 1
        want1 = clip_reference(model.ta_clip, t, a) + clip_reference(model.tv_clip, t, v) + clip_reference(model.av_clip, v, a)
        assert float(model.contrast_unimodal(reps)) == pytest.approx(want1, rel=1e-5)
        # level 2: hubs as matrix products over the concatenations
        m_tv, m_va = k1(model.conv_tv, torch.cat([t, v], 1)), k1(model.conv_av, torch.cat([v, a], 1))
        m_ta, m_tav = k1(model.conv_vt, torch.cat([t, a], 1)), k1(model.conv_tav, torch.cat([t, v, a], 1))
        want2 = (clip_reference(model.mass_t_clip, t, m_va) + clip_reference(model.mass_v_clip, v, m_ta)
                 + clip_reference(model.mass_a_clip, a, m_tv) + clip_reference(model.mass_tav_clip, a, m_tav))
        assert float(model.contrast_crossmodal(reps)) == pytest.approx(want2, rel=1e-5)
        # level 3: outer products of the MCF branches through the conv stacks
        res = tuple(k1(c, x).relu() for c, x in ((model.get_res_t, t), (model.get_res_v, v), (model.get_res_a, a)))
        assert all(torch.allclose(x.double(), y, atol=1e-6) for x, y in zip(model.branches(reps), res))
        r_t, r_v, r_a = res

        def stack(seq, p, q):
            h = torch.einsum("bi,bj->bij", p, q).unsqueeze(1)
            for conv in (seq[0], seq[2], seq[4]):
                h = F.conv2d(h, conv.weight.double(), conv.bias.double()).relu()
            return h.flatten(1)

        tv, ta, va = stack(model.conv_tfn_t, r_t, r_v), stack(model.conv_tfn_v, r_t, r_a), stack(model.conv_tfn_a, r_v, r_a)
        assert tv.shape == (6, (32 - 6) ** 2) == (6, model.tcf_features)
        want3 = (clip_reference(model.tfn_tv, tv, ta) + clip_reference(model.tfn_ta, tv, va)
                 + clip_reference(model.tfn_av, ta, va))
        assert float(model.contrast_fusion(model.branches(reps))) == pytest.approx(want3, rel=1e-4)
        # the prediction path (MCF): conv_res over [res, res2, res3, q] -> SubNet (eval: no dropout)
        q = k1(model.get_res_tav, torch.cat([t, a, v], 1)).relu()
        r = k1(model.conv_res, torch.cat([r_t, r_v, r_a, q], 1))
        s = model.fusion_prj
        lin = lambda layer, x: x @ layer.weight.double().T + layer.bias.double()  # noqa: E731
        pred = lin(s.linear_3, lin(s.linear_2, lin(s.linear_1, r).tanh()).tanh())
        out = model(batch)
        assert torch.allclose(out.pred.double(), pred, atol=1e-5)
        assert out.extras == {}  # eval: the contrastive branches are skipped
        # train mode: forward's extras are the three levels of the same (seeded) encodings
        model.train()
        torch.manual_seed(3)
        out = model(batch)
        torch.manual_seed(3)
        reps = model.encode(batch)
        assert float(out.extras["nce"]) == pytest.approx(float(model.contrast_unimodal(reps)), rel=1e-6)
        assert float(out.extras["nce2"]) == pytest.approx(float(model.contrast_crossmodal(reps)), rel=1e-6)
        assert float(out.extras["nce3"]) == pytest.approx(float(model.contrast_fusion(model.branches(reps))), rel=1e-6)


def test_total_loss_weights_and_contrast_switch(demo, synthetic):
    model, batch = demo
    torch.manual_seed(1)
    out = model(batch)
    parts = model.loss(out, batch)
    assert set(parts) == {"total", "task", "nce", "nce2", "nce3"}
    want = parts["task"] + 0.05 * (parts["nce"] + parts["nce2"] + parts["nce3"])
    assert float(parts["total"].detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    off = create_model("mcl_mcf", "synthetic", contrast=False).train()
    p_off = off.loss(off(batch), batch)
    assert set(p_off) == {"total", "task"}


# which modules each loss term must reach (and must not)
REACH = {
    "task": ({"text_enc", "visual_enc", "acoustic_enc", "get_res_t", "get_res_v", "get_res_a", "get_res_tav",
              "conv_res", "fusion_prj"}),
    "nce": {"text_enc", "visual_enc", "acoustic_enc", "ta_clip", "tv_clip", "av_clip"},
    "nce2": {"text_enc", "visual_enc", "acoustic_enc", "conv_tv", "conv_av", "conv_vt", "conv_tav",
             "mass_t_clip", "mass_v_clip", "mass_a_clip", "mass_tav_clip"},
    "nce3": {"text_enc", "visual_enc", "acoustic_enc", "get_res_t", "get_res_v", "get_res_a",
             "conv_tfn_t", "conv_tfn_v", "conv_tfn_a", "tfn_tv", "tfn_ta", "tfn_av"},
}


@pytest.mark.parametrize("term", list(REACH))
def test_each_term_reaches_its_parameters(demo, term):
    model, batch = demo
    torch.manual_seed(1)
    out = model(batch)
    model.loss(out, batch)[term].backward()
    reached = {n.split(".")[0] for n, p in model.named_parameters()
               if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == REACH[term]
    assert all(p.grad is None for p in model.text_enc.pooler.parameters())


def test_missing_token_ids_say_what_is_needed(demo):
    import dataclasses

    model, batch = demo
    with pytest.raises(ValueError, match="token ids"):
        model(dataclasses.replace(batch, text_ids=None))


# -- presets, groups, registry ---------------------------------------------------------------------
def test_presets_groups_and_unsupported():
    entry = get_model_entry("mcl_mcf")
    assert set(entry.presets) == {("mosi", "official"), ("mosei", "official"), ("iemocap", "official"),
                                  ("sims", "official"), ("simsv2", "official"), ("synthetic", "demo")}
    assert "iemocap" not in entry.unsupported
    iemocap, mosei = entry.presets[("iemocap", "official")], entry.presets[("mosei", "official")]
    assert (iemocap.task, iemocap.n_out) == ("iemocap", 8)  # harness preset: MOSEI's with 4 x 2 logits
    assert dataclasses.replace(iemocap, task="regression", n_out=1, dataset="mosei") == dataclasses.replace(
        mosei, dataset="mosei")
    cfg = entry.presets[("mosi", "official")]
    assert (cfg.setting, cfg.text_input, cfg.text_max_length, cfg.optimizer, cfg.batch_size) == (
        "unaligned", "ids", 50, "adam", 128)
    assert (cfg.scheduler, cfg.scheduler_patience, cfg.scheduler_factor, cfg.early_stop_patience) == ("plateau", 20, 0.5, 10)
    assert (cfg.clip_grad_norm, cfg.nce_weight, cfg.nce2_weight, cfg.nce3_weight) == (1.0, 0.05, 0.05, 0.05)
    assert entry.presets[("mosei", "official")].dims == (768, 74, 35)
    model = create_model("mcl_mcf", "synthetic")
    opt = build_optimizer(model)
    assert {g["name"]: (g["lr"], g["weight_decay"]) for g in opt.param_groups} == {
        "bert": (5e-4, 1e-4), "main": (1e-3, 1e-4)}
    assert sum(p.numel() for p in opt.param_groups[0]["params"]) == n_params(model.text_enc)


@torch.no_grad()
def test_xavier_normal_init_outside_bert():
    """solver.py:79-82: every non-BERT weight with dim > 1 is xavier-normal (std sqrt(2 / (fan_in + fan_out)))."""
    torch.manual_seed(0)
    m = create_model("mcl_mcf", "synthetic")
    w = m.tfn_tv.proj_x.weight  # (32, 676) in the demo; (128, 256036) in the official preset
    assert float(w.std()) == pytest.approx(math.sqrt(2 / (676 + 32)), rel=3e-2)
    lstm = m.visual_enc.rnn.weight_ih_l0  # (64, 20)
    assert float(lstm.std()) == pytest.approx(math.sqrt(2 / (64 + 20)), rel=0.1)
    bert_ln = m.text_enc.bert.embeddings.word_embeddings.weight
    assert float(bert_ln.std()) == pytest.approx(0.02, rel=0.05)  # BERT keeps its own init


# -- the demo preset trains ----------------------------------------------------------------------
@pytest.mark.slow
def test_demo_trains_and_loss_goes_down(synthetic):
    torch.manual_seed(0)
    model = create_model("mcl_mcf", "synthetic", max_epochs=3, early_stop_patience=None)
    res = train_demo(model, synthetic, (192, 48, 48), key="task")
    hist = res["history"]
    assert hist[-1]["train"]["total"] < hist[0]["train"]["total"]
    assert res["params"]["with_grad"] == res["params"]["trainable"] - n_params(model.text_enc.pooler)
