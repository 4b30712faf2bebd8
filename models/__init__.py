"""Model zoo. Importing this package registers every model (see models/registry.py)."""

from models.registry import create_model, get_model_entry, list_models, register_model  # noqa: F401

# Each import registers its models; the registry is the only list of models.
from models import bert_text, late_fusion, mag_bert, mult, pase, self_mm  # noqa: F401,E402

__all__ = ["create_model", "get_model_entry", "list_models", "register_model"]
