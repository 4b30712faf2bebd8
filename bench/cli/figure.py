"""`figure`: plots rendered from result files (PNG and PDF under reports/)."""

from __future__ import annotations

import argparse
import sys

HELP_EPILOG = """examples:
  python -m bench figure contributions --model late_fusion       # synthetic, results/ -> reports/
  python -m bench figure contributions --model pase --dataset mosi   # + pase+no_sgm dashed if present
  python -m bench figure contributions --model pase --compare none   # no comparison curves
  python -m bench figure predictions --models mult,pase               # test predictions vs labels
  python -m bench figure tuning --model mult --dataset mosi          # bench tune: history + importances
  python -m bench figure curves --models late_fusion,mult,pase       # robustness curves, a panel per condition
"""


def add_parser(sub) -> None:
    from bench.cli import REPORT_EXIT_STATUS, names

    p = sub.add_parser("figure", help="figures from result files (contribution curves, prediction scatter)",
                       epilog=HELP_EPILOG + REPORT_EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND")

    c = kinds.add_parser("contributions", help="per-epoch Shapley value per modality + validation Acc-2")
    c.add_argument("--model", default="pase", help="run name with contribution history (default: pase)")
    c.add_argument("--dataset", default="synthetic", help="dataset (default: synthetic)")
    c.add_argument("--compare", default=None, metavar="VARIANT",
                   help="run drawn dashed for comparison (default: <model>+no_sgm when it exists; 'none' for none)")
    c.add_argument("--band", default="std", choices=["std", "minmax"],
                   help="band around the seed mean: ±1 sample std or min-max (default: std)")
    _common(c)
    c.set_defaults(func=main_contributions)

    for kind, aliases, what, runs, func in (
            ("predictions", ["scatter"], "test predictions vs labels, one panel per run", "", main_predictions),
            ("curves", [], "robustness curves: one panel per condition, one line per run (±1 std)", " with curves",
             main_curves)):
        s = kinds.add_parser(kind, aliases=aliases, help=what)
        s.add_argument("--models", type=names, default=None,
                       help=f"comma-separated run names (default: every run{runs} on the dataset)")
        s.add_argument("--dataset", default="synthetic", help="dataset (default: synthetic)")
        _common(s)
        s.set_defaults(func=func)

    t = kinds.add_parser("tuning", help="a tuning study (bench tune): optimisation history and parameter importances")
    t.add_argument("--model", required=True, help="tuned model (or its tuned run name, e.g. mult+paper+tuned)")
    t.add_argument("--dataset", default="synthetic", help="dataset (default: synthetic)")
    _common(t)
    t.set_defaults(func=main_tuning)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _common(p) -> None:
    from bench.cli import existing_dir, out_dir, seeds

    p.add_argument("--results", type=existing_dir, default=None, help="results directory (default: results)")
    p.add_argument("--seeds", type=seeds, default=None, help="only these seeds, e.g. 1111-1113 (default: every ok seed)")
    p.add_argument("--out", type=out_dir, default="reports", help="output directory (default: reports)")


def _report(paths) -> int:
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _draw(args, make_figure, stem: str) -> int:
    """`make_figure(result set, seeds)` saved as `stem`; a KeyError or ValueError is a one-line error."""
    from bench.cli import error_exit
    from bench.config import parse_seeds
    from bench.figures import save_figure
    from bench.report import load_result_set

    rs = load_result_set(args.results or "results")
    try:
        fig = make_figure(rs, parse_seeds(args.seeds) if args.seeds else None)
    except (KeyError, ValueError) as err:
        return error_exit(err)
    return _report(save_figure(fig, args.out, stem))


def main_contributions(args) -> int:
    from bench.figures import contributions_for_runs

    def make_figure(rs, seeds):
        fig, compare = contributions_for_runs(rs, args.dataset, args.model, args.compare, band=args.band, seeds=seeds)
        if compare:
            print(f"comparing with {compare} (dashed)", file=sys.stderr)
        return fig

    return _draw(args, make_figure, f"contributions_{args.dataset}_{args.model}")


def main_predictions(args) -> int:
    from bench.config import split_list
    from bench.figures import predictions_for_runs

    runs = split_list(args.models) if args.models else None
    return _draw(args, lambda rs, seeds: predictions_for_runs(rs, args.dataset, runs, seeds=seeds),
                 f"predictions_{args.dataset}")


def main_curves(args) -> int:
    from bench.config import split_list
    from bench.report_curves import curves_figure

    runs = split_list(args.models) if args.models else None
    return _draw(args, lambda rs, seeds: curves_figure(rs, args.dataset, runs, seeds=seeds), f"curves_{args.dataset}")


def main_tuning(args) -> int:
    from bench.cli import error_exit
    from bench.figures import save_figure, tuning_figure
    from bench.report import display_name
    from bench.tune import OptunaMissing, load_summary, study_history

    variant = args.model if args.model.endswith("+tuned") else f"{args.model}+tuned"
    try:
        summary = load_summary(args.results or "results", args.dataset, variant)
        history, importances = study_history(summary)
    except (OptunaMissing, KeyError, ValueError) as err:
        return error_exit(err)
    title = f"{display_name(variant, summary['model'], summary)} on {args.dataset}"
    fig = tuning_figure(history, importances, summary["metric"], summary["direction"], title)
    return _report(save_figure(fig, args.out, f"tuning_{args.dataset}_{variant.replace('+', '_')}"))
