"""What `bench ls` lists, kept in `bench/catalog.json` so that listing needs neither torch nor
the model files (importing them takes seconds; building every preset takes more).

The catalog records the registry (`catalog_model`), the registered datasets and the parameter
count of every (model, dataset, preset), built on the meta device. It cannot go stale unnoticed:
it stores a hash of every source file the registry was built from (`source_files`), and
`load_catalog` returns None when any of them changed or appeared, or when the catalog is
missing; `bench ls` then asks the live registry. `python -m bench ls --write-catalog` rebuilds it.

Tables and figures read model metadata through `model_meta` (here, so that they need neither
torch nor the model files): the catalog's for the models it lists; else the live registry's for
a model registered in this process (a plugin); else the raw name at the registry's default
table position (after the baselines, before the proposed model).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from models.constants import entry_points

CATALOG_PATH = Path(__file__).with_name("catalog.json")
SCHEMA = 2


def _root() -> Path:
    """The folder holding the `bench` and `models` packages (a checkout or site-packages)."""
    return Path(__file__).resolve().parent.parent


_IMPORT = re.compile(r"^\s*(?:from|import)\s+((?:bench|models)(?:\.\w+)*)", re.MULTILINE)


def _package_files(root: Path, package: str) -> list[Path]:
    return sorted(root.joinpath(*package.split(".")).rglob("*.py"))


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)


def source_files() -> list[str]:
    """Files (relative to the package root) the catalog derives from: everything under
    `models/` and `bench/data/`, this module, and every `bench` module they import, transitively."""
    root = _root()
    todo = _package_files(root, "models") + _package_files(root, "bench.data") + [root / "bench" / "catalog.py"]
    seen: set[Path] = set()
    while todo:
        path = todo.pop().resolve()
        if path in seen:
            continue
        seen.add(path)
        for module in _IMPORT.findall(path.read_text()):
            parts = module.split(".")
            found = next((f for k in range(len(parts), 0, -1) if (f := _module_file(root, ".".join(parts[:k])))), None)
            if found is not None:
                todo.append(found)
    return sorted(str(p.relative_to(root)) for p in seen)


def fingerprint(files: list[str]) -> str:
    """sha256 over the names and contents of `files` (a missing file hashes as missing)."""
    root, h = _root(), hashlib.sha256()
    for name in files:
        path = root / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<missing>") + b"\0")
    return h.hexdigest()


def load_catalog(path: Path = CATALOG_PATH) -> dict[str, Any] | None:
    """The catalog when it matches the sources it was built from, else None."""
    try:
        catalog = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    # the fingerprint covers names and contents: a new file changes it too
    current = (isinstance(catalog, dict) and catalog.get("schema") == SCHEMA
               and fingerprint(source_files()) == catalog.get("fingerprint"))
    return catalog if current else None


def build_on_meta(name: str, cfg: Any) -> Any:
    """Model `name` built from `cfg` on the meta device: shapes, no memory, no weights. A
    checkpoint text encoder is stood in for by bert-base-uncased shapes (random init)."""
    import dataclasses

    import torch

    from models.layers.text_encoder import NAMED_CONFIGS
    from models.registry import get_model_entry

    if cfg.text_input != "features" and getattr(cfg, "text_encoder", "tiny") not in NAMED_CONFIGS:
        cfg = dataclasses.replace(cfg, text_encoder="bert-base")  # a checkpoint's shapes, without its weights
    with torch.device("meta"):
        return get_model_entry(name).builder(cfg)


def parameter_count(name: str, dataset: str, preset: str) -> int:
    """Count parameters without allocating them (meta device). BERT models are counted with
    bert-base-uncased shapes, whatever checkpoint their preset names."""
    from models.registry import resolve_config

    return sum(p.numel() for p in build_on_meta(name, resolve_config(name, dataset, preset)).parameters())


def build_catalog(count: Callable[[str, str, str], int] | None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The catalog from the live registry; `count(model, dataset, preset)` gives parameter counts
    (None: no counts). `progress` is told each model before its presets are counted."""
    from bench.data import list_datasets
    from bench.plugins import is_plugin
    from models import list_models
    from models.registry import DEFAULT_ORDER, get_model_entry

    models = {}
    for name in list_models():
        if is_plugin(get_model_entry(name).builder):
            continue  # msabench's own models only: `ls` adds the plugins' live
        if progress and count:
            progress(name)
        models[name] = catalog_model(name, count)
    files = source_files()
    return {"schema": SCHEMA, "sources": files, "fingerprint": fingerprint(files),
            "models": models, "datasets": list_datasets(), "default_order": DEFAULT_ORDER}


def catalog_model(name: str, count: Callable[[str, str, str], int | None] | None) -> dict[str, Any]:
    """One model's catalog record: description, presets per dataset with counts, n/a datasets."""
    from models.registry import get_model_entry

    entry = get_model_entry(name)
    presets = {dataset: {"default": entry.resolve_preset(dataset, None),
                         "counts": {p: count(name, dataset, p) if count else None for p in entry.preset_names(dataset)}}
               for dataset in entry.datasets() if dataset not in entry.unsupported}  # n/a: listed once, with its reason
    return {"description": entry.description, "presets": presets, "meta": entry.meta(),
            "unsupported": dict(sorted(entry.unsupported.items()))}


def write_catalog(catalog: dict[str, Any], path: Path = CATALOG_PATH) -> None:
    path.write_text(json.dumps(catalog, indent=1, sort_keys=True) + "\n")


# -- model metadata for tables and figures ---------------------------------------------------

@functools.lru_cache(maxsize=1)
def _registered_meta() -> tuple[dict[str, dict[str, Any]], int]:
    """({model: metadata}, default order) of every built-in model: the catalog's, or (stale) the registry's."""
    catalog = load_catalog()
    if catalog is not None:
        return {name: m["meta"] for name, m in catalog["models"].items()}, int(catalog["default_order"])
    from models import list_models
    from models.registry import DEFAULT_ORDER, get_model_entry

    return {name: get_model_entry(name).meta() for name in list_models()}, DEFAULT_ORDER


def model_meta(name: str) -> dict[str, Any]:
    """A model's metadata (models.registry.META_FIELDS): see the module docstring for where it comes from."""
    known, default_order = _registered_meta()
    if name in known:
        return known[name]
    registry = sys.modules.get("models.registry")  # a plugin registered in this process, or
    if registry is None and any(ep.name == name for ep in entry_points()):  # an installed one (named after its model)
        registry = importlib.import_module("models.registry")
    if registry is not None and name in registry.list_models():
        return registry.get_model_entry(name).meta()
    return {"display_name": name, "paper": "", "reference": "", "family": "", "order": default_order,
            "row_labels": {}}


def row_label(model: str, config: Mapping[str, Any] | None = None) -> str:
    """A run's table row name: the first of the model's `row_labels` whose field the run's model
    config sets (not None/False/""), else the model's display name."""
    meta = model_meta(model)
    set_fields = [key for key, value in (config or {}).items() if value not in (None, False, "")]
    return next((label for key, label in meta["row_labels"].items() if key in set_fields), meta["display_name"])
