"""The embedded synthetic dataset: shapes, determinism, label grid, planted signal."""

import numpy as np
import torch

from bench.data import load_dataset
from bench.data.synthetic import _generate


def test_shapes_and_splits(synthetic):
    assert (len(synthetic.train), len(synthetic.valid), len(synthetic.test)) == (1284, 229, 686)
    t = synthetic.train.tensors
    assert t["text_ids"].shape == (1284, 50) and t["text_ids"].dtype == torch.int64
    assert t["text_feats"].shape == (1284, 50, 768)
    assert t["audio"].shape == (1284, 50, 5) and t["vision"].shape == (1284, 50, 20)
    assert int(t["text_ids"].max()) < synthetic.info.vocab_size and synthetic.info.vocab_size >= 1000
    assert ((t["audio_lengths"] >= 1) & (t["audio_lengths"] <= 50)).all()
    # padding beyond the true length is zero
    i = int(torch.argmin(t["audio_lengths"]))
    assert torch.count_nonzero(t["audio"][i, t["audio_lengths"][i]:]) == 0
    assert (t["text_ids"][:, 0] == 101).all()
    assert len(set(synthetic.train.ids) & set(synthetic.test.ids)) == 0


def test_labels_on_mosi_grid_with_zeros(synthetic):
    y = torch.cat([synthetic.train.labels, synthetic.valid.labels, synthetic.test.labels]).numpy().astype(float)
    assert y.min() >= -3 and y.max() <= 3
    assert np.allclose(np.round(y * 5), y * 5, atol=1e-5)
    assert 0.01 < np.mean(y == 0) < 0.15


def test_deterministic_from_seed():
    a = _generate.__wrapped__(0)
    b = _generate.__wrapped__(0)
    c = _generate.__wrapped__(1)
    assert torch.equal(a.train.tensors["audio"], b.train.tensors["audio"])
    assert torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.test.labels, c.test.labels)
    assert load_dataset("synthetic") is load_dataset("synthetic", data_seed=0)  # cached


def test_planted_strengths_text_audio_vision(synthetic):
    """Simple per-modality readouts correlate with the label in the planted order."""
    t = synthetic.train.tensors
    y = synthetic.train.labels.numpy()

    def corr(x):
        return abs(np.corrcoef(x, y)[0, 1])

    def pooled(key, lengths):
        x = t[key].sum(1) / t[lengths][:, None]
        # best single linear readout (least squares) of the pooled sequence
        w, *_ = np.linalg.lstsq(x.numpy(), y, rcond=None)
        return x.numpy() @ w

    text = (t["text_feats"].sum(1) / t["text_lengths"][:, None]).numpy()
    w, *_ = np.linalg.lstsq(text, y, rcond=None)
    r_t, r_a, r_v = corr(text @ w), corr(pooled("audio", "audio_lengths")), corr(pooled("vision", "vision_lengths"))
    assert r_t > r_a > r_v > 0.1
