"""Small hand-written result files for the report, figure and compare tests (schema: bench/results.py).

`make_result` builds a minimal valid record; every number a test checks is passed in by the
test itself, so the expected tables can be worked out by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bench.results import SCHEMA_VERSION, write_json_atomic


def make_result(
    run_name: str = "mult",
    seed: int = 1111,
    dataset: str = "synthetic",
    *,
    test: dict[str, float] | None = None,
    task: str = "regression",
    history: list[dict[str, Any]] | None = None,
    predictions: tuple[Sequence[str], Sequence, Sequence] | None = None,
    params: tuple[int, int, int] = (1000, 1000, 1000),
    train_s: float = 10.0,
    per_epoch_s: Sequence[float] = (2.0, 2.0),
    peak_memory_bytes: int = 2**30,
    device: str = "cpu",
    model_summary: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A status-ok record; `predictions` = (ids, labels, preds)."""
    ids, labels, preds = predictions or (["s0", "s1"], [0.5, -0.5], [0.4, -0.2])
    history = history if history is not None else [{"epoch": e, "valid": {}} for e in range(len(per_epoch_s))]
    rec = {
        "schema_version": SCHEMA_VERSION, "status": "ok", "model": run_name.split("+")[0], "run_name": run_name,
        "variant": {}, "preset": "demo", "dataset": dataset, "setting": "unaligned", "task": task, "seed": seed,
        "config": {"run": {}, "model": {}},
        "metrics": {"test": dict(test or {}), "valid": {}},
        "best_epoch": 0, "epochs_run": len(history), "selected_on": "valid",
        "selection": {"key": "loss", "higher_is_better": False, "value": 0.5},
        "history": history,
        "params": {"total": params[0], "trainable": params[1], "with_grad": params[2]},
        "time": {"train_s": train_s, "wall_s": train_s + 1.0, "per_epoch_s": list(per_epoch_s)},
        "peak_memory_bytes": peak_memory_bytes, "device": device,
        "versions": {"python": "3", "torch": "2", "transformers": "4", "msabench": "0"},
        "git_hash": None, "date": "2026-01-01T00:00:00+00:00", "model_summary": model_summary or {},
        "predictions": {"split": "test", "ids": list(ids), "labels": list(labels), "preds": list(preds)},
    }
    rec.update(extra or {})
    return rec


def make_error(run_name: str, seed: int, message: str, dataset: str = "synthetic", task: str = "regression",
               error_type: str = "RuntimeError") -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION, "status": "error", "model": run_name.split("+")[0], "run_name": run_name,
        "variant": {}, "preset": "demo", "dataset": dataset, "setting": "unaligned", "task": task, "seed": seed,
        "config": {"run": {}, "model": {}}, "error": {"type": error_type, "message": message, "traceback": "..."},
    }


def write_results(root: Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write records where `bench run` would: root/<dataset>/<run_name>/seed<k>.json."""
    for r in records:
        write_json_atomic(Path(root) / r["dataset"] / r["run_name"] / f"seed{r['seed']}.json", r)
    return Path(root)
