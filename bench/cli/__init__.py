"""Command-line entry point. One module per subcommand, each with `add_parser(sub)` and
`main(args) -> int`; heavy imports (torch, models) happen inside `main`, so `--help` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module under bench.cli; the order is the order of `--help`
COMMANDS = {
    "run": "bench.cli.run",
    "plan": "bench.cli.plan",
    "tune": "bench.cli.tune",
    "ls": "bench.cli.ls",
    "data": "bench.cli.data",
    "table": "bench.cli.table",
    "figure": "bench.cli.figure",
    "compare": "bench.cli.compare",
    "evaluate": "bench.cli.evaluate",
    "perf": "bench.cli.perf",
    "check-model": "bench.cli.check_model",
}

EPILOG = """examples:
  python -m bench run --models pase,mult                 # 5 seeds on the embedded synthetic data
  python -m bench run --models mult --seeds 1111 --epochs 3
  python -m bench ls                                     # models, presets, parameter counts, datasets
"""


INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT, as a shell reports it)


# -- option types: argparse refuses a bad value before the command starts (exit 2, the
# option named, usage shown, nothing written) ------------------------------------------
def int_at_least(lo: int):
    """An argparse type: an integer >= lo."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer (give an integer >= {lo})") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{value} is out of range (give an integer >= {lo})")
        return value

    parse.__name__ = f"integer >= {lo}"
    return parse


