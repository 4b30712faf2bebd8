"""`perf`: per-model training-step benchmark on random inputs of real dataset shapes."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  python -m bench perf --models mult,mag_bert,self_mm,bert_text,pase       # MOSI shapes, batch 32
  python -m bench perf --models mult --dataset-shapes mosei --steps 3 --json reports/perf.json
Each model runs in its own subprocess; the 'floor' row is a plain transformers BertModel
fine-tune step at the same batch and sequence length. On CUDA, bf16 autocast and tokens/s.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("perf", help="benchmark step time, memory and parameters per model",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="comma-separated registry names")
    p.add_argument("--dataset-shapes", default="mosi", choices=["mosi", "mosei", "iemocap"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps per model (after --warmup)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-floor", dest="floor", action="store_false", help="skip the BertModel floor row")
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    p.set_defaults(func=main)


def main(args) -> int:
    from bench.config import split_list
    from bench.perf import format_table, run_perf, write_json

    rows = run_perf(split_list(args.models), args.dataset_shapes, args.batch, args.steps, args.warmup,
                    args.device, floor=args.floor, amp=args.amp)
    print(format_table(rows))
    if args.json:
        write_json(rows, args.json)
    return 1 if any("error" in r for r in rows) else 0
