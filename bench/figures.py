"""Figures rendered from result files: PNG and PDF under reports/.

- `contributions_figure`: per-epoch exact Shapley value of each modality (left axis, from
  `history[i]["contributions"]["shapley"]`) and the validation main metric (right axis:
  Has0_acc_2, or mean_acc on IEMOCAP), mean over seeds with a band, the phase-switch epoch
  marked (PaSE: `model_summary["switch_epoch"]`, else the first epoch with `phase == 2`), and a
  comparison run (e.g. `pase+no_sgm`) dashed: the PaSE supplement's Fig. 1 layout.
- `predictions_figure`: test predictions vs labels, one panel per run, seeds coloured.
Seeds may stop at different epochs (early stopping): each epoch averages the seeds that reached it.
Figures are built on `matplotlib.figure.Figure` (no pyplot state, no GUI backend needed) and
returned, so tests can inspect them; every artist the tests look for carries a `gid`.
Sized for a paper column (3.3 in wide) with fonts of at least 7 pt (harness decision).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bench.report import ResultSet, dataset_task, format_seeds, group_runs, run_label
from models.constants import MODALITY_NAMES

COLUMN_WIDTH_IN = 3.3  # one column of a two-column paper (AAAI/ACL: 3.3 in)
PAPER_RC = {  # fonts >= 7 pt at print size
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "lines.linewidth": 1.3, "axes.linewidth": 0.6, "grid.linewidth": 0.4,
    "pdf.fonttype": 42,  # TrueType in PDFs (editable text, accepted by paper checkers)
}
MAIN_VALID_METRIC = {"regression": ("Has0_acc_2", "valid Acc-2 (%)"), "iemocap": ("mean_acc", "valid mean acc (%)")}


@dataclass(frozen=True)
class Curve:
    """Per-epoch mean over the seeds present at that epoch, with a band and the seed count."""
    epochs: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


def aggregate_by_epoch(series: Sequence[dict[int, float]], band: str = "std") -> Curve:
    """`series`: one {epoch: value} per seed. band: "std" (mean ± sample std; none with one seed)
    or "minmax" (range over seeds). Non-finite values are left out of their epoch."""
    if band not in ("std", "minmax"):
        raise ValueError(f"band must be 'std' or 'minmax', got '{band}'")
    epochs = sorted({e for s in series for e in s})
    rows = []  # per epoch: mean, low, high, n
    for e in epochs:
        v = np.array([s[e] for s in series if e in s and s[e] is not None], dtype=np.float64)
        v = v[np.isfinite(v)]
        m = float(v.mean()) if v.size else math.nan
        if band == "std":
            d = float(v.std(ddof=1)) if v.size > 1 else 0.0
            lo, hi = m - d, m + d
        else:
            lo, hi = (float(v.min()), float(v.max())) if v.size else (math.nan, math.nan)
        rows.append((m, lo, hi, v.size))
    return Curve(np.array(epochs), *(np.array(c) for c in (list(zip(*rows, strict=True)) or [(), (), (), ()])))


def shapley_series(records: Sequence[dict[str, Any]], modality: str) -> list[dict[int, float]]:
    return [{int(h["epoch"]): h["contributions"]["shapley"][modality] for h in r.get("history", [])
             if isinstance(h.get("contributions"), dict) and "shapley" in h["contributions"]} for r in records]


def valid_series(records: Sequence[dict[str, Any]], key: str, scale: float = 100.0) -> list[dict[int, float]]:
    return [{int(h["epoch"]): scale * h["valid"][key] for h in r.get("history", [])
             if isinstance(h.get("valid"), dict) and h["valid"].get(key) is not None} for r in records]


def switch_epochs(records: Sequence[dict[str, Any]]) -> list[int]:
    """Each seed's phase-switch epoch: model_summary.switch_epoch, else the first epoch in phase 2."""
    values = [v if (v := (r.get("model_summary") or {}).get("switch_epoch")) is not None
              else next((h["epoch"] for h in r.get("history", []) if h.get("phase") == 2), None) for r in records]
    return [int(v) for v in values if v is not None]


