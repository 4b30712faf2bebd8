"""MFON: exact parameter counts (fusion model, frozen teachers), the distillation and InfoNCE
losses against direct computations (and the torch criterion the code calls), the [CLS]-row
cross-modal stacks against the full causal stacks, what each stage trains and which
parameters get gradients, the discarded trailing accumulation group, the optimiser groups,
and the demo preset through the staged trainer."""

import dataclasses
import functools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bench.train import frozen_except, build_optimizer, train_and_test
from models import create_model
from models.base import count_parameters
from models.layers.text_encoder import BERT_BASE_PARAMS
from models.mfon import TEACHER_STAGES, Teacher, info_nce, kd_loss, visible_keys
from models.registry import get_model_entry
from tests.conftest import slice_data


@functools.lru_cache(maxsize=None)  # read-only use: built once per dataset
def meta_model(dataset: str):
    with torch.device("meta"):
        return create_model("mfon", dataset, "official", text_encoder="bert-base")


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def stage_of(model, name):
    return next(s for s in model.stages() if s.name == name)


# -- parameter counts (docs/models/mfon.md) --------------------------------------------------------
@pytest.mark.parametrize("dataset,fusion_model,teachers,vision_t,audio_t,fusion_trainable,cross_a", [
    ("mosi", 162_547_777, 24_850_176, 14_204_160, 10_646_016, 137_697_601, 17_734_656),
    ("mosei", 152_132_929, 21_368_064, 14_215_680, 7_152_384, 130_764_865, 10_641_408),
])
def test_parameter_counts(dataset, fusion_model, teachers, vision_t, audio_t, fusion_trainable, cross_a):
    m = meta_model(dataset)
    heads = 2 * 332_353  # the stage-1 heads BaseClassifier(768, [384, 96], 1), not part of TVA_fusion
    assert count_parameters(m)["total"] == fusion_model + heads
    assert m.fusion_parameter_count() == fusion_model == m.summary()["fusion_model_params"]
    assert n_params(m.teacher) == teachers == vision_t + audio_t
    assert (n_params(m.teacher["v"]), n_params(m.teacher["a"])) == (vision_t, audio_t)
    assert [n_params(m.teacher_head[k]) for k in "va"] == [332_353] * 2
    assert n_params(m.text) == BERT_BASE_PARAMS and n_params(m.proj_t) == 590_592
    assert n_params(m.vision_with_text) == 7_094_784 and n_params(m.audio_with_text) == cross_a
    assert n_params(m.decoder) == 2_102_593
    assert sum(p.numel() for p in stage_of(m, "fusion").trainable()) == fusion_trainable == fusion_model - teachers


# -- losses ------------------------------------------------------------------------------------
def test_kd_loss_equals_a_direct_computation_and_the_codes_criterion():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    p, log_q = F.softmax(t, 1), F.log_softmax(s, 1)
    direct = sum(float(p[i, k] * (torch.log(p[i, k]) - log_q[i, k])) for i in range(5) for k in range(7)) / 5
    assert float(kd_loss(s, t)) == pytest.approx(direct, rel=1e-6)
    code = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s, dim=1), F.softmax(t, dim=1))  # get_KL_loss
    assert float(kd_loss(s, t)) == pytest.approx(float(code), rel=1e-6)


def test_info_nce_equals_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    u, w = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    terms = []
    for i in range(4):
        lse = torch.logsumexp(torch.tensor([cos(u[i], w[j]) for j in range(4)]), 0)
        terms.append(cos(u[i], w[i]) - float(lse))
    assert float(info_nce(u, w)) == pytest.approx(-sum(terms) / 4, rel=1e-6)


def test_fusion_loss_is_mse_plus_weighted_kd_and_nce(synthetic):
    torch.manual_seed(0)
    m = create_model("mfon", "synthetic", teacher_dropout_in_fusion=False, kd_weight=0.3, nce_weight=0.7)
    m.stage = "fusion"
    m.train()
    b = synthetic.train.take(torch.arange(8))
    out = m(b)
    parts = m.loss(out, b)
    f, teach = out.features, out.extras["teacher"]
    m.teacher.eval()
    with torch.no_grad():
        for k in "va":  # the targets are the frozen teachers' outputs (eval mode here: switch off)
            assert torch.allclose(teach[k], m.teacher[k](b.vision if k == "v" else b.audio), atol=1e-6)
    assert not any(t.requires_grad for t in teach.values())
    y = b.labels.reshape(-1)
    mse = ((out.pred.reshape(-1) - y) ** 2).mean()
    expected = (mse + 0.3 * (kd_loss(f["v"], teach["v"]) + kd_loss(f["a"], teach["a"]))
                + 0.7 * (info_nce(f["v"], f["t"]) + info_nce(f["a"], f["t"])))
    assert torch.allclose(parts["total"], expected) and torch.allclose(parts["task"], mse)
    m.eval()  # mode='test': no distillation terms, prediction only
    assert set(m.loss(m(b), b)) == {"total", "task"}


