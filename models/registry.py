"""The model registry: the single source of truth for which models exist.

timm-style: a builder is registered under a name together with its config dataclass and
its presets; `create_model` resolves (dataset, preset) -> config, applies overrides whose
value is not None (so CLI defaults never override model defaults) and builds the model.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import fnmatch
import functools
import importlib
import logging
import pkgutil
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NoReturn, Optional, Union

from models.base import ModelConfig
from models.constants import ENTRY_POINT_GROUP, entry_points

# Preset sources: "mmsa" (MMSA 2.2.1 config_regression.json), "paper" (original repo/paper),
# "demo" (harness decision: CPU-sized settings for the embedded synthetic data, so the main
# command runs in minutes on a laptop).
PresetTable = dict[tuple[str, str], ModelConfig]
DEMO_PRESET = "demo"

# Model metadata (what tables, `ls` and the README's model table read). `family`: one of these.
FAMILIES = ("harness baseline", "transformer fusion", "BERT + fusion", "contrastive", "mixture of experts",
            "state space", "early and late fusion", "memory fusion", "tensor fusion", "recurrent fusion")
# table position (harness decision): the PaSE paper's order, simple references and baselines first
# (orders below 500), the proposed model last (PaSE: 1000); a model that declares none sits between
DEFAULT_ORDER = 500
META_FIELDS = ("display_name", "paper", "reference", "family", "order", "row_labels")


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
    # `bench tune`'s search space {target: SearchParam}; None: default_search_space(config)
    search_space: Optional[dict[str, "SearchParam"]] = None
    display_name: str = ""  # the table row name (register_model: the registry name when not given)
    paper: str = ""  # "Authors, Venue Year"; "" for the harness's own rows
    reference: str = ""  # the reference code: repository@commit or package==version; "" when none
    family: str = ""  # one of FAMILIES
    order: int = DEFAULT_ORDER  # table position, ascending
    # {config field: row label}: a run whose resolved config sets that field (not None/False/"")
    # is shown under that label instead of display_name; the first such field in order wins
    row_labels: dict[str, str] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        """The metadata as JSON-able data (bench/catalog.json keeps it for the report)."""
        return {k: getattr(self, k) for k in META_FIELDS} | {"row_labels": dict(self.row_labels)}

    def preset_names(self, dataset: str | None = None) -> list[str]:
        return sorted({p for (d, p) in self.presets if dataset is None or d == dataset})

    def datasets(self) -> list[str]:
        return sorted({d for (d, _) in self.presets})

    def resolve_preset(self, dataset: str, preset: str | None) -> str:
        """The preset used for `dataset`: the one asked for; else a CPU-sized `demo` preset where
        the dataset has one (the embedded `synthetic` data); else the model's default; else the first."""
        if not (available := self.preset_names(dataset)):
            raise ConfigError(f"model '{self.name}' has no preset for dataset '{dataset}'; its presets: "
                              + "; ".join(f"{d}: {', '.join(self.preset_names(d))}" for d in self.datasets()))
        if preset is None:
            return next((c for c in (DEMO_PRESET, self.default_preset) if c in available), available[0])
        if preset not in available:
            raise ConfigError(f"model '{self.name}' has no '{preset}' preset for '{dataset}'; "
                              f"available: {', '.join(available)}")
        return preset


_REGISTRY: dict[str, ModelEntry] = {}


def did_you_mean(unknown: list[str], valid: Iterable[str]) -> str:
    """"'lr_bret' (did you mean 'lr_bert'?), 'xyz'": each unknown name with its closest valid one."""
    valid = list(valid)
    close = [(k, difflib.get_close_matches(k, valid, n=1)) for k in unknown]
    return ", ".join(f"'{k}'" + (f" (did you mean '{c[0]}'?)" if c else "") for k, c in close)


