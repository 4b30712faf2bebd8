"""`check-model`: the model-protocol checks (bench/checks.py) on one registered model."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  python -m bench check-model late_fusion
Builds the model from its demo preset on the embedded synthetic data and runs every check on a
few samples: one line per check, PASS, FAIL or SKIP (does not apply), its name and why. The
project's own tests run the same checks on every built-in model.
exit status: 0 every check passed or was skipped; 1 a check failed; 2 an unknown model name.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("check-model", help="check that a model honours the model protocol (a checklist)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help="registered model name (python -m bench ls lists them)")
    p.set_defaults(func=main)


def main(args) -> int:
    from bench.checks import CHECKS, FAIL, Subject, run_checks
    from bench.cli import command_error, expected_stops
    from bench.data import load_dataset
    from models.registry import get_model_entry

    try:
        get_model_entry(args.name)
    except expected_stops() as err:
        return command_error(err, interrupted="check-model stopped")
    subject = Subject.on(args.name, load_dataset("synthetic"))
    print(f"check-model {args.name}: demo preset on synthetic, {len(subject.batch)} training and "
          f"{len(subject.split)} validation samples")
    width = max(map(len, CHECKS))
    statuses = []
    try:
        for name, result in run_checks(subject):
            print(f"{result.status}  {name:<{width}}  {result.why}", flush=True)
            statuses.append(result.status)
    except expected_stops() as err:
        return command_error(err, interrupted="check-model stopped")
    failed = statuses.count(FAIL)
    print(f"{len(statuses)} checks: {statuses.count('PASS')} passed, {failed} failed, {statuses.count('SKIP')} skipped")
    return 1 if failed else 0
