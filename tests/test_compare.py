"""Paired bootstrap (bench/compare.py) on constructed predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.compare import (
    SUM_METRICS, SeedPredictions, _feature_matrix, _seed_mean, compare_runs, paired_bootstrap, to_markdown,
)
from bench.metrics import iemocap_metrics, regression_metrics
from bench.report import load_result_set
from result_factory import make_result, write_results

N = 686  # MOSI test size


def labels(rng) -> np.ndarray:
    """MOSI-like labels on a 0.2 grid in [-3, 3]: zero labels and rounding ties included."""
    return np.round(np.clip(rng.normal(0, 1.5, N), -3, 3) * 5) / 5


def seeds_of(y: np.ndarray, noise: float, rng, seeds=(1111, 1112, 1113, 1114, 1115)) -> list[SeedPredictions]:
    ids = [f"v{i // 10}$_${i % 10}" for i in range(N)]
    return [SeedPredictions(s, ids, y, y + rng.normal(0, noise, N)) for s in seeds]


@pytest.mark.parametrize("task", ["regression", "iemocap"])
def test_resample_metrics_equal_bench_metrics_on_the_repeated_samples(task):
    """A resample = draw counts w; the sum-based metrics must equal bench.metrics on the samples
    repeated w times (so Non0 metrics drop the zero labels drawn into that resample)."""
    rng = np.random.default_rng(3)
    if task == "regression":
        y = labels(rng)
        p = y + rng.normal(0, 0.7, N)
        p[:5] = 0.0  # exact-zero predictions
        reference = regression_metrics
    else:
        y = rng.integers(0, 2, (N, 4)).astype(float)
        p = rng.normal(0, 1, (N, 8))
        p[:6, 1::2] = p[:6, 0::2]  # logit ties -> absent
        reference = iemocap_metrics
    run = SeedPredictions(1, [str(i) for i in range(N)], y, p)
    metrics = list(SUM_METRICS[task])
    feats, slices = _feature_matrix([run], metrics, task)
    for _ in range(3):
        w = rng.integers(0, 3, N)
        got = _seed_mean(w[None].astype(float) @ feats, slices, metrics, task, 1)
        rep = np.repeat(np.arange(N), w)
        want = reference(p[rep], y[rep])
        for m in metrics:
            assert got[m][0] == pytest.approx(want[m], abs=1e-10), m


def test_identical_predictions_give_p_one():
    rng = np.random.default_rng(0)
    a = seeds_of(labels(rng), 0.8, rng)
    res = paired_bootstrap(a, list(a), n_resamples=2000, rng_seed=1)
    assert res.n_comparisons == 7
    for c in res.comparisons:
        assert c.delta == 0 and c.p == 1.0 and c.ci_low == 0 == c.ci_high, c


def test_clearly_better_model_gets_a_small_p_and_mae_sign_flipped():
    rng = np.random.default_rng(0)
    y = labels(rng)
    better, worse = seeds_of(y, 0.4, rng), seeds_of(y, 1.2, rng)
    res = paired_bootstrap(better, worse, n_resamples=2000, rng_seed=7)
    by = {c.metric: c for c in res.comparisons}
    assert by["MAE"].a < by["MAE"].b and by["MAE"].delta == pytest.approx(by["MAE"].b - by["MAE"].a)
    for c in res.comparisons:
        assert c.delta > 0 and c.ci_low > 0 and c.p < 0.01, c
    back = {c.metric: c for c in paired_bootstrap(worse, better, n_resamples=2000, rng_seed=7).comparisons}
    assert all(back[m].delta == pytest.approx(-by[m].delta) and back[m].ci_high < 0 for m in by)
    # the observed values are the seed means of bench.metrics
    want = np.mean([regression_metrics(r.preds, r.labels)["Has0_acc_2"] for r in better])
    assert by["Has0_acc_2"].a == pytest.approx(want, abs=1e-12)


def test_small_difference_is_not_significant_and_rng_seed_reproduces():
    rng = np.random.default_rng(5)
    y = labels(rng)
    a, b = seeds_of(y, 0.80, rng), seeds_of(y, 0.81, rng)
    r1 = paired_bootstrap(a, b, metrics=["MAE", "Corr"], n_resamples=1000, rng_seed=3)
    r2 = paired_bootstrap(a, b, metrics=["MAE", "Corr"], n_resamples=1000, rng_seed=3)
    assert r1 == r2 and r1.n_comparisons == 2
    assert r1.comparisons[0].p > 0.05


def test_ids_are_matched_and_must_agree():
    rng = np.random.default_rng(1)
    y = labels(rng)
    a, b = seeds_of(y, 0.5, rng, seeds=(1,)), seeds_of(y, 0.9, rng, seeds=(1,))
    perm = rng.permutation(N)
    shuffled = [SeedPredictions(1, [b[0].ids[i] for i in perm], b[0].labels[perm], b[0].preds[perm])]
    assert paired_bootstrap(a, b, n_resamples=300) == paired_bootstrap(a, shuffled, n_resamples=300)
    other = [SeedPredictions(1, b[0].ids[:-1] + ["elsewhere"], b[0].labels, b[0].preds)]
    with pytest.raises(ValueError, match="test ids differ"):
        paired_bootstrap(a, other, n_resamples=10)
    relabelled = [SeedPredictions(1, b[0].ids, b[0].labels + 0.2, b[0].preds)]
    with pytest.raises(ValueError, match="label of id"):
        paired_bootstrap(a, relabelled, n_resamples=10)


def _write_pair(root: Path, seeds_a, seeds_b) -> Path:
    rng = np.random.default_rng(2)
    y = labels(rng)[:120]
    ids = [f"x{i}" for i in range(len(y))]
    recs = [make_result("pase", s, predictions=(ids, y.tolist(), (y + rng.normal(0, 0.3, len(y))).tolist()))
            for s in seeds_a]
    recs += [make_result("mult", s, predictions=(ids, y.tolist(), (y + rng.normal(0, 1.0, len(y))).tolist()))
             for s in seeds_b]
    return write_results(root, recs)


def test_compare_runs_uses_common_seeds(tmp_path):
    rs = load_result_set(_write_pair(tmp_path, (1111, 1112, 1113), (1111, 1112)))
    res = compare_runs(rs, "synthetic", "pase", "mult", n_resamples=500)
    assert res.seeds == [1111, 1112] and res.excluded_seeds == {"pase": [1113]} and res.n_samples == 120
    md = to_markdown(res)
    assert "7 comparisons made" in md and "B = 500 resamples, RNG seed 0" in md and "seed(s) 1113 left out" in md
    with pytest.raises(KeyError, match="no successful result files for 'self_mm'"):
        compare_runs(rs, "synthetic", "pase", "self_mm")


def test_cli_compare(tmp_path, monkeypatch, capsys):
    from bench.cli import build_parser

    _write_pair(tmp_path / "results", (1111, 1112), (1111, 1112))
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["compare", "pase", "mult", "--resamples", "2000", "--rng-seed", "4"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| Has0_acc_2 " in out and "RNG seed 4" in out
    saved = json.loads((tmp_path / "reports" / "compare_synthetic_pase_vs_mult.json").read_text())
    assert saved["rng_seed"] == 4 and saved["n_resamples"] == 2000 and saved["n_comparisons"] == 7
    assert all(c["delta"] > 0 for c in saved["comparisons"])
    args = build_parser().parse_args(["compare", "pase", "self_mm"])
    assert args.func(args) == 2 and "no successful result files for 'self_mm'" in capsys.readouterr().err


def test_iemocap_runs_from_result_files(tmp_path):
    rng = np.random.default_rng(4)
    n = 200
    y = rng.integers(0, 2, (n, 4))
    good = rng.normal(0, 1, (n, 4, 2))
    good[:, :, 1] += 3 * (y - 0.5)  # logits that mostly agree with the labels
    bad = rng.normal(0, 1, (n, 4, 2))
    ids = [f"utt{i}" for i in range(n)]
    kw = dict(dataset="iemocap", task="iemocap")
    recs = [make_result("mult", s, predictions=(ids, y.tolist(), good.reshape(n, 8).tolist()), **kw) for s in (1, 2)]
    recs += [make_result("mag_bert", s, predictions=(ids, y.tolist(), bad.reshape(n, 8).tolist()), **kw)
             for s in (1, 2)]
    rs = load_result_set(write_results(tmp_path, recs))
    res = compare_runs(rs, "iemocap", "mult", "mag_bert", n_resamples=1000)
    by = {c.metric: c for c in res.comparisons}
    assert res.n_comparisons == 9 and by["mean_acc"].p < 0.01 and by["mean_acc"].delta > 0
    assert by["Acc_Happy"].a == pytest.approx(iemocap_metrics(good, y)["Acc_Happy"])
    same = compare_runs(rs, "iemocap", "mult", "mult", n_resamples=200)
    assert all(c.p == 1.0 for c in same.comparisons)
