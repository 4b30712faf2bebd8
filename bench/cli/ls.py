"""`ls`: registered models with their presets and parameter counts, and the datasets.

Read from `bench/catalog.json` while it matches the model sources (instant: no torch); else
from the live registry, with counts built on the meta device when asked (`--counts`)."""

from __future__ import annotations

import argparse
import fnmatch
import sys
import textwrap
from typing import Any

from bench.catalog import parameter_count  # also what tests import as `ls`'s count

HELP_EPILOG = """Parameter counts come from bench/catalog.json, which records the count of every
(model, dataset, preset) built on the meta device (BERT models with bert-base-uncased shapes)
together with a hash of the model sources. When a model file changed since, the counts are
left out unless --counts builds them afresh (about 10-20 s).
A model marked n/a for a dataset cannot run there; the numbered notes under the table say why.
"""
WIDTH = 100  # footnotes and descriptions wrap here


def add_parser(sub) -> None:
    p = sub.add_parser("ls", help="list models (presets, parameter counts) and datasets", epilog=HELP_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", nargs="?", default="*", help="model name wildcard (default: *)")
    p.add_argument("--counts", action="store_true",
                   help="build every preset on the meta device to count its parameters (instead of the catalog)")
    p.add_argument("--write-catalog", action="store_true",
                   help="(developers) rebuild bench/catalog.json from the registry, counts included")
    p.set_defaults(func=main)


def _catalog(args) -> dict[str, Any]:
    from bench.catalog import CATALOG_PATH, build_catalog, load_catalog, write_catalog

    build = args.counts or args.write_catalog  # counts afresh
    fresh = None if build else load_catalog()
    if fresh is not None:
        return fresh
    if not build:
        print(f"note: the model sources changed since {CATALOG_PATH.name} was written: parameter counts left out "
              "(--counts builds them)", file=sys.stderr)
    catalog = build_catalog(parameter_count if build else None,
                            progress=lambda name: print(f"counting parameters: {name}", file=sys.stderr))
    if args.write_catalog:
        write_catalog(catalog)
        print(f"wrote {CATALOG_PATH}", file=sys.stderr)
    return catalog


def _add_plugins(catalog: dict[str, Any]) -> None:
    """The models of included files and installed plugin packages, which the catalog does not
    hold: read from the live registry, parameters counted on the meta device."""
    from bench.plugins import any_plugins

    if not any_plugins():
        return  # no model import: `ls` stays instant
    from bench.catalog import catalog_model
    from bench.plugins import plugin_models
    from models.registry import get_model_entry, registration_site

    for name in plugin_models():
        record = catalog_model(name, _plugin_count)
        where = registration_site(get_model_entry(name).builder)
        record["description"] = f"{record['description'] or '–'} (plugin: {where})"
        catalog["models"][name] = record


def _plugin_count(name: str, dataset: str, preset: str) -> int | None:
    """A plugin model's parameter count; None (shown as –) when it cannot be built, with a note why."""
    try:
        return parameter_count(name, dataset, preset)
    except Exception as err:  # noqa: BLE001 - a plugin's bug is reported, the listing goes on
        print(f"note: {name} ({dataset}, {preset}) cannot be built to count its parameters: "
              f"{type(err).__name__}: {err}", file=sys.stderr)
        return None


def model_rows(catalog: dict[str, Any], names: list[str]) -> tuple[list[list[str]], list[str]]:
    """Table rows (model, dataset, preset, parameters) and the n/a reasons, numbered in order."""
    rows, reasons = [], []
    for name in names:
        entry = catalog["models"][name]
        datasets = sorted(set(entry["presets"]) | set(entry["unsupported"]))
        for dataset in datasets:
            why = entry["unsupported"].get(dataset)
            if why is not None:
                if why not in reasons:
                    reasons.append(why)
                rows.append([name, dataset, f"n/a [{reasons.index(why) + 1}]", ""])
                continue
            info = entry["presets"][dataset]
            for preset, count in sorted(info["counts"].items()):
                mark = " *" if preset == info["default"] else ""
                rows.append([name, dataset, preset + mark, "–" if count is None else f"{count:,}"])
    return rows, reasons


def model_text(info: dict[str, Any]) -> str:
    """A model's description and metadata: paper (unless the description names it), family,
    table row name, reference code."""
    meta, text = info["meta"], info["description"] or "–"
    extra = [meta["paper"] if meta["paper"] and meta["paper"] not in text else "", meta["family"],
             f"table row '{meta['display_name']}'", f"code: {meta['reference']}" if meta["reference"] else ""]
    return f"{text} [{'; '.join(e for e in extra if e)}]"


def _wrapped(label: str, text: str) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=label, subsequent_indent=" " * len(label),
                         break_on_hyphens=False, break_long_words=False)


def main(args) -> int:
    from tabulate import tabulate

    catalog = _catalog(args)
    _add_plugins(catalog)
    names = sorted(n for n in catalog["models"] if fnmatch.fnmatch(n, args.pattern))
    if not names:
        print(f"error: PATTERN '{args.pattern}' matches no registered model "
              f"(registered: {', '.join(sorted(catalog['models']))})", file=sys.stderr)
        return 2
    rows, reasons = model_rows(catalog, names)
    print(tabulate(rows, headers=["model", "dataset", "preset (* default)", "parameters"], tablefmt="github",
                   colalign=("left", "left", "left", "right")))
    if reasons:
        print("\nn/a: the model cannot run on that dataset with msabench's data sources:")
        print("\n".join(_wrapped(f"  [{k}] ", why) for k, why in enumerate(reasons, 1)))
    for title, items in (("models", {n: model_text(catalog["models"][n]) for n in names}),
                         ("datasets", catalog["datasets"])):
        width = max(len(k) for k in items) + 2
        print(f"\n{title}:")
        print("\n".join(_wrapped(f"  {k:<{width}}", text or "–") for k, text in items.items()))
    return 0
