"""`run`: train and evaluate models on datasets over seeds, one result file per run."""

from __future__ import annotations

import argparse
import sys

HELP_EPILOG = """examples:
  python -m bench run --models pase,mult                       # default: synthetic, seeds 1111-1115
  python -m bench run --models mult --seeds 1111 --epochs 3 --out results
  python -m bench run --models pase --set use_sgm=false        # variant -> results/<ds>/pase+no_sgm/
  python -m bench run --models mult,late_fusion --datasets mosi --data-root ~/data/MMSA
  python -m bench run --models 'mag*' --text-encoder ~/ckpt/bert-base-uncased --datasets mosi
A finished (dataset, model, seed) is skipped; --force reruns it. A run that fails is recorded
with status "error" and the sweep goes on.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="train/evaluate models (one result file per dataset, model, seed)",
                       epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="comma-separated registry names; wildcards allowed ('mag*')")
    p.add_argument("--datasets", default="synthetic", help="comma-separated (default: synthetic)")
    p.add_argument("--seeds", default="1111-1115", help="e.g. 1111,1112 or 1111-1115 (default: 1111-1115)")
    p.add_argument("--epochs", type=int, default=None, help="cap on training epochs (default: the preset's)")
    p.add_argument("--preset", default=None, help="mmsa | paper (default: the model's default for the dataset)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a model config field; defines a variant (repeatable)")
    p.add_argument("--variant", default=None, help="result-folder name for this variant (default: derived)")
    p.add_argument("--out", default="results", help="results directory (default: results)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--data-root", default=None, help="folder with the data files (or $MSABENCH_DATA)")
    p.add_argument("--setting", default=None, choices=["aligned", "unaligned"], help="override the preset's setting")
    p.add_argument("--text-encoder", default=None, metavar="PATH",
                   help="local BERT checkpoint folder, or bert-base / tiny (random init)")
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--no-contributions", dest="contributions", action="store_false",
                   help="skip the per-epoch Shapley contributions on validation")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on CUDA")
    p.add_argument("--strict-data", action="store_true", help="data warnings become errors")
    p.add_argument("--detect-anomaly", action="store_true", help="torch autograd anomaly detection (slow)")
    p.set_defaults(func=main)


def build_runs(args) -> list:
    from bench.config import RunConfig, parse_seeds, parse_set, split_list
    from models import list_models

    names: list[str] = []
    for pattern in split_list(args.models):
        matched = list_models(pattern) if any(c in pattern for c in "*?[") else [pattern]
        if not matched:
            raise KeyError(f"no registered model matches '{pattern}'")
        names += [m for m in matched if m not in names]
    overrides = parse_set(args.set)
    runs = []
    for dataset in split_list(args.datasets):
        for model in names:
            for seed in parse_seeds(args.seeds):
                runs.append(RunConfig(
                    model=model, dataset=dataset, seed=seed, preset=args.preset, overrides=overrides,
                    variant=args.variant, epochs=args.epochs, text_encoder=args.text_encoder,
                    device=args.device, out_dir=args.out, data_root=args.data_root, setting=args.setting,
                    contributions=args.contributions, amp=args.amp, strict_data=args.strict_data,
                    detect_anomaly=args.detect_anomaly,
                ))
    return runs


def main(args) -> int:
    from bench.data import DataError
    from bench.runner import run_sweep

    quiet = args.quiet
    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        runs = build_runs(args)
        summary = run_sweep(runs, force=args.force, progress=not quiet and sys.stderr.isatty(), log=log)
    except KeyboardInterrupt:
        print("interrupted: stopped; finished runs are kept, the run in progress was not recorded", file=sys.stderr)
        return 130
    except DataError as err:
        print(f"DataError: {err}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    print(f"{len(summary.ok)} ran, {len(summary.skipped)} skipped (finished), {len(summary.failed)} failed",
          file=sys.stderr)
    for label, msg in summary.failed:
        print(f"  failed {label}: {msg}", file=sys.stderr)
    return 1 if summary.failed else 0
