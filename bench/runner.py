"""Sweeps: a list of independent (dataset, model, seed) runs, each ending in one result file.

Order of work: resolve every run's config (unknown models or keys, values of the wrong type
or out of range fail before anything trains) -> check devices, text encoders and model
construction once (`check_sweep`) -> load and validate each dataset once -> check every
model against its data -> run what is not finished yet. A finished run is skipped unless
`force`; a run that raises is recorded as `status: "error"` and the sweep goes on; a data
error stops the sweep before any training. Ctrl-C stops at once and the interrupted run is not recorded.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import OptionError, RunConfig, UnknownOptionValue
from bench.data import DataError, MSAData, load_dataset, loader_takes
from bench.results import SCHEMA_VERSION, ensure_writable_dir, environment, is_complete, load_result, write_json_atomic
from bench.train import process_state_restored
from models.constants import MODALITIES, MODALITY_NAMES

logger = logging.getLogger(__name__)


@dataclass
class PlannedRun:
    run: RunConfig
    model_config: Any  # the resolved ModelConfig

    @property
    def label(self) -> str:
        return f"{self.run.dataset}/{self.run.run_name}/seed{self.run.seed}"


@dataclass
class SweepSummary:
    ok: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def config_changes(p: PlannedRun) -> list[str]:
    """Model-config fields whose recorded value in the finished result file differs from the
    config this run would use now (e.g. another --text-encoder or --epochs)."""
    try:
        recorded = load_result(p.run.result_path())["config"]["model"]
    except (OSError, KeyError, ValueError):
        return []
    now = json.loads(json.dumps(dataclasses.asdict(p.model_config)))  # tuples -> lists, as stored
    from_data = {"dims"} if getattr(p.model_config, "dims_from_data", False) else set()  # set once the data is loaded
    return sorted(k for k in now if recorded.get(k) != now[k] and k not in from_data)


def plan_runs(runs: list[RunConfig]) -> list[PlannedRun]:
    """Resolve every run's model config: unknown datasets, models and keys, and values of the
    wrong type or out of range (models.registry.parse_field) fail here, before any data is loaded."""
    from bench.data import list_datasets
    from models.registry import get_model_entry, resolve_run_config

    known = list_datasets()
    planned = []
    for run in runs:
        if run.dataset not in known:
            close = difflib.get_close_matches(run.dataset, list(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UnknownOptionValue(f"--datasets: unknown dataset '{run.dataset}'{hint} "
                                     f"(available: {', '.join(known)})")
        entry = get_model_entry(run.model)
        if run.dataset in entry.unsupported:
            raise OptionError(f"model '{run.model}' cannot run on '{run.dataset}': {entry.unsupported[run.dataset]}")
        fields = {f.name for f in dataclasses.fields(entry.config_cls)}
        cfg = resolve_run_config(run.model, run.dataset, run.preset, run.model_overrides(fields))
        check_data_missing(cfg, run.model)
        planned.append(PlannedRun(run, cfg))
    return planned


def check_data_missing(cfg: Any, model: str) -> None:
    """The config's `data_missing` is a missing-data condition (bench/data/conditions.py)."""
    from bench.data.conditions import ConditionError, data_missing_condition
    from models.registry import ConfigError

    if cfg.data_missing:
        try:
            data_missing_condition(cfg.data_missing)
        except ConditionError as err:
            raise ConfigError(f"model '{model}': data_missing={err}", "data_missing") from None


# -- sweep-level checks: what would fail every run the same way, checked once up front -----
def check_sweep(todo: list[PlannedRun], local: bool = True) -> None:
    """Devices, text encoders and model construction, once per distinct value, before the
    first run. `local=False` (a scheduler's jobs run elsewhere) checks the device's form only."""
    for device in dict.fromkeys(p.run.device for p in todo):
        check_device(device, available=local)
    for out in dict.fromkeys(p.run.out_dir for p in todo):
        if Path(out).expanduser().exists() and not Path(out).expanduser().is_dir():
            raise OptionError(f"--out '{out}' is a file, not a folder for result files")
    encoders: dict[str, str] = {}
    for p in todo:
        if p.run.text_encoder is not None:
            encoders.setdefault(p.run.text_encoder, "--text-encoder")
        cfg = p.model_config
        if isinstance(getattr(cfg, "text_encoder", None), str) and cfg.text_input != "features":
            encoders.setdefault(cfg.text_encoder, f"model '{p.run.model}' (preset {cfg.preset} on {p.run.dataset}) text_encoder")
    for spec, where in encoders.items():
        check_text_encoder(spec, where)
    first: dict[tuple[str, str], PlannedRun] = {}  # the first run of each (model, config)
    for p in todo:
        first.setdefault((p.run.model, repr(p.model_config)), p)
    for p in first.values():
        dry_build(p)


