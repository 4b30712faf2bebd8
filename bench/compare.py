"""Paired bootstrap over test samples between two runs.

Recipe: match predictions by sample id (error if the id sets differ) and by seed;
for b = 1..B draw N test indices with replacement (one draw shared by both runs: paired);
compute each metric for every seed of each run on the resample, average over seeds, and take
delta_b = A - B (sign flipped for lower-is-better metrics such as MAE, so > 0 means A is
better); Non0 metrics drop the zero labels inside each resample. Report the observed delta,
the 95% percentile interval and p = min(1, 2 min(share delta_b <= 0, share delta_b >= 0)),
with the RNG seed, B and the number of comparisons made.

Vectorised: a resample is a vector of draw counts w (how often each sample was drawn), and
every metric used here is a function of weighted sums over samples (correct counts, per-class
true-positive/predicted/true counts for weighted F1, sums of p, y, p², y², py for Pearson r,
|p - y| for MAE). So one matrix product W (B×N) @ F (N×K) gives every statistic of every
resample for every seed at once; metrics are then computed in numpy on those sums.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from models.constants import EMOTIONS, METRICS, SIMS_DATASETS

REGRESSION_METRICS = ("Has0_acc_2", "Non0_acc_2", "Has0_F1_score", "Non0_F1_score", "Mult_acc_7", "MAE", "Corr")
SIMS_METRICS = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")
IEMOCAP_METRICS = ("mean_acc",) + tuple(f"{k}_{e}" for e in ("Happy", "Sad", "Angry", "Neutral") for k in ("Acc", "F1"))
CHUNK = 2000  # resamples per matrix product (harness decision: keeps W at ~11 MB for N = 686)


@dataclass(frozen=True)
class SeedPredictions:
    """One seed's test predictions, in the order of `ids`."""
    seed: int
    ids: list[str]
    labels: np.ndarray  # regression (N,); IEMOCAP (N, 4) 0/1
    preds: np.ndarray  # regression (N,); IEMOCAP (N, 8) logits


def seed_predictions(record: dict[str, Any], task: str) -> SeedPredictions:
    """The `predictions` field of an ok result record, validated."""
    where = f"{record.get('dataset')}/{record.get('run_name')}/seed{record.get('seed')}"
    pred = record.get("predictions")
    if not isinstance(pred, dict) or not all(k in pred for k in ("ids", "labels", "preds")):
        raise ValueError(f"{where}: result file has no predictions {{ids, labels, preds}}; rerun it with --force")
    ids = [str(i) for i in pred["ids"]]
    labels, preds = np.asarray(pred["labels"], dtype=np.float64), np.asarray(pred["preds"], dtype=np.float64)
    if task == "regression":
        labels, preds = labels.reshape(-1), preds.reshape(-1)
    else:
        labels = labels.reshape(len(ids), len(EMOTIONS), -1)
        labels = labels.argmax(-1) if labels.shape[-1] == 2 else labels[..., 0]  # one-hot pairs or 0/1
        preds = preds.reshape(len(ids), 2 * len(EMOTIONS))
    if not (len(ids) == labels.shape[0] == preds.shape[0]):
        raise ValueError(f"{where}: {len(ids)} ids, {labels.shape[0]} labels, {preds.shape[0]} predictions")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: duplicate sample ids in predictions")
    return SeedPredictions(int(record["seed"]), ids, labels, preds)


def align(runs: Sequence[SeedPredictions], order: Sequence[str], name: str) -> list[SeedPredictions]:
    """Reorder every seed to `order`; error if a seed's id set differs from it."""
    want = set(order)
    out = []
    for r in runs:
        have = set(r.ids)
        if have != want:
            extra, missing = sorted(have - want), sorted(want - have)
            raise ValueError(
                f"{name} seed {r.seed}: test ids differ from the reference set ({len(missing)} missing, "
                f"{len(extra)} extra; e.g. missing {missing[:3]}, extra {extra[:3]}); predictions must be "
                f"on the same test samples")
        pos = {i: k for k, i in enumerate(r.ids)}
        idx = np.fromiter((pos[i] for i in order), dtype=np.int64, count=len(order))
        out.append(SeedPredictions(r.seed, list(order), r.labels[idx], r.preds[idx]))
    return out


# -- metrics from weighted sums -------------------------------------------------------------------
# A metric is (features(p, y) -> (N, K) matrix, finish(S (B, K)) -> (B,) values).

