"""MMIM: MMSA's parameter count, its two training phases, the entropy memory's batch rule."""

import json
from pathlib import Path

import torch

from models import create_model
from models.base import INHERIT
from models.protocol import Batch

GOLDEN = Path(__file__).parent / "golden_ref" / "mmim.json"


def test_parameter_counts_equal_mmsa():
    """MMSA's MMIM built at its MOSI size by tools/reference/mmim.py (bert-base, 768/5/20)."""
    mmsa = json.loads(GOLDEN.read_text())["mmsa_parameters_mosi"]
    with torch.device("meta"):
        model = create_model("mmim", "mosi", "mmsa", text_encoder="bert-base")
    total = sum(p.numel() for p in model.parameters())
    with_grad = sum(p.numel() for n, p in model.named_parameters() if "pooler." not in n)  # entropy_prj gets one (H)
    assert (total, with_grad) == (mmsa["total"], mmsa["with_grad"])


def _model(**over):
    torch.manual_seed(0)
    return create_model("mmim", "synthetic", "demo", text_vocab_size=64, **over)


def test_phases_as_mmsa_trains():
    """train_mmilb steps the MMILB networks only (MOSEI: half the batches), train_others the rest."""
    model = _model()
    mmilb, main = model.phases()
    ids = lambda groups: {id(p) for g in groups for p in g["params"]}  # noqa: E731
    assert ids(mmilb.param_groups()) == {id(p) for p in model.mi.parameters()}
    assert ids(main.param_groups()) | ids(mmilb.param_groups()) == {id(p) for p in model.parameters()}
    assert not ids(main.param_groups()) & ids(mmilb.param_groups())
    assert mmilb.schedule.kind is None and main.schedule is INHERIT  # constant lr | the config's plateau
    assert create_model("mmim", "mosei", "mmsa", text_encoder="tiny").phases()[0].fraction == 0.5
    assert [p.name for p in _model(contrast=False).phases()] == ["main"]


def _batch(seed: int) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    mask = (torch.arange(8) < torch.tensor([5, 7, 3, 8, 6, 4, 8, 2])[:, None]).long()
    return Batch(audio=torch.randn(8, 9, 5, generator=gen), vision=torch.randn(8, 9, 20, generator=gen),
                 audio_lengths=torch.full((8,), 9), vision_lengths=torch.full((8,), 9),
                 labels=torch.tensor([1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5]), index=torch.arange(8),
                 text_ids=torch.randint(5, 60, (8, 8), generator=gen) * mask, text_mask=mask,
                 text_segment=torch.zeros(8, 8, dtype=torch.long))


def test_entropy_from_the_third_batch_of_each_epoch():
    """train_others: H joins the loss once the memory holds mem_size earlier batches and the batch
    index exceeds mem_size; the memory restarts every epoch; eval and the mmilb phase leave it alone."""
    model = _model().train()
    has_h = []
    for epoch in range(2):
        model.on_epoch_start(epoch, None)
        for i in range(4):
            b = _batch(i)
            has_h.append("H" in model.loss(model(b), b))
    assert has_h == [False, False, True, True] * 2
    before = model.batch_in_epoch
    model.eval()
    b = _batch(9)
    assert "H" not in model.loss(model(b), b) and model.batch_in_epoch == before
    model.train()
    model.train_phase = "mmilb"
    parts = model.loss(model(b), b)
    assert set(parts) == {"total", "lld"} and torch.equal(parts["total"], -parts["lld"])
    assert model.batch_in_epoch == before
