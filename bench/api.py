"""The Python API: run a sweep and get its results as a pandas DataFrame; load any results folder.

    from bench import api
    df = api.run(["late_fusion", "mult"], seeds=[1111, 1112], epochs=3, out="results")
    df = api.load_results("results")            # every run under results/, one row each

`run` plans and launches exactly what `python -m bench run` would (bench.cli.run.sweep), so
the options, checks, skip/--force rule and result files are the CLI's. Importing this module
is light (no torch, no pandas): they are imported by the call that needs them.

DataFrame columns (one row per result file), a nested field's path in the file joined by '.':
  dataset, model, variant (the result-folder name, e.g. `pase+no_sgm`), seed, status ("ok",
  "error", or "unreadable" for a file that does not parse), error.type, error.message,
  preset, setting, task, device, best_epoch (the epoch selected on validation), epochs_run,
  params.total, params.trainable, params.with_grad, time.train_s, time.wall_s,
  peak_memory_bytes, date, git_hash,
  test.<metric> and valid.<metric> (`metrics.test`/`metrics.valid` of the file; valid at the
  selected epoch), config.<field> (the resolved model config), run.<field> (the run's options:
  epochs cap, device asked for, out_dir, ...), path (the result file).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    import pandas as pd

# the columns every frame has, in this order (metrics and config fields follow)
FIRST_COLUMNS = (
    "dataset", "model", "variant", "seed", "status", "error.type", "error.message", "preset", "setting", "task",
    "device", "best_epoch", "epochs_run", "params.total", "params.trainable", "params.with_grad",
    "time.train_s", "time.wall_s", "peak_memory_bytes", "date", "git_hash",
)
INT_COLUMNS = ("seed", "best_epoch", "epochs_run", "params.total", "params.trainable", "params.with_grad",
               "peak_memory_bytes")
# `run` keywords that are not `bench run` options of the same name, or that `run` sets itself
NOT_OPTIONS = {"help", "func", "models", "datasets", "seeds", "preset", "out", "jobs", "force", "quiet", "config"}
RENAMED = {"quiet": "progress", "max_epochs": "epochs"}  # a CLI option or config field -> its keyword here


def run(
    models: str | Sequence[str],
    datasets: str | Sequence[str] = ("synthetic",),
    seeds: str | int | Sequence[int] = (1111,),
    preset: str | None = None,
    out: str | Path = "results",
    jobs: int | str = 1,
    include: str | Path | Sequence[str | Path] = (),
    force: bool = False,
    progress: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """Run a sweep as `python -m bench run` does and return one row per run asked for.

    `models`, `datasets`, `seeds`: a list or a comma string (`"pase,mult"`, `"1111-1115"`);
    wildcards in model names as on the command line. A finished run is skipped and its
    recorded result returned, unless `force=True` (the CLI's `--force`). A run that fails is
    a row with status "error"; a bad option or value raises before anything trains (an
    OptionError/ConfigError/DataError naming it). `progress=True` shows the CLI's progress
    lines and bars on stderr. `options` are the other `bench run` options, dashes as
    underscores: epochs, set (a dict, e.g. {"lr": 1e-3}: a variant), variant, device,
    data_root, setting, data_format, text_encoder, contributions=False, robustness=False,
    amp=False, strict_data, detect_anomaly, launcher, cluster, submitit_folder, wait, ...
    """
    from bench.cli.run import sweep
    from bench.logs import to_stderr

    _load_includes(include)
    args = run_args(dict(models=models, datasets=datasets, seeds=seeds, preset=preset, out=out, jobs=jobs,
                         force=force, quiet=not progress), options)
    with to_stderr(logging.INFO) if progress else contextlib.nullcontext():
        runs, _ = sweep(args, progress=progress)
    return frame([r.result_path() for r in runs if r.result_path().exists()])


def load_results(
    path: str | Path = "results", models: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per result file under `path` (`<dataset>/<variant>/seed<k>.json`), columns as
    in this module's docstring. `models`: registry names, variant names or wildcards (`pase`
    selects `pase+no_sgm` too, as `bench table --models` does); `datasets`: names. A list or
    a comma string. A file that does not parse is a row with status "unreadable"."""
    from bench.results import iter_result_files

    root = Path(path).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"{path} {what} (give the folder with <dataset>/<variant>/seed<k>.json)")
    df = frame(list(iter_result_files(root)))
    keep = _matching(df["dataset"], datasets) & (_matching(df["model"], models) | _matching(df["variant"], models))
    return df[keep].reset_index(drop=True)


def frame(paths: Sequence[Path]) -> pd.DataFrame:
    """The DataFrame of these result files, in this order."""
    import pandas as pd

    rows = [row(p) for p in paths]
    extra = sorted({k for r in rows for k in r} - set(FIRST_COLUMNS) - {"path"}, key=_column_order)
    df = pd.DataFrame.from_records(rows, columns=[*FIRST_COLUMNS, *extra, "path"])
    return df.astype({c: "Int64" for c in INT_COLUMNS})


