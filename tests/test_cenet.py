"""CENET: MMSA's parameter counts, the embeddings trained without gradient, the padded audio/vision
steps it reads, its three optimiser groups, and the config checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.protocol import Batch
from models.registry import create_model

GOLDEN = Path(__file__).parent / "golden_ref" / "cenet.json"


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "sims", "simsv2"])
def test_parameter_counts_equal_mmsa(dataset: str) -> None:
    """MMSA's CENET built by tools/reference/cenet.py at bert-base shapes on the dataset's widths:
    every parameter, and those its loss reaches (not the embeddings, the pooler, the tag tables)."""
    mmsa = json.loads(GOLDEN.read_text())["mmsa_parameters"][dataset]
    with torch.device("meta"):
        model = create_model("cenet", dataset, "mmsa", text_encoder="bert-base")
    total = sum(p.numel() for p in model.parameters())
    with_grad = sum(p.numel() for n, p in model.named_parameters() if not any(k in n for k in model.no_grad_params))
    assert (total, with_grad) == (mmsa["total"], mmsa["with_grad"])


def _batch(audio_steps: int = 9) -> Batch:
    gen = torch.Generator().manual_seed(0)
    lengths = [6, 8, 3]
    ids = torch.randint(5, 60, (3, 8), generator=gen)
    mask = (torch.arange(8) < torch.tensor(lengths)[:, None]).long()
    return Batch(audio=torch.randn(3, audio_steps, 5, generator=gen), vision=torch.randn(3, 7, 20, generator=gen),
                 audio_lengths=torch.tensor([4, audio_steps, 2]), vision_lengths=torch.tensor([7, 3, 5]),
                 labels=torch.randn(3, generator=gen), index=torch.arange(3),
                 text_ids=ids * mask, text_mask=mask, text_segment=torch.zeros_like(ids))


def _model(**overrides):
    torch.manual_seed(0)
    return create_model("cenet", "synthetic", "demo", text_vocab_size=64, dims=(768, 5, 20), **overrides)


@pytest.mark.parametrize("embeddings_grad", [False, True])
def test_embeddings_train_only_when_switched_on(embeddings_grad: bool) -> None:
    """MMSA computes the embeddings under torch.no_grad(): none of their tables gets a gradient."""
    model = _model(embeddings_grad=embeddings_grad).train()
    batch = _batch()
    model.loss(model(batch), batch)["total"].backward()
    embeddings = dict(model.text.bert.embeddings.named_parameters())
    assert all((p.grad is not None) == embeddings_grad for p in embeddings.values()), sorted(embeddings)
    assert model.text.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    assert all(p.grad is None for p in model.unused_tag_embeddings.parameters())


def test_padded_audio_steps_are_read() -> None:
    """No audio/vision mask, as in the reference: steps after a sample's length move its prediction."""
    model = _model().eval()
    batch, changed = _batch(), _batch()
    changed.audio[0, 4:] += 1.0  # after sample 0's 4 valid steps
    with torch.no_grad():
        before, after = model(batch).pred, model(changed).pred
    assert not torch.allclose(before[0], after[0]) and torch.equal(before[1:], after[1:])


def test_three_optimizer_groups_as_the_trainer() -> None:
    """decay (not bias / LayerNorm, not CE), CE (all of it, with decay), no decay; each parameter once."""
    model = _model(weight_decay=0.5)
    groups = {g["name"]: g for g in model.param_groups()}
    names = {id(p): n for n, p in model.named_parameters()}
    members = {k: {names[id(p)] for p in g["params"]} for k, g in groups.items()}
    assert [groups[k]["weight_decay"] for k in ("decay", "ce", "no_decay")] == [0.5, 0.5, 0.0]
    assert members["ce"] == {n for n in names.values() if n.startswith("ce.")}
    assert "ce.cat_connect.bias" in members["ce"] and "classifier.dense.bias" in members["no_decay"]
    assert "text.bert.encoder.layer.1.output.LayerNorm.weight" in members["no_decay"]
    assert "classifier.out_proj.weight" in members["decay"]
    assert sum(map(len, members.values())) == len(names) and set().union(*members.values()) == set(names.values())


@pytest.mark.parametrize("key,value", [("injection_index", 2), ("text_attention", "flash")])
def test_bad_config_is_named(key: str, value) -> None:
    with pytest.raises(ValueError, match=f"config key '{key}'"):
        _model(**{key: value})