def check_out_dirs(todo: list[PlannedRun]) -> None:
    """Every result folder can take a file (created now): the last check before the first run
    trains, after every check that writes nothing, so a bad input leaves no folder behind."""
    for out in dict.fromkeys(p.run.out_dir for p in todo):
        ensure_writable_dir(out)


def check_device(name: str, available: bool = True) -> None:
    """'auto', 'cpu', 'cuda', 'cuda:N' (or 'mps'); with `available`, the device must exist here."""
    import torch

    forms = "auto, cpu, cuda or cuda:N"
    if name == "auto":
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise OptionError(f"--device '{name}' is not a device; give {forms}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise OptionError(f"--device '{name}': msabench runs on {forms}")
    if not available or dev.type == "cpu":
        return
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise OptionError(f"--device {name}: this torch sees no MPS device; use --device cpu or auto")
        return
    if not torch.cuda.is_available():
        raise OptionError(f"--device {name}: torch {torch.__version__} sees no CUDA device here; "
                         "use --device cpu or auto")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise OptionError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")


def check_text_encoder(spec: str, where: str = "--text-encoder") -> None:
    """The spec names something `build_text_encoder` can load without downloading: a named
    random-init config, a checkpoint folder with config.json, or a hub name in the local cache."""
    import os

    from models.layers.text_encoder import NAMED_CONFIGS, TextEncoderError

    forms = f"a local checkpoint folder (config.json + weights), or {' / '.join(NAMED_CONFIGS)} (random init)"
    if spec in NAMED_CONFIGS:
        return
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TextEncoderError(f"{where} '{spec}': the folder has no config.json; give {forms}")
        return
    if path.exists():
        raise TextEncoderError(f"{where} '{spec}' is a file, not a checkpoint folder; give {forms}")
    if "/" in spec or os.sep in spec or spec.startswith((".", "~")) or not spec.strip():
        raise TextEncoderError(f"{where} '{spec}': no such folder; give {forms}")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except Exception:  # not a valid hub name either
        cached = False
    if not cached:
        raise TextEncoderError(f"{where} '{spec}' is not a local folder and not in the local Hugging Face cache "
                               f"(msabench never downloads); give {forms}")


def dry_build(p: PlannedRun) -> None:
    """Build the model on the meta device (no memory, no weights): a config the model's own
    checks refuse (e.g. d not divisible by heads) fails here once, not in every run, as a
    ConfigError; any other exception is a fault of the model's code and propagates as it is.
    A checkpoint text encoder is stood in for by bert-base shapes (check_text_encoder vouched for it)."""
    from bench.catalog import build_on_meta
    from models.registry import ConfigError

    cfg = p.model_config
    try:
        build_on_meta(p.run.model, cfg)
    except (ValueError, KeyError, AssertionError) as err:  # raised from the config's values
        msg = err.args[0] if err.args else type(err).__name__
        raise ConfigError(f"model '{p.run.model}' (preset {cfg.preset} on {p.run.dataset}) cannot be built "
                          f"with this config: {msg}") from err


def load_sweep_data(todo: list[PlannedRun]) -> dict[tuple, MSAData]:
    """Load every dataset the runs need, once, and check each model against it: a data error
    stops the sweep before any training."""
    datasets: dict[tuple, MSAData] = {}
    views: dict[tuple, set[str]] = {}
    for p in todo:
        views.setdefault(data_key(p), set()).add(p.model_config.text_input)
    for p in todo:
        key = data_key(p)
        if key not in datasets:
            datasets[key] = load_data_for(p, "all" if len(views[key]) > 1 else None)
            for w in datasets[key].info.warnings:
                logger.warning("data warning (%s): %s", p.run.dataset, w)
        p.model_config = with_data_dims(p.model_config, datasets[key])  # recorded and built alike
        check_compatible(p.model_config, datasets[key], p.run.model)
    return datasets


def data_key(p: PlannedRun) -> tuple:
    """Runs with the same key share one loaded dataset: the file (dataset, setting, root,
    format) and, where the harness makes the token ids itself, the text encoder (its
    tokenizer) and max length: `raw_text` models, and every model on a MAG-BERT pickle."""
    from bench.data.mag import resolve_format

    run, cfg = p.run, p.model_config
    setting = run.setting or cfg.setting
    fmt = resolve_format(run.dataset, setting, run.data_root, run.data_format)  # auto -> mag by file name
    tokens: tuple = ()
    if fmt == "mag" or cfg.text_input == "raw_text":
        tokens = ("mag" if fmt == "mag" else "raw_text", getattr(cfg, "text_encoder", None), cfg.text_max_length)
    # token ids made from GloVe words (a BERT model on IEMOCAP's MulT pickles): their own load, never mixed
    # with the features
    if cfg.text_input in ("ids", "raw_text") and loader_takes(run.dataset, "glove"):
        tokens = ("glove", run.glove, cfg.text_input, getattr(cfg, "text_encoder", None), cfg.text_max_length)
    return (run.dataset, setting, run.data_root, run.strict_data, fmt, cfg.data_missing, *tokens)


def load_data_for(p: PlannedRun, text_input: str | None = None) -> MSAData:
    """Load the data a run needs; `text_input="all"` keeps both text views (one load for a
    sweep that mixes feature models and BERT models on the same file). The model's text
    encoder and `text_max_length` reach the loader: they tokenize `raw_text` and MAG words.
    The model config's `data_missing` puts every split under that condition (MMSA's protocol)."""
    from bench.data.conditions import with_data_missing

    run, cfg = p.run, p.model_config
    data = load_dataset(
        run.dataset, data_root=run.data_root, setting=run.setting or cfg.setting,
        text_input=text_input or cfg.text_input, strict=run.strict_data, data_format=run.data_format,
        text_encoder=getattr(cfg, "text_encoder", None), text_max_length=cfg.text_max_length,
        **({"glove": run.glove} if loader_takes(run.dataset, "glove") else {}),
    )
    return with_data_missing(data, cfg.data_missing)  # MMSA's protocol: every split incomplete, masks fixed


def with_data_dims(cfg: Any, data: MSAData) -> Any:
    """`dims_from_data=True`: the config with the data's audio/vision widths (the text width
    stays the preset's), so the model is built for the file and the result records what was built."""
    if not getattr(cfg, "dims_from_data", False):
        return cfg
    dims = (cfg.dims[0], int(data.info.dims["a"]), int(data.info.dims["v"]))
    return cfg if dims == tuple(cfg.dims) else dataclasses.replace(cfg, dims=dims)


def check_compatible(cfg: Any, data: MSAData, model: str) -> None:
    """The model's preset must match the data it is given (task, text view, dims), checked
    before any model is built; the message names both sides and guesses at the file."""
    from bench.data.validate import DATASET_LABELS, MULT_TEXT_ONLY, dim_hint

    info = data.info
    src = info.source.get("path", info.name)  # the full path: the file to look at
    preset = f"{DATASET_LABELS.get(cfg.dataset, cfg.dataset)} preset"
    if cfg.task != info.task:
        raise DataError(src, f"{info.name} is a '{info.task}' dataset but {model}'s {preset} is for '{cfg.task}'")
    view = "ids" if cfg.text_input in ("ids", "raw_text") else "features"  # raw_text arrives as token ids
    if view not in info.text_views:
        if view == "ids" and info.source.get("format") == "mult":
            from bench.data.mult_pkl import NEEDS_GLOVE

            hint = NEEDS_GLOVE if info.name == "iemocap" else ""
            raise DataError(src, f"{MULT_TEXT_ONLY} ({model}){hint}", key="text_bert")
        need = "`text_bert` token ids" if view == "ids" else "pre-extracted `text` features"
        raise DataError(src, f"{model} needs {need}; this {info.name} data has only {', '.join(info.text_views)}",
                        key="text_bert" if view == "ids" else "text")
    for m, want in zip(MODALITIES, cfg.dims, strict=True):
        # not checked: text as token ids (the text encoder fixes the width), and audio/vision widths
        # when they are taken from the data (with_data_dims)
        unchecked = view == "ids" if m == "t" else getattr(cfg, "dims_from_data", False)
        if not unchecked and (have := info.dims[m]) != want:
            hint = dim_hint(m, have)
            raise DataError(src, f"{MODALITY_NAMES[m]} dim {have}, {preset} expects {want}" + (f": {hint}" if hint else "")
                            + f" (model {model}, preset {cfg.preset})", key=MODALITY_NAMES[m])


def execute_run(p: PlannedRun, data: MSAData, progress: bool) -> dict[str, Any]:
    """Build, train, select on validation, test once; return the complete result record
    (with the CPU threads the run used: bench.threads)."""
    from bench.data.conditions import Condition
    from bench.threads import apply_threads, run_threads, thread_record
    from bench.train import resolve_device, seed_everything, train_and_test
    from models.registry import get_model_entry

    run, cfg = p.run, p.model_config
    apply_threads(run_threads())  # the cores this process may use (or its --jobs share), not torch's guess
    seed_everything(run.seed)  # before the model is built: initial weights depend on the seed
    model = get_model_entry(run.model).builder(cfg)
    device = resolve_device(run.device)
    fields = train_and_test(
        model, data, seed=run.seed, device=device, amp=run.amp, contributions=run.contributions,
        robustness=run.robustness, progress=progress, detect_anomaly=run.detect_anomaly,
        curves=run.robustness_curves, train_missing=Condition.parse(run.train_missing) if run.train_missing else None,
    )
    if run.save_state:  # before the result file, so a finished run always has its weights
        from bench.robustness import save_state

        fields["state"] = save_state(model, run.result_path())
    return {**_header(p, data, "ok"), **fields, "device": device_name(device), "threads": thread_record()}


def _header(p: PlannedRun, data: MSAData | None, status: str) -> dict[str, Any]:
    run, cfg = p.run, p.model_config
    out = {
        "schema_version": SCHEMA_VERSION, "status": status, "model": run.model, "run_name": run.run_name,
        "variant": dict(run.overrides), "preset": cfg.preset, "dataset": run.dataset,
        "setting": data.info.setting if data else (run.setting or cfg.setting), "task": cfg.task, "seed": run.seed,
        "config": {"run": run.to_dict(), "model": dataclasses.asdict(cfg)}, **environment(),
    }
    if data is not None:
        out["data"] = {"name": data.info.name, "setting": data.info.setting, "source": data.info.source,
                       "warnings": list(data.info.warnings)}
    return out


def device_name(device) -> str:
    import torch

    return f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"


def explain_error(err: Exception, cfg: Any) -> Exception:
    """Turn resource faults into actionable errors. Out-of-memory is not retried with a
    smaller batch (timm does that for benchmarks): a different batch changes the optimisation
    and the results would silently stop being comparable, so the user decides."""
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
        half = max(1, cfg.batch_size // 2)
        accum = cfg.grad_accum_steps * max(1, cfg.batch_size // half)
        wrapped = RuntimeError(
            f"out of memory at batch_size={cfg.batch_size}: rerun with a smaller batch and gradient "
            f"accumulation to keep the effective batch, e.g. --set batch_size={half} "
            f"--set grad_accum_steps={accum} (original error: {str(err).splitlines()[0] if str(err) else type(err).__name__})"
        )
        # a plain RuntimeError (the result file's error type) carrying the `details` error_record reads
        wrapped.details = {"kind": "out_of_memory", "batch_size": cfg.batch_size,  # type: ignore[attr-defined]
                           "suggested": {"batch_size": half, "grad_accum_steps": accum}}
        wrapped.__traceback__, wrapped.__cause__ = err.__traceback__, err  # the record keeps the original
        return wrapped
    return err


def error_record(p: PlannedRun, data: MSAData | None, err: BaseException) -> dict[str, Any]:
    rec = _header(p, data, "error")
    rec["error"] = {"type": type(err).__name__, "message": str(err),
                    "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-5000:],
                    **getattr(err, "details", {})}
    return rec


def run_sweep(runs: list[RunConfig], *, force: bool = False, progress: bool = False) -> SweepSummary:
    """Run what is not finished yet, each run in `process_state_restored`; progress lines go
    to this module's logger (INFO; failures at ERROR)."""
    planned = plan_runs(runs)
    summary = SweepSummary()
    todo = []
    for p in planned:
        if not force and is_complete(p.run.result_path()):
            summary.skipped.append(p.label)
            changed = config_changes(p)
            note = (f"; NOTE: it was run with a different {', '.join(changed)} - --force overwrites it, "
                    "--variant NAME keeps both") if changed else "; --force reruns it"
            logger.info(f"skip {p.label}: finished ({p.run.result_path()}){note}")
        else:
            todo.append(p)
    check_sweep(todo)  # what would fail every run the same way fails once, here
    datasets = load_sweep_data(todo)
    check_out_dirs(todo)

    for n, p in enumerate(todo, 1):
        path = p.run.result_path()
        logger.info(f"[{n}/{len(todo)}] {p.label} (preset {p.model_config.preset})")
        data = datasets[data_key(p)]
        try:
            with process_state_restored():
                record = execute_run(p, data, progress)
        except KeyboardInterrupt:
            logger.warning(f"interrupted: {p.label} was not recorded")
            raise
        except Exception as err:  # a failed run is data; the sweep goes on
            err = explain_error(err, p.model_config)
            write_json_atomic(path, error_record(p, data, err))
            summary.failed.append((p.label, f"{type(err).__name__}: {err}"))
            logger.error(f"error {p.label}: {type(err).__name__}: {err} (recorded in {path})")
            continue
        write_json_atomic(path, record)
        summary.ok.append(p.label)
        t = record["metrics"]["test"]
        key = next(k for k in ("Has0_acc_2", "Mult_acc_2", "mean_acc", "loss") if k in t)
        logger.info(f"done {p.label}: best epoch {record['best_epoch']}, test {key} {t[key]:.4f}, "
            f"{record['time']['wall_s']:.1f}s -> {path}")
    return summary
