"""`tune`: the same Optuna search budget for every model, on validation only, then the best
configuration with the five standard seeds as its own `<model>+tuned` run."""

from __future__ import annotations

import argparse
import logging
import sys

HELP_EPILOG = """examples:
  python -m bench tune --models late_fusion,mult --trials 4 --epochs 2     # synthetic, results/
  python -m bench tune --models mult,mag_bert,self_mm --datasets mosi --trials 50 --data-root ~/data/MMSA
  python -m bench tune --models mult --datasets mosi --budget-hours 8 --sampler random --pruner none
  python -m bench tune --models mult --datasets mosi --trials 50 --launcher submitit --workers 8 --gpus-per-job 1
  python -m bench tune --show-space mult                                     # the searched ranges and sources
Every model gets the same budget: --trials N finished (complete + pruned) trials, or --budget-hours H
worker-hours of trials. A study lives in <out>/tuning/<dataset>/<model>+tuned.db (.journal with
--launcher submitit); rerunning the command continues it to the requested total. Trials never
evaluate the test split and train with a seed no final run uses (--trial-seed, default 1110).
Then, one run per --seeds: <out>/<dataset>/<model>+tuned/seed<k>.json; `bench table` shows the
row "<Model> (tuned, N trials)" and `bench table --tuning` the studies.
"""


def add_parser(sub) -> None:
    from bench.cli import add_submitit_options, int_at_least, names, out_dir, seeds
    from bench.config import preset_help

    p = sub.add_parser("tune", help="equal-budget hyperparameter search (Optuna), validation only",
                       epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=names, help="comma-separated registry names; wildcards allowed ('mag*')")
    p.add_argument("--datasets", type=names, default=None, help="comma-separated (default: synthetic)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--trials", type=int_at_least(1), default=None, help="finished trials per model (default: 50)")
    budget.add_argument("--budget-hours", type=float, default=None, help="worker-hours of trials per model")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random"], help="Optuna sampler (default: tpe)")
    p.add_argument("--pruner", default="median", choices=["median", "none"], help="Optuna pruner (default: median)")
    p.add_argument("--pruner-startup-trials", type=int_at_least(0), default=5,
                   help="median pruner: prune only after this many finished trials (default: 5)")
    p.add_argument("--pruner-warmup-epochs", type=int_at_least(0), default=0,
                   help="median pruner: never prune in a trial's first N epochs (default: 0)")
    p.add_argument("--seed", type=int_at_least(0), default=None, help="the sampler's seed (default: 1111)")
    p.add_argument("--trial-seed", type=int_at_least(0), default=None,
                   help="the seed every trial trains with; never one of --seeds (default: 1110, or the next "
                        "lower seed that is not in --seeds)")
    p.add_argument("--seeds", type=seeds, default=None,
                   help="seeds of the final runs of the best configuration (default: 1111-1115)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (sqlite:///f.db, postgresql://...) or journal:PATH "
                        "(default: a file under <out>/tuning/)")
    p.add_argument("--preset", default=None,
                   help="preset the search starts from: " + preset_help("the model's for the dataset"))
    p.add_argument("--epochs", type=int_at_least(1), default=None, help="cap on training epochs, trials and final seeds alike")
    p.add_argument("--out", type=out_dir, default="results", help="results directory (default: results)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--data-root", default=None, help="folder with the data files (or $MSABENCH_DATA)")
    p.add_argument("--text-encoder", default=None, metavar="PATH",
                   help="local BERT checkpoint folder, or bert-base / tiny (random init)")
    p.add_argument("--glove", default=None, metavar="PATH",
                   help="GloVe text file for BERT models on IEMOCAP (as `bench run --glove`)")
    p.add_argument("--no-final", dest="final", action="store_false",
                   help="stop after the search (rerun without it to run the final seeds)")
    p.add_argument("--show-space", metavar="MODEL", default=None,
                   help="print MODEL's search space (for --datasets' first dataset and --preset) and exit")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    g = p.add_argument_group("launching")
    g.add_argument("--launcher", default="local", choices=["local", "submitit"],
                   help="local: worker processes on this machine; submitit: one scheduler job per worker")
    g.add_argument("--workers", type=int_at_least(1), default=1, help="workers sharing one study (default: 1)")
    add_submitit_options(g)
    p.set_defaults(func=main)