def register_model(
    name: str, *, config: type, presets: Mapping[tuple[str, str], ModelConfig], default_preset: str = "mmsa",
    description: str = "", unsupported: dict[str, str] | None = None, search_space: dict[str, "SearchParam"] | None = None,
    display_name: str = "", paper: str = "", reference: str = "", family: str = "", order: int = DEFAULT_ORDER,
    row_labels: Mapping[str, str] | None = None,
) -> Callable:
    """Decorator for a builder `fn(cfg) -> nn.Module`. A duplicate name raises; so does a
    search space naming a field the config lacks or a value of the wrong type, a family not
    in FAMILIES and a row label keyed by a field the config lacks. The metadata keywords are
    described on ModelEntry."""

    def wrap(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ConfigError(f"model '{name}' is registered twice: first at {registration_site(_REGISTRY[name].builder)}, "
                              f"again at {registration_site(builder)}")
        for key, cfg in presets.items():
            if not isinstance(cfg, config):
                raise TypeError(f"preset {key} of '{name}' is not a {config.__name__}")
        doc = (builder.__doc__ or "").strip()
        summary = description or (doc.splitlines()[0] if doc else "")
        if search_space is not None:
            check_search_space(name, config, search_space)
        _check_meta(name, config, family, row_labels or {})
        _REGISTRY[name] = ModelEntry(name, builder, config, dict(presets), default_preset, summary, dict(unsupported or {}),
                                     dict(search_space) if search_space is not None else None,
                                     display_name=display_name or name, paper=paper, reference=reference,
                                     family=family, order=order, row_labels=dict(row_labels or {}))
        return builder

    return wrap


def _check_meta(name: str, config: type, family: str, row_labels: Mapping[str, str]) -> None:
    if family and family not in FAMILIES:
        raise ValueError(f"model '{name}': family '{family}' is not one of: {', '.join(FAMILIES)}")
    fields = {f.name for f in dataclasses.fields(config)}
    if unknown := sorted(set(row_labels) - fields):
        raise ValueError(f"model '{name}': row_labels name field(s) {config.__name__} lacks: "
                         f"{did_you_mean(unknown, fields)}")


def registration_site(builder: Callable) -> str:
    """'file:line' where a builder is registered (its first decorator's line)."""
    code = getattr(builder, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else getattr(builder, "__module__", "?")


SHARED_MODULES = {"base", "registry", "protocol", "constants", "layers"}  # under models/, not model files
_LOADED = False
_ENTRY_POINTS_LOADED = False
_BROKEN: dict[str, str] = {}  # entry point name -> why it failed to import


def _with_plugins() -> dict[str, ModelEntry]:
    """The registry, once every model file under models/ and every installed plugin package
    (entry points of the group `msabench.models`) has registered its models (done once)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True  # first: a model file that reads the registry while it loads does not recurse
        import models

        for info in sorted(pkgutil.iter_modules(models.__path__), key=lambda m: m.name):
            if info.name not in SHARED_MODULES and not info.name.startswith("_"):
                importlib.import_module(f"models.{info.name}")
    load_entry_points()
    return _REGISTRY


def load_entry_points() -> None:
    """Import every entry point (once); one that fails is recorded and warned about, and the
    others still load."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points():
        try:
            ep.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin must not stop the others
            _BROKEN[ep.name] = (f"the plugin entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP}) "
                                f"failed to import: {type(err).__name__}: {err}")
            logging.getLogger(__name__).warning(f"warning: {_BROKEN[ep.name]}")


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard pattern (e.g. 'mag*', '*bert*')."""
    return sorted(n for n in _with_plugins() if fnmatch.fnmatch(n, pattern))


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _with_plugins()[name]
    except KeyError:
        if name in _BROKEN:
            raise UnknownNameError(f"model '{name}': {_BROKEN[name]}") from None
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown model '{name}'{hint} (registered: {', '.join(sorted(_REGISTRY))})") from None


def resolve_config(name: str, dataset: str = "synthetic", preset: str | None = None, **overrides: Any) -> ModelConfig:
    """The model's fully resolved config: preset for (dataset, preset), then non-None overrides."""
    return resolve_run_config(name, dataset, preset, {k: v for k, v in overrides.items() if v is not None})


def resolve_run_config(name: str, dataset: str, preset: str | None, overrides: dict[str, Any]) -> ModelConfig:
    """As `resolve_config`, with every override applied, None included (`--set key=null` on an
    Optional field): each value is parsed to its field's type and checked (`parse_field`)."""
    entry = get_model_entry(name)
    chosen = entry.resolve_preset(dataset, preset)
    cfg = entry.presets[(dataset, chosen)]
    for key in sorted(FIXED_FIELDS.keys() & overrides.keys()):
        parse_field(entry.config_cls, key, overrides[key], name)  # raises: the run sets it, not --set
    valid = {f.name for f in dataclasses.fields(cfg)}
    if unknown := sorted(set(overrides) - valid):
        raise UnknownNameError(f"unknown config key(s) for model '{name}': {did_you_mean(unknown, valid)}; "
                               f"valid keys: {', '.join(sorted(valid))}")
    typed = {k: parse_field(entry.config_cls, k, v, model=name) for k, v in sorted(overrides.items())}
    return dataclasses.replace(cfg, preset=chosen, dataset=dataset, **typed)


def create_model(name: str, dataset: str = "synthetic", preset: str | None = None, **overrides: Any):
    """Build a registered model for a dataset family ('synthetic', 'mosi', 'mosei', 'iemocap')."""
    cfg = resolve_config(name, dataset, preset, **overrides)
    return get_model_entry(name).builder(cfg)


# -- config validation ------------------------------------------------------------------
# Every override (--set, sweep-file `set:`/`variants:`, --epochs -> max_epochs) is parsed to
# its field's declared type and checked against the field's rule before any data is loaded.
# A field's rule is, first found: `field(metadata={"bounds": Bounds(...), "choices": (...)})`
# on the field; then FIELD_CHOICES for "<ConfigClass>.<field>" along the config's MRO; then a
# `Literal[...]` / Enum type; then the first FIELD_BOUNDS name pattern that matches. Name
# patterns keep new model configs covered without touching this file; bounds apply to
# numbers (each element of a tuple) only.


class ConfigError(ValueError):
    """A config value of the wrong type, outside its bounds, or not one of its choices;
    `key` names the field (None: the config as a whole)."""

    def __init__(self, message: str, key: Optional[str] = None):
        super().__init__(message)
        self.key = key


class UnknownNameError(ConfigError, KeyError):
    """An unknown model name or config key (also a KeyError, as a failed lookup is)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Bounds:
    """An interval: `Bounds(1)` is >= 1, `Bounds(0, lo_open=True)` is > 0, `Bounds(0, 1, hi_open=True)` is [0, 1)."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, x: float) -> bool:
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        return not (self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)))

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"{'<' if self.hi_open else '<='} {self.hi:g}" if self.hi is not None else "any value"