def test_teachers_run_in_training_mode_during_fusion_as_coded(synthetic):
    torch.manual_seed(0)
    m = create_model("mfon", "synthetic", vision_teacher_dropout=0.5)
    m.stage = "fusion"
    m.train()
    b = synthetic.train.take(torch.arange(8))
    a, c = m(b).extras["teacher"]["v"], m(b).extras["teacher"]["v"]
    assert not torch.allclose(a, c)  # dropout active in the frozen teacher
    m.cfg.teacher_dropout_in_fusion = False
    a, c = m(b).extras["teacher"]["v"], m(b).extras["teacher"]["v"]
    assert torch.equal(a, c) and m.teacher["v"].training  # eval for the call, mode restored


# -- the cross-modal stacks on the [CLS] row ---------------------------------------------------
@pytest.mark.parametrize("width,attn_mask", [(12, True), (50, True), (12, False)])
def test_cls_row_stacks_equal_the_full_causal_stacks(synthetic, width, attn_mask):
    torch.manual_seed(0)
    m = create_model("mfon", "synthetic", attn_mask=attn_mask, vision_text_layers=2, audio_text_layers=2).eval()
    b = synthetic.train.take(torch.arange(6))
    b.text_ids, b.text_mask, b.text_segment = b.text_ids[:, :width], b.text_mask[:, :width], b.text_segment[:, :width]
    with torch.no_grad():
        feats = m(b).features
        query = m.proj_t(m.text(b.text_ids, b.text_mask, b.text_segment))  # the whole text sequence, as coded
        assert torch.allclose(feats["t"], query[:, 0], atol=1e-5)
        for k, stack in (("v", m.vision_with_text), ("a", m.audio_with_text)):
            kv = m._prompted(b, k)
            for layer in stack.layers:
                layer.causal = attn_mask  # MulT buffered_future_mask over (T_q, T_k)
            full = stack(query, kv)[:, 0]  # h_tm[0]
            assert torch.allclose(feats[k], full, atol=1e-5), k
    assert visible_keys(width, 50, attn_mask) == (50 - width + 1 if attn_mask else 50)


def test_eval_predictions_depend_on_the_batchs_text_width(synthetic):
    """The causal window follows the padded text width (dynamic padding): batch-dependent, as coded."""
    torch.manual_seed(0)
    m = create_model("mfon", "synthetic").eval()
    b = synthetic.train.take(torch.arange(4))
    n = int(b.text_mask.sum(1).max())
    trimmed = dataclasses.replace(b, text_ids=b.text_ids[:, :n], text_mask=b.text_mask[:, :n],
                                  text_segment=b.text_segment[:, :n])
    with torch.no_grad():
        assert not torch.allclose(m(b).pred, m(trimmed).pred)
    assert m.summary()["batch_dependent_eval"] is True
    assert create_model("mfon", "synthetic", attn_mask=False).summary()["batch_dependent_eval"] is False


def test_prompt_length_must_match_the_frames(synthetic):
    m = create_model("mfon", "synthetic", vision_seq_len=40)
    with pytest.raises(ValueError, match="vision_seq_len"):
        m(synthetic.train.take(torch.arange(2)))


# -- stages, freezing, gradients, optimiser ----------------------------------------------------
def _prefixes(stage: str) -> tuple[str, ...]:
    if stage in TEACHER_STAGES:
        k = TEACHER_STAGES[stage]
        return (f"teacher.{k}.", f"teacher_head.{k}.")
    return ()


