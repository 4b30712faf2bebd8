"""`plan`: the runs a `run` command would make and their estimated wall time here, before
anything runs (bench/plan.py)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  python -m bench plan --config sweeps/mosi_main.yaml --data-root DIR --text-encoder BERT_DIR
  python -m bench plan --models mult,pase --datasets mosi --perf my_perf.json
Takes every `bench run` option and plans the same sweep: the number of runs (finished ones
are skipped as `run` would skip them) and, per run, an upper bound on its wall time from the
step times in --perf (written by `python -m bench perf --json FILE`, or the .json beside a
`--markdown` report), scaled to the run's dataset splits and epoch budget. Nothing trains,
no data is read. exit status: 0 planned; 2 a bad option, sweep file or perf file.
"""

DEFAULT_PERF = "reports/perf/cpu.json"


def add_parser(sub) -> None:
    from bench.cli.run import add_run_options

    p = sub.add_parser("plan", help="count a sweep's runs and estimate their wall time here, before running",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p)
    p.add_argument("--perf", default=None, metavar="FILE",
                   help=f"`bench perf --json` step times measured on this machine (default: {DEFAULT_PERF} "
                        "where it exists)")
    p.set_defaults(func=main)


def main(args) -> int:
    from bench.cli import command_error, expected_stops

    try:
        print(plan_text(args))
    except expected_stops() as err:
        return command_error(err, interrupted="stopped")
    return 0


def plan_text(args) -> str:
    """What `plan` prints for `args`: the runs are planned first (a bad option is named before
    the perf file is read); without --perf and without the default file, the count alone."""
    from pathlib import Path

    from bench.cli.run import build_runs
    from bench.perf import machine
    from bench.plan import count_line, estimate, format_plan, load_perf, machine_note
    from bench.results import is_complete
    from bench.runner import plan_runs

    planned = plan_runs(build_runs(args))
    todo = [p for p in planned if args.force or not is_complete(p.run.result_path())]
    source, finished = args.config or "the runs asked for", len(planned) - len(todo)
    perf = args.perf or (DEFAULT_PERF if Path(DEFAULT_PERF).is_file() else None)
    if perf is None:
        return "\n".join([count_line(source, len(planned), finished, len(todo)),
                          f"no estimate: {DEFAULT_PERF} is missing; measure this machine with "
                          "`python -m bench perf --models MODELS --json FILE` and pass --perf FILE"])
    rows, perf_machine = load_perf(perf)
    text = format_plan(source, len(planned), finished, estimate(todo, rows), perf, perf_machine, args.jobs)
    note = machine_note(perf_machine, machine())
    return f"{text}\n{note}" if note and todo else text
