"""`evaluate`: score saved runs (`run --save-state`) under missing and noisy inputs, without retraining."""

from __future__ import annotations

import argparse
import sys

HELP_EPILOG = """examples:
  python -m bench evaluate                                   # every saved run under results/, all conditions
  python -m bench evaluate --models mult --conditions 'random/tav/*,noise/*' --device cuda
Conditions are KIND/MODALITIES/LEVEL: random or structural missing (rates 0.1-0.9) of t, a, v
or tav, and noise (Gaussian, 0.1/0.5/1 x the feature std) of a, v or av. Each run's metrics go
to curves-seed<k>.json beside its result file (the result file is not rewritten).
"""


def add_parser(sub) -> None:
    from bench.cli import existing_dir, int_at_least, names

    p = sub.add_parser("evaluate", help="score saved runs (--save-state) under missing/noisy inputs",
                       epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=existing_dir, default=None, help="results directory (default: results)")
    p.add_argument("--datasets", type=names, default=None, help="comma-separated (default: all)")
    p.add_argument("--models", type=names, default=None, help="comma-separated run names, wildcards allowed (default: all)")
    p.add_argument("--conditions", type=names, default=None,
                   help="comma-separated condition names or patterns, e.g. random/tav/*,noise/av/1 (default: all)")
    p.add_argument("--condition-seed", type=int_at_least(0), default=None,
                   help="seed of the masks and noise (default: 0, as training-time curves use)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.set_defaults(func=main)


def main(args) -> int:
    import fnmatch
    from pathlib import Path

    from bench.cli import NOTHING_TO_SHOW, error_exit
    from bench.config import OptionError, split_list
    from bench.data.conditions import CONDITION_SEED, ConditionError
    from bench.results import iter_result_files, load_result
    from bench.robustness import evaluate_saved, select_conditions

    try:
        conditions = select_conditions(split_list(args.conditions) if args.conditions else None)
    except ConditionError as err:
        return error_exit(err)
    root = Path(args.results or "results")
    datasets, models = split_list(args.datasets), split_list(args.models)
    records = ((path, load_result(path)) for path in iter_result_files(root))
    todo = [path for path, rec in records if (not datasets or rec["dataset"] in datasets)
            and (not models or any(fnmatch.fnmatchcase(rec["run_name"], m) for m in models))
            and rec.get("status") == "ok" and rec.get("state")]
    if not todo:
        print(f"error: no result files with a saved state under '{root}/' match "
              "(run with --save-state first)", file=sys.stderr)
        return NOTHING_TO_SHOW
    seed = CONDITION_SEED if args.condition_seed is None else args.condition_seed
    for path in todo:
        try:
            out = evaluate_saved(path, conditions, args.device, seed)
        except OptionError as err:
            return error_exit(err)
        print(f"wrote {out} ({len(conditions)} conditions)", file=sys.stderr)
    return 0
