"""Model zoo. The registry (models/registry.py) is the only list of models.

Every module directly under `models/` (not `layers/`, not the shared modules) is a model file
that registers its models when imported: a new model is one file with one `@register_model`
decorator. The registry imports them (and the installed plugin packages) the first time it
is read, so `import models` and `from models.constants import ...` stay light: tables and
`ls` never import torch.
"""

from typing import Any

__all__ = ["create_model", "get_model_entry", "list_models", "register_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'models' has no attribute '{name}'")
