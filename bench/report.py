"""Tables rendered from result files.

Pure functions of the result files: nothing here trains, imports torch or looks at a live model.
The flow is: `load_result_set(root)` -> `build_tables(...)` -> `Table`s -> `to_markdown`,
`to_latex`, `to_csv` -> `write_tables`.

Row names and order come from each model's registration (`bench.catalog.model_meta`), a model's
variants right after it; one row per run name (`pase`, `pase+no_sgm`, ...), mean ± sample std over
seeds (`summarize`, `format_cell`); the best mean of a column is bold only when the paired
bootstrap of `bench compare` separates it from every other run, else it and the runs within noise
are marked tied (`Ranking`, `mark_cells`; msabench rows only). Gaps are visible (`gap_note`): n/N
and a note per failed, missing or unreadable seed; "n/a" for a model that cannot run on a dataset.
Expected seeds (harness decision): `--seeds`, else the union of the seeds found for that dataset
over all runs, so one crashed or missing seed of one model shows as a gap against the others.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from bench.catalog import model_meta, row_label
from bench.results import ResultFileError, iter_result_files, load_result, with_evaluated_curves
from models.constants import EMOTIONS, METRICS, SIMS_DATASETS

DATASET_ORDER = ("synthetic", "mosi", "mosei", "sims", "simsv2", "iemocap")
# ablation switch names as the PaSE paper prints them
SWITCH_NAMES = {"sgm": "SGM", "cal": "CAL", "pcl": "PCL", "gate": "gate", "dual_phase": "dual phase"}

REGRESSION_COLUMNS = (
    ("Has0_acc_2", "Acc-2 has0"), ("Non0_acc_2", "Acc-2 non0"), ("Has0_F1_score", "F1 has0"),
    ("Non0_F1_score", "F1 non0"), ("Mult_acc_7", "Acc-7"), ("MAE", "MAE"), ("Corr", "Corr"),
)
SIMS_COLUMNS = (  # MMSA's SIMS metrics (metricsTop.py __eval_sims_regression), as MMSA's tables print them
    ("Mult_acc_2", "Acc-2"), ("Mult_acc_3", "Acc-3"), ("Mult_acc_5", "Acc-5"), ("F1_score", "F1"), ("MAE", "MAE"),
    ("Corr", "Corr"),
)
IEMOCAP_TABLE_ORDER = ("Happy", "Sad", "Angry", "Neutral")  # MulT and PaSE print this order
assert set(IEMOCAP_TABLE_ORDER) == set(EMOTIONS)
IEMOCAP_COLUMNS = tuple((f"{kind}_{e}", f"{e} {kind}") for e in IEMOCAP_TABLE_ORDER for kind in ("Acc", "F1"))
COALITIONS = ("t", "a", "v", "ta", "tv", "av", "tav")
ROBUSTNESS_METRICS = {"regression": (("Has0_acc_2", "Acc-2"), ("MAE", "MAE")), "iemocap": (("mean_acc", "mean acc"),),
                      "sims": (("Mult_acc_2", "Acc-2"), ("MAE", "MAE"))}
SIMS_NOTE = ("Test split. Accuracies and weighted F1 ×100; MAE and Corr unscaled. MMSA's CH-SIMS definitions: "
             "predictions and labels clipped to [-1, 1]; Acc-2 bins [-1, 0] (0, 1], Acc-3 [-1, -0.1] (-0.1, 0.1] "
             "(0.1, 1], Acc-5 [-1, -0.7] (-0.7, -0.1] (-0.1, 0.1] (0.1, 0.7] (0.7, 1]; F1 weighted over the Acc-2 "
             "classes; MAE and Corr of the clipped values. Lower MAE is better.")

DASH = "–"  # en dash: "no value" (and the std of a single seed)


# -- loading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """A result file that could not be read; it still counts as a (failed) seed of its run."""
    path: str
    dataset: str
    run_name: str
    seed: int | None
    message: str


@dataclass
class ResultSet:
    records: list[dict[str, Any]]
    problems: list[Problem] = field(default_factory=list)
    # (dataset, run name) -> the study summary a `<model>+tuned` run came from (its tuning.json)
    tuning: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def datasets(self) -> list[str]:
        return sort_datasets({r["dataset"] for r in self.records} | {p.dataset for p in self.problems})


def load_result_set(root: Path | str) -> ResultSet:
    """Every result file under root; unreadable files become `Problem`s instead of aborting."""
    records, problems = [], []
    for path in iter_result_files(Path(root)):
        try:
            records.append(with_evaluated_curves(load_result(path), path))  # + `bench evaluate`'s curves
        except (ResultFileError, OSError) as err:
            m = re.fullmatch(r"seed(-?\d+)", path.stem)
            problems.append(Problem(str(path), path.parent.parent.name, path.parent.name,
                                    int(m.group(1)) if m else None, str(err)))
    tuning = {}
    for path in sorted(Path(root).glob("*/*/tuning.json")) if Path(root).is_dir() else []:
        with contextlib.suppress(OSError, ValueError):  # unreadable: the row reads "(tuned)" without its budget
            tuning[(path.parent.parent.name, path.parent.name)] = json.loads(path.read_text())
    return ResultSet(records, problems, tuning)


def sort_datasets(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=lambda d: (DATASET_ORDER.index(d) if d in DATASET_ORDER else len(DATASET_ORDER), d))


def display_name(run_name: str, model: str | None = None, tuning: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None) -> str:
    """'pase' -> 'PaSE'; 'pase+no_sgm' -> 'PaSE w/o SGM'; 'mult+lr=0.0001' -> 'MulT (lr=0.0001)';
    'mult+tuned' with its study summary -> 'MulT (tuned, 50 trials)'. The model's part is its row
    label (`bench.catalog.row_label`) for the run's model `config` (a result file's config.model)."""
    base, *tags = run_name.split("+")
    if model is not None and base != model:  # a --variant name chosen by the user
        return f"{row_label(model, config)} [{run_name}]"
    without = [SWITCH_NAMES.get(t[3:], t[3:]) for t in tags if t.startswith("no_")]
    other = [f"tuned, {tuning_budget_text(tuning)}" if t == "tuned" and tuning else t
             for t in tags if not t.startswith("no_")]
    return (row_label(base, config) + (" w/o " + ", ".join(without) if without else "")
            + (" (" + ", ".join(other) + ")" if other else ""))


def model_config(record: dict[str, Any]) -> dict[str, Any] | None:
    """The resolved model config a result file records (None when it has none)."""
    config = (record.get("config") or {}).get("model")
    return config if isinstance(config, dict) else None


def run_label(run_name: str, records: Sequence[dict[str, Any]]) -> str:
    """`display_name` of a run from its result files (their model and model config)."""
    first = records[0] if records else {}
    return display_name(run_name, first.get("model"), config=model_config(first))


def format_seeds(seeds: Iterable[int]) -> str:
    """[1111, 1112, 1113, 1115] -> '1111–1113, 1115'."""
    runs: list[list[int]] = []  # consecutive seeds; a run of three or more is shown as a range
    for s in sorted(set(seeds)):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ", ".join(f"{r[0]}{DASH}{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


# -- runs grouped by (dataset, run name) ----------------------------------------------------------

@dataclass
class RunGroup:
    dataset: str
    run_name: str
    model: str
    records: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> ok record
    failed: dict[int, str] = field(default_factory=dict)  # seed -> "Type: message"
    unreadable: dict[int, str] = field(default_factory=dict)  # seed -> problem
    unsupported: str | None = None  # registry reason, for a model asked for by name that cannot run
    tuning: dict[str, Any] | None = None  # the study summary of a `<model>+tuned` run
    config: dict[str, Any] | None = None  # the model config of its first result file (row labels read it)

    @property
    def label(self) -> str:
        return display_name(self.run_name, self.model, self.tuning, self.config)

    def seeds(self) -> set[int]:
        return set(self.records) | set(self.failed) | set(self.unreadable)

    def ok(self, expected: Sequence[int]) -> list[dict[str, Any]]:
        return [self.records[s] for s in expected if s in self.records]


def _error_text(record: dict[str, Any]) -> str:
    err = record.get("error") or {}
    message = str(err.get("message", "no error message recorded")).strip().splitlines()
    first = message[0] if message else ""
    first = first if len(first) <= 160 else first[:157] + "..."
    return f"{err.get('type', 'Error')}: {first}"


def _matches(group: RunGroup, pattern: str) -> bool:
    return fnmatch.fnmatchcase(group.run_name, pattern) or fnmatch.fnmatchcase(group.model, pattern)


def group_runs(rs: ResultSet, dataset: str, models: Sequence[str] | None = None,
               unsupported: dict[str, str] | None = None) -> list[RunGroup]:
    """Runs of one dataset in table order. `models`: registry names, run names or wildcards
    ('pase' also selects its variants 'pase+no_sgm'); their order is the row order. A name that
    matches nothing gets a placeholder row: "n/a" when `unsupported` gives a reason for it,
    otherwise a row with no seeds, so an absent model is never silently left out."""
    groups: dict[str, RunGroup] = {}
    for r in rs.records:
        if r["dataset"] != dataset:
            continue
        g = groups.setdefault(r["run_name"], RunGroup(dataset, r["run_name"], r["model"],
                                                      tuning=rs.tuning.get((dataset, r["run_name"])),
                                                      config=model_config(r)))
        if r.get("status") == "ok":
            g.records[int(r["seed"])] = r
        else:
            g.failed[int(r["seed"])] = _error_text(r)
    for p in rs.problems:
        if p.dataset == dataset:
            g = groups.setdefault(p.run_name, RunGroup(dataset, p.run_name, p.run_name.split("+")[0]))
            g.unreadable[p.seed if p.seed is not None else -1] = p.message
    ordered = sorted(groups.values(), key=lambda g: (model_meta(g.model)["order"], g.model, g.run_name != g.model,
                                                     g.run_name))
    if not models:
        return ordered
    out: list[RunGroup] = []
    for pattern in models:
        hits = [g for g in ordered if _matches(g, pattern) and g not in out]
        if not hits and not any(c in pattern for c in "*?[") and not any(_matches(g, pattern) for g in out):
            hits = [RunGroup(dataset, pattern, pattern.split("+")[0], unsupported=(unsupported or {}).get(pattern))]
        out += hits
    return out


def expected_seeds(groups: Sequence[RunGroup], seeds: Sequence[int] | None = None) -> list[int]:
    return sorted(set(seeds) if seeds else set().union(*(g.seeds() for g in groups)))


def gap_note(group: RunGroup, expected: Sequence[int]) -> str | None:
    """'MulT: 3/5 seeds — seed 1114 failed (RuntimeError: ...); seed 1115: no result file.'"""
    if group.unsupported:
        return f"{group.label}: n/a on {group.dataset}: {group.unsupported}."
    parts = [f"seed {s} failed ({group.failed[s]})" if s in group.failed
             else f"seed {s}: unreadable result file ({group.unreadable[s]})" if s in group.unreadable
             else f"seed {s}: no result file" for s in expected if s not in group.records]
    return f"{group.label}: {len(group.ok(expected))}/{len(expected)} seeds — {'; '.join(parts)}." if parts else None


# -- statistics and table model -------------------------------------------------------------------

@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample std (ddof = 1); NaN when n < 2
    n: int  # finite values aggregated; 0 = no value
    published: bool = False  # a single published number: shown without std or n


def summarize(values: Iterable[float | None]) -> Stat:
    """Mean ± sample std over the finite values (NaN and missing values are left out)."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return Stat(math.nan, math.nan, 0)
    return Stat(float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan, int(arr.size))


