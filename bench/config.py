"""RunConfig: one (dataset, model, seed) run, resolved from the CLI or a sweep file.

The model's own preset supplies architecture and optimisation settings; a run adds only
what the runner needs (seed, device, where to write) plus overrides. Overrides given with
`--set key=value` define a *variant* and name its result folder (`pase+no_sgm`); run-wide
options (`--epochs`, `--text-encoder`) apply to every model that has the field and do not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

DEFAULT_SEEDS = (1111, 1112, 1113, 1114, 1115)  # MMSA MMSA_run default
DEFAULT_DATASET = "synthetic"
# The preset names registered models use, for `--preset`'s help without importing the models
# (tests/test_cli_options.py checks them against the registry, both ways).
PRESET_SOURCES = {
    "mmsa": "MMSA 2.2.1's configuration",
    "paper": "the original repository/paper",
    "official": "the released code's settings, for models MMSA lacks",
    "demo": "CPU-sized, on the embedded synthetic data",
}


def preset_help(default: str) -> str:
    """`--preset`'s help: every preset name with its source."""
    names = "; ".join(f"{k}: {v}" for k, v in PRESET_SOURCES.items())
    return f"{' | '.join(PRESET_SOURCES)} ({names}; `bench ls` shows each model's) (default: {default})"


@dataclass
class RunConfig:
    model: str
    dataset: str = DEFAULT_DATASET
    seed: int = DEFAULT_SEEDS[0]
    preset: Optional[str] = None  # None: the model's default (mmsa) or its only preset for the dataset
    overrides: dict[str, Any] = field(default_factory=dict)  # --set: defines the variant
    variant: Optional[str] = None  # result-folder name; derived from overrides when None
    epochs: Optional[int] = None  # run-wide cap on max_epochs
    text_encoder: Optional[str] = None  # run-wide, for models with a text_encoder field
    device: str = "auto"
    out_dir: str = "results"
    data_root: Optional[str] = None
    setting: Optional[str] = None  # aligned | unaligned; None: what the model's preset declares
    data_format: str = "auto"  # auto | mmsa | mult | mag (bench.data.DATA_FORMATS; bench.data.mag.resolve_format)
    glove: Optional[str] = None  # GloVe text file: words for BERT models from MulT's IEMOCAP vectors (bench.data.glove)
    contributions: bool = True  # exact Shapley values on validation every epoch
    robustness: bool = True  # after selection: test metrics under every modality coalition
    amp: bool = True  # bf16 autocast on CUDA
    strict_data: bool = False  # non-standard split sizes become errors
    detect_anomaly: bool = False
    robustness_curves: bool = False  # after the test: metrics under missing/noisy inputs (bench/robustness.py)
    save_state: bool = False  # the selected weights as seed<k>.safetensors next to the result file
    train_missing: Optional[str] = None  # a condition (random/tav/0.3) on every training batch; own folder

    @property
    def run_name(self) -> str:
        """Result-folder name: the model, its --set overrides, an explicit --setting, training
        under missing data (`mult+missing=random-tav-0.3`) and an explicit --data-format other
        than auto (`mag_bert+mag`: MAG-BERT's own pickles)."""
        name = self.variant or variant_name(self.model, self.overrides)
        if self.variant:
            return name
        name = f"{name}+{self.setting}" if self.setting else name
        name = f"{name}+missing={self.train_missing.replace('/', '-')}" if self.train_missing else name
        return f"{name}+{self.data_format}" if self.data_format != "auto" else name

    def result_path(self) -> Path:
        return Path(self.out_dir) / self.dataset / self.run_name / f"seed{self.seed}.json"

    def model_overrides(self, config_fields: set[str]) -> dict[str, Any]:
        """Overrides for create_model: --set values, then the run-wide options the model has."""
        out = dict(self.overrides)
        if self.epochs is not None:
            out["max_epochs"] = self.epochs
        if self.text_encoder is not None and "text_encoder" in config_fields:
            out["text_encoder"] = self.text_encoder
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "run_name": self.run_name}