POSITIVE, AT_LEAST_0, AT_LEAST_1 = Bounds(0, lo_open=True), Bounds(0), Bounds(1)
FRACTION = Bounds(0, 1, hi_open=True)  # [0, 1): dropout probabilities, ratios

# harness decision: the range in which each kind of field means something; first match wins
FIELD_BOUNDS: tuple[tuple[str, Bounds], ...] = (
    ("max_epochs", AT_LEAST_1), ("*_epochs", AT_LEAST_0),
    ("*batch_size", AT_LEAST_1), ("grad_accum_steps", AT_LEAST_1),
    ("lr", POSITIVE), ("lr_*", POSITIVE), ("*_lr", POSITIVE),
    ("*dropout*", FRACTION), ("warmup_ratio", FRACTION),
    ("*patience", AT_LEAST_0), ("weight_decay*", AT_LEAST_0), ("*min_delta", AT_LEAST_0),
    ("val_loss_decimals", AT_LEAST_0), ("*_weight", AT_LEAST_0),
    ("clip_grad_*", POSITIVE), ("scheduler_factor", Bounds(0, 1, lo_open=True, hi_open=True)),
    ("*momentum", Bounds(0, 1)), ("temperature", POSITIVE), ("*epsilon", POSITIVE), ("label_bound", POSITIVE),
    ("dims", AT_LEAST_1), ("n_out", AT_LEAST_1), ("conv_kernels", AT_LEAST_1), ("*layers", AT_LEAST_0),
    ("d", AT_LEAST_1), ("hidden", AT_LEAST_1), ("*_hidden", AT_LEAST_1), ("*_dim", AT_LEAST_1),
    ("*heads", AT_LEAST_1), ("*_ffn", AT_LEAST_1), ("*_out", AT_LEAST_1), ("*vocab_size", AT_LEAST_1),
    ("text_max_length", Bounds(2)), ("*max_len*", AT_LEAST_1),  # text: [CLS] and [SEP] at least
    ("*_iter", AT_LEAST_1), ("*_every", AT_LEAST_1), ("*_subsample", AT_LEAST_1), ("*_bins", AT_LEAST_1),
)