def published(value: float) -> Stat:
    return Stat(float(value), math.nan, 1, published=True)


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    scale: float = 1.0  # displayed value = stored value × scale (100 for accuracies/F1)
    decimals: int = 3
    higher_is_better: bool | None = None  # None: the column is not ranked
    integer: bool = False  # counts: thousands separators; std shown only when seeds differ


def metric_column(key: str, header: str) -> Column:
    info = METRICS[key]
    return Column(key, header, 100.0 if info.percent else 1.0, 2 if info.percent else 3, info.higher_is_better)


Cell = Stat | str


@dataclass
class Row:
    label: str
    cells: dict[str, Cell]
    n: str  # text of the n column
    n_ok: int = 0  # seeds the row aggregates; a cell with fewer shows its own n
    kind: str = "run"  # run | reference | baseline; only "run" rows are ranked
    run_name: str | None = None


@dataclass
class Table:
    name: str  # file stem under reports/, e.g. table_synthetic
    title: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    n_expected: int | None = None  # seeds each run row should aggregate
    first_header: str = "Model"
    marks: dict[str, dict[int, str]] = field(default_factory=dict)  # column key -> row index -> BEST | TIED


def _fmt_number(x: float, col: Column) -> str:
    return f"{x:,.0f}" if col.integer else f"{x:.{col.decimals}f}"


