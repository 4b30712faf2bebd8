"""TFN, LMF, MTFN, MLMF beyond the goldens: MMSA's parameter counts, MMSA's optimizer groups
(LMF's untrained fusion weights), and the multi-task heads' labels."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from models.protocol import Batch
from models.registry import create_model

GOLDEN_DIR = Path(__file__).parent / "golden_ref"
NAMES = ("tfn", "lmf", "mtfn", "mlmf")


def golden_model_and_batch(name: str):
    """The model in its golden's (narrow) configuration and the golden's batch."""
    from safetensors.torch import load_file

    cfg = json.loads((GOLDEN_DIR / f"{name}.json").read_text())["msabench"]
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["overrides"].items()}
    tensors = load_file(str(GOLDEN_DIR / f"{name}.safetensors"))
    batch = Batch(**{k[len("batch/"):]: v for k, v in tensors.items() if k.startswith("batch/")})
    return create_model(name, cfg["dataset"], cfg["preset"], **overrides), batch


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_are_mmsa_s(name):
    """The golden's metadata holds the counts of MMSA's own model built in each configuration."""
    counts = json.loads((GOLDEN_DIR / f"{name}.json").read_text())["mmsa_params"]
    assert counts, f"golden_ref/{name}.json has no MMSA parameter counts"
    for dataset, want in counts.items():
        model = create_model(name, dataset)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert (total, trainable) == (want["total"], want["count_parameters"]), (name, dataset)


@pytest.mark.parametrize("name", ["lmf", "mlmf"])
@pytest.mark.parametrize("train_fusion_weights", [False, True])
def test_lmf_fusion_weights_train_only_when_asked(name, train_fusion_weights):
    """MMSA's Adam leaves fusion_weights/bias out (LMF) or at lr 0 (MLMF): one step moves the
    factors but not them, unless train_fusion_weights."""
    model, batch = golden_model_and_batch(name)
    model.cfg.train_fusion_weights = train_fusion_weights
    groups = model.param_groups()
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == sum(1 for p in model.parameters() if p.requires_grad)
    before = {n: p.detach().clone() for n, p in model.fusion.named_parameters()}
    optimizer = torch.optim.Adam([{k: v for k, v in g.items() if k != "name"} for g in groups])
    model.train()
    model(batch).pred.sum().backward()  # every fusion tensor gets a gradient (the L1 loss's bias gradient, a sum of signs, can be 0)
    optimizer.step()
    moved = {n for n, p in model.fusion.named_parameters() if not torch.equal(p, before[n])}
    fusion = {"fusion_weights", "fusion_bias"}
    assert moved == {"factor.t", "factor.a", "factor.v"} | (fusion if train_fusion_weights else set())


@pytest.mark.parametrize("name, decays", [("mtfn", (1e-3, 1e-4, 1e-5, 0.0)), ("mlmf", (1e-4, 0.0, 1e-4, 5e-3))])
def test_multitask_weight_decay_per_subnet(name, decays):
    """MMSA's MTFN/MLMF trainers: each sub-network its own decay; the heads MTFN none, MLMF weight_decay."""
    groups = {g["name"]: g for g in create_model(name, "sims").param_groups()}
    got = tuple(groups[k]["weight_decay"] for k in ("text_subnet", "audio_subnet", "video_subnet", "other"))
    assert got == decays


@pytest.mark.parametrize("name", ["mtfn", "mlmf"])
def test_heads_learn_unimodal_labels_when_the_batch_has_them(name):
    model, batch = golden_model_and_batch(name)
    model.train()
    out = model(batch)
    parts = model.loss(out, batch)
    assert model.summary()["unimodal_labels"].startswith("the dataset's unimodal labels")
    for m in "tav":
        want = torch.nn.functional.l1_loss(out.unimodal[m].reshape(-1), getattr(batch, f"labels_{m}"))
        assert torch.allclose(parts[m], want), m
    plain = dataclasses.replace(batch, labels_t=None, labels_a=None, labels_v=None)
    parts = model.loss(out, plain)
    assert model.summary()["unimodal_labels"].startswith("none in the data")
    for m in "tav":
        assert torch.allclose(parts[m], torch.nn.functional.l1_loss(out.unimodal[m].reshape(-1), batch.labels)), m


def test_packed_text_stops_at_the_last_valid_step():
    """`packed_text`: each sample's text encoding is that of its unpadded sequence; off (MMSA),
    the LSTM also runs over the padding."""
    from models.layers.mmsa_subnets import TextSubNet

    torch.manual_seed(0)
    net = TextSubNet(6, 5, 3).eval()
    lengths = torch.tensor([4, 7, 2])
    x = torch.randn(3, 7, 6) * (torch.arange(7)[None, :, None] < lengths[:, None, None])
    alone = torch.cat([net(x[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
    assert torch.allclose(net(x, lengths), alone, atol=1e-6)
    assert not torch.allclose(net(x), alone, atol=1e-4)