# "<ConfigClass>.<field>" -> the allowed values, or "module:NAME" of the tuple/dict that
# defines them (read when needed: the defining module stays the one source)
FIELD_CHOICES: dict[str, Any] = {
    "ModelConfig.task": "models.base:TASKS",
    "ModelConfig.text_input": ("features", "ids", "raw_text"),
    "ModelConfig.setting": "models.constants:SETTINGS",
    "ModelConfig.optimizer": "models.base:OPTIMIZERS",
    "ModelConfig.scheduler": ("plateau", "linear_warmup"),
    "ModelConfig.selection_metric": "models.constants:METRICS",
    "BertTextConfig.loss": ("l1", "mse", "ce"),  # layers/bert_classifier.py LOSSES; which ones a task allows is checked at build
    "PaSEConfig.sgm_mode": "models.pase:SGM_MODES",
    "PaSEConfig.pos": "models.layers.seq_encoder:POSITIONS",
}

# identity fields: create_model fills them from the run, so --set cannot
FIXED_FIELDS = {"dataset": "--datasets", "preset": "--preset"}


@dataclass(frozen=True)
class FieldRule:
    name: str
    hint: Any
    bounds: Optional[Bounds] = None
    choices: Optional[tuple] = None

    def describe(self) -> str:
        """What is allowed, in words: 'a bool (true | false)', 'an integer >= 1 or null'."""
        return _describe(self.hint, self)


class _Mismatch(Exception):
    pass


@functools.lru_cache(maxsize=None)
def _type_hints(config_cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_cls)
    except Exception:  # an annotation that does not resolve: fall back to the defaults' types
        return {f.name: type(f.default) if f.default is not dataclasses.MISSING else Any
                for f in dataclasses.fields(config_cls)}


def _lookup(ref: Any) -> tuple:
    if isinstance(ref, str) and ":" in ref:
        module, attr = ref.split(":", 1)
        ref = getattr(importlib.import_module(module), attr)
    return tuple(ref() if callable(ref) else ref)


def field_rule(config_cls: type, name: str) -> FieldRule:
    """The type, bounds and choices of one config field (see the comment above FIELD_BOUNDS)."""
    hint = _type_hints(config_cls).get(name, Any)
    meta: Mapping[str, Any] = next((f.metadata for f in dataclasses.fields(config_cls) if f.name == name), {})
    choices = meta.get("choices")
    if choices is None:
        keys = [f"{c.__name__}.{name}" for c in config_cls.__mro__]
        choices = next((FIELD_CHOICES[k] for k in keys if k in FIELD_CHOICES), None)
    bounds = meta.get("bounds") or next((b for pattern, b in FIELD_BOUNDS if fnmatch.fnmatchcase(name, pattern)), None)
    return FieldRule(name, hint, bounds, _lookup(choices) if choices is not None else None)


def parse_field(config_cls: type, name: str, value: Any, model: str = "?") -> Any:
    """`value` (a YAML scalar/list, or the raw string) as the field's declared type, checked
    against its rule; a ConfigError names the model, the key, the value and what is allowed."""
    if name in FIXED_FIELDS:
        raise ConfigError(f"model '{model}': '{name}' is set by {FIXED_FIELDS[name]}, not as a config value", name)
    rule = field_rule(config_cls, name)
    try:
        return _coerce(value, rule.hint, rule)
    except _Mismatch:
        raise ConfigError(f"model '{model}': {name}={_show(value)} is not allowed: {name} is {rule.describe()}",
                          name) from None


def check_config(cfg: ModelConfig, model: str = "?") -> None:
    """Every field of a resolved config against its rule (the presets' own values, in tests)."""
    for f in dataclasses.fields(cfg):
        if f.name not in FIXED_FIELDS:
            parse_field(type(cfg), f.name, getattr(cfg, f.name), model)


_TRUE, _FALSE, _NULL = ("true", "yes", "on"), ("false", "no", "off"), ("null", "none", "~", "")


def _from_text(value: Any, kind: type) -> Any:
    """A string read as `kind` (int or float; _Mismatch when it is not one); other values as given."""
    if not isinstance(value, str):
        return value
    try:
        return kind(value.strip())
    except ValueError:
        raise _Mismatch from None