def format_cell(cell: Cell | None, col: Column, n_ok: int) -> str:
    if isinstance(cell, str):
        return cell
    if cell is None or cell.n == 0:
        return DASH
    mean = _fmt_number(cell.mean * col.scale, col)
    if cell.published:
        return mean
    if col.integer:
        text = mean if not (cell.std > 0) else f"{mean} ± {_fmt_number(cell.std * col.scale, col)}"
    else:
        text = f"{mean} ± {DASH if cell.n < 2 else _fmt_number(cell.std * col.scale, col)}"
    return text + (f" (n={cell.n})" if cell.n < n_ok else "")


BEST, TIED = "best", "tied"
TIE_MARK = "†"


@dataclass(frozen=True)
class Ranking:
    """How a column's best value is marked: bold when the paired bootstrap over test samples and
    seeds (`bench compare`) separates it from every other run at `ci_level`; else tied."""
    n_resamples: int = 10_000  # bench compare's default B
    rng_seed: int = 0
    ci_level: float = 0.95

    def note(self) -> str:
        return (f"Bold: the best mean of a column, only when a paired bootstrap (as `bench compare`: test samples "
                f"resampled, matched by sample id and by the seeds both runs have; B = {self.n_resamples:,}, "
                f"RNG seed {self.rng_seed}) puts the {100 * self.ci_level:g}% interval of its difference from "
                f"every other run above zero (alpha = {1 - self.ci_level:.2g}, two-sided); otherwise {TIE_MARK} "
                f"marks it and each run not separated from it (tied within noise). Reference rows and the "
                f"majority baseline are not ranked.")


