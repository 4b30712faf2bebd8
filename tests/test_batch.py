"""Batch and the one modality-masking rule."""

import pytest
import torch


def test_without_text_ids_gives_empty_sentence(synthetic):
    b = synthetic.train.take(torch.arange(4))
    m = b.without({"t"})
    cls, sep, pad = b.special_ids
    assert (m.text_ids[:, 0] == cls).all() and (m.text_ids[:, 1] == sep).all() and (m.text_ids[:, 2:] == pad).all()
    assert (m.text_mask.sum(1) == 2).all() and (m.text_segment == 0).all()
    assert torch.count_nonzero(m.text_feats) == 0
    # other modalities and lengths untouched; the original batch is not modified
    assert torch.equal(m.audio, b.audio) and torch.equal(m.vision, b.vision)
    assert torch.equal(m.audio_lengths, b.audio_lengths) and b.text_mask.sum() > 8


def test_without_audio_vision_zeros_keep_lengths(synthetic):
    b = synthetic.valid.take(torch.arange(5))
    m = b.without(["a", "v"])
    assert torch.count_nonzero(m.audio) == 0 and torch.count_nonzero(m.vision) == 0
    assert torch.equal(m.audio_lengths, b.audio_lengths) and torch.equal(m.vision_lengths, b.vision_lengths)
    assert torch.equal(m.text_ids, b.text_ids) and m.masked == frozenset({"a", "v"})
    assert torch.count_nonzero(b.audio) > 0


def test_without_unknown_modality_raises(synthetic):
    with pytest.raises(ValueError, match="unknown modalities"):
        synthetic.train.take(torch.arange(2)).without({"x"})


def test_batches_cover_split_in_order_and_shuffle_is_seeded(synthetic):
    split = synthetic.valid
    seen = torch.cat([b.index for b in split.batches(50)])
    assert torch.equal(seen, torch.arange(len(split)))
    a = torch.cat([b.index for b in split.batches(50, True, torch.Generator().manual_seed(3))])
    b = torch.cat([b.index for b in split.batches(50, True, torch.Generator().manual_seed(3))])
    assert torch.equal(a, b) and not torch.equal(a, seen) and torch.equal(a.sort().values, seen)
