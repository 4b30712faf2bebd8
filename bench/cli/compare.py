"""`compare`: paired bootstrap over test samples between two runs."""

from __future__ import annotations

import argparse
import sys

HELP_EPILOG = """examples:
  python -m bench compare pase mult                         # on synthetic, B = 10,000, RNG seed 0
  python -m bench compare pase pase+no_sgm --dataset mosi --metrics Non0_acc_2,MAE
  python -m bench compare pase mult --condition random/tav/0.5   # under 50% random missing (robustness curves)
Predictions are matched by sample id and seed (seeds both runs have); each resample draws N
test samples with replacement, every metric is computed per seed and averaged over seeds, and
delta = A - B (MAE: B - A, so > 0 always means A is better). Reports the observed delta, the
95% percentile interval, the two-sided p-value and the number of comparisons made; writes
reports/compare_<dataset>_<A>_vs_<B>.{md,json}.
"""


def add_parser(sub) -> None:
    from bench.cli import REPORT_EXIT_STATUS, existing_dir, int_at_least, names, out_dir, seeds

    p = sub.add_parser("compare", help="paired bootstrap test between two runs on the test split",
                       epilog=HELP_EPILOG + REPORT_EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_a", metavar="MODEL_A", help="run name (e.g. pase, pase+no_sgm)")
    p.add_argument("model_b", metavar="MODEL_B", help="run name to compare against")
    p.add_argument("--dataset", default="synthetic", help="dataset (default: synthetic)")
    p.add_argument("--results", type=existing_dir, default=None, help="results directory (default: results)")
    p.add_argument("--seeds", type=seeds, default=None,
                   help="restrict to these seeds, e.g. 1111-1115 (default: common seeds)")
    p.add_argument("--metrics", type=names, default=None,
                   help="comma-separated metric keys (default: the table's main metrics for the task)")
    # B = 10,000 resamples and a recorded RNG seed, so a comparison can be repeated exactly
    p.add_argument("--resamples", type=int_at_least(1), default=10_000, help="bootstrap resamples B (default: 10000)")
    p.add_argument("--rng-seed", type=int_at_least(0), default=0,
                   help="bootstrap RNG seed, recorded in the output (default: 0)")
    p.add_argument("--condition", default="clean",
                   help="compare the predictions under a robustness-curve condition, e.g. random/tav/0.5 "
                        "(from --robustness-curves or bench evaluate; default: clean)")
    p.add_argument("--out", type=out_dir, default="reports", help="output directory (default: reports)")
    p.set_defaults(func=main)


def main(args) -> int:
    from bench.cli import error_exit
    from bench.compare import compare_runs, to_markdown, write_comparison
    from bench.config import parse_seeds, split_list
    from bench.report import load_result_set

    from models.constants import METRICS

    unknown = [m for m in split_list(args.metrics) if m not in METRICS] if args.metrics else []
    if unknown:
        return error_exit(ValueError(f"--metrics: unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRICS)})"))
    rs = load_result_set(args.results or "results")
    try:
        result = compare_runs(rs, args.dataset, args.model_a, args.model_b,
                              seeds=parse_seeds(args.seeds) if args.seeds else None,
                              metrics=split_list(args.metrics) if args.metrics else None,
                              n_resamples=args.resamples, rng_seed=args.rng_seed, condition=args.condition)
    except (KeyError, ValueError) as err:
        return error_exit(err)
    print(to_markdown(result))
    paths = write_comparison(result, args.out)
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