def mark_cells(rs: ResultSet, dataset: str, rows: Sequence[Row], columns: Sequence[Column],
               expected: Sequence[int], ranking: Ranking) -> tuple[dict[str, dict[int, str]], list[str]]:
    """Per ranked column, the best run row -> BEST when the bootstrap separates it from every other
    run row with a value; else it and each row not separated from it -> TIED. Also notes on the
    pairs that could not be compared (e.g. no stored predictions): they count as not separated."""
    from bench.compare import compare_runs

    ranked = [c for c in columns if c.higher_is_better is not None]
    tests: dict[tuple[str, str], dict[str, float] | str] = {}

    def separated(a: str | None, b: str | None, metric: str) -> bool:
        if a is None or b is None:
            return False
        if (a, b) not in tests:
            try:
                res = compare_runs(rs, dataset, a, b, expected, [c.key for c in ranked], ranking.n_resamples,
                                   ranking.rng_seed, ranking.ci_level)
                tests[(a, b)] = {c.metric: c.ci_low for c in res.comparisons}
            except (KeyError, ValueError) as err:
                tests[(a, b)] = str(err.args[0] if err.args else err)
        low = tests[(a, b)]
        return isinstance(low, dict) and low[metric] > 0  # NaN (undefined) is not separated

    marks: dict[str, dict[int, str]] = {}
    for col in ranked:
        values = _run_means(rows, col.key)
        if len(values) < 2:
            continue
        best = (max if col.higher_is_better else min)(values, key=lambda i: values[i])
        tied = [i for i in values if i != best and not separated(rows[best].run_name, rows[i].run_name, col.key)]
        marks[col.key] = {i: TIED for i in [best, *tied]} if tied else {best: BEST}
    notes = [f"Not compared ({a} vs {b}), counted as tied: {why}" for (a, b), why in tests.items() if isinstance(why, str)]
    return marks, notes


def _run_means(rows: Sequence[Row], key: str) -> dict[int, float]:
    """Row index -> mean of column `key`, for the run rows that have a value there."""
    return {i: cell.mean for i, row in enumerate(rows)
            if row.kind == "run" and isinstance(cell := row.cells.get(key), Stat) and cell.n > 0}


def _body(table: Table, bold, tied) -> list[list[str]]:
    def cell(i: int, row: Row, col: Column) -> str:
        text, mark = format_cell(row.cells.get(col.key), col, row.n_ok), table.marks.get(col.key, {}).get(i)
        return bold(text) if mark == BEST else tied(text) if mark == TIED else text

    return [[row.label, row.n, *(cell(i, row, col) for col in table.columns)] for i, row in enumerate(table.rows)]


# -- renderers ----------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    """GitHub Markdown (tabulate), best values in bold, tied ones with †, notes as a list under the table."""
    from tabulate import tabulate

    headers = [table.first_header, "n"] + [c.header for c in table.columns]
    text = tabulate(_body(table, lambda s: f"**{s}**", lambda s: s + TIE_MARK), headers=headers, tablefmt="github",
                    disable_numparse=True, colalign=("left",) + ("right",) * (len(headers) - 1))
    return f"### {table.title}\n\n{text}\n" + ("\n" + "".join(f"- {n}\n" for n in table.notes) if table.notes else "")


_TEX_CHARS = {"--": "-{}-", "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
              "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
              "±": r"$\pm$", "–": "--", "—": "---", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$",
              "≠": r"$\neq$", "−": "$-$", "<": "$<$", ">": "$>$", "φ": r"$\varphi$", "Δ": r"$\Delta$",
              TIE_MARK: r"$^\dagger$"}