def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _binary_f1_features(y_pos: np.ndarray, p_pos: np.ndarray, keep: np.ndarray) -> list[np.ndarray]:
    """tp, predicted, true counts of each class (0, 1) among kept samples."""
    return [c for yc, pc in ((~y_pos, ~p_pos), (y_pos, p_pos)) for c in (yc & pc & keep, pc & keep, yc & keep)]


def _weighted_f1(S: np.ndarray) -> np.ndarray:
    """sklearn f1_score(average='weighted', zero_division=0) from the 6 counts above."""
    num, support = np.zeros(len(S)), np.zeros(len(S))
    for c in range(2):
        tp, pred, true = S[:, 3 * c], S[:, 3 * c + 1], S[:, 3 * c + 2]
        f1 = np.nan_to_num(_div(2 * tp, pred + true))
        num, support = num + true * f1, support + true
    return _div(num, support)


def _corr_finish(S: np.ndarray) -> np.ndarray:
    """Pearson r from n, Σp, Σy, Σp², Σy², Σpy; NaN for a constant side, as bench.metrics."""
    n, sp, sy, spp, syy, spy = (S[:, k] for k in range(6))
    vp, vy = n * spp - sp ** 2, n * syy - sy ** 2
    ok = (vp > 1e-10 * n * spp) & (vy > 1e-10 * n * syy)  # below: rounding noise of a constant resample
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, (n * spy - sp * sy) / np.sqrt(np.where(ok, vp * vy, 1.0)), np.nan)


@dataclass(frozen=True)
class SumMetric:
    features: Callable[[np.ndarray, np.ndarray], list[np.ndarray]]
    finish: Callable[[np.ndarray], np.ndarray]


def _regression_metrics() -> dict[str, SumMetric]:
    def acc(correct, keep=None):
        return lambda p, y: [correct(p, y) & (keep(y) if keep else True), keep(y) if keep else np.ones_like(y, bool)]

    ratio = lambda S: _div(S[:, 0], S[:, 1])  # noqa: E731
    all_ = lambda y: np.ones_like(y, bool)  # noqa: E731
    nz = lambda y: y != 0  # noqa: E731

    def rounded(p, y, bound):
        return np.round(np.clip(p, -bound, bound)) == np.round(np.clip(y, -bound, bound))

    def corr_features(p, y):
        p, y = p - p.mean(), y - y.mean()  # shift-invariant; centring keeps the sums well conditioned
        return [np.ones_like(p), p, y, p * p, y * y, p * y]

    return {
        "Has0_acc_2": SumMetric(acc(lambda p, y: (p >= 0) == (y >= 0)), ratio),
        "Non0_acc_2": SumMetric(acc(lambda p, y: (p > 0) == (y > 0), nz), ratio),
        "Has0_F1_score": SumMetric(lambda p, y: _binary_f1_features(y >= 0, p >= 0, all_(y)), _weighted_f1),
        "Non0_F1_score": SumMetric(lambda p, y: _binary_f1_features(y > 0, p > 0, nz(y)), _weighted_f1),
        "Mult_acc_5": SumMetric(acc(lambda p, y: rounded(p, y, 2.0)), ratio),
        "Mult_acc_7": SumMetric(acc(lambda p, y: rounded(p, y, 3.0)), ratio),
        "MAE": SumMetric(lambda p, y: [np.abs(p - y), np.ones_like(p)], ratio),
        "Corr": SumMetric(corr_features, _corr_finish),
    }


def _sims_metrics() -> dict[str, SumMetric]:
    """CH-SIMS metrics (bench.metrics.sims_regression_metrics: MMSA's bins, values clipped to [-1, 1])."""
    from bench.metrics import SIMS_EDGES, sims_classes

    clip = lambda x: np.clip(x.astype(np.float32), -1.0, 1.0)  # noqa: E731
    regression = _regression_metrics()

    def same_class(k: int) -> Callable[[np.ndarray, np.ndarray], list[np.ndarray]]:
        return lambda p, y: [sims_classes(clip(p), SIMS_EDGES[k]) == sims_classes(clip(y), SIMS_EDGES[k]),
                             np.ones(len(y), bool)]

    def on_clipped(m: SumMetric) -> SumMetric:
        return SumMetric(lambda p, y: m.features(clip(p).astype(np.float64), clip(y).astype(np.float64)), m.finish)

    out = {f"Mult_acc_{k}": SumMetric(same_class(k), lambda S: _div(S[:, 0], S[:, 1])) for k in SIMS_EDGES}
    out["F1_score"] = SumMetric(lambda p, y: _binary_f1_features(
        sims_classes(clip(y), SIMS_EDGES[2]) == 1, sims_classes(clip(p), SIMS_EDGES[2]) == 1, np.ones(len(y), bool)),
        _weighted_f1)
    out["MAE"], out["Corr"] = on_clipped(regression["MAE"]), on_clipped(regression["Corr"])
    return out


