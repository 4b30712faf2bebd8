"""One parametrized test file over the registry: every model on the synthetic demo preset."""

import pytest
import torch

from bench.train import build_optimizer
from models import create_model, list_models

# parameters that by design never receive a gradient (documented in each model's file)
NO_GRAD_OK = ("pooler.", "unused_")  # unused_*: built by the released code, never called (ConFEDE, EUAR)


@pytest.fixture(scope="module")
def batch(synthetic):
    return synthetic.train.take(torch.arange(6))


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name, batch):
    torch.manual_seed(0)
    model = create_model(name, "synthetic")
    model.train()
    out = model(batch)
    assert out.pred.shape == (6, model.cfg.n_out)
    assert torch.isfinite(out.pred).all()
    parts = model.loss(out, batch)
    assert "total" in parts and parts["total"].ndim == 0 and torch.isfinite(parts["total"])
    parts["total"].backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None and not any(k in n for k in NO_GRAD_OK)]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("name", list_models())
def test_masked_inputs_change_prediction(name, batch):
    torch.manual_seed(0)
    model = create_model(name, "synthetic").eval()
    with torch.no_grad():
        full = model(batch).pred
        for m in "tav":
            masked = model(batch.without({m})).pred
            assert torch.isfinite(masked).all()
            if m in model.modalities:
                assert not torch.allclose(full, masked), f"masking {m} does not change {name}'s output"
            else:  # a modality the model does not read (bert_text: audio, vision)
                assert torch.equal(full, masked)


@pytest.mark.parametrize("name", list_models())
def test_separable_fast_path_equals_masked_forwards(name, small_synthetic):
    """evaluate() fuses per-modality encodings for separable models: same numbers as masked forwards."""
    from bench.train import COALITIONS, evaluate

    torch.manual_seed(0)
    model = create_model(name, "synthetic").eval()
    if not model.separable:
        pytest.skip(f"{name} is not separable (modalities interact before fusion)")
    with torch.no_grad():
        b = small_synthetic.valid.take(torch.arange(8))
        assert torch.allclose(model(b).pred, model.fuse(model.encode(b)), atol=1e-6)
    split = small_synthetic.valid.subset(torch.arange(20))
    fast = evaluate(model, split, torch.device("cpu"), 8, COALITIONS)
    type(model).separable = property(lambda self: False)  # force the masked-forward path
    try:
        slow = evaluate(model, split, torch.device("cpu"), 8, COALITIONS)
    finally:
        del type(model).separable
    for c in COALITIONS:
        assert torch.allclose(fast[c][0], slow[c][0], atol=1e-5), (name, sorted(c))


@pytest.mark.parametrize("name", list_models())
def test_optimizer_groups_cover_all_parameters(name):
    model = create_model(name, "synthetic")
    opt = build_optimizer(model)
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", list_models())
def test_modality_params_are_disjoint_model_parameters(name):
    model = create_model(name, "synthetic")
    groups = model.modality_params()
    assert set(groups) == {"t", "a", "v"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) and all(groups[m] for m in model.modalities)
    assert set(ids) <= {id(p) for p in model.parameters()}