_TEX_RE = re.compile("|".join(re.escape(c) for c in _TEX_CHARS))


def tex_escape(text: str) -> str:
    return _TEX_RE.sub(lambda m: _TEX_CHARS[m.group(0)], text)


def to_latex(table: Table) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); best values in \\textbf, tied ones with a dagger."""
    headers = [table.first_header, "n"] + [c.header for c in table.columns]
    body = _body(table, lambda s: "\x01" + s + "\x02", lambda s: s + TIE_MARK)

    def cell(s: str) -> str:
        return tex_escape(s).replace("\x01", r"\textbf{").replace("\x02", "}")

    lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{tex_escape(table.title)}}}",
             r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", r"\toprule",
             " & ".join(tex_escape(h) for h in headers) + r" \\", r"\midrule"]
    kinds = [r.kind for r in table.rows]
    for i, line in enumerate(body):
        if i > 0 and kinds[i] != kinds[i - 1]:
            lines.append(r"\midrule")
        lines.append(" & ".join(cell(s) for s in line) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines += [r"\par\smallskip\footnotesize", " \\\\\n".join(tex_escape(n) for n in table.notes)]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("table", "row", "run_name", "kind", "column", "mean", "std", "n", "n_expected", "text", "mark")


def to_csv(table: Table) -> str:
    """Long format, one line per cell, full precision in stored units (fractions, seconds, bytes);
    `mark` is best (bold) or tied (†) as in the other formats."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for i, row in enumerate(table.rows):
        for col in table.columns:
            cell = row.cells.get(col.key)
            mark = table.marks.get(col.key, {}).get(i, "")
            if isinstance(cell, Stat):  # mean, std, n, n_expected, text
                values = ["" if cell.n == 0 else repr(cell.mean), "" if math.isnan(cell.std) else repr(cell.std),
                          "" if cell.published else cell.n, table.n_expected if row.kind == "run" else "", ""]
            else:
                values = ["", "", "", "", cell if cell is not None else ""]
            w.writerow([table.name, row.label, row.run_name or "", row.kind, col.key, *values, mark])
    return buf.getvalue()


RENDERERS = {"md": to_markdown, "tex": to_latex, "csv": to_csv}


def write_tables(tables: Sequence[Table], out_dir: Path | str,
                 formats: Sequence[str] = ("md", "tex", "csv")) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for t in tables:
        for fmt in formats:
            (out_dir / f"{t.name}.{fmt}").write_text(RENDERERS[fmt](t))
    return [out_dir / f"{t.name}.{fmt}" for t in tables for fmt in formats]


# -- the tables ---------------------------------------------------------------------------------

def run_rows(groups: Sequence[RunGroup], expected: Sequence[int], columns: Sequence[Column], cells_of,
              what: str = "", has_data=lambda r: True) -> tuple[list[Row], list[str]]:
    """One row per run group: cells from `cells_of(ok records)`, the n column, and the gap notes.
    `has_data(record)`: whether an ok record carries what this table reads (else a noted gap)."""
    rows, notes = [], []
    for g in groups:
        if note := gap_note(g, expected):
            notes.append(note)
        if g.unsupported:
            rows.append(Row(g.label, {c.key: "n/a" for c in columns}, "n/a", run_name=g.run_name))
            continue
        ok = [r for r in g.ok(expected) if has_data(r)]
        n = f"{len(ok)}" if len(ok) == len(expected) else f"{len(ok)}/{len(expected)}"
        rows.append(Row(g.label, cells_of(ok), n, len(ok), run_name=g.run_name))
        if lacking := [int(r["seed"]) for r in g.ok(expected) if not has_data(r)]:
            notes.append(f"{g.label}: seed{'s' if len(lacking) > 1 else ''} {format_seeds(lacking)}: "
                         f"no {what} in the result file.")
    return rows, notes


def seed_note(expected: Sequence[int], seeds_given: bool) -> str:
    how = "given with --seeds" if seeds_given else "the union of seeds found for this dataset; --seeds sets it"
    return (f"Mean ± sample std (ddof = 1) over seeds; n = seeds aggregated, n/N when fewer than the "
            f"N = {len(expected)} expected ({format_seeds(expected)}: {how}).")


