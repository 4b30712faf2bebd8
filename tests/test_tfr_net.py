"""TFR-Net and MMSA's missing-data protocol (`data_missing`, bench/data/conditions.py).

The equivalence with MMSA's model, loss and gradients is tests/test_reference_equivalence.py;
here: the harness draws MMSA's own masks, the model reads the complete inputs and masks from the
batch, MMSA's epoch rule for the reconstruction loss, and the protocol for a model that knows
nothing of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.data.base import Split
from bench.data.conditions import MMSA_MISSING_SEED, Condition, ConditionError, apply_to_batch, apply_to_split, with_data_missing
from models.protocol import Batch
from models.registry import create_model

GOLDEN = Path(__file__).parent / "golden_ref"


def _golden_batch() -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    meta = json.loads((GOLDEN / "tfr_net.json").read_text())
    flat = load_file(str(GOLDEN / "tfr_net.safetensors"))
    return meta, {k.partition("/")[2]: v for k, v in flat.items() if k.startswith("batch/")}


def test_bernoulli_condition_draws_mmsas_masks():
    """The golden's incomplete inputs and masks are MMSA's data_loader.py generate_m on its complete
    batch taken as a split (rate 0.2, seed 1111 per modality): the harness draws the same ones."""
    meta, b = _golden_batch()
    complete = {k.removeprefix("complete."): v for k, v in b.items() if k.startswith("complete.")}
    own = {k: v for k, v in b.items() if "." not in k}
    split = Split("train", {**own, **complete}, [str(i) for i in range(len(b["labels"]))])
    assert meta["missing"] == {"condition": "bernoulli/tav/0.2", "seed": MMSA_MISSING_SEED}
    ours = apply_to_split(split, Condition.parse(meta["missing"]["condition"]), meta["missing"]["seed"], record=True)
    for name in ("text_ids", "audio", "vision"):
        assert b[f"missing.{name}"].any(), name
        assert torch.equal(ours.tensors[f"missing.{name}"], b[f"missing.{name}"]), name
        assert torch.equal(ours.tensors[name], b[name]), name
        assert torch.equal(ours.tensors[f"complete.{name}"], complete[name]), name


@pytest.mark.parametrize("dataset", ["mosi", "mosei"])
def test_parameter_count_equals_mmsa(dataset):
    """MMSA's TFR_NET built at its real size by tools/reference/tfr_net.py (bert-base, config_regression.json)."""
    meta, _ = _golden_batch()
    with torch.device("meta"):
        model = create_model("tfr_net", dataset, "mmsa", text_encoder="bert-base")
    assert sum(p.numel() for p in model.parameters()) == meta["mmsa_parameters"][dataset]


def test_mmsa_cannot_build_its_sims_row_and_the_preset_can():
    meta, _ = _golden_batch()
    assert "divisible by num_heads" in meta["sims_config_build_error"]
    with torch.device("meta"):
        model = create_model("tfr_net", "sims", "mmsa", text_encoder="bert-base")
    assert model.cfg.temporal_heads == 1 and model.cfg.seq_lens == (39, 400, 55)


def test_split_and_batch_keep_the_complete_inputs_and_accumulate_masks(small_synthetic):
    cond = Condition.parse("bernoulli/av/0.3")
    split = apply_to_split(small_synthetic.train, cond, MMSA_MISSING_SEED, record=True)
    batch = split.take(torch.arange(6))
    clean = small_synthetic.train.take(torch.arange(6))
    assert batch.complete is not None and batch.missing is not None and set(batch.missing) == {"audio", "vision"}
    assert torch.equal(batch.complete.audio, clean.audio) and not torch.equal(batch.audio, clean.audio)
    assert torch.equal(batch.audio[batch.missing["audio"]], torch.zeros_like(batch.audio[batch.missing["audio"]]))
    again = apply_to_batch(batch, Condition.parse("random/a/0.5"), torch.Generator().manual_seed(0))
    assert torch.equal(again.complete.audio, clean.audio)  # the first condition's input stays the complete one
    assert (again.missing["audio"] >= batch.missing["audio"]).all() and again.missing["audio"].sum() > batch.missing["audio"].sum()
    assert clean.complete is None and clean.missing is None


def _demo_step(batch: Batch, epoch: int | None = None) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = create_model("tfr_net", "synthetic", "demo").train()
    if epoch is not None:
        model.on_epoch_start(epoch, None)
    parts = model.loss(model(batch), batch)
    parts["total"].backward()
    return model, parts


def test_reconstruction_reads_the_batch_and_joins_from_the_second_epoch(small_synthetic):
    clean = small_synthetic.train.take(torch.arange(8))
    batch = apply_to_batch(clean, Condition.parse("bernoulli/tav/0.2"), torch.Generator().manual_seed(0))
    model, parts = _demo_step(batch)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    _, first = _demo_step(batch, epoch=0)
    _, second = _demo_step(batch, epoch=1)
    assert torch.equal(first["total"], first["task"]) and float(first["rec"].detach()) > 0
    assert torch.allclose(second["total"], second["task"] + second["rec"])
    model, plain = _demo_step(clean)  # nothing missing: no step to reconstruct, no gradient to the generators
    assert all(p.grad is None or not p.grad.any() for p in model.generator.parameters())
    assert plain["rec_a"] < parts["rec_a"]


@pytest.mark.slow
def test_mmsa_protocol_for_a_model_that_knows_nothing_of_it(tmp_path):
    """`--set data_missing=...` puts any model under MMSA's protocol: train, valid and test
    incomplete, the same masks at every load, selection and test on them."""
    from bench.config import RunConfig
    from bench.results import load_result
    from bench.runner import load_data_for, plan_runs, run_sweep

    common = dict(model="late_fusion", seed=1111, epochs=1, out_dir=str(tmp_path), contributions=False,
                  robustness=False)
    missing = RunConfig(**common, overrides={"data_missing": "bernoulli/tav/0.2"})
    clean = RunConfig(**common)
    p = plan_runs([missing])[0]
    data, twice = load_data_for(p), load_data_for(p)
    for s in ("train", "valid", "test"):
        masks = {k: t for k, t in data.split(s).tensors.items() if k.startswith("missing.")}
        assert {"missing.audio", "missing.vision"} < set(masks) and {"missing.text_ids", "missing.text_feats"} & set(masks)
        assert all(torch.equal(t, twice.split(s).tensors[k]) for k, t in masks.items())
        rate = float(masks["missing.audio"].sum()) / float(data.split(s).tensors["audio_lengths"].sum())
        assert 0.15 < rate < 0.25, (s, rate)
    assert run_sweep([missing, clean]).ok
    a, b = load_result(missing.result_path()), load_result(clean.result_path())
    assert a["config"]["model"]["data_missing"] == "bernoulli/tav/0.2" and missing.run_name != clean.run_name
    assert a["metrics"]["valid"] != b["metrics"]["valid"] and a["metrics"]["test"] != b["metrics"]["test"]


def test_data_missing_must_remove_steps(small_synthetic):
    with pytest.raises(ConditionError, match="'noise/av/1'.*removes no steps"):
        with_data_missing(small_synthetic, "noise/av/1")
    assert with_data_missing(small_synthetic, None) is small_synthetic


def test_check_model_steps_under_the_presets_protocol(subject):
    """`bench check-model` trains a step as the runner would: under the demo preset's data_missing."""
    from bench import checks

    ((task, model, batch),) = list(checks.task_models(subject("tfr_net")))
    assert model.cfg.data_missing == "bernoulli/tav/0.2" and batch.missing is not None and batch.complete is not None
