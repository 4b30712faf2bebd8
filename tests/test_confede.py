"""ConFEDE: exact parameter counts, the text-centred contrastive loss (against a direct
computation and against pytorch-metric-learning called as the released code calls it), the
sample retriever (hand-made labels in both modes, the released loops, block-wise == one
block, ties), what each stage trains, and the demo preset through the staged trainer."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from models import create_model
from models.base import INHERIT, count_parameters
from models.confede import (FEATURES, build_candidates, confede_contrastive_loss, contrastive_pairs,
                            contrastive_rows, make_ntxent, sample_partners)
from models.layers.text_encoder import BERT_BASE_PARAMS


def meta_model(dataset: str):
    with torch.device("meta"):
        return create_model("confede", dataset, "official", text_encoder="bert-base")


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- parameter counts (docs/models/confede.md) -----------------------------------------------------
@pytest.mark.parametrize("dataset,fusion_model,fusion_trainable,vision,audio", [
    ("mosi", 129_601_154, 20_118_914, 8_103_168, 7_984_128),
    ("mosei", 136_919_426, 27_437_186, 11_672_832, 11_732_736),
])
def test_parameter_counts(dataset, fusion_model, fusion_trainable, vision, audio):
    m = meta_model(dataset)
    heads = 3 * 387_841  # the stage-1 heads BaseClassifier(768, [384, 192, 96], 1), not part of TVA_fusion
    assert count_parameters(m)["total"] == fusion_model + heads
    assert m.fusion_parameter_count() == fusion_model
    assert [n_params(m.pretrain_heads[k]) for k in "tva"] == [387_841] * 3
    assert n_params(m.text) == BERT_BASE_PARAMS
    assert (n_params(m.vision), n_params(m.audio)) == (vision, audio)
    assert n_params(m.proj) == 1_780_992 and n_params(m.decoder) == 2_158_081 and n_params(m.mono_decoder) == 92_545
    fusion = m.stages()[-1]
    assert fusion.name == "fusion" and sum(p.numel() for p in fusion.trainable()) == fusion_trainable
    assert fusion_trainable == fusion_model - BERT_BASE_PARAMS
    unused = sum(p.numel() for n, p in m.named_parameters() if ".unused_" in n)
    assert unused == {"mosi": 1_201_920, "mosei": 1_266_432}[dataset]  # fc + dense, never called


# -- the contrastive loss ----------------------------------------------------------------------
def test_contrastive_pairs_are_the_codes_text_centred_lists():
    a1, p, a2, n = contrastive_pairs()
    row = lambda block, r: 7 * block + r  # noqa: E731
    pos = {(row(b, 0), row(b, r)) for b in range(3) for r in (1, 2)}  # each s-feature with its 2 ss partners
    pos |= {(row(0, r), row(b, r)) for r in range(7) for b in (1, 2)}  # T_s with V_s, A_s of the same sample
    neg = {(row(b, 0), row(b, r)) for b in range(3) for r in (3, 4, 5, 6)}  # vs dd and sd partners
    neg |= {(row(0, r), row(b, r)) for r in range(7) for b in (3, 4, 5)}  # T_s vs T_ds, V_ds, A_ds
    assert len(a1) == 20 and set(zip(a1, p)) == pos
    assert len(a2) == 33 and set(zip(a2, n)) == neg
    assert sorted(set(a2)) == [0, 1, 2, 3, 4, 5, 6, 7, 14]  # only the T_s rows and the V_s / A_s anchors
    assert set(a1) <= set(a2)  # every positive anchor row has negatives


def _features(b: int, u: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    anchor = [torch.randn(b, u, generator=g, dtype=torch.float64) for _ in FEATURES]
    partners = [torch.randn(6 * b, u, generator=g, dtype=torch.float64) for _ in FEATURES]
    return anchor, partners


def test_contrastive_loss_equals_a_direct_computation():
    b, u, tau = 3, 8, 0.5
    anchor, partners = _features(b, u)
    a1, p, a2, n = contrastive_pairs()
    per_anchor = []
    for i in range(b):  # the 42 rows of anchor i, written out: block k = [anchor; its 6 partners]
        rows = torch.cat([torch.cat([anchor[k][i:i + 1], partners[k][6 * i:6 * i + 6]]) for k in range(6)])
        sim = F.cosine_similarity(rows[:, None], rows[None, :], dim=-1) / tau
        losses = []
        for a, q in zip(a1, p):
            negs = torch.stack([sim[a, m] for a_, m in zip(a2, n) if a_ == a])
            losses.append(-(sim[a, q] - torch.logsumexp(torch.cat([sim[a, q][None], negs]), 0)))
        per_anchor.append(torch.stack(losses).mean())
    expected = torch.stack(per_anchor).mean()
    got = confede_contrastive_loss(anchor, partners, make_ntxent(tau))
    assert got.dtype == torch.float32  # computed in fp32
    assert torch.allclose(got.double(), expected, atol=1e-5)


def test_contrastive_loss_equals_pml_called_per_anchor_like_the_code():
    """The code loops over anchors, one NTXentLoss call on 42 rows each, and averages."""
    from pytorch_metric_learning.losses import NTXentLoss

    b, u = 4, 16
    anchor, partners = _features(b, u, seed=1)
    anchor = [a.float().requires_grad_() for a in anchor]
    partners = [q.float() for q in partners]
    rows = contrastive_rows(anchor, partners).reshape(b, 42, u)
    pml = NTXentLoss(temperature=0.5)
    pairs = tuple(torch.tensor(t) for t in contrastive_pairs())
    looped = sum(pml(rows[i], indices_tuple=pairs) for i in range(b)) / b
    got = confede_contrastive_loss(anchor, partners, make_ntxent(0.5))
    assert torch.allclose(got, looped, atol=1e-6)
    g1 = torch.autograd.grad(got, anchor[0], retain_graph=True)[0]
    g2 = torch.autograd.grad(looped, anchor[0])[0]
    assert torch.allclose(g1, g2, atol=1e-6)


# -- the retriever -----------------------------------------------------------------------------
ANGLES = [0, 10, 25, 45, 70, 100, 135, 170]  # degrees: cosine similarity falls with the angle between samples
LABELS = [0.2, -0.3, 1.1, 0.8, 0.0, 2.4, 1.6, -0.4]  # rounded: 0 0 1 1 0 2 2 0


def _circle():
    rad = torch.tensor(ANGLES, dtype=torch.float64) * torch.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1), torch.tensor(LABELS)


@pytest.mark.parametrize("mode,divisor,keep,expected", [
    # anchor 3 (45 deg, label 1) ranks the samples [3, 2, 4, 1, 0, 5, 6, 7] (rounded labels 1 1 0 0 0 2 2 0)
    ("paper", 1, 10, {0: ([1, 4, 7], [2, 3, 5, 6], [6, 5, 3, 2]), 3: ([2], [4, 1, 0, 5, 6, 7], [7, 6, 5, 0, 1, 4])}),
    # the released lists: rank positions j, the self-skip `i == j` on positions, dd positions from the end
    ("code", 1, 10, {0: ([1, 4, 7], [2, 3, 5, 6], [6, 5, 3, 2]), 3: ([0, 1], [2, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2])}),
    # MOSEI-style window: top int(8 / 2) = 4 positions, bottom 3, 2 kept
    ("paper", 2, 2, {3: ([2], [4, 1], [7, 6])}),
    ("code", 2, 2, {3: ([0, 1], [2], [7, 6])}),
])
def test_retriever_on_hand_made_labels(mode, divisor, keep, expected):
    feats, labels = _circle()
    cands = build_candidates(feats, labels, mode=mode, divisor=divisor, keep=keep)
    for anchor, (ss, sd, dd) in expected.items():
        got = {k: [int(x) for x in cands[k][anchor] if x >= 0] for k in ("ss", "sd", "dd")}
        assert got == {"ss": ss, "sd": sd, "dd": dd}, (mode, anchor)


def released_lists(feats: torch.Tensor, labels: torch.Tensor, mode: str, divisor: int, keep: int):
    """The released `__pre_sample` loops (MOSI.py:137-167, MOSEI.py:70-101) over a full
    stably-sorted similarity matrix; mode "paper" stores rank[i][j] and skips the anchor."""
    n = len(labels)
    f = F.normalize(feats.double(), dim=1)
    rank = torch.sort(f @ f.T, dim=1, descending=True, stable=True).indices
    lab = torch.round(labels)
    out = {"ss": [], "sd": [], "dd": []}
    for i in range(n):
        ss, sd, dd = [], [], []
        for j in range(int(n / divisor)):
            if (i == j) if mode == "code" else (int(rank[i][j]) == i):
                continue
            (ss if lab[i] == lab[rank[i][j]] else sd).append(j if mode == "code" else int(rank[i][j]))
        for j in range(-1, -int(n / divisor), -1):
            if mode == "paper" and int(rank[i][j]) == i:
                continue
            if lab[i] != lab[rank[i][j]]:
                dd.append(j % n if mode == "code" else int(rank[i][j]))
        for k, v in (("ss", ss), ("sd", sd), ("dd", dd)):
            out[k].append(v[:keep])
    return out


@pytest.mark.parametrize("mode", ["code", "paper"])
@pytest.mark.parametrize("divisor,keep", [(1, 10), (10, 50), (3, 4)])
@pytest.mark.parametrize("duplicates", [False, True])
def test_retriever_matches_the_released_loops_and_blockwise_equals_one_block(mode, divisor, keep, duplicates):
    g = torch.Generator().manual_seed(3)
    n = 60
    feats = torch.randn(n, 12, generator=g)
    feats[10] = feats[3]  # an exact tie: the lower sample id ranks first
    if duplicates:  # 5 distinct samples only: ties everywhere, also at the edges of the scanned windows
        feats = feats[torch.randint(0, 5, (n,), generator=g)]
    labels = torch.randint(-3, 4, (n,), generator=g).float() + 0.3 * torch.rand(n, generator=g)
    whole = build_candidates(feats, labels, mode=mode, divisor=divisor, keep=keep, block_elems=n * n)
    blocks = build_candidates(feats, labels, mode=mode, divisor=divisor, keep=keep, block_elems=7 * n)  # 9 blocks
    for k in ("ss", "sd", "dd"):
        assert torch.equal(whole[k], blocks[k])
    ref = released_lists(feats, labels, mode, divisor, keep)
    for k in ("ss", "sd", "dd"):
        assert [[int(x) for x in row if x >= 0] for row in whole[k]] == ref[k], k


def test_retriever_ties_break_by_sample_id():
    feats = torch.ones(6, 4)  # every similarity equal
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    cands = build_candidates(feats, labels, mode="paper", keep=10)
    assert cands["ss"][4].tolist()[:2] == [0, 2] and cands["sd"][4].tolist()[:3] == [1, 3, 5]
    assert cands["dd"][4].tolist()[:3] == [5, 3, 1]  # from the end of the ranking


def test_sims_retriever_matches_exact_labels_and_fusion_selects_on_acc2():
    """SIMS.py compares raw labels (-0.2 and 0.2 differ), MOSI.py rounded ones (both 0); the SIMS
    fusion stage keeps the best validation Mult_acc_2 (config check_list), MOSI's the best MAE."""
    feats = torch.ones(6, 4)
    labels = torch.tensor([-0.2, 0.2, -0.2, 0.2, -0.2, 0.2])
    exact = build_candidates(feats, labels, mode="paper", keep=10, round_labels=False)
    rounded = build_candidates(feats, labels, mode="paper", keep=10)
    assert exact["ss"][4].tolist()[:2] == [0, 2] and exact["sd"][4].tolist()[:3] == [1, 3, 5]
    assert rounded["ss"][4].tolist()[:5] == [0, 1, 2, 3, 5] and (rounded["sd"][4] < 0).all()
    sims = create_model("confede", "sims", text_encoder="tiny")
    assert not sims.cfg.retrieval_round and sims.stages()[-1].selection_metric == "Mult_acc_2"
    assert create_model("confede", "mosi", text_encoder="tiny").stages()[-1].selection_metric == "MAE"

