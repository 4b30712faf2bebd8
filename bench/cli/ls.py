"""`ls`: registered models with their presets and parameter counts, and the datasets."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("ls", help="list models (presets, parameter counts) and datasets")
    p.add_argument("pattern", nargs="?", default="*", help="model name wildcard (default: *)")
    p.set_defaults(func=main)


def parameter_count(name: str, dataset: str, preset: str) -> int:
    """Count parameters without allocating them (meta device). BERT models are counted with
    bert-base-uncased shapes (random init), whatever checkpoint their preset names."""
    import torch

    from models.registry import get_model_entry, resolve_config

    entry = get_model_entry(name)
    cfg = resolve_config(name, dataset, preset)
    if cfg.text_input != "features" and getattr(cfg, "text_encoder", "tiny") not in ("tiny", "bert-base"):
        cfg = resolve_config(name, dataset, preset, text_encoder="bert-base")  # a checkpoint's shapes, not its weights
    with torch.device("meta"):
        model = entry.builder(cfg)
    return sum(p.numel() for p in model.parameters())


def main(args) -> int:
    import sys

    from tabulate import tabulate

    from bench.data import list_datasets
    from models import list_models
    from models.registry import get_model_entry

    if not list_models(args.pattern):
        print(f"error: PATTERN '{args.pattern}' matches no registered model (registered: {', '.join(list_models())})",
              file=sys.stderr)
        return 2
    rows = []
    for name in list_models(args.pattern):
        entry = get_model_entry(name)
        for dataset, preset in sorted(entry.presets):
            default = entry.resolve_preset(dataset, None) == preset
            rows.append([name, dataset, preset + (" *" if default else ""), f"{parameter_count(name, dataset, preset):,}"])
        for dataset, why in sorted(entry.unsupported.items()):
            rows.append([name, dataset, "n/a", why])
    print(tabulate(rows, headers=["model", "dataset", "preset (* default)", "parameters"], tablefmt="github"))
    print()
    descriptions = [[n, get_model_entry(n).description] for n in list_models(args.pattern)]
    print(tabulate(descriptions, headers=["model", "description"], tablefmt="github"))
    print()
    print(tabulate(list(list_datasets().items()), headers=["dataset", "description"], tablefmt="github"))
    return 0