def int_or_auto(text: str) -> int | str:
    """An argparse type: an integer >= 1, or auto."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int_at_least(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer >= 1 or auto") from None


int_or_auto.__name__ = "integer >= 1 or auto"


def seeds(text: str) -> list[int]:
    """An argparse type: 1111,1112 or 1111-1115 (or a mix)."""
    from bench.config import parse_seeds

    try:
        return parse_seeds(text, option="")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def names(text: str) -> str:
    """An argparse type: a non-empty comma-separated list (returned cleaned, still a string)."""
    from bench.config import split_list

    items = split_list(text)
    if not items:
        raise argparse.ArgumentTypeError(f"'{text}' is an empty list (give one or more comma-separated names)")
    return ",".join(items)


def out_dir(text: str) -> str:
    """An argparse type: a folder to write into (created when missing; not an existing file)."""
    import os

    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (give a folder)")
    if os.path.exists(os.path.expanduser(text)) and not os.path.isdir(os.path.expanduser(text)):
        raise argparse.ArgumentTypeError(f"'{text}' is a file, not a folder")
    return text


def condition(text: str) -> str:
    """An argparse type: a missing-data condition KIND/MODALITIES/RATE (bench/data/conditions.py)."""
    from bench.data.conditions import BERNOULLI, MISSING_KINDS, Condition, ConditionError

    try:
        cond = Condition.parse(text)
    except ConditionError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not cond.missing:
        raise argparse.ArgumentTypeError(f"'{text}': training under missing data takes "
                                         f"{' or '.join((*MISSING_KINDS, BERNOULLI))}")
    return cond.name


def existing_dir(text: str) -> str:
    """An argparse type: a folder that exists (result files are read from it)."""
    import os

    if not os.path.isdir(os.path.expanduser(text)):
        what = "is a file, not a folder" if os.path.exists(os.path.expanduser(text)) else "does not exist"
        raise argparse.ArgumentTypeError(f"'{text}' {what} (give the folder with <dataset>/<run>/seed<k>.json)")
    return text


def add_submitit_options(g) -> None:
    """The scheduler options `run` and `tune` share (bench.launch.SlurmOptions)."""
    g.add_argument("--cluster", default=None, help="submitit cluster: slurm | local | debug (default: auto)")
    g.add_argument("--slurm-partition", default=None)
    g.add_argument("--gpus-per-job", type=int_at_least(0), default=0)
    g.add_argument("--cpus-per-job", type=int_at_least(1), default=4)
    g.add_argument("--mem-gb", type=int_at_least(1), default=None)
    g.add_argument("--time-min", type=int_at_least(1), default=240, help="job time limit in minutes (default: 240)")


def slurm_options(args, folder: str, wait: bool = True):
    """bench.launch.SlurmOptions from the options add_submitit_options added."""
    from bench.launch import SlurmOptions

    return SlurmOptions(folder=folder, cluster=args.cluster, partition=args.slurm_partition,
                        gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, mem_gb=args.mem_gb,
                        time_min=args.time_min, wait=wait)


# the exit status of the commands that render result files (table, figure, compare)
NOTHING_TO_SHOW = 2
REPORT_EXIT_STATUS = """exit status: 0 written; 2 a bad option, or nothing to show (no result files or
tuning studies match --results, the dataset, the run names or the seeds asked for)."""


def error_exit(err: BaseException) -> int:
    """A bad input a command caught: its message on one stderr line, exit status 2."""
    print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
    return 2


def user_errors() -> tuple[type[BaseException], ...]:
    """The project's own error types for a bad input (option, sweep file, config value, data
    file, text encoder): their message says what to fix, so the user sees it on one line."""
    from bench.config import OptionError
    from bench.data import DataError
    from models.layers.text_encoder import TextEncoderError
    from models.registry import ConfigError

    return (OptionError, ConfigError, DataError, TextEncoderError)


def expected_stops() -> tuple[type[BaseException], ...]:
    """What `command_error` turns into an exit code: Ctrl-C and the `user_errors`."""
    return (KeyboardInterrupt, *user_errors())


def command_error(err: BaseException, *, interrupted: str, where: str = "") -> int:
    """The one way `run` and `tune` end on an error they expect: a single stderr line, no
    traceback, and the exit code (130 interrupted, 2 a bad input: one of `user_errors`).
    Anything else is re-raised with its traceback: a bug is shown, not summarised."""
    if isinstance(err, KeyboardInterrupt):
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return INTERRUPTED
    if not isinstance(err, user_errors()):
        raise err
    from bench.config import SweepFileError
    from bench.data import DataError

    if isinstance(err, (DataError, SweepFileError)):
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
    else:
        print(f"error: {where}{err.args[0] if err.args else err}", file=sys.stderr)
    return 2


def table_command(results: str, *options: str) -> str:
    """The `bench table` command that shows the result files under `results`."""
    import shlex
    from pathlib import Path

    where = [] if Path(results) == Path("results") else ["--results", shlex.quote(str(results))]
    return " ".join(["python -m bench table", *where, *options])


def print_tables(tables, out: str, formats: list[str]) -> int:
    """Print each table as Markdown, write it in every format under `out`, say where."""
    from bench.report import to_markdown, write_tables

    for t in tables:
        print(to_markdown(t))
    paths = write_tables(tables, out, formats)
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msabench", description="Benchmark harness for multimodal sentiment analysis.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    for command in leaf_parsers(parser):
        add_include_option(command)
    return parser


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that take a command's options (`ls`, `data check`, `figure predictions`, ...):
    those without subcommands of their own. An alias shares its parser: each is listed once."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    children = {id(p): p for a in subs for p in a.choices.values()}
    return [leaf for child in children.values() for leaf in leaf_parsers(child)]


def add_include_option(p: argparse.ArgumentParser) -> None:
    """`--include`, which every command takes (bench.plugins)."""
    p.add_argument("--include", action="append", metavar="PATH", default=None,
                   help="load models from a .py file or a folder of them (repeatable; also $MSABENCH_INCLUDE)")


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        sys.exit(2)
    from bench.plugins import PluginError, include_from_cli

    try:
        include_from_cli(getattr(args, "include", None))
    except PluginError as err:
        sys.exit(error_exit(err))
    code = args.func(args) or 0
    if code == INTERRUPTED:
        stop_now(code)
    sys.exit(code)


def stop_now(code: int) -> None:
    """Ctrl-C means stop at once: exit without the interpreter's teardown, which (unloading
    torch, transformers and the models) takes seconds on a loaded machine. Nothing is lost:
    result files are written whole or not at all, and the output streams are flushed here."""
    import logging
    import os

    logging.shutdown()
    if "multiprocessing.util" in sys.modules:  # --jobs: release the pool's semaphores (no leak warning)
        sys.modules["multiprocessing.util"]._exit_function()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