def figure_style():
    """seaborn 'ticks' style with paper-size fonts, as a context manager."""
    import contextlib

    import matplotlib as mpl
    import seaborn as sns

    stack = contextlib.ExitStack()
    stack.enter_context(sns.axes_style("ticks", {"axes.grid": True, "grid.color": "0.9"}))
    stack.enter_context(mpl.rc_context(PAPER_RC))
    return stack


def contributions_figure(runs: Mapping[str, Sequence[dict[str, Any]]], task: str = "regression", band: str = "std",
                         title: str | None = None):
    """`runs`: run name -> its ok records; the first run is drawn solid, the next ones dashed.
    Returns the matplotlib Figure (left axis Shapley values, right axis validation metric)."""
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    if not runs:
        raise ValueError("no runs to plot")
    key, right_label = MAIN_VALID_METRIC[task]
    if task == "regression" and not any(any(valid_series(rs, key)) for rs in runs.values()):
        key = "Mult_acc_2"  # CH-SIMS results: MMSA's SIMS Acc-2 (bench.metrics.sims_regression_metrics)
    styles = ["-", "--", ":", "-."]  # run k is drawn with styles[k]: solid = the model, dashed = --compare
    colors = dict(zip(MODALITY_NAMES, sns.color_palette("colorblind", 3), strict=True))
    valid_color, switch_color = "0.35", "#8c1c13"
    with figure_style():
        fig = Figure(figsize=(COLUMN_WIDTH_IN, 2.7), layout="constrained")
        ax = fig.add_subplot()
        ax2 = ax.twinx()
        ax2.grid(False)
        for k, (name, records) in enumerate(runs.items()):
            ls = styles[k % len(styles)]
            for m in MODALITY_NAMES:
                c = aggregate_by_epoch(shapley_series(records, m), band)
                (line,) = ax.plot(c.epochs, c.mean, ls, color=colors[m])
                line.set_gid(f"shapley:{name}:{m}")
                ax.fill_between(c.epochs, c.low, c.high, color=colors[m], alpha=0.18 if k == 0 else 0.08, lw=0)
            v = aggregate_by_epoch(valid_series(records, key), band)
            if v.epochs.size:
                ax2.plot(v.epochs, v.mean, ls, color=valid_color, lw=1.0)[0].set_gid(f"valid:{name}")
            if switches := switch_epochs(records):  # the mean over seeds; the range over seeds shaded when they differ
                ax.axvline(float(np.mean(switches)), color=switch_color, ls=ls, lw=0.9).set_gid(f"switch:{name}")
                if min(switches) != max(switches):
                    ax.axvspan(min(switches), max(switches), color=switch_color, alpha=0.08, lw=0).set_gid(
                        f"switch_range:{name}")
        ax.axhline(0.0, color="0.6", lw=0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("Shapley value" + (" (−MAE)" if task == "regression" else " (accuracy)"))
        ax2.set_ylabel(right_label)
        ax.set_zorder(ax2.get_zorder() + 1)  # modality curves above the validation curve
        ax.patch.set_visible(False)
        # one compact legend: colours = quantities, line styles = runs
        handles = [Line2D([], [], color=colors[m], label=full) for m, full in MODALITY_NAMES.items()]
        handles.append(Line2D([], [], color=valid_color, lw=1.0, label=right_label.split(" (")[0]))
        if len(runs) > 1:
            handles += [Line2D([], [], color="0.1", ls=styles[k % len(styles)], label=run_label(name, recs))
                        for k, (name, recs) in enumerate(runs.items())]
        if any(switch_epochs(r) for r in runs.values()):
            handles.append(Line2D([], [], color=switch_color, lw=0.9, label="phase switch"))
        fig.legend(handles=handles, loc="outside upper center", ncol=3, frameon=False, handlelength=1.8,
                   columnspacing=1.0)
        if title:
            ax.set_title(title)
    return fig


def predictions_figure(runs: Mapping[str, Sequence[dict[str, Any]]], title: str | None = None):
    """One panel per run: test predictions vs labels (all seeds; a seed has one colour in every
    panel, named in the legend), y = x line, test MAE (mean over seeds) in the panel title. Regression only."""
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not runs:
        raise ValueError("no runs to plot")
    seeds = sorted({int(r["seed"]) for records in runs.values() for r in records})
    seed_color = dict(zip(seeds, sns.color_palette("colorblind", len(seeds)), strict=True))
    ncols = min(3, len(runs))
    nrows = math.ceil(len(runs) / ncols)
    width = COLUMN_WIDTH_IN if ncols == 1 else 2.3 * ncols
    with figure_style():
        fig = Figure(figsize=(width, 2.3 * nrows + 0.2), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        for ax in axes.ravel()[len(runs):]:
            ax.set_visible(False)
        for ax, (name, records) in zip(axes.ravel(), runs.items(), strict=False):
            lo, hi, maes = -3.0, 3.0, []
            for r in records:
                color = seed_color[int(r["seed"])]
                p = np.asarray(r["predictions"]["preds"], dtype=np.float64).reshape(-1)
                y = np.asarray(r["predictions"]["labels"], dtype=np.float64).reshape(-1)
                lo, hi = min(lo, p.min(), y.min()), max(hi, p.max(), y.max())
                maes.append(float(np.mean(np.abs(p - y))))  # = metrics.test.MAE, from the stored predictions
                dots = ax.scatter(y, p, s=3, alpha=0.45, color=color, lw=0, label=f"seed {r['seed']}")
                dots.set_gid(f"scatter:{name}:{r['seed']}")
            ax.plot([lo, hi], [lo, hi], "--", color="0.3", lw=0.8)[0].set_gid(f"identity:{name}")
            mae = float(np.mean(maes))
            ax.set_title(f"{run_label(name, records)}: MAE {mae:.3f} ({len(records)} seed{'s' if len(records) > 1 else ''})")
            ax.set_xlabel("label")
            ax.set_ylabel("prediction")
            ax.set_aspect("equal", adjustable="box")
        handles = [Line2D([], [], ls="", marker="o", ms=4, color=c, label=f"seed {s}") for s, c in seed_color.items()]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), frameon=False,
                   handletextpad=0.2, columnspacing=1.0)
        if title:
            fig.suptitle(title)
    return fig