def metrics_table(
    rs: ResultSet, dataset: str, groups: Sequence[RunGroup], expected: Sequence[int], task: str,
    seeds_given: bool = False, references: Sequence[Any] = (), ranking: Ranking | None = Ranking(),
) -> Table:
    """Test metrics, one row per run; IEMOCAP: per-emotion Acc/F1 plus the majority baseline.
    `ranking`: how best/tied cells are decided (None: no marks)."""
    sims = task == "regression" and dataset in SIMS_DATASETS
    spec = SIMS_COLUMNS if sims else REGRESSION_COLUMNS if task == "regression" else IEMOCAP_COLUMNS
    columns = [metric_column(k, h) for k, h in spec]
    rows, gaps = run_rows(groups, expected, columns,
                          lambda ok: {c.key: summarize(r["metrics"]["test"].get(c.key) for r in ok) for c in columns})
    notes = [seed_note(expected, seeds_given)]
    if sims:
        notes.append(SIMS_NOTE)
    elif task == "regression":
        notes.append("Test split. Accuracies and weighted F1 ×100; MAE and Corr unscaled. Acc-2/F1 has0: "
                     "p ≥ 0 vs y ≥ 0 over all samples; non0: zero labels dropped, p > 0 vs y > 0 (MMSA "
                     "definitions). Lower MAE is better.")
    else:
        notes.append("Test split. Per-emotion binary accuracy and weighted F1 ×100 (MulT eval_iemocap).")
        baselines = [r["metrics"]["majority_baseline"] for r in rs.records if r["dataset"] == dataset
                     and r.get("status") == "ok" and "majority_baseline" in r.get("metrics", {})]
        stats = {c.key: summarize(b.get(c.key) for b in baselines) for c in columns}
        cells: dict[str, Cell] = {k: published(s.mean) if s.n and not (s.std > 0) else s for k, s in stats.items()}
        rows.append(Row("Majority baseline", cells, DASH, kind="baseline"))
        notes.append("Majority baseline: each emotion's train-majority class predicted for every test sample."
                     if baselines else
                     "Majority baseline: no result file carries metrics.majority_baseline.")
    rows += [Row(ref.label, {k: published(v) for k, v in ref.metrics.items()}, "pub.", kind="reference")
             for ref in references]
    if references:
        notes.append("Published reference rows (not msabench runs, not ranked): label = model (source, setting, "
                     "Acc-2 definition); only the columns matching that definition are filled.")
        notes += [f"{ref.label}: {ref.citation} {ref.status}" + (f"; {ref.note}" if ref.note else "") + "."
                  for ref in references]
    marks: dict[str, dict[int, str]] = {}
    if ranking is not None:
        marks, not_compared = mark_cells(rs, dataset, rows, columns, expected, ranking)
        notes += [ranking.note(), *not_compared]
    return Table(f"table_{dataset}", f"{dataset}: test metrics", columns, rows, notes + gaps, len(expected),
                 marks=marks)


def _unit_column(key: str, header: str, max_value: float, units: Sequence[tuple[str, float, int]]) -> Column:
    """A column in the largest of `units` that `max_value` fills at least twice (else the first)."""
    name, scale, decimals = next((u for u in reversed(units) if max_value >= u[1] * 2), units[0])
    return Column(key, f"{header} ({name})", 1 / scale, decimals)


TIME_UNITS = (("s", 1.0, 1), ("min", 60.0, 1), ("h", 3600.0, 2))
MEMORY_UNITS = (("MiB", 2.0 ** 20, 0), ("GiB", 2.0 ** 30, 2))


