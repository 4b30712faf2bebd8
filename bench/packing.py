"""`--runs-per-device auto`: how many runs share one GPU, from a short probe of each run's
peak memory.

The probe builds each distinct (model, config) of the sweep in its own spawned process on
cuda:0, trains `PROBE_STEPS` steps on its first training batch at its batch size (every
declared stage in turn) and reads `torch.cuda.max_memory_allocated`. K runs fit one device
when K x (largest peak + PROCESS_OVERHEAD_BYTES) stays within MEMORY_HEADROOM of the device's
free memory. Evaluation (Shapley coalitions at the evaluation batch size) is not probed: the
headroom covers it. The probe's numbers are written to `<out>/.packing.json` and logged.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.config import RunConfig

logger = logging.getLogger(__name__)

PROBE_STEPS = 2
# harness decisions: a CUDA context and the allocator's slack take memory that
# max_memory_allocated does not count; the headroom keeps evaluation and fragmentation room
PROCESS_OVERHEAD_BYTES = 1 << 30
MEMORY_HEADROOM = 0.85


def runs_per_device(peaks: list[int], device_bytes: int, most: int) -> int:
    """How many runs fit one device: K (largest peak + per-process overhead) within
    MEMORY_HEADROOM x `device_bytes`, at least 1 and at most `most`."""
    need = max(peaks, default=0) + PROCESS_OVERHEAD_BYTES
    return max(1, min(most, int(device_bytes * MEMORY_HEADROOM) // need))


def probe_peak_memory(run: RunConfig, device: str = "cuda:0", steps: int = PROBE_STEPS) -> int:
    """Peak CUDA memory (bytes) of `steps` training steps of `run` on its first training batch
    (each declared stage in turn), measured in this process."""
    import dataclasses

    import torch

    from bench.perf import as_stage, step_fn
    from bench.runner import load_sweep_data, plan_runs
    from bench.train import build_optimizer, resolve_device, seed_everything
    from models.registry import get_model_entry

    p = plan_runs([dataclasses.replace(run, device=device)])[0]
    data = next(iter(load_sweep_data([p]).values()))
    dev = resolve_device(device)
    seed_everything(run.seed)
    model = get_model_entry(run.model).builder(p.model_config).to(dev)
    batch = data.train.take(torch.arange(min(len(data.train), p.model_config.batch_size))).to(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    for stage in model.stages() or [None]:
        with as_stage(model, stage) if stage is not None else contextlib.nullcontext():
            opt = build_optimizer(model, stage.param_groups() if stage is not None and stage.param_groups else None)
            step = step_fn(model, stage, batch, opt, dev, run.amp)
            for _ in range(steps):
                step()
    return int(torch.cuda.max_memory_allocated(dev))


def _free_bytes(device: str = "cuda:0") -> int:
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def probe_sweep(todo: list[RunConfig], gpus: int) -> dict[str, Any]:
    """Probe each distinct (model, config) of `todo` in a spawned process, one after another;
    return the record (also written to `<out>/.packing.json`) with `runs_per_device`."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from bench.plugins import WithPlugins
    from bench.results import write_json_atomic

    distinct: dict[tuple, RunConfig] = {}
    for r in todo:
        distinct.setdefault((r.dataset, r.run_name, r.epochs, r.text_encoder, r.data_root, r.setting), r)
    peaks = []
    for r in distinct.values():
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:  # its own peak, its memory freed
            peaks.append({"run": f"{r.dataset}/{r.run_name}", "peak_memory_bytes":
                          pool.submit(WithPlugins(probe_peak_memory), r).result()})
    free = _free_bytes()
    most = max(1, -(-len(todo) // max(1, gpus)))
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "probe_steps": PROBE_STEPS,
              "device_free_bytes": free, "process_overhead_bytes": PROCESS_OVERHEAD_BYTES,
              "memory_headroom": MEMORY_HEADROOM, "probes": peaks,
              "runs_per_device": runs_per_device([p["peak_memory_bytes"] for p in peaks], free, most)}
    path = Path(todo[0].out_dir) / ".packing.json"
    write_json_atomic(path, record)
    logger.info(f"--runs-per-device auto: {record['runs_per_device']} (largest probed peak "
                f"{max(p['peak_memory_bytes'] for p in peaks) / 2**30:.2f} GiB of {free / 2**30:.1f} GiB free; {path})")
    return record