def test_sample_partners_order_replacement_and_determinism():
    cands = {
        "ss": torch.tensor([[5, 6, 7], [8, -1, -1], [-1, -1, -1]]),
        "dd": torch.tensor([[1, 2, -1], [3, 4, -1], [9, 10, 11]]),
        "sd": torch.tensor([[12, 13, 14], [15, 16, -1], [17, 18, -1]]),
    }
    anchors = torch.tensor([0, 1, 2])
    ids = sample_partners(cands, anchors, torch.Generator().manual_seed(0)).view(3, 6)
    again = sample_partners(cands, anchors, torch.Generator().manual_seed(0)).view(3, 6)
    assert torch.equal(ids, again)
    for a in range(3):
        for slot, kind in enumerate(("ss", "dd", "sd")):
            pair = ids[a, 2 * slot:2 * slot + 2].tolist()
            pool = [x for x in cands[kind][a].tolist() if x >= 0]
            if len(pool) >= 2:
                assert set(pair) <= set(pool) and pair[0] != pair[1]  # without replacement
            elif pool:
                assert pair == pool * 2  # one candidate: drawn twice
            else:
                assert pair == [a, a]  # none: the anchor itself
    draws = {tuple(sample_partners(cands, anchors[:1], torch.Generator().manual_seed(s))[:2].tolist())
             for s in range(40)}
    assert len(draws) == 6  # every ordered pair of the 3 ss candidates occurs


