"""The model registry: the single source of truth for which models exist.

timm-style: a builder is registered under a name together with its config dataclass and
its presets; `create_model` resolves (dataset, preset) -> config, applies overrides whose
value is not None (so CLI defaults never override model defaults) and builds the model.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

from models.base import ModelConfig

# Preset sources: "mmsa" (MMSA 2.2.1 config_regression.json), "paper" (original repo/paper),
# "demo" (harness decision: CPU-sized settings for the embedded synthetic data, so the main
# command runs in minutes on a laptop).
PresetTable = dict[tuple[str, str], ModelConfig]
DEMO_PRESET = "demo"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[[Any], Any]
    config_cls: type
    presets: PresetTable
    default_preset: str
    description: str = ""
    # dataset families no msabench data source can feed to this model, with the reason (e.g.
    # IEMOCAP's MulT pickles carry no BERT token ids). Presets may still exist for them (the
    # model is ready once such a source exists); the runner refuses and tables show n/a.
    unsupported: dict[str, str] = field(default_factory=dict)

    def preset_names(self, dataset: str | None = None) -> list[str]:
        return sorted({p for (d, p) in self.presets if dataset is None or d == dataset})

    def datasets(self) -> list[str]:
        return sorted({d for (d, _) in self.presets})

    def resolve_preset(self, dataset: str, preset: str | None) -> str:
        """The preset used for `dataset`: the one asked for; else a CPU-sized `demo` preset where
        the dataset has one (the embedded `synthetic` data); else the model's default; else the first."""
        available = self.preset_names(dataset)
        if not available:
            raise ValueError(
                f"model '{self.name}' has no preset for dataset '{dataset}'; "
                f"it has presets for: {', '.join(self.datasets())}"
            )
        if preset is None:
            for candidate in (DEMO_PRESET, self.default_preset):
                if candidate in available:
                    return candidate
            return available[0]
        if preset not in available:
            raise ValueError(
                f"model '{self.name}' has no '{preset}' preset for '{dataset}'; available: {', '.join(available)}"
            )
        return preset


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    config: type,
    presets: PresetTable,
    default_preset: str = "mmsa",
    description: str = "",
    unsupported: dict[str, str] | None = None,
) -> Callable:
    """Decorator for a builder `fn(cfg) -> nn.Module`. A duplicate name raises."""

    def wrap(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is already registered")
        for key, cfg in presets.items():
            if not isinstance(cfg, config):
                raise TypeError(f"preset {key} of '{name}' is not a {config.__name__}")
        doc = (builder.__doc__ or "").strip()
        summary = description or (doc.splitlines()[0] if doc else "")
        _REGISTRY[name] = ModelEntry(name, builder, config, dict(presets), default_preset, summary, dict(unsupported or {}))
        return builder

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard pattern (e.g. 'mag*', '*bert*')."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown model '{name}'{hint} (registered: {', '.join(sorted(_REGISTRY))})") from None


def resolve_config(name: str, dataset: str = "synthetic", preset: str | None = None, **overrides: Any) -> ModelConfig:
    """The model's fully resolved config: preset for (dataset, preset), then non-None overrides."""
    entry = get_model_entry(name)
    chosen = entry.resolve_preset(dataset, preset)
    cfg = entry.presets[(dataset, chosen)]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    valid = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, valid, n=1)
            hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise KeyError(f"unknown config key(s) for model '{name}': {', '.join(hints)}; valid keys: {', '.join(sorted(valid))}")
    return dataclasses.replace(cfg, preset=chosen, dataset=dataset, **overrides)


def create_model(name: str, dataset: str = "synthetic", preset: str | None = None, **overrides: Any):
    """Build a registered model for a dataset family ('synthetic', 'mosi', 'mosei', 'iemocap')."""
    cfg = resolve_config(name, dataset, preset, **overrides)
    return get_model_entry(name).builder(cfg)
