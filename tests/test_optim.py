"""bench/optim.py: the transformers-style AdamW against a hand computation of its update and of
torch's, where the two differ (tiny gradients after a reset) and agree (eps 0, no decay), and
which optimizer each model's presets and stages build (the reference code's choice)."""

from __future__ import annotations

import math

import pytest
import torch

from bench.optim import OPTIMIZERS, AdamWHF, make_optimizer
from bench.train import _StageSettings, build_optimizer
from models import create_model
from models.base import INHERIT
from models.registry import get_model_entry, list_models, resolve_config

B1, B2 = 0.9, 0.999


def hand_hf(p: float, grads: list[float], lr: float, eps: float, wd: float, correct_bias: bool = True) -> float:
    """transformers 4.x AdamW.step, written out: eps on sqrt(v), the bias corrections in the step
    size, decay of the updated parameter."""
    m = v = 0.0
    for t, g in enumerate(grads, 1):
        m, v = B1 * m + (1 - B1) * g, B2 * v + (1 - B2) * g * g
        step = lr * math.sqrt(1 - B2**t) / (1 - B1**t) if correct_bias else lr
        p -= step * m / (math.sqrt(v) + eps)
        p -= lr * wd * p
    return p


def hand_torch(p: float, grads: list[float], lr: float, eps: float, wd: float) -> float:
    """torch.optim.AdamW.step, written out: decay first, eps on the bias-corrected sqrt(v)."""
    m = v = 0.0
    for t, g in enumerate(grads, 1):
        p *= 1 - lr * wd
        m, v = B1 * m + (1 - B1) * g, B2 * v + (1 - B2) * g * g
        p -= lr / (1 - B1**t) * m / (math.sqrt(v) / math.sqrt(1 - B2**t) + eps)
    return p


def run(opt_cls, p0: list[float], grads: list[list[float]], reset_after: int = -1, **kw) -> list[float]:
    """Step `opt_cls` over the per-step gradients (float64); the state is cleared after step `reset_after`."""
    p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    opt = opt_cls([p], **kw)
    for i, g in enumerate(grads):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        if i == reset_after:
            opt.state.clear()
    return p.detach().tolist()


P0 = [0.5, -1.2, 2.0]
GRADS = [[0.3, -0.02, 1e-6], [-0.1, 0.05, 2e-6], [0.2, 0.01, -1e-6], [0.05, -0.3, 3e-6], [0.4, 0.2, 1e-6]]


@pytest.mark.parametrize("correct_bias", [True, False])
def test_adamw_hf_is_the_hand_computed_transformers_update(correct_bias):
    lr, eps, wd = 1e-2, 1e-6, 0.1
    ours = run(AdamWHF, P0, GRADS, lr=lr, eps=eps, weight_decay=wd, correct_bias=correct_bias)
    for i, p0 in enumerate(P0):
        want = hand_hf(p0, [g[i] for g in GRADS], lr, eps, wd, correct_bias)
        assert ours[i] == pytest.approx(want, rel=1e-12, abs=1e-15)
    # and torch's AdamW is the other hand computation, not this one
    theirs = run(torch.optim.AdamW, P0, GRADS, lr=lr, eps=eps, weight_decay=wd)
    for i, p0 in enumerate(P0):
        assert theirs[i] == pytest.approx(hand_torch(p0, [g[i] for g in GRADS], lr, eps, wd), rel=1e-12, abs=1e-15)
    assert ours != pytest.approx(theirs, rel=1e-9, abs=0)


def test_after_a_reset_torch_steps_are_larger_for_tiny_gradients():
    """GLoMo re-creates its optimizer every epoch: the first steps of each epoch are where eps
    matters. For g = 1e-6 and eps 1e-8, torch's first step is lr*g/(g+eps) and transformers'
    lr*sqrt(1-b2)*g/(sqrt(1-b2)*g+eps): about 1.3 times smaller."""
    lr, eps, g = 1e-3, 1e-8, 1e-6
    grads = [[g]] * 4
    kw = {"lr": lr, "eps": eps, "weight_decay": 0.0}
    first = {name: run(cls, [0.0], grads, reset_after=2, **kw)[0] - run(cls, [0.0], grads[:3], **kw)[0]
             for name, cls in (("hf", AdamWHF), ("torch", torch.optim.AdamW))}
    # the step after the reset is a first step again, as the hand formulas say
    assert first["hf"] == pytest.approx(hand_hf(0.0, [g], lr, eps, 0.0), rel=1e-9)
    assert first["torch"] == pytest.approx(hand_torch(0.0, [g], lr, eps, 0.0), rel=1e-9)
    ratio = first["torch"] / first["hf"]
    assert ratio == pytest.approx((g / (g + eps)) / (math.sqrt(1 - B2) * g / (math.sqrt(1 - B2) * g + eps)), rel=1e-9)
    assert ratio > 1.25