def metric_family(task: str, dataset: str = "") -> str:
    """The metric definitions of a (task, dataset): 'sims' for regression on CH-SIMS / CH-SIMS v2."""
    return "sims" if task == "regression" and dataset in SIMS_DATASETS else task


def _iemocap_metrics() -> dict[str, SumMetric]:
    def present(p):  # logits (N, 8) -> predicted 0/1 per emotion; tie -> absent (numpy argmax)
        lg = p.reshape(-1, len(EMOTIONS), 2)
        return lg[:, :, 1] > lg[:, :, 0]

    def acc(e: int) -> Callable[[np.ndarray, np.ndarray], list[np.ndarray]]:
        return lambda p, y: [present(p)[:, e] == (y[:, e] == 1), np.ones(len(y), bool)]

    def f1(e: int) -> Callable[[np.ndarray, np.ndarray], list[np.ndarray]]:
        return lambda p, y: _binary_f1_features(y[:, e] == 1, present(p)[:, e], np.ones(len(y), bool))

    out: dict[str, SumMetric] = {}
    for e, name in enumerate(EMOTIONS):
        out[f"Acc_{name}"] = SumMetric(acc(e), lambda S: _div(S[:, 0], S[:, 1]))
        out[f"F1_{name}"] = SumMetric(f1(e), _weighted_f1)
    out["mean_acc"] = SumMetric(
        lambda p, y: [present(p)[:, e] == (y[:, e] == 1) for e in range(len(EMOTIONS))] + [np.ones(len(y), bool)],
        lambda S: np.mean([_div(S[:, e], S[:, len(EMOTIONS)]) for e in range(len(EMOTIONS))], axis=0))
    return out


SUM_METRICS = {"regression": _regression_metrics(), "iemocap": _iemocap_metrics(), "sims": _sims_metrics()}
DEFAULT_METRICS = {"regression": REGRESSION_METRICS, "iemocap": IEMOCAP_METRICS, "sims": SIMS_METRICS}


def _feature_matrix(runs: Sequence[SeedPredictions], metrics: Sequence[str], task: str) -> tuple[np.ndarray, list]:
    """(N, K) features of every (seed, metric), and per (seed, metric) its column slice."""
    cols: list[np.ndarray] = []
    slices = []
    for r in runs:
        for m in metrics:
            f = [np.asarray(c, dtype=np.float64) for c in SUM_METRICS[task][m].features(r.preds, r.labels)]
            slices.append((m, slice(len(cols), len(cols) + len(f))))
            cols += f
    return np.stack(cols, axis=1), slices


def _seed_mean(S: np.ndarray, slices: list, metrics: Sequence[str], task: str, n_seeds: int) -> dict[str, np.ndarray]:
    """Per metric, the value averaged over seeds, for each row of S (B, K)."""
    out = {m: np.zeros(S.shape[0]) for m in metrics}
    for m, sl in slices:
        out[m] = out[m] + SUM_METRICS[task][m].finish(S[:, sl])
    return {m: v / n_seeds for m, v in out.items()}


# -- the test -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricComparison:
    metric: str
    a: float  # observed value of A (mean over seeds)
    b: float
    delta: float  # A - B, sign flipped for lower-is-better metrics: > 0 means A is better
    ci_low: float
    ci_high: float
    p: float  # two-sided bootstrap p-value
    p_bonferroni: float  # min(1, p × number of comparisons)
    n_defined: int  # resamples where the metric is defined (e.g. Corr of a constant resample is not)


@dataclass(frozen=True)
class BootstrapResult:
    dataset: str
    model_a: str
    model_b: str
    task: str
    seeds: list[int]
    n_samples: int
    n_resamples: int
    rng_seed: int
    ci_level: float
    comparisons: list[MetricComparison]
    excluded_seeds: dict[str, list[int]] = field(default_factory=dict)  # seeds only one run has
    condition: str = "clean"  # the test condition compared (a robustness-curve condition name)

    @property
    def n_comparisons(self) -> int:
        return len(self.comparisons)


