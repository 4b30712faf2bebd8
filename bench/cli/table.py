"""`table`: paper-style tables rendered from result files (Markdown, LaTeX, CSV)."""

from __future__ import annotations

import argparse
import sys

HELP_EPILOG = """examples:
  python -m bench table                                   # every dataset under results/ -> reports/
  python -m bench table --datasets mosi --models mult,mag_bert,self_mm,pase --reference
  python -m bench table --models 'pase*' --robustness     # PaSE and its ablation variants
  python -m bench table --seeds 1111-1115 --format md     # expect these 5 seeds; write Markdown only
  python -m bench table --curves                          # + robustness curves (missing rates, noise, AUC)
Markdown goes to the terminal; reports/table_<dataset>.{md,tex,csv} and efficiency_<dataset>.*
(robustness_<dataset>.* with --robustness, curves_missing/noise_<dataset>.* with --curves) are written under --out. A run with fewer seeds than
expected shows n/N and a note lists each failed or missing seed. Bold marks a best value only
when the paired bootstrap of `bench compare` separates it from every other run; else † marks
the runs tied within noise (the table's notes give B, alpha and the RNG seed).
"""

FORMATS = ("md", "tex", "csv")


def add_parser(sub) -> None:
    from bench.cli import REPORT_EXIT_STATUS, existing_dir, names, out_dir, seeds

    p = sub.add_parser("table", help="tables from result files (Markdown, LaTeX, CSV under reports/)",
                       epilog=HELP_EPILOG + REPORT_EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=existing_dir, default=None, help="results directory (default: results)")
    p.add_argument("--datasets", type=names, default=None, help="comma-separated (default: every dataset with results)")
    p.add_argument("--models", type=names, default=None,
                   help="comma-separated model or run names, wildcards allowed; also the row order "
                        "(default: every run; 'pase' includes its variants such as pase+no_sgm)")
    p.add_argument("--seeds", type=seeds, default=None,
                   help="seeds every run should have, e.g. 1111-1115 (default: the union of seeds found per dataset)")
    p.add_argument("--format", default=",".join(FORMATS),
                   help="files to write: comma-separated md,tex,csv (default: all)")
    p.add_argument("--out", type=out_dir, default="reports", help="output directory (default: reports)")
    p.add_argument("--reference", action="store_true", help="add published numbers as labelled reference rows")
    p.add_argument("--robustness", action="store_true",
                   help="add the modality-coalition table (result field robustness)")
    p.add_argument("--curves", action="store_true",
                   help="add the robustness-curve tables (metric at each missing rate / noise level, AUC; "
                        "from --robustness-curves or bench evaluate)")
    p.add_argument("--tuning", action="store_true",
                   help="only the tuning studies (bench tune): budget, trials complete/pruned/failed, best value and parameters")
    p.set_defaults(func=main)


def unsupported_pairs(models: list[str], datasets: list[str]) -> dict[tuple[str, str], str]:
    """(dataset, name) -> reason, for models named explicitly that the registry marks unsupported."""
    from models.registry import get_model_entry

    out = {}
    for name in models:
        if any(c in name for c in "*?["):
            continue
        try:
            entry = get_model_entry(name.split("+")[0])
        except KeyError as err:
            print(f"warning: {err.args[0]}", file=sys.stderr)
            continue
        out.update({(dataset, name): entry.unsupported[dataset] for dataset in datasets if dataset in entry.unsupported})
    return out


def main(args) -> int:
    from pathlib import Path

    from bench.cli import NOTHING_TO_SHOW, error_exit, print_tables, table_command
    from bench.config import parse_seeds, split_list
    from bench.report import build_tables, load_result_set
    from bench.results import other_result_roots

    formats = split_list(args.format)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        problem = "unknown format(s) " + ", ".join(bad) if bad else "empty list"
        return error_exit(ValueError(f"--format '{args.format}': {problem}; choose from {', '.join(FORMATS)}"))
    results = args.results or "results"
    if args.tuning:
        return main_tuning(args, results, formats)
    rs = load_result_set(results)
    others = "; ".join(f"{o}/ (`{table_command(str(o))}`)" for o in other_result_roots(Path(results)))
    if not rs.records and not rs.problems:
        print(f"error: no result files under '{results}/' (expected <dataset>/<run>/seed<k>.json); "
              + (f"result folders below it: {others}" if others else
                 "run `python -m bench run --models ...` first, or point --results at them"), file=sys.stderr)
        return NOTHING_TO_SHOW
    if others:
        print(f"note: not in this table, result folders below '{results}/': {others}", file=sys.stderr)
    datasets = split_list(args.datasets) if args.datasets else rs.datasets()
    models = split_list(args.models) if args.models else None
    seeds = parse_seeds(args.seeds) if args.seeds else None
    unsupported = unsupported_pairs(models, datasets) if models else {}
    tables = build_tables(rs, datasets, models, seeds, unsupported, reference=args.reference,
                          robustness=args.robustness)
    if args.curves:
        from bench.report_curves import curves_tables

        found = curves_tables(rs, datasets, models, seeds)
        if not found:
            print(f"warning: no robustness curves under '{results}/' (run with --robustness-curves, or "
                  "--save-state and then `python -m bench evaluate`)", file=sys.stderr)
        tables += found
    for d in datasets:
        if not any(t.name.endswith(f"_{d}") for t in tables):
            print(f"warning: no results for dataset '{d}' under '{results}/'"
                  f" (found: {', '.join(rs.datasets()) or 'none'})", file=sys.stderr)
    if not tables:
        return NOTHING_TO_SHOW
    return print_tables(tables, args.out, formats)


def main_tuning(args, results: str, formats: list[str]) -> int:
    """`table --tuning`: one table per dataset from <results>/tuning/<dataset>/*.json."""
    from bench.cli import NOTHING_TO_SHOW, print_tables
    from bench.config import split_list
    from bench.report import load_tuning_summaries, sort_datasets, tuning_table

    summaries = load_tuning_summaries(results)
    if not summaries:
        print(f"error: no tuning studies under '{results}/tuning/'; run `python -m bench tune --models ...` first",
              file=sys.stderr)
        return NOTHING_TO_SHOW
    datasets = split_list(args.datasets) if args.datasets else sort_datasets(s["dataset"] for s in summaries)
    models = split_list(args.models) if args.models else None
    tables = [t for t in (tuning_table(summaries, d, models) for d in datasets) if t is not None]
    if not tables:
        print(f"error: no tuning studies for {', '.join(datasets)} under '{results}/tuning/'", file=sys.stderr)
        return NOTHING_TO_SHOW
    return print_tables(tables, args.out, formats)
