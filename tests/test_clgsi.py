"""CLGSI: parameter counts (both variants), the intensity-weighted contrastive loss against a
direct loop computation (fp32 under bf16 autocast), gradients, the cosine warm-up schedule,
the paper-era batch dependence, presets, and a short demo training run."""

import dataclasses
import math

import pytest
import torch

from bench.schedule import Scheduler, cosine_warmup_factor
from bench.train import build_optimizer
from models import create_model
from models.base import count_parameters
from models.clgsi import CLGSIConfig, clgsi_contrastive_loss, resolved
from models.registry import get_model_entry
from tests.conftest import train_demo

POOLER = 590_592


def meta_model(dataset: str, **kw):
    with torch.device("meta"):
        return create_model("clgsi", dataset, "official", text_encoder="bert-base", **kw)


# -- parameter counts (docs/models/clgsi.md) --------------------------------------------
@pytest.mark.parametrize("dataset,variant,total,unused", [
    ("mosi", "head", 110_415_204, 146_117),
    ("mosei", "head", 112_057_061, 627_465),
    ("mosi", "paper_era", 110_174_480, 146_117),  # r = 8: MOSI's audio gate is 0 wide
    ("mosei", "paper_era", 112_057_061, 627_465),  # r was already 8
])
def test_parameter_counts(dataset, variant, total, unused):
    model = meta_model(dataset, variant=variant)
    counts = count_parameters(model)
    assert counts["total"] == total
    assert sum(p.numel() for p in model.unused_parameters()) == unused
    assert counts["trainable"] == total - unused  # freeze_unused: never-run modules are frozen
    assert not any(p.requires_grad for p in model.unused_parameters())


def test_breakdown_mosi():
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    m = meta_model("mosi")
    assert n(m.text_model) == 109_482_240
    assert (n(m.audio_model), n(m.video_model)) == (3 * 22_673, 3 * 85_748)  # layers + registered template
    assert n(m.glfk) == 182
    assert (n(m.text_skip_net), n(m.audio_skip_net), n(m.video_skip_net)) == (319_872, 140, 850)
    assert n(meta_model("mosi", variant="paper_era").audio_skip_net) == 0


# -- the contrastive loss against a direct computation --------------------------------------
def loop_reference(feats: dict, labels: torch.Tensor, cfg: CLGSIConfig, proper_mask: bool = False) -> float:
    """contrastive_loss.py written out pair by pair in float64 (label rescaling in fp32 as coded)."""
    y = ((labels.float() + 3) / 3 - 1).tolist()
    n = len(y)

    def weights(i, j):
        d = abs(torch.tensor(y[i], dtype=torch.float32) - torch.tensor(y[j], dtype=torch.float32)).item()
        if d <= cfg.dividing_line:
            return -math.tanh(d - 2 * cfg.dividing_line) * cfg.gain, 0.0, True
        return 0.0, math.tanh(d) * cfg.gain, False

    def unit(x):
        x = x.double()
        return [(row / row.norm()).tolist() for row in x]

    def dot(u, v):
        return sum(a * b for a, b in zip(u, v))

    def modality(A, B):  # L_A with inter = A.B, intra = A.A
        total = 0.0
        for i in range(n):
            num = den = 0.0
            for j in range(n):
                wp, wn, is_pos = weights(i, j)
                for s in (dot(A[i], B[j]), dot(A[i], A[j])):
                    p = math.exp(s * wp / cfg.temperature)
                    q = math.exp(s * wn * cfg.negative_factor / cfg.temperature)
                    if proper_mask:
                        p, q = (p, 0.0) if is_pos else (0.0, q)
                    num += p
                    den += p + q
            total += -math.log(num / den)
        return total / n

    out = 0.0
    for a, b in (("v", "a"), ("v", "t"), ("t", "a")):
        A, B = unit(feats[a]), unit(feats[b])
        out += (modality(A, B) + modality(B, A)) / 2
    return out


@pytest.fixture
def small_batch():
    g = torch.Generator().manual_seed(0)
    # label pairs at distance 0, inside delta, exactly at delta (|1.2 - 0| / 3) and beyond
    labels = torch.tensor([0.0, 1.2, -0.4, 2.8, -3.0, 0.6, 1.2])
    feats = {m: torch.relu(torch.randn(7, 5, generator=g)) + 0.05 for m in "tav"}  # post-ReLU, like the code's
    return feats, labels


@pytest.mark.parametrize("mask_before_exp,temperature", [(True, 0.03), (False, 0.03), (True, 1.0), (False, 1.0)])
def test_contrastive_loss_matches_loops(small_batch, mask_before_exp, temperature):
    feats, labels = small_batch
    cfg = CLGSIConfig(mask_before_exp=mask_before_exp, temperature=temperature)
    got = clgsi_contrastive_loss(feats, labels, cfg)
    want = loop_reference(feats, labels, cfg, proper_mask=not mask_before_exp)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_mask_before_exp_counts_excluded_pairs_as_one(small_batch):
    """Excluded pairs add exp(0) = 1 to both sums. Every row's positive sum holds its own intra
    pair exp(0.996 / tau) ~ e^33.2, so at tau = 0.03 those ones move the loss by < 2n e^-33;
    at tau = 1 they matter."""
    feats, labels = small_batch
    loss = lambda **kw: float(clgsi_contrastive_loss(feats, labels, CLGSIConfig(**kw)))  # noqa: E731
    assert loss() == pytest.approx(loss(mask_before_exp=False), rel=1e-6)
    assert loss(temperature=1.0) != pytest.approx(loss(temperature=1.0, mask_before_exp=False), rel=1e-2)