def paired_bootstrap(
    runs_a: Sequence[SeedPredictions], runs_b: Sequence[SeedPredictions], task: str = "regression",
    metrics: Sequence[str] | None = None, n_resamples: int = 10_000, rng_seed: int = 0, ci_level: float = 0.95,
    names: tuple[str, str] = ("A", "B"), dataset: str = "",
) -> BootstrapResult:
    """Paired bootstrap of A vs B over test samples. Runs are lists of seeds; both must
    cover the same test ids (order may differ). B = 10,000 and the RNG seed is recorded."""
    if not runs_a or not runs_b:
        raise ValueError("paired bootstrap needs at least one seed of each run")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    family = metric_family(task, dataset)
    metrics = list(metrics or DEFAULT_METRICS[family])
    if unknown := [m for m in metrics if m not in SUM_METRICS[family]]:
        raise KeyError(f"metric(s) {', '.join(unknown)} not available for {dataset or task}; choose from "
                       f"{', '.join(SUM_METRICS[family])}")
    order = list(runs_a[0].ids)
    runs_a, runs_b = align(runs_a, order, names[0]), align(runs_b, order, names[1])
    labels = runs_a[0].labels
    for name, runs in zip(names, (runs_a, runs_b), strict=True):
        for r in runs:
            if not np.allclose(r.labels, labels, rtol=0, atol=1e-6):
                bad = int(np.flatnonzero(np.any((np.abs(r.labels - labels) > 1e-6).reshape(len(order), -1), 1))[0])
                raise ValueError(f"{name} seed {r.seed}: label of id {order[bad]!r} differs between result files")
    n = len(order)
    fa, sa = _feature_matrix(runs_a, metrics, family)
    fb, sb = _feature_matrix(runs_b, metrics, family)

    def values(W: np.ndarray) -> tuple[dict, dict]:
        return (_seed_mean(W @ fa, sa, metrics, family, len(runs_a)),
                _seed_mean(W @ fb, sb, metrics, family, len(runs_b)))

    sign = {m: 1.0 if METRICS[m].higher_is_better else -1.0 for m in metrics}
    obs_a, obs_b = values(np.ones((1, n)))
    rng = np.random.default_rng(rng_seed)
    deltas: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for start in range(0, n_resamples, CHUNK):
        b = min(CHUNK, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        # draw counts per sample: W[i, j] = how often sample j is in resample i
        W = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        va, vb = values(W)
        for m in metrics:
            deltas[m].append(sign[m] * (va[m] - vb[m]))
    alpha = (1.0 - ci_level) / 2
    comparisons = []
    for m in metrics:
        d = np.concatenate(deltas[m])
        d = d[np.isfinite(d)]
        if d.size:
            lo, hi = np.quantile(d, [alpha, 1 - alpha])
            p = min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0)))
        else:
            lo = hi = p = math.nan
        comparisons.append(MetricComparison(
            m, float(obs_a[m][0]), float(obs_b[m][0]), float(sign[m] * (obs_a[m][0] - obs_b[m][0])),
            float(lo), float(hi), float(p), float(min(1.0, p * len(metrics))) if d.size else math.nan, int(d.size)))
    seeds = sorted({r.seed for r in runs_a} | {r.seed for r in runs_b})
    return BootstrapResult(dataset, names[0], names[1], task, seeds, n, n_resamples, rng_seed, ci_level, comparisons)


