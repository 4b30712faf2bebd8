"""EF-LSTM, LF-DNN, MLF-DNN, MFN, Graph-MFN: what the goldens do not reach (their MOSI/SIMS
forward passes are proven equal to MMSA 2.2.1 in tests/test_reference_equivalence.py)."""

import pytest
import torch

from models import create_model
from models.layers.mmsa_align import align_to_text, avg_pool_align, time_mean
from models.protocol import Batch


def test_avg_pool_align_is_mmsa_strided_pooling():
    """AMIO avg_pool, T = 5 -> 2: padded with the last step to 6 rows, viewed (3, 2): step l averages
    rows l, l + 2, l + 4 (not consecutive windows)."""
    x = torch.arange(5.0).view(1, 5, 1)  # rows 0..4, padded -> 0 1 2 3 4 4
    assert avg_pool_align(x, 2).flatten().tolist() == pytest.approx([(0 + 2 + 4) / 3, (1 + 3 + 4) / 3])
    assert avg_pool_align(torch.arange(6.0).view(1, 6, 1), 2).flatten().tolist() == [2.0, 3.0]  # no padding
    assert torch.equal(avg_pool_align(x, 5), x)


def test_a_time_mean_is_repeated_at_every_text_step():
    """need_normalized + AMIO (MFN on MOSI): a (B, 1, d) average becomes the same vector at each step."""
    text, audio = torch.zeros(2, 4, 3), torch.randn(2, 1, 5)
    _, aligned, _ = align_to_text(text, audio, torch.randn(2, 1, 2))
    assert aligned.shape == (2, 4, 5) and torch.equal(aligned, audio.expand(2, 4, 5))


def test_time_mean_counts_padding_steps():
    """MMSA's __normalize averages over the padded length, zeros included (not over the valid steps)."""
    x = torch.tensor([[[2.0], [4.0], [0.0], [0.0]]])
    assert time_mean(x).flatten().tolist() == [1.5]


def _batch(n: int = 6, unimodal: bool = False) -> Batch:
    g = torch.Generator().manual_seed(0)
    extra = {f"labels_{m}": torch.randn(n, generator=g) for m in "tav"} if unimodal else {}
    return Batch(audio=torch.randn(n, 7, 5, generator=g), vision=torch.randn(n, 7, 20, generator=g),
                 audio_lengths=torch.full((n,), 7), vision_lengths=torch.full((n,), 7),
                 labels=torch.randn(n, generator=g), index=torch.arange(n),
                 text_feats=torch.randn(n, 7, 768, generator=g), text_lengths=torch.full((n,), 7), **extra)


@pytest.mark.parametrize("unimodal", [True, False])
def test_mlf_dnn_heads_learn_unimodal_labels_when_the_batch_has_them(unimodal):
    model = create_model("mlf_dnn", "synthetic", "demo")
    batch = _batch(unimodal=unimodal)
    out = model(batch)
    parts = model.loss(out, batch)
    for m in "tav":
        target = getattr(batch, f"labels_{m}") if unimodal else batch.labels
        assert torch.allclose(parts[m], (out.unimodal[m].flatten() - target).abs().mean())
    cfg = model.cfg
    weighted = cfg.weight_m * parts["task"] + cfg.weight_t * parts["t"] + cfg.weight_a * parts["a"] + cfg.weight_v * parts["v"]
    assert torch.allclose(parts["total"], weighted)
    assert model.summary() == {"unimodal_labels": unimodal}


def test_mlf_dnn_subnets_have_mmsa_weight_decays():
    model = create_model("mlf_dnn", "sims", "mmsa")
    decay = {g["name"]: g["weight_decay"] for g in model.param_groups()}
    assert decay == {"text": 1e-4, "audio": 1e-3, "video": 1e-4, "other": 0.0}  # config_regression.json mlf_dnn sims
    assert sum(len(g["params"]) for g in model.param_groups()) == len(list(model.parameters()))


def test_graph_mfn_vertex_networks_are_untrained_unless_asked():
    """MMSA's pair/triple vertex networks sit in a plain dict: not parameters. msabench: buffers
    by default, parameters with train_dfg_nodes=true."""
    fixed = create_model("graph_mfn", "mosi", "mmsa")
    assert not [n for n, _ in fixed.named_parameters() if ".networks." in n]
    assert [n for n, _ in fixed.named_buffers() if ".networks." in n]
    trained = create_model("graph_mfn", "mosi", "mmsa", train_dfg_nodes=True)
    extra = sum(b.numel() for n, b in fixed.named_buffers() if ".networks." in n)
    assert sum(p.numel() for p in trained.parameters()) == sum(p.numel() for p in fixed.parameters()) + extra


def test_ef_lstm_names_seq_len_when_the_text_length_differs():
    model = create_model("ef_lstm", "synthetic", "demo")
    with pytest.raises(ValueError, match="seq_len=50.*--set seq_len=7"):
        model(_batch())
