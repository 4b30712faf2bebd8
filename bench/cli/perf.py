"""`perf`: per-model training-step benchmark on random inputs of real dataset shapes."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  python -m bench perf --models mult,mag_bert,self_mm,bert_text,pase       # MOSI shapes, batch 32
  python -m bench perf --models mult --dataset-shapes mosei --steps 9 --json perf.json
  python -m bench perf --models all --check --markdown reports/perf/cpu.md  # every registered model
Each model runs in its own subprocess, its timed steps alternating with steps of the floor (a
plain transformers BertModel fine-tune step at the same batch and length): floor, model,
floor, ..., model, floor. 'x floor' is the median of the per-step ratios (model step over the
floor steps around it), with its sign-test interval (93.75% at 5 steps). A target is "met"
only when the interval is below it, "missed" only when the interval is above it, otherwise
"undecided (within noise)": more --steps narrow the interval. --markdown also writes the raw
step times as JSON beside the report. '--models floor' times the floor against itself: its
interval shows the machine's noise. On CUDA, bf16 autocast and tokens/s.
"""


def add_parser(sub) -> None:
    from bench.cli import int_at_least, names
    from bench.perf import MIN_STEPS

    p = sub.add_parser("perf", help="benchmark step time, memory and parameters per model",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=names, required=True, help="comma-separated registry names, or all")
    p.add_argument("--dataset-shapes", default="mosi", choices=["mosi", "mosei", "iemocap"])
    p.add_argument("--batch", type=int_at_least(1), default=32)
    p.add_argument("--steps", type=int_at_least(MIN_STEPS), default=MIN_STEPS,
                   help=f"timed steps per model, after --warmup (default and minimum {MIN_STEPS})")
    p.add_argument("--warmup", type=int_at_least(0), default=1, help="untimed steps per model first (default 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-floor", dest="floor", action="store_false", help="skip the BertModel floor (no ratios)")
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows (raw step times) as JSON")
    p.add_argument("--markdown", default=None, metavar="FILE",
                   help="also write the report (e.g. reports/perf/cpu.md: the command at its top, date, machine) "
                        "and its raw step times beside it (cpu.json)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a model was not measured or a BERT-based model missed its x floor target "
                        "(1.15 MAG-BERT, Self-MM, bert_text; 1.3 other BERT models): its whole interval above it "
                        "(an interval around the target is 'undecided' and does not fail)")
    p.set_defaults(func=main)


def main(args) -> int:
    import logging
    import sys
    import time

    from bench.cli import error_exit
    from bench.perf import check_targets, format_table, run_perf, undecided, write_json

    try:  # what would fail every model the same way fails once, before any subprocess starts
        _check_options(args)
    except (KeyError, ValueError) as err:
        return error_exit(err)
    from bench.config import split_list
    from models import list_models

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # progress lines on stderr
    models = list_models() if args.models.strip() == "all" else split_list(args.models)
    t0 = time.perf_counter()
    rows = run_perf(models, args.dataset_shapes, args.batch, args.steps, args.warmup,
                    args.device, floor=args.floor, amp=args.amp)
    print(format_table(rows))
    if args.json:
        write_json(rows, args.json)
    if args.markdown:
        _write_report(args.markdown, rows, time.perf_counter() - t0)
    for line in undecided(rows):
        print(f"undecided (within noise): {line}; more --steps narrow the interval", file=sys.stderr)
    misses = check_targets(rows) if args.check else []
    for line in misses:
        print(f"target missed: {line}", file=sys.stderr)
    return 1 if misses or any("error" in r for r in rows) else 0


def _check_options(args) -> None:
    """Refuse unknown models, an unusable device, folders as output files, --check without floor."""
    import os

    from bench.config import split_list
    from bench.runner import check_device
    from models import get_model_entry

    for name in split_list(args.models):
        if name in ("floor", "all"):  # the BertModel row (measured by name); all = every model
            continue
        try:
            get_model_entry(name)
        except KeyError as err:
            raise KeyError(f"--models: {err.args[0]}") from None
    check_device(args.device)
    for option, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path is not None and (os.path.isdir(path) or not path.strip()):
            raise ValueError(f"{option} '{path}': give a file path, not a folder")
    if args.markdown is not None and args.markdown.endswith(".json"):
        raise ValueError(f"--markdown '{args.markdown}': the raw step times go to a .json beside the report; "
                         "give a .md path")
    if args.check and not args.floor:
        raise ValueError("--check compares each model with the floor: drop --no-floor")


def _write_report(path: str, rows: list, wall_s: float) -> None:
    """The Markdown report at `path` and its raw step times beside it (same name, .json)."""
    import shlex
    import sys
    from datetime import datetime, timezone
    from pathlib import Path

    from bench.perf import format_report, machine, write_json
    from bench.results import write_text_atomic
    from bench.threads import MALLOC_ENV, malloc_mode
    from models.layers.scan_kernel import KERNEL_ENV, switched_off

    raw = Path(path).with_suffix(".json")
    env = (f"{MALLOC_ENV}=system " if malloc_mode() == "system" else "") + (  # the settings the timings depend on
        f"{KERNEL_ENV}=off " if switched_off() else "")
    command = env + "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    write_json(rows, str(raw))
    write_text_atomic(Path(path), format_report(rows, command, machine(), date, wall_s, raw.name))