# -- stages ------------------------------------------------------------------------------------
def test_stages_order_settings_and_trainable_sets():
    m = create_model("confede", "synthetic")
    stages = m.stages()
    assert [s.name for s in stages] == ["text", "vision", "audio", "fusion"]
    prefixes = {"text": ("text.", "pretrain_heads.t."), "vision": ("vision.", "pretrain_heads.v."),
                "audio": ("audio.", "pretrain_heads.a.")}
    names = {id(p): n for n, p in m.named_parameters()}
    for s in stages:
        trainable = {names[id(p)] for p in s.trainable()}
        if s.name in prefixes:
            assert trainable == {n for n in names.values() if n.startswith(prefixes[s.name])}
            assert not s.contributions
        else:  # fusion: everything but BERT and the stage-1 heads
            assert trainable == {n for n in names.values() if not n.startswith(("text.", "pretrain_heads."))}
        grouped = [p for g in s.param_groups() for p in g["params"]]
        assert {names[id(p)] for p in grouped} == trainable and len(grouped) == len(trainable)
        assert s.selection_metric == "MAE" and s.early_stop_patience is None
    off = meta_model("mosi").stages()
    assert [(s.max_epochs, s.batch_size) for s in off] == [(200, 128), (100, 128), (100, 128), (25, 16)]
    assert [s.warmup_ratio for s in off] == [5 / 200, 5 / 100, 10 / 100, 1 / 25]
    groups = {s.name: s.param_groups() for s in off}
    assert all(g["amsgrad"] and not g["decoupled_weight_decay"] for g in groups["vision"])  # Adam(amsgrad)
    assert off[0].optimizer == "adamw_hf" and groups["text"][0]["lr"] == 1e-4  # transformers AdamW (eps 1e-6)
    assert all(s.optimizer is INHERIT for s in off[1:])  # torch AdamW, per-group options
    mosei = {s.name: s for s in meta_model("mosei").stages()}
    assert mosei["text"].param_groups()[0]["lr"] == 1e-5 and mosei["fusion"].max_epochs == 6
    assert all(g["decoupled_weight_decay"] and not g["amsgrad"] for g in mosei["audio"].param_groups())


