"""One parametrized test file over the registry: every model on the synthetic demo preset.
The protocol properties are tested through bench/checks.py, the functions `bench check-model`
runs, so the command and the tests cannot drift; test-only strictness is added here."""

import pytest
import torch

from bench import checks
from bench.train import build_optimizer
from conftest import assert_passes
from models import create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name, subject):
    """Output shapes per task, loss parts, a gradient for every parameter not declared without, no NaN/inf."""
    s = subject(name)
    for check in (checks.check_output_shapes, checks.check_loss_parts, checks.check_gradients, checks.check_finite):
        assert_passes(check(s))


@pytest.mark.parametrize("name", list_models())
def test_masked_inputs_change_prediction_through_the_masked_modality_only(name, subject):
    assert_passes(checks.check_masking(subject(name)))


@pytest.mark.parametrize("name", list_models())
def test_separable_fast_path_equals_masked_forwards(name, subject, small_synthetic):
    """evaluate() fuses per-modality encodings for separable models: same numbers as masked forwards."""
    from bench.train import COALITIONS, evaluate

    result = checks.check_separable(subject(name))
    if result.status == checks.SKIP:
        pytest.skip(f"{name}: {result.why}")
    assert_passes(result)
    torch.manual_seed(0)
    model = create_model(name, "synthetic").eval()
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
def test_optimizer_groups_cover_all_parameters(name, subject):
    assert_passes(checks.check_param_groups(subject(name)))
    model = create_model(name, "synthetic")
    opt = build_optimizer(model)
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("check", [checks.check_batch_composition, checks.check_seed, checks.check_state_dict,
                                   checks.check_stages], ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", list_models())
def test_protocol(name, check, subject):
    """Evaluation independent of batch composition (unless declared), same seed same
    predictions, state-dict round trips, well-formed stages: as `bench check-model` runs them."""
    assert_passes(check(subject(name)))


# models with no modality branch: every parameter reads all three modalities (input-level fusion)
NO_BRANCHES = {"ef_lstm": "early fusion: the LSTM reads the concatenated features"}


@pytest.mark.parametrize("name", list_models())
def test_modality_params_are_disjoint_model_parameters(name):
    model = create_model(name, "synthetic")
    if name in NO_BRANCHES:
        with pytest.raises(NotImplementedError, match="no modality branch"):
            model.modality_params()
        return
    groups = model.modality_params()
    assert set(groups) == {"t", "a", "v"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) and all(groups[m] for m in model.modalities)
    assert set(ids) <= {id(p) for p in model.parameters()}