def test_contrastive_loss_stays_fp32_under_bf16_autocast(small_batch):
    feats, labels = small_batch
    cfg = CLGSIConfig()
    low = {m: f.to(torch.bfloat16) for m, f in feats.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = clgsi_contrastive_loss(low, labels, cfg)
    assert got.dtype == torch.float32
    want = loop_reference({m: f.float() for m, f in low.items()}, labels, cfg)
    assert float(got) == pytest.approx(want, rel=1e-5)
    # the exponents reach ~38.6: far beyond what fp16 holds (max ~e^11)
    assert math.exp(cfg.negative_factor * cfg.gain * math.tanh(2.0) / cfg.temperature) > torch.finfo(torch.float16).max


def test_model_loss_fp32_under_autocast(synthetic):
    torch.manual_seed(0)
    model = create_model("clgsi", "synthetic").train()
    batch = synthetic.train.take(torch.arange(8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
        parts = model.loss(out, batch)
    assert parts["contrastive"].dtype == torch.float32
    assert torch.isfinite(parts["total"])


# -- gradients ------------------------------------------------------------------------------
def test_gradients_where_they_belong(synthetic):
    torch.manual_seed(0)
    model = create_model("clgsi", "synthetic").train()
    batch = synthetic.train.take(torch.arange(8))
    out = model(batch)
    parts = model.loss(out, batch)
    parts["contrastive"].backward(retain_graph=True)
    has = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    # the CL reads text_h / audio_h / video_h only: encoders and post_*_layer_1, not the gates or fusion
    for prefix in ("text_model.bert.encoder.", "post_text_layer_1.", "audio_model.transformer_encoder.",
                   "post_audio_layer_1.", "video_model.transformer_encoder.", "post_video_layer_1."):
        assert any(n.startswith(prefix) for n in has), prefix
    for prefix in ("glfk.", "post_fusion_layer_skip_connection.", "post_fusion_layer_2.", "post_fusion_layer_3.",
                   "fusion_batchnorm.", "text_skip_net.", "audio_skip_net.", "video_skip_net."):
        assert not any(n.startswith(prefix) for n in has), prefix
    model.zero_grad()
    parts["total"].backward()
    missing = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
    assert missing and all(n.startswith("text_model.bert.pooler.") for n in missing)
    assert all(p.grad is None for p in model.unused_parameters())


# -- the learning-rate schedule ---------------------------------------------------------------
def test_schedule_matches_the_formula_and_transformers():
    from transformers import get_cosine_schedule_with_warmup

    total, warm = 21 * 75, 0.1 * 21 * 75  # MOSI: 21 batches of 64, warm_up_epochs 75
    f = lambda s: cosine_warmup_factor(s, warmup_steps=warm, total_steps=total)  # noqa: E731
    assert f(0) == 0.0 and f(100) == pytest.approx(100 / 157.5)
    assert f(157.5) == pytest.approx(1.0) and f(total) == pytest.approx(0.0, abs=1e-12)
    mid = warm + (total - warm) / 2
    assert f(int(mid)) == pytest.approx(0.5 * (1 + math.cos(math.pi * (int(mid) - warm) / (total - warm))))
    assert f(2 * total - int(warm)) > 0.99  # unclamped, as coded: the lr climbs back after total
    assert cosine_warmup_factor(2 * total, warmup_steps=warm, total_steps=total, clamp=True) == 0.0
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=warm, num_training_steps=total)
    for step in range(2 * total):
        if step in (0, 1, 157, 158, 700, total - 1, total, total + 500):
            assert opt.param_groups[0]["lr"] == pytest.approx(f(step), abs=1e-12)
        opt.step()
        sched.step()


def test_trainer_sets_the_declared_lr_of_each_step(small_synthetic):
    model = create_model("clgsi", "synthetic")
    opt = build_optimizer(model)
    spe = small_synthetic.train.num_batches(model.cfg.batch_size)  # 96 / 32 = 3
    sched = Scheduler(model.lr_schedule(), opt, spe, model.cfg.max_epochs)
    f = lambda s: cosine_warmup_factor(s, warmup_steps=0.1 * spe * 4, total_steps=spe * 4)  # noqa: E731
    assert sched.start_epoch(0) == {"lr_factor": 0.0}
    for step in range(3 * spe):
        if step % spe == 0:
            assert sched.start_epoch(step // spe) == {"lr_factor": f(step)}
        sched.before_step()
        for g in opt.param_groups:
            assert g["lr"] == g["base_lr"] * f(step)
        sched.after_step()  # each step's lr is set just before it: an epoch ends on its last step's lr
        assert all(g["lr"] == g["base_lr"] * f(step) for g in opt.param_groups)
    assert {g["name"]: g["base_lr"] for g in opt.param_groups} == {
        "bert": 5e-4, "bert_no_decay": 5e-4, "audio": 5e-3, "video": 1e-3, "other": 1e-2}
    assert create_model("clgsi", "synthetic", lr_schedule="none").lr_schedule().kind is None


# -- variants, presets, batch dependence --------------------------------------------------------
def test_variant_values_and_overrides():
    get = lambda ds, **kw: resolved(create_model("clgsi", ds, "official", text_encoder="tiny", **kw).cfg)  # noqa: E731
    assert get("mosi") == {"skip_net_reduction": 2, "warm_up_epochs": 75, "gamma": 0.95}
    assert get("mosei") == {"skip_net_reduction": 8, "warm_up_epochs": 40, "gamma": 0.48}
    assert get("mosi", variant="paper_era") == {"skip_net_reduction": 8, "warm_up_epochs": 110, "gamma": 0.24}
    assert get("mosei", variant="paper_era") == {"skip_net_reduction": 8, "warm_up_epochs": 120, "gamma": 0.33}
    assert get("mosi", variant="paper_era", gamma=0.5)["gamma"] == 0.5
    entry = get_model_entry("clgsi")
    assert "iemocap" in entry.unsupported and set(entry.presets) == {
        ("mosi", "official"), ("mosei", "official"), ("sims", "official"), ("synthetic", "demo")}
    assert "simsv2" in entry.unsupported  # config_regression.py sims values; no simsv2 model parameters
    assert get("sims") == {"skip_net_reduction": 8, "warm_up_epochs": 95, "gamma": 0.38}
    cfg = entry.presets[("mosi", "official")]
    assert (cfg.setting, cfg.text_input, cfg.optimizer, cfg.selection_metric) == ("unaligned", "ids", "adamw", "MAE")


@pytest.mark.parametrize("variant", ["head", "paper_era"])
def test_batch_dependence_only_in_paper_era(synthetic, variant):
    torch.manual_seed(0)
    model = create_model("clgsi", "synthetic", variant=variant).eval()
    assert model.summary()["batch_dependent_eval"] is (variant == "paper_era")
    with torch.no_grad():
        alone = model(synthetic.valid.take(torch.arange(4))).pred[:2]
        other = model(synthetic.valid.take(torch.tensor([0, 1, 10, 11]))).pred[:2]
        single = model(synthetic.valid.take(torch.arange(1))).pred  # a batch of one works
    assert single.shape == (1, 1)
    if variant == "head":
        assert torch.allclose(alone, other, atol=1e-6)
    else:
        assert not torch.allclose(alone, other, atol=1e-4)


def test_paper_era_attends_across_the_batch():
    """af1f83a's seq-first layers on (B, T, d) = batch-first layers on (T, B, d): samples are the sequence."""
    from models.clgsi import AuViEncoder
    from models.layers.seq_encoder import sinusoidal_table

    torch.manual_seed(0)
    seq_first = create_model("clgsi", "synthetic", variant="paper_era").eval().audio_model
    batch_first = AuViEncoder(5, 1, 2, 128, 0.1, batch_first=True).eval()
    batch_first.load_state_dict(seq_first.state_dict())
    x = torch.randn(5, 7, 5)
    with torch.no_grad():
        ref = seq_first(x)
        swapped = batch_first.transformer_encoder((x + sinusoidal_table(7, 5, x.device, x.dtype)).transpose(0, 1))
    assert torch.allclose(ref, swapped.transpose(0, 1), atol=1e-5)


def test_use_lengths_ignores_padding(synthetic):
    torch.manual_seed(0)
    model = create_model("clgsi", "synthetic", use_lengths=True).eval()
    batch = synthetic.valid.take(torch.arange(4))
    noisy = batch.audio.clone()
    for i, n in enumerate(batch.audio_lengths.tolist()):
        noisy[i, n:] = 5.0
    with torch.no_grad():
        assert torch.allclose(model(batch).pred, model(dataclasses.replace(batch, audio=noisy)).pred, atol=1e-5)


# -- the demo preset trains ---------------------------------------------------------------------
@pytest.mark.slow
def test_demo_trains_and_loss_goes_down(synthetic):
    torch.manual_seed(0)
    model = create_model("clgsi", "synthetic", max_epochs=3, early_stop_patience=None)
    res = train_demo(model, synthetic, (192, 48, 48), key="task")
    s = res["model_summary"]
    assert s["batch_dependent_eval"] is False and s["cap_bound"] is True
    assert s["lr_schedule"]["steps_per_epoch"] == 6 and s["lr_schedule"]["last_step"] == 17
    f = lambda s: cosine_warmup_factor(s, warmup_steps=0.1 * 6 * 4, total_steps=6 * 4)  # noqa: E731
    assert res["history"][-1]["lr"]["other"] == pytest.approx(1e-2 * f(17))
    assert [r["lr_factor"] for r in res["history"]] == [f(0), f(6), f(12)]
    assert res["params"]["with_grad"] == res["params"]["trainable"] - sum(
        p.numel() for p in model.text_model.pooler.parameters())