def test_stages_order_settings_and_trainable_sets():
    m = create_model("mfon", "synthetic")
    assert [s.name for s in m.stages()] == ["vision", "audio", "fusion"]
    names = [n for n, _ in m.named_parameters()]
    for s in m.stages():
        with frozen_except(m, s):
            trainable = {n for n, p in m.named_parameters() if p.requires_grad}
            groups = build_optimizer(m).param_groups
        if s.name == "fusion":
            assert trainable == {n for n in names if not n.startswith(("teacher.", "teacher_head."))}
            assert [g["name"] for g in groups] == ["text", "audio", "vision", "other"]
            assert not any(g["amsgrad"] for g in groups) and s.contributions
        else:
            assert trainable == {n for n in names if n.startswith(_prefixes(s.name))}
            assert [g["name"] for g in groups] == [f"teacher_{TEACHER_STAGES[s.name]}"] and groups[0]["amsgrad"]
            assert not s.contributions
    assert all(p.requires_grad for p in m.parameters())  # flags restored
    off = {s.name: s for s in meta_model("mosi").stages()}
    assert [off[k].max_epochs for k in ("vision", "audio", "fusion")] == [25, 25, 25]
    lrs = {g["name"]: (g["lr"], g["weight_decay"]) for g in meta_model("mosi").param_groups()}
    assert lrs == {"text": (5e-5, 1e-3), "audio": (1e-3, 1e-3), "vision": (1e-3, 1e-3), "other": (1e-3, 1e-3),
                   "teacher_v": (1e-3, 1e-3), "teacher_a": (1e-3, 1e-3)}
    lrs = {g["name"]: (g["lr"], g["weight_decay"]) for g in meta_model("mosei").param_groups()}
    assert lrs == {"text": (5e-5, 1e-2), "audio": (1e-3, 1e-3), "vision": (1e-4, 1e-3), "other": (1e-3, 1e-3),
                   "teacher_v": (1e-4, 1e-3), "teacher_a": (1e-4, 1e-3)}
    cfg = meta_model("mosi").cfg
    assert (cfg.batch_size, cfg.grad_accum_steps, cfg.text_input, cfg.text_max_length) == (32, 4, "raw_text", 256)


def test_group_amsgrad_gives_the_codes_pretraining_adam():
    torch.manual_seed(0)
    m = create_model("mfon", "synthetic")
    with frozen_except(m, stage_of(m, "vision")):
        ours = build_optimizer(m)
        params = [p for g in ours.param_groups for p in g["params"]]
        copies = [p.detach().clone().requires_grad_() for p in params]
        ref = torch.optim.Adam(copies, lr=1e-3, weight_decay=1e-3, amsgrad=True)  # Vtrain.py
        for _ in range(3):
            for p, q in zip(params, copies):
                p.grad = torch.randn_like(p)
                q.grad = p.grad.clone()
            ours.step(), ref.step()
        assert all(torch.allclose(p, q) for p, q in zip(params, copies))


@pytest.mark.parametrize("stage", ["vision", "audio", "fusion", None])
def test_gradients_where_they_belong(synthetic, stage):
    torch.manual_seed(0)
    m = create_model("mfon", "synthetic")
    b = synthetic.train.take(torch.arange(6))
    s = stage_of(m, stage) if stage else SimpleNamespace(trainable=None)
    m.stage = stage
    m.train()
    with frozen_except(m, s):
        m.loss(m(b), b)["total"].backward()
    got = {n for n, p in m.named_parameters() if p.grad is not None}
    names = {n for n, _ in m.named_parameters()}
    pooler = {n for n in names if ".pooler." in n}  # BERT's pooler: last_hidden_state only
    if stage in TEACHER_STAGES:
        assert got == {n for n in names if n.startswith(_prefixes(stage))}
    elif stage == "fusion":
        assert got == {n for n in names if not n.startswith(("teacher.", "teacher_head."))} - pooler
    else:  # stage None: fusion with trainable teachers and their pre-training objectives
        assert got == names - pooler


def test_trailing_partial_accumulation_group_is_discarded():
    m = create_model("mfon", "synthetic", grad_accum_steps=4)
    state = SimpleNamespace(data=SimpleNamespace(train=SimpleNamespace(num_batches=lambda bs: 6)))
    assert m.on_epoch_start(0, state) == {"dropped_batches": 2}
    p = next(m.parameters())
    kept = []
    for i in range(6):  # batches 0-3: one step; batches 4, 5: gradients cleared, no step
        p.grad = torch.ones_like(p) if p.grad is None else p.grad + 1
        m.after_backward(i)
        kept.append(p.grad is not None)
        if i == 3:
            p.grad = None  # the trainer's zero_grad after the step
    assert kept == [True, True, True, True, False, False]
    assert m.on_epoch_start(1, state) == {"dropped_batches": 2}  # the count restarts each epoch
    few = SimpleNamespace(data=SimpleNamespace(train=SimpleNamespace(num_batches=lambda bs: 3)))
    assert m.on_epoch_start(0, few) == {}  # fewer batches than one group: not dropped (harness decision)
    m.cfg.drop_partial_accum = False
    assert m.on_epoch_start(0, state) == {}


