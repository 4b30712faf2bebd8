"""`run`: train and evaluate models on datasets over seeds, one result file per run."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

HELP_EPILOG = """examples:
  python -m bench run --models pase,mult                       # default: synthetic, seeds 1111-1115
  python -m bench run --models mult --seeds 1111 --epochs 3 --out results
  python -m bench run --models pase --set use_sgm=false        # variant -> results/<ds>/pase+no_sgm/
  python -m bench run --models mult,late_fusion --datasets mosi --data-root ~/data/MMSA
  python -m bench run --models 'mag*' --text-encoder ~/ckpt/bert-base-uncased --datasets mosi
  python -m bench run --models mag_bert --preset paper --datasets mosi --data-format mag --data-root ~/data/MAG
  python -m bench run --config sweeps/mosi_main.yaml --launcher submitit --slurm-partition gpu --gpus-per-job 1
  python -m bench run --config sweeps/smoke.yaml --jobs 2           # two runs side by side
  python -m bench run --config sweeps/mosi_main.yaml --jobs auto --runs-per-device auto   # pack GPUs
A finished (dataset, model, seed) is skipped; --force reruns it. A run that fails is recorded
with status "error" and the sweep goes on.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="train/evaluate models (one result file per dataset, model, seed)",
                       epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p)
    p.set_defaults(func=main)


def add_run_options(p) -> None:
    """The options of `run`; `plan` takes them too (the same sweep, planned instead of run)."""
    from bench.cli import add_submitit_options, condition, int_at_least, int_or_auto, names, out_dir, seeds
    from bench.config import preset_help
    from bench.threads import JOBS_ENV

    p.add_argument("--models", type=names, help="comma-separated registry names; wildcards allowed ('mag*')")
    p.add_argument("--config", help="sweep YAML (sweeps/*.yaml) listing datasets, models, variants, seeds")
    p.add_argument("--datasets", type=names, default=None, help="comma-separated (default: synthetic)")
    p.add_argument("--seeds", type=seeds, default=None, help="e.g. 1111,1112 or 1111-1115 (default: 1111-1115)")
    p.add_argument("--epochs", type=int_at_least(1), default=None,
                   help="cap on training epochs (default: the preset's)")
    p.add_argument("--preset", default=None, help=preset_help("the model's default for the dataset"))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a model config field; defines a variant (repeatable)")
    p.add_argument("--variant", default=None, help="result-folder name for this variant (default: derived)")
    p.add_argument("--out", type=out_dir, default=None, help="results directory (default: results)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--data-root", default=None, help="folder with the data files (or $MSABENCH_DATA)")
    p.add_argument("--setting", default=None, choices=["aligned", "unaligned"], help="override the preset's setting")
    p.add_argument("--data-format", default=None, choices=["auto", "mmsa", "mult", "mag"],
                   help="auto (default): MMSA/MulT pickles, else MAG-BERT's mosi.pkl/mosei.pkl; mag: MAG-BERT's "
                        "word-aligned pickles (results go to <model>+mag/)")
    p.add_argument("--text-encoder", default=None, metavar="PATH",
                   help="local BERT checkpoint folder, or bert-base / tiny (random init)")
    p.add_argument("--glove", default=None, metavar="PATH",
                   help="GloVe text file (glove.840B.300d.txt) that gives BERT models IEMOCAP's words back from "
                        "MulT's vectors (default: <data-root>/[IEMOCAP/]glove.840B.300d.txt if there)")
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--no-contributions", dest="contributions", action="store_false",
                   help="skip the per-epoch Shapley contributions on validation")
    p.add_argument("--no-robustness", dest="robustness", action="store_false",
                   help="skip the missing-modality evaluation of the selected model on test")
    p.add_argument("--robustness-curves", action="store_true",
                   help="after the test: test metrics under missing and noisy inputs (random/structural "
                        "missing at rates 0.1-0.9, Gaussian feature noise), evaluation only")
    p.add_argument("--save-state", action="store_true",
                   help="keep the selected weights (seed<k>.safetensors) for `bench evaluate`")
    p.add_argument("--train-missing", type=condition, default=None, metavar="KIND/MODALITIES/RATE",
                   help="train under missing data: e.g. random/tav/0.3, structural/a/0.5 or bernoulli/tav/0.2 on "
                        "every training batch, fresh masks each time, validation and test complete; results go to "
                        "<model>+missing=random-tav-0.3/ (MMSA's TFR-Net protocol, every split incomplete with fixed "
                        "masks, is the config's data_missing: --set data_missing=bernoulli/tav/0.2)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on CUDA")
    p.add_argument("--strict-data", action="store_true", help="split sizes that differ from the standard ones become errors")
    p.add_argument("--detect-anomaly", action="store_true", help="torch autograd anomaly detection (slow)")
    g = p.add_argument_group("launching")
    g.add_argument("--launcher", default="local", choices=["local", "submitit"],
                   help="local: this machine; submitit: one scheduler job per run (Slurm)")
    g.add_argument("--jobs", type=int_or_auto, default=os.environ.get(JOBS_ENV, "auto"),
                   help="local: N runs side by side in worker processes, cores // N CPU threads each (1: one after "
                        "another in this process); auto (default, or $MSABENCH_JOBS): one per GPU slot (GPUs x "
                        "--runs-per-device), else one per CPU core")
    g.add_argument("--runs-per-device", type=int_or_auto, default=1,
                   help="local, with GPUs: worker processes per GPU (auto: from a short probe of each run's peak "
                        "memory, written to <out>/.packing.json; default 1)")
    add_submitit_options(g)
    g.add_argument("--submitit-folder", default=None, help="job logs (default: <out>/.submitit)")
    g.add_argument("--no-wait", dest="wait", action="store_false", help="submit and return")