def save_figure(fig, out_dir: Path | str, stem: str) -> list[Path]:
    """PNG (300 dpi) and PDF."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=300)
    return paths


# -- from a ResultSet -----------------------------------------------------------------------------

def _ok_runs(rs: ResultSet, dataset: str, seeds: Sequence[int] | None,
             keep: Callable[[dict[str, Any]], bool]) -> dict[str, list[dict[str, Any]]]:
    """Run name -> its ok records (of `seeds`) for which `keep(record)`; runs without one are left out."""
    runs = {g.run_name: [g.records[s] for s in sorted(g.records) if (not seeds or s in seeds) and keep(g.records[s])]
            for g in group_runs(rs, dataset)}
    return {name: records for name, records in runs.items() if records}


def contributions_for_runs(rs: ResultSet, dataset: str, model: str, compare: str | None = None, band: str = "std",
                           seeds: Sequence[int] | None = None):
    """The contribution figure of `model` on `dataset`. compare: a run drawn dashed; None means
    `<model>+no_sgm` when that run has contribution history (the PaSE supplement's with/without
    SGM comparison), "none" means no comparison. Returns (Figure, compare run used or None)."""
    runs = _ok_runs(rs, dataset, seeds, lambda r: any(isinstance(h.get("contributions"), dict)
                                                      for h in r.get("history", [])))
    if model not in runs:
        have = ", ".join(runs) or "none"
        raise KeyError(f"no result files with contribution history for '{model}' on '{dataset}' "
                       f"(runs with it: {have}); was it run with --no-contributions?")
    if compare is None:
        compare = f"{model}+no_sgm" if f"{model}+no_sgm" in runs else None
    elif compare.lower() == "none":
        compare = None
    elif compare not in runs:
        raise KeyError(f"no result files with contribution history for '{compare}' on '{dataset}' "
                       f"(runs with it: {', '.join(runs)})")
    chosen = {model: runs[model], **({compare: runs[compare]} if compare else {})}
    fig = contributions_figure(chosen, dataset_task(rs, dataset), band, runs_title(chosen, dataset))
    return fig, compare


def runs_title(runs: Mapping[str, Sequence[dict[str, Any]]], dataset: str) -> str:
    """'PaSE on synthetic, seeds 1111–1113' and, per further run, a line with its own seeds."""
    def seeds(records: Sequence[dict[str, Any]]) -> str:
        found = sorted({int(r["seed"]) for r in records})
        return f"seed{'s' if len(found) > 1 else ''} {format_seeds(found)}"

    (first, records), *others = runs.items()
    lines = [f"{run_label(first, records)} on {dataset}, {seeds(records)}"]
    return "\n".join(lines + [f"{run_label(name, recs)}: {seeds(recs)}" for name, recs in others])


def predictions_for_runs(rs: ResultSet, dataset: str, models: Sequence[str] | None = None,
                         seeds: Sequence[int] | None = None):
    if dataset_task(rs, dataset) != "regression":
        raise ValueError(f"'{dataset}' is not a regression dataset; the prediction scatter needs continuous labels")
    runs = _ok_runs(rs, dataset, seeds, lambda r: isinstance(r.get("predictions"), dict))
    if models:
        if missing := [m for m in models if m not in runs]:
            raise KeyError(f"no result files with predictions for {', '.join(missing)} on '{dataset}' "
                           f"(available: {', '.join(runs) or 'none'})")
        runs = {m: runs[m] for m in models}
    if not runs:
        raise KeyError(f"no result files with predictions on '{dataset}'")
    return predictions_figure(runs, f"Test predictions on {dataset}")


# -- tuning (`bench tune`) --------------------------------------------------------------------------

def tuning_figure(history: Sequence[dict[str, Any]], importances: dict[str, float], metric: str,
                  direction: str = "minimize", title: str | None = None):
    """Optimisation history (each trial's validation value: complete trials filled, pruned ones
    hollow at their last reported epoch, failed ones marked on the axis; the best so far as a
    step line) above the parameter importances (Optuna's fANOVA, when it can be computed)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    colors = sns.color_palette("colorblind", 3)
    with figure_style():
        fig = Figure(figsize=(COLUMN_WIDTH_IN, 4.4), layout="constrained")
        ax, bx = fig.subplots(2, 1, height_ratios=(1.2, 1.0))
        done = [h for h in history if h["state"] == "complete" and h["value"] is not None]
        pruned = [h for h in history if h["state"] == "pruned" and h["value"] is not None]
        failed = [h for h in history if h["state"] == "fail"]
        if done:
            ax.scatter([h["number"] for h in done], [h["value"] for h in done], s=14, color=colors[0],
                       label="complete", zorder=3, gid="tuning:complete")
        if pruned:
            ax.scatter([h["number"] for h in pruned], [h["value"] for h in pruned], s=14, facecolors="none",
                       edgecolors=colors[1], label="pruned (last epoch)", zorder=3, gid="tuning:pruned")
        if done:
            ordered = sorted(done, key=lambda h: h["number"])
            best = list(itertools.accumulate((h["value"] for h in ordered), min if direction == "minimize" else max))
            ax.step([h["number"] for h in ordered], best, where="post", color="0.3", lw=1.0, label="best so far",
                    gid="tuning:best")
        if failed:
            ax.plot([h["number"] for h in failed], [0] * len(failed), "x", color=colors[2], ms=4,
                    transform=ax.get_xaxis_transform(), clip_on=False, label="failed", gid="tuning:failed")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"valid {metric}")
        if done or pruned or failed:
            ax.legend(frameon=False, loc="best")
        if title:
            ax.set_title(title)
        if importances:
            names = list(importances)[::-1]  # most important on top
            bx.barh(names, [importances[n] for n in names], color=colors[0], gid="tuning:importances")
            bx.set_xlabel("importance (fANOVA)")
        else:
            bx.text(0.5, 0.5, "importances need 2+ complete trials\nwith differing values",
                    ha="center", va="center", transform=bx.transAxes, gid="tuning:no_importances")
            bx.set_axis_off()
    return fig