SAFE_VALUE = re.compile(r"[A-Za-z0-9._,-]{1,40}")  # shown as is in a folder name
SHORT_VALUE = 24  # characters of a sanitised value kept before its hash
MAX_NAME = 200  # a folder name stays under the usual 255-byte limit, with room for suffixes


def variant_tag_value(value: Any) -> str:
    """A --set value as one readable, unique piece of a folder name: simple values as they are
    (`0.0001`, `aligned`); any other (paths, spaces, '+', '=', long or non-ASCII text) as a short
    sanitised form, '~' and 8 hex digits of the SHA-256 of the full value ('/data/vox' ->
    'data_vox~1a2b3c4d'). '~' never appears in a simple value, so the two forms cannot collide."""
    text = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    if SAFE_VALUE.fullmatch(text):
        return text
    digest = _digest(value)
    short = re.sub(r"[^A-Za-z0-9._,-]+", "_", text).strip("_.")[:SHORT_VALUE].rstrip("_.")
    return f"{short}~{digest}" if short else digest


def is_folder_name(name: str) -> bool:
    """A --variant / sweep `variant:` name is one path component: not empty, '.', '..', no '/' or '\\'."""
    return name.strip() not in ("", ".", "..") and "/" not in name and "\\" not in name


def variant_name(model: str, overrides: dict[str, Any]) -> str:
    """'pase' + {use_sgm: False} -> 'pase+no_sgm'; {lr: 1e-4} -> 'mult+lr=0.0001';
    {pretrain_dir: '/data/vox'} -> 'kebr+pretrain_dir=data_vox~<hash>': always one path
    component (the full values stay in the result's config)."""
    if not overrides:
        return model
    tags = []
    for key in sorted(overrides):
        value, short = overrides[key], key.removeprefix("use_")
        tags.append((short if value else f"no_{short}") if isinstance(value, bool)
                    else f"{key}={variant_tag_value(value)}")
    name = model + "+" + "+".join(tags)
    return name if len(name) <= MAX_NAME else f"{name[:MAX_NAME - 9]}~{_digest(sorted(overrides.items()))}"


def _digest(value: Any) -> str:
    """8 hex digits of the SHA-256 of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Parse KEY=VALUE strings; values are YAML scalars (true, 1e-4, null, [1, 2])."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise OptionError(f"--set expects KEY=VALUE, got '{item}'")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise OptionError(f"--set key '{key}' is not a valid config name")
        value = parse_value(raw)
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def parse_value(raw: str) -> Any:
    """Numbers first (YAML 1.1 reads '1e-4' as a string), then YAML scalars/lists/mappings;
    anything else stays the string it was. Never raises: the field's type decides later
    (models.registry.parse_field)."""
    raw = raw.strip()
    for cast in (int, float):
        with contextlib.suppress(ValueError):
            return cast(raw)
    if not raw:
        return None
    try:
        value = yaml.safe_load(raw)
    except Exception:  # not YAML ('[', 'a: b: c'): the raw text
        return raw
    return value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else raw


SEED_FORMS = "comma-separated integers and ranges, e.g. 1111,1112 or 1111-1115"
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_SEEDS = 10_000  # harness decision: a longer range is a typo (1111-11115), not a sweep


def parse_seeds(text: Any, option: str = "--seeds") -> list[int]:
    """'1111,1112' or '1111-1115' or a mix (or a list of those), order kept; a seed given twice is an error.
    A ValueError names `option` and the accepted forms."""
    if isinstance(text, (list, tuple)):
        text = ",".join(map(str, text))
    subject = f"{option} '{text}'" if option else f"'{text}'"
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo or hi - lo >= MAX_SEEDS:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            which = subject if part == str(text).strip() else f"{subject}: '{part}'"
            raise OptionError(f"{which} is not a seed or a range; give {SEED_FORMS}") from None
    if not seeds or len(seeds) > MAX_SEEDS:
        what = "no seeds" if not seeds else f"more than {MAX_SEEDS:,} seeds"
        raise OptionError(f"{subject}: {what}; give {SEED_FORMS}")
    if bad := [s for s in seeds if not 0 <= s <= MAX_SEED]:
        raise OptionError(f"{subject}: seed {bad[0]} is out of range (0 to {MAX_SEED})")
    seen: set[int] = set()
    for s in seeds:
        if s in seen:
            raise OptionError(f"{subject}: seed {s} is given twice; give each seed once")
        seen.add(s)
    return seeds


def split_list(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


# -- sweep files ------------------------------------------------------------------------
SWEEP_KEYS = {"datasets", "models", "seeds", "epochs", "preset", "out", "device", "data_root", "setting", "text_encoder",
              "contributions", "robustness", "amp", "strict_data", "description", "data_format", "include", "glove"}
MODEL_KEYS = {"name", "preset", "set", "variants", "variant"}


class OptionError(ValueError):
    """A command-line option or sweep value that cannot be used; the message names the option."""


class UnknownOptionValue(OptionError, KeyError):
    """An option names something that does not exist (a model, a dataset)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SweepFileError(OptionError):
    """A sweep file that cannot be read or holds a bad value; the message names the file and key."""