def test_group_options_give_the_codes_optimisers():
    """The stage groups' options turn the config's AdamW into the code's Adam(amsgrad,
    coupled L2) for MOSI vision / audio, and keep AdamW's decoupled decay elsewhere."""
    from bench.train import build_optimizer

    torch.manual_seed(0)
    model = create_model("confede", "synthetic", av_optimizer="adam_amsgrad")
    vision = model.stages()[1]
    groups = vision.param_groups()
    params = [p for g in groups for p in g["params"]]
    for p in model.parameters():
        p.requires_grad_(any(p is q for q in params))
    ours = build_optimizer(model, groups)
    assert type(ours).__name__ == "AdamW"
    copies = [p.detach().clone().requires_grad_() for p in params]
    ref = torch.optim.Adam(copies, lr=groups[0]["lr"], weight_decay=model.cfg.weight_decay, amsgrad=True)
    for _ in range(3):
        for p, q in zip(params, copies):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        ours.step()
        ref.step()
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(params, copies))


@pytest.fixture(scope="module")
def small(small_synthetic):
    return small_synthetic


def _freeze_as(model, stage):
    keep = {id(p) for p in stage.trainable()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return keep


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_each_stage_trains_only_its_parameters(index, small):
    torch.manual_seed(0)
    model = create_model("confede", "synthetic")
    stage = model.stages()[index]
    model.stage = stage.name
    keep = _freeze_as(model, stage)
    state = SimpleNamespace(data=small, seed=1111, device=torch.device("cpu"))
    info = model.on_stage_start(stage, state)
    model.train()
    batch = model.training_batch(small.train.take(torch.arange(5)), state)
    out = model(batch)
    assert out.pred.shape == (5, 1)
    parts = model.loss(out, batch)
    parts["total"].backward()
    got = {id(p) for p in model.parameters() if p.grad is not None}
    assert got <= keep  # nothing outside the stage moves
    missing = [n for n, p in model.named_parameters() if id(p) in keep and p.grad is None and ".unused_" not in n]
    assert not missing
    if stage.name == "fusion":
        assert info["n_train"] == len(small.train)
        assert out.extras["partner_pred"].shape == (30, 1) and float(parts["contrastive"].detach()) > 0
        assert not any(p.requires_grad for p in model.text.parameters())  # BERT frozen in fusion
        model.eval()
        with torch.no_grad():  # evaluation: anchors only, no retrieval
            assert "partner_feats" not in model(batch).extras
    else:
        assert set(parts) == {"total", "task"}


def test_text_stage_freezes_bert_for_the_first_epochs():
    from bench.train import apply_freeze

    model = create_model("confede", "synthetic")  # demo: text_bert_frozen_epochs 2 -> epoch 0 frozen
    freeze = {s.name: s.freeze for s in model.stages()}
    assert freeze["vision"] is None and freeze["audio"] is None and freeze["fusion"] is None
    assert apply_freeze(freeze["text"], 0) == {"bert_frozen": True}  # the trainer applies the declaration
    assert not any(p.requires_grad for p in model.text.parameters())
    assert apply_freeze(freeze["text"], 1) == {"bert_frozen": False}
    assert all(p.requires_grad for p in model.text.parameters())


def test_retriever_updates_on_odd_fusion_epochs(small):
    model = create_model("confede", "synthetic")
    model.stage = "fusion"
    state = SimpleNamespace(data=small, seed=1, device=torch.device("cpu"))
    model.on_stage_start(model.stages()[-1], state)  # epoch 1 (1-based)
    assert model.on_epoch_start(0, state) == {} and "retriever" not in model.on_epoch_start(1, state)
    assert "retriever" in model.on_epoch_start(2, state)  # epoch 3
    assert model.summary()["retriever_updates"] == 2


@pytest.mark.slow
def test_demo_trains_through_every_stage(synthetic):
    from bench.train import train_and_test
    from conftest import slice_data

    data = slice_data(synthetic, 128, 48, 48)
    model = create_model("confede", "synthetic")
    result = train_and_test(model, data, seed=1111, device=torch.device("cpu"), robustness=False)
    stages = result["stages"]
    assert [s["name"] for s in stages] == ["text", "vision", "audio", "fusion"]
    for s in stages:
        first, last = s["history"][0]["train"]["total"], s["history"][-1]["train"]["total"]
        assert last < first, (s["name"], first, last)
    assert "contrastive" in stages[-1]["history"][0]["train"]
    assert set(result["time"]["stages_s"]) == {"text", "vision", "audio", "fusion"}
    assert result["model_summary"]["retriever_updates"] == 2  # fusion epochs 1 and 3
    assert result["metrics"]["test"]["MAE"] > 0


def test_checkpointed_encoders_give_the_same_values_and_gradients(synthetic):
    """checkpoint_encoders recomputes each audio/vision layer in backward with the same
    dropout draws: the loss and every gradient equal the plain run's; eval is the same path."""
    batch = synthetic.train.take(torch.arange(8))
    runs = []
    for on in (False, True):
        torch.manual_seed(0)
        model = create_model("confede", "synthetic", checkpoint_encoders=on)
        model.stage = "fusion"
        model.train()
        torch.manual_seed(1)  # the same dropout draws in both runs
        loss = model.loss(model(batch), batch)["total"]
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        assert model.vision.checkpointed is on and model.audio.checkpointed is on
        runs.append((loss.detach(), grads))
    (l0, g0), (l1, g1) = runs
    assert torch.equal(l0, l1)
    assert g0.keys() == g1.keys() and any(n.startswith("vision.encoder.layers") for n in g0)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-6, atol=1e-7, msg=n)