def _coerce(value: Any, hint: Any, rule: FieldRule) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULL and type(None) in args):
            if type(None) in args:
                return None
            raise _Mismatch
        for arm in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arm, rule)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        return _choice(value, args)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        for member in hint:
            if value is member or value == member.value or (isinstance(value, str) and value == member.name):
                return member
        raise _Mismatch
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.strip().strip("[]()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch
            items = [_coerce(v, a, rule) for v, a in zip(value, args, strict=True)]
        else:
            items = [_coerce(v, args[0] if args else Any, rule) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _Mismatch
    if hint is int:
        value = _from_text(value, int)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return _bounded(value, rule)
    if hint is float:
        value = _from_text(value, float)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Mismatch
        return _bounded(float(value), rule)
    if hint is str:
        if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
            raise _Mismatch
        value = value if isinstance(value, str) else str(value)
        return _choice(value, rule.choices) if rule.choices is not None else value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _Mismatch
    return value  # a type this validator does not know (dict, callables, ...): the model checks it


def _bounded(x: float, rule: FieldRule) -> float:
    if rule.bounds is not None and not rule.bounds.contains(x):
        raise _Mismatch
    return x


def _choice(value: Any, choices: tuple) -> Any:
    if value in choices and not isinstance(value, bool):
        return value
    raise _Mismatch


def _describe(hint: Any, rule: FieldRule) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        arms = [a for a in args if a is not type(None)]
        text = " or ".join(_describe(a, rule) for a in arms)
        return text + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + " | ".join(_show(a) for a in args)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + " | ".join(_show(m.value) for m in hint)
    if origin in (tuple, list):
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        inner = _describe(args[0], rule) if args else "any value"
        count = f"{len(args)} " if fixed else ""
        return f"a list of {count}values, each {inner} (e.g. [{', '.join(['1'] * (len(args) if fixed else 2))}])"
    if hint is bool:
        return "a bool (true | false)"
    if hint in (int, float):
        kind = "an integer" if hint is int else "a number"
        return f"{kind} {rule.bounds}" if rule.bounds is not None else kind
    if hint is str:
        return "one of " + " | ".join(_show(c) for c in rule.choices) if rule.choices is not None else "a string"
    return getattr(hint, "__name__", str(hint))


def _show(value: Any) -> str:
    """A value as it would be written after --set: true, null, 0.001, 'text', [1, 2]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, enum.Enum):
        return _show(value.value)
    return repr(value) if isinstance(value, str) else str(value)


# -- search spaces (`bench tune`) ---------------------------------------------------------
# A model declares `SEARCH_SPACE = {target: param}` next to its presets and registers it with
# `register_model(..., search_space=SEARCH_SPACE)`. A target is a config field ("lr"), one
# element of a tuple field ("conv_kernels[0]"), or fields set together from a choice of tuples
# ("d,heads"). Every param carries its source. A model that declares none gets
# `default_search_space(cfg)`: DEFAULT_SPACE below (harness decision).

# fields a search may not touch: the data contract, the identity, the budget and the objective
UNSEARCHABLE = frozenset({"dataset", "preset", "task", "n_out", "dims", "text_input", "setting",
                          "dims_from_data", "max_epochs", "selection_metric", "text_encoder"})


@dataclass(frozen=True)
class SearchParam:
    """One searched hyperparameter: a choice of values, or a range (`low`..`high`, log-scaled
    with `log`, integers with `integer`); `relative`: low/high multiply the preset's value."""

    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    integer: bool = False
    choices: Optional[tuple] = None
    relative: bool = False
    source: str = ""

    @property
    def kind(self) -> str:
        return "categorical" if self.choices is not None else ("int" if self.integer else "float")

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(_show(c) for c in self.choices)
        scale = "log-uniform" if self.log else ("integer" if self.integer else "uniform")
        if self.relative:
            return f"{scale} [preset x {self.low:g}, preset x {self.high:g}]"
        return f"{scale} [{self.low:g}, {self.high:g}]"


def choice(*values: Any, source: str) -> SearchParam:
    return SearchParam(choices=tuple(tuple(v) if isinstance(v, list) else v for v in values), source=source)


def uniform(low: float, high: float, *, source: str) -> SearchParam:
    return SearchParam(float(low), float(high), source=source)


def log_uniform(low: float, high: float, *, source: str) -> SearchParam:
    return SearchParam(float(low), float(high), log=True, source=source)


def int_range(low: int, high: int, *, source: str, log: bool = False) -> SearchParam:
    return SearchParam(low, high, log=log, integer=True, source=source)


def around_preset(factor: float = 10.0, *, source: str) -> SearchParam:
    """Log-uniform [preset / factor, preset * factor]."""
    return SearchParam(1.0 / factor, float(factor), log=True, relative=True, source=source)


# harness decision (documented in README "Tuning"): learning rates log-uniform within a factor
# of 10 of the preset's value, dropout probabilities uniform in [0, 0.5]
DEFAULT_SPACE: tuple[tuple[str, SearchParam], ...] = (
    ("lr", around_preset(10, source="harness default: learning rate, log-uniform [preset/10, preset*10]")),
    ("lr_*", around_preset(10, source="harness default: learning rate, log-uniform [preset/10, preset*10]")),
    ("*dropout*", uniform(0.0, 0.5, source="harness default: dropout probability, uniform [0, 0.5]")),
)


def default_search_space(cfg: ModelConfig) -> dict[str, SearchParam]:
    """The space of a model that declares none: DEFAULT_SPACE's first matching pattern for each
    float field (a learning rate only where the preset gives a positive value)."""
    config_cls: type = type(cfg)  # plain `type`: else mypy takes the instances' __hash__ (None) for the class's
    hints = _type_hints(config_cls)
    space = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in UNSEARCHABLE or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if float not in (hints.get(f.name), *typing.get_args(hints.get(f.name))):
            continue
        param = next((p for pat, p in DEFAULT_SPACE if fnmatch.fnmatchcase(f.name, pat)), None)
        if param is not None and not (param.relative and value <= 0):
            space[f.name] = param
    return space


# harness decision: on a CPU-sized `demo` preset a search keeps the batch size and the model's
# width and depth at the preset's, so every trial stays CPU-sized (the rest of the space applies)
DEMO_KEEPS = ("batch_size", "d", "heads", "layers", "*_layers", "*_heads")


def search_space_of(name: str, cfg: ModelConfig) -> tuple[dict[str, SearchParam], bool]:
    """(space, declared): the model's declared space, else the default one for this config;
    on a demo preset without the DEMO_KEEPS fields."""
    entry = get_model_entry(name)
    if entry.search_space is not None:
        check_search_space(name, entry.config_cls, entry.search_space, cfg)
        space, declared = dict(entry.search_space), True
    else:
        space, declared = default_search_space(cfg), False
    if cfg.preset == DEMO_PRESET:
        space = {t: p for t, p in space.items()
                 if not any(fnmatch.fnmatchcase(f, pat) for f, _ in split_target(t) for pat in DEMO_KEEPS)}
    return space, declared


def split_target(target: str) -> list[tuple[str, Optional[int]]]:
    """'lr' -> [('lr', None)]; 'conv_kernels[0]' -> [('conv_kernels', 0)]; 'd,heads' -> two fields."""
    parts = [part.strip().partition("[") for part in target.split(",")]
    return [(name, int(rest.rstrip("]")) if rest else None) for name, _, rest in parts]


def apply_search_values(cfg: ModelConfig, values: dict[str, Any]) -> dict[str, Any]:
    """Config overrides {field: value} for sampled {target: value} (tuple elements set into the
    preset's tuple, joint targets split over their fields)."""
    out: dict[str, Any] = {}
    for target, value in values.items():
        parts = split_target(target)
        items = value if len(parts) > 1 else (value,)
        for (name, index), item in zip(parts, items, strict=True):
            if index is None:
                out[name] = item
            else:
                current = list(out.get(name, getattr(cfg, name)))
                current[index] = item
                out[name] = tuple(current)
    return out


def check_search_space(model: str, config_cls: type, space: dict[str, SearchParam],
                       cfg: Optional[ModelConfig] = None) -> None:
    """Every target names a searchable field of `config_cls` and every value the space can
    produce has the field's type and bounds. `cfg`: the preset a relative range scales."""
    check = _SpaceCheck(model, config_cls, cfg)
    for target, param in space.items():
        check.param(target, param)


class _SpaceCheck:
    """The checks of `check_search_space` for one model's config class (and preset)."""

    def __init__(self, model: str, config_cls: type, cfg: Optional[ModelConfig]) -> None:
        self.model, self.config_cls, self.cfg = model, config_cls, cfg
        self.fields = {f.name: f for f in dataclasses.fields(config_cls)}

    def fail(self, target: str, problem: str) -> NoReturn:
        raise ConfigError(f"search space of model '{self.model}', field '{target}': {problem}")

    def base_value(self, name: str) -> Any:
        if self.cfg is not None:
            return getattr(self.cfg, name)
        f = self.fields[name]
        return f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)

    def check_value(self, target: str, name: str, index: Optional[int], value: Any) -> None:
        full = value
        if index is not None:
            current = self.base_value(name)
            if not isinstance(current, (tuple, list)) or not -len(current) <= index < len(current):
                self.fail(target, f"'{name}' has no element [{index}] (value {_show(current)})")
            full = tuple(value if i == index else v for i, v in enumerate(current))
        try:
            parsed = parse_field(self.config_cls, name, full, self.model)
        except ConfigError as err:
            self.fail(target, f"value {_show(value)}: {err}")
        if parsed != full and not (isinstance(full, (int, float)) and parsed == full):
            self.fail(target, f"value {_show(value)} is not of the field's type "
                              f"({field_rule(self.config_cls, name).describe()})")

    def param(self, target: str, param: SearchParam) -> None:
        fail = self.fail
        if not isinstance(param, SearchParam):
            fail(target, f"expected a SearchParam (choice, uniform, log_uniform, int_range, around_preset), got {_show(param)}")
        if not param.source:
            fail(target, "no source given (paper, repository file, or 'harness decision')")
        parts = split_target(target)
        for name, _ in parts:
            if name not in self.fields:
                fail(target, f"{self.config_cls.__name__} has no field {did_you_mean([name], self.fields)}")
            if name in UNSEARCHABLE:
                fail(target, f"'{name}' is fixed by the run, not searched")
        if param.choices is not None:
            if not param.choices:
                fail(target, "empty choice")
            for c in param.choices:
                values = c if len(parts) > 1 else (c,)
                if len(parts) > 1 and (not isinstance(c, tuple) or len(c) != len(parts)):
                    fail(target, f"choice {_show(c)} must give {len(parts)} values ({target})")
                for (name, index), v in zip(parts, values, strict=True):
                    self.check_value(target, name, index, v)
            return
        if len(parts) > 1:
            fail(target, "fields set together need a choice of tuples")
        self.range(target, param, *parts[0])

    def range(self, target: str, param: SearchParam, name: str, index: Optional[int]) -> None:
        fail, cfg = self.fail, self.cfg
        if param.low is None or param.high is None or not param.low < param.high:
            fail(target, f"range needs low < high (got {param.low}, {param.high})")
        if param.log and param.low <= 0:
            fail(target, f"log range needs low > 0 (got {param.low})")
        if param.integer and not (isinstance(param.low, int) and isinstance(param.high, int)):
            fail(target, "integer range needs integer bounds")
        hint = _type_hints(self.config_cls).get(name, Any)
        if index is not None:
            args = typing.get_args(hint)
            hint = (args[0] if args[-1] is Ellipsis else args[min(index, len(args) - 1)]) if args else Any
        if not param.integer and hint is not Any and float not in (hint, *typing.get_args(hint)):
            fail(target, f"a float range cannot set '{name}', which is {field_rule(self.config_cls, name).describe()}")
        if param.relative:
            if param.integer:
                fail(target, "a range relative to the preset is for float fields")
            preset = self.base_value(name) if index is None else None
            if cfg is not None and (isinstance(preset, bool) or not isinstance(preset, (int, float)) or preset <= 0):
                fail(target, f"range relative to the preset needs a positive preset value (preset '{cfg.preset}' has {_show(preset)})")
            self.check_value(target, name, index, 1.0 * (preset if isinstance(preset, (int, float)) and preset > 0 else 1.0))
            return
        for v in (param.low, param.high):
            self.check_value(target, name, index, v)
