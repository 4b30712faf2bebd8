"""Model zoo. Importing this package registers every model (see models/registry.py).

Every module directly under `models/` (not `layers/`, not the protocol files) is imported
here, so a new model is one file with one `@register_model` decorator: no second list.
"""

import importlib
import pkgutil

from models.registry import create_model, get_model_entry, list_models, register_model  # noqa: F401

_NOT_MODELS = {"base", "registry", "layers"}

# Each import registers its models; the registry is the only list of models.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _NOT_MODELS and not _info.name.startswith("_"):
        importlib.import_module(f"models.{_info.name}")

__all__ = ["create_model", "get_model_entry", "list_models", "register_model"]
