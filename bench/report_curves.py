"""Robustness-curve reports from result files: `bench table --curves` and `bench figure curves`.

A curve is one condition family (kind and target modalities, e.g. random missing of "tav")
over its levels; level 0 is the run's clean test pass (`robustness_curves.conditions.clean`).
The family names come from the stored condition names (`kind/modalities/level`), so reports
need neither torch nor the condition code.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from bench.results import CLEAN
from bench.report import (
    ROBUSTNESS_METRICS, Column, ResultSet, Row, RunGroup, Table, run_rows, seed_note, dataset_task, expected_seeds,
    group_runs, metric_column, summarize,
)

KIND_ORDER = ("random", "structural", "noise")
KIND_LABEL = {"random": "random missing", "structural": "structural missing", "noise": "Gaussian noise"}


def has_curves(record: dict[str, Any]) -> bool:
    return isinstance((record.get("robustness_curves") or {}).get("conditions"), dict)


def families(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """{(kind, modalities): sorted levels, 0 first}: the levels every record that has the
    family scored (a level only some runs have, e.g. one `bench evaluate` added, is left out,
    so rows and areas compare the same points)."""
    out: dict[tuple[str, str], set[float]] = {}
    for r in records:
        mine: dict[tuple[str, str], set[float]] = {}
        for name in (r.get("robustness_curves") or {}).get("conditions", {}):
            parts = name.split("/")
            if len(parts) == 3:
                mine.setdefault((parts[0], parts[1]), {0.0}).add(float(parts[2]))
        for fam, levels in mine.items():
            out[fam] = out[fam] & levels if fam in out else levels
    order = lambda f: (KIND_ORDER.index(f[0]) if f[0] in KIND_ORDER else 9, len(f[1]), "tav".find(f[1][0]), f)  # noqa: E731
    return {f: sorted(out[f]) for f in sorted(out, key=order)}


def curve(record: dict[str, Any], family: tuple[str, str], levels: Sequence[float], metric: str) -> list[float]:
    """The record's `metric` at each level of `family` (NaN where not scored; level 0: clean)."""
    conds = record["robustness_curves"]["conditions"]
    names = [CLEAN if lv == 0 else f"{family[0]}/{family[1]}/{lv:g}" for lv in levels]
    return [float(conds[n][metric]) if n in conds and conds[n].get(metric) is not None else math.nan for n in names]