def test_iemocap_is_unsupported_with_a_reason():
    assert "prompts" in get_model_entry("mfon").unsupported["iemocap"]
    with pytest.raises(ValueError, match="regression-only"):
        create_model("mfon", "synthetic", task="iemocap", n_out=8)


# -- the demo through the staged trainer -------------------------------------------------------
@pytest.mark.slow
def test_demo_trains_through_every_stage_freezing_what_it_should(synthetic):
    data = slice_data(synthetic, 160, 48, 48)  # 5 batches of 32: one group of 2 per step, the 5th dropped
    torch.manual_seed(0)
    model = create_model("mfon", "synthetic", vision_epochs=2, audio_epochs=2, fusion_epochs=3,
                         grad_accum_steps=2, batch_size=32, eval_batch_size=48)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    snaps: list[tuple[str, dict]] = []
    result = train_and_test(model, data, seed=1111, device=torch.device("cpu"), robustness=False,
                            on_epoch=lambda r: snaps.append((r["stage"], {k: v.clone() for k, v in
                                                                          model.state_dict().items()})))
    stages = result["stages"]
    assert [s["name"] for s in stages] == ["vision", "audio", "fusion"]
    assert set(result["time"]["stages_s"]) == {"vision", "audio", "fusion"}
    teacher = lambda k, m: k.startswith((f"teacher.{m}.", f"teacher_head.{m}."))  # noqa: E731
    changed = lambda a, b, keys: {k for k in keys if not torch.equal(a[k], b[k])}  # noqa: E731
    keys = list(initial)
    for stage, snap in snaps:
        if stage == "vision":  # only the vision teacher and its head move
            assert changed(initial, snap, keys) and all(teacher(k, "v") for k in changed(initial, snap, keys))
        if stage == "audio":  # the vision teacher stays at its selected state, the rest at init
            moved = changed(initial, snap, keys)
            assert any(teacher(k, "a") for k in moved) and all(teacher(k, "a") or teacher(k, "v") for k in moved)
    end = model.state_dict()
    fusion_snaps = [s for st, s in snaps if st == "fusion"]
    last_audio = [s for st, s in snaps if st == "audio"]
    for s in fusion_snaps:  # teachers frozen through fusion; the fusion model moves
        assert not changed(s, end, [k for k in keys if k.startswith(("teacher.", "teacher_head."))])
        assert changed(initial, s, [k for k in keys if not k.startswith(("teacher.", "teacher_head."))])
    assert any(not changed(a, end, [k for k in keys if teacher(k, "a")]) for a in last_audio)  # selected audio state
    history = stages[-1]["history"]
    assert all(r["dropped_batches"] == 1 for s in stages for r in s["history"])
    assert history[-1]["train"]["total"] < history[0]["train"]["total"]  # the fusion loss goes down
    assert set(history[0]["train"]) >= {"total", "task", "kd_v", "kd_a", "nce"}
    assert result["model_summary"]["batch_dependent_eval"] is True
    assert set(result["model_summary"]["teacher_valid_MAE"]) == {"vision", "audio"}
    assert result["metrics"]["test"]["MAE"] > 0


@pytest.mark.parametrize("causal", [False, True])
def test_teacher_attn_mask_limits_position_0_to_frame_0(causal):
    """SIMS config vision/audio_attn_mask=True: the teacher's output (position 0) sees frame 0 only;
    MOSI/MOSEI (False): every frame. The SIMS preset sets it, MOSI's does not."""
    torch.manual_seed(0)
    teacher = Teacher(6, 16, 2, 2, 0.0, 16, causal).eval()
    x = torch.randn(2, 9, 6)
    later = x.clone()
    later[:, 5] += 1.0
    same = torch.allclose(teacher(x), teacher(later))
    assert same == causal
    assert get_model_entry("mfon").presets[("sims", "official")].teacher_attn_mask
    assert not get_model_entry("mfon").presets[("mosi", "official")].teacher_attn_mask
