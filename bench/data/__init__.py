"""Datasets: a registry of loaders, one module per source format.

`load_dataset(name, ...)` is the one front door. Loaders validate their input and raise
`DataError` (file, split, key, problem) before any model is built.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

from bench.data.base import SPLITS, DataError, DatasetInfo, MSAData, Split

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
    """Load and validate a dataset. Options are loader-specific (data_root, setting, needs, ...)."""
    _import_loaders()
    if name not in _LOADERS:
        close = difflib.get_close_matches(name, list(_LOADERS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown dataset '{name}'{hint} (available: {', '.join(sorted(_LOADERS))})")
    return _LOADERS[name](**options)


def _import_loaders() -> None:
    # Importing a loader module registers it.
    from bench.data import mmsa, mult_pkl, synthetic  # noqa: F401


__all__ = ["SPLITS", "DataError", "DatasetInfo", "MSAData", "Split", "list_datasets", "load_dataset", "register_dataset"]