# run-wide sweep keys whose values are not strings: key -> (test, what is allowed); the model-config
# values under `set:` and `variants:` are typed by their model's config fields (models.registry.parse_field)
SWEEP_BOOLS = ("contributions", "robustness", "amp", "strict_data")
SWEEP_CHOICES = {"setting": ("aligned", "unaligned"), "data_format": ("auto", "mmsa", "mult", "mag")}
SWEEP_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: (lambda v: isinstance(v, bool), "a bool (true | false)") for k in SWEEP_BOOLS},
    "epochs": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "datasets": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(d, str) and d for d in v),
                 "a non-empty list of dataset names, e.g. [mosi, mosei]"),
    **{k: (c.__contains__, "one of " + " | ".join(c)) for k, c in SWEEP_CHOICES.items()},
}
NON_EMPTY_STRING = (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string")  # every other key


def check_sweep_values(path: Path, opts: dict[str, Any]) -> None:
    """Run-wide sweep values of the right type, before any run is planned."""
    for key, value in opts.items():
        test, allowed = SWEEP_RULES.get(key, NON_EMPTY_STRING)
        if value is not None and key != "seeds" and not test(value):
            raise SweepFileError(f"{path} [key={key}]: {value!r} is not allowed; {key} is {allowed}")


def check_model_entry(path: Path, i: int, entry: dict[str, Any]) -> None:
    """One `models:` mapping: a name, an optional preset/variant name, a `set` mapping, a list of variant mappings."""
    where = f"{path} [key=models[{i}]"
    for key in ("name", "preset", "variant"):
        if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
            raise SweepFileError(f"{where}.{key}]: {entry[key]!r} is not allowed; {key} is a non-empty string")
    if "variant" in entry and not is_folder_name(entry["variant"]):
        raise SweepFileError(f"{where}.variant]: {entry['variant']!r} is not a result-folder name "
                             "(not '.' or '..', without '/' or '\\')")
    if not isinstance(entry.get("set") or {}, dict):
        raise SweepFileError(f"{where}.set]: expected a mapping of config keys to values, e.g. {{lr: 1.0e-4}}")
    variants = entry.get("variants")
    if variants is not None and (not isinstance(variants, list) or not variants
                                 or not all(isinstance(v, dict) or v is None for v in variants)):
        raise SweepFileError(f"{where}.variants]: expected a non-empty list of mappings, "
                             "e.g. [{}, {use_sgm: false}]")


def include_from_sweep(path: Path, value: Any) -> None:
    """Load the plugin files a sweep's `include:` names (a path or a list; relative to the sweep file)."""
    from bench.plugins import include

    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.strip() for p in paths):
        raise SweepFileError(f"{path} [key=include]: {value!r} is not allowed; include is a path or a list of paths "
                             "(.py files or folders, relative to the sweep file)")
    include(paths, f"{path} [key=include]", base=path.parent)