def build_runs(args) -> list:
    from bench.config import (
        DEFAULT_DATASET, OptionError, RunConfig, UnknownOptionValue, is_folder_name, load_sweep, parse_seeds,
        split_list,
    )
    from models import get_model_entry, list_models

    cli = dict(epochs=args.epochs, preset=args.preset, out=args.out, device=args.device, data_root=args.data_root,
               setting=args.setting, text_encoder=args.text_encoder, data_format=args.data_format, glove=args.glove,
               datasets=split_list(args.datasets) or None, seeds=args.seeds)
    if args.config:
        if args.models or args.set:
            raise OptionError("--config lists the models and variants; do not combine it with --models/--set")
        return _with_flags(load_sweep(args.config, **cli), args)
    name = args.variant
    if name is not None and not is_folder_name(name):
        raise OptionError(f"--variant '{name}': give a result-folder name (not empty, without '/' or '\\')")
    if not args.models:
        raise OptionError("give --models (e.g. --models pase,mult) or --config sweeps/<name>.yaml")
    names: list[str] = []
    for pattern in split_list(args.models):
        if any(c in pattern for c in "*?["):
            matched = list_models(pattern)
            if not matched:
                raise UnknownOptionValue(f"--models: no registered model matches '{pattern}' "
                                         f"(registered: {', '.join(list_models())})")
        else:
            try:
                get_model_entry(pattern)
            except KeyError as err:
                raise UnknownOptionValue(f"--models: {err.args[0]}") from None
            matched = [pattern]
        names += [m for m in matched if m not in names]
    overrides = set_overrides(args)
    runs = [RunConfig(model=model, dataset=dataset, seed=seed, preset=args.preset, overrides=overrides,
                      variant=args.variant, epochs=args.epochs, text_encoder=args.text_encoder,
                      device=args.device or "auto", out_dir=args.out or "results", data_root=args.data_root,
                      setting=args.setting, data_format=args.data_format or "auto", glove=args.glove)
            for dataset in cli["datasets"] or [DEFAULT_DATASET] for model in names
            for seed in parse_seeds(args.seeds or "1111-1115", option="--seeds")]
    return _with_flags(runs, args)


def set_overrides(args) -> dict:
    """The --set overrides: KEY=VALUE strings from the command line, or a mapping from `bench.api.run`."""
    from bench.config import parse_set

    if isinstance(args.set, dict):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in args.set.items()}
    return parse_set(args.set)


def sweep(args, progress: bool) -> tuple[list, Any]:
    """Plan the runs `args` asks for and launch them: (the RunConfigs, the SweepSummary).
    `bench run` and `bench.api.run` both go through here."""
    from bench.cli import slurm_options
    from bench.launch import launch

    runs = build_runs(args)
    out_dir = runs[0].out_dir if runs else "results"
    slurm = slurm_options(args, args.submitit_folder or f"{out_dir}/.submitit", wait=args.wait)
    return runs, launch(runs, launcher=args.launcher, jobs=args.jobs, runs_per_device=args.runs_per_device,
                        force=args.force, progress=progress, slurm=slurm)


# the RunConfig fields `run`'s switches set
FLAGS = ("contributions", "robustness", "amp", "strict_data", "detect_anomaly", "robustness_curves", "save_state",
         "train_missing")


def _with_flags(runs: list, args) -> list:
    """Apply the switches given on the command line (those not at the RunConfig default) to every run."""
    import dataclasses

    from bench.config import RunConfig

    default = RunConfig(model="")
    flags = {k: getattr(args, k) for k in FLAGS if getattr(args, k) != getattr(default, k)}
    return [dataclasses.replace(r, **flags) for r in runs] if flags else runs


def _where(err: BaseException, args) -> str:
    """Which option a config-value error came from: '--set: ' or the sweep file's path."""
    from models.registry import ConfigError

    if not isinstance(err, ConfigError) or err.key is None:
        return ""
    if args.config:
        return f"{args.config}: "
    try:
        return "--set: " if err.key in set_overrides(args) else ""
    except ValueError:
        return ""


def main(args) -> int:
    from bench.logs import to_stderr

    with to_stderr(logging.WARNING if args.quiet else logging.INFO):  # the library's lines, or only problems
        return _main(args)


def _main(args) -> int:
    from bench.cli import command_error, expected_stops, table_command

    try:
        runs, summary = sweep(args, progress=not args.quiet and sys.stderr.isatty())
        out_dir = runs[0].out_dir if runs else "results"
    except expected_stops() as err:
        return command_error(err, where=_where(err, args),
                             interrupted="stopped; finished runs are kept, the run in progress was not recorded")
    print(f"{len(summary.ok)} ran, {len(summary.skipped)} skipped (finished), {len(summary.failed)} failed",
          file=sys.stderr)
    for label, msg in summary.failed:
        print(f"  failed {label}: {msg}", file=sys.stderr)
    if summary.ok or summary.skipped:
        print(f"results: {out_dir.rstrip('/')}/; show them with `{table_command(out_dir)}`", file=sys.stderr)
    return 1 if summary.failed else 0
