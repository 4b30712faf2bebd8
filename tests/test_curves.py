"""Robustness curves: missing/noisy test conditions (bench/data/conditions.py), curves at the
end of training, saved states scored later (bench/robustness.py), training under missing data."""

from __future__ import annotations

import json

import pytest
import torch

from bench.config import RunConfig
from bench.data import load_dataset
from bench.data.conditions import (
    BERT_UNK_ID, CONDITION_SEED, MISSING_KINDS, Condition, apply, apply_to_batch, apply_to_split, condition_grid,
    noise_scale,
)
from bench.results import curves_path, load_result
from bench.robustness import CLEAN, evaluate_saved, file_sha256, load_saved_run, robustness_curves
from bench.runner import run_sweep
from bench.train import predict
from models.constants import MODALITIES


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", text_input="all")  # token ids and text features: both views


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One late_fusion run (1 epoch) with curves and its saved state."""
    out = tmp_path_factory.mktemp("curves")
    run = RunConfig(model="late_fusion", seed=1111, epochs=1, out_dir=str(out), contributions=False,
                    robustness=False, robustness_curves=True, save_state=True)
    assert run_sweep([run]).ok
    return run.result_path()


VIEWS = {"t": ("text_ids", "text_feats"), "a": ("audio",), "v": ("vision",)}
LENGTHS = {"text_feats": "text_lengths", "audio": "audio_lengths", "vision": "vision_lengths"}


def _valid(t, name, special_ids):
    """The valid steps, by the definition (not the code under test): text tokens other than
    [CLS]/[SEP] under the attention mask; feature steps before the sample's length."""
    if name == "text_ids":
        cls, sep, _ = special_ids
        return (t["text_mask"] == 1) & (t["text_ids"] != cls) & (t["text_ids"] != sep)
    return torch.arange(t[name].shape[1])[None, :] < t[LENGTHS[name]][:, None]


def _empty_input(split, special_ids):
    """The empty input, built by hand: every valid step missing (text tokens -> [UNK],
    feature steps -> 0)."""
    t = dict(split.tensors)
    t["text_ids"] = torch.where(_valid(t, "text_ids", special_ids), BERT_UNK_ID, t["text_ids"])
    for feats in LENGTHS:
        t[feats] = t[feats].masked_fill(_valid(t, feats, special_ids)[..., None], 0.0)
    return t


@pytest.mark.parametrize("kind", [*MISSING_KINDS, "noise"])
def test_level_zero_leaves_the_split_unchanged(data, kind):
    for m in ("t", "a", "v", "tav"):
        out = apply(data.test.tensors, Condition(kind, m, 0.0), data.test.special_ids)
        for k, v in data.test.tensors.items():
            assert torch.equal(out[k], v), (kind, m, k)


@pytest.mark.parametrize("kind", MISSING_KINDS)
def test_missing_steps_exact_count_padding_and_specials_untouched(data, kind):
    split, rate = data.test, 0.3
    for m in MODALITIES:
        out = apply(split.tensors, Condition(kind, m, rate), split.special_ids)
        for name in VIEWS[m]:
            valid = _valid(split.tensors, name, split.special_ids)
            x, y = split.tensors[name], out[name]
            changed = (x != y) if name == "text_ids" else (x != y).any(-1)
            gone = (y == BERT_UNK_ID) if name == "text_ids" else ~(y != 0).any(-1)
            assert not changed[~valid].any(), f"{name}: padding or [CLS]/[SEP] changed"
            want = torch.round(rate * valid.sum(1).double()).long()
            assert torch.equal((gone & valid).sum(1), want), name  # round(rate * n) of each row's n valid steps
            if kind == "structural":  # one contiguous block among the valid steps
                pos = valid.long().cumsum(1) - 1
                for row in range(0, len(x), 37):
                    idx = pos[row][gone[row] & valid[row]]
                    if len(idx):
                        assert torch.equal(idx, torch.arange(int(idx[0]), int(idx[0]) + len(idx))), (name, row)


def test_masks_are_recorded_and_paired(data):
    s = data.test
    a1 = apply(s.tensors, Condition("random", "a", 0.3), s.special_ids)["audio"]
    assert torch.equal(a1, apply(s.tensors, Condition("random", "a", 0.3), s.special_ids)["audio"])  # same seed, same mask
    assert torch.equal(a1, apply(s.tensors, Condition("random", "tav", 0.3), s.special_ids)["audio"])  # a alone = a in tav
    other = apply(s.tensors, Condition("random", "a", 0.3), s.special_ids, seed=CONDITION_SEED + 1)["audio"]
    assert not torch.equal(a1, other)