def efficiency_table(dataset: str, groups: Sequence[RunGroup], expected: Sequence[int], seeds_given: bool = False,
                     references: Sequence[Any] = ()) -> Table:
    """Parameters, train time, peak memory, epochs and device per run (PaSE supplement Table 2 style)."""
    def per_run(ok: list[dict]) -> dict[str, list]:
        return {
            "params_total": [r["params"]["total"] for r in ok],
            "params_trainable": [r["params"]["trainable"] for r in ok],
            "params_with_grad": [r["params"].get("with_grad") for r in ok],
            "train_s": [r["time"]["train_s"] for r in ok], "wall_s": [r["time"].get("wall_s") for r in ok],
            "epoch_s": [float(np.mean(r["time"]["per_epoch_s"])) if r["time"].get("per_epoch_s") else None for r in ok],
            "peak_memory_bytes": [r.get("peak_memory_bytes") for r in ok], "epochs_run": [r["epochs_run"] for r in ok],
        }

    values = [per_run(g.ok(expected)) for g in groups]
    top = lambda key: max([v for d in values for v in d[key] if v is not None] or [0.0])  # noqa: E731
    ref_s = max((r.train_hours * 3600 for r in references), default=0.0)
    columns = [
        Column("params_total", "Params", integer=True), Column("params_trainable", "Trainable", integer=True),
        Column("params_with_grad", "With grad", integer=True),
        _unit_column("train_s", "Train time", max(top("train_s"), ref_s), TIME_UNITS),
        _unit_column("wall_s", "Wall time", top("wall_s"), TIME_UNITS),
        _unit_column("epoch_s", "Time/epoch", top("epoch_s"), TIME_UNITS),
        _unit_column("peak_memory_bytes", "Peak memory", top("peak_memory_bytes"), MEMORY_UNITS),
        Column("epochs_run", "Epochs", decimals=1), Column("device", "Device"),
    ]

    def cells_of(ok: list[dict]) -> dict[str, Cell]:
        cells: dict[str, Cell] = {k: summarize(v) for k, v in per_run(ok).items()}
        cells["device"] = ", ".join(sorted({str(r.get("device", "?")) for r in ok})) or DASH
        return cells

    rows, gaps = run_rows(groups, expected, columns, cells_of)
    rows += [Row(ref.label, {"params_total": published(ref.params), "train_s": published(ref.train_hours * 3600)},
                 "pub.", kind="reference") for ref in references]
    notes = [seed_note(expected, seeds_given),
             "Params: total / trainable (requires_grad) / receiving a gradient during training. Train time: the "
             "training passes of a run (forward, backward, optimiser steps); wall time: the whole run (validation, "
             "contribution coalitions and test included); time/epoch: one epoch with its validation and "
             "contributions. Peak memory: CUDA max_memory_allocated on GPU, process peak RSS on CPU (includes "
             "the Python runtime and data)."]
    if references:
        notes.append("Reference rows: " + references[0].citation + "; hardware not stated, not comparable.")
    return Table(f"efficiency_{dataset}", f"{dataset}: efficiency", columns, rows, notes + gaps, len(expected))


def robustness_table(dataset: str, groups: Sequence[RunGroup], expected: Sequence[int], task: str,
                     seeds_given: bool = False) -> Table:
    """Main metric per modality coalition (missing modalities masked at input), from `robustness`."""
    columns = [replace(metric_column(m, f"{k} {h}"), key=f"{k}:{m}")
               for k in COALITIONS for m, h in ROBUSTNESS_METRICS["sims" if dataset in SIMS_DATASETS else task]]
    columns += [Column(f"shapley:{m}", f"φ {m}", decimals=3) for m in "tav"]

    def value(r: dict, key: str) -> float | None:
        rob, (group, name) = r["robustness"], key.split(":")  # shapley:<modality> or <coalition>:<metric>
        return (rob.get("shapley", {}) if group == "shapley" else rob.get("coalitions", {}).get(group, {})).get(name)

    rows, gaps = run_rows(
        groups, expected, columns, lambda ok: {c.key: summarize(value(r, c.key) for r in ok) for c in columns},
        what="robustness data", has_data=lambda r: isinstance(r.get("robustness"), dict),
    )
    utility = "−MAE" if task == "regression" else "mean accuracy"
    notes = [seed_note(expected, seeds_given),
             f"Test split, the selected model evaluated with only the modalities of each coalition present "
             f"(t text, a audio, v vision; absent ones masked at input, Batch.without). φ: exact Shapley value "
             f"of each modality for the utility {utility}. Not ranked: result files keep no per-sample "
             f"predictions of each coalition to test a difference with."]
    return Table(f"robustness_{dataset}", f"{dataset}: modality coalitions (test)", columns, rows, notes + gaps,
                 len(expected))


def dataset_task(rs: ResultSet, dataset: str) -> str:
    return next((str(r["task"]) for r in rs.records if r["dataset"] == dataset and r.get("task")),
                "iemocap" if dataset.startswith("iemocap") else "regression")


