"""Command-line entry point. One module per subcommand, each with `add_parser(sub)` and
`main(args) -> int`; heavy imports (torch, models) happen inside `main`, so `--help` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module under bench.cli; the order is the order of `--help`
COMMANDS = {
    "run": "bench.cli.run",
    "ls": "bench.cli.ls",
    "data": "bench.cli.data",
    "table": "bench.cli.table",
    "figure": "bench.cli.figure",
    "compare": "bench.cli.compare",
    "perf": "bench.cli.perf",
}

EPILOG = """examples:
  python -m bench run --models pase,mult                 # 5 seeds on the embedded synthetic data
  python -m bench run --models mult --seeds 1111 --epochs 3
  python -m bench ls                                     # models, presets, parameter counts, datasets
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msabench", description="Benchmark harness for multimodal sentiment analysis.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        sys.exit(2)
    sys.exit(args.func(args) or 0)
