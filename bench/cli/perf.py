"""`perf`: per-model training-step benchmark on random inputs of real dataset shapes."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  python -m bench perf --models mult,mag_bert,self_mm,bert_text,pase       # MOSI shapes, batch 32
  python -m bench perf --models mult --dataset-shapes mosei --steps 3 --json reports/perf.json
  python -m bench perf --models all --check --markdown reports/perf_cpu.md  # every registered model
Each model runs in its own subprocess; the 'floor' row is a plain transformers BertModel
fine-tune step at the same batch and sequence length. On CUDA, bf16 autocast and tokens/s.
"""


def add_parser(sub) -> None:
    from bench.cli import int_at_least, names

    p = sub.add_parser("perf", help="benchmark step time, memory and parameters per model",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=names, required=True, help="comma-separated registry names")
    p.add_argument("--dataset-shapes", default="mosi", choices=["mosi", "mosei", "iemocap"])
    p.add_argument("--batch", type=int_at_least(1), default=32)
    p.add_argument("--steps", type=int_at_least(1), default=5, help="timed steps per model (after --warmup)")
    p.add_argument("--warmup", type=int_at_least(0), default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-floor", dest="floor", action="store_false", help="skip the BertModel floor row")
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--markdown", default=None, metavar="FILE",
                   help="also write the table as a report (reports/perf_cpu.md), the command at its top")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a BERT-based model is above its x floor target (1.15 MAG-BERT, Self-MM, "
                        "bert_text; 1.3 other BERT models)")
    p.set_defaults(func=main)


def main(args) -> int:
    import os
    import sys

    from bench.config import split_list
    from bench.perf import format_table, run_perf, write_json
    from bench.runner import check_device
    from models import get_model_entry

    try:  # what would fail every model the same way fails once, before any subprocess starts
        for name in split_list(args.models):
            if name in ("floor", "all"):  # the BertModel row (measured by name); all = every model
                continue
            try:
                get_model_entry(name)
            except KeyError as err:
                raise KeyError(f"--models: {err.args[0]}") from None
        check_device(args.device)
        if args.json and (os.path.isdir(args.json) or not args.json.strip()):
            raise ValueError(f"--json '{args.json}': give a file path, not a folder")
    except (KeyError, ValueError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    from models import list_models

    models = list_models() if args.models.strip() == "all" else split_list(args.models)
    rows = run_perf(models, args.dataset_shapes, args.batch, args.steps, args.warmup,
                    args.device, floor=args.floor, amp=args.amp)
    table = format_table(rows)
    print(table)
    if args.markdown:
        _write_markdown(args.markdown, table, rows)
    if args.check:
        from bench.perf import check_targets

        misses = check_targets(rows)
        for line in misses:
            print(f"target missed: {line}", file=sys.stderr)
        if misses:
            return 1
    if args.json:
        write_json(rows, args.json)
    return 1 if any("error" in r for r in rows) else 0


def _write_markdown(path: str, table: str, rows: list) -> None:
    """The report: the exact command that regenerates it, the machine, the table."""
    import shlex
    import sys
    from pathlib import Path

    from bench.perf import machine
    from bench.results import write_text_atomic

    m = machine()
    cmd = "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    floor = next((r for r in rows if r.get("model") == "floor" and "floor_runs" in r), None)
    text = (f"# Training-step benchmark\n\nRegenerate with:\n\n```\n{cmd}\n```\n\n"
            f"Machine: {m['cpu']} ({m['cpus']} CPUs), {m['threads']} torch threads, torch {m['torch']}"
            + (f", CUDA {m['torch_cuda']} on {m['gpu']}" if m["gpu"] else "") + ". "
            + (f"Floor runs (ms, interleaved with the models): {', '.join(f'{v:,.0f}' for v in floor['floor_runs'])}. "
               if floor else "")
            + "`× floor`: the model's median step over the mean of the floor runs just before and after it.\n\n"
            + table + "\n")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