def build_tables(
    rs: ResultSet, datasets: Sequence[str] | None = None, models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None, unsupported: dict[tuple[str, str], str] | None = None,
    reference: bool = False, robustness: bool = False, efficiency: bool = True, ranking: Ranking | None = Ranking(),
) -> list[Table]:
    """Every table for every dataset asked for (default: every dataset with result files).
    `unsupported`: (dataset, model) -> reason, for models asked for by name that cannot run there.
    `ranking`: how the metrics tables decide bold and tied cells (None: no marks)."""
    from bench.reference import EFFICIENCY_REFERENCES, references_for

    tables = []
    for dataset in datasets or rs.datasets():
        unsup = {m: why for (d, m), why in (unsupported or {}).items() if d == dataset}
        groups = group_runs(rs, dataset, models, unsup)
        if not groups:
            continue
        # every run of the dataset, not only those shown; else (only placeholder rows: models asked for that
        # never ran) the rows shown
        expected = expected_seeds(group_runs(rs, dataset), seeds) or expected_seeds(groups, seeds)
        task = dataset_task(rs, dataset)
        refs = [r for r in references_for(dataset) if _wanted(r.key, models)] if reference else []
        tables.append(metrics_table(rs, dataset, groups, expected, task, bool(seeds), refs, ranking))
        if efficiency:
            eff_refs = ([r for r in EFFICIENCY_REFERENCES if _wanted(r.key, models)]
                        if reference and dataset in ("mosi", "mosei") else [])
            tables.append(efficiency_table(dataset, groups, expected, bool(seeds), eff_refs))
        if robustness:
            tables.append(robustness_table(dataset, groups, expected, task, bool(seeds)))
    return tables


def _wanted(key: str | None, models: Sequence[str] | None) -> bool:
    """Reference rows follow --models; models msabench does not implement show only without it."""
    return not models or key is not None and any(fnmatch.fnmatchcase(key, p.split("+")[0]) for p in models)


# -- tuning studies (`bench tune`; their summaries under <results>/tuning/) -----------------------

def tuning_budget_text(summary: dict[str, Any]) -> str:
    """'50 trials' (trials budget), '8 h, 37 trials' (hours budget): the finished trials behind a tuned row."""
    budget = summary.get("budget") or {}
    done = (summary.get("trials") or {}).get("finished", 0)
    text = f"{done} trial{'s' if done != 1 else ''}"
    return f"{budget['hours']:g} h, {text}" if "hours" in budget else text


def load_tuning_summaries(root: Path | str) -> list[dict[str, Any]]:
    """Every study summary (`<root>/tuning/<dataset>/<variant>.json`); unreadable ones are skipped."""
    out = []
    for path in sorted(Path(root).glob("tuning/*/*.json")):
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text()))
    return out


def _params_text(params: dict[str, Any] | None) -> str:
    return DASH if not params else ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


TUNING_COLUMNS = (
    Column("budget", "Budget"), Column("complete", "Complete"), Column("pruned", "Pruned"),
    Column("failed", "Failed"), Column("best", "Best valid"), Column("params", "Best parameters"),
)


def tuning_table(summaries: Sequence[dict[str, Any]], dataset: str, models: Sequence[str] | None = None) -> Table | None:
    """Per tuned model on `dataset`: budget, trials complete / pruned / failed, the best
    validation value and its parameters (n = finished trials, complete + pruned)."""
    mine = [s for s in summaries if s.get("dataset") == dataset and (
        not models or any(fnmatch.fnmatchcase(s.get("model", ""), m) or fnmatch.fnmatchcase(s.get("variant", ""), m)
                          for m in models))]
    if not mine:
        return None
    mine.sort(key=lambda s: (model_meta(s.get("model", "?"))["order"], s.get("variant", "")))
    rows, notes = [], []
    for s in mine:
        trials, budget, best = s.get("trials") or {}, s.get("budget") or {}, s.get("best")
        budget_text = f"{budget['trials']} trials" if "trials" in budget else f"{budget.get('hours', 0):g} worker-h"
        value = f"{s.get('metric')} {best['value']:.4f} (trial {best['number']})" if best else DASH
        cells: dict[str, Cell] = {"budget": budget_text, "complete": str(trials.get("complete", 0)),
                                  "pruned": str(trials.get("pruned", 0)), "failed": str(trials.get("fail", 0)),
                                  "best": value, "params": _params_text(best.get("params") if best else None)}
        rows.append(Row(display_name(s.get("variant", s.get("model", "?")), s.get("model"), s), cells,
                        str(trials.get("finished", 0)), run_name=s.get("variant"), kind="tuning"))
        if running := trials.get("running", 0) + trials.get("waiting", 0):
            notes.append(f"{display_name(s['variant'], s['model'], s)}: {running} trial(s) running or queued "
                         f"(a killed study: rerun `bench tune` to finish it).")
    notes.insert(0, "Validation only: every trial is scored on the validation split, never on test; "
                    "n = finished trials (complete + pruned); a failed trial does not count towards the budget. "
                    f"Study storage and spaces: {Path('tuning') / dataset}/*.json.")
    return Table(f"tuning_{dataset}", f"Tuning studies on {dataset} (Optuna)", list(TUNING_COLUMNS), rows, notes)