def test_adamw_hf_is_torch_adamw_without_eps_and_decay():
    """With eps 0 and no weight decay the two formulas are the same function."""
    kw = {"lr": 1e-2, "eps": 0.0, "weight_decay": 0.0}
    assert run(AdamWHF, P0, GRADS, **kw) == pytest.approx(run(torch.optim.AdamW, P0, GRADS, **kw), rel=1e-12)


def test_make_optimizer_kinds_and_eps():
    p = torch.nn.Parameter(torch.zeros(2))
    kinds = {kind: make_optimizer(kind, [{"params": [p]}], lr=0.1, weight_decay=0.0) for kind in OPTIMIZERS}
    assert type(kinds["adam"]) is torch.optim.Adam and type(kinds["adamw"]) is torch.optim.AdamW
    assert type(kinds["adamw_hf"]) is AdamWHF
    assert kinds["adamw_hf"].param_groups[0]["eps"] == 1e-6 and kinds["adamw"].param_groups[0]["eps"] == 1e-8
    opt = make_optimizer("adamw_hf", [{"params": [p]}], lr=0.1, weight_decay=0.0, eps=1e-8)
    assert opt.param_groups[0]["eps"] == 1e-8
    with pytest.raises(ValueError, match="unknown optimizer 'sgd' \\(adam \\| adamw \\| adamw_hf\\)"):
        make_optimizer("sgd", [{"params": [p]}], lr=0.1, weight_decay=0.0)


# -- which optimizer each model builds: its reference code's ----------------------------------
HF_PRESETS = [  # transformers.optimization.AdamW in the reference code
    *(("glomo", d, p) for d, p in (("mosi", "official"), ("mosei", "official"), ("iemocap", "official"),
                                   ("synthetic", "demo"))),  # main_GLoMo.py:23, :363 (IEMOCAP: its MOSEI preset)
    *(("mag_bert", d, "paper") for d in ("mosi", "mosei", "iemocap")),  # multimodal_driver.py:28, :345
    *(("bert_text", d, "paper") for d in ("mosi", "mosei", "iemocap")),  # MAG-BERT's driver settings
]


@pytest.mark.parametrize("name,dataset,preset", HF_PRESETS)
def test_presets_whose_reference_uses_transformers_adamw_build_it(name, dataset, preset):
    with torch.device("meta"):
        model = create_model(name, dataset, preset, text_encoder="tiny")
    opt = build_optimizer(model)
    assert type(opt) is AdamWHF
    eps = 1e-8 if name == "glomo" else 1e-6  # GLoMo passes --adam_epsilon 1e-8; MAG-BERT keeps the default
    assert {g["eps"] for g in opt.param_groups} == {eps}


def test_every_other_preset_builds_a_torch_optimizer():
    hf = {(n, d, p) for n, d, p in HF_PRESETS}
    for name in list_models():
        for dataset, preset in get_model_entry(name).presets:
            kind = resolve_config(name, dataset, preset).optimizer
            assert (kind == "adamw_hf") == ((name, dataset, preset) in hf), (name, dataset, preset, kind)


def test_confede_text_stage_uses_transformers_adamw_and_the_others_torch():
    model = create_model("confede", "synthetic")
    kinds = {s.name: _StageSettings.of(s, model).optimizer for s in model.stages()}
    assert kinds == {"text": "adamw_hf", "vision": "adamw", "audio": "adamw", "fusion": "adamw"}
    text = model.stages()[0]
    params = {id(p) for g in text.param_groups() for p in g["params"]}
    for p in model.parameters():
        p.requires_grad_(id(p) in params)
    opt = build_optimizer(model, text.param_groups(), kinds["text"])  # Ttrain.py:36: eps 1e-6, all decayed
    assert type(opt) is AdamWHF and [(g["eps"], g["weight_decay"]) for g in opt.param_groups] == [(1e-6, 1e-3)]
    assert model.stages()[3].optimizer is INHERIT
