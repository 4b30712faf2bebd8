"""Datasets: a registry of loaders, one module per source format.

`load_dataset(name, ...)` is the one front door. Loaders validate their input and raise
`DataError` (file, split, key, problem) before any model is built.

Formats (`data_format`, `DATA_FORMATS`): MMSA feature pickles and MulT pickles
(`bench.data.mmsa`, `bench.data.mult_pkl`, told apart by their keys), MAG-BERT word-aligned
pickles (`bench.data.mag`, by file name); token ids made by the harness from text go through
`bench.data.tokenize`.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from bench.data.base import SPLITS, DataError, DatasetInfo, MSAData, Split

DATA_FORMATS = ("auto", "mmsa", "mult", "mag")  # --data-format
# the formats each dataset can be read from (anything else is refused, not ignored)
DATASET_FORMATS = {"mosi": DATA_FORMATS, "mosei": DATA_FORMATS, "iemocap": ("auto", "mult"), "synthetic": ("auto",),
                   "sims": ("auto", "mmsa"), "simsv2": ("auto", "mmsa")}

_LOADERS: dict[str, Callable[..., MSAData]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_dataset(name: str, description: str = "") -> Callable:
    def wrap(fn: Callable[..., MSAData]) -> Callable[..., MSAData]:
        if name in _LOADERS:
            raise ValueError(f"dataset '{name}' is already registered")
        _LOADERS[name] = fn
        _DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().splitlines()[0]
        return fn

    return wrap


def list_datasets() -> dict[str, str]:
    _import_loaders()
    return dict(sorted(_DESCRIPTIONS.items()))


def load_dataset(name: str, **options: Any) -> MSAData:
    """Load and validate a dataset. Options are the loader's named parameters (data_root,
    setting, text_input, ...); an unknown one is a TypeError."""
    _import_loaders()
    if name not in _LOADERS:
        close = difflib.get_close_matches(name, list(_LOADERS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown dataset '{name}'{hint} (available: {', '.join(sorted(_LOADERS))})")
    fmt = options.get("data_format") or "auto"
    allowed = DATASET_FORMATS.get(name, DATA_FORMATS)
    if fmt not in DATA_FORMATS:
        raise DataError(name, f"unknown data format '{fmt}' (expected one of {', '.join(DATA_FORMATS)})")
    if fmt not in allowed:
        raise DataError(name, f"data format '{fmt}' does not apply to {name} (it is read as: {', '.join(allowed)})")
    check_options(name, _LOADERS[name], options)
    return _LOADERS[name](**options)


def loader_takes(name: str, option: str) -> bool:
    """Whether dataset `name`'s loader has the option (e.g. `glove`: IEMOCAP only)."""
    _import_loaders()
    return name in _LOADERS and option in inspect.signature(_LOADERS[name]).parameters


def check_options(name: str, loader: Callable[..., MSAData], options: dict[str, Any]) -> None:
    """Every option must be a named parameter of the loader: a misspelt one (`data_rot=`) is
    refused, never ignored."""
    params = [p.name for p in inspect.signature(loader).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(params))
    if unknown:
        from models.registry import did_you_mean

        raise TypeError(f"load_dataset('{name}'): unknown option(s) {did_you_mean(unknown, params)}; "
                        f"the {name} loader takes: {', '.join(params)}")


def _import_loaders() -> None:
    # Importing a loader module registers it.
    from bench.data import mmsa, mult_pkl, synthetic  # noqa: F401


__all__ = ["DATA_FORMATS", "SPLITS", "DataError", "DatasetInfo", "MSAData", "Split", "list_datasets", "load_dataset",
           "register_dataset"]