def test_rate_one_on_all_modalities_is_the_empty_input(data, trained):
    _, model, _, dev = load_saved_run(trained, "cpu")
    split = data.test
    empty = _empty_input(split, split.special_ids)
    want, _ = predict(model, type(split)(split.name, empty, split.ids, split.special_ids), dev, 64)
    for kind in MISSING_KINDS:
        out = apply_to_split(split, Condition(kind, "tav", 1.0))
        for k in empty:
            assert torch.equal(out.tensors[k], empty[k]), (kind, k)
        got, _ = predict(model, out, dev, 64)
        assert torch.equal(got, want), kind
    clean, _ = predict(model, split, dev, 64)
    assert not torch.equal(clean, want)


def test_noise_is_scaled_on_valid_steps_only(data):
    s, level = data.test, 0.5
    scale = noise_scale(s)
    out = apply(s.tensors, Condition("noise", "a", level), s.special_ids)
    valid = _valid(s.tensors, "audio", s.special_ids)
    diff = out["audio"] - s.tensors["audio"]
    assert not diff[~valid].any()
    assert float(diff[valid].std()) == pytest.approx(level * scale["a"], rel=0.05)
    assert torch.equal(out["vision"], s.tensors["vision"]) and torch.equal(out["text_ids"], s.tensors["text_ids"])


def test_curves_at_the_end_of_training(trained):
    rec = load_result(trained)
    curves = rec["robustness_curves"]
    assert curves["conditions"][CLEAN] == rec["metrics"]["test"]  # rate 0: the clean test metrics, exactly
    assert list(curves["conditions"])[1:] == [c.name for c in condition_grid()]
    assert curves["seed"] == CONDITION_SEED and curves["time_s"] > 0
    assert curves["ids"] == rec["predictions"]["ids"] and curves["predictions"][CLEAN] == rec["predictions"]["preds"]
    assert set(curves["predictions"]) == set(curves["conditions"])
    mae = [curves["conditions"][f"random/tav/{r:g}"]["MAE"] for r in (0.1, 0.5, 0.9)]
    assert mae[0] < mae[2]  # the planted signal fades as the input goes missing


def test_saved_state_scores_later_without_touching_the_result(trained):
    rec = load_result(trained)
    state = trained.with_name(rec["state"]["file"])
    assert state.suffix == ".safetensors" and file_sha256(state) == rec["state"]["sha256"]
    assert state.stat().st_mode & 0o777 == trained.stat().st_mode & 0o777  # readable as the result file is
    assert {p.name for p in trained.parent.iterdir()} == {state.name, trained.name}  # no temp file left
    before = trained.read_bytes()
    conds = [Condition("random", "tav", 0.0), Condition("structural", "v", 0.5), Condition("noise", "av", 1.0)]
    out = evaluate_saved(trained, conds, "cpu")
    assert out == curves_path(trained) and trained.read_bytes() == before
    got = json.loads(out.read_text())["robustness_curves"]["conditions"]
    assert got[CLEAN] == rec["metrics"]["test"] == got["random/tav/0"]
    for c in conds[1:]:
        assert got[c.name] == rec["robustness_curves"]["conditions"][c.name]
    state.write_bytes(state.read_bytes()[:-4] + b"\0\0\0\0")  # the weights changed after the run
    with pytest.raises(ValueError, match="SHA-256 differs"):
        evaluate_saved(trained, conds, "cpu")


def test_curves_on_a_model_directly_match_predict(data):
    from models import create_model

    torch.manual_seed(0)
    model = create_model("late_fusion", "synthetic", "demo")
    cond = Condition("structural", "t", 0.5)
    got = robustness_curves(model, data.test, torch.device("cpu"), 64, False, "regression", [cond])
    preds, _ = predict(model, apply_to_split(data.test, cond), torch.device("cpu"), 64)
    assert got["conditions"][cond.name]["MAE"] == pytest.approx(float((preds.reshape(-1) - data.test.labels).abs().mean()))


def test_training_under_missing_data_masks_every_batch_and_has_its_own_folder(data, tmp_path):
    run = RunConfig(model="late_fusion", seed=1111, epochs=1, out_dir=str(tmp_path), contributions=False,
                    robustness=False, train_missing="random/tav/0.5")
    assert run.run_name == "late_fusion+missing=random-tav-0.5"
    batch = data.train.take(torch.arange(8))
    masked = apply_to_batch(batch, Condition.parse("random/tav/0.5"), torch.Generator().manual_seed(0))
    assert (masked.text_ids == BERT_UNK_ID).any() and not torch.equal(masked.audio, batch.audio)
    assert torch.equal(masked.labels, batch.labels)
    clean = RunConfig(model="late_fusion", seed=1111, epochs=1, out_dir=str(tmp_path), contributions=False,
                      robustness=False)
    assert run_sweep([run, clean]).ok
    a, b = load_result(run.result_path()), load_result(clean.result_path())
    assert a["config"]["run"]["train_missing"] == "random/tav/0.5"
    assert a["history"][0]["train"] != b["history"][0]["train"]
    assert a["history"][0]["valid"] != b["history"][0]["valid"]