def area(levels: Sequence[float], values: Sequence[float]) -> float:
    """Area under the curve (trapezoids) divided by the level range: the curve's mean height.
    NaN when a level is missing."""
    x, y = np.asarray(levels, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(x) < 2 or not np.isfinite(y).all():
        return math.nan
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def curves_table(dataset: str, groups: Sequence[RunGroup], expected: Sequence[int], task: str, kinds: Sequence[str],
                 seeds_given: bool = False) -> Table | None:
    """One row per (condition family, run): the main metric at each level and the normalised AUC."""
    metric, header = ROBUSTNESS_METRICS[task][0]
    base = metric_column(metric, header)
    records = [r for g in groups for r in g.ok(expected) if has_curves(r)]
    fams = {f: lv for f, lv in families(records).items() if f[0] in kinds}
    if not fams:
        return None
    levels = sorted({lv for lvs in fams.values() for lv in lvs})
    columns = [Column(f"{lv:g}", f"{lv:g}", base.scale, base.decimals, base.higher_is_better) for lv in levels]
    columns.append(Column("auc", "AUC", base.scale, base.decimals, base.higher_is_better))
    rows: list[Row] = []
    notes: list[str] = []
    for fam, lvs in fams.items():
        def cells_of(ok: list[dict], fam=fam, lvs=lvs) -> dict:
            per_seed = [curve(r, fam, lvs, metric) for r in ok]
            cells: dict = {f"{lv:g}": summarize(v[i] for v in per_seed) for i, lv in enumerate(lvs)}
            cells["auc"] = summarize(area(lvs, v) for v in per_seed)
            return cells

        fam_rows, gaps = run_rows(groups, expected, columns, cells_of, what="robustness curves", has_data=has_curves)
        for row in fam_rows:
            row.label = f"{KIND_LABEL.get(fam[0], fam[0])} {fam[1]} · {row.label}"
        rows += fam_rows
        notes += [n for n in gaps if n not in notes]
    if "noise" in kinds:
        what = ("noise level: Gaussian noise of std level × the modality's feature std (over the split's valid "
                "steps) added to every valid step of the named modalities")
    else:
        what = ("missing rate: round(rate × n) of each sample's n valid steps of the named modalities go missing "
                "(random: anywhere; structural: one contiguous block); text tokens become [UNK], feature steps 0")
    notes = [seed_note(expected, seeds_given),
             f"Test split, the selected model under each condition; columns: the {what}; 0 = the clean test pass. "
             f"{header}{' ×100' if base.scale == 100 else ''}. Masks and noise from the recorded seed, the same "
             "for every model. AUC: area under the curve divided by the level range (the curve's mean height).",
             *notes]
    name = "noise" if "noise" in kinds else "missing"
    return Table(f"curves_{name}_{dataset}", f"{dataset}: robustness curves, {name} (test)", columns, rows, notes,
                 len(expected), first_header="Condition · model")


def curves_tables(rs: ResultSet, datasets: Sequence[str], models: Sequence[str] | None = None,
                  seeds: Sequence[int] | None = None) -> list[Table]:
    """The missing-data and the noise curve tables of each dataset with curves."""
    tables = []
    for dataset in datasets:
        groups = group_runs(rs, dataset, models)
        expected = expected_seeds(group_runs(rs, dataset), seeds)
        task = dataset_task(rs, dataset)
        for kinds in (("random", "structural"), ("noise",)):
            t = curves_table(dataset, groups, expected, task, kinds, bool(seeds))
            if t is not None:
                tables.append(t)
    return tables


def curves_figure(rs: ResultSet, dataset: str, models: Sequence[str] | None = None,
                  seeds: Sequence[int] | None = None):
    """One panel per condition family, one line per run (seed mean) with a ±1 sample-std band."""
    import matplotlib.pyplot as plt

    from bench.figures import COLUMN_WIDTH_IN, figure_style

    groups = [g for g in group_runs(rs, dataset, models) if any(has_curves(r) for r in g.records.values())]
    runs = {g.label: [r for s, r in sorted(g.records.items()) if has_curves(r) and (not seeds or s in seeds)]
            for g in groups}
    runs = {k: v for k, v in runs.items() if v}
    if not runs:
        raise KeyError(f"no result files with robustness curves on '{dataset}' (run with --robustness-curves, "
                       "or --save-state and then `bench evaluate`)")
    task = dataset_task(rs, dataset)
    metric, header = ROBUSTNESS_METRICS[task][0]
    scale = metric_column(metric, header).scale
    fams = families([r for v in runs.values() for r in v])
    ncols = 4
    nrows = -(-len(fams) // ncols)
    with figure_style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(2 * COLUMN_WIDTH_IN, 1.5 * nrows + 0.6), squeeze=False,
                                 sharey=True)
        for ax, (fam, levels) in zip(axes.flat, fams.items(), strict=False):  # spare panels hidden below
            for i, (label, records) in enumerate(runs.items()):
                y = np.array([curve(r, fam, levels, metric) for r in records]) * scale
                mean = np.nanmean(y, axis=0)
                std = np.nanstd(y, axis=0, ddof=1) if len(y) > 1 else np.zeros_like(mean)
                ax.plot(levels, mean, marker="o", ms=2, lw=1, color=f"C{i}", label=label)
                ax.fill_between(levels, mean - std, mean + std, color=f"C{i}", alpha=0.2, lw=0)
            ax.set_title(f"{KIND_LABEL.get(fam[0], fam[0])}: {fam[1]}")
            ax.set_xlabel("noise level (× std)" if fam[0] == "noise" else "missing rate")
        for ax in axes.flat[len(fams):]:
            ax.set_visible(False)
        for row in axes:
            row[0].set_ylabel(f"test {header}{' (%)' if scale == 100 else ''}")
        n = sorted({len(v) for v in runs.values()})
        axes.flat[0].legend(loc="lower left", frameon=False)
        fig.suptitle(f"{dataset}: robustness curves (mean ± 1 std over {'/'.join(map(str, n))} seed{'s' if n[-1] > 1 else ''})")
        fig.tight_layout()
    return fig


def at_condition(record: dict[str, Any], condition: str) -> dict[str, Any]:
    """The record with its test predictions replaced by those under `condition` ('clean': as is)."""
    if condition == CLEAN:
        return record
    where = f"{record.get('dataset')}/{record.get('run_name')}/seed{record.get('seed')}"
    curves = record.get("robustness_curves") or {}
    preds = (curves.get("predictions") or {}).get(condition)
    if preds is None:
        have = ", ".join(list(curves.get("predictions") or {})[:4]) or "none"
        raise KeyError(f"{where}: no predictions under condition '{condition}' [key=robustness_curves.predictions] "
                       f"(have: {have}...); run with --robustness-curves, or --save-state and `bench evaluate`")
    return {**record, "predictions": {**record["predictions"], "ids": curves["ids"], "preds": preds}}