def build_specs(args) -> list:
    from bench.config import DEFAULT_DATASET, DEFAULT_SEEDS, OptionError, RunConfig, UnknownOptionValue, split_list
    from bench.cli import slurm_options
    from bench.tune import TuneSpec
    from models import list_models

    if not args.models:
        raise OptionError("give --models (e.g. --models late_fusion,mult) or --show-space MODEL")
    names: list[str] = []
    for pattern in split_list(args.models):
        matched = list_models(pattern) if any(c in pattern for c in "*?[") else [pattern]
        if not matched:
            raise UnknownOptionValue(f"--models: no registered model matches '{pattern}'")
        names += [m for m in matched if m not in names]
    slurm = slurm_options(args, f"{args.out}/.submitit/tune")
    trials = args.trials if args.trials is not None or args.budget_hours is not None else 50
    runs = [RunConfig(model=model, dataset=dataset, preset=args.preset, epochs=args.epochs,
                      text_encoder=args.text_encoder, device=args.device, out_dir=args.out,
                      data_root=args.data_root, glove=args.glove)
            for dataset in split_list(args.datasets) or [DEFAULT_DATASET] for model in names]
    return [TuneSpec(run=run, trials=trials, budget_hours=args.budget_hours, sampler=args.sampler, pruner=args.pruner,
                     pruner_startup_trials=args.pruner_startup_trials, pruner_warmup_epochs=args.pruner_warmup_epochs,
                     seed=args.seed if args.seed is not None else DEFAULT_SEEDS[0], storage=args.storage,
                     trial_seed=args.trial_seed, final_seeds=tuple(args.seeds or DEFAULT_SEEDS),
                     launcher=args.launcher, workers=args.workers, slurm=slurm) for run in runs]


def main(args) -> int:
    from bench.logs import to_stderr

    with to_stderr(logging.WARNING if args.quiet else logging.INFO):  # the library's lines, or only problems
        return _main(args)


def _main(args) -> int:
    from bench.cli import command_error, error_exit, expected_stops
    from bench.tune import OptunaMissing

    try:
        if args.show_space:
            from bench.config import split_list
            from bench.tune import format_space

            print(format_space(args.show_space, (split_list(args.datasets) or ["synthetic"])[0], args.preset))
            return 0
        specs = build_specs(args)
        from bench.tune import require_optuna, tune

        require_optuna()
        # what would fail every trial the same way (a bad data root, device, text encoder, a
        # model that cannot read the file) fails here, before the first study spends its budget
        from bench.runner import check_out_dirs, check_sweep, data_key, load_sweep_data, plan_runs

        planned = plan_runs([s.run for s in specs])
        check_sweep(planned, local=args.launcher == "local")
        loaded = load_sweep_data(planned) if args.launcher == "local" else {}
        check_out_dirs(planned)
        failed = 0
        for spec, p in zip(specs, planned, strict=True):
            summary = tune(spec, final=args.final, data=loaded.get(data_key(p)))
            if summary.get("best") is None:  # no trial completed: nothing was tuned
                failed += 1
                print(f"{spec.run.dataset}/{spec.variant}: no trial completed (see the failed trials)", file=sys.stderr)
            final = summary.get("final")
            if final is not None:
                failed += len(final.failed)
                print(f"{spec.run.dataset}/{spec.variant}: {len(final.ok)} seeds ran, {len(final.skipped)} skipped "
                      f"(finished), {len(final.failed)} failed", file=sys.stderr)
    except OptunaMissing as err:
        return error_exit(err)
    except expected_stops() as err:
        return command_error(err, interrupted="the study keeps every finished trial; rerun the same command to continue")
    print(f"tuning summaries: {args.out}/tuning/; show them with `python -m bench table --results {args.out} --tuning`",
          file=sys.stderr)
    return 1 if failed else 0
