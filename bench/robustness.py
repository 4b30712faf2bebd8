"""Robustness curves: the selected model's test metrics under incomplete and noisy inputs
(bench/data/conditions.py), at the end of training (`--robustness-curves`) or later from a
saved state (`--save-state`, then `python -m bench evaluate`). Evaluation only: no training.

Saved states: `seed<k>.safetensors` next to `seed<k>.json`, its SHA-256 in the result's
`state`. `evaluate` writes `curves-seed<k>.json` beside them (the result file is never
rewritten; the name does not match `seed*.json`, so reports never take it for a run).
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from bench.data.base import Split
from bench.data.conditions import CONDITION_SEED, Condition, apply_to_split, condition_grid, noise_scale
from bench.metrics import compute_metrics
from bench.results import CLEAN

STATE_SUFFIX = ".safetensors"


def select_conditions(patterns: Optional[Sequence[str]] = None) -> list[Condition]:
    """The grid's conditions whose names match any of `patterns` (fnmatch; default: all); a
    pattern that names a condition outside the grid (e.g. random/tav/0.35) adds it."""
    grid = condition_grid()
    if not patterns:
        return grid
    out: list[Condition] = []
    for pat in patterns:
        matched = [c for c in grid if fnmatch.fnmatchcase(c.name, pat)]
        if not matched and not any(ch in pat for ch in "*?["):
            matched = [Condition.parse(pat)]
        if not matched:
            from bench.data.conditions import ConditionError

            raise ConditionError(f"--conditions '{pat}' matches no condition (e.g. random/tav/*, noise/*)")
        out += [c for c in matched if c not in out]
    return out


def robustness_curves(model: Any, split: Split, device: torch.device, batch_size: int, amp: bool, task: str,
                      conditions: Optional[Sequence[Condition]] = None, seed: int = CONDITION_SEED) -> dict[str, Any]:
    """Test metrics of `model` on `split` clean and under each condition (default: the grid)."""
    from bench.train import predict

    start = time.perf_counter()
    scale = noise_scale(split)
    labels = split.labels.numpy()
    metrics: dict[str, dict[str, float]] = {}
    predictions: dict[str, list] = {}  # per condition, in split order (the result's predictions.ids): bench compare
    for name, s in _conditioned(split, conditions, seed, scale):
        preds, loss = predict(model, s, device, batch_size, amp=amp)
        metrics[name] = {**compute_metrics(task, preds.numpy(), labels), "loss": loss}
        predictions[name] = preds.reshape(-1).tolist() if task == "regression" else preds.tolist()
    return {"split": split.name, "seed": seed, "noise_scale": scale, "conditions": metrics,
            "ids": list(split.ids), "predictions": predictions, "time_s": time.perf_counter() - start}


def _conditioned(split: Split, conditions: Optional[Sequence[Condition]], seed: int, scale: dict[str, float]):
    """(name, split) clean first, then under each condition (default: the grid), one at a time."""
    yield CLEAN, split
    for cond in conditions if conditions is not None else condition_grid():
        yield cond.name, apply_to_split(split, cond, seed, scale)


# -- saved states -----------------------------------------------------------------------------
def state_path(result_path: Path) -> Path:
    return Path(result_path).with_suffix(STATE_SUFFIX)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_state(model: torch.nn.Module, result_path: Path) -> dict[str, Any]:
    """The model's weights as safetensors next to the result file (written atomically, with
    the result files' permissions); returns the result's `state` field."""
    from safetensors.torch import save

    from bench.results import write_bytes_atomic

    path = state_path(result_path)
    # cloned: tied weights are stored once per name, so the file loads into a fresh model as is
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(tensors))
    return {"file": path.name, "format": "safetensors", "sha256": file_sha256(path)}


def load_saved_run(result_path: Path, device: str = "auto") -> tuple[dict[str, Any], Any, Any, torch.device]:
    """(record, model with the saved weights, the run's data, device) of a finished run saved
    with --save-state; the weights' hash must match the one recorded."""
    from safetensors.torch import load_file

    from bench.config import OptionError, RunConfig
    from bench.results import load_result
    from bench.runner import PlannedRun, load_data_for
    from bench.train import resolve_device
    from models.registry import FIXED_FIELDS, get_model_entry, resolve_run_config

    rec = load_result(result_path)
    saved = rec.get("state")
    if rec.get("status") != "ok" or not isinstance(saved, dict):
        raise OptionError(f"{result_path} [key=state]: no saved state (rerun with --save-state --force)")
    path = Path(result_path).with_name(saved["file"])
    if not path.is_file():
        raise OptionError(f"{result_path} [key=state.file]: {path} is missing")
    if file_sha256(path) != saved["sha256"]:
        raise OptionError(f"{path}: SHA-256 differs from {result_path} [key=state.sha256]; the weights changed")
    recorded = rec["config"]["model"]
    cfg = resolve_run_config(rec["model"], rec["dataset"], recorded["preset"],
                             {k: v for k, v in recorded.items() if k not in FIXED_FIELDS})
    fields = RunConfig.__dataclass_fields__
    run = RunConfig(**{k: v for k, v in rec["config"]["run"].items() if k in fields})
    data = load_data_for(PlannedRun(run, cfg))
    model = get_model_entry(rec["model"]).builder(cfg)
    model.load_state_dict(load_file(str(path)))
    dev = resolve_device(device)
    return rec, model.to(dev), data, dev


def evaluate_saved(result_path: Path, conditions: Sequence[Condition], device: str = "auto",
                   seed: int = CONDITION_SEED) -> Path:
    """Score a saved run under `conditions`; writes (and returns) its `curves-seed<k>.json`."""
    from bench.results import curves_path, environment, write_json_atomic
    from bench.runner import device_name
    from bench.train import eval_batch_size

    rec, model, data, dev = load_saved_run(result_path, device)
    curves = robustness_curves(model, data.test, dev, eval_batch_size(model), rec["config"]["run"].get("amp", True),
                               rec["task"], conditions, seed)
    out = curves_path(result_path)
    write_json_atomic(out, {"result": Path(result_path).name, "state_sha256": rec["state"]["sha256"],
                            "device": device_name(dev), **environment(), "robustness_curves": curves})
    return out
