"""KEBR: parameter counts (released code; PaSE's figure recorded, not reached), the shared TCMF
layer, the MCC similarities and losses against direct per-sample computations, gradients, the
pre-training stage (absent by default, its error message, a run on a tiny unlabeled set), the
sentiment-word masking, and a short demo training."""

import dataclasses
import math
import pickle
import random

import pytest
import torch
import torch.nn.functional as F

from bench.schedule import Scheduler
from bench.train import build_optimizer, train_and_test
from models import create_model, get_model_entry
from models.base import count_parameters
from bench.data.kebr_pretrain import PretrainDataError, mask_sentiment_word
from bench.data.stage_data import load_stage_data
from models.kebr import mcc_finetune, mcc_similarities, mcc_single
from models.layers.text_encoder import BERT_BASE_PARAMS
from tests.conftest import slice_data, train_demo

NATIVE = (768, 33, 709)  # main.py:42-44: librosa 33-d audio, OpenFace 709-d video
PASE_SUPPLEMENT = 127_467_631  # published figure; the released code gives 111,445,453


def meta_model(dataset: str = "mosi", **over):
    with torch.device("meta"):
        return create_model("kebr", dataset, "official", text_encoder="bert-base", **over)


def n(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- parameter counts ------------------------------------------------------------------------
@pytest.mark.parametrize("dataset,dims,total", [
    ("mosi", NATIVE, 111_445_453),  # as released
    ("mosei", NATIVE, 111_445_453),  # the code has no per-dataset settings
    ("mosi", None, 111_076_915),  # MMSA MOSI widths 5/20 (the official preset)
    ("mosei", None, 111_120_091),  # MMSA MOSEI widths 74/35
])
def test_parameter_counts(dataset, dims, total):
    model = meta_model(dataset, **({"dims": dims} if dims else {}))
    assert count_parameters(model) == {"total": total, "trainable": total}
    d_a, d_v = model.cfg.dims[1:]
    assert total == 111_064_065 + 514 * (d_a + d_v) != PASE_SUPPLEMENT


def test_breakdown_and_variants():
    m = meta_model(dims=NATIVE)
    assert n(m.text) == BERT_BASE_PARAMS  # AutoModel: the pooler is built (never used)
    assert n(m.fusion) == 1_766_092 and n(m.head) == 197_121 and m.fitter is None
    assert n(meta_model(dims=NATIVE, shared_layer=False)) == 116_743_729  # 4 distinct layers
    assert n(meta_model(dims=NATIVE, pretrain_dir="/nowhere")) == 111_445_453 + 197_121  # + the fitter


# -- the shared layer ------------------------------------------------------------------------
def test_shared_layer_is_one_layer_applied_four_times(synthetic):
    torch.manual_seed(0)
    model = create_model("kebr", "synthetic")
    layers = model.fusion.layers
    assert len(layers) == 4 and all(layer is layers[0] for layer in layers)
    one = list(layers[0].parameters())
    assert all(p is q for layer in layers for p, q in zip(layer.parameters(), one))
    assert n(model.fusion) == n(layers[0]) and len(list(model.fusion.parameters())) == len(one)
    calls = []
    layers[0].register_forward_hook(lambda *_: calls.append(1))
    model(synthetic.train.take(torch.arange(2)))
    assert len(calls) == 4
    unshared = create_model("kebr", "synthetic", shared_layer=False).fusion.layers
    assert len({id(layer) for layer in unshared}) == 4 and n(unshared) == 4 * n(layers[0])


# -- MCC: direct computations ----------------------------------------------------------------
def direct_similarities(fused, audio, video, quirk=True):
    """models.py PredictModel.forward / matrix_alignment / cosine_similarity, written out:
    flatten, normalise, tile (with the video-slot quirk), zero-pad, then a per-sample loop."""
    t, a, v = (F.normalize(torch.flatten(x, 1).detach().double(), dim=1) for x in (fused, audio, video))
    top = max(t.shape[1], a.shape[1], v.shape[1])
    if top // t.shape[1] - 1 > 0:
        t = t.repeat(1, top // t.shape[1])
    if top // a.shape[1] - 1 > 0:
        a = a.repeat(1, top // a.shape[1])
    if top // v.shape[1] - 1 > 0:
        v = (a if quirk else v).repeat(1, top // v.shape[1])
    top = max(t.shape[1], a.shape[1], v.shape[1])
    t, a, v = (F.pad(x, (0, top - x.shape[1])) for x in (t, a, v))
    cos = lambda x, y: [float(torch.dot(x[i], y[i]) / (x[i].norm() * y[i].norm())) for i in range(x.shape[0])]  # noqa: E731
    return cos(a, t), cos(v, t)


@pytest.mark.parametrize("t_len,audio_shape,video_shape", [
    (39, (400, 33), (55, 709)),  # the code's widths: video widest, no tiling of video
    (39, (375, 5), (500, 20)),  # MMSA MOSI unaligned: video narrow, the quirk fires
    (39, (500, 74), (500, 35)),  # MMSA MOSEI unaligned: audio widest, the quirk fires
    (6, (7, 3), (9, 2)),  # text widest, both tiled
])
@pytest.mark.parametrize("quirk", [True, False])
def test_similarities_match_direct_computation(t_len, audio_shape, video_shape, quirk):
    torch.manual_seed(1)
    fused = torch.randn(4, t_len, 16 if t_len < 39 else 768)
    audio, video = torch.randn(4, *audio_shape), torch.randn(4, *video_shape)
    a, b = mcc_similarities(fused, audio, video, video_tile_quirk=quirk, eps=0.0)
    da, db = direct_similarities(fused, audio, video, quirk)
    assert a.tolist() == pytest.approx(da, abs=1e-6) and b.tolist() == pytest.approx(db, abs=1e-6)


def test_quirk_puts_audio_in_the_video_slot():
    torch.manual_seed(2)
    fused, audio, video = torch.randn(3, 6, 16), torch.randn(3, 7, 3), torch.randn(3, 9, 2)
    _, b = mcc_similarities(fused, audio, video, video_tile_quirk=True)
    _, b2 = mcc_similarities(fused, audio, torch.randn_like(video), video_tile_quirk=True)
    assert torch.equal(b, b2)  # video never enters b with the quirk on these widths
    assert not torch.equal(mcc_similarities(fused, audio, video, video_tile_quirk=False)[1], b)


def test_zero_input_gives_nan_only_without_eps():
    fused, audio, video = torch.randn(2, 4, 8), torch.zeros(2, 5, 3), torch.randn(2, 5, 2)
    assert torch.isnan(mcc_similarities(fused, audio, video, eps=0.0)[0]).all()  # the code's 0/0
    assert torch.equal(mcc_similarities(fused, audio, video)[0], torch.zeros(2))


def test_mcc_losses_match_direct_formulas():
    a = torch.tensor([0.05, 0.3, -0.2, 0.1, 0.0, 0.7])
    b = torch.tensor([0.15, 0.1, 0.4, -0.01, 0.0, 0.9])
    theta = 0.4
    want = [abs(math.cos(math.pi * ((x + y) / 2 + theta) * math.exp(abs(x - y) * 0.5))) if x >= 0 and y >= 0
            else 1 + abs(x) + abs(y) for x, y in zip(a.tolist(), b.tolist())]
    assert mcc_finetune(a, b, theta).tolist() == pytest.approx(want, abs=1e-6)
    m = ((a + b) / 2).tolist()
    assert mcc_single((a + b) / 2, 0.25).tolist() == pytest.approx(
        [1 - s if s < 0 else abs(math.cos(math.pi * (s + 0.25))) for s in m], abs=1e-6)
    assert float(mcc_finetune(torch.tensor([0.1]), torch.tensor([0.1]), theta)) == pytest.approx(0, abs=1e-6)


def test_model_loss_equals_l1_plus_direct_mcc(synthetic):
    torch.manual_seed(0)
    model = create_model("kebr", "synthetic").eval()
    batch = synthetic.train.take(torch.arange(5))
    with torch.no_grad():
        out = model(batch)
        parts = model.loss(out, batch)
    fused = out.extras["fused"]
    assert fused.shape[1] == 39  # the code's max_length
    da, db = direct_similarities(fused, batch.audio, batch.vision)
    mcc = sum(abs(math.cos(math.pi * ((x + y) / 2 + 0.4) * math.exp(abs(x - y) / 2))) if x >= 0 and y >= 0
              else 1 + abs(x) + abs(y) for x, y in zip(da, db)) / 5
    l1 = (out.pred.reshape(-1) - batch.labels).abs().mean()
    assert float(parts["mcc"]) == pytest.approx(mcc, abs=1e-5)
    assert float(parts["total"]) == pytest.approx(float(l1) + mcc, abs=1e-5)


def test_mean_over_all_positions_and_truncation(synthetic):
    torch.manual_seed(0)
    model = create_model("kebr", "synthetic").eval()
    batch = synthetic.train.take(torch.arange(4))
    long = dataclasses.replace(batch, text_mask=torch.ones_like(batch.text_mask))
    ids, mask, _ = model._text(long.text_ids, long.text_mask, long.text_segment, 102)
    assert ids.shape == (4, 39) and (ids[:, -1] == 102).all()  # tokenizer truncation keeps [SEP] last
    short_ids, _, _ = model._text(batch.text_ids, batch.text_mask, batch.text_segment, 102)
    assert torch.equal(short_ids, batch.text_ids[:, :39])  # nothing past 39 attended: untouched
    out = model(batch)
    assert torch.allclose(out.features["fused"], out.extras["fused"].mean(1))  # padding included


# -- gradients ------------------------------------------------------------------------------
def test_mcc_gradients_reach_only_text_and_fusion(synthetic):
    torch.manual_seed(0)
    model = create_model("kebr", "synthetic").train()
    batch = synthetic.train.take(torch.arange(6))
    model.loss(model(batch), batch)["mcc"].backward()
    assert all(p.grad is None for p in model.head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.text.bert.encoder.parameters())
    layer = model.fusion.layers[0]
    for p in [*layer.fc.parameters(), *layer.cma_a.other_side(), *layer.cma_v.q.parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.loss(model(batch), batch)["task"].backward()
    assert all(p.grad is not None for p in model.head.parameters())


def test_param_groups_and_cosine_schedule():
    model = create_model("kebr", "mosi", "official", text_encoder="tiny")
    groups = {g["name"]: g for g in model.param_groups()}
    assert (groups["bert"]["lr"], groups["fusion"]["lr"], groups["head"]["lr"]) == (5e-6, 5e-6, 1e-4)
    opt = build_optimizer(model)
    schedule = model.lr_schedule()
    assert (schedule.kind, schedule.epochs, schedule.record_factor) == ("cosine_epochs", 20, True)
    scheduler = Scheduler(schedule, opt, steps_per_epoch=3, max_epochs=45)
    factors = [scheduler.start_epoch(e)["lr_factor"] for e in (0, 10, 20, 40)]
    assert factors == pytest.approx([1.0, 0.5, 0.0, 1.0])  # CosineAnnealingLR(T_max=20) re-rises
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-6)  # the trainer set base_lr x factor(40) = 1
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0), 20)
    lrs = []
    for _ in range(45):
        lrs.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    assert [scheduler.factor(e, 0) for e in range(45)] == pytest.approx(lrs, abs=1e-9)
    assert model.stages() == [] and create_model("kebr", "mosi", "official", text_encoder="tiny",
                                                   lr_schedule="none").lr_schedule().kind is None


# -- pre-training stage ----------------------------------------------------------------------
def test_no_pretraining_stage_by_default():
    assert create_model("kebr", "synthetic").stages() == []


def test_pretraining_without_data_names_what_it_needs(tmp_path):
    model = create_model("kebr", "synthetic", pretrain_dir=str(tmp_path / "voxceleb"))
    with pytest.raises(PretrainDataError) as err:
        load_stage_data(model.stages()[0].data, model.cfg)
    msg = str(err.value)
    for needed in ("EmoVoxCeleb", "VoxCeleb1", "emovoxceleb.pkl", "vader_lexicon.txt", "raw_text", "audio",
                   "video", "KEBR (no pre-training)"):
        assert needed in msg


def test_sentiment_word_masking():
    lex = {"good": 1.9, "bad": -2.5, "awful": -2.5}
    rng = random.Random(0)
    toks, target, pos = mask_sentiment_word(["bad", "is", "not", "good", "bad", "awful"], lex, rng)
    assert toks == ["[MASK]", "is", "not", "good", "[MASK]", "awful"]  # first max |valence|, every occurrence
    assert (target, pos) == (round(-2.5 * 0.75, 3), 1)
    toks, target, pos = mask_sentiment_word(["x", "y"], lex, rng)
    assert target == 0.0 and toks.count("[MASK]") == 1 and toks[pos - 1] == "[MASK]"
    toks, target, pos = mask_sentiment_word(["w"] * 40 + ["good"], lex, rng)
    assert len(toks) == 21 and pos == 21 and toks[20] == "[MASK]"  # cropped to [idx-20, idx+19]


def _unlabeled_set(tmp_path, n=40):
    from transformers import BertTokenizer

    words = ["good", "bad", "happy", "movie", "the", "is", "was", "sad"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(str(tmp_path / "tok"))
    rng = random.Random(0)
    data = {"raw_text": [" ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) for _ in range(n)],
            "audio": torch.randn(n, 12, 5).numpy(), "video": torch.randn(n, 10, 20).numpy()}
    (tmp_path / "set").mkdir()
    with open(tmp_path / "set" / "emovoxceleb.pkl", "wb") as f:
        pickle.dump(data, f)
    (tmp_path / "set" / "vader_lexicon.txt").write_text("good\t1.9\t0.9\t[]\nbad\t-2.5\t0.8\t[]\nsad\t-2.1\t0.7\t[]\n")
    return str(tmp_path / "set"), str(tmp_path / "tok")


def test_pretrain_batches_mask_the_strongest_lexicon_word_and_target_its_valence(tmp_path):
    pre_dir, tok = _unlabeled_set(tmp_path)
    model = create_model("kebr", "synthetic", pretrain_dir=pre_dir, pretrain_tokenizer=tok)
    clips = load_stage_data(model.stages()[0].data, model.cfg)
    pb = next(clips.batches(8, seed=1))
    rows = torch.randperm(40, generator=torch.Generator().manual_seed(1))[:8].tolist()
    lex = {"good": 1.9, "bad": -2.5, "sad": -2.1}
    for r, i in enumerate(rows):
        found = [t for t in clips.tokens[i] if t in lex]
        want = round(0.75 * lex[max(found, key=lambda t: abs(lex[t]))], 3) if found else 0.0
        assert float(pb.target[r]) == pytest.approx(want)
        assert int(pb.ids[r, pb.position[r]]) == clips.tokenizer.mask_token_id
    assert pb.sep == clips.tokenizer.sep_token_id and pb.audio.shape[0] == 8


def test_pretraining_stage_runs_on_an_unlabeled_set(tmp_path, synthetic):
    pre_dir, tok = _unlabeled_set(tmp_path)
    torch.manual_seed(0)
    model = create_model("kebr", "synthetic", pretrain_dir=pre_dir, pretrain_tokenizer=tok, max_epochs=1,
                         pretrain_batch_size=8)
    bert_before = {k: v.clone() for k, v in model.text.state_dict().items()}
    fitter_before = [p.clone() for p in model.fitter.parameters()]
    stages = model.stages()
    assert [s.name for s in stages] == ["pretrain", "finetune"]
    seen = {}

    def on_epoch(record):
        if record["stage"] == "pretrain":
            seen["bert_same"] = all(torch.equal(v, bert_before[k]) for k, v in model.text.state_dict().items())
    res = train_and_test(model, slice_data(synthetic, 16, 16, 16), seed=1, device=torch.device("cpu"),
                         contributions=False, robustness=False, on_epoch=on_epoch)
    pre, fine = res["stages"]
    assert seen["bert_same"]  # BERT frozen in pre-training (pretrain.py:59-60)
    assert pre["params_trainable"] == n(model.fusion) + n(model.fitter) and pre["info"] == {"unlabeled_clips": 40}
    assert not all(torch.equal(p, q) for p, q in zip(model.fitter.parameters(), fitter_before))
    assert fine["params_trainable"] == n(model) - n(model.fitter)
    assert math.isfinite(pre["history"][0]["train"]["total"]) and "mcc" in pre["history"][0]["train"]


# -- presets, demo ---------------------------------------------------------------------------
def test_presets_and_registry():
    entry = get_model_entry("kebr")
    assert set(entry.presets) == {("mosi", "official"), ("mosei", "official"), ("iemocap", "official"),
                                  ("sims", "official"), ("simsv2", "official"), ("synthetic", "demo")}
    assert "iemocap" not in entry.unsupported
    iemocap, mosei = entry.presets[("iemocap", "official")], entry.presets[("mosei", "official")]
    assert (iemocap.task, iemocap.n_out) == ("iemocap", 8)  # harness preset: MOSEI's with 4 x 2 logits
    assert dataclasses.replace(iemocap, task="regression", n_out=1, dataset="mosei") == dataclasses.replace(
        mosei, dataset="mosei")
    with pytest.raises(ValueError, match="pre-training regresses a valence score"):
        create_model("kebr", "iemocap", "official", text_encoder="tiny", pretrain_dir="/nowhere")
    for cfg in entry.presets.values():
        assert cfg.text_input == "ids" and cfg.dims_from_data and cfg.pretrain_dir is None
    mosi = entry.presets[("mosi", "official")]
    assert (mosi.max_epochs, mosi.early_stop_patience, mosi.batch_size, mosi.lr) == (200, None, 32, 1e-4)
    assert entry.presets[("synthetic", "demo")].dims == (768, 5, 20)


@pytest.mark.slow
def test_demo_trains_and_loss_goes_down(synthetic):
    torch.manual_seed(0)
    model = create_model("kebr", "synthetic", max_epochs=3, early_stop_patience=None)
    res = train_demo(model, synthetic, (96, 32, 32))
    assert math.isfinite(res["metrics"]["test"]["MAE"]) and "stages" not in res