def compare_runs(
    rs, dataset: str, run_a: str, run_b: str, seeds: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None, n_resamples: int = 10_000, rng_seed: int = 0, ci_level: float = 0.95,
    condition: str = "clean",
) -> BootstrapResult:
    """Bootstrap two runs of a `bench.report.ResultSet`, over the seeds both have (ok status);
    `bench compare` and the best/tied marks of `bench table` (bench.report.mark_cells).
    `condition`: a robustness-curve condition (e.g. random/tav/0.5) whose test predictions to compare."""
    from bench.report import dataset_task, group_runs
    from bench.report_curves import at_condition

    groups = {g.run_name: g for g in group_runs(rs, dataset)}
    for name in (run_a, run_b):
        if name not in groups or not groups[name].records:
            have = ", ".join(g for g in groups if groups[g].records) or "none"
            raise KeyError(f"no successful result files for '{name}' on '{dataset}' (runs with results: {have})")
    ga, gb = groups[run_a], groups[run_b]
    common = sorted(set(ga.records) & set(gb.records) & (set(seeds) if seeds else set(ga.records)))
    if not common:
        raise ValueError(f"'{run_a}' (seeds {sorted(ga.records)}) and '{run_b}' (seeds {sorted(gb.records)}) "
                         f"have no successful seed in common" + (f" among {sorted(seeds)}" if seeds else ""))
    task = dataset_task(rs, dataset)
    res = paired_bootstrap(
        [seed_predictions(at_condition(ga.records[s], condition), task) for s in common],
        [seed_predictions(at_condition(gb.records[s], condition), task) for s in common],
        task, metrics, n_resamples, rng_seed, ci_level, names=(run_a, run_b), dataset=dataset)
    excluded = {name: sorted(set(g.records) - set(common)) for name, g in ((run_a, ga), (run_b, gb))}
    return replace(res, excluded_seeds={k: v for k, v in excluded.items() if v}, condition=condition)


# -- output ---------------------------------------------------------------------------------------

def _fmt(metric: str, x: float, signed: bool = False) -> str:
    if not math.isfinite(x):
        return "–"
    x = x + 0.0  # no "-0.000"
    percent = METRICS[metric].percent  # points (x100), two decimals
    return format(100 * x if percent else x, ("+" if signed else "") + (".2f" if percent else ".3f"))


def _fmt_p(p: float, n_resamples: int) -> str:
    return "–" if not math.isfinite(p) else f"< {1 / n_resamples:.0e}" if p == 0 else f"{p:.4f}"


def to_markdown(res: BootstrapResult) -> str:
    from tabulate import tabulate

    pct = int(round(100 * res.ci_level))
    rows = [[c.metric, _fmt(c.metric, c.a), _fmt(c.metric, c.b), _fmt(c.metric, c.delta, True),
             f"[{_fmt(c.metric, c.ci_low, True)}, {_fmt(c.metric, c.ci_high, True)}]",
             _fmt_p(c.p, res.n_resamples), _fmt_p(c.p_bonferroni, res.n_resamples)] for c in res.comparisons]
    headers = ["Metric", res.model_a, res.model_b, "Δ (>0: A better)", f"{pct}% CI", "p", "p × m"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                     colalign=("left",) + ("right",) * 6)
    notes = [
        f"Paired bootstrap over the {res.n_samples} test samples of {res.dataset}, matched by id and seed; "
        f"seeds {', '.join(map(str, res.seeds))} (metric averaged over seeds in each resample); "
        f"B = {res.n_resamples:,} resamples, RNG seed {res.rng_seed}.",
        "Δ = A − B for higher-is-better metrics and B − A for MAE, so Δ > 0 means A is better; accuracies and F1 "
        "in points (×100). Non0 metrics drop zero labels inside each resample. Two-sided p = min(1, 2·min(share "
        "Δ_b ≤ 0, share Δ_b ≥ 0)).",
        f"{res.n_comparisons} comparisons made; p × m is the Bonferroni-adjusted p (m = {res.n_comparisons}). "
        "Seed variance is reported separately (bench table).",
    ]
    notes += [f"{name}: seed(s) {', '.join(map(str, seeds))} left out (the other run has no such seed)."
              for name, seeds in res.excluded_seeds.items()]
    notes += [f"{c.metric}: undefined in {res.n_resamples - c.n_defined} resamples (left out)."
              for c in res.comparisons if c.n_defined < res.n_resamples]
    under = "" if res.condition == "clean" else f" under {res.condition}"
    return f"### {res.model_a} vs {res.model_b} on {res.dataset}{under}\n\n{table}\n\n" + "".join(f"- {n}\n" for n in notes)


def write_comparison(res: BootstrapResult, out_dir: Path | str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    under = "" if res.condition == "clean" else "_" + res.condition.replace("/", "-")
    stem = out_dir / f"compare_{res.dataset}_{res.model_a}_vs_{res.model_b}{under}"
    md, js = stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".json")
    md.write_text(to_markdown(res))
    js.write_text(json.dumps({**asdict(res), "n_comparisons": res.n_comparisons}, indent=1))
    return [md, js]
