"""Data a training stage declares besides the labeled splits (`models.base.StageData`): each
named source is loaded and checked here, before training, so a missing or malformed file
fails at once with its path, key and problem, and models never read files themselves."""

from __future__ import annotations

from typing import Any, Callable

from models.base import StageData

SOURCES: dict[str, str] = {  # source name -> the bench.data module whose load(cfg, directory) reads it
    "kebr_pretrain_clips": "bench.data.kebr_pretrain",
    "unlabeled_clips": "bench.data.unlabeled",
}


def loader(source: str) -> Callable[[Any, str], Any]:
    """The load function of a named source."""
    import importlib

    if source not in SOURCES:
        raise ValueError(f"unknown stage data source '{source}' (expected one of {', '.join(SOURCES)})")
    return importlib.import_module(SOURCES[source]).load


def load_stage_data(spec: StageData, cfg: Any) -> Any:
    """The loaded, checked data of `spec`, read from the folder in config field `spec.path_field`."""
    directory = getattr(cfg, spec.path_field, None)
    if not directory:
        raise ValueError(f"config key '{spec.path_field}' is unset; the '{spec.source}' stage data needs a folder")
    return loader(spec.source)(cfg, str(directory))