def _read_sweep(path: Path) -> dict:
    """The sweep file's top-level mapping, its keys and its `models` list checked."""
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SweepFileError(f"{path}: sweep file not found") from None
    except (OSError, UnicodeDecodeError) as err:  # a folder, unreadable, binary
        raise SweepFileError(f"{path}: cannot read the sweep file ({type(err).__name__}: {err})") from None
    except yaml.YAMLError as err:
        raise SweepFileError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(doc, dict):
        raise SweepFileError(f"{path}: top level must be a mapping with at least 'models'")
    if unknown := sorted(set(doc) - SWEEP_KEYS):
        raise SweepFileError(f"{path} [key={unknown[0]}]: unknown key; valid keys: {', '.join(sorted(SWEEP_KEYS))}")
    if not doc.get("models"):
        raise SweepFileError(f"{path} [key=models]: missing or empty")
    if not isinstance(doc["models"], list):
        raise SweepFileError(f"{path} [key=models]: expected a list of model names or mappings, e.g. [mult, pase]")
    return doc


def _entry_runs(path: Path, i: int, entry: Any, datasets: list, seeds: list[int], opts: dict[str, Any],
                base: dict[str, Any]) -> list[RunConfig]:
    """The runs of the sweep's `models[i]`: every variant x dataset x seed."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or "name" not in entry:
        raise SweepFileError(f"{path} [key=models[{i}]]: expected a model name or a mapping with 'name'")
    if bad := sorted(set(entry) - MODEL_KEYS):
        raise SweepFileError(f"{path} [key=models[{i}].{bad[0]}]: unknown key; valid: {', '.join(sorted(MODEL_KEYS))}")
    check_model_entry(path, i, entry)
    shared, variants = dict(entry.get("set") or {}), entry.get("variants") or [{}]
    overrides = [{k: tuple(v) if isinstance(v, list) else v for k, v in {**shared, **(variant or {})}.items()}
                 for variant in variants]
    return [RunConfig(model=entry["name"], dataset=dataset, seed=seed, preset=entry.get("preset") or opts.get("preset"),
                      overrides=o, variant=entry.get("variant") if len(variants) == 1 else None, **base)
            for o in overrides for dataset in datasets for seed in seeds]


def load_sweep(path: str | Path, **cli: Any) -> list[RunConfig]:
    """Runs listed by a sweep YAML. `cli` values that are not None override the file's.

    Format (sweeps/*.yaml):
        datasets: [mosi]                 # default [synthetic]
        seeds: [1111, 1112]              # or "1111-1115"; default 1111-1115
        epochs: 3                        # optional cap; also preset/out/device/data_root/...
        include: my_models.py            # optional: plugin files/folders (or a list), relative to this file
        models:
          - mult                         # a registry name
          - name: pase                   # or a mapping
            preset: paper
            set: {lr_nonbert: 1.0e-4}    # overrides for every variant of this entry
            variants:                    # one run set per variant ({} = as is)
              - {}
              - {use_sgm: false}
    """
    path = Path(path)
    doc = _read_sweep(path)
    if doc.get("include") is not None:
        include_from_sweep(path, doc["include"])
    opts = {k: doc.get(k) for k in SWEEP_KEYS - {"models", "description", "include"}}
    opts.update({k: v for k, v in cli.items() if v is not None})
    check_sweep_values(path, opts)
    datasets = opts.pop("datasets") or [DEFAULT_DATASET]
    seeds = opts.pop("seeds")
    try:
        seeds = parse_seeds(seeds, option="seeds") if seeds is not None else list(DEFAULT_SEEDS)
    except ValueError as err:
        raise SweepFileError(f"{path} [key=seeds]: {err}") from None
    base: dict[str, Any] = dict(
        epochs=opts.get("epochs"), text_encoder=opts.get("text_encoder"), device=opts.get("device") or "auto",
        out_dir=opts.get("out") or "results", data_root=opts.get("data_root"), setting=opts.get("setting"),
        data_format=opts.get("data_format") or "auto", glove=opts.get("glove"),
    )
    base.update({flag: bool(opts[flag]) for flag in SWEEP_BOOLS if opts.get(flag) is not None})
    return [run for i, entry in enumerate(doc["models"]) for run in _entry_runs(path, i, entry, datasets, seeds, opts, base)]