def row(path: Path) -> dict[str, Any]:
    """One result file as a flat dict of the DataFrame's columns."""
    from bench.results import ResultFileError, load_result

    try:
        rec = load_result(path)
    except (ResultFileError, OSError) as err:
        return {"dataset": path.parent.parent.name, "model": path.parent.name.split("+")[0],
                "variant": path.parent.name, "seed": _seed_of(path), "status": "unreadable",
                "error.type": type(err).__name__, "error.message": str(err), "path": str(path)}
    out = {k: rec.get(k) for k in FIRST_COLUMNS if "." not in k}
    out["variant"] = rec["run_name"]
    for key in ("error", "params", "time"):
        out.update(_flatten(rec.get(key) or {}, key, skip=("traceback",)))
    out.update(_flatten(rec.get("metrics") or {}, ""))
    config = rec.get("config") or {}
    out.update(_flatten(config.get("model") or {}, "config"))
    out.update(_flatten(config.get("run") or {}, "run"))
    out.pop("time.per_epoch_s", None)
    out["path"] = str(path)
    return out


def _flatten(d: dict[str, Any], prefix: str, skip: Iterable[str] = ()) -> dict[str, Any]:
    """{'a': {'b': 1}, 'c': [1, 2]} -> {'<prefix>.a.b': 1, '<prefix>.c': (1, 2)} (lists as tuples: hashable)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in skip:
            continue
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(_flatten(v, name))
        else:
            out[name] = tuple(v) if isinstance(v, list) else v
    return out


def _column_order(name: str) -> tuple[int, str]:
    """Metrics first (test, valid, any other split), then config.*, then run.*."""
    group = name.split(".")[0]
    return ({"test": 0, "valid": 1, "config": 3, "run": 4}.get(group, 2), name)


def _seed_of(path: Path) -> int | None:
    digits = path.stem.removeprefix("seed")
    return int(digits) if digits.isdigit() else None


def _matching(column: pd.Series, patterns: str | Sequence[str] | None) -> pd.Series:
    """True where the value matches one of the patterns (all True without patterns)."""
    import fnmatch

    from bench.config import split_list

    names = split_list(patterns) if isinstance(patterns, str) else list(patterns or [])
    if not names:
        return column.map(lambda v: True).astype(bool)
    return column.map(lambda v: any(fnmatch.fnmatchcase(str(v), p) for p in names)).astype(bool)


# -- options: keywords -> the `bench run` parser's Namespace --------------------------------
def run_parser() -> argparse.ArgumentParser:
    """The `bench run` subcommand's own parser (its options, types and defaults)."""
    from bench.cli import run as run_cli

    sub = argparse.ArgumentParser().add_subparsers()
    run_cli.add_parser(sub)
    return sub.choices["run"]


def run_args(fixed: dict[str, Any], options: dict[str, Any]) -> argparse.Namespace:
    """The Namespace `bench run` would parse, from Python values: `fixed` (what `run` names
    itself) and `options` (its **options). Each value is checked by the option's own argparse
    type or choices (a bad one raises OptionError naming the keyword); an unknown keyword
    raises TypeError with the closest valid one."""
    from models.registry import did_you_mean

    parser = run_parser()
    actions = {a.dest: a for a in parser._actions}
    unknown = [k for k in options if k not in actions or k in NOT_OPTIONS]
    if unknown:
        valid = sorted(set(actions) - NOT_OPTIONS | set(_own_parameters()))
        named = ", ".join(f"'{k}' (did you mean '{RENAMED[k]}'?)" if k in RENAMED else did_you_mean([k], valid)
                          for k in unknown)
        raise TypeError(f"run() got unknown option(s) {named}; valid options: {', '.join(valid)}")
    args = parser.parse_args([])
    for key, value in {**fixed, **options}.items():
        setattr(args, key, _option_value(actions[key], key, value))
    return args


def _own_parameters() -> list[str]:
    import inspect

    return [p for p in inspect.signature(run).parameters if p != "options"]


def _option_value(action: argparse.Action, key: str, value: Any) -> Any:
    """`value` as the option's parser would give it, checked the same way."""
    from bench.config import OptionError

    if value is None:
        return action.default
    if action.nargs == 0:  # an on/off switch
        if not isinstance(value, bool):
            raise OptionError(f"{key}={value!r}: give True or False")
        return value
    if key == "set":
        if not isinstance(value, dict):
            raise OptionError(f"set={value!r}: give a mapping of model-config fields to values, e.g. {{'lr': 1e-3}}")
        return value
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    if action.type is None and not isinstance(value, (str, Path)):
        raise OptionError(f"{key}={value!r}: give a string")
    try:
        parsed = action.type(text) if callable(action.type) else text
    except argparse.ArgumentTypeError as err:
        raise OptionError(f"{key}={value!r}: {err}") from None
    if action.choices is not None and parsed not in action.choices:
        raise OptionError(f"{key}={value!r}: give one of {', '.join(map(str, action.choices))}")
    return parsed


def _load_includes(include: str | Path | Sequence[str | Path]) -> None:
    """Load the plugin files/folders in `include` (bench.plugins), before the runs are planned."""
    paths = [include] if isinstance(include, (str, Path)) else list(include)
    from bench.plugins import include as load

    load([str(p) for p in paths], "include=")