def _with_curves(rec, values, kind="random", mods="t"):
    """`rec` with robustness curves: Acc-2 values[0] clean and values[i] at rate i/10."""
    conds = {CLEAN: {**rec["metrics"]["test"], "Has0_acc_2": values[0]}}
    conds.update({f"{kind}/{mods}/{i / 10:g}": {"Has0_acc_2": v} for i, v in enumerate(values) if i})
    return {**rec, "robustness_curves": {"split": "test", "seed": 0, "conditions": conds}}


def test_curves_table_mean_std_and_area(tmp_path):
    from bench.report import load_result_set
    from bench.report_curves import curves_tables
    from result_factory import make_result, write_results

    a = [0.9, 0.8, 0.7]  # levels 0, 0.1, 0.2
    b = [0.7, 0.6, 0.3]
    root = write_results(tmp_path, [_with_curves(make_result("mult", 1111), a),
                                    _with_curves(make_result("mult", 1112), [0.0, 0.0, 0.0])])
    # the second seed was scored again later by `bench evaluate`: its curves file takes precedence
    later = _with_curves(make_result("mult", 1112), b + [0.1])["robustness_curves"]  # + a level only this seed has
    curves_path(root / "synthetic" / "mult" / "seed1112.json").write_text(json.dumps({"robustness_curves": later}))
    (table,) = curves_tables(load_result_set(root), ["synthetic"])
    (row,) = table.rows
    assert [c.key for c in table.columns] == ["0", "0.1", "0.2", "auc"]
    assert row.cells["0.2"].mean == pytest.approx(0.5) and row.cells["0.2"].std == pytest.approx(0.4 / 2 ** 0.5)
    areas = [((0.9 + 0.8) / 2 * 0.1 + (0.8 + 0.7) / 2 * 0.1) / 0.2, ((0.7 + 0.6) / 2 * 0.1 + (0.6 + 0.3) / 2 * 0.1) / 0.2]
    assert row.cells["auc"].mean == pytest.approx(sum(areas) / 2) and row.cells["auc"].n == 2
    assert row.label.startswith("random missing t")


def test_curves_figure_one_line_per_run_one_panel_per_condition(tmp_path):
    from bench.report import load_result_set
    from bench.report_curves import curves_figure
    from result_factory import make_result, write_results

    recs = [_with_curves(make_result(name, seed), [0.8, 0.7, 0.6], kind, mods)
            for name in ("mult", "late_fusion") for seed in (1111, 1112)
            for kind, mods in (("random", "t"), ("structural", "tav"))]
    merged = {}
    for r in recs:  # one record per (run, seed) holding both families
        key = (r["run_name"], r["seed"])
        if key in merged:
            merged[key]["robustness_curves"]["conditions"].update(r["robustness_curves"]["conditions"])
        else:
            merged[key] = r
    fig = curves_figure(load_result_set(write_results(tmp_path, list(merged.values()))), "synthetic")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["random missing: t", "structural missing: tav"]
    assert all(len(ax.get_lines()) == 2 and len(ax.collections) == 2 for ax in panels)  # a line and a band per run


def test_compare_at_a_condition(tmp_path):
    from bench.compare import compare_runs, write_comparison
    from bench.report import load_result_set
    from result_factory import make_result, write_results

    ids, labels = ["s0", "s1", "s2", "s3"], [1.0, -1.0, 2.0, -0.5]
    recs = []
    for name, under in (("mult", labels), ("late_fusion", [0.0, 0.0, 0.0, 0.0])):
        rec = make_result(name, 1111, predictions=(ids, labels, [0.5, -0.5, 1.0, 0.0]))
        curves = {"ids": ids, "conditions": {}, "predictions": {"random/tav/0.5": under}}
        recs.append({**rec, "robustness_curves": curves})
    rs = load_result_set(write_results(tmp_path / "results", recs))
    res = compare_runs(rs, "synthetic", "mult", "late_fusion", metrics=["MAE"], n_resamples=200,
                       condition="random/tav/0.5")
    (mae,) = res.comparisons
    assert (mae.a, mae.b) == (0.0, pytest.approx(sum(map(abs, labels)) / 4)) and res.condition == "random/tav/0.5"
    clean = compare_runs(rs, "synthetic", "mult", "late_fusion", metrics=["MAE"], n_resamples=200).comparisons[0]
    assert clean.a == clean.b  # the same clean predictions
    (md, _) = write_comparison(res, tmp_path / "reports")
    assert md.name == "compare_synthetic_mult_vs_late_fusion_random-tav-0.5.md"
    with pytest.raises(KeyError, match="no predictions under condition 'noise/a/1'"):
        compare_runs(rs, "synthetic", "mult", "late_fusion", condition="noise/a/1")
